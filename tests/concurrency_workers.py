"""Workers for test_concurrency.py, importable by spawned children (which
inherit the parent's sys.path) and used by the thread test too.

A worker creates jobs one at a time until `AllQueued`, then claims one at a
time until `NoJobs`, and reports what it created, what it claimed and every
other exception that reached it. It never raises: the report is the result.
"""

from __future__ import annotations

import os
import threading
import traceback
from typing import Any, Protocol

import fulltext_jobs
from fulltext_jobs import AllQueued, NoJobs, Repository, SqlAlchemyRepository

DESTINATION = "dest"

#: How long a worker waits at the start line for the others.
BARRIER_TIMEOUT_SECONDS = 60

#: No worker makes more calls than this: a bound in case `AllQueued` or
#: `NoJobs` never comes (500 items need 501 calls of each kind).
MAX_CALLS = 10_000

#: A worker stops after this many failures: enough to see a pattern.
MAX_FAILURES = 20


class _Barrier(Protocol):
    def wait(self, timeout: float | None = None) -> int: ...  # pragma: no cover

    def abort(self) -> None: ...  # pragma: no cover


def new_report(name: str) -> dict[str, Any]:
    return {
        "name": name,
        # (item_id, job id) of each job this worker created.
        "created": [],
        # (job id, item_id, destination, status, started is set) of each claim.
        "claimed": [],
        # (repr, traceback) of every exception other than AllQueued / NoJobs.
        "failures": [],
        "all_queued": False,
        "no_jobs": False,
    }


def _record_failure(report: dict[str, Any], exc: BaseException) -> None:
    report["failures"].append((repr(exc), traceback.format_exc()))


def create_then_claim(
    repo: Repository, barrier: _Barrier, report: dict[str, Any], destination: str = DESTINATION
) -> None:
    """Wait for the others, then create until AllQueued and claim until
    NoJobs, recording everything in `report`. A failure is recorded and the
    worker goes on calling, so one error does not hide the next."""
    try:
        barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - recorded: the test fails on it
        _record_failure(report, exc)
        barrier.abort()
        return
    if _create_all(repo, report, destination):
        _claim_all(repo, report, destination)


def _create_all(repo: Repository, report: dict[str, Any], destination: str) -> bool:
    """Create until AllQueued; False if the worker gave up on failures."""
    for _ in range(MAX_CALLS):
        try:
            job = repo.create_job_for_unqueued(destination)
        except AllQueued:
            report["all_queued"] = True
            return True
        except Exception as exc:  # noqa: BLE001 - any exception reaching a caller is the finding
            _record_failure(report, exc)
            if len(report["failures"]) >= MAX_FAILURES:
                return False
        else:
            report["created"].append((job.item_id, str(job.id)))
    return True


def _claim_all(repo: Repository, report: dict[str, Any], destination: str) -> None:
    """Claim until NoJobs."""
    for _ in range(MAX_CALLS):
        try:
            job = repo.get_ready_job(destination)
        except NoJobs:
            report["no_jobs"] = True
            return
        except Exception as exc:  # noqa: BLE001 - any exception reaching a caller is the finding
            _record_failure(report, exc)
            if len(report["failures"]) >= MAX_FAILURES:
                return
        else:
            started = job.started is not None
            report["claimed"].append(
                (str(job.id), job.item_id, job.destination, job.status.value, started)
            )


def process_worker(url: str, index: int, barrier: _Barrier, results: Any) -> None:
    """The body of one spawned process: its own engine and repository."""
    report = new_report(f"process {index} (pid {os.getpid()})")
    engine = None
    try:
        engine = fulltext_jobs.create_engine(url)
        repo = SqlAlchemyRepository(engine)
    except Exception as exc:  # noqa: BLE001 - recorded: the test fails on it
        _record_failure(report, exc)
        barrier.abort()
    else:
        create_then_claim(repo, barrier, report)
    finally:
        if engine is not None:
            engine.dispose()
    results.put(report)


def thread_worker(
    repo: Repository, index: int, barrier: threading.Barrier, reports: list[dict[str, Any]]
) -> None:
    """The body of one thread sharing `repo` with the others."""
    report = new_report(f"thread {index}")
    reports.append(report)
    create_then_claim(repo, barrier, report)
