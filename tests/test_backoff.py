"""A handler's back-off (`RetryAfter`), beyond the contract suite (which
holds every adapter to how a backed-off job is stored): what a `Worker`
does with it, sync and async, in both claim modes, its bound, and the
pause of the destination. The fleet-wide pause with real processes is in
tests/test_controls.py."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from harness import SqliteTemplate
from test_controls import run_bounded

import fulltext_jobs
from fulltext_jobs import (
    FullText,
    InMemoryRepository,
    InvalidInput,
    JobStatus,
    Repository,
    RetryAfter,
    RetryPolicy,
    SqlAlchemyRepository,
    Worker,
)
from fulltext_jobs.worker.backing_off import BackOffPause
from fulltext_jobs.worker.inflight import Run
from fulltext_jobs.worker.stats import MAX_RETRY_AFTER
from fulltext_jobs.worker.waiting import WaitLog

DESTINATION = "lang"


@pytest.fixture(params=["memory", "sqlite"])
def repo(request: pytest.FixtureRequest, sqlite_template: SqliteTemplate) -> Iterator[Repository]:
    if request.param == "memory":
        yield InMemoryRepository()
        return
    engine = fulltext_jobs.create_engine(sqlite_template.fresh_url())
    yield SqlAlchemyRepository(engine)
    engine.dispose()


def queue(repo: Repository, n: int) -> list[FullText]:
    jobs = [FullText.new(f"item-{i}", DESTINATION) for i in range(n)]
    repo.save_many(jobs)
    return jobs


Calls = list[tuple[str, float, int, int]]


def recording(calls: Calls, backs_off: Callable[[FullText], RetryAfter | None], *, kind: str):
    """A handler (sync or async, by `kind`) that records each call (item,
    when, attempts, backoffs) and raises what `backs_off` returns."""

    def record(job: FullText) -> None:
        calls.append((job.item_id, time.monotonic(), job.attempts, job.backoffs))
        signal = backs_off(job)
        if signal is not None:
            raise signal

    if kind == "sync":
        return record

    async def handler(job: FullText) -> None:
        await asyncio.sleep(0)
        record(job)

    return handler


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("in_transaction", [False, True], ids=["leased", "transaction"])
def test_a_job_backed_off_runs_again_after_its_time_with_its_attempts_as_they_were(
    repo: Repository, kind: str, *, in_transaction: bool
):
    (job, other) = queue(repo, 2)
    calls: Calls = []

    def backs_off(copy: FullText) -> RetryAfter | None:
        first = copy.id == job.id and not copy.backoffs
        return RetryAfter(0.3, reason="429 Too Many Requests") if first else None

    handler = recording(calls, backs_off, kind=kind)
    stats = run_bounded(Worker(repo, DESTINATION, handler, in_transaction=in_transaction))
    stored = repo.get_fulltext(job.id)
    assert (stored.status, stored.attempts, stored.backoffs) == (JobStatus.FINISHED, 1, 1)
    assert stored.last_error == "backed off: 0.3 s; 429 Too Many Requests"
    runs = [call for call in calls if call[0] == job.item_id]
    assert [(attempts, backoffs) for _, _, attempts, backoffs in runs] == [(1, 0), (1, 1)]
    assert runs[1][1] - runs[0][1] >= 0.3
    assert repo.get_fulltext(other.id).status is JobStatus.FINISHED
    assert (stats.backed_off, stats.retried, stats.finished, stats.failed) == (1, 0, 2, 0)
    assert repo.controls(DESTINATION).paused_at is None  # no pause asked for


def test_past_max_backoffs_a_back_off_counts_as_an_attempt(repo: Repository):
    (job,) = queue(repo, 1)
    calls: Calls = []
    handler = recording(calls, lambda _: RetryAfter(0.05, reason="busy"), kind="sync")
    policy = RetryPolicy(max_attempts=2, base_delay=timedelta(0), max_backoffs=2)
    stats = run_bounded(Worker(repo, DESTINATION, handler, retry=policy))
    assert [(attempts, backoffs) for _, _, attempts, backoffs in calls] == [
        (1, 0),  # backs off
        (1, 1),  # backs off: the second and last time
        (1, 2),  # counted as an attempt: retried
        (2, 2),  # counted, and the last attempt: failed
    ]
    stored = repo.get_fulltext(job.id)
    assert (stored.status, stored.attempts, stored.backoffs) == (JobStatus.FAILED, 2, 2)
    assert stored.last_error == (
        "RetryAfter: busy (backed off 2 times, max_backoffs reached: an attempt)"
    )
    assert (stats.backed_off, stats.retried, stats.failed) == (2, 1, 1)


@pytest.mark.parametrize("in_transaction", [False, True], ids=["leased", "transaction"])
def test_a_back_off_with_a_pause_pauses_the_destination_and_stops_the_batch(
    repo: Repository, caplog: pytest.LogCaptureFixture, *, in_transaction: bool
):
    jobs = queue(repo, 5)
    calls: Calls = []

    def backs_off(copy: FullText) -> RetryAfter | None:
        first = copy.id == jobs[0].id and not copy.backoffs
        return RetryAfter(1, pause=True, reason="503") if first else None

    handler = recording(calls, backs_off, kind="sync")
    worker = Worker(repo, DESTINATION, handler, batch_size=5, in_transaction=in_transaction)
    with caplog.at_level(logging.WARNING, logger="fulltext_jobs.worker"):
        began = time.monotonic()
        stats = run_bounded(worker)
    controls = repo.controls(DESTINATION)
    assert controls.pause_reason == f"backed off: 1 s; 503 (job {jobs[0].id}, item item-0)"
    assert controls.paused_until is not None
    assert f"{DESTINATION} paused until" in caplog.text
    # Nothing ran in the pause: the batch's other jobs waited for its end.
    assert calls[0][0] == "item-0"
    assert all(at - began >= 1.0 for _, at, _, _ in calls[1:])
    assert len(calls) == 6
    # Every job ran once more, none with an attempt counted for the pause.
    for job in jobs:
        stored = repo.get_fulltext(job.id)
        assert (stored.status, stored.attempts) == (JobStatus.FINISHED, 1)
    assert repo.get_fulltext(jobs[0].id).backoffs == 1
    assert (stats.backed_off, stats.finished) == (1, 5)


def test_a_back_off_never_shortens_an_operators_longer_pause():
    repo = InMemoryRepository()
    (job,) = queue(repo, 1)
    claimed = repo.get_ready_job(DESTINATION)
    operators = repo.pause(DESTINATION, reason="maintenance")
    run = Run(
        destination=DESTINATION,
        until_idle=True,
        loops=1,
        waits=WaitLog(DESTINATION, clock=lambda: datetime.now(UTC), until_idle=True),
    )
    until = datetime.now(UTC) + timedelta(seconds=30)
    BackOffPause(repo, DESTINATION).pause(run, claimed, until, "backed off: 30 s")
    assert repo.controls(DESTINATION) == operators
    assert job.id == claimed.id


@pytest.mark.parametrize(
    ("seconds", "reason"),
    [
        (0, None),
        (-1, None),
        (math.nan, None),
        (math.inf, None),
        (MAX_RETRY_AFTER + 1, None),
        ("5", None),
        (True, None),
        (None, None),
        (5, 42),
        (5, b"429"),
    ],
)
def test_a_bad_back_off_is_invalid_input(seconds: object, reason: object):
    with pytest.raises(InvalidInput):
        RetryAfter(seconds, reason=reason)  # type: ignore[arg-type]
