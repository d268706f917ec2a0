"""Processes for test_pipeline.py, importable by spawned children (which
inherit the parent's sys.path).

Each one reports through a queue and never raises: the report is the
result, and an exception in it is the finding.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from typing import Any

import fulltext_jobs
from fulltext_jobs import FullText, SqlAlchemyRepository, Worker

#: How long a process waits for the test's signals; past it, it stops by
#: itself (the test has failed or gone by then).
WAIT_SECONDS = 120


def produce_and_work(  # noqa: PLR0917 - a spawned process's arguments
    url: str,
    destination: str,
    job_seconds: float,
    settings: dict[str, Any],
    ready: Any,
    go: Any,
    stop: Any,
    results: Any,
) -> None:
    """A `Worker` of `destination` that produces its own jobs
    (`produce=True`), with `settings`, whose handler takes `job_seconds`.
    Puts None on `ready` once built, runs once `go` is set and until `stop`
    is, then puts its report on `results`: its destination, when
    (`time.time()`) its handler began each job, by item id, and its stats
    (as a dict) or the error that ended it."""
    began: dict[str, float] = {}
    report: dict[str, Any] = {"destination": destination, "error": None, "began": began}
    engine = fulltext_jobs.create_engine(url)
    try:

        def handler(job: FullText) -> None:
            began[job.item_id] = time.time()
            time.sleep(job_seconds)

        worker = Worker(
            SqlAlchemyRepository(engine), destination, handler, produce=True, **settings
        )
        ready.put(None)
        threading.Thread(
            target=lambda: (stop.wait(WAIT_SECONDS), worker.stop()), daemon=True
        ).start()
        if not go.wait(WAIT_SECONDS):
            report["error"] = "no go"
        else:
            stats = worker.run(install_signal_handlers=False)
            report["stats"] = dataclasses.asdict(stats)
    except Exception:  # noqa: BLE001 - reported: the test fails on it
        report["error"] = traceback.format_exc()
    finally:
        engine.dispose()
    results.put(report)
