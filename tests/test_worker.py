"""The worker runner: outcomes, batches, threads, the producer, backoff,
heartbeats, faults and shutdown, on the in-memory adapter, and end to end on
SQLite and PostgreSQL (including SIGTERM to a worker process).

No assertion is on speed. Every wait is bounded; where a lease has to run out
the test moves a fake clock or waits for the rescue to be seen, rather than
hoping a sleep was long enough.
"""

from __future__ import annotations

import math
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import FakeClock, SqliteTemplate

import fulltext_jobs
from fulltext_jobs import (
    DEFAULT_SWEEP_INTERVAL,
    FullText,
    InMemoryRepository,
    InvalidInput,
    JobStatus,
    LostClaim,
    Repository,
    SqlAlchemyRepository,
    StoreError,
)
from fulltext_jobs.worker import SkipJob, Worker, WorkerStats

DEST = "language-detection"

#: The longest any test waits for something to happen.
BOUND_SECONDS = 20.0


def item_ids(n: int) -> list[str]:
    return [f"item-{k:04}" for k in range(n)]


def queued_repo(n: int, **kwargs) -> InMemoryRepository:
    """An in-memory repository with `n` items, each with a ready job."""
    repo = InMemoryRepository(items=item_ids(n), **kwargs)
    assert repo.enqueue_unqueued(DEST) == n
    return repo


def counts(repo: Repository) -> dict[str, int]:
    (stats,) = repo.stats(DEST)
    return {status.value: count for status, count in stats.counts.items() if count}


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def quick(repo: Repository, handler, **kwargs) -> Worker:
    """A worker that polls often and never sleeps long; unless the test sets
    a retry policy, one attempt a job (a handler's exception fails it)."""
    if "retry" not in kwargs:
        kwargs.setdefault("max_attempts", 1)
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("max_poll_interval", 0.05)
    return Worker(repo, DEST, handler, **kwargs)


class Recorder:
    """A handler that records the jobs it was given."""

    def __init__(self, then: Callable[[FullText], object] | None = None) -> None:
        self.lock = threading.Lock()
        self.jobs: list[FullText] = []
        self.then = then

    def __call__(self, job: FullText) -> None:
        with self.lock:
            self.jobs.append(job)
        if self.then is not None:
            self.then(job)

    @property
    def items(self) -> Counter[str]:
        with self.lock:
            return Counter(job.item_id for job in self.jobs)


# --- Outcomes -----------------------------------------------------------------


def test_a_handler_that_returns_finishes_its_job():
    repo = queued_repo(3)
    handler = Recorder()
    stats = quick(repo, handler).run(until_idle=True)

    assert stats == WorkerStats(claimed=3, finished=3)
    assert counts(repo) == {"finished": 3}
    assert sorted(handler.items) == item_ids(3)
    for job in handler.jobs:
        assert job.status is JobStatus.RUNNING  # the handler sees the claim
        stored = repo.get_fulltext(job.id)
        assert stored.finished is not None
        assert stored.claim_token is None
        assert stored.attempts == 1


def test_skip_job_skips_the_job():
    repo = queued_repo(2)

    def handler(job: FullText) -> None:
        raise SkipJob(f"{job.item_id} has no full text")

    stats = quick(repo, handler).run(until_idle=True)
    assert (stats.claimed, stats.skipped, stats.finished, stats.failed) == (2, 2, 0, 0)
    assert counts(repo) == {"skipped": 2}


def test_an_exception_fails_the_job_and_records_it_on_one_line():
    repo = queued_repo(1)
    handler = Recorder(then=lambda _job: int("not\na number"))
    stats = quick(repo, handler).run(until_idle=True)

    assert (stats.claimed, stats.failed) == (1, 1)
    stored = repo.get_fulltext(handler.jobs[0].id)
    assert stored.status is JobStatus.FAILED
    assert (
        stored.last_error == "ValueError: invalid literal for int() with base 10: 'not\\na number'"
    )


def test_the_error_of_an_exception_without_a_message_is_its_type():
    repo = queued_repo(1)

    def fail(_job: FullText) -> None:
        raise KeyError

    handler = Recorder(then=fail)
    quick(repo, handler).run(until_idle=True)
    assert repo.get_fulltext(handler.jobs[0].id).last_error == "KeyError"


def test_changes_the_handler_makes_to_its_job_are_not_saved():
    repo = queued_repo(1)
    handler = Recorder(then=lambda job: job.release())
    stats = quick(repo, handler).run(until_idle=True)
    assert stats.finished == 1
    assert counts(repo) == {"finished": 1}


# --- Batches and threads ------------------------------------------------------


class CallCounting(InMemoryRepository):
    """Counts the calls of the port's claim and save methods."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()
        self.batch_sizes: list[int] = []

    def get_ready_job(self, destination: str) -> FullText:
        self.calls["get_ready_job"] += 1
        return super().get_ready_job(destination)

    def claim_ready(self, destination: str, n: int) -> list[FullText]:
        self.calls["claim_ready"] += 1
        return super().claim_ready(destination, n)

    def save_fulltext(self, job: FullText) -> None:
        self.calls["save_fulltext"] += 1
        super().save_fulltext(job)

    def save_many(self, jobs: Iterable[FullText], *, atomic: bool = True) -> None:
        self.calls["save_many"] += 1
        self.calls[f"save_many(atomic={atomic})"] += 1
        jobs = list(jobs)
        self.batch_sizes.append(len(jobs))
        super().save_many(jobs, atomic=atomic)


def test_a_batch_is_claimed_with_claim_ready_and_saved_with_save_many():
    repo = CallCounting(items=item_ids(8))
    repo.enqueue_unqueued(DEST)

    def handler(job: FullText) -> None:
        if job.item_id.endswith("3"):
            raise SkipJob
        if job.item_id.endswith("5"):
            raise RuntimeError("boom")

    stats = quick(repo, handler, batch_size=3).run(until_idle=True)

    assert stats == WorkerStats(claimed=8, finished=6, skipped=1, failed=1)
    assert counts(repo) == {"finished": 6, "skipped": 1, "failed": 1}
    assert repo.calls["get_ready_job"] == 0
    assert repo.calls["claim_ready"] == 4  # 3 + 3 + 2, then an empty one
    assert repo.batch_sizes == [3, 3, 2]
    # Each job under its own claim, in one call a batch.
    assert repo.calls["save_many(atomic=False)"] == 3
    assert repo.calls["save_fulltext"] == 0


def test_four_threads_handle_200_jobs_each_exactly_once():
    repo = queued_repo(200)
    handler = Recorder(then=lambda _job: time.sleep(0.001))
    stats = quick(repo, handler, concurrency=4).run(until_idle=True)

    assert stats == WorkerStats(claimed=200, finished=200)
    assert sorted(handler.items) == item_ids(200)
    assert set(handler.items.values()) == {1}
    assert counts(repo) == {"finished": 200}


def test_four_threads_with_batches_handle_each_job_exactly_once():
    repo = queued_repo(200)
    handler = Recorder()
    stats = quick(repo, handler, concurrency=4, batch_size=7).run(until_idle=True)

    assert (stats.claimed, stats.finished) == (200, 200)
    assert set(handler.items.values()) == {1}
    assert len(handler.items) == 200


# --- The producer ---------------------------------------------------------------


def test_the_producer_queues_unqueued_items_and_they_get_handled():
    repo = InMemoryRepository(items=item_ids(25))
    handler = Recorder()
    worker = quick(repo, handler, produce=True, concurrency=2)
    stats = worker.run(until_idle=True)

    assert (stats.enqueued, stats.claimed, stats.finished) == (25, 25, 25)
    assert sorted(handler.items) == item_ids(25)
    assert repo.count_unqueued(DEST) == 0

    # Items that arrive later are queued by the next run.
    repo.add_items(["late-1", "late-2"])
    again = quick(repo, handler, produce=True).run(until_idle=True)
    assert (again.enqueued, again.finished) == (2, 2)
    assert counts(repo) == {"finished": 27}


def test_without_the_producer_unqueued_items_are_left_alone():
    repo = InMemoryRepository(items=item_ids(5))
    stats = quick(repo, Recorder()).run(until_idle=True)
    assert stats == WorkerStats()
    assert repo.count_unqueued(DEST) == 5


def test_the_producer_rescues_expired_jobs_before_it_reports_idle():
    clock = FakeClock(datetime(2026, 11, 28, 12, tzinfo=UTC))
    repo = queued_repo(2, clock=clock, lease=timedelta(seconds=60))
    # A worker that died holding a job.
    dead = repo.get_ready_job(DEST)
    clock.advance(seconds=61)

    stats = quick(repo, Recorder(), produce=True, max_attempts=3).run(until_idle=True)
    assert stats.rescued == 1
    assert (stats.claimed, stats.finished) == (2, 2)
    assert repo.get_fulltext(dead.id).attempts == 2


# --- Backoff --------------------------------------------------------------------


def test_the_idle_backoff_doubles_up_to_the_maximum_and_resets_on_work():
    repo = InMemoryRepository(items=["a"])
    waits: list[float] = []
    worker: Worker

    def wait(event: threading.Event, seconds: float) -> bool:
        waits.append(seconds)
        if len(waits) == 5:
            repo.enqueue_unqueued(DEST)  # work arrives
        if len(waits) == 7:
            worker.stop()
        return event.is_set()

    worker = Worker(repo, DEST, Recorder(), poll_interval=1, max_poll_interval=8, wait=wait)
    stats = worker.run()

    assert waits == [1, 2, 4, 8, 8, 1, 2]
    assert stats == WorkerStats(claimed=1, finished=1)


def test_a_stopped_worker_does_not_run_again():
    repo = queued_repo(1)
    worker = quick(repo, Recorder())
    worker.stop()
    assert worker.run() == WorkerStats()
    assert counts(repo) == {"ready": 1}


# --- Heartbeats -----------------------------------------------------------------


def test_heartbeats_keep_a_slow_job_from_being_rescued():
    # A real clock and a 1 s lease; the handler takes twice the lease. The
    # default heartbeat (a third of the lease) keeps it; the worker's own
    # producer rescues expired jobs every 50 ms meanwhile.
    repo = queued_repo(1, lease=timedelta(seconds=1))
    handler = Recorder(then=lambda _job: time.sleep(2))
    stats = quick(repo, handler, produce=True, rescue_interval=0.05, max_attempts=1).run(
        until_idle=True
    )

    assert stats.rescued == 0
    assert stats.lost_claims == 0
    assert stats.finished == 1
    assert stats.heartbeats >= 2
    assert counts(repo) == {"finished": 1}


def test_heartbeats_extend_the_lease_on_the_repository_clock():
    clock = FakeClock(datetime(2026, 11, 28, 12, tzinfo=UTC))
    repo = queued_repo(1, clock=clock, lease=timedelta(seconds=60))
    worker: Worker
    rescued: list[int] = []

    def handler(_job: FullText) -> None:
        for _ in range(3):
            seen = worker.stats.heartbeats
            clock.advance(seconds=50)
            wait_until(lambda: worker.stats.heartbeats > seen, "a heartbeat")  # noqa: B023
            clock.advance(seconds=50)  # 100 s after the claim, 50 s after the heartbeat
            rescued.append(repo.rescue_expired(DEST))

    worker = quick(repo, handler, heartbeat_interval=0.02)
    stats = worker.run(until_idle=True)

    assert rescued == [0, 0, 0]
    assert (stats.finished, stats.lost_claims) == (1, 0)


def test_without_timely_heartbeats_the_job_is_rescued_and_the_late_save_is_refused():
    # The lease runs out while the handler works; the worker's producer
    # rescues the job (failing it: max_attempts=1). The handler's save is
    # then refused: counted, not raised.
    repo = queued_repo(1, lease=timedelta(seconds=0.3))

    def wait_for_rescue(job: FullText) -> None:
        wait_until(lambda: repo.get_fulltext(job.id).status is not JobStatus.RUNNING, "the rescue")

    handler = Recorder(then=wait_for_rescue)
    stats = quick(
        repo, handler, heartbeat_interval=60, produce=True, rescue_interval=0.05, max_attempts=1
    ).run(until_idle=True)

    assert (stats.claimed, stats.rescued, stats.lost_claims, stats.finished) == (1, 1, 1, 0)
    stored = repo.get_fulltext(handler.jobs[0].id)
    assert stored.status is JobStatus.FAILED
    assert stored.last_error == "lease expired after 1 attempt(s); max_attempts reached"


class LostHeartbeats(InMemoryRepository):
    """Counts the heartbeats that found the claim lost."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.refused = 0

    def heartbeat(self, job: FullText) -> datetime:
        try:
            return super().heartbeat(job)
        except LostClaim:
            self.refused += 1
            raise


def test_a_heartbeat_that_finds_the_claim_lost_stops_beating_and_the_save_is_counted():
    clock = FakeClock(datetime(2026, 11, 28, 12, tzinfo=UTC))
    repo = LostHeartbeats(items=["a"], clock=clock, lease=timedelta(seconds=60))
    repo.enqueue_unqueued(DEST)
    rescued: list[int] = []
    refused_later: list[int] = []

    def handler(_job: FullText) -> None:
        clock.advance(seconds=61)
        rescued.append(repo.rescue_expired(DEST))
        repo.get_ready_job(DEST)  # another worker claims the job again
        wait_until(lambda: repo.refused > 0, "a heartbeat to find the claim lost")
        time.sleep(0.2)  # ten heartbeat intervals: none is tried again
        refused_later.append(repo.refused)

    stats = quick(repo, handler, heartbeat_interval=0.02).run(until_idle=True)

    assert rescued == [1]
    assert refused_later == [1]
    assert (stats.lost_claims, stats.finished) == (1, 0)
    assert counts(repo) == {"running": 1}  # the other worker's claim, untouched


def test_once_a_heartbeat_finds_a_batchs_claim_lost_no_more_of_its_handlers_start():
    clock = FakeClock(datetime(2026, 11, 28, 12, tzinfo=UTC))
    repo = LostHeartbeats(items=["a", "b", "c"], clock=clock, lease=timedelta(seconds=60))
    repo.enqueue_unqueued(DEST)

    def lose_the_batch(job: FullText) -> None:
        if job.attempts > 1:
            return  # delivered again: just work
        # The lease runs out under the first job and the batch is rescued.
        clock.advance(seconds=61)
        assert repo.rescue_expired(DEST) == 3
        wait_until(lambda: repo.refused > 0, "a heartbeat to find the claim lost")

    handler = Recorder(lose_the_batch)
    stats = quick(repo, handler, batch_size=3, heartbeat_interval=0.02).run(until_idle=True)

    # b and c were never started under the lost claim; all three were then
    # delivered again and finished.
    assert handler.items == {"a": 2, "b": 1, "c": 1}
    assert stats.dropped == 2
    assert (stats.claimed, stats.finished) == (6, 3)
    assert counts(repo) == {"finished": 3}


def test_a_batch_with_one_lost_claim_saves_the_others_in_one_call():
    # The middle job's claim is taken over while the batch is handled (its
    # lease ran out and another worker claimed it; no heartbeat noticed):
    # the batch's one save refuses that job alone and saves the rest.
    clock = FakeClock(datetime(2026, 11, 28, 12, tzinfo=UTC))
    repo = CallCounting(items=["a", "b", "c"], clock=clock)
    repo.enqueue_unqueued(DEST)
    taken: list[FullText] = []

    def take_b(job: FullText) -> None:
        if job.item_id == "b":
            stored = repo.get_fulltext(job.id)
            stored.release()
            repo.save_fulltext(replace(stored, claim_token=job.claim_token))
            taken.append(repo.get_ready_job(DEST))

    stats = quick(repo, take_b, batch_size=3, heartbeat_interval=math.inf).run(until_idle=True)

    assert (stats.claimed, stats.finished, stats.lost_claims) == (3, 2, 1)
    assert repo.calls["save_many(atomic=False)"] == 1
    assert repo.calls["save_fulltext"] == 1  # the handler's own release of b
    assert counts(repo) == {"finished": 2, "running": 1}
    assert repo.get_fulltext(taken[0].id).claim_token == taken[0].claim_token


# --- Faults ---------------------------------------------------------------------


class Flaky(InMemoryRepository):
    """Raises the given error once from each named method, then works."""

    def __init__(self, *args, fail: Iterable[str], error: StoreError, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pending = set(fail)
        self.error = error

    def _maybe_fail(self, name: str) -> None:
        if name in self.pending:
            self.pending.discard(name)
            raise self.error

    def get_ready_job(self, destination: str) -> FullText:
        self._maybe_fail("get_ready_job")
        return super().get_ready_job(destination)

    def save_fulltext(self, job: FullText) -> None:
        self._maybe_fail("save_fulltext")
        super().save_fulltext(job)

    def heartbeat(self, job: FullText) -> datetime:
        self._maybe_fail("heartbeat")
        return super().heartbeat(job)

    def enqueue_new(
        self, destination: str, *, sweep_interval: timedelta = DEFAULT_SWEEP_INTERVAL
    ) -> int:
        self._maybe_fail("enqueue_new")
        return super().enqueue_new(destination, sweep_interval=sweep_interval)


def test_retryable_store_errors_are_counted_and_the_worker_goes_on():
    waits: list[float] = []

    def wait(event: threading.Event, seconds: float) -> bool:
        waits.append(seconds)
        return event.is_set()

    repo = Flaky(
        items=item_ids(3),
        fail={"get_ready_job", "save_fulltext", "enqueue_new"},
        error=StoreError("connection lost", retryable=True),
    )
    stats = Worker(repo, DEST, Recorder(), produce=True, wait=wait).run(until_idle=True)

    assert stats.retryable_errors == 3
    assert (stats.enqueued, stats.claimed, stats.finished, stats.lost_claims) == (3, 3, 3, 0)
    assert counts(repo) == {"finished": 3}
    assert waits  # it backed off instead of hammering the store


def test_a_retryable_heartbeat_error_is_counted_and_heartbeats_go_on():
    clock = FakeClock(datetime(2026, 11, 28, 12, tzinfo=UTC))
    repo = Flaky(
        items=["a"],
        fail={"heartbeat"},
        error=StoreError("server restarting", retryable=True),
        clock=clock,
    )
    repo.enqueue_unqueued(DEST)
    worker: Worker

    def handler(_job: FullText) -> None:
        wait_until(lambda: worker.stats.heartbeats >= 2, "two good heartbeats")

    worker = quick(repo, handler, heartbeat_interval=0.02)
    stats = worker.run(until_idle=True)
    assert stats.retryable_errors == 1
    assert stats.finished == 1


def test_an_error_that_is_not_retryable_stops_the_worker_and_is_raised():
    repo = Flaky(
        items=item_ids(3),
        fail={"get_ready_job"},
        error=StoreError("permission denied", retryable=False),
    )
    repo.enqueue_unqueued(DEST)
    worker = quick(repo, Recorder(), concurrency=2)
    with pytest.raises(StoreError, match="permission denied"):
        worker.run()
    assert "running" not in counts(repo)


def test_a_failed_save_that_stops_the_worker_leaves_no_job_running():
    repo = Flaky(
        items=item_ids(2),
        fail={"save_fulltext"},
        error=StoreError("disk full", retryable=False),
    )
    repo.enqueue_unqueued(DEST)
    with pytest.raises(StoreError, match="disk full"):
        quick(repo, Recorder()).run()
    # The shutdown saved the outcome the claim thread could not.
    assert counts(repo) == {"finished": 1, "ready": 1}


# --- Shutdown -------------------------------------------------------------------


def run_in_thread(worker: Worker, **kwargs) -> tuple[threading.Thread, queue.Queue]:
    results: queue.Queue = queue.Queue()

    def body() -> None:
        try:
            results.put(worker.run(**kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            results.put(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, results


def test_stop_lets_the_job_in_flight_finish_and_claims_nothing_more():
    repo = queued_repo(5)
    started = threading.Event()

    def handler(_job: FullText) -> None:
        started.set()
        time.sleep(0.3)

    worker = quick(repo, handler, shutdown_timeout=BOUND_SECONDS)
    thread, results = run_in_thread(worker)
    assert started.wait(BOUND_SECONDS)
    worker.stop()
    thread.join(BOUND_SECONDS)
    assert not thread.is_alive()

    stats = results.get_nowait()
    assert stats == WorkerStats(claimed=1, finished=1)
    assert counts(repo) == {"finished": 1, "ready": 4}


def test_stop_releases_the_jobs_of_a_batch_whose_handlers_had_not_started():
    repo = queued_repo(5)
    worker: Worker

    def handler(_job: FullText) -> None:
        worker.stop()

    worker = quick(repo, handler, batch_size=3)
    stats = worker.run()
    assert stats == WorkerStats(claimed=3, finished=1, released=2)
    assert counts(repo) == {"finished": 1, "ready": 4}


def test_a_handler_that_outlives_the_shutdown_has_its_job_released_and_its_save_refused():
    repo = queued_repo(2)
    gate = threading.Event()
    returned = threading.Event()
    seen: list[FullText] = []
    worker: Worker

    def handler(job: FullText) -> None:
        seen.append(job)
        worker.stop()
        gate.wait(BOUND_SECONDS)
        returned.set()

    worker = quick(repo, handler, shutdown_timeout=0.1)
    stats = worker.run()

    # Released, not left running: ready for the next worker.
    assert stats == WorkerStats(claimed=1, released=1)
    assert counts(repo) == {"ready": 2}
    (job,) = seen
    stored = repo.get_fulltext(job.id)
    assert (stored.status, stored.claim_token, stored.attempts) == (JobStatus.READY, None, 1)

    # The handler ends later; the worker's save of its result is refused,
    # because the release ended the claim.
    gate.set()
    assert returned.wait(BOUND_SECONDS)
    wait_until(lambda: worker.stats.lost_claims == 1, "the late save to be refused")
    assert repo.get_fulltext(job.id).status is JobStatus.READY
    # As any save under that claim would be.
    job.finish()
    with pytest.raises(LostClaim):
        repo.save_fulltext(job)


def test_a_batch_outliving_the_shutdown_keeps_its_finished_work_and_releases_the_rest():
    repo = CallCounting(items=item_ids(5))
    repo.enqueue_unqueued(DEST)
    gate = threading.Event()
    returned = threading.Event()
    worker: Worker

    def handler(job: FullText) -> None:
        if job.item_id == "item-0001":  # the second job of the first batch
            worker.stop()
            gate.wait(BOUND_SECONDS)
            returned.set()

    worker = quick(repo, handler, batch_size=3, shutdown_timeout=0.1)
    stats = worker.run()

    # The first job's outcome was saved, the second (still running) and the
    # third (never started) released.
    assert stats == WorkerStats(claimed=3, finished=1, released=2)
    assert counts(repo) == {"finished": 1, "ready": 4}

    gate.set()
    assert returned.wait(BOUND_SECONDS)
    wait_until(lambda: worker.stats.lost_claims == 1, "the late save to be refused")
    assert counts(repo) == {"finished": 1, "ready": 4}
    # Only the late job was offered again, and refused; nothing went through
    # save_many after the shutdown took the batch over.
    assert repo.calls["save_many"] == 0


def test_run_installs_signal_handlers_only_while_it_runs():
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []
    handler = Recorder(then=lambda _job: seen.append(signal.getsignal(signal.SIGTERM)))
    quick(queued_repo(1), handler).run(until_idle=True)
    assert seen
    assert seen[0] is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_run_while_running_is_refused():
    repo = queued_repo(1)
    inner: list[BaseException] = []
    worker: Worker

    def handler(_job: FullText) -> None:
        with pytest.raises(RuntimeError) as caught:
            worker.run()
        inner.append(caught.value)

    worker = quick(repo, handler)
    assert worker.run(until_idle=True).finished == 1
    assert len(inner) == 1


# --- Arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("concurrency", 0),
        ("concurrency", 1.5),
        ("concurrency", True),
        ("concurrency", 10**11),  # would start 10**11 threads
        ("batch_size", -1),
        ("batch_size", 10_001),  # more than one claim takes
        ("shutdown_timeout", 1e300),  # past what a thread can wait for
        ("shutdown_timeout", float("inf")),
        ("poll_interval", 8 * 24 * 3600.0),
        ("rescue_interval", 2**63),
        ("poll_interval", 0),
        ("poll_interval", float("nan")),
        ("max_poll_interval", float("inf")),
        ("heartbeat_interval", 0),
        ("heartbeat_interval", -1),
        ("shutdown_timeout", -0.1),
        ("rescue_interval", "60"),
        ("max_attempts", 0),
        ("clock", 3),
        ("wait", "soon"),
    ],
)
def test_bad_settings_are_refused(name, value):
    with pytest.raises(InvalidInput, match=name if name != "max_attempts" else "positive"):
        Worker(InMemoryRepository(), DEST, Recorder(), **{name: value})


def test_bad_repository_destination_handler_and_intervals_are_refused():
    with pytest.raises(InvalidInput, match="Repository"):
        Worker(object(), DEST, Recorder())
    with pytest.raises(InvalidInput, match="destination"):
        Worker(InMemoryRepository(), "", Recorder())
    with pytest.raises(InvalidInput, match="callable"):
        Worker(InMemoryRepository(), DEST, "handler")
    with pytest.raises(InvalidInput, match="max_poll_interval"):
        Worker(InMemoryRepository(), DEST, Recorder(), poll_interval=5, max_poll_interval=1)
    # Accepted: no heartbeats at all, and an immediate release at shutdown.
    Worker(InMemoryRepository(), DEST, Recorder(), heartbeat_interval=float("inf"))
    Worker(InMemoryRepository(), DEST, Recorder(), shutdown_timeout=0)


# --- On the SQL adapter ---------------------------------------------------------


@pytest.mark.parametrize(
    "engine_fixture",
    ["sqlite_engine", pytest.param("clean_postgres_engine", marks=pytest.mark.postgresql)],
)
def test_the_worker_runs_on_the_sql_adapter(engine_fixture, request):
    engine: sa.Engine = request.getfixturevalue(engine_fixture)
    repo = SqlAlchemyRepository(engine, lease=timedelta(seconds=30))
    repo.add_items(item_ids(120))

    def handler(job: FullText) -> None:
        if job.item_id.endswith("7"):
            raise SkipJob
        if job.item_id.endswith("9"):
            raise OSError("no such file")

    recorder = Recorder(then=handler)
    worker = quick(repo, recorder, produce=True, concurrency=4, batch_size=5)
    stats = worker.run(until_idle=True)

    assert set(recorder.items.values()) == {1}
    assert len(recorder.items) == 120
    assert (stats.enqueued, stats.claimed) == (120, 120)
    assert (stats.finished, stats.skipped, stats.failed) == (96, 12, 12)
    assert (stats.lost_claims, stats.retryable_errors) == (0, 0)
    assert counts(repo) == {"finished": 96, "skipped": 12, "failed": 12}
    failed = next(job for job in recorder.jobs if job.item_id.endswith("9"))
    assert repo.get_fulltext(failed.id).last_error == "OSError: no such file"


# --- SIGTERM to a worker process ------------------------------------------------

WORKER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import fulltext_jobs
    from fulltext_jobs import SqlAlchemyRepository
    from fulltext_jobs.worker import Worker

    url, handler_seconds, shutdown_timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    repo = SqlAlchemyRepository(fulltext_jobs.create_engine(url))

    def handler(job):
        # One write per line: two threads printing at once must not
        # interleave their words.
        sys.stdout.write(f"claimed {job.item_id}\\n")
        sys.stdout.flush()
        time.sleep(handler_seconds)

    worker = Worker(
        repo, "dest", handler, concurrency=2, poll_interval=0.05,
        shutdown_timeout=shutdown_timeout,
    )
    stats = worker.run()
    print("stats", stats.claimed, stats.finished, stats.released, flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    # (seconds the handler takes, shutdown_timeout, whether the jobs finish)
    [(1.0, BOUND_SECONDS, True), (60.0, 0.2, False)],
    ids=["in-flight-finish", "in-flight-released"],
)
def test_sigterm_stops_a_worker_process_and_leaves_no_job_running(
    sqlite_template: SqliteTemplate, tmp_path: Path, case
):
    handler_seconds, shutdown_timeout, finishes = case
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)
        repo.add_items(item_ids(6))
        repo.enqueue_unqueued("dest")
        script = tmp_path / "worker.py"
        script.write_text(WORKER_SCRIPT)

        with subprocess.Popen(
            [sys.executable, str(script), url, str(handler_seconds), str(shutdown_timeout)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            lines: queue.Queue[str] = queue.Queue()

            def read_lines() -> None:
                for line in process.stdout:
                    lines.put(line)

            reader = threading.Thread(target=read_lines, daemon=True)
            reader.start()
            try:
                # Both threads hold a job: stop the worker now.
                for _ in range(2):
                    assert lines.get(timeout=BOUND_SECONDS).startswith("claimed")
                process.send_signal(signal.SIGTERM)
                returncode = process.wait(timeout=BOUND_SECONDS)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            reader.join(BOUND_SECONDS)
            stderr = process.stderr.read()
        assert returncode == 0, stderr
        output = [lines.get_nowait() for _ in range(lines.qsize())]
        claimed, finished, released = (int(n) for n in output[-1].split()[1:])
        # A slow machine may let a thread claim another job before the signal.
        assert claimed >= 2
        assert (finished, released) == ((claimed, 0) if finishes else (0, claimed))

        (stats,) = repo.stats("dest")
        assert stats.counts[JobStatus.RUNNING] == 0
        assert stats.counts[JobStatus.FINISHED] == finished
        assert stats.counts[JobStatus.READY] == 6 - finished
    finally:
        engine.dispose()


# --- Retries with backoff -----------------------------------------------------------

RETRY_BACKENDS = [
    "memory",
    "sqlite_engine",
    pytest.param("clean_postgres_engine", marks=pytest.mark.postgresql),
]


def retry_repo(name: str, request: pytest.FixtureRequest, items: list[str]) -> Repository:
    if name == "memory":
        repo: Repository = InMemoryRepository(items=items)
    else:
        sql = SqlAlchemyRepository(request.getfixturevalue(name), lease=timedelta(seconds=30))
        sql.add_items(items)
        repo = sql
    repo.enqueue_unqueued(DEST)
    return repo


class Flaky503:
    """A handler that fails `failures` times per job, then succeeds; it
    records when each attempt began."""

    def __init__(self, failures: float) -> None:
        self.failures = failures
        self.began: list[float] = []
        self.attempts: list[int] = []

    def __call__(self, job: FullText) -> None:
        self.began.append(time.monotonic())
        self.attempts.append(job.attempts)
        if len(self.began) <= self.failures:
            raise ConnectionError(f"503 on attempt {job.attempts}")


POLICY = fulltext_jobs.RetryPolicy(max_attempts=3, base_delay=timedelta(seconds=0.3))


@pytest.mark.parametrize("name", RETRY_BACKENDS)
def test_a_job_that_fails_twice_then_succeeds_is_finished_after_three_spaced_attempts(
    name, request
):
    repo = retry_repo(name, request, ["a"])
    handler = Flaky503(failures=2)
    stats = quick(repo, handler, retry=POLICY).run(until_idle=True)

    (job,) = repo.list_jobs(DEST)
    assert (job.status, job.attempts) == (JobStatus.FINISHED, 3)
    assert handler.attempts == [1, 2, 3]
    assert job.last_error == "ConnectionError: 503 on attempt 2"  # kept, as history
    first, second, third = handler.began
    assert second - first >= 0.3  # base_delay
    assert third - second >= 0.6  # doubled
    assert (stats.claimed, stats.retried, stats.finished, stats.failed) == (3, 2, 1, 0)


@pytest.mark.parametrize("name", RETRY_BACKENDS)
def test_a_job_that_always_fails_is_failed_after_max_attempts(name, request):
    repo = retry_repo(name, request, ["a"])
    handler = Flaky503(failures=math.inf)
    stats = quick(repo, handler, retry=POLICY).run(until_idle=True)

    (job,) = repo.list_jobs(DEST, statuses=["failed"])
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)
    assert job.last_error == "ConnectionError: 503 on attempt 3"
    assert job.not_before is None
    assert (stats.claimed, stats.retried, stats.failed) == (3, 2, 1)


def test_fail_job_fails_at_once_and_skip_job_still_skips():
    repo = queued_repo(2)

    def handler(job: FullText) -> None:
        if job.item_id.endswith("0"):
            raise fulltext_jobs.FailJob("404: no such item")
        raise SkipJob

    stats = quick(repo, handler, retry=POLICY).run(until_idle=True)
    assert (stats.failed, stats.skipped, stats.retried, stats.claimed) == (1, 1, 0, 2)
    (failed,) = repo.list_jobs(DEST, statuses=["failed"])
    assert (failed.attempts, failed.last_error) == (1, "FailJob: 404: no such item")


def test_until_idle_waits_for_delayed_jobs_but_not_for_other_destinations():
    repo = queued_repo(1)
    other = FullText.new("item-0000", "elsewhere")
    repo.save_fulltext(other)
    delayed = repo.get_ready_job("elsewhere")
    delayed.release(not_before=datetime(9999, 1, 1, tzinfo=UTC))
    repo.save_fulltext(delayed)  # due in 9999: not this worker's to wait for
    handler = Flaky503(failures=1)
    began = time.monotonic()
    stats = quick(repo, handler, retry=POLICY).run(until_idle=True)
    assert time.monotonic() - began >= 0.3
    assert (stats.finished, stats.retried) == (1, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retry": "3 times"},
        {"retry": POLICY, "max_attempts": 4},
        {"max_attempts": 0},
    ],
)
def test_bad_retry_settings_raise_invalid_input(kwargs):
    with pytest.raises(InvalidInput):
        Worker(InMemoryRepository(), DEST, Recorder(), **kwargs)


def test_max_attempts_alone_bounds_the_default_policy():
    worker = Worker(InMemoryRepository(), DEST, Recorder(), max_attempts=POLICY.max_attempts)
    assert Worker(InMemoryRepository(), DEST, Recorder(), retry=POLICY, max_attempts=3)
    assert worker._retry == fulltext_jobs.RetryPolicy(max_attempts=3)
