"""The worker's pieces, each alone: the heartbeat driven by a fake
monotonic clock (no sleeping for an interval), the handler runner's
verdicts with no threads, the settings' checks, and the metrics observer
protocol. Every wait is bounded."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from harness import FakeClock, Monotonic

from fulltext_jobs import FullText, InMemoryRepository, InvalidInput, JobStatus, RetryPolicy
from fulltext_jobs.worker import FailJob, SkipJob, Worker
from fulltext_jobs.worker.handlers import Ending, HandlerRunner, settle
from fulltext_jobs.worker.heartbeat import Heartbeat
from fulltext_jobs.worker.inflight import Run
from fulltext_jobs.worker.settings import WorkerSettings
from fulltext_jobs.worker.stats import WorkerObserver
from fulltext_jobs.worker.waiting import REPEAT_SECONDS, Waiting, WaitLog, WaitReason

DEST = "language-detection"
START = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)

#: The longest any test waits for a thread.
BOUND_SECONDS = 10.0


class BeatCounter(InMemoryRepository):
    """Says when a heartbeat was made."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.beats = threading.Semaphore(0)

    def heartbeat(self, job: FullText) -> datetime:
        extended = super().heartbeat(job)
        self.beats.release()
        return extended


def claimed(repo: InMemoryRepository) -> FullText:
    repo.add_items(["item-1"])
    assert repo.enqueue_unqueued(DEST) == 1
    return repo.get_ready_job(DEST)


def a_run() -> Run:
    waits = WaitLog(DEST, clock=lambda: datetime.now(UTC), until_idle=False)
    return Run(destination=DEST, until_idle=False, loops=1, waits=waits)


def test_a_heartbeat_falls_due_a_third_of_the_lease_after_the_claim():
    clock, store_clock = Monotonic(), FakeClock(START)
    repo = InMemoryRepository(clock=store_clock, lease=LEASE)
    job = claimed(repo)
    heartbeat, run = Heartbeat(repo, clock=clock), a_run()
    [held] = heartbeat.hold(run, [job], None)

    with run.lock:
        assert heartbeat.take_due(run, clock()) == ([], 10.0)
    clock.now = 9.9
    with run.lock:
        assert heartbeat.take_due(run, clock()) == ([], 10.0)
    clock.now = 10.0
    with run.lock:
        due, _ = heartbeat.take_due(run, clock())
    assert due == [held]
    assert held.next_beat == 20.0

    store_clock.advance(seconds=10)
    heartbeat.beat_all(run, due)
    assert run.stats().heartbeats == 1
    [stored] = repo.list_jobs(DEST)
    assert stored.lease_expires == START + timedelta(seconds=10) + LEASE


def test_the_heartbeat_thread_beats_as_the_fake_clock_says():
    clock = Monotonic()
    repo = BeatCounter(lease=LEASE)
    job = claimed(repo)
    heartbeat, run = Heartbeat(repo, clock=clock), a_run()
    [held] = heartbeat.hold(run, [job], 5.0)
    clock.now = 5.0  # due before the thread first looks
    thread = threading.Thread(target=heartbeat.loop, args=(run,), daemon=True)
    thread.start()
    try:
        assert repo.beats.acquire(timeout=BOUND_SECONDS)
        # The next is due at 10 on the fake clock; at 9.9 nothing is made.
        clock.now = 9.9
        with run.changed:
            run.changed.notify_all()
        assert not repo.beats.acquire(timeout=0.2)
        clock.now = 10.0
        with run.changed:
            run.changed.notify_all()
        assert repo.beats.acquire(timeout=BOUND_SECONDS)
    finally:
        with run.changed:
            run.over = True
            run.changed.notify_all()
        thread.join(BOUND_SECONDS)
    assert not thread.is_alive()
    assert run.stats().heartbeats == 2
    assert held.next_beat == 15.0


class Observer:
    """A `WorkerObserver` that keeps what it is told."""

    def __init__(self) -> None:
        self.declared: list[str] = []
        self.counts: list[tuple[str, str, int]] = []
        self.calls: list[float] = []

    def declare(self, destination: str) -> None:
        self.declared.append(destination)

    def count(self, destination: str, name: str, n: int = 1) -> None:
        self.counts.append((destination, name, n))

    def observe_handler(self, destination: str, seconds: float) -> None:
        assert destination == DEST
        self.calls.append(seconds)


def runner(handler, observer: WorkerObserver | None = None) -> HandlerRunner:
    return HandlerRunner(
        handler,
        destination=DEST,
        retry=RetryPolicy(max_attempts=2, base_delay=timedelta(seconds=30), jitter=0),
        timeout=None,
        clock=lambda: START,
        observer=observer,
    )


def raising(exc: Exception):
    def handler(_job: FullText) -> None:
        raise exc

    return handler


def test_the_verdicts_of_a_handler_with_no_threads():
    job = claimed(InMemoryRepository())
    observer = Observer()
    assert runner(lambda _job: None, observer).judge(job) == (Ending.FINISH, START, None, None)
    assert runner(raising(SkipJob("empty"))).judge(job) == (Ending.SKIP, START, None, "empty")
    assert runner(raising(FailJob("404\n gone"))).judge(job) == (
        Ending.FAIL,
        START,
        None,
        "FailJob: 404 gone",
    )
    retried = runner(raising(ValueError("later"))).judge(job)
    assert retried == (Ending.RELEASE, START, START + timedelta(seconds=30), "ValueError: later")
    assert len(observer.calls) == 1

    settle(job, retried)
    assert job.status is JobStatus.READY
    assert job.not_before == START + timedelta(seconds=30)
    assert job.last_error == "ValueError: later"


def test_the_last_attempt_fails_and_an_async_handler_is_awaited():
    repo = InMemoryRepository()
    job = claimed(repo)
    job.attempts = 2
    assert runner(raising(ValueError())).judge(job) == (Ending.FAIL, START, None, "ValueError")
    seen: list[str] = []

    async def handler(job: FullText) -> None:
        seen.append(job.item_id)

    assert runner(handler).judge(job)[0] is Ending.FINISH
    assert seen == ["item-1"]


def test_settings_are_checked_once_and_canonical():
    repo = InMemoryRepository()
    settings = WorkerSettings(
        repository=repo, destination=DEST, handler=print, poll_interval=2, max_attempts=3
    )
    assert settings.poll_interval == 2.0
    assert isinstance(settings.poll_interval, float)
    assert settings.policy == RetryPolicy(max_attempts=3)
    assert settings.burst == 1
    with pytest.raises(InvalidInput, match="max_poll_interval"):
        WorkerSettings(repository=repo, destination=DEST, handler=print, poll_interval=60)
    with pytest.raises(InvalidInput, match="clock must be callable"):
        WorkerSettings(repository=repo, destination=DEST, handler=print, clock=0)  # type: ignore[arg-type]


def test_a_worker_tells_any_observer():
    repo = InMemoryRepository([f"item-{k}" for k in range(3)])
    assert repo.enqueue_unqueued(DEST) == 3
    observer = Observer()
    stats = Worker(repo, DEST, lambda _job: None, metrics=observer, poll_interval=0.01).run(
        until_idle=True, install_signal_handlers=False
    )
    assert observer.declared == [DEST]
    assert stats.finished == 3
    assert sum(n for _, name, n in observer.counts if name == "finished") == 3
    assert len(observer.calls) == 3


# --- what an idle worker waits for ------------------------------------------------


def test_the_wait_log_keeps_the_current_wait_and_says_each_change(caplog):
    clock = FakeClock(datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    ticks = Monotonic()
    waits = WaitLog(DEST, clock=clock, until_idle=False, monotonic=ticks)
    caplog.set_level("INFO", logger="fulltext_jobs.worker")
    assert waits.current is None
    waits.wait(WaitReason.EMPTY)
    began = clock()
    assert waits.current == Waiting(WaitReason.EMPTY, began)
    clock.advance(seconds=5)
    waits.wait(WaitReason.EMPTY)  # the same wait: since stays, nothing said
    assert waits.current == Waiting(WaitReason.EMPTY, began)
    waits.wait(WaitReason.RETRY, 90.0)
    assert waits.current == Waiting(WaitReason.RETRY, clock(), clock() + timedelta(seconds=90))
    waits.working()
    assert waits.current is None
    ticks.now += REPEAT_SECONDS / 2
    waits.wait(WaitReason.RETRY, 10.0)  # said a moment ago: not again
    ticks.now += REPEAT_SECONDS
    waits.working()
    waits.wait(WaitReason.RETRY, 10.0)  # said long ago: again
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("INFO", f"no job of {DEST} is ready; waiting for one"),
        ("INFO", f"jobs of {DEST} wait for a retry; the next is due at 12:01:35 UTC"),
        ("INFO", f"jobs of {DEST} wait for a retry; the next is due at 12:00:15 UTC"),
    ]


def test_a_run_until_idle_says_it_waits_for_retries_as_a_warning(caplog):
    clock = FakeClock(datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    waits = WaitLog(DEST, clock=clock, until_idle=True)
    waits.wait(WaitReason.RETRY, 60.0)
    waits.wait(WaitReason.RATE_LIMIT)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"jobs of {DEST} wait for a retry; the next is due at 12:01:00 UTC"),
    ]
    assert waits.current is not None
    assert waits.current.reason is WaitReason.RATE_LIMIT
