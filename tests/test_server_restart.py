"""Fault injection: the public `Worker`, run as users run it, rides out a
PostgreSQL server that is down at start-up, restarts, crashes and ends its
listeners' connections, and every job is finished exactly once.

The server is a private instance started for this module (PostgreSQL 15's
`initdb` and `pg_ctl`, in a temporary directory, on a free port); the shared
test server is never touched. Four worker processes (tests/restart_workers.py:
`Worker.run()` in the main thread, listening, default poll interval; sync and
async handlers, one job at a time and batches of ten) work through the jobs
while the test:

1. starts them while the server is down, and starts it a few seconds later;
2. restarts it fast (`pg_ctl -m fast restart`);
3. stops it immediately (a crash: recovery on start) for five seconds;
4. ends every listener's connection with `pg_terminate_backend`.

After each fault the test waits until every worker listens again. Once every
job is finished it sends SIGTERM, and each `run()` must return normally.
A trigger on the test's own database records every move of a job to
`finished`: each job must have made exactly one. The workers' logs must be
free of tracebacks and of the noise listed in `NOISE`.

Every wait is bounded; the server is stopped and its directory removed
however the test ends. The test fails, never skips, without PostgreSQL 15.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import private_server
import pytest
import sqlalchemy as sa
import worker_processes
from private_server import PrivatePostgres, missing_binaries
from restart_workers import DESTINATION
from sqlalchemy.pool import NullPool
from worker_processes import (
    FINISHES_AUDIT,
    WorkerProcess,
    check_returned_normally,
    kill_leftovers,
    stop_workers,
    wait_for,
)

import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository
from fulltext_jobs.sql.notifications import READY_CHANNEL

JOBS = 2_400

#: (handler, claim batch size, claim threads) per worker process.
WORKERS = (("sync", 1, 1), ("async", 1, 1), ("sync", 10, 2), ("async", 10, 1))

#: How long the server is down when the workers start.
DOWN_AT_START_SECONDS = 3.0

#: How long the immediate stop keeps the server down.
CRASH_SECONDS = 5.0

#: The faults after start-up, each once this many jobs are finished.
RESTART_AT, CRASH_AT, TERMINATE_AT = 600, 1_200, 1_800

#: Lines that must not be in a worker's log: tracebacks, and the noise
#: operators met after restarts.
NOISE = (
    "Traceback",
    "error ignored terminating",
    "Exception during reset",
    "alembic",
    "stopped by an error",
)


# --- The private server ----------------------------------------------------


def require_postgres_binaries() -> None:
    """Fail (never skip) with a clear message if the binaries are missing."""
    missing = missing_binaries()
    if missing is not None:
        pytest.fail(
            f"{missing} The restart test starts and restarts a server of its own "
            "and cannot run without them."
        )


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh PostgreSQL 15 instance on a free port (fsync off: nothing
    here needs it), stopped and deleted at the end of the module."""
    require_postgres_binaries()
    with private_server.private_postgres("ftj-restart-", settings=("fsync=off",)) as server:
        yield server


@pytest.fixture(scope="module")
def restart_url(private_postgres: PrivatePostgres) -> str:
    """A migrated database on the private server, with JOBS ready jobs and
    a trigger that records each job's moves to `finished`."""
    admin = sa.create_engine(
        private_postgres.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql("CREATE DATABASE restart_test")
    finally:
        admin.dispose()
    url = private_postgres.url("restart_test")
    fulltext_jobs.upgrade(url)
    engine = fulltext_jobs.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(FINISHES_AUDIT)
        repo = SqlAlchemyRepository(engine)
        assert repo.add_items(f"item-{n:05}" for n in range(JOBS)) == JOBS
        assert repo.enqueue_unqueued(DESTINATION) == JOBS
    finally:
        engine.dispose()
    return url


# --- The workers -----------------------------------------------------------


def start_workers(url: str, folder: Path) -> list[WorkerProcess]:
    script = Path(__file__).with_name("restart_workers.py")
    return worker_processes.start_workers(
        script, WORKERS, folder, lambda _index, report: [url, str(report)]
    )


# --- Watching the database -------------------------------------------------


#: Parameters that pick the listeners' connections in pg_stat_activity.
LISTENING = {"listen": f"LISTEN {READY_CHANNEL}"}


def _scalar(engine: sa.Engine, sql: str, params: dict[str, str] | None = None) -> Any:
    """The query's one value, or None while the server is away."""
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(sql, params or {}).scalar_one()
    except sa.exc.OperationalError:
        return None


def finished_jobs(engine: sa.Engine) -> int | None:
    return _scalar(engine, "SELECT count(*) FROM jobs.fulltext WHERE status = 'finished'")


def reached(engine: sa.Engine, threshold: int) -> bool:
    return (finished_jobs(engine) or 0) >= threshold


def listeners(engine: sa.Engine) -> int | None:
    return _scalar(
        engine,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query = %(listen)s",
        LISTENING,
    )


def terminate_listeners(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query = %(listen)s",
                LISTENING,
            ).scalar_one()
        )


# --- The test --------------------------------------------------------------


def inject_faults(
    server: PrivatePostgres, monitor: sa.Engine, workers: list[WorkerProcess]
) -> list[str]:
    """Start the server under the waiting workers, then restart, crash and
    cut the listeners at the thresholds; after each, wait until every worker
    listens again. Return what was done, with timings."""

    def start_late() -> None:
        time.sleep(DOWN_AT_START_SECONDS)
        server.start()

    def crash() -> None:
        server.check(server.stop("immediate"), "pg_ctl -m immediate stop")
        time.sleep(CRASH_SECONDS)
        server.start()

    def end_listeners() -> None:
        ended = terminate_listeners(monitor)
        assert ended == len(workers), f"{ended} listener connection(s) ended"

    faults = (
        (0, f"server down at start for {DOWN_AT_START_SECONDS:g} s", start_late),
        (RESTART_AT, "pg_ctl -m fast restart", lambda: server.restart("fast")),
        (CRASH_AT, f"pg_ctl -m immediate stop, {CRASH_SECONDS:g} s down, start", crash),
        (TERMINATE_AT, "pg_terminate_backend of every listener", end_listeners),
    )
    done = []
    for threshold, what, inject in faults:
        wait_for(partial(reached, monitor, threshold), f"progress before {what}", workers)
        at = finished_jobs(monitor) or 0
        began = time.monotonic()
        inject()
        took = time.monotonic() - began
        back = wait_for(
            lambda: listeners(monitor) == len(workers), f"listening after {what}", workers
        )
        done.append(
            f"{what}: at {at} finished, took {took:.2f} s; all listening {back:.1f} s after"
        )
    return done


@pytest.mark.slow
def test_default_workers_ride_out_outages_and_finish_every_job_once(
    request: pytest.FixtureRequest, tmp_path: Path
):
    # Checked here, before the fixtures, so that missing binaries fail the
    # test itself rather than erroring in setup.
    require_postgres_binaries()
    server: PrivatePostgres = request.getfixturevalue("private_postgres")
    url: str = request.getfixturevalue("restart_url")
    monitor = sa.create_engine(url, poolclass=NullPool)
    began = time.monotonic()
    server.check(server.stop("fast"), "pg_ctl -m fast stop")
    workers = start_workers(url, tmp_path)
    try:
        faults = inject_faults(server, monitor, workers)
        wait_for(lambda: finished_jobs(monitor) == JOBS, "every job finished", workers)
        stop_workers(workers)
    finally:
        kill_leftovers(workers)
    elapsed = time.monotonic() - began

    check_returned_normally(workers)
    stats = [worker.result["stats"] for worker in workers]
    totals: Counter[str] = Counter()
    for one in stats:
        totals.update(one)

    # Every job finished, by exactly one move to `finished`.
    with monitor.connect() as connection:
        by_status = dict(
            connection.exec_driver_sql(
                "SELECT status::text, count(*) FROM jobs.fulltext GROUP BY status"
            ).all()
        )
        moves = Counter(
            dict(
                connection.exec_driver_sql(
                    "SELECT job_id::text, count(*) FROM public.finishes GROUP BY job_id"
                ).all()
            )
        )
    monitor.dispose()
    assert by_status == {"finished": JOBS}
    assert len(moves) == JOBS
    assert set(moves.values()) == {1}, f"finished twice: {[j for j, n in moves.items() if n > 1]}"
    # The workers saw their finishes accepted, except those whose commit
    # they could not see (the connection died on the way back): those
    # came back to them as refused saves.
    assert totals["finished"] <= JOBS
    assert JOBS - totals["finished"] <= totals["lost_claims"]
    assert totals["failed"] == 0
    assert totals["retryable_errors"] > 0, "no worker saw the faults"

    # Nothing but one-line warnings in their logs.
    for worker in workers:
        text = worker.log_text()
        noisy = [line for line in text.splitlines() if any(n in line for n in NOISE)]
        assert noisy == [], f"{worker.name} logged noise:\n" + "\n".join(noisy[:20])

    print(f"\n{JOBS} jobs, {len(workers)} default Worker processes, {elapsed:.1f} s:")
    for line in faults:
        print(f"  {line}")
    keys = (
        "claimed",
        "finished",
        "released",
        "lost_claims",
        "retryable_errors",
        "dropped",
        "rescued",
        "heartbeats",
    )
    print("  totals: " + ", ".join(f"{key} {totals[key]}" for key in keys))
    warnings = Counter(
        warning_kind(line)
        for worker in workers
        for line in worker.log_text().splitlines()
        if " WARNING " in line
    )
    for what, count in warnings.most_common():
        print(f"  {count:4} x {what}")


def warning_kind(line: str) -> str:
    """A worker's WARNING line without its time, thread and ids."""
    message = line.split(": ", 1)[-1]
    retryable = re.match(r"(\w+) of \S+ failed \(retryable\)", message)
    if retryable:
        return f"retryable {retryable.group(1)} error"
    return re.sub(r"[0-9a-f-]{36}|item-\d+", "...", message)[:90]
