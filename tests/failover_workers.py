"""A worker process for test_failover.py: the public `Worker` of
tests/restart_workers.py, on a repository that also writes down each
finish the database acknowledged.

    python failover_workers.py URL REPORT ACKS {sync,async} BATCH_SIZE CONCURRENCY

URL is a multi-host URL (the primary, then its standby, with
`target_session_attrs=read-write`): the worker follows a failover through
it alone. ACKS gets one line per acknowledged finish, `<job id>
<time.time()>`, written when `save_fulltext` or `save_many` returned (a
save whose commit the worker never saw confirmed is not written): the test
compares them with the finishes the new primary holds.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from restart_workers import LEASE, configure_logs, run_worker
from sqlalchemy.engine import Engine

import fulltext_jobs
from fulltext_jobs import FullText, JobStatus, SqlAlchemyRepository, StaleJobs


class AckingRepository(SqlAlchemyRepository):
    """A repository that writes each job it saved as finished to `acks`,
    once the save returned (the commit acknowledged)."""

    def __init__(self, engine: Engine, acks: TextIO) -> None:
        super().__init__(engine, lease=LEASE)
        self._acks = acks
        self._lock = threading.Lock()

    def save_fulltext(self, job: FullText) -> None:
        super().save_fulltext(job)
        self._ack([job])

    def save_many(self, jobs: Iterable[FullText], *, atomic: bool = True) -> None:
        batch = list(jobs)
        try:
            super().save_many(batch, atomic=atomic)
        except StaleJobs as exc:
            # The others of the batch were saved, in the same commit.
            self._ack([job for job in batch if job.id not in exc.refused])
            raise
        self._ack(batch)

    def _ack(self, jobs: list[FullText]) -> None:
        at = time.time()
        lines = "".join(f"{job.id} {at:.6f}\n" for job in jobs if job.status is JobStatus.FINISHED)
        if lines:
            with self._lock:
                self._acks.write(lines)
                self._acks.flush()


def main(argv: list[str]) -> int:
    url, report, acks = argv[0], Path(argv[1]), Path(argv[2])
    kind, batch_size, concurrency = argv[3], int(argv[4]), int(argv[5])
    configure_logs()
    engine = fulltext_jobs.create_engine(url)
    try:
        with acks.open("a", encoding="utf-8") as out:
            return run_worker(AckingRepository(engine, out), report, kind, batch_size, concurrency)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
