"""Per-job time limits: a handler that runs past the worker's
`timeout` fails its job through the retry policy, with the reason in
`last_error`; a sync handler's thread, which cannot be stopped, is left to
run and its late result is neither saved nor counted; an async handler is
cancelled.

Each slow handler waits on an event the test sets, never on a bare sleep,
so a test ends as soon as it has seen what it must; the bounds are
generous and only a timeout that did not fire could reach them.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from datetime import timedelta

import pytest

import fulltext_jobs
from fulltext_jobs import (
    FullText,
    InMemoryRepository,
    InvalidInput,
    JobStatus,
    RetryPolicy,
    SkipJob,
    Worker,
)

DEST = "lang"

#: The longest a test waits for what must happen.
BOUND_SECONDS = 20.0

ONCE = RetryPolicy(max_attempts=1)
TWICE = RetryPolicy(max_attempts=2, base_delay=timedelta(0), jitter=0)


def queued(*items: str) -> InMemoryRepository:
    repo = InMemoryRepository(items=items)
    repo.enqueue_unqueued(DEST)
    return repo


def run(repo: InMemoryRepository, handler, **kwargs) -> fulltext_jobs.WorkerStats:
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("max_poll_interval", 0.05)
    return Worker(repo, DEST, handler, **kwargs).run(until_idle=True)


def the_job(repo: InMemoryRepository) -> FullText:
    [job] = repo.list_jobs(DEST)
    return job


def test_a_handler_past_its_time_fails_the_job_and_its_late_result_is_dropped():
    release = threading.Event()
    returned = threading.Event()

    def stuck(_job: FullText) -> None:
        release.wait(BOUND_SECONDS)
        returned.set()  # and returns normally: a finish, if it were saved

    repo = queued("a")
    began = time.monotonic()
    worker = Worker(repo, DEST, stuck, timeout=0.2, retry=ONCE, poll_interval=0.01)
    stats = worker.run(until_idle=True)
    assert time.monotonic() - began < BOUND_SECONDS / 2, "the timeout did not fire"
    assert (stats.failed, stats.finished) == (1, 0)
    job = the_job(repo)
    assert job.status is JobStatus.FAILED
    assert job.last_error == "TimeoutError: the handler timed out after 0.2 s"
    version = job.version
    # The handler's thread ends now: nothing of it reaches the ledger or
    # the counts.
    release.set()
    assert returned.wait(BOUND_SECONDS)
    time.sleep(0.05)
    assert worker.stats == stats
    assert the_job(repo).version == version


def test_a_timed_out_job_is_retried_by_the_policy_and_counted_once():
    release = threading.Event()
    calls: list[int] = []

    def slow_once(job: FullText) -> None:
        calls.append(job.attempts)
        if len(calls) == 1:
            release.wait(BOUND_SECONDS)

    repo = queued("a")
    try:
        stats = run(repo, slow_once, timeout=0.2, retry=TWICE)
    finally:
        release.set()
    assert (stats.retried, stats.finished, stats.failed, stats.lost_claims) == (1, 1, 0, 0)
    job = the_job(repo)
    assert (job.status, job.attempts) == (JobStatus.FINISHED, 2)
    assert calls == [1, 2]


def test_a_handler_within_its_time_ends_as_usual():
    def by_item(job: FullText) -> None:
        if job.item_id == "skip":
            raise SkipJob
        if job.item_id == "fail":
            msg = "boom"
            raise RuntimeError(msg)

    repo = queued("ok", "skip", "fail")
    stats = run(repo, by_item, timeout=5, retry=ONCE, concurrency=2, batch_size=2)
    assert (stats.finished, stats.skipped, stats.failed) == (1, 1, 1)
    errors = {job.item_id: job.last_error for job in repo.list_jobs(DEST)}
    assert errors == {"fail": "RuntimeError: boom", "ok": None, "skip": None}


def test_an_async_handler_past_its_time_is_cancelled():
    cancelled = threading.Event()

    async def stuck(_job: FullText) -> None:
        try:
            await asyncio.sleep(BOUND_SECONDS)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    repo = queued("a")
    stats = run(repo, stuck, timeout=0.2, retry=ONCE)
    assert cancelled.is_set()
    assert stats.failed == 1
    assert the_job(repo).last_error == "TimeoutError: the handler timed out after 0.2 s"


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, 1e12, True, "30"])
def test_a_bad_timeout_is_refused(bad):
    with pytest.raises(InvalidInput, match="timeout must be a positive number of seconds"):
        Worker(InMemoryRepository(), DEST, print, timeout=bad)
