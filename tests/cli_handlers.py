"""Handlers for the command line's tests: `work --handler cli_handlers:NAME`.

The tests run `work` with this folder as the working directory (or on
`sys.path`), which is how the command line finds this module.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from fulltext_jobs import FullText, SkipJob

#: Not a handler: `work --handler cli_handlers:NOT_CALLABLE` must refuse it.
NOT_CALLABLE = 42


def by_item(job: FullText) -> None:
    """Skip items whose id says `skip`, fail those that say `fail`, finish
    the rest."""
    if "skip" in job.item_id:
        raise SkipJob("no full text")
    if "fail" in job.item_id:
        raise RuntimeError(f"cannot handle {job.item_id}")


def fixed_on_second_attempt(job: FullText) -> None:
    """A handler whose bug is half fixed: a job's first attempt still
    fails, its retry finishes."""
    if job.attempts < 2:
        raise RuntimeError(f"attempt {job.attempts} of {job.item_id} still fails")


def lease_of_7s(job: FullText) -> None:
    """Finish a job claimed with a lease of 7 seconds; fail any other."""
    if job.started is None or job.lease_expires is None:
        raise RuntimeError("not claimed")
    if job.lease_expires - job.started != timedelta(seconds=7):
        raise RuntimeError(f"a lease of {job.lease_expires - job.started}")


def slow(_job: FullText) -> None:
    """Take a fifth of a second, as real work would."""
    time.sleep(0.2)


class Nested:
    """A handler found by a dotted attribute path: `cli_handlers:Nested.handle`."""

    @staticmethod
    def handle(_job: FullText) -> None:
        """Finish every job."""


def logged(job: FullText) -> None:
    """Append the job's id to this process's file in `ROLLING_LOG_DIR`, after
    a little work (20 ms): the rolling-upgrade test counts who ran what."""
    time.sleep(0.02)
    folder = Path(os.environ["ROLLING_LOG_DIR"])
    with (folder / f"{os.getpid()}.log").open("a", encoding="utf-8") as log:
        log.write(f"{job.id}\n")


def fail_first(job: FullText) -> None:
    """Fail a job's first attempt, finish the next: every job is retried
    once, after the worker's retry delay."""
    if job.attempts <= 1:
        raise RuntimeError(f"first attempt at {job.item_id}")


def sleepy(_job: FullText) -> None:
    """Take a minute: a job still in flight when the worker is stopped."""
    time.sleep(60)
