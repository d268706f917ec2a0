"""Workers for test_faults.py, importable by spawned children (which inherit
the parent's sys.path).

Each worker builds its own engine and repository, talks to the parent only
through its own queue (so a worker killed while writing to it cannot wedge
another's), and reports plain dicts of strings and numbers. Every wait is
bounded: a worker the parent forgets to kill gives up and exits on its own.
"""

from __future__ import annotations

import os
import time
import traceback
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event

import fulltext_jobs
from fulltext_jobs import FullText, JobStatus, LostClaim, NoJobs, SqlAlchemyRepository
from fulltext_jobs.domain import utc
from fulltext_jobs.sql.schema import tables_for

DESTINATION = "faults"

#: How long a worker meant to be killed waits before giving up on its own.
BLOCK_SECONDS = 60

#: How long a finishing worker keeps at it before giving up.
FINISH_SECONDS = 40

#: How often a polling worker looks again.
POLL_SECONDS = 0.05

#: A finishing worker stops after this many failures: enough to see a pattern.
MAX_ERRORS = 10

#: Every PostgreSQL statement of a worker is bounded: a lock it should never
#: have to wait for long fails it instead of hanging the test.
PG_OPTIONS = "-c lock_timeout=10000 -c statement_timeout=20000"


class _Out(Protocol):
    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None: ...


def app_name(name: str) -> str:
    """The PostgreSQL application_name of worker `name`'s connections, by
    which the parent finds (only) its backends in pg_stat_activity."""
    return f"ftj-fault-{name}"[:63]


def worker_engine(url: str, name: str, *, busy_timeout_ms: int | None = None) -> sa.Engine:
    """An engine of worker `name`'s own: on PostgreSQL with its
    application_name and bounded statements, on SQLite with `busy_timeout_ms`
    (if given) instead of the library's 60 s, so that a lock that lingers
    surfaces as an error in the report rather than as a slow test."""
    if sa.make_url(url).get_backend_name() == "postgresql":
        return fulltext_jobs.create_engine(
            url, connect_args={"application_name": app_name(name), "options": PG_OPTIONS}
        )
    engine = fulltext_jobs.create_engine(url)
    if busy_timeout_ms is not None:

        def shorter_busy_timeout(dbapi_connection: Any, _record: object) -> None:
            # Registered after the library's own "connect" listener, so it wins.
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            finally:
                cursor.close()

        event.listen(engine, "connect", shorter_busy_timeout)
    return engine


# --- Jobs as plain data --------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def job_report(job: FullText) -> dict[str, Any]:
    """`job` as plain data, fit for a queue."""
    return {
        "id": str(job.id),
        "item_id": job.item_id,
        "destination": job.destination,
        "started": _iso(job.started),
        "finished": _iso(job.finished),
        "status": job.status.value,
        "attempts": job.attempts,
        "claim_token": None if job.claim_token is None else str(job.claim_token),
        "lease_expires": _iso(job.lease_expires),
        "last_error": job.last_error,
    }


def job_from_report(report: dict[str, Any]) -> FullText:
    """The job a worker reported, rebuilt: what it held in memory."""
    return FullText(
        id=uuid.UUID(report["id"]),
        item_id=report["item_id"],
        destination=report["destination"],
        started=_moment(report["started"]),
        finished=_moment(report["finished"]),
        status=JobStatus(report["status"]),
        attempts=report["attempts"],
        claim_token=None if report["claim_token"] is None else uuid.UUID(report["claim_token"]),
        lease_expires=_moment(report["lease_expires"]),
        last_error=report["last_error"],
    )


def _error(name: str, out: _Out) -> None:
    out.put({"event": "error", "name": name, "error": traceback.format_exc()})


# --- A worker to be killed -------------------------------------------------------


def claim_and_block(
    url: str, name: str, destination: str, lease_seconds: float, hold_lock: bool, *, out: _Out
) -> None:
    """Claim one job with a short lease, report the claim, and block until
    killed (or, if nobody kills it, for BLOCK_SECONDS).

    With `hold_lock` the worker first starts saving the job as finished in
    a transaction it never commits: on PostgreSQL that holds the job's row
    lock, on SQLite (`BEGIN IMMEDIATE`) the database's write lock. The
    claim is reported only once the lock is held.
    """
    engine = None
    try:
        engine = worker_engine(url, name)
        repo = SqlAlchemyRepository(engine, lease=timedelta(seconds=lease_seconds))
        job = repo.get_ready_job(destination)
        claimed = {"event": "claimed", "name": name, "pid": os.getpid(), "job": job_report(job)}
        if not hold_lock:
            out.put({**claimed, "holding": False})
            time.sleep(BLOCK_SECONDS)
            return
        fulltext = tables_for(engine.dialect.name).fulltext
        with engine.connect() as connection:
            transaction = connection.begin()
            connection.execute(
                sa.update(fulltext)
                .where(fulltext.c.id == job.id, fulltext.c.claim_token == job.claim_token)
                .values(
                    status=JobStatus.FINISHED.value,
                    finished=utc(),
                    claim_token=None,
                    lease_expires=None,
                )
            )
            out.put({**claimed, "holding": True})
            time.sleep(BLOCK_SECONDS)
            # Nobody killed us: never let the half-done save through.
            transaction.rollback()
    except Exception:  # noqa: BLE001 - reported: the test fails on it
        _error(name, out)
    finally:
        if engine is not None:
            engine.dispose()


# --- A worker to be paused ---------------------------------------------------------


def claim_heartbeat_then_finish(
    url: str,
    name: str,
    destination: str,
    lease_seconds: float,
    go_file: str,
    *,
    out: _Out,
) -> None:
    """Claim one job with a short lease and "work" on it, heartbeating every
    quarter of the lease and reporting each new lease, until `go_file`
    exists; then finish the job and save it, and report what the save did.

    A heartbeat that finds the claim lost is reported too, and the worker
    still tries its save, as one would whose pause fell just before it.
    """
    engine = None
    try:
        engine = worker_engine(url, name)
        repo = SqlAlchemyRepository(engine, lease=timedelta(seconds=lease_seconds))
        job = repo.get_ready_job(destination)
        out.put({"event": "claimed", "name": name, "pid": os.getpid(), "job": job_report(job)})
        heartbeat_seconds = lease_seconds / 4
        go = Path(go_file)
        deadline = time.monotonic() + BLOCK_SECONDS
        heartbeat_lost = False
        last_beat = time.monotonic()
        while not go.exists():
            if time.monotonic() > deadline:
                out.put({"event": "error", "name": name, "error": "no go signal in time"})
                return
            time.sleep(POLL_SECONDS)
            if heartbeat_lost or time.monotonic() - last_beat < heartbeat_seconds:
                continue
            try:
                lease = repo.heartbeat(job)
            except LostClaim:
                heartbeat_lost = True
            else:
                last_beat = time.monotonic()
                out.put({"event": "heartbeat", "name": name, "lease": lease.isoformat()})
        job.finish()
        try:
            repo.save_fulltext(job)
        except LostClaim:
            outcome = "LostClaim"
        else:
            outcome = "saved"
        out.put(
            {
                "event": "done",
                "name": name,
                "finish": outcome,
                "heartbeat_lost": heartbeat_lost,
                "job": job_report(job),
            }
        )
    except Exception:  # noqa: BLE001 - reported: the test fails on it
        _error(name, out)
    finally:
        if engine is not None:
            engine.dispose()


# --- Workers that finish the work ----------------------------------------------------


def finish_until_done(
    url: str,
    name: str,
    destination: str,
    go_file: str | None = None,
    busy_timeout_ms: int | None = None,
    *,
    out: _Out,
) -> None:
    """Claim, finish and save jobs one at a time; when none is ready, give
    expired claims back (`rescue_expired`) and look again, until no job of
    `destination` is ready or running.

    Reports "ready" once its engine is connected (then waits for `go_file`,
    if given) and, at the end, every job it finished and every exception
    other than `NoJobs` that reached it. It never raises: the report is the
    result.
    """
    report: dict[str, Any] = {
        "event": "report",
        "name": name,
        "pid": os.getpid(),
        # (job id, claim token, finished, attempts) of each job it finished.
        "finished": [],
        "rescued": 0,
        "errors": [],
        "done": False,
    }
    engine = None
    try:
        engine = worker_engine(url, name, busy_timeout_ms=busy_timeout_ms)
        repo = SqlAlchemyRepository(engine)
        repo.stats(destination)  # checks the schema and pools a connection
        out.put({"event": "ready", "name": name, "pid": os.getpid()})
        if go_file is not None:
            _wait_for(Path(go_file))
        deadline = time.monotonic() + FINISH_SECONDS
        while time.monotonic() < deadline and len(report["errors"]) < MAX_ERRORS:
            try:
                if _finish_one(repo, destination, report):
                    continue
                report["rescued"] += repo.rescue_expired(destination)
                (stats,) = repo.stats(destination)
                if stats.counts[JobStatus.READY] == stats.counts[JobStatus.RUNNING] == 0:
                    report["done"] = True
                    break
            except Exception as exc:  # noqa: BLE001 - any exception reaching a caller is the finding
                report["errors"].append(f"{exc!r}\n{traceback.format_exc()}")
            time.sleep(POLL_SECONDS)
    except Exception as exc:  # noqa: BLE001 - reported: the test fails on it
        report["errors"].append(f"{exc!r}\n{traceback.format_exc()}")
    finally:
        if engine is not None:
            engine.dispose()
        out.put(report)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + BLOCK_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            msg = f"{path} did not appear in {BLOCK_SECONDS} s"
            raise TimeoutError(msg)
        time.sleep(POLL_SECONDS / 5)


def _finish_one(repo: SqlAlchemyRepository, destination: str, report: dict[str, Any]) -> bool:
    """Claim a job, finish it and save it; False if none was ready."""
    try:
        job = repo.get_ready_job(destination)
    except NoJobs:
        return False
    job.finish()
    repo.save_fulltext(job)
    report["finished"].append(
        {
            "id": str(job.id),
            "claim_token": str(job.claim_token),
            "finished": _iso(job.finished),
            "attempts": job.attempts,
        }
    )
    return True
