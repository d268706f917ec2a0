"""The batch path with real processes: a `Worker` at batch size > 1 saves a
batch in one call, each job under its own claim (`save_many(...,
atomic=False)`). Several processes draining together finish every job
exactly once, and a batch whose claims were partly taken over is saved but
for exactly those jobs."""

from __future__ import annotations

import multiprocessing
import queue
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from batch_workers import DESTINATION, claim_wait_and_save, drain_with_a_worker
from harness import SqliteTemplate, reset_database

import fulltext_jobs
from fulltext_jobs import FullText, JobStatus, SqlAlchemyRepository
from fulltext_jobs.sql.schema import tables_for

#: Every process must have reported and ended by then.
DEADLINE_SECONDS = 120


def test_a_copy_is_the_job_field_for_field():
    job = FullText.new("item", "lang")
    job.start()
    job.attempts, job.claim_token, job.last_error, job.version = 2, uuid.uuid4(), "boom", 7
    copy = job.copy()
    assert copy == replace(job)
    assert copy is not job
    copy.finish()
    assert job.status is JobStatus.RUNNING


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, sqlite_template: SqliteTemplate
) -> Iterator[tuple[str, sa.Engine]]:
    """A url and an engine of an empty, migrated database of each kind."""
    if request.param == "sqlite":
        url = sqlite_template.fresh_url()
        engine = fulltext_jobs.create_engine(url)
        yield url, engine
        engine.dispose()
        return
    url = request.getfixturevalue("postgres_url")
    engine = request.getfixturevalue("postgres_engine")
    reset_database(engine)
    yield url, engine


def queued(engine: sa.Engine, n: int) -> list[uuid.UUID]:
    """`n` ready jobs of the destination; their ids, oldest first."""
    repo = SqlAlchemyRepository(engine)
    jobs = [FullText.new(f"item-{i:05}", DESTINATION) for i in range(n)]
    for start in range(0, n, 1_000):
        repo.save_many(jobs[start : start + 1_000])
    return [job.id for job in jobs]


def stored(engine: sa.Engine) -> dict[uuid.UUID, Any]:
    fulltext = tables_for(engine.dialect.name).fulltext
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(fulltext.c.id, fulltext.c.status, fulltext.c.attempts, fulltext.c.version)
        )
        return {row.id: row for row in rows}


def join_or_kill(processes: list[Any]) -> None:
    """Join the processes, killing those that outlive the deadline."""
    for process in processes:
        process.join(timeout=DEADLINE_SECONDS)
        if process.is_alive():
            process.kill()
            process.join(timeout=10)


def collect(results: Any, count: int, processes: list[Any]) -> list[dict[str, Any]]:
    """`count` reports from `results`; the processes joined (killed if they
    outlive the deadline)."""
    reports: list[dict[str, Any]] = []
    try:
        while len(reports) < count:
            reports.append(results.get(timeout=DEADLINE_SECONDS))
    except queue.Empty:
        pass
    finally:
        join_or_kill(processes)
    assert len(reports) == count, f"{len(reports)} of {count} processes reported"
    assert [process.exitcode for process in processes] == [0] * len(processes)
    return reports


@pytest.mark.slow
@pytest.mark.postgresql
def test_four_worker_processes_on_the_batch_path_finish_every_job_exactly_once(database):
    url, engine = database
    jobs = 2_000 if engine.dialect.name == "postgresql" else 600
    ids = queued(engine, jobs)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    processes = [
        context.Process(target=drain_with_a_worker, args=(url, 50, barrier, results))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    reports = collect(results, 4, processes)

    assert [report["error"] for report in reports] == [None] * 4
    handled = Counter(job_id for report in reports for job_id in report["handled"])
    assert set(handled) == set(ids)
    assert set(handled.values()) == {1}  # no job was handled twice
    stats = [report["stats"] for report in reports]
    assert sum(s.finished for s in stats) == jobs
    assert sum(s.lost_claims for s in stats) == 0
    rows = stored(engine)
    # Written three times each: inserted, claimed once, finished once.
    assert {(row.status, row.attempts, row.version) for row in rows.values()} == {
        ("finished", 1, 3)
    }


@pytest.mark.slow
@pytest.mark.postgresql
def test_a_batch_whose_claims_were_partly_taken_over_is_saved_but_for_those(database):
    url, engine = database
    ids = queued(engine, 10)
    context = multiprocessing.get_context("spawn")
    claimed, go, results = context.Queue(), context.Event(), context.Queue()
    process = context.Process(target=claim_wait_and_save, args=(url, 10, claimed, go, results))
    process.start()
    try:
        assert claimed.get(timeout=DEADLINE_SECONDS) == ids
        # Four of the batch's leases run out (set by hand: the lease is not
        # counted as a write), and this process rescues and claims them
        # again, and finishes them, while the first still holds the batch.
        taken = ids[2:6]
        fulltext = tables_for(engine.dialect.name).fulltext
        with engine.begin() as connection:
            connection.execute(
                sa.update(fulltext)
                .where(fulltext.c.id.in_(taken))
                .values(lease_expires=datetime(2000, 1, 1, tzinfo=UTC))
            )
        repo = SqlAlchemyRepository(engine)
        assert repo.rescue_expired(DESTINATION) == 4
        again = repo.claim_ready(DESTINATION, 10)
        assert [job.id for job in again] == taken
        for job in again:
            job.finish()
        repo.save_many(again, atomic=False)
    finally:
        go.set()
    (report,) = collect(results, 1, [process])

    assert report["error"] is None
    assert report["refused"] == taken
    rows = stored(engine)
    assert {row.status for row in rows.values()} == {"finished"}
    # Each job was finished once: by the first process (one attempt), or,
    # for the four taken over, by this one (a second attempt).
    assert {job_id: rows[job_id].attempts for job_id in ids} == {
        job_id: 2 if job_id in taken else 1 for job_id in ids
    }
    assert {job_id: report["versions"][job_id] for job_id in ids} == {
        job_id: 2 if job_id in taken else 3 for job_id in ids
    }
