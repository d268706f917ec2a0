"""A worker process for test_server_restart.py: the public `Worker`, as a
user runs it, in a process of its own.

    python restart_workers.py URL REPORT {sync,async} BATCH_SIZE CONCURRENCY

It builds an engine and a repository, and runs `Worker(...).run()` in the
main thread with the defaults that matter under faults: listening on, the
default poll interval and backoff, SIGTERM and SIGINT handled by `run()`.
What it sets is what a deployment with short outages would: a short lease
(so that jobs whose claim a restart swallowed come back soon), the producer
rescuing expired jobs every second, and enough attempts that no job fails.
The handler "works" a few milliseconds, as a function or as a coroutine.

Logs go to stderr (INFO and up), which the test reads for noise. When
`run()` returns, the worker writes its stats to REPORT as JSON and exits 0;
if `run()` raises, it writes the exception and exits 1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import fulltext_jobs
from fulltext_jobs import FullText, SqlAlchemyRepository, Worker

DESTINATION = "restart"

#: Short, so that a claim lost in an outage comes back within seconds; the
#: heartbeats (every third of it) keep live jobs.
LEASE = timedelta(seconds=4)

#: How often the producer rescues expired jobs.
RESCUE_SECONDS = 1.0

#: High, so that no job ends `failed` however many claims the faults cost.
MAX_ATTEMPTS = 50

#: How long one job's "work" takes: slows the run down enough for the test
#: to inject its faults while jobs are in flight.
WORK_SECONDS = 0.01


def work(_job: FullText) -> None:
    time.sleep(WORK_SECONDS)


async def work_async(_job: FullText) -> None:
    await asyncio.sleep(WORK_SECONDS)


def configure_logs() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )


def run_worker(
    repository: SqlAlchemyRepository, report: Path, kind: str, batch_size: int, concurrency: int
) -> int:
    """Run a `Worker` on `repository` until a signal stops it; write its
    stats (or its exception) to `report`; return the exit status."""
    worker = Worker(
        repository,
        DESTINATION,
        work_async if kind == "async" else work,
        batch_size=batch_size,
        concurrency=concurrency,
        produce=True,
        rescue_interval=RESCUE_SECONDS,
        max_attempts=MAX_ATTEMPTS,
    )
    try:
        stats = worker.run()
    except BaseException as exc:  # noqa: BLE001 - the finding: reported, then exit 1
        report.write_text(
            json.dumps({"error": f"{exc!r}\n{traceback.format_exc()}", "stats": None})
        )
        return 1
    report.write_text(json.dumps({"error": None, "stats": dataclasses.asdict(stats)}))
    return 0


def main(url: str, report: Path, kind: str, batch_size: int, concurrency: int) -> int:
    configure_logs()
    engine = fulltext_jobs.create_engine(url)
    try:
        return run_worker(
            SqlAlchemyRepository(engine, lease=LEASE), report, kind, batch_size, concurrency
        )
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
