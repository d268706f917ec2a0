"""Fault injection: the PostgreSQL server restarts under four worker
processes, and after recovery every job has been finished exactly once.

The server is a private instance started for this module (PostgreSQL 15's
`initdb` and `pg_ctl`, in a temporary directory, on a free port); the shared
test server is never touched. While the workers go through 5,000 jobs the
test restarts it three ways: a fast restart, a fast stop with an outage
longer than the workers' lease, and an immediate stop (a crash, with
recovery on start).

The workers (tests/restart_workers.py) handle errors as a real worker would
and record every job they saved. The test then checks that no exception
other than retryable `StoreError` and `LostClaim` reached them, that every
job is `finished` in the database, and that each was reported finished by
exactly one save.

Every wait is bounded; the server is stopped and its directory removed
however the test ends. The test fails, never skips, without PostgreSQL 15.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from restart_workers import DESTINATION, LEASE, restart_worker
from sqlalchemy.pool import NullPool

import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository
from fulltext_jobs.schema import tables_for

#: Where PostgreSQL's server binaries are.
PG_BIN = Path(os.environ.get("FULLTEXT_JOBS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))

JOBS = 5_000

#: (workers, claim batch size) per worker: two claim one job at a time and
#: save it alone, two claim ten at a time and save them together.
WORKER_BATCHES = (1, 1, 10, 10)

#: How long each worker may work before it gives up.
WORKER_SECONDS = 150

#: The whole test, from the first worker started to the last report.
DEADLINE_SECONDS = 180

#: Each fault: once this many jobs are finished, stop the server in `mode`,
#: keep it down for `down` seconds (None: `pg_ctl restart`), start it again.
FAULTS = (
    (1_000, "fast", None),
    (2_200, "fast", LEASE.total_seconds() + 1),
    (3_400, "immediate", 1.0),
)

PG_CTL_TIMEOUT_SECONDS = 60


# --- The private server ----------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrivatePostgres:
    """A PostgreSQL instance of this module's own, run as the `postgres`
    user when the tests run as root (initdb and postgres refuse root)."""

    base: Path
    port: int = 0

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run(
            [*as_postgres, str(PG_BIN / program), *args],
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT_SECONDS,
            check=False,
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            pytest.fail(
                f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"server log:\n{self.log_tail()}"
            )

    def initdb(self) -> None:
        self.check(
            self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"),
            "initdb",
        )

    def try_start(self) -> subprocess.CompletedProcess[str]:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        return self.run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w",
            "-t", str(PG_CTL_TIMEOUT_SECONDS), "start",
        )  # fmt: skip

    def start(self) -> None:
        self.check(self.try_start(), f"pg_ctl start on port {self.port}")

    def stop(self, mode: str = "fast") -> subprocess.CompletedProcess[str]:
        return self.run(
            "pg_ctl", "-D", str(self.data), "-m", mode, "-w",
            "-t", str(PG_CTL_TIMEOUT_SECONDS), "stop",
        )  # fmt: skip

    def restart(self, mode: str = "fast") -> None:
        self.check(
            self.run(
                "pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                "-t", str(PG_CTL_TIMEOUT_SECONDS), "-l", str(self.log), "restart",
            ),
            f"pg_ctl -m {mode} restart",
        )  # fmt: skip

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def kill_postmaster(self) -> None:
        """Last resort: the postmaster this fixture started, by its pid."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 9)
        except (OSError, ValueError, IndexError):
            pass


def require_postgres_binaries() -> None:
    """Fail (never skip) with a clear message if the binaries are missing."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        pytest.fail(
            f"PostgreSQL 15's initdb and pg_ctl are not in {PG_BIN}: install "
            "postgresql-15 (apt-get install postgresql-15) or point "
            "FULLTEXT_JOBS_TEST_PG_BIN at the folder that has them. The restart "
            "test starts and restarts a server of its own and cannot run without them."
        )


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh PostgreSQL 15 instance on a free port, stopped and deleted at
    the end of the module."""
    require_postgres_binaries()
    base = Path(tempfile.mkdtemp(prefix="ftj-restart-"))
    server = PrivatePostgres(base)
    try:
        if os.geteuid() == 0:
            shutil.chown(base, user="postgres", group="postgres")
        server.initdb()
        for _ in range(5):
            server.port = _free_port()
            started = server.try_start()
            if started.returncode == 0:
                break
        else:
            server.check(started, "pg_ctl start")
        yield server
    finally:
        if server.running():
            stopped = server.stop("fast")
            if stopped.returncode != 0 and server.running():
                server.stop("immediate")
            if server.running():
                server.kill_postmaster()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def restart_url(private_postgres: PrivatePostgres) -> str:
    """A migrated database on the private server, with JOBS ready jobs."""
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
        repo = SqlAlchemyRepository(engine)
        assert repo.add_items(f"item-{n:05}" for n in range(JOBS)) == JOBS
        assert repo.enqueue_unqueued(DESTINATION) == JOBS
    finally:
        engine.dispose()
    return url


# --- The test --------------------------------------------------------------


def _finished_count(engine: sa.Engine) -> int | None:
    """Finished jobs, or None while the server is away."""
    fulltext = tables_for("postgresql").fulltext
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count()).where(fulltext.c.status == "finished")
            ).scalar_one()
    except sa.exc.OperationalError:
        return None


def _inject_faults(
    server: PrivatePostgres, monitor: sa.Engine, procs: list[Any], deadline: float
) -> list[tuple[str, int, float]]:
    """Restart the server at each of FAULTS' thresholds; return (what, jobs
    finished at that moment, seconds the server was away) per restart."""
    done: list[tuple[str, int, float]] = []
    for threshold, mode, down in FAULTS:
        while time.monotonic() < deadline and any(proc.is_alive() for proc in procs):
            finished = _finished_count(monitor)
            if finished is not None and finished >= threshold:
                break
            time.sleep(0.02)
        else:
            return done
        began = time.monotonic()
        if down is None:
            server.restart(mode)
            what = f"pg_ctl -m {mode} restart"
        else:
            server.check(server.stop(mode), f"pg_ctl -m {mode} stop")
            time.sleep(down)
            server.start()
            what = f"pg_ctl -m {mode} stop, {down:g} s down, start"
        done.append((what, finished, time.monotonic() - began))
    return done


def _collect(results: Any, procs: list[Any], deadline: float) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    try:
        reports.extend(results.get(timeout=max(1.0, deadline - time.monotonic())) for _ in procs)
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {len(procs)} workers reported in time")
    return reports


def _run_workers(
    server: PrivatePostgres, url: str
) -> tuple[list[dict[str, Any]], list[tuple[str, int, float]]]:
    """Start the workers, restart the server under them, and return their
    reports and the restarts done."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    procs = [
        context.Process(target=restart_worker, args=(url, index, batch, WORKER_SECONDS, results))
        for index, batch in enumerate(WORKER_BATCHES)
    ]
    monitor = sa.create_engine(url, poolclass=NullPool)
    completed = False
    try:
        for proc in procs:
            proc.start()
        restarts = _inject_faults(server, monitor, procs, deadline)
        reports = _collect(results, procs, deadline)
        completed = True
    finally:
        for proc in procs:
            # After a failure, do not wait for the workers' own deadline.
            proc.join(timeout=30 if completed else 0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        monitor.dispose()
    return reports, restarts


def _stored_jobs(url: str) -> list[sa.Row[Any]]:
    fulltext = tables_for("postgresql").fulltext
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    sa.select(fulltext.c.id, fulltext.c.status, fulltext.c.attempts).where(
                        fulltext.c.destination == DESTINATION
                    )
                ).all()
            )
    finally:
        engine.dispose()


@pytest.mark.slow
def test_every_job_finished_exactly_once_across_server_restarts(request: pytest.FixtureRequest):
    # Checked here, before the fixtures, so that missing binaries fail the
    # test itself rather than erroring in setup.
    require_postgres_binaries()
    server: PrivatePostgres = request.getfixturevalue("private_postgres")
    url: str = request.getfixturevalue("restart_url")
    began = time.monotonic()
    reports, restarts = _run_workers(server, url)
    elapsed = time.monotonic() - began

    # What the workers saw: nothing but retryable errors and lost claims.
    failures = [f"{r['name']}: {text}\n{trace}" for r in reports for text, trace in r["failures"]]
    assert failures == [], (
        f"{len(failures)} unexpected exception(s) reached a worker; the first:\n{failures[0]}"
    )
    unfinished = [r["name"] for r in reports if r["stopped"] != "done"]
    assert unfinished == [], f"workers still working at their deadline: {unfinished}"

    # Every fault was injected while jobs were still in flight, and seen.
    assert len(restarts) == len(FAULTS), f"only {len(restarts)} restart(s): {restarts}"
    assert all(finished < JOBS for _, finished, _ in restarts), restarts
    retryable = Counter((action, message) for r in reports for action, message in r["retryable"])
    assert retryable, "no worker saw the restarts: the fault was not injected"

    # Every job is finished in the database: none failed, none left behind.
    rows = _stored_jobs(url)
    assert len(rows) == JOBS
    statuses = Counter(row.status for row in rows)
    assert statuses == {"finished": JOBS}, f"jobs by status after recovery: {dict(statuses)}"

    # Each job finished by exactly one successful save.
    saves = Counter(job_id for r in reports for job_id in r["finished"])
    twice = sorted(job_id for job_id, count in saves.items() if count > 1)
    assert twice == [], f"{len(twice)} job(s) saved as finished more than once: {twice[:5]}"
    never = sorted({str(row.id) for row in rows} - set(saves))
    assert never == [], (
        f"{len(never)} finished job(s) that no worker saved successfully: {never[:5]}"
    )
    assert sum(saves.values()) == JOBS

    print(
        f"\n{JOBS} jobs, {len(reports)} workers, {len(restarts)} restarts in {elapsed:.1f} s; "
        f"finishes per worker {[len(r['finished']) for r in reports]}; "
        f"{retryable.total()} retryable StoreError(s), "
        f"{sum(len(r['lost_claims']) for r in reports)} LostClaim(s), "
        f"{sum(len(r['confirmed_after_error']) for r in reports)} save(s) found committed "
        f"after a retryable error, {sum(len(r['abandoned']) for r in reports)} abandoned, "
        f"{sum(r['rescued'] for r in reports)} job(s) rescued, "
        f"most attempts of one job {max(row.attempts for row in rows)}"
    )
    for what, finished, away in restarts:
        print(f"  restart: {what} at {finished} finished, {away:.2f} s")
    for (action, message), count in retryable.most_common():
        print(f"  {count:4} x {action}: {message}")
