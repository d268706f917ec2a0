"""The worker: claim the jobs of one destination, run a handler on each, and
save what came of it, with heartbeats, backoff when idle, an optional
producer, and a graceful shutdown.

It uses only the port (`Repository`), so it runs on every adapter, and it
keeps the ledger's promises rather than adding its own: a job is saved only
under the claim that fetched it, so whatever happens here (a lease that ran
out, a shutdown that released a job whose handler was still running) a late
save is refused with `LostClaim` instead of overwriting what happened since.

Async handlers: a handler may be a coroutine function (or return any
awaitable). Each claim thread then runs it to completion on an event loop of
its own, made on first use and closed when the thread ends; `concurrency`
threads run that many coroutines at once. Resources bound to a loop (an HTTP
client session, say) should be made inside the handler, or per thread.

Threads, not processes. `concurrency=N` runs N claim-and-handle threads over
one repository; the adapters are thread-safe, and a SQLAlchemy engine gives
each thread its own pooled connection. Handlers that read full texts and
call services spend their time waiting on I/O, or in C code that releases the
GIL, so threads keep them busy at a fraction of the cost of processes. For
CPU-bound handlers, start several processes, each with a `Worker` of its
own: the ledger hands each job to one claimer whatever the process, so that
is as safe as threads. A process pool inside the worker would need picklable
handlers and an engine built in each process, and would add a second way to
lose a job in flight; running whole workers side by side needs neither.

Waiting for work: a thread whose claim came back empty sleeps, backing off
from `poll_interval` to `max_poll_interval`, but no longer than until the
destination's next delayed job (a retry) is due (`Repository.next_due`),
and it wakes at once when the repository's listener (`Repository.listen`;
on PostgreSQL a LISTEN on a connection of its own, fed by triggers on the
jobs table) announces that a job of the destination became ready. A job
released for later announces nothing (nobody could claim it yet): the
worker that released it claims it when it is due, and the others find it
by their polls. The poll stays as the safety net: notifications sent while
the listener was reconnecting are lost, and SQLite has none.

How a job goes through a worker:

- It is claimed (`get_ready_job`, or `claim_ready` when `batch_size` > 1;
  with `in_transaction=True`, held by `hold_ready` instead, see `Worker`);
  under a `rate_limit`, only after a start token was taken for it.
  From then until it is saved, a heartbeat thread extends its lease every
  `heartbeat_interval` (by default a third of the lease the repository
  granted), so long work is not rescued from under a live worker.
- `handler(job)` runs. Returning normally finishes the job; raising
  `SkipJob` skips it; raising `FailJob` fails it at once; any other
  exception is retried by the worker's `RetryPolicy`: the job goes back to
  `ready`, not to be claimed before a backoff has passed, until it has had
  the policy's `max_attempts` attempts, and then fails. Either way the
  exception's type and message are in `last_error`.
- The outcome is saved (`save_fulltext`, or for a batch `save_many(...,
  atomic=False)`: one call, each job under its own claim). A
  `LostClaim` means another delivery owns the job: it is logged and counted,
  not raised. A retryable `StoreError` (a lost connection, a restart, a
  deadlock) is logged and counted, and the call is made again after a
  backoff. Any other error stops the worker and `run()` raises it.

Shutdown: `stop()` (or SIGINT or SIGTERM, when `run()` is called in the main
thread) stops claiming, lets the handlers in flight finish for up to
`shutdown_timeout` seconds, and then releases (returns to `ready`) every job
whose handler has not finished, so that none is left `running`. Such a
handler's thread is a daemon and is left to run; when it returns, its save is
refused with `LostClaim`, because the release ended the claim.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import functools
import inspect
import logging
import math
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from fulltext_jobs.domain import (
    DEFAULT_SWEEP_INTERVAL,
    MAX_CLAIM,
    MAX_TIMESTAMP,
    FullText,
    JobStatus,
    check_destination,
    check_max_attempts,
    utc,
)
from fulltext_jobs.errors import (
    InvalidInput,
    JobsError,
    LostClaim,
    NoJobs,
    StaleJobs,
    StoreError,
)
from fulltext_jobs.logs import _context as _log_fields
from fulltext_jobs.logs import context_fields, log_context
from fulltext_jobs.rate_limit import check_burst, check_rate
from fulltext_jobs.repository import ReadyListener, Repository
from fulltext_jobs.retry import DEFAULT_RETRY, RetryPolicy

if TYPE_CHECKING:
    from fulltext_jobs.metrics import WorkerMetrics

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_SECONDS",
    "FailJob",
    "Handler",
    "SkipJob",
    "Worker",
    "WorkerStats",
]

#: The most claim threads one worker runs: more belong in more processes.
MAX_CONCURRENCY: Final = 1024

#: The longest interval or timeout a worker takes, in seconds (a week): a
#: longer one is a mistake, and past about 292 years Python's own waits fail.
MAX_SECONDS: Final = 7 * 24 * 3600

# The package's logger, not this module's: deployments filter and route the
# worker's records by the name they had before the worker was a package.
_log = logging.getLogger("fulltext_jobs.worker")

#: What a worker runs on each job: a function, or a coroutine function (an
#: awaitable it returns is run to completion). Its return value is ignored.
Handler = Callable[[FullText], object]

#: How a worker waits: `seconds`, or until `event` is set; returns whether
#: the event was set. `threading.Event.wait` unless a test injects another.
Wait = Callable[[threading.Event, float], bool]

_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

#: The heartbeat interval when the claim does not say how long its lease is:
#: often enough for any lease of half a minute or more.
_FALLBACK_HEARTBEAT_SECONDS: Final = 10.0

#: How often `run()` looks at the flag its signal handlers set.
_TICK_SECONDS: Final = 0.05

#: The longest a listener waits at a time, so that its thread notices the
#: end of the run soon: `run()` joins it, so half a slice on average is
#: added to every run that listened (a run that never found its queue empty
#: never listens: `Worker._start_listener`). Ten wake-ups a second cost
#: about 1% of a core on PostgreSQL (psycopg's `notifies`), so the slice is
#: not shorter.
_LISTEN_SLICE_SECONDS: Final = 0.1

#: A new listener's first slice, doubled after each up to
#: `_LISTEN_SLICE_SECONDS`: a run of `until_idle` starts its listener when
#: its queue runs dry, which is also when it ends, and should not then wait
#: out a whole slice.
_FIRST_LISTEN_SLICE_SECONDS: Final = 0.005

#: The longest a listener waits before it tries to listen again after a
#: retryable error: it is cheap (one connection attempt), and the sooner it
#: listens again, the sooner the claim threads learn the server is back.
_MAX_LISTEN_RETRY_SECONDS: Final = 5.0

#: The shortest wait, in seconds, for a ready job that was not claimable.
_SOON: Final = 0.01

#: The shortest wait, in seconds, for a start token the bucket said was
#: due: a wait of a few microseconds would only spin.
_MIN_TOKEN_WAIT: Final = 0.001

#: After a lost race for a start token, a waiter waits up to this many more
#: tokens' time, at random (see `Worker._take_tokens`).
_MAX_TOKEN_SPREAD: Final = 8

#: How long shutdown waits for the heartbeat and rescue threads to notice
#: they should end, beyond `shutdown_timeout` (they may be in a call).
_THREAD_GRACE_SECONDS: Final = 1.0


class SkipJob(Exception):  # noqa: N818 - reads as an instruction to the worker
    """Raised by a handler: this job has nothing to do (an item without full
    text, say). The worker marks it `skipped`; the message, if any, is
    logged."""


class FailJob(Exception):  # noqa: N818 - reads as an instruction to the worker
    """Raised by a handler: this job cannot succeed (a 404, a malformed
    text), so retrying is pointless. The worker marks it `failed` at once,
    whatever attempts are left, with the message in `last_error`."""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerStats:
    """What a run of a worker did, job by job.

    `claimed` counts the jobs the worker claimed. `finished`, `failed`,
    `skipped` and `released` count saves that the ledger accepted.
    `lost_claims` counts saves (and releases) it refused because the claim
    had ended: the lease ran out and the job was rescued or claimed again, or
    the shutdown released the job while its handler ran. `retryable_errors`
    counts retryable `StoreError`s, each followed by a backoff or a retry.
    `heartbeats` counts the leases extended. `dropped` counts claimed jobs
    whose handlers were never started because a heartbeat had found a claim
    of their batch lost: the worker no longer owned the batch, so it left
    those jobs to their new owner (or released them, if still held).
    `enqueued` and `rescued` are the producer's (`produce=True`): jobs
    created, and expired jobs given back. `retried` counts jobs whose
    handler raised and that went back to `ready` to be retried after a
    backoff (a job that fails for good counts as `failed`).
    """

    claimed: int = 0
    finished: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0
    lost_claims: int = 0
    retryable_errors: int = 0
    heartbeats: int = 0
    dropped: int = 0
    enqueued: int = 0
    rescued: int = 0
    retried: int = 0


# The counter kept for each status a saved job can have.
_SAVED_AS: Final[dict[JobStatus, str]] = {
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.SKIPPED: "skipped",
    JobStatus.READY: "released",
}


class _Stage(enum.Enum):
    """Where a claimed job is in the worker. Moves are made under the run's
    lock, so an outcome is saved by its claim thread or by the shutdown,
    never by both. (The result of a handler that outlived the shutdown is
    still offered to the ledger, which refuses it: the release ended the
    claim.)"""

    PENDING = enum.auto()  # claimed; its handler has not started
    RUNNING = enum.auto()  # its handler is running
    DONE = enum.auto()  # handled; the outcome waits to be saved
    SAVING = enum.auto()  # its claim thread is saving it
    TAKEN = enum.auto()  # the shutdown released it, or saved its outcome


# The stages in which a job's lease must be kept alive.
_HELD_STAGES: Final = frozenset({_Stage.PENDING, _Stage.RUNNING, _Stage.DONE, _Stage.SAVING})


class _Ending(enum.Enum):
    """How a handled job ends."""

    FINISH = enum.auto()
    SKIP = enum.auto()
    FAIL = enum.auto()
    RELEASE = enum.auto()  # back to ready, to be retried


# How a handled job ends, when (the worker's clock), from when it may be
# retried (RELEASE only), and the error to record (FAIL and RELEASE).
_Verdict = tuple[_Ending, datetime, datetime | None, str | None]


@dataclasses.dataclass(eq=False, slots=True)
class _Held:
    """A claimed job that has not been saved yet. Compared and hashed by
    identity: the run holds a set of them (two deliveries of one job are two
    entries)."""

    # As claimed while its handler runs (the handler gets a copy); once the
    # handler ended, under the run's lock, the outcome itself (`_record`).
    # Only its id and claim token, which never change, matter to heartbeats.
    job: FullText
    interval: float  # seconds between heartbeats
    next_beat: float  # when the next heartbeat is due (monotonic)
    stage: _Stage = _Stage.PENDING
    outcome: FullText | None = None  # the job finished, failed, skipped or released
    late: FullText | None = None  # the outcome of a handler that outlived the shutdown
    lost: bool = False  # a heartbeat found the claim gone
    # The heartbeat thread's own copy, whose lease it updates: made at the
    # first heartbeat, since most jobs are saved before one is due.
    beat: FullText | None = None


class _Run:
    """The state of one call of `Worker.run`, shared by its threads."""

    def __init__(
        self, *, until_idle: bool, loops: int, on_count: Callable[[str, int], None] | None = None
    ) -> None:
        self.until_idle = until_idle
        self.on_count = on_count  # told every count too (the metrics)
        self.lock = threading.Lock()
        # Notified when the run ends, or when jobs are held whose first
        # heartbeat is due before `beat_wake`: the heartbeat thread waits on it.
        self.changed = threading.Condition(self.lock)
        # When the heartbeat thread next looks at the held jobs (monotonic):
        # inf while it waits for a notification, -inf while it is not
        # waiting (it looks again before it waits).
        self.beat_wake = -math.inf
        self.halt = threading.Event()  # claim nothing more
        # Set when a job may have become ready (or the run halts): idle claim
        # threads wait on it. Cleared only under the lock, and never once
        # halted, so a halt cannot be cleared away.
        self.wakeup = threading.Event()
        self.abandoned = threading.Event()  # shutdown_timeout passed: stop retrying saves
        self.over = False  # heartbeats end
        self.held: set[_Held] = set()
        self.losses = 0  # how many held jobs heartbeats have found lost
        self.counts: Counter[str] = Counter()
        self.fatal: BaseException | None = None
        self.loops_left = loops
        # Set by the signal handlers, which must not take locks (see
        # `Worker._install_signal_handlers`); `run()` acts on it.
        self.signalled = False
        # The listener's thread (`Worker(listen=True)`), started by the first
        # claim thread that finds nothing to claim or is about to wait (see
        # `Worker._start_listener`), never once the run halts.
        self.listener: threading.Thread | None = None
        self.listening = False  # its thread was started
        self.produce_lock = threading.Lock()
        # When the last production ended (monotonic) and how many jobs it made.
        self.last_production = (-math.inf, 0)

    def end(self) -> None:
        """Claim nothing more, and wake the threads waiting for work."""
        with self.lock:
            self.halt.set()
            self.wakeup.set()

    def rearm(self) -> None:
        """Forget past wake-ups, before a claim: a job that becomes ready
        after this point sets `wakeup` again, so it is never slept through."""
        with self.lock:
            if not self.halt.is_set():
                self.wakeup.clear()

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n
        if self.on_count is not None:
            self.on_count(name, n)

    def stats(self) -> WorkerStats:
        with self.lock:
            return WorkerStats(
                **{f.name: self.counts[f.name] for f in dataclasses.fields(WorkerStats)}
            )


class Worker:
    """Runs `handler` on the jobs of `destination` in `repository`.

    `concurrency` claim-and-handle threads share the repository; each claims
    one job at a time, or `batch_size` at once. When a claim finds nothing a
    thread waits `poll_interval` seconds, doubling up to `max_poll_interval`
    while nothing comes, back to `poll_interval` once work is found. With
    `listen` (the default), a waiting thread also wakes as soon as the
    repository announces that a job became ready (`Repository.listen`: on
    PostgreSQL through LISTEN/NOTIFY, in memory at once; SQLite cannot, so
    there the poll alone finds work).
    `heartbeat_interval` is how often the lease of a held job is extended: by
    default a third of the lease the repository granted (`math.inf`: never).
    `shutdown_timeout` is how long a stopping worker waits for its handlers
    before it releases their jobs.

    With `produce=True` the worker also fills the queue: when a claim finds
    nothing it queues the items that arrived since it last looked, and every
    `sweep_interval` seconds (default an hour; 0: every time) every eligible
    item that has no job, for items that became eligible late
    (`Repository.enqueue_new`: an idle look costs one index probe, not a
    read of every item); and every `rescue_interval` seconds it returns
    expired jobs to `ready` (`rescue_expired`), failing those that have had
    `max_attempts` attempts.

    `retry` (a `RetryPolicy`; default `RetryPolicy()`: 5 attempts, 30 s
    doubling to 30 minutes, with jitter) says how a job whose handler raised
    is retried, and how many attempts a job gets in all, handler failures
    and expired leases alike. `max_attempts`, if given, sets that bound on
    the default policy; given with a `retry` whose bound differs, it raises
    `InvalidInput`.

    `rate_limit`: at most this many job starts a second for the destination,
    across every worker sharing the store (a token bucket kept in it; see
    `Repository.take_rate_tokens`); None, the default, for no limit. A
    claim takes no more jobs than the tokens it was granted, and a worker
    with none waits as long as the bucket says (a shutdown cuts the wait
    short). `rate_burst` is the most starts at once after an idle spell:
    by default one claim's worth, `batch_size` (so 1 unless batching, and
    the starts are then evenly spaced). Over any `t` seconds, at most
    `rate_limit * t + rate_burst` jobs start.

    `in_transaction=True`: the transaction mode, for short handlers
    (`Repository.hold_ready`): each claim holds its batch in an open
    transaction, whose row locks are the claim, and each job is written
    once, when the batch ends; no lease, no heartbeat. The retry policy,
    `SkipJob`/`FailJob`, the rate limit (tokens are taken before the batch
    is held) and `timeout` apply as usual. Any error reaching the
    transaction rolls the whole batch back (its handlers run again later),
    and so does a crash: the jobs are ready at once, their attempts not
    counted, so a handler that kills its process is retried for ever. A
    stopping worker starts no further handler, commits what was handled and
    leaves the rest ready. Keep the default, leased mode for handlers that
    run long or may crash the process (docs/guide-workers.md).

    `timeout`: the most seconds a handler may take on a job (None, the
    default: no limit). One that runs past it fails the job as an exception
    would (so the `retry` policy applies), with `TimeoutError: the handler
    timed out after N s` in `last_error`. An async handler is cancelled; any
    other runs in a thread of its own, which Python cannot stop: it is left
    to run, and what it returns or raises afterwards is dropped.

    `metrics` (a `fulltext_jobs.metrics.WorkerMetrics`) is told every count
    of `WorkerStats` and how long each handler call took, for Prometheus.

    `clock` stamps `finished` (default: the current time in UTC); `wait` is
    how the worker pauses (default `threading.Event.wait`), for tests.

    Raises `InvalidInput` for a repository that is not a `Repository`, a bad
    destination, a handler that is not callable, a count that is not a
    positive whole number, a time that is not a positive number of seconds
    up to a week (`shutdown_timeout` and `sweep_interval` may be 0), a
    `max_poll_interval` below `poll_interval`, a `rate_limit` that is not a
    number of starts a second from one a week to 100,000, a `rate_burst`
    that is not a whole number from 1 to 10,000 (or is given without a
    `rate_limit`), a `timeout` that is not a positive number of seconds
    up to a week, or an `in_transaction` that is not True or False.
    """

    def __init__(  # noqa: PLR0913 - each is a setting a deployment tunes
        self,
        repository: Repository,
        destination: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        batch_size: int = 1,
        in_transaction: bool = False,
        poll_interval: float = 1.0,
        max_poll_interval: float = 30.0,
        heartbeat_interval: float | None = None,
        listen: bool = True,
        shutdown_timeout: float = 30.0,
        produce: bool = False,
        rescue_interval: float = 60.0,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL.total_seconds(),
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: float | None = None,
        rate_burst: int | None = None,
        timeout: float | None = None,
        metrics: WorkerMetrics | None = None,
        clock: Callable[[], datetime] | None = None,
        wait: Wait | None = None,
    ) -> None:
        if not isinstance(repository, Repository):
            msg = f"repository must be a Repository, not {type(repository).__name__}"
            raise InvalidInput(msg)
        if not callable(handler):
            msg = f"handler must be callable, not {handler!r}"
            raise InvalidInput(msg)
        self._repository = repository
        self._destination = check_destination(destination)
        self._handler = handler
        self._concurrency = _whole("concurrency", concurrency, MAX_CONCURRENCY)
        self._batch_size = _whole("batch_size", batch_size, MAX_CLAIM)
        if not isinstance(in_transaction, bool):
            msg = f"in_transaction must be True or False, not {in_transaction!r}"
            raise InvalidInput(msg)
        self._in_transaction = in_transaction
        self._poll_interval = _seconds("poll_interval", poll_interval)
        self._max_poll_interval = _seconds("max_poll_interval", max_poll_interval)
        if self._max_poll_interval < self._poll_interval:
            msg = (
                f"max_poll_interval ({max_poll_interval!r}) must not be below "
                f"poll_interval ({poll_interval!r})"
            )
            raise InvalidInput(msg)
        self._heartbeat_interval = (
            None
            if heartbeat_interval is None
            else _seconds("heartbeat_interval", heartbeat_interval, infinite=True)
        )
        self._shutdown_timeout = _seconds("shutdown_timeout", shutdown_timeout, zero=True)
        self._listen = bool(listen)
        self._produce = bool(produce)
        self._rescue_interval = _seconds("rescue_interval", rescue_interval)
        self._sweep_interval = timedelta(
            seconds=_seconds("sweep_interval", sweep_interval, zero=True)
        )
        self._retry = _retry_policy(retry, max_attempts)
        self._max_attempts = self._retry.max_attempts
        self._rate, self._burst = _rate_settings(rate_limit, rate_burst, self._batch_size)
        self._timeout = None if timeout is None else _seconds("timeout", timeout)
        for name, hook in (("clock", clock), ("wait", wait)):
            if hook is not None and not callable(hook):
                msg = f"{name} must be callable, not {hook!r}"
                raise InvalidInput(msg)
        self._clock = clock or utc
        self._wait: Wait = wait or threading.Event.wait
        self._metrics = metrics
        if metrics is not None:
            metrics.declare(self._destination)
        self._lock = threading.Lock()
        self._stopped = False
        self._running = False
        self._run: _Run | None = None

    @property
    def stats(self) -> WorkerStats:
        """The counts of the current run, or of the last one.

        They may still change after `run()` returned: a handler that outlived
        the shutdown adds its refused save to `lost_claims` when it ends.
        """
        run = self._run
        return WorkerStats() if run is None else run.stats()

    def stop(self) -> None:
        """Ask the worker to stop: claim nothing more, let the handlers in
        flight finish (for up to `shutdown_timeout`), release the rest, and
        return from `run()`.

        Safe from any thread, and final: once stopped, `run()` returns at
        once. From a signal handler of your own, prefer
        `run(install_signal_handlers=True)`, whose handlers take no lock.
        """
        with self._lock:
            self._stopped = True
            run = self._run
        if run is not None:
            run.end()

    def run(self, *, until_idle: bool = False, install_signal_handlers: bool = True) -> WorkerStats:
        """Claim and handle jobs until `stop()`, a signal, or, with
        `until_idle`, until a claim finds nothing (after producing, with
        `produce=True`, has added nothing); then shut down as `stop()` says,
        and return what was done.

        Called in the main thread with `install_signal_handlers`, it handles
        SIGINT and SIGTERM as `stop()` while it runs and restores the previous
        handlers before it returns.

        Raises the error that stopped the worker, if one did: any error other
        than `NoJobs`, `LostClaim` and a retryable `StoreError`, from the
        repository or from the worker's own threads (a handler's exceptions
        fail its job instead). Raises `RuntimeError` if the worker is already
        running.
        """
        with self._lock:
            if self._running:
                msg = "this worker is already running"
                raise RuntimeError(msg)
            run = _Run(
                until_idle=until_idle,
                loops=self._concurrency,
                on_count=None
                if self._metrics is None
                else functools.partial(self._metrics.count, self._destination),
            )
            self._run = run
            if self._stopped:
                return WorkerStats()
            self._running = True
        previous = self._install_signal_handlers(run) if install_signal_handlers else {}
        try:
            self._run_threads(run)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
            with self._lock:
                self._running = False
        if run.fatal is not None:
            raise run.fatal
        return run.stats()

    # --- the run and its threads ----------------------------------------------

    def _install_signal_handlers(self, run: _Run) -> dict[signal.Signals, _SignalHandler]:
        """Make SIGINT and SIGTERM stop the run, if called in the main thread;
        return the handlers they replaced."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - signal's signature
            # Only a flag: a handler runs in the main thread between two
            # bytecodes, possibly while that thread holds the very lock
            # `Event.set` takes, which would deadlock. `run()` polls it.
            run.signalled = True

        previous: dict[signal.Signals, _SignalHandler] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
        return previous

    def _run_threads(self, run: _Run) -> None:
        loops = [
            self._thread(run, self._claim_loop, f"fulltext-jobs-worker-{n}")
            for n in range(self._concurrency)
        ]
        helpers = [self._thread(run, self._heartbeat_loop, "fulltext-jobs-heartbeat")]
        if self._listen:
            run.listener = self._thread(run, self._listen_loop, "fulltext-jobs-listen")
        if self._produce:
            helpers.append(self._thread(run, self._rescue_loop, "fulltext-jobs-rescue"))
        for thread in (*helpers, *loops):
            thread.start()
        try:
            while not run.halt.wait(_TICK_SECONDS):
                if run.signalled:
                    _log.info("signal received: %s is stopping", self._destination)
                    self.stop()
        finally:
            # Also on KeyboardInterrupt, when run() installed no handlers.
            self._shut_down(run, loops, helpers)

    def _thread(self, run: _Run, target: Callable[[_Run], None], name: str) -> threading.Thread:
        """A daemon thread running `target(run)`; an exception it raises stops
        the run and is raised by `run()`."""

        def body() -> None:
            try:
                with log_context(destination=self._destination):
                    target(run)
            except BaseException as exc:  # noqa: BLE001 - handed to run(), which raises it
                self._fail_run(run, exc)

        # Daemons, so that a handler that outlives the shutdown does not keep
        # the process alive.
        return threading.Thread(target=body, name=name, daemon=True)

    def _fail_run(self, run: _Run, exc: BaseException) -> None:
        with run.lock:
            first = run.fatal is None
            if first:
                run.fatal = exc
        if first:
            if isinstance(exc, JobsError):
                # Named by the library (a refused login, a missing schema):
                # its message says it all, on one line.
                _log.error("worker for %s stopped: %s", self._destination, exc)
            else:
                _log.error("worker for %s stopped by an error", self._destination, exc_info=exc)
        run.end()

    def _shut_down(
        self, run: _Run, loops: list[threading.Thread], helpers: list[threading.Thread]
    ) -> None:
        """Let the claim threads finish within `shutdown_timeout`, release what
        they still hold, and end the helper threads."""
        run.end()
        deadline = time.monotonic() + self._shutdown_timeout
        for thread in loops:
            thread.join(max(0.0, deadline - time.monotonic()))
        run.abandoned.set()
        self._take_over(run)
        with run.changed:
            run.over = True
            run.changed.notify_all()
        # Halted: no claim thread starts the listener from now on.
        if run.listener is not None and run.listening:
            helpers = [*helpers, run.listener]
        for thread in helpers:
            thread.join(_THREAD_GRACE_SECONDS)

    def _start_listener(self, run: _Run) -> None:
        """Start listening for ready jobs (with `listen`), once: when a claim
        thread first finds nothing to claim, or is about to wait after an
        error. A worker that drains a queue and stops (`until_idle`) thus
        needs no listener until the queue runs dry, and `run()` does not
        wait out the listener's slice (`_LISTEN_SLICE_SECONDS`) at the end
        of a run that never had to wait. Nothing is missed meanwhile: the
        listener wakes the claim threads once it listens (see
        `_listen_loop`)."""
        with run.lock:
            if run.listener is None or run.listening or run.halt.is_set():
                return
            run.listening = True
            run.listener.start()

    def _take_over(self, run: _Run) -> None:
        """Release every job still held whose handler has not finished, and
        save the outcomes that wait to be saved, so that no job is left
        running. A handler still running keeps going in its daemon thread;
        its save will be refused."""
        taken: list[tuple[_Held, FullText]] = []
        with run.lock:
            for held in run.held:
                if held.stage is _Stage.DONE and held.outcome is not None:
                    taken.append((held, held.outcome))
                elif held.stage in {_Stage.PENDING, _Stage.RUNNING}:
                    if held.stage is _Stage.RUNNING:
                        _log.warning(
                            "job %s (item %s): its handler is still running after %g s; "
                            "releasing the job",
                            held.job.id,
                            held.job.item_id,
                            self._shutdown_timeout,
                        )
                    taken.append((held, self._released(held.job)))
                else:
                    continue
                held.stage = _Stage.TAKEN
        for held, outcome in taken:
            try:
                self._repository.save_fulltext(outcome)
            except LostClaim:
                self._lost(run, held)
            except StoreError as exc:
                # The lease will bring the job back.
                _log.warning("job %s: could not save it at shutdown: %s", held.job.id, exc)
            except Exception:  # noqa: BLE001 - logged; the run is ending
                _log.exception("job %s: could not save it at shutdown", held.job.id)
            else:
                run.count(_saved_as(outcome))
            with run.lock:
                run.held.discard(held)

    def _claim_loop(self, run: _Run) -> None:
        """Claim and handle jobs until the run halts (or, with `until_idle`,
        until there is nothing to claim)."""
        delay = self._poll_interval
        try:
            while not run.halt.is_set():
                run.rearm()
                try:
                    # In transaction mode the jobs come back handled and
                    # saved; a StoreError there rolled the whole batch back.
                    claimed = self._take_work(run)
                except StoreError as exc:
                    if not exc.retryable:
                        raise
                    self._retryable(run, "claim", exc, delay)
                    # The listener's first wake-up after it listens again
                    # says the server is back: claim at once.
                    self._start_listener(run)
                    self._wait(run.wakeup, delay)
                    delay = min(delay * 2, self._max_poll_interval)
                    continue
                if claimed:
                    delay = self._poll_interval
                    continue
                if run.halt.is_set():
                    break  # halted while waiting for a start token
                self._start_listener(run)
                made = self._make_work(run, idle_since=time.monotonic()) if self._produce else False
                if made:
                    delay = self._poll_interval
                    continue
                if run.until_idle and made is not None:
                    due_in = self._next_due(run)
                    if due_in is None:
                        return
                    # Jobs wait for their retry: idle only once they are done.
                    self._wait(run.wakeup, min(delay, due_in))
                    delay = min(delay * 2, self._max_poll_interval)
                    continue
                # A delayed job (a retry) is claimed when it is due, not at
                # the next poll: its release woke no one.
                due_in = self._next_due(run, soon=delay)
                self._wait(run.wakeup, delay if due_in is None else min(delay, due_in))
                delay = min(delay * 2, self._max_poll_interval)
        finally:
            _close_thread_loop()
            with run.lock:
                run.loops_left -= 1
                last = run.loops_left == 0
            if last:
                run.end()

    def _next_due(self, run: _Run, soon: float = _SOON) -> float | None:
        """With nothing to claim: None if no job of the destination is
        `ready`, else about how many seconds until one is due (a delayed
        retry), or `soon` for one due already (another claimer was taking
        it, or holds it in an uncommitted claim). A retryable error counts
        as "not known yet": `soon`."""
        try:
            due = self._repository.next_due(self._destination)
        except StoreError as exc:
            if not exc.retryable:
                raise
            self._retryable(run, "next_due", exc)
            return soon
        if due is None:
            return None
        due_in = (due - utc(self._clock())).total_seconds()
        return due_in if due_in > 0 else soon

    def _claim(self, run: _Run) -> list[FullText]:
        """Claim up to `batch_size` jobs; under a rate limit, no more than
        the start tokens granted, waiting for one if there is none (an
        empty list if the run halts meanwhile)."""
        n = self._batch_size
        if self._rate is not None:
            n = self._take_tokens(run, self._rate)
            if not n:
                return []
        if n == 1:
            try:
                return [self._repository.get_ready_job(self._destination)]
            except NoJobs:
                return []
        return self._repository.claim_ready(self._destination, n)

    def _take_work(self, run: _Run) -> int:
        """Claim jobs and work through them; return how many were claimed
        (0: nothing to claim). A `StoreError` raised here is the claim's, or
        in transaction mode any (the batch rolled back); the leased mode's
        saves retry their own."""
        # A count, not the jobs: the caller keeping a batch alive through
        # the next one would double the objects the garbage collector sees.
        if self._in_transaction:
            return self._work_held(run)
        jobs = self._claim(run)
        if jobs:
            self._work_through(run, jobs)
        return len(jobs)

    def _work_held(self, run: _Run) -> int:
        """Transaction mode: hold up to `batch_size` jobs (`hold_ready`),
        handle them one after another and leave the block, which writes
        each outcome once and commits; return how many were held (0:
        nothing to claim). Once the run halts no handler is started: the
        jobs not handled are left `running` in the block, which does not
        write them, so they stay `ready`. Any error leaving the block rolls the batch
        back: its jobs stay `ready`, their attempts not counted."""
        n = self._batch_size
        if self._rate is not None:
            n = self._take_tokens(run, self._rate)
            if not n:
                return 0
        refused: set[uuid.UUID] = set()
        try:
            with self._repository.hold_ready(self._destination, n) as jobs:
                if jobs:
                    run.count("claimed", len(jobs))
                base = context_fields()  # as in `_work_through`
                for job in jobs:
                    if run.halt.is_set():
                        break
                    token = _log_fields.set(_JobFields(base, job.id))
                    try:
                        _settle(job, self._judge(job))
                    finally:
                        _log_fields.reset(token)
        except StaleJobs as exc:
            # Another writer changed a held row (which the row locks make
            # rare): those outcomes were refused, the others committed.
            refused = set(exc.refused)
            run.count("lost_claims", len(refused))
        saved = Counter(
            _saved_as(job)
            for job in jobs
            if job.status is not JobStatus.RUNNING and job.id not in refused
        )
        for name, count in saved.items():
            run.count(name, count)
        return len(jobs)

    def _take_tokens(self, run: _Run, rate: float) -> int:
        """Start tokens for the next claim (1 to `batch_size`), waiting as
        long as the bucket says when it has none; 0 if the run halts first.

        Tokens a claim then leaves unused (it found fewer jobs) are lost,
        not given back: handing them back exactly would need the take and
        the claim in one transaction, holding the bucket's row lock across
        the claim. The loss is at most `batch_size - 1` tokens a claim,
        and only when the queue runs short, where the rate is not what
        holds the work back; an idle worker's polls use up tokens nobody
        needed, and the first job to come after waits at most one token's
        time (1 / rate)."""
        refused = 0
        while not run.halt.is_set():
            tokens = self._repository.take_rate_tokens(
                self._destination, rate, self._batch_size, burst=self._burst
            )
            if tokens.granted:
                return tokens.granted
            # Every thread and process waiting for the bucket wakes when its
            # next token is due, and all but one lose the race for it. A
            # loser then waits up to a few tokens' time more, at random, so
            # that a crowd of waiters does not write the bucket's row all at
            # once every token. The first wait has no such spread: a lone
            # worker keeps to the rate exactly. Halting cuts a wait short.
            spread = min(refused, _MAX_TOKEN_SPREAD) / rate * random.random()  # noqa: S311 - jitter
            refused += 1
            self._wait(run.halt, max(tokens.wait, _MIN_TOKEN_WAIT) + spread)
        return 0

    def _make_work(self, run: _Run, *, idle_since: float) -> bool | None:
        """Queue the destination's new items, or all its unqueued items when
        a sweep is due (and, with `until_idle`,
        rescue expired jobs); return whether that made any job ready, or
        None if a retryable error left that unknown.

        One thread produces at a time; a thread that finds that another
        produced after its own claim came back empty takes that result."""
        with run.produce_lock:
            ended, made = run.last_production
            if ended > idle_since:
                return made > 0
            try:
                made = self._repository.enqueue_new(
                    self._destination, sweep_interval=self._sweep_interval
                )
                run.count("enqueued", made)
                if run.until_idle:
                    # Before reporting idle: jobs whose worker died come back.
                    made += self._rescue(run)
            except StoreError as exc:
                if not exc.retryable:
                    raise
                self._retryable(run, "enqueue", exc)
                return None
            if made:
                _log.info("%s: queued or rescued %d job(s)", self._destination, made)
            run.last_production = (time.monotonic(), made)
            return made > 0

    def _rescue(self, run: _Run) -> int:
        rescued = self._repository.rescue_expired(
            self._destination, max_attempts=self._max_attempts
        )
        run.count("rescued", rescued)
        if rescued:
            _log.warning("%s: rescued %d job(s) whose lease ran out", self._destination, rescued)
        return rescued

    def _listen_loop(self, run: _Run) -> None:
        """Wake the idle claim threads whenever the repository says that jobs
        of the destination became ready, until the run halts. Does nothing
        if the repository cannot say so.

        Listening is an optimisation, never a reason to stop: while the
        server is away the listener tries again with a backoff (up to
        `_MAX_LISTEN_RETRY_SECONDS`), and the claim threads poll; once it
        listens, first or again, it wakes them, since it cannot know what
        was notified meanwhile. After an error that will not pass (a refused login, say)
        it leaves the claim threads to poll; they meet the same error, which
        stops the worker if it is one."""
        delay = self._poll_interval
        listener: ReadyListener | None = None
        slice_seconds = _FIRST_LISTEN_SLICE_SECONDS
        try:
            while not run.halt.is_set():
                try:
                    if listener is None:
                        listener = self._repository.listen(self._destination)
                        if listener is None:
                            return  # the store cannot notify: the claim threads poll
                        # Jobs may have become ready since the claim that
                        # found nothing and started the listener: claim again.
                        run.wakeup.set()
                    if listener.wait(slice_seconds):
                        run.wakeup.set()
                    slice_seconds = min(slice_seconds * 2, _LISTEN_SLICE_SECONDS)
                    delay = self._poll_interval
                except StoreError as exc:
                    if not exc.retryable:
                        self._stop_listening(exc)
                        return
                    # Until it listens again, the claim threads poll.
                    self._retryable(run, "listen", exc, delay)
                    run.halt.wait(delay)
                    delay = min(delay * 2, max(self._poll_interval, _MAX_LISTEN_RETRY_SECONDS))
                except Exception as exc:  # noqa: BLE001 - a listener's bug must not stop the work
                    _log.exception("%s: the listener failed; polling only", self._destination)
                    self._stop_listening(exc)
                    return
        finally:
            if listener is not None:
                listener.close()

    def _stop_listening(self, exc: Exception) -> None:
        # A warning: the worker still works. If the error stops it too (a
        # refused login), the claim thread's ERROR line says so.
        _log.warning("%s: cannot listen for ready jobs, polling only: %s", self._destination, exc)

    def _rescue_loop(self, run: _Run) -> None:
        """Rescue expired jobs now and every `rescue_interval` seconds."""
        while True:
            try:
                self._rescue(run)
            except StoreError as exc:
                if not exc.retryable:
                    raise
                self._retryable(run, "rescue_expired", exc)
            if run.halt.wait(self._rescue_interval):
                return

    def _work_through(self, run: _Run, jobs: list[FullText]) -> None:
        """Handle claimed jobs one after another, then save their outcomes
        together. Once the run halts no handler is started: jobs not yet
        handled are released. Once a heartbeat finds a claim of the batch
        lost no handler is started either: the batch's lease ran out, and
        its jobs are another delivery's now (see `_save_held`)."""
        run.count("claimed", len(jobs))
        # A heartbeat marks a lost claim and counts it in `run.losses`; the
        # batch is looked through only once that count has moved.
        losses = run.losses
        held = self._hold(run, jobs)
        # The thread's log context, to which each handler call adds its job.
        base = context_fields()
        handled: tuple[_Held, _Verdict] | None = None  # an outcome not yet recorded
        for entry in held:
            # One lock round a job: record the last one's outcome, start this one.
            with run.lock:
                if handled is not None:
                    _record(*handled)
                    handled = None
                if (
                    run.halt.is_set()
                    or entry.stage is _Stage.TAKEN
                    or (run.losses != losses and any(other.lost for other in held))
                ):
                    break
                entry.stage = _Stage.RUNNING
            # `log_context(job_id=...)` without its checks and its copy of
            # the context, which cost a no-op job a few percent of its time.
            token = _log_fields.set(_JobFields(base, entry.job.id))
            try:
                handled = (entry, self._judge(entry.job))
            finally:
                _log_fields.reset(token)
        if handled is not None:
            with run.lock:
                _record(*handled)
        self._save_held(run, held)

    def _hold(self, run: _Run, jobs: list[FullText]) -> list[_Held]:
        """Register claimed jobs, so that their leases are kept alive."""
        now = time.monotonic()
        held = []
        first = math.inf  # the first heartbeat due among them
        # The jobs of one claim share their lease: work it out once.
        stamps: tuple[datetime | None, datetime | None] = (None, None)
        interval = _FALLBACK_HEARTBEAT_SECONDS
        for job in jobs:
            if self._heartbeat_interval is not None:
                interval = self._heartbeat_interval
            elif (job.started, job.lease_expires) != stamps:
                # The lease the repository granted, on its own clock: the
                # claim stamps `started` and `lease_expires` from one instant.
                stamps = (job.started, job.lease_expires)
                lease = (
                    None
                    if job.started is None or job.lease_expires is None
                    else (job.lease_expires - job.started).total_seconds()
                )
                interval = (
                    lease / 3 if lease is not None and lease > 0 else _FALLBACK_HEARTBEAT_SECONDS
                )
            entry = _Held(job, interval, now + interval)
            first = min(first, entry.next_beat)
            held.append(entry)
        with run.changed:
            run.held.update(held)
            # A heartbeat thread that looks again before these fall due
            # needs no wake-up: one per claim would cost it the lock and the
            # GIL for nothing.
            if first < run.beat_wake:
                run.changed.notify_all()
        return held

    def _judge(self, job: FullText) -> _Verdict:
        """Run the handler on a copy of `job`, and say how the job ends
        according to how the handler ended (see `_settle`)."""
        began = time.monotonic()
        try:
            if self._timeout is None:
                result = self._handler(job.copy())
                # Most handlers return None: spare them the awaitable test.
                if result is not None and inspect.isawaitable(result):
                    _thread_loop().run_until_complete(result)
            else:
                self._call_within(job, self._timeout)
        except SkipJob as exc:
            _log.info("job %s (item %s) skipped: %s", job.id, job.item_id, exc)
            return _Ending.SKIP, self._clock(), None, None
        except FailJob as exc:
            _log.warning("job %s (item %s) failed (FailJob): %s", job.id, job.item_id, exc)
            return _Ending.FAIL, self._clock(), None, _describe(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of the handler fails or retries the job
            now = self._clock()
            if self._retry.gives_up(job.attempts):
                _log.warning(
                    "job %s (item %s) failed",
                    job.id,
                    job.item_id,
                    exc_info=exc,
                )
                return _Ending.FAIL, now, None, _describe(exc)
            due = _later(utc(now), self._retry.delay(job.attempts))
            _log.warning(
                "job %s (item %s) failed (attempt %d of %d); retrying at %s",
                *(job.id, job.item_id, job.attempts, self._retry.max_attempts),
                due.isoformat(),
                exc_info=exc,
            )
            return _Ending.RELEASE, now, due, _describe(exc)
        else:
            return _Ending.FINISH, self._clock(), None, None
        finally:
            if self._metrics is not None:
                self._metrics.observe_handler(self._destination, time.monotonic() - began)

    def _call_within(self, job: FullText, timeout: float) -> None:
        """Run the handler on a copy of `job`, for at most `timeout`
        seconds; raise what it raised, or `TimeoutError` if it ran past.

        A coroutine function runs on this thread's loop and is cancelled
        at the timeout (a coroutine that blocks the loop cannot be, and is
        waited for). Any other handler runs in a thread of its own, which
        Python cannot stop: past the timeout it is left to run (a daemon),
        and whatever it then returns or raises is dropped, never saved or
        counted; the job's outcome is the timeout's."""
        copy = dataclasses.replace(job)
        if inspect.iscoroutinefunction(self._handler):
            try:
                _thread_loop().run_until_complete(asyncio.wait_for(self._handler(copy), timeout))
            except TimeoutError:
                raise _timed_out(timeout) from None
            return
        ended: list[BaseException | None] = []

        def call() -> None:
            try:
                result = self._handler(copy)
                if inspect.isawaitable(result):
                    # Not this thread's loop: the claim thread's own is not
                    # to be touched from here.
                    asyncio.run(_awaited(result))
            except BaseException as exc:  # noqa: BLE001 - handed to the claim thread
                ended.append(exc)
            else:
                ended.append(None)

        context = contextvars.copy_context()  # the log context follows the job
        thread = threading.Thread(
            target=context.run, args=(call,), name=f"fulltext-jobs-handler-{job.id}", daemon=True
        )
        thread.start()
        thread.join(timeout)
        if not ended:
            _log.warning(
                "job %s (item %s): its handler ran past its timeout of %g s; it is left "
                "running, and what it does now is not saved",
                job.id,
                job.item_id,
                timeout,
            )
            raise _timed_out(timeout)
        if ended[0] is not None:
            raise ended[0]

    def _released(self, job: FullText) -> FullText:
        released = job.copy()
        released.release(self._clock())
        return released

    def _save_held(self, run: _Run, held: list[_Held]) -> None:
        """Save the outcomes of `held`, and release those whose handler never
        started; leave alone what the shutdown took over, except the late
        outcome of a handler it released. In a batch with a claim found
        lost, a job whose handler never started is dropped: forgotten if its
        own claim was found lost, else released."""
        with run.lock:
            entries, outcomes, dropped = self._outcomes(held)
        if dropped:
            run.count("dropped", dropped)
            _log.warning(
                "%s: %d claimed job(s) not started: a heartbeat found their batch's claim lost",
                self._destination,
                dropped,
            )
        try:
            self._save(run, entries, outcomes)
        except BaseException:
            # What was not saved is left for the shutdown to try again.
            with run.lock:
                for entry in entries:
                    if entry.stage is _Stage.SAVING:
                        entry.stage = _Stage.DONE
            raise
        self._forget(run, held)

    def _outcomes(self, held: list[_Held]) -> tuple[list[_Held], list[FullText], int]:
        """What `_save_held` saves: the jobs (moved to `SAVING`) and, in
        step, the outcomes to save; and how many jobs it drops. Called under
        the run's lock."""
        # Two lists rather than a list of pairs: fewer objects a batch keeps
        # the young generation of the garbage collector below its threshold.
        entries: list[_Held] = []
        outcomes: list[FullText] = []
        dropped = 0
        lost_batch = any(entry.lost for entry in held)
        for entry in held:
            if entry.stage is _Stage.PENDING and lost_batch:
                dropped += 1
                if entry.lost:
                    continue  # another delivery owns it: nothing to save
            if entry.stage is _Stage.PENDING:
                entry.outcome = self._released(entry.job)
                entry.stage = _Stage.SAVING
                outcome = entry.outcome
            elif entry.stage is _Stage.DONE and entry.outcome is not None:
                entry.stage = _Stage.SAVING
                outcome = entry.outcome
            elif entry.stage is _Stage.TAKEN and entry.late is not None:
                outcome = entry.late
            else:
                continue
            entries.append(entry)
            outcomes.append(outcome)
        return entries, outcomes, dropped

    def _forget(self, run: _Run, held: Iterable[_Held]) -> None:
        """Stop holding these jobs: they were saved, or their claims ended."""
        with run.lock:
            run.held.difference_update(held)

    def _save(self, run: _Run, entries: list[_Held], outcomes: list[FullText]) -> None:
        """Save `outcomes`, those of `entries` in step, each under its
        claim, retrying after a retryable error until the save succeeds or
        the shutdown gives up.

        Each job of a batch is saved under its own claim, in one call: a
        job whose claim was lost is refused alone (`StaleJobs` names it),
        and the others are saved."""
        if not outcomes:
            return
        delay = self._poll_interval
        while True:
            try:
                if len(outcomes) == 1:
                    self._repository.save_fulltext(outcomes[0])
                else:
                    # Each job under its own claim: a lost one is refused
                    # alone, and the others are saved with it.
                    self._repository.save_many(outcomes, atomic=False)
            except StaleJobs as exc:
                self._saved_but(run, entries, outcomes, set(exc.refused))
                return
            except LostClaim:
                self._lost(run, entries[0])
                return
            except StoreError as exc:
                if not exc.retryable:
                    raise
                self._retryable(run, "save", exc, delay)
                if self._wait(run.abandoned, delay):
                    _log.error(
                        "gave up saving %d job(s) at shutdown; their leases will bring them back",
                        len(outcomes),
                    )
                    self._forget(run, entries)
                    return
                delay = min(delay * 2, self._max_poll_interval)
            else:
                self._saved_but(run, entries, outcomes, set())
                return

    def _saved_but(
        self, run: _Run, entries: list[_Held], outcomes: list[FullText], refused: set[uuid.UUID]
    ) -> None:
        """Count the `outcomes` saved, and the `refused` ones lost (the
        caller, `_save_held`, then stops holding all `entries`)."""
        saved = outcomes
        if refused:
            saved = []
            for entry, job in zip(entries, outcomes, strict=True):
                if job.id in refused:
                    self._lost(run, entry)
                else:
                    saved.append(job)
        for name, n in Counter(map(_saved_as, saved)).items():
            run.count(name, n)

    def _lost(self, run: _Run, held: _Held) -> None:
        run.count("lost_claims")
        self._forget(run, [held])
        if held.late is not None:
            _log.info(
                "job %s (item %s): the late result of a handler that outlived the shutdown "
                "was refused; the job had been released",
                held.job.id,
                held.job.item_id,
            )
        else:
            _log.warning(
                "job %s (item %s): the claim was lost (its lease ran out); another "
                "delivery owns the job, and this result was not saved",
                held.job.id,
                held.job.item_id,
            )

    def _heartbeat_loop(self, run: _Run) -> None:
        """Extend the leases of the held jobs as they fall due, until the run
        is over."""
        while True:
            with run.changed:
                if run.over:
                    return
                now = time.monotonic()
                beating = [
                    held for held in run.held if held.stage in _HELD_STAGES and not held.lost
                ]
                due = [held for held in beating if held.next_beat <= now]
                for held in due:
                    held.next_beat = now + held.interval
                if not due:
                    upcoming = [h.next_beat for h in beating if math.isfinite(h.next_beat)]
                    run.beat_wake = min(upcoming, default=math.inf)
                    run.changed.wait(run.beat_wake - now if upcoming else None)
                    run.beat_wake = -math.inf
                    continue
            for index, held in enumerate(due):
                if not self._beat(run, held):
                    # The store failed (retryably): the other heartbeats due
                    # would fail alike, each with a warning. Try them with it.
                    self._beat_soon(run, due[index + 1 :])
                    break

    def _beat_soon(self, run: _Run, held: list[_Held]) -> None:
        """Make the next heartbeats of `held` due soon, while their leases
        still run."""
        with run.lock:
            for entry in held:
                entry.next_beat = time.monotonic() + entry.interval / 4

    def _beat(self, run: _Run, held: _Held) -> bool:
        """Extend the lease of `held`; False after a retryable error."""
        try:
            if held.beat is None:
                # Only this thread touches `beat`; under the lock, since
                # `_record` may be ending `held.job` (its id and claim
                # token, all a heartbeat needs, stay as claimed).
                with run.lock:
                    held.beat = held.job.copy()
            self._repository.heartbeat(held.beat)
        except LostClaim:
            with run.lock:
                if held not in run.held or held.stage in {
                    _Stage.SAVING,
                    _Stage.TAKEN,
                }:
                    # Saved or released meanwhile, which ended the claim; a
                    # save that found it lost reports that itself.
                    return True
                held.lost = True
                run.losses += 1
            _log.warning(
                "job %s (item %s): heartbeat found the claim lost; its result will be refused",
                held.job.id,
                held.job.item_id,
            )
        except StoreError as exc:
            if not exc.retryable:
                raise
            self._retryable(run, "heartbeat", exc)
            self._beat_soon(run, [held])
            return False
        else:
            run.count("heartbeats")
        return True

    def _retryable(self, run: _Run, action: str, exc: StoreError, delay: float = 0.0) -> None:
        run.count("retryable_errors")
        _log.warning(
            "%s of %s failed (retryable)%s: %s",
            action,
            self._destination,
            f"; trying again in {delay:g} s" if delay else "",
            exc,
        )


# Each claim thread's own event loop, for async handlers.
_loops = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, made on first use."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop


def _close_thread_loop() -> None:
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is not None and not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    _loops.loop = None


class _JobFields(Mapping[str, str]):
    """The log context of a handler call: the thread's own (`base`) and the
    job's id, which is written out only when a record is formatted. What
    `log_context(job_id=...)` would set, at a third of its cost a job."""

    __slots__ = ("_base", "_job_id")

    def __init__(self, base: Mapping[str, str], job_id: uuid.UUID) -> None:
        self._base = base
        self._job_id = job_id

    def __getitem__(self, key: str) -> str:
        if key == "job_id":
            return str(self._job_id)
        return self._base[key]

    def __iter__(self) -> Iterator[str]:
        yield from (key for key in self._base if key != "job_id")
        yield "job_id"

    def __len__(self) -> int:
        return len(self._base) + ("job_id" not in self._base)


def _record(held: _Held, verdict: _Verdict) -> None:
    """Apply the verdict of a handler that ended to the claimed job itself,
    and record it as the outcome to save; called under the run's lock, so
    that the shutdown copies the job either before (to release it) or
    after (to save it), never halfway."""
    # In place rather than on a copy: one object less a job keeps a batch's
    # young objects below the garbage collector's threshold, and the claimed
    # state is not needed once the handler ended (see `_Held.job`).
    _settle(held.job, verdict)
    if held.stage is _Stage.TAKEN:
        # Released at shutdown while the handler ran: its save is refused,
        # as the ledger promises.
        held.late = held.job
    else:
        held.stage, held.outcome = _Stage.DONE, held.job


def _settle(job: FullText, verdict: _Verdict) -> None:
    """End `job` as `verdict` says: finished, skipped or failed at its time,
    or released to be retried after its due time, with its error."""
    ending, now, due, error = verdict
    if ending is _Ending.FINISH:
        job.finish(now)
    elif ending is _Ending.SKIP:
        job.skip(now)
    elif ending is _Ending.FAIL:
        job.fail(now, error=error)
    else:
        job.release(now, not_before=due, error=error)


def _timed_out(timeout: float) -> TimeoutError:
    """The error a job that ran past its time limit records."""
    return TimeoutError(f"the handler timed out after {timeout:g} s")


async def _awaited(awaitable: Awaitable[object]) -> None:
    await awaitable


def _later(now: datetime, delay: timedelta) -> datetime:
    """`now + delay`, or the last moment every store holds if that is later."""
    try:
        return min(now + delay, MAX_TIMESTAMP)
    except OverflowError:
        return MAX_TIMESTAMP


def _saved_as(job: FullText) -> str:
    """The counter of a saved outcome: a job back to ready with a delay is
    retried, without one released."""
    if job.status is JobStatus.READY and job.not_before is not None:
        return "retried"
    return _SAVED_AS[job.status]


def _retry_policy(retry: object, max_attempts: object) -> RetryPolicy:
    """The worker's policy from its `retry` and `max_attempts` arguments."""
    if retry is not None and not isinstance(retry, RetryPolicy):
        msg = f"retry must be a RetryPolicy, not {retry!r}"
        raise InvalidInput(msg)
    if max_attempts is None:
        return retry or DEFAULT_RETRY
    bound = check_max_attempts(max_attempts)
    if retry is None:
        return dataclasses.replace(DEFAULT_RETRY, max_attempts=bound)
    if retry.max_attempts != bound:
        msg = (
            f"max_attempts ({bound}) and retry.max_attempts ({retry.max_attempts}) differ: "
            "give one of them"
        )
        raise InvalidInput(msg)
    return retry


def _rate_settings(
    rate_limit: object, rate_burst: object, batch_size: int
) -> tuple[float | None, int]:
    """The worker's rate (None: no limit) and burst, from its arguments;
    the burst defaults to one claim's worth, `batch_size`."""
    if rate_limit is None:
        if rate_burst is not None:
            msg = "rate_burst needs a rate_limit"
            raise InvalidInput(msg)
        return None, batch_size
    rate = check_rate(rate_limit, "rate_limit")
    burst = batch_size if rate_burst is None else check_burst(rate_burst, "rate_burst")
    return rate, burst


def _describe(exc: BaseException) -> str:
    """The exception as one line: its type, and its message if it has one."""
    message = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def _whole(name: str, value: object, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        msg = f"{name} must be a positive whole number, at most {most:,}, not {value!r}"
        raise InvalidInput(msg)
    return value


def _seconds(name: str, value: object, *, zero: bool = False, infinite: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
        or (value == 0 and not zero)
        or (math.isinf(value) and not infinite)
        or (value > MAX_SECONDS and not math.isinf(value))
    ):
        kind = "a number of seconds, 0 or more" if zero else "a positive number of seconds"
        msg = f"{name} must be {kind}, at most {MAX_SECONDS:,} (a week), not {value!r}"
        raise InvalidInput(msg)
    return float(value)
