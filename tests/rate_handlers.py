"""Handlers for the rate-limit tests: `work --handler rate_handlers:NAME`,
run with this folder as the working directory."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from fulltext_jobs import FullText

#: The longest the first job of a process waits for the other processes.
_BARRIER_SECONDS = 60.0

_first = threading.Event()


def logged(job: FullText) -> None:
    """Append the job's id to this process's file in `RATE_LOG_DIR`: the
    test counts who ran what, and how often.

    The first job of each process waits until `RATE_PROCESSES` processes
    (default 1) have started theirs, so that on a busy machine one process
    cannot do all the work before the others have started up."""
    folder = Path(os.environ["RATE_LOG_DIR"])
    if not _first.is_set():
        _first.set()
        (folder / f"{os.getpid()}.ready").touch()
        expected = int(os.environ.get("RATE_PROCESSES", "1"))
        deadline = time.monotonic() + _BARRIER_SECONDS
        while len(list(folder.glob("*.ready"))) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
    with (folder / f"{os.getpid()}.log").open("a", encoding="utf-8") as log:
        log.write(f"{job.id}\n")
