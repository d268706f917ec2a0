"""The `Worker`: the life of a run (start, signals, stop, shutdown), its
claim threads, which claim jobs and hand them to the handler runner
(`handlers`), and the saving of their outcomes. The other threads of a run
are the heartbeat (`heartbeat`), the ready listener (`listener`) and, with
`produce=True`, the rescuer (`producer`).

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

Waiting for work: a thread whose claim came back empty waits as `idling`
says (backing off, no longer than until the next retry is due or a pause
ends, woken at once by the ready listener, see `listener`).

Saving: `saving.OutcomeSaver` (see there).

Shutdown: `stop()` (or SIGINT or SIGTERM, when `run()` is called in the main
thread) stops claiming, lets the handlers in flight finish for up to
`shutdown_timeout` seconds, and then releases (returns to `ready`) every job
whose handler has not finished, so that none is left `running`. Such a
handler's thread is a daemon and is left to run; when it returns, its save is
refused with `LostClaim`, because the release ended the claim. Who saves a
job's outcome, its claim thread or the shutdown, is settled by the stages of
`inflight`: one of them, never both.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from fulltext_jobs.domain import DEFAULT_SWEEP_INTERVAL, FullText, JobStatus, utc
from fulltext_jobs.errors import JobsError, NoJobs, StaleJobs, StoreError
from fulltext_jobs.logs import _context as _log_fields
from fulltext_jobs.logs import context_fields, log_context
from fulltext_jobs.repository import Repository
from fulltext_jobs.retry import RetryPolicy
from fulltext_jobs.worker import signals
from fulltext_jobs.worker.backing_off import BackOffPause
from fulltext_jobs.worker.cancelling import CancelWatch
from fulltext_jobs.worker.handlers import (
    Ending,
    HandlerRunner,
    JobFields,
    Verdict,
    close_thread_loop,
    settle,
)
from fulltext_jobs.worker.heartbeat import Heartbeat
from fulltext_jobs.worker.idling import Idler
from fulltext_jobs.worker.inflight import Held, Run, Stage, record
from fulltext_jobs.worker.listener import ReadyWatch, start_listener
from fulltext_jobs.worker.producer import Producer
from fulltext_jobs.worker.saving import OutcomeSaver
from fulltext_jobs.worker.settings import Wait, WorkerSettings
from fulltext_jobs.worker.stats import (
    Handler,
    WaitObserver,
    WorkerObserver,
    WorkerStats,
    check_observer,
    saved_as,
)
from fulltext_jobs.worker.tokens import TokenWaiter
from fulltext_jobs.worker.tracing import Hold, traced
from fulltext_jobs.worker.waiting import Waiting, WaitLog

if TYPE_CHECKING:
    from fulltext_jobs.telemetry import Telemetry

# The package's logger, not this module's: deployments filter and route the
# worker's records by the name they had before the worker was a package.
_log = logging.getLogger("fulltext_jobs.worker")

#: How often `run()` looks at the count its signal handlers keep.
_TICK_SECONDS: Final = 0.05

#: How long shutdown waits for the heartbeat and rescue threads to notice
#: they should end, beyond `shutdown_timeout` (they may be in a call).
_THREAD_GRACE_SECONDS: Final = 1.0


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
    `Repository.take_rate_tokens`). None, the default: the rate an operator
    set for the destination (`Repository.limit(rate=, burst=)`, `fulltext-jobs
    limit --rate`), read within a second of each change, or no limit if
    none is set; a worker's own `rate_limit` overrides it. A
    claim takes no more jobs than the tokens it was granted, and a worker
    with none waits as long as the bucket says (a shutdown cuts the wait
    short). `rate_burst` is the most starts at once after an idle spell:
    by default one claim's worth, `batch_size` (so 1 unless batching, and
    the starts are then evenly spaced). Over any `t` seconds, at most
    `rate_limit * t + rate_burst` jobs start. Workers of one destination
    share one bucket: give them one rate (the destination's is the way).

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

    `metrics` (a `fulltext_jobs.metrics.WorkerMetrics`, or anything else
    with its methods: `WorkerObserver`) is told every count of
    `WorkerStats` and how long each handler call took, for Prometheus.

    `telemetry` (a `fulltext_jobs.telemetry.Telemetry`, the `otel` extra)
    sends a span for each handler run, with its claim and its save, and
    the counts and handler durations as OpenTelemetry metrics
    (`fulltext_jobs.worker.tracing`); None, the default, sends nothing.

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
        metrics: WorkerObserver | None = None,
        telemetry: Telemetry | None = None,
        clock: Callable[[], datetime] | None = None,
        wait: Wait | None = None,
    ) -> None:
        self._settings = settings = WorkerSettings(
            repository=repository,
            destination=destination,
            handler=handler,
            concurrency=concurrency,
            batch_size=batch_size,
            in_transaction=in_transaction,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            heartbeat_interval=heartbeat_interval,
            listen=listen,
            shutdown_timeout=shutdown_timeout,
            produce=produce,
            rescue_interval=rescue_interval,
            sweep_interval=sweep_interval,
            max_attempts=max_attempts,
            retry=retry,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            timeout=timeout,
            clock=utc if clock is None else clock,
            wait=threading.Event.wait if wait is None else wait,
        )
        spans, metrics = traced(telemetry, settings.destination, check_observer(metrics))
        self._metrics = metrics
        if metrics is not None:
            metrics.declare(settings.destination)
        self._waits = metrics if isinstance(metrics, WaitObserver) else None
        repository, destination = settings.repository, settings.destination
        # The pieces of a run, each with only what it needs.
        runner = HandlerRunner(
            settings.handler if spans is None else spans.handler(settings.handler),
            destination=destination,
            retry=settings.policy,
            timeout=settings.timeout,
            clock=settings.clock,
            observer=metrics,
        )
        self._cancels = CancelWatch(repository, destination, settings.poll_interval)
        self._heartbeat = Heartbeat(repository, cancels=self._cancels)
        self._saver = OutcomeSaver(
            repository,
            destination,
            clock=settings.clock,
            poll_interval=settings.poll_interval,
            max_poll_interval=settings.max_poll_interval,
            wait=settings.wait,
        )
        self._watch = ReadyWatch(repository, destination, settings.poll_interval)
        self._producer = (
            Producer(
                repository,
                destination,
                sweep=settings.sweep,
                rescue_interval=settings.rescue_interval,
                max_attempts=settings.policy.max_attempts,
            )
            if settings.produce
            else None
        )
        self._idler = Idler(repository, destination, settings, self._producer)
        tokens = TokenWaiter(
            repository,
            destination,
            rate=settings.rate_limit,
            burst=settings.burst,
            batch_size=settings.batch_size,
            wait=settings.wait,
        )
        # What the per-job path reads, bound here once: one look-up each,
        # as when these were the worker's own attributes and methods.
        self._repository = repository
        self._destination = destination
        self._batch_size = settings.batch_size
        self._heartbeat_interval = settings.heartbeat_interval
        self._judge: Callable[[FullText, Held | None], Verdict] = runner.judge
        self._hold = self._heartbeat.hold
        self._save_held: Callable[[Run, list[Held]], None] = self._saver.save_held
        self._take_tokens = tokens.take
        back_off = BackOffPause(repository, destination)
        self._pause_for, self._pause_batch = back_off.pause, back_off.pause_batch
        self._get_ready_job = repository.get_ready_job
        self._claim_ready = repository.claim_ready
        self._hold_ready: Hold = repository.hold_ready
        if spans is not None:  # each call in its span
            self._judge = spans.judging(self._judge)
            self._save_held = spans.saving(self._save_held)
            self._get_ready_job = spans.claiming(self._get_ready_job)
            self._claim_ready = spans.claiming(self._claim_ready)
            self._hold_ready = spans.holding(self._hold_ready)
        self._lock = threading.Lock()
        self._stopped = False
        self._running = False
        self._run: Run | None = None

    @property
    def _retry(self) -> RetryPolicy:
        """The retry policy in force (`retry` and `max_attempts` together)."""
        return self._settings.policy

    def lag(self) -> timedelta | None:
        """How long the oldest due job of the worker's destination has
        waited: `Repository.lag` of its destination (one index probe on the
        SQL stores), for a gauge that reads it when scraped. Raises
        `StoreError` if the store cannot be read."""
        return self._settings.repository.lag(self._destination)

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
            run = Run(
                destination=self._destination,
                until_idle=until_idle,
                loops=self._settings.concurrency,
                waits=WaitLog(self._destination, clock=self._settings.clock, until_idle=until_idle),
                on_count=None
                if self._metrics is None
                else functools.partial(self._metrics.count, self._destination),
            )
            self._run = run
            if self._stopped:
                return WorkerStats()
            self._running = True
        previous = signals.install(run) if install_signal_handlers else {}
        _log.info(
            "worker of %s started: %s%s",
            self._destination,
            self._settings.summary(),
            ", until idle" if until_idle else "",
        )
        try:
            self._run_threads(run)
        finally:
            signals.restore(previous)
            with self._lock:
                self._running = False
        if run.fatal is not None:
            raise run.fatal
        stats = run.stats()
        _log.info("worker of %s stopped: %s", self._destination, stats.summary())
        return stats

    @property
    def waiting(self) -> Waiting | None:
        """What the worker waits for while it has nothing to do (no job is
        ready, jobs wait for a retry and when the next is due, or the rate
        limit), or None while it works or is not running: for a live
        display. Cheap: no call to the repository."""
        run = self._run
        return None if run is None or not self._running else run.waits.current

    # --- the run: its threads, signals and shutdown ---------------------------

    def _run_threads(self, run: Run) -> None:
        """Start the run's threads, wait for its end, and shut it down."""
        loops, helpers = self._start_threads(run)
        try:
            self._await_end(run)
        finally:
            # Also on KeyboardInterrupt, when run() installed no handlers.
            self._shut_down(run, loops, helpers)

    def _start_threads(self, run: Run) -> tuple[list[threading.Thread], list[threading.Thread]]:
        """Start the claim threads and the helpers (the heartbeat, and the
        rescuer with `produce`); make the listener's thread, which the first
        claim thread to wait starts (`listener.start_listener`)."""
        loops = [
            self._thread(run, self._claim_loop, f"fulltext-jobs-worker-{n}")
            for n in range(self._settings.concurrency)
        ]
        helpers = [self._thread(run, self._heartbeat.loop, "fulltext-jobs-heartbeat")]
        if self._settings.listen:
            run.listener = self._thread(run, self._watch.loop, "fulltext-jobs-listen")
            run.cancel_listener = self._thread(run, self._cancels.listen, "fulltext-jobs-cancels")
        if self._producer is not None:
            helpers.append(self._thread(run, self._producer.loop, "fulltext-jobs-rescue"))
        for thread in (*helpers, *loops):
            thread.start()
        return loops, helpers

    def _await_end(self, run: Run) -> None:
        """Wait until the run halts, stopping it when a signal arrived (its
        handler only set `run.signalled`)."""
        while not run.halt.wait(_TICK_SECONDS):
            if run.signals:
                signals.say_stopping(
                    run, self._settings.shutdown_timeout, counted=not self._settings.in_transaction
                )
                self.stop()

    def _thread(self, run: Run, target: Callable[[Run], None], name: str) -> threading.Thread:
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

    def _fail_run(self, run: Run, exc: BaseException) -> None:
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
        self, run: Run, loops: list[threading.Thread], helpers: list[threading.Thread]
    ) -> None:
        """Let the claim threads finish within `shutdown_timeout`, release what
        they still hold, and end the helper threads."""
        run.end()
        waited = self._join_loops(run, loops)
        run.abandoned.set()
        self._saver.take_over(run, waited)
        with run.changed:
            run.over = True
            run.changed.notify_all()
        # Halted: no claim thread starts the listener from now on.
        if run.listener is not None and run.listening:
            helpers = [*helpers, run.listener]
        if run.cancel_listener is not None and run.cancel_listening:
            helpers = [*helpers, run.cancel_listener]
        for thread in helpers:
            thread.join(_THREAD_GRACE_SECONDS)

    def _join_loops(self, run: Run, loops: list[threading.Thread]) -> float:
        """Wait for the claim threads up to `shutdown_timeout`, or only until
        a signal comes beyond those seen so far (one stopped the run: the
        next one means "now"); return how many seconds it waited."""
        seen = run.signals
        began = time.monotonic()
        deadline = began + self._settings.shutdown_timeout
        for thread in loops:
            while thread.is_alive() and (left := deadline - time.monotonic()) > 0:
                if run.signals > seen:
                    signals.say_stopping_at_once(run, counted=not self._settings.in_transaction)
                    return time.monotonic() - began
                thread.join(min(left, _TICK_SECONDS))
        return time.monotonic() - began

    # --- the claim threads ----------------------------------------------------

    def _claim_loop(self, run: Run) -> None:
        """Claim and handle jobs until the run halts (or, with `until_idle`,
        until there is nothing to claim)."""
        poll = delay = self._settings.poll_interval
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
                    run.retryable("claim", exc, delay)
                    # The listener's first wake-up after it listens again
                    # says the server is back: claim at once.
                    start_listener(run)
                    delay = self._idler.idle(run, delay)
                    continue
                if claimed:
                    run.waits.working()
                    delay = poll
                    continue
                if run.halt.is_set():
                    break  # halted while waiting for a start token
                after = self._idler.after_empty(run, delay)
                if after is None:
                    return  # until_idle, and idle
                delay = after
        finally:
            close_thread_loop()
            with run.lock:
                run.loops_left -= 1
                last = run.loops_left == 0
            if last:
                run.end()

    def _take_work(self, run: Run) -> int:
        """Claim jobs and work through them; return how many were claimed
        (0: nothing to claim). A `StoreError` raised here is the claim's, or
        in transaction mode any (the batch rolled back); the leased mode's
        saves retry their own."""
        # A count, not the jobs: the caller keeping a batch alive through
        # the next one would double the objects the garbage collector sees.
        if self._settings.in_transaction:
            return self._work_held(run)
        jobs = self._claim(run)
        if jobs:
            self._work_through(run, jobs)
        return len(jobs)

    def _claim(self, run: Run) -> list[FullText]:
        """Claim up to `batch_size` jobs; under a rate limit, no more than
        the start tokens granted, waiting for one if there is none (an
        empty list if the run halts meanwhile)."""
        n = self._take_tokens(run)
        if not n:
            return []
        if n == 1:
            try:
                return [self._get_ready_job(self._destination)]
            except NoJobs:
                return []
        return self._claim_ready(self._destination, n)

    def _work_held(self, run: Run) -> int:
        """Transaction mode: hold up to `batch_size` jobs (`hold_ready`),
        handle them one after another and leave the block, which writes
        each outcome once and commits; return how many were held (0:
        nothing to claim). Once the run halts, or a handler backed off with
        a pause, no handler is started: the jobs not handled are left
        `running` in the block, which does not write them, so they stay
        `ready`; the pause is taken once the block has committed (on SQLite
        the block holds the write lock). Any error leaving the block rolls
        the batch back: its jobs stay `ready`, their attempts not counted."""
        n = self._take_tokens(run)
        if not n:
            return 0
        refused: set[uuid.UUID] = set()
        pausing: tuple[FullText, Verdict] | None = None
        try:
            with self._hold_ready(self._destination, n) as jobs:
                if jobs:
                    self._claimed(run, jobs)
                    pausing = self._handle_held(run, jobs)
        except StaleJobs as exc:
            # Another writer changed a held row (which the row locks make
            # rare): those outcomes were refused, the others committed.
            refused = set(exc.refused)
            run.count("lost_claims", len(refused))
        saved = Counter(
            saved_as(job)
            for job in jobs
            if job.status is not JobStatus.RUNNING and job.id not in refused
        )
        for name, count in saved.items():
            run.count(name, count)
        if pausing is not None:
            job, (_, _, until, error) = pausing
            if job.id not in refused and until is not None:
                self._pause_for(run, job, until, error)
        return len(jobs)

    def _handle_held(self, run: Run, jobs: list[FullText]) -> tuple[FullText, Verdict] | None:
        """`_work_held`'s handling of the held `jobs`, each settled in place,
        until the run halts or a handler backs off with a pause: then that
        job and its verdict."""
        base = context_fields()  # as in `_work_through`
        for job in jobs:
            if run.halt.is_set():
                break
            token = _log_fields.set(JobFields(base, job.id))
            try:
                verdict = self._judge(job, None)
                settle(job, verdict)
            finally:
                _log_fields.reset(token)
            if verdict[0] is Ending.BACK_OFF_PAUSE:
                return job, verdict
        return None

    def _claimed(self, run: Run, jobs: list[FullText]) -> None:
        """Count a batch claimed, and tell the metrics how long each of its
        jobs waited: measured here, at the claim, which hands out each job's
        `ready_at` and `started`, so that it costs the database nothing."""
        run.count("claimed", len(jobs))
        if self._waits is not None:
            for job in jobs:
                waited = job.waited()
                if waited is not None:
                    self._waits.observe_wait(self._destination, waited.total_seconds())

    def _work_through(self, run: Run, jobs: list[FullText]) -> None:
        """Handle claimed jobs one after another, then save their outcomes
        together. Once the run halts no handler is started: jobs not yet
        handled are released. Once a heartbeat finds a claim of the batch
        lost no handler is started either: the batch's lease ran out, and
        its jobs are another delivery's now (see `OutcomeSaver.save_held`).
        Once a handler backs off with a pause (`RetryAfter(pause=True)`),
        the destination is paused and no handler is started: the jobs not
        handled go back with their attempts given back, not due before the
        pause ends."""
        self._claimed(run, jobs)
        # A heartbeat marks a lost claim and counts it in `run.losses`; the
        # batch is looked through only once that count has moved.
        losses = run.losses
        held = self._hold(run, jobs, self._heartbeat_interval)
        # The thread's log context, to which each handler call adds its job.
        base = context_fields()
        handled: tuple[Held, Verdict] | None = None  # an outcome not yet recorded
        for entry in held:
            # One lock round a job: record the last one's outcome, start this one.
            with run.lock:
                if handled is not None:
                    record(*handled)
                    handled = None
                if (
                    run.halt.is_set()
                    or entry.stage is Stage.TAKEN
                    or (run.losses != losses and any(other.lost for other in held))
                ):
                    break
                entry.stage = Stage.RUNNING
            # `log_context(job_id=...)` without its checks and its copy of
            # the context, which cost a no-op job a few percent of its time.
            token = _log_fields.set(JobFields(base, entry.job.id))
            try:
                handled = (entry, self._judge(entry.job, entry))
            finally:
                _log_fields.reset(token)
            if handled[1][0] is Ending.BACK_OFF_PAUSE:
                self._pause_batch(run, held, *handled)
                break
        if handled is not None:
            with run.lock:
                record(*handled)
        self._save_held(run, held)
