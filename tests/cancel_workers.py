"""A worker process for test_cancel.py, importable by spawned children
(which inherit the parent's sys.path). It reports through a queue and never
raises: the report is the result, and an exception in it is the finding."""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import Any

import fulltext_jobs
from fulltext_jobs import FullText, SqlAlchemyRepository, Worker, cancel_requested

DESTINATION = "dest"

#: The longest a handler runs if no cancel reaches it.
HANDLER_SECONDS = 30


def run_one_long_job(url: str, kind: str, settings: dict[str, Any], results: Any) -> None:
    """A `Worker` until idle whose handler (`kind`: "sync", polling
    `cancel_requested()`, or "async", sleeping) runs until cancelled, or
    `HANDLER_SECONDS`; report when the handler saw the cancel (epoch
    seconds) and the worker's stats."""
    report: dict[str, Any] = {"heard_at": None, "error": None}

    def sync_handler(job: FullText) -> None:  # noqa: ARG001 - the handler's signature
        ends = time.monotonic() + HANDLER_SECONDS
        while time.monotonic() < ends:
            if cancel_requested():
                report["heard_at"] = time.time()
                return
            time.sleep(0.005)

    async def async_handler(job: FullText) -> None:  # noqa: ARG001 - the handler's signature
        try:
            await asyncio.sleep(HANDLER_SECONDS)
        except asyncio.CancelledError:
            report["heard_at"] = time.time()
            raise

    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)
        handler = sync_handler if kind == "sync" else async_handler
        worker = Worker(repo, DESTINATION, handler, poll_interval=0.05, **settings)
        report["stats"] = worker.run(until_idle=True, install_signal_handlers=False)
    except Exception:  # noqa: BLE001 - reported: the test fails on it
        report["error"] = traceback.format_exc()
    finally:
        engine.dispose()
    results.put(report)
