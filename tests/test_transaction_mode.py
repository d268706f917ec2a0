"""The transaction mode (`Repository.hold_ready`, `Worker(in_transaction=True)`):
the claim is the row lock of an open transaction and each job is written
once, when the batch commits. In memory, the Worker's outcomes; with real
processes on PostgreSQL, a worker killed with SIGKILL in the middle of a
batch loses nothing and finishes nothing twice: its batch rolls back and
the others take it."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import signal
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from batch_workers import DESTINATION, DIED, drain_in_transaction, work_until_the_poison
from harness import reset_database
from sqlalchemy.orm import Session
from test_batch_path import DEADLINE_SECONDS, join_or_kill, queued, stored

import fulltext_jobs
from fulltext_jobs import (
    AsyncSqlAlchemyRepository,
    FailJob,
    FullText,
    InMemoryRepository,
    InvalidInput,
    JobStatus,
    NotSupported,
    RetryPolicy,
    SkipJob,
    SqlAlchemyRepository,
    Worker,
)
from fulltext_jobs.domain import HOLDER_DIED_ERROR, holder_died_error
from fulltext_jobs.repository import AsyncRepository, Repository


def memory_jobs(n: int) -> tuple[InMemoryRepository, list[FullText]]:
    repo = InMemoryRepository()
    jobs = [FullText.new(f"item-{i:03}", DESTINATION) for i in range(n)]
    repo.save_many(jobs)
    return repo, jobs


def hold_records(engine: sa.Engine) -> list[Any]:
    """The transaction mode's hold records (PostgreSQL)."""
    with engine.connect() as connection:
        return list(connection.exec_driver_sql("SELECT * FROM jobs.fulltext_holds"))


def test_a_worker_in_transaction_mode_writes_each_job_once():
    repo, jobs = memory_jobs(25)
    seen: list[FullText] = []
    worker = Worker(
        repo, DESTINATION, seen.append, batch_size=10, in_transaction=True, listen=False
    )
    stats = worker.run(until_idle=True, install_signal_handlers=False)
    assert (stats.claimed, stats.finished, stats.lost_claims) == (25, 25, 0)
    assert [job.id for job in seen] == [job.id for job in jobs]
    assert {job.status for job in seen} == {JobStatus.RUNNING}  # the handler's copies
    for job in jobs:
        stored_job = repo.get_fulltext(job.id)
        # Inserted, then written once: no claim write.
        assert (stored_job.status, stored_job.attempts, stored_job.version) == (
            JobStatus.FINISHED,
            1,
            2,
        )
        assert stored_job.started is not None


def test_skip_fail_and_retry_apply_in_transaction_mode():
    repo, jobs = memory_jobs(3)

    def handler(job: FullText) -> None:
        if job.item_id == "item-000":
            raise SkipJob("not for us")
        if job.item_id == "item-001":
            raise FailJob("bad input")
        raise OSError("try again")

    worker = Worker(
        repo,
        DESTINATION,
        handler,
        batch_size=3,
        in_transaction=True,
        listen=False,
        retry=RetryPolicy(max_attempts=2, base_delay=timedelta(milliseconds=50), jitter=0),
        poll_interval=0.01,
    )
    stats = worker.run(until_idle=True, install_signal_handlers=False)
    assert (stats.skipped, stats.failed) == (1, 2)
    assert (stats.retried, stats.released, stats.claimed) == (1, 0, 4)
    skipped, failed, retried = (repo.get_fulltext(job.id) for job in jobs)
    assert skipped.status is JobStatus.SKIPPED
    assert (failed.status, failed.last_error) == (JobStatus.FAILED, "FailJob: bad input")
    # Released for a retry after a backoff, then failed on its second attempt.
    assert (retried.status, retried.attempts) == (JobStatus.FAILED, 2)
    assert retried.last_error == "OSError: try again"


def test_a_stopped_worker_leaves_the_unhandled_jobs_of_its_batch_ready():
    repo, jobs = memory_jobs(5)
    worker: Worker

    def handler(job: FullText) -> None:  # noqa: ARG001 - stops after the first
        worker.stop()

    worker = Worker(repo, DESTINATION, handler, batch_size=5, in_transaction=True, listen=False)
    stats = worker.run(install_signal_handlers=False)
    assert (stats.claimed, stats.finished) == (5, 1)
    stored_jobs = [repo.get_fulltext(job.id) for job in jobs]
    assert stored_jobs[0].status is JobStatus.FINISHED
    assert stored_jobs[1:] == jobs[1:]  # untouched: ready, attempt not counted


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_in_transaction_must_be_a_bool(bad):
    repo, _ = memory_jobs(0)
    with pytest.raises(InvalidInput, match="in_transaction"):
        Worker(repo, DESTINATION, print, in_transaction=bad)


@pytest.mark.slow
@pytest.mark.postgresql
def test_a_worker_killed_mid_batch_loses_nothing_and_finishes_nothing_twice(
    postgres_url: str, postgres_engine: Any
):
    reset_database(postgres_engine)
    ids = queued(postgres_engine, 2_000)
    context = multiprocessing.get_context("spawn")
    barrier, results, blocked = context.Barrier(4), context.Queue(), context.Queue()
    # The victim blocks in the middle of its second batch of 50.
    victim = context.Process(
        target=drain_in_transaction, args=(postgres_url, 50, barrier, results, blocked, 75)
    )
    others = [
        context.Process(target=drain_in_transaction, args=(postgres_url, 50, barrier, results))
        for _ in range(3)
    ]
    processes = [victim, *others]
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    try:
        held = blocked.get(timeout=DEADLINE_SECONDS)
        os.kill(victim.pid or 0, signal.SIGKILL)
        victim.join(timeout=30)
        reports.extend(results.get(timeout=DEADLINE_SECONDS) for _ in others)
    except queue.Empty:
        pass
    finally:
        join_or_kill(processes)
    assert victim.exitcode == -signal.SIGKILL
    assert len(reports) == 3, f"{len(reports)} of 3 survivors reported"
    assert [report["error"] for report in reports] == [None] * 3
    handled = Counter(job_id for report in reports for job_id in report["handled"])
    assert set(handled.values()) == {1}  # no survivor handled a job twice
    # The job the victim was handling when it died rolled back: a survivor did it.
    assert held in handled
    rows = stored(postgres_engine)
    assert set(rows) == set(ids)
    # Written twice each: inserted, then finished once; the killed batch's
    # attempt was never counted.
    assert {(row.status, row.attempts, row.version) for row in rows.values()} == {
        ("finished", 1, 2)
    }
    finished = sum(report["stats"].finished for report in reports)
    # The victim committed its first batch (50 jobs) before it died.
    assert finished == len(ids) - 50
    # Its second batch's record outlived it; the survivors did those jobs,
    # so a rescue counts no death, and deletes the record.
    assert len(hold_records(postgres_engine)) == 1
    assert SqlAlchemyRepository(postgres_engine).rescue_expired(DESTINATION) == 0
    assert hold_records(postgres_engine) == []


def test_a_repository_that_cannot_hold_a_transaction_says_so():
    # The port's own `_hold_ready`, which an adapter without transactions
    # keeps: a typed error naming the leased mode, before anything is held.
    repo, _ = memory_jobs(1)
    with pytest.raises(NotSupported, match="claim_ready"):
        Repository._hold_ready(repo, DESTINATION, 1)
    with pytest.raises(NotSupported, match="claim_ready"):
        AsyncRepository._hold_ready(repo, DESTINATION, 1)  # type: ignore[arg-type]
    assert repo.claim_ready(DESTINATION, 5)[0].attempts == 1


def test_an_engine_in_autocommit_cannot_hold_and_holds_nothing(
    postgres_url: str, postgres_engine: Any
):
    # In autocommit the SELECT ... FOR UPDATE would keep its row locks only
    # for itself: a second holder got the same job (the version guard then
    # refused one of the two writes, but both handlers had run).
    reset_database(postgres_engine)
    (job_id,) = queued(postgres_engine, 1)
    engine = fulltext_jobs.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        repo = SqlAlchemyRepository(engine)
        with pytest.raises(NotSupported, match="autocommit"), repo.hold_ready(DESTINATION, 1):
            pytest.fail("the block ran")
        # The engine's connections are as they were, and a claim still works.
        (claimed,) = repo.claim_ready(DESTINATION, 1)
        assert (claimed.id, claimed.attempts) == (job_id, 1)
    finally:
        engine.dispose()


def test_the_rate_limit_caps_each_held_batch():
    asked: list[int] = []

    class Recording(InMemoryRepository):
        def _hold_ready(self, destination: str, n: int) -> Any:
            asked.append(n)
            return super()._hold_ready(destination, n)

    repo = Recording()
    repo.save_many([FullText.new(f"item-{i}", DESTINATION) for i in range(6)])
    worker = Worker(
        repo,
        DESTINATION,
        lambda _job: None,
        batch_size=10,
        in_transaction=True,
        rate_limit=1000,
        rate_burst=3,
        listen=False,
        poll_interval=0.01,
    )
    stats = worker.run(until_idle=True, install_signal_handlers=False)
    assert stats.finished == 6
    # Tokens are taken before each batch is held: never more than the burst.
    assert asked
    assert max(asked) <= 3


@pytest.mark.slow
@pytest.mark.postgresql
def test_a_job_whose_holders_keep_dying_fails_after_max_attempts(
    postgres_url: str, postgres_engine: Any
):
    # Before the hold records (0012) every death rolled back the attempt,
    # and the job was handed out again for ever.
    reset_database(postgres_engine)
    first, poison, last = queued(postgres_engine, 3)
    repo = SqlAlchemyRepository(postgres_engine)
    context = multiprocessing.get_context("spawn")

    def run_a_worker() -> int | None:
        process = context.Process(target=work_until_the_poison, args=(postgres_url, "item-00001"))
        process.start()
        join_or_kill([process])
        return process.exitcode

    # Two holders die before any rescue: both deaths are counted at once.
    assert [run_a_worker(), run_a_worker()] == [DIED, DIED]
    assert repo.get_fulltext(first).status is JobStatus.FINISHED
    assert repo.get_fulltext(poison).attempts == 0  # rolled back, not yet counted
    assert len(hold_records(postgres_engine)) == 2
    assert repo.rescue_expired_jobs(DESTINATION, max_attempts=3) == [poison]
    counted = repo.get_fulltext(poison)
    assert (counted.status, counted.attempts, counted.last_error) == (
        JobStatus.READY,
        2,
        HOLDER_DIED_ERROR,
    )
    # Settled: a second rescue counts nothing again.
    assert hold_records(postgres_engine) == []
    assert repo.rescue_expired(DESTINATION, max_attempts=3) == 0

    # The third death uses up max_attempts: failed, with the reason.
    assert run_a_worker() == DIED
    assert repo.rescue_expired_jobs(DESTINATION, max_attempts=3) == [poison]
    failed = repo.get_fulltext(poison)
    assert (failed.status, failed.attempts, failed.last_error) == (
        JobStatus.FAILED,
        3,
        holder_died_error(3),
    )
    assert failed.finished is not None
    # The next worker is not handed it, and drains the rest.
    assert run_a_worker() == 0
    assert {job.status for job in (repo.get_fulltext(first), repo.get_fulltext(last))} == {
        JobStatus.FINISHED
    }
    assert hold_records(postgres_engine) == []


@pytest.mark.postgresql
def test_a_live_hold_is_no_death_and_its_record_goes_with_its_commit(postgres_engine: Any):
    reset_database(postgres_engine)
    ids = queued(postgres_engine, 3)
    repo = SqlAlchemyRepository(postgres_engine)
    with repo.hold_ready(DESTINATION, 2) as jobs:
        (record,) = hold_records(postgres_engine)
        assert (record.destination, record.job_ids, record.versions) == (
            DESTINATION,
            ids[:2],
            [1, 1],
        )
        # The rows are locked by this open hold: the rescue passes them over
        # and keeps the record.
        assert repo.rescue_expired(DESTINATION, max_attempts=1) == 0
        assert len(hold_records(postgres_engine)) == 1
        jobs[0].finish()  # the other is left running: not written
    assert hold_records(postgres_engine) == []
    assert repo.rescue_expired(DESTINATION, max_attempts=1) == 0
    assert [repo.get_fulltext(job_id).attempts for job_id in ids] == [1, 0, 0]


@pytest.mark.postgresql
def test_a_hold_whose_block_raises_is_no_death(postgres_engine: Any):
    reset_database(postgres_engine)
    (job_id,) = queued(postgres_engine, 1)
    repo = SqlAlchemyRepository(postgres_engine)

    def finish_and_fail() -> None:
        with repo.hold_ready(DESTINATION, 1) as jobs:
            jobs[0].finish()
            raise OSError("the caller's own")

    with pytest.raises(OSError, match="the caller's own"):
        finish_and_fail()
    assert hold_records(postgres_engine) == []
    assert repo.rescue_expired(DESTINATION, max_attempts=1) == 0
    job = repo.get_fulltext(job_id)
    assert (job.status, job.attempts) == (JobStatus.READY, 0)


@pytest.mark.postgresql
def test_a_hold_in_a_callers_session_leaves_no_record(postgres_engine: Any):
    # The caller's own rollback would look like a death.
    reset_database(postgres_engine)
    queued(postgres_engine, 1)
    repo = SqlAlchemyRepository(postgres_engine)
    with (
        Session(postgres_engine) as session,
        repo.in_session(session).hold_ready(DESTINATION, 1) as jobs,
    ):
        assert len(jobs) == 1
        assert hold_records(postgres_engine) == []
        session.rollback()


@pytest.mark.postgresql
def test_an_async_hold_is_recorded_and_erased_as_a_sync_one(
    postgres_url: str, postgres_engine: Any
):
    reset_database(postgres_engine)
    (job_id,) = queued(postgres_engine, 1)

    async def hold_and_finish() -> list[Any]:
        engine = fulltext_jobs.create_async_engine(postgres_url)
        try:
            async with AsyncSqlAlchemyRepository(engine).hold_ready(DESTINATION, 1) as jobs:
                records = hold_records(postgres_engine)
                jobs[0].finish()
            return records
        finally:
            await engine.dispose()

    (record,) = asyncio.run(hold_and_finish())
    assert record.job_ids == [job_id]
    assert hold_records(postgres_engine) == []
    assert SqlAlchemyRepository(postgres_engine).get_fulltext(job_id).status is JobStatus.FINISHED
