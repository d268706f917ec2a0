"""Processes for test_batch_path.py, importable by spawned children (which
inherit the parent's sys.path).

Each one reports through a queue and never raises: the report is the
result, and an exception in it is the finding.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import fulltext_jobs
from fulltext_jobs import FullText, RetryAfter, SqlAlchemyRepository, StaleJobs, Worker

DESTINATION = "dest"

#: How long a process waits for the test's signals.
WAIT_SECONDS = 60


def drain_with_a_worker(url: str, batch_size: int, barrier: Any, results: Any) -> None:
    """A `Worker` at `batch_size` until no job is ready; report the ids it
    handled and its stats."""
    _drain_and_report(url, barrier, results, batch_size=batch_size)


def _drain_and_report(
    url: str,
    barrier: Any,
    results: Any,
    *,
    on_job: Callable[[FullText, int], None] | None = None,
    **settings: Any,
) -> None:
    """A `Worker` with `settings` until no job is ready, its handler
    recording each job's id (and then calling `on_job` with the job and how
    many were handled); report the ids and the worker's stats."""
    handled: list[uuid.UUID] = []
    lock = threading.Lock()

    def handler(job: FullText) -> None:
        with lock:
            handled.append(job.id)
            count = len(handled)
        if on_job is not None:
            on_job(job, count)

    report: dict[str, Any] = {"handled": handled, "error": None}
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)
        barrier.wait(timeout=WAIT_SECONDS)
        worker = Worker(repo, DESTINATION, handler, listen=False, poll_interval=0.01, **settings)
        report["stats"] = worker.run(until_idle=True, install_signal_handlers=False)
    except Exception:  # noqa: BLE001 - reported: the test fails on it
        report["error"] = traceback.format_exc()
    finally:
        engine.dispose()
    results.put(report)


def claim_wait_and_save(url: str, n: int, claimed: Any, go: Any, results: Any) -> None:
    """Claim `n` jobs (a 1-hour lease) and report their ids; once `go` is
    set, finish them all and save them with `save_many(atomic=False)`;
    report the ids refused and the versions of the copies after the save."""
    report: dict[str, Any] = {"claimed": [], "refused": None, "error": None}
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine, lease=timedelta(hours=1))
        jobs = repo.claim_ready(DESTINATION, n)
        report["claimed"] = [job.id for job in jobs]
        claimed.put(report["claimed"])
        if not go.wait(timeout=WAIT_SECONDS):
            report["error"] = "no go"
        else:
            for job in jobs:
                job.finish()
            try:
                repo.save_many(jobs, atomic=False)
                report["refused"] = []
            except StaleJobs as exc:
                report["refused"] = list(exc.refused)
            report["versions"] = {job.id: job.version for job in jobs}
    except Exception:  # noqa: BLE001 - reported: the test fails on it
        report["error"] = traceback.format_exc()
    finally:
        engine.dispose()
    results.put(report)


def drain_in_transaction(  # noqa: PLR0917 - a spawned process's arguments
    url: str, batch_size: int, barrier: Any, results: Any, blocked: Any = None, block_at: int = 0
) -> None:
    """A `Worker` in transaction mode (`in_transaction=True`) at `batch_size`
    until no job is ready; report the ids it handled and its stats. With
    `block_at`, the handler of its `block_at`-th job puts that job's id on
    `blocked` and sleeps, inside its batch's transaction, until the test
    kills the process."""

    def block(job: FullText, count: int) -> None:
        if count == block_at:
            blocked.put(job.id)
            threading.Event().wait(WAIT_SECONDS * 10)

    _drain_and_report(
        url, barrier, results, on_job=block, batch_size=batch_size, in_transaction=True
    )


#: The exit status of a worker whose handler killed its process.
DIED = 3


def work_until_the_poison(url: str, poison: str) -> None:
    """A `Worker` in transaction mode with its defaults, whose handler
    kills the process (`os._exit`, no cleanup, as a segfault would) on the
    job of item `poison` and finishes every other; it exits 0 once no job
    is ready."""

    def handler(job: FullText) -> None:
        if job.item_id == poison:
            os._exit(DIED)

    engine = fulltext_jobs.create_engine(url)
    try:
        worker = Worker(SqlAlchemyRepository(engine), DESTINATION, handler, in_transaction=True)
        worker.run(until_idle=True, install_signal_handlers=False)
    finally:
        engine.dispose()


def _run_until_stopped(  # noqa: PLR0917 - a spawned process's arguments
    url: str,
    handler: Callable[[FullText], None],
    report: dict[str, Any],
    ready: Any,
    stop: Any,
    results: Any,
    settings: Any,
) -> None:
    """Run a `Worker` of `handler` with its defaults (and `settings`) until
    `stop` is set; put None on `ready` once it runs, then `report`, with
    its stats or the error that ended it, on `results`."""
    report["error"] = None
    engine = fulltext_jobs.create_engine(url)
    try:
        worker = Worker(SqlAlchemyRepository(engine), DESTINATION, handler, **(settings or {}))
        threading.Thread(target=lambda: (stop.wait(WAIT_SECONDS * 5), worker.stop())).start()
        ready.put(None)
        report["stats"] = worker.run(install_signal_handlers=False)
    except Exception:  # noqa: BLE001 - reported: the test fails on it
        report["error"] = traceback.format_exc()
    finally:
        engine.dispose()
    results.put(report)


def drain_until_stopped(  # noqa: PLR0917 - a spawned process's arguments
    url: str, job_seconds: float, ready: Any, stop: Any, results: Any, settings: Any = None
) -> None:
    """A `Worker` with its defaults (and `settings`, if given) whose handler
    takes `job_seconds`, running until `stop` is set (not until idle: it
    waits through pauses); puts None on `ready` once it runs, then reports
    the ids it handled, each with when (`time.time()`), and its stats."""
    handled: list[tuple[uuid.UUID, float]] = []
    lock = threading.Lock()

    def handler(job: FullText) -> None:
        time.sleep(job_seconds)
        with lock:
            handled.append((job.id, time.time()))

    _run_until_stopped(url, handler, {"handled": handled}, ready, stop, results, settings)


def drain_backing_off(  # noqa: PLR0917 - a spawned process's arguments
    url: str,
    job_seconds: float,
    upstream: tuple[str, float],
    ready: Any,
    stop: Any,
    results: Any,
    settings: Any = None,
) -> None:
    """`drain_until_stopped`, whose handler, on the job of item
    `upstream[0]` that has never backed off, raises
    `RetryAfter(upstream[1], pause=True)`: its service asks the fleet for
    time. Each handled entry is (job id, when it began, attempts, backoffs
    as the handler saw them)."""
    item_id, seconds = upstream
    handled: list[tuple[str, float, int, int]] = []
    lock = threading.Lock()

    def handler(job: FullText) -> None:
        with lock:
            handled.append((str(job.id), time.time(), job.attempts, job.backoffs))
        if job.item_id == item_id and not job.backoffs:
            raise RetryAfter(seconds, pause=True, reason="503 from upstream")
        time.sleep(job_seconds)

    _run_until_stopped(url, handler, {"handled": handled}, ready, stop, results, settings)


def drain_counting(  # noqa: PLR0917 - a spawned process's arguments
    url: str,
    job_seconds: float,
    in_flight: Any,
    most: Any,
    ready: Any,
    stop: Any,
    results: Any,
    settings: Any = None,
) -> None:
    """`drain_until_stopped`, with a handler that counts the handlers running
    at once in every process (`in_flight`, a shared integer under its lock)
    and keeps the most it saw in `most`."""

    def handler(job: FullText) -> None:
        del job
        with in_flight.get_lock():
            in_flight.value += 1
            most.value = max(most.value, in_flight.value)
        try:
            time.sleep(job_seconds)
        finally:
            with in_flight.get_lock():
                in_flight.value -= 1

    _run_until_stopped(url, handler, {}, ready, stop, results, settings)
