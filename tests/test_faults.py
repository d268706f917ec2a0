"""Faults: crashed and paused workers, lost connections.

What is promised: delivery is at least once, finishing exactly once. A
worker killed mid-job leaves its job running until the lease runs out; then
`rescue_expired` gives it back (or fails it after `max_attempts`), it is
delivered again and finished by someone else, and the dead worker's late
save, with its stale claim token, raises `LostClaim` and changes nothing. A
connection lost during a call gives a retryable `StoreError` whose message
says so, the call's transaction is rolled back, and the next call on the
same repository works.

Faults are real: workers are spawned processes, killed with SIGKILL or
paused with SIGSTOP; PostgreSQL connections are ended by
`pg_terminate_backend` while their statement waits for a lock, and only
backends of this session's own test database, found by pid, are touched.
Every wait has a timeout, and processes still running at the end of a test
are killed. Run with `-s` to see what was injected.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fault_workers import (
    DESTINATION,
    app_name,
    claim_and_block,
    claim_heartbeat_then_finish,
    finish_until_done,
    job_from_report,
)
from harness import FakeClock, SqliteTemplate

import fulltext_jobs
from fulltext_jobs import (
    FullText,
    JobStatus,
    LostClaim,
    NoJobs,
    SqlAlchemyRepository,
    StoreError,
)
from fulltext_jobs.domain import RESCUED_ERROR, lease_expired_error, utc
from fulltext_jobs.sql.schema import tables_for

#: The lease of the workers that get killed.
SHORT_LEASE_SECONDS = 1.0

#: The paused worker's lease: heartbeats every quarter of it keep it well
#: ahead of the clock even on a busy machine, until the pause.
PAUSED_LEASE_SECONDS = 2.0

#: How long the parent waits for any one message, exit or database change.
WAIT_SECONDS = 30

#: The parent's own statements are bounded too.
PARENT_OPTIONS = "-c lock_timeout=10000 -c statement_timeout=20000"

#: What was injected and what it led to, over the module; printed at the end.
FAULTS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def fault_summary() -> Iterator[None]:
    yield
    print(
        "\nfaults injected: "
        f"{FAULTS['SIGKILL']} SIGKILL, {FAULTS['SIGSTOP']} SIGSTOP/SIGCONT, "
        f"{FAULTS['pg_terminate_backend']} pg_terminate_backend; "
        f"jobs re-delivered after a fault: {FAULTS['redelivered']}; "
        f"stale saves/heartbeats rejected with LostClaim: {FAULTS['stale rejected']}; "
        f"retryable StoreErrors: {FAULTS['retryable StoreError']}; "
        f"jobs lost: {FAULTS['lost']}; jobs finished twice: {FAULTS['finished twice']}"
    )


# --- Processes -------------------------------------------------------------------


@dataclass
class Worker:
    """A spawned worker process and its own queue of messages."""

    name: str
    process: Any
    out: Any
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        pid = self.process.pid
        assert pid is not None
        return int(pid)

    def expect(self, event: str, timeout: float = WAIT_SECONDS) -> dict[str, Any]:
        """The worker's next message of kind `event` (others are kept in
        `messages`); fails on an error message or after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            alive = self.process.is_alive()
            try:
                message = self.out.get(timeout=0.2)
            except queue.Empty:
                if not alive or time.monotonic() > deadline:
                    pytest.fail(
                        f"{self.name} sent no {event!r} (waited up to {timeout} s; "
                        f"alive: {alive}, exit code {self.process.exitcode})"
                    )
                continue
            self.messages.append(message)
            if message["event"] == "error":
                pytest.fail(f"{self.name} failed:\n{message['error']}")
            if message["event"] == event:
                return message

    def kill(self) -> None:
        """SIGKILL, and wait for the death."""
        os.kill(self.pid, signal.SIGKILL)
        FAULTS["SIGKILL"] += 1
        self.process.join(timeout=WAIT_SECONDS)
        assert self.process.exitcode == -signal.SIGKILL, self.process.exitcode

    def join(self) -> int | None:
        self.process.join(timeout=WAIT_SECONDS)
        return self.process.exitcode


class Workers:
    """Starts workers; at the end kills the ones still running and closes
    every process and queue."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._started: list[Worker] = []

    def start(self, target: Callable[..., None], url: str, name: str, *args: Any) -> Worker:
        """Run `target(url, name, *args, out=queue)` in a spawned process."""
        out = self._context.Queue()
        process = self._context.Process(
            target=target,
            args=(url, name, *args),
            kwargs={"out": out},
            name=f"fault-{name}",
            daemon=True,
        )
        worker = Worker(name, process, out)
        self._started.append(worker)
        process.start()
        return worker

    def close(self) -> list[str]:
        stragglers = []
        for worker in self._started:
            if worker.process.is_alive():
                stragglers.append(worker.name)
                worker.process.kill()  # also ends a stopped process
            worker.process.join(timeout=WAIT_SECONDS)
            if worker.process.exitcode is not None:
                worker.process.close()
            worker.out.close()
            worker.out.join_thread()
        return stragglers


@pytest.fixture
def workers() -> Iterator[Workers]:
    started = Workers()
    yield started
    stragglers = started.close()
    if stragglers:
        print(f"\nkilled stragglers: {stragglers}")


def process_state(pid: int) -> str:
    """The state letter of process `pid` (Linux): T is stopped."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    return stat.rsplit(")", 1)[1].split()[0]


# --- The database ----------------------------------------------------------------


@pytest.fixture
def pg_engine(postgres_url: str, clean_postgres_engine: sa.Engine) -> Iterator[sa.Engine]:
    """An engine of the test's own on the emptied session database."""
    assert clean_postgres_engine.url.database == sa.make_url(postgres_url).database
    engine = fulltext_jobs.create_engine(
        postgres_url,
        connect_args={"application_name": app_name("parent"), "options": PARENT_OPTIONS},
    )
    yield engine
    engine.dispose()


@pytest.fixture
def monitor(postgres_url: str) -> Iterator[sa.Connection]:
    """An autocommit connection for watching and ending backends."""
    engine = fulltext_jobs.create_engine(
        postgres_url,
        isolation_level="AUTOCOMMIT",
        connect_args={"application_name": app_name("monitor"), "options": PARENT_OPTIONS},
    )
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def seed_jobs(repo: SqlAlchemyRepository, engine: sa.Engine, count: int) -> list[uuid.UUID]:
    """`count` ready jobs of DESTINATION; their ids, oldest first."""
    repo.add_items(f"item-{n:03}" for n in range(count))
    assert repo.enqueue_unqueued(DESTINATION) == count
    fulltext = tables_for(engine.dialect.name).fulltext
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(fulltext.c.id)
                .where(fulltext.c.destination == DESTINATION)
                .order_by(fulltext.c.seq)
            ).scalars()
        )


def backends_of(connection: sa.Connection, name: str) -> list[int]:
    """Pids of worker `name`'s backends in this test database."""
    return list(
        connection.execute(
            sa.text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :app"
            ),
            {"app": app_name(name)},
        ).scalars()
    )


def row_locked(engine: sa.Engine, job_id: str) -> bool:
    """Whether another transaction holds job `job_id`'s row lock (PostgreSQL)."""
    with engine.connect() as connection:
        try:
            connection.execute(
                sa.text("SELECT id FROM jobs.fulltext WHERE id = :id FOR UPDATE NOWAIT"),
                {"id": uuid.UUID(job_id)},
            )
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            return True
        finally:
            connection.rollback()
    return False


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def rescue_after_lease(
    repo: SqlAlchemyRepository, expected: int, *, max_attempts: int = 3
) -> datetime:
    """Call rescue_expired until it has rescued `expected` jobs; return when."""
    rescued = 0
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        rescued += repo.rescue_expired(DESTINATION, max_attempts=max_attempts)
        if rescued >= expected:
            assert rescued == expected
            return utc()
        if time.monotonic() > deadline:
            pytest.fail(f"rescued {rescued} of {expected} jobs in {WAIT_SECONDS} s")
        time.sleep(0.05)


def replay_stale_finish(repo: SqlAlchemyRepository, claimed: dict[str, Any]) -> None:
    """What a dead or paused worker would do late with the claim it held:
    heartbeat, then finish and save, alone or in a batch. Each raises
    LostClaim and the stored job does not change."""
    before = repo.get_fulltext(claimed["id"])
    stale = job_from_report(claimed)
    assert stale.claim_token is not None
    assert stale.claim_token != before.claim_token
    with pytest.raises(LostClaim):
        repo.heartbeat(stale)
    stale.finish()
    with pytest.raises(LostClaim):
        repo.save_fulltext(stale)
    with pytest.raises(LostClaim):
        repo.save_many([stale])
    FAULTS["stale rejected"] += 3
    assert repo.get_fulltext(claimed["id"]) == before


def check_finished_once(
    repo: SqlAlchemyRepository, job_ids: list[uuid.UUID], reports: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Every job finished, each by exactly one worker, as that worker saved
    it; returns the finishes by job id."""
    for report in reports:
        assert report["errors"] == [], f"{report['name']}: {report['errors'][0]}"
        assert report["done"], f"{report['name']} gave up before the work was done"
    finishes = [finish for report in reports for finish in report["finished"]]
    per_job = Counter(finish["id"] for finish in finishes)
    twice = [job_id for job_id, count in per_job.items() if count > 1]
    lost = {str(job_id) for job_id in job_ids} - set(per_job)
    FAULTS["finished twice"] += len(twice)
    FAULTS["lost"] += len(lost)
    assert twice == [], f"finished more than once: {twice}"
    assert lost == set(), f"never finished: {lost}"
    assert set(per_job) == {str(job_id) for job_id in job_ids}
    by_id = {finish["id"]: finish for finish in finishes}
    for job_id in job_ids:
        stored = repo.get_fulltext(job_id)
        finish = by_id[str(job_id)]
        assert stored.status is JobStatus.FINISHED
        assert stored.finished == datetime.fromisoformat(finish["finished"])
        assert stored.attempts == finish["attempts"]
        assert (stored.claim_token, stored.lease_expires) == (None, None)
    with pytest.raises(NoJobs):
        repo.get_ready_job(DESTINATION)
    assert repo.rescue_expired() == 0
    return by_id


def check_rescued_to_ready(repo: SqlAlchemyRepository, claimed: dict[str, Any]) -> None:
    job = repo.get_fulltext(claimed["id"])
    assert job.status is JobStatus.READY
    assert (job.claim_token, job.lease_expires, job.started) == (None, None, None)
    assert job.attempts == claimed["attempts"]
    assert job.last_error == RESCUED_ERROR


def check_still_running(repo: SqlAlchemyRepository, claimed: dict[str, Any]) -> FullText:
    """The job as its (dead or paused) claimer left it: running, its claim."""
    job = repo.get_fulltext(claimed["id"])
    assert job.status is JobStatus.RUNNING
    assert job.claim_token == uuid.UUID(claimed["claim_token"])
    assert job.lease_expires is not None
    assert job.finished is None
    return job


def pinned(engine: sa.Engine, moment: datetime) -> SqlAlchemyRepository:
    """A repository whose clock stands still at `moment`."""
    return SqlAlchemyRepository(engine, clock=FakeClock(moment))


# --- a. Workers killed and paused mid-job (PostgreSQL) ------------------------


@pytest.mark.slow
@pytest.mark.postgresql
def test_worker_killed_mid_job_is_redelivered_and_finished_once(
    postgres_url: str, pg_engine: sa.Engine, monitor: sa.Connection, workers: Workers
):
    repo = SqlAlchemyRepository(pg_engine)
    job_ids = seed_jobs(repo, pg_engine, 3)

    # Two workers claim a job each; one also holds its job's row lock in an
    # uncommitted save. Both are killed.
    doomed = [
        workers.start(
            claim_and_block, postgres_url, f"doomed-{n}", DESTINATION, SHORT_LEASE_SECONDS, hold
        )
        for n, hold in enumerate((False, True))
    ]
    claims = [worker.expect("claimed") for worker in doomed]
    claimed = [claim["job"] for claim in claims]
    assert [row_locked(pg_engine, job["id"]) for job in claimed] == [False, True]
    for worker in doomed:
        worker.kill()
    assert len({job["id"] for job in claimed}) == 2
    untouched = next(job_id for job_id in job_ids if str(job_id) not in {j["id"] for j in claimed})

    # The server notices the dead clients and ends their sessions, rolling
    # back the half-done save and freeing the row lock.
    for worker in doomed:
        wait_until(lambda w=worker: backends_of(monitor, w.name) == [], f"{worker.name} gone")
    assert [row_locked(pg_engine, job["id"]) for job in claimed] == [False, False]

    # Until the leases run out the jobs stay running with the dead claims.
    for job in claimed:
        check_still_running(repo, job)
    first_expiry = min(datetime.fromisoformat(job["lease_expires"]) for job in claimed)
    assert pinned(pg_engine, first_expiry - timedelta(microseconds=1)).rescue_expired() == 0
    assert repo.get_fulltext(untouched).status is JobStatus.READY

    # After them, rescue gives both back to ready.
    rescued_at = rescue_after_lease(repo, 2)
    assert rescued_at > first_expiry
    for job in claimed:
        check_rescued_to_ready(repo, job)

    # Other workers deliver them again and finish everything, once each.
    finishers = [
        workers.start(finish_until_done, postgres_url, f"finisher-{n}", DESTINATION)
        for n in range(2)
    ]
    reports = [worker.expect("report") for worker in finishers]
    assert [worker.join() for worker in finishers] == [0, 0]
    finishes = check_finished_once(repo, job_ids, reports)
    for job in claimed:
        finish = finishes[job["id"]]
        assert finish["attempts"] == 2
        assert finish["claim_token"] != job["claim_token"]
        FAULTS["redelivered"] += 1
    assert finishes[str(untouched)]["attempts"] == 1

    # The dead workers' late saves are refused and change nothing.
    for job in claimed:
        replay_stale_finish(repo, job)
    print(
        f"\nkilled 2 workers mid-job; both jobs rescued at {rescued_at:%H:%M:%S.%f}, "
        "re-delivered and finished once; stale saves refused"
    )


@pytest.mark.slow
@pytest.mark.postgresql
def test_job_whose_workers_keep_dying_fails_after_max_attempts(
    postgres_url: str, pg_engine: sa.Engine, workers: Workers
):
    repo = SqlAlchemyRepository(pg_engine)
    (job_id,) = seed_jobs(repo, pg_engine, 1)
    dead_claims = []
    for attempt in (1, 2):
        worker = workers.start(
            claim_and_block,
            postgres_url,
            f"poisoned-{attempt}",
            DESTINATION,
            SHORT_LEASE_SECONDS,
            False,
        )
        claimed = worker.expect("claimed")["job"]
        worker.kill()
        assert (claimed["id"], claimed["attempts"]) == (str(job_id), attempt)
        check_still_running(repo, claimed)
        dead_claims.append(claimed)
        rescue_after_lease(repo, 1, max_attempts=2)
        if attempt == 1:
            check_rescued_to_ready(repo, claimed)
            FAULTS["redelivered"] += 1

    # The second death used up max_attempts: failed, with the reason.
    failed = repo.get_fulltext(job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 2
    assert failed.last_error == lease_expired_error(2)
    assert failed.finished is not None
    assert (failed.claim_token, failed.lease_expires) == (None, None)
    with pytest.raises(NoJobs):
        repo.get_ready_job(DESTINATION)
    for claimed in dead_claims:
        replay_stale_finish(repo, claimed)

    # Retried by hand, it is delivered a third time, as the first attempt
    # of a fresh budget, with the reason it failed still readable, and
    # finished once.
    assert repo.retry(DESTINATION) == 1
    job = repo.get_ready_job(DESTINATION)
    assert (job.id, job.attempts, job.last_error) == (job_id, 1, lease_expired_error(2))
    job.finish()
    repo.save_fulltext(job)
    assert repo.get_fulltext(job_id).status is JobStatus.FINISHED
    with pytest.raises(LostClaim):
        repo.save_fulltext(job)
    FAULTS["stale rejected"] += 1
    for claimed in dead_claims:
        replay_stale_finish(repo, claimed)


@pytest.mark.slow
@pytest.mark.postgresql
def test_paused_worker_late_finish_is_refused(
    postgres_url: str, pg_engine: sa.Engine, workers: Workers, tmp_path: Path
):
    repo = SqlAlchemyRepository(pg_engine)
    (job_id,) = seed_jobs(repo, pg_engine, 1)
    go_file = tmp_path / "go"
    paused = workers.start(
        claim_heartbeat_then_finish,
        postgres_url,
        "paused",
        DESTINATION,
        PAUSED_LEASE_SECONDS,
        str(go_file),
    )
    claimed = paused.expect("claimed")["job"]
    assert claimed["id"] == str(job_id)

    # While it heartbeats, its lease moves on and nobody can take the job.
    beats = [paused.expect("heartbeat") for _ in range(3)]
    leases = [datetime.fromisoformat(beat["lease"]) for beat in beats]
    assert leases == sorted(leases)
    assert leases[0] > datetime.fromisoformat(claimed["lease_expires"])
    assert repo.rescue_expired() == 0

    os.kill(paused.pid, signal.SIGSTOP)
    FAULTS["SIGSTOP"] += 1
    try:
        wait_until(lambda: process_state(paused.pid) == "T", "paused worker stopped")
        # No more heartbeats: the lease runs out and the job is given back.
        rescue_after_lease(repo, 1)
        check_rescued_to_ready(repo, claimed)
        assert process_state(paused.pid) == "T"

        finisher = workers.start(finish_until_done, postgres_url, "successor", DESTINATION)
        report = finisher.expect("report")
        assert finisher.join() == 0
        (finish,) = check_finished_once(repo, [job_id], [report]).values()
        assert finish["attempts"] == 2
        assert finish["claim_token"] != claimed["claim_token"]
        FAULTS["redelivered"] += 1
        after_successor = repo.get_fulltext(job_id)
    finally:
        go_file.touch()
        os.kill(paused.pid, signal.SIGCONT)

    # Woken, the paused worker finishes "its" job: refused, nothing changes.
    done = paused.expect("done")
    assert done["finish"] == "LostClaim"
    FAULTS["stale rejected"] += 1 + done["heartbeat_lost"]
    assert paused.join() == 0
    assert repo.get_fulltext(job_id) == after_successor
    replay_stale_finish(repo, claimed)
    print(
        f"\npaused worker: {len(beats)}+ heartbeats, stopped past its lease, job re-delivered; "
        f"late finish {done['finish']} (heartbeat lost on waking: {done['heartbeat_lost']})"
    )


# --- b. Connections ended during a call (PostgreSQL) -------------------------

VICTIM = "victim"
HOLDER = "holder"
LOCK_TABLE = "LOCK TABLE jobs.fulltext IN ACCESS EXCLUSIVE MODE"
LOCK_ROW = "SELECT id FROM jobs.fulltext WHERE id = :id FOR UPDATE"


@pytest.fixture
def victim(postgres_url: str, pg_engine: sa.Engine) -> Iterator[SqlAlchemyRepository]:
    """A repository whose connections the test ends; found by their
    application_name. `pg_engine` comes first: the database is emptied."""
    assert pg_engine.url.database == sa.make_url(postgres_url).database
    engine = fulltext_jobs.create_engine(
        postgres_url,
        connect_args={"application_name": app_name(VICTIM), "options": PARENT_OPTIONS},
    )
    repo = SqlAlchemyRepository(engine)
    repo.stats(DESTINATION)  # schema checked, one connection pooled
    yield repo
    engine.dispose()


@pytest.fixture
def holder(postgres_url: str) -> Iterator[sa.Engine]:
    """An engine for the connection that holds the lock the victim waits on."""
    engine = fulltext_jobs.create_engine(
        postgres_url,
        connect_args={"application_name": app_name(HOLDER), "options": PARENT_OPTIONS},
    )
    yield engine
    engine.dispose()


def terminate(monitor: sa.Connection, pid: int) -> None:
    """End backend `pid`, which must be one of this test database's."""
    ended = monitor.execute(
        sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid = :pid"
        ),
        {"pid": pid},
    ).scalar_one_or_none()
    assert ended is True, f"backend {pid} is not one of this database's"
    FAULTS["pg_terminate_backend"] += 1


def terminated_during(
    call: Callable[[], object],
    lock: str,
    params: dict[str, Any],
    holder: sa.Engine,
    monitor: sa.Connection,
) -> tuple[dict[str, Any], int]:
    """Run `call` in a thread while `holder` holds `lock`; once the
    victim's backend waits for that lock, end it, then let the lock go.
    Returns the call's outcome ({"result": ...} or {"error": ...}) and the
    pid of the backend that was ended."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="victim-call", daemon=True)
    with holder.connect() as holding:
        holding.execute(sa.text(lock), params)  # begins a transaction: held till rollback
        thread.start()
        try:
            waiting: list[int] = []

            def victim_waits() -> bool:
                waiting[:] = monitor.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name = :app "
                        "AND wait_event_type = 'Lock'"
                    ),
                    {"app": app_name(VICTIM)},
                ).scalars()
                return bool(waiting) or not thread.is_alive()

            wait_until(victim_waits, "the victim's statement waits for the lock")
            assert len(waiting) == 1, f"the call ended without waiting: {outcome}"
            (pid,) = waiting
            terminate(monitor, pid)
        finally:
            holding.rollback()
            thread.join(timeout=WAIT_SECONDS)
    assert not thread.is_alive(), f"the call did not return within {WAIT_SECONDS} s"
    wait_until(lambda: pid not in backends_of(monitor, VICTIM), f"backend {pid} gone")
    return outcome, pid


def check_retryable(outcome: dict[str, Any], action: str) -> None:
    """The call failed with a retryable StoreError that says so, and
    nothing else (no raw driver error, no result)."""
    error = outcome.get("error")
    assert isinstance(error, StoreError), f"{action}: expected a StoreError, got {outcome!r}"
    assert type(error) is StoreError
    assert error.retryable is True, f"{action}: lost connection not retryable: {error}"
    assert "retryable" in str(error), str(error)
    assert str(error).startswith(f"{action} failed"), str(error)
    FAULTS["retryable StoreError"] += 1


@pytest.mark.postgresql
def test_connection_ended_during_claim(
    pg_engine: sa.Engine, victim: SqlAlchemyRepository, holder: sa.Engine, monitor: sa.Connection
):
    repo = SqlAlchemyRepository(pg_engine)
    (job_id,) = seed_jobs(repo, pg_engine, 1)
    outcome, pid = terminated_during(
        lambda: victim.get_ready_job(DESTINATION), LOCK_TABLE, {}, holder, monitor
    )
    check_retryable(outcome, "get_ready_job")
    # The claim waited for the lock, so it cannot have committed: the job is
    # still ready, no attempt counted. (Had it committed, the job would be
    # running under a claim nobody knows, and rescue would give it back.)
    job = repo.get_fulltext(job_id)
    assert (job.status, job.attempts, job.claim_token) == (JobStatus.READY, 0, None)

    # The same repository works on the next call, on a new connection.
    claimed = victim.get_ready_job(DESTINATION)
    assert (claimed.id, claimed.attempts, claimed.status) == (job_id, 1, JobStatus.RUNNING)
    assert pid not in backends_of(monitor, VICTIM)
    assert backends_of(monitor, VICTIM) != []
    claimed.finish()
    victim.save_fulltext(claimed)
    assert repo.get_fulltext(job_id).status is JobStatus.FINISHED


@pytest.mark.postgresql
def test_connection_ended_during_claim_ready(
    pg_engine: sa.Engine, victim: SqlAlchemyRepository, holder: sa.Engine, monitor: sa.Connection
):
    repo = SqlAlchemyRepository(pg_engine)
    job_ids = seed_jobs(repo, pg_engine, 3)
    outcome, pid = terminated_during(
        lambda: victim.claim_ready(DESTINATION, 2), LOCK_TABLE, {}, holder, monitor
    )
    check_retryable(outcome, "claim_ready")
    for job_id in job_ids:
        job = repo.get_fulltext(job_id)
        assert (job.status, job.attempts, job.claim_token) == (JobStatus.READY, 0, None)

    claimed = victim.claim_ready(DESTINATION, 2)
    assert [job.id for job in claimed] == job_ids[:2]
    assert all(job.status is JobStatus.RUNNING and job.attempts == 1 for job in claimed)
    assert pid not in backends_of(monitor, VICTIM)


@pytest.mark.postgresql
def test_connection_ended_during_finish(
    pg_engine: sa.Engine, victim: SqlAlchemyRepository, holder: sa.Engine, monitor: sa.Connection
):
    repo = SqlAlchemyRepository(pg_engine)
    (job_id,) = seed_jobs(repo, pg_engine, 1)
    job = victim.get_ready_job(DESTINATION)
    running = repo.get_fulltext(job_id)
    job.finish()
    outcome, pid = terminated_during(
        lambda: victim.save_fulltext(job), LOCK_ROW, {"id": job_id}, holder, monitor
    )
    check_retryable(outcome, "save_fulltext")
    # Nothing was written: still running, under the same claim and lease.
    assert repo.get_fulltext(job_id) == running

    # Retrying the same save works, once: the claim ends with it.
    victim.save_fulltext(job)
    finished = repo.get_fulltext(job_id)
    assert finished.status is JobStatus.FINISHED
    assert finished.finished == job.finished
    assert finished.attempts == 1
    with pytest.raises(LostClaim):
        victim.save_fulltext(job)
    FAULTS["stale rejected"] += 1
    assert repo.get_fulltext(job_id) == finished
    assert pid not in backends_of(monitor, VICTIM)


@pytest.mark.postgresql
def test_connection_ended_during_save_many(
    pg_engine: sa.Engine,
    victim: SqlAlchemyRepository,
    holder: sa.Engine,
    monitor: sa.Connection,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.WARNING)
    repo = SqlAlchemyRepository(pg_engine)
    seed_jobs(repo, pg_engine, 2)
    jobs = victim.claim_ready(DESTINATION, 2)
    running = [repo.get_fulltext(job.id) for job in jobs]
    for job in jobs:
        job.finish()
    # The second row is locked: the first is written before the batch
    # waits, and must be rolled back with the rest.
    outcome, pid = terminated_during(
        lambda: victim.save_many(jobs), LOCK_ROW, {"id": jobs[1].id}, holder, monitor
    )
    check_retryable(outcome, "save_many")
    assert [repo.get_fulltext(job.id) for job in jobs] == running
    # The loss is reported once, by the StoreError: psycopg's own second
    # report, from ending the pipeline on the dead connection, is dropped.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

    victim.save_many(jobs)
    for job in jobs:
        stored = repo.get_fulltext(job.id)
        assert (stored.status, stored.finished) == (JobStatus.FINISHED, job.finished)
    with pytest.raises(LostClaim):
        victim.save_many(jobs)
    FAULTS["stale rejected"] += 1
    assert pid not in backends_of(monitor, VICTIM)


@pytest.mark.postgresql
def test_idle_connection_ended_between_calls(
    pg_engine: sa.Engine, victim: SqlAlchemyRepository, monitor: sa.Connection
):
    """A pooled connection that died while idle costs at most one call, which
    fails retryably and changes nothing; the call after it works."""
    repo = SqlAlchemyRepository(pg_engine)
    (job_id,) = seed_jobs(repo, pg_engine, 1)
    (pid,) = backends_of(monitor, VICTIM)
    terminate(monitor, pid)
    wait_until(lambda: pid not in backends_of(monitor, VICTIM), f"backend {pid} gone")
    try:
        claimed = victim.get_ready_job(DESTINATION)
    except StoreError as exc:
        check_retryable({"error": exc}, "get_ready_job")
        job = repo.get_fulltext(job_id)
        assert (job.status, job.attempts) == (JobStatus.READY, 0)
        claimed = victim.get_ready_job(DESTINATION)
        print("\nidle connection ended: the next call failed retryably, the one after worked")
    else:
        print("\nidle connection ended: the next call worked")
    assert (claimed.id, claimed.attempts) == (job_id, 1)


# --- d. SQLite: a worker killed while it holds the write lock -----------------


def write_lock_held(url: str) -> bool:
    """Whether another connection holds the SQLite database's write lock."""
    path = sa.make_url(url).database
    assert path is not None
    connection = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return True
    else:
        connection.execute("ROLLBACK")
        return False
    finally:
        connection.close()


@pytest.mark.slow
def test_sqlite_worker_killed_holding_the_write_lock(
    sqlite_template: SqliteTemplate, workers: Workers, tmp_path: Path
):
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)
        job_ids = seed_jobs(repo, engine, 6)
        go_file = tmp_path / "go"
        # Three workers, connected and waiting at the start line; a busy
        # timeout of 10 s, so a lock that outlived its holder would reach
        # them as "database is locked" rather than be waited out.
        finishers = [
            workers.start(
                finish_until_done, url, f"sqlite-finisher-{n}", DESTINATION, str(go_file), 10_000
            )
            for n in range(3)
        ]
        for finisher in finishers:
            finisher.expect("ready")

        # A fourth claims a job, then begins saving it (BEGIN IMMEDIATE: the
        # write lock) and never commits.
        doomed = workers.start(
            claim_and_block, url, "sqlite-doomed", DESTINATION, SHORT_LEASE_SECONDS, True
        )
        message = doomed.expect("claimed")
        assert message["holding"] is True
        claimed = message["job"]
        assert write_lock_held(url)

        # The others start and queue up behind the lock; then its holder dies.
        go_file.touch()
        time.sleep(0.3)
        doomed.kill()

        reports = [finisher.expect("report") for finisher in finishers]
        assert [finisher.join() for finisher in finishers] == [0, 0, 0]
        finishes = check_finished_once(repo, job_ids, reports)
        assert sum(report["rescued"] for report in reports) == 1
        finish = finishes[claimed["id"]]
        assert finish["attempts"] == 2
        assert finish["claim_token"] != claimed["claim_token"]
        FAULTS["redelivered"] += 1
        replay_stale_finish(repo, claimed)
        shares = [len(report["finished"]) for report in reports]
        print(
            f"\nsqlite: lock holder killed; {len(job_ids)} jobs finished once each by 3 "
            f"workers {shares}, the dead worker's after rescue; no 'database is locked'"
        )
    finally:
        engine.dispose()
