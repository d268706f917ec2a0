"""Running a handler on a job, and the verdict on how the job ends.

`HandlerRunner.judge` runs the handler on a copy of a job and returns a
`Verdict`; `settle` applies one to a job. Neither saves anything nor needs
a worker's threads, so both can be tried alone.

How a handler's end decides the job's: returning normally finishes the
job; raising `SkipJob` skips it; raising `FailJob` fails it at once;
raising `RetryAfter` backs it off (back to `ready` for the seconds asked,
its attempt not counted, at most the policy's `max_backoffs` times; with
`pause=True` the worker pauses the destination too); any
other exception is retried by the worker's `RetryPolicy`: the job goes back
to `ready`, not to be claimed before a backoff has passed, until it has had
the policy's `max_attempts` attempts, and then fails. Either way the
exception's type and message are in `last_error`; a skip records
`SkipJob`'s message alone, as its reason. A job an operator cancels
while its handler runs is skipped with the cancel's reason however the
handler ends (see `fulltext_jobs.worker.cancelling`); a handler polls
`cancel_requested()` to hear of it.

Async handlers: a handler may be a coroutine function (or return any
awaitable). Each claim thread then runs it to completion on an event loop of
its own, made on first use and closed when the thread ends
(`close_thread_loop`); `concurrency` threads run that many coroutines at
once. Resources bound to a loop (an HTTP client session, say) should be
made inside the handler, or per thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, Protocol

from fulltext_jobs.domain import MAX_TIMESTAMP, FullText, utc
from fulltext_jobs.retry import RetryPolicy
from fulltext_jobs.worker.stats import FailJob, Handler, RetryAfter, SkipJob, WorkerObserver

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")


class Ending(enum.Enum):
    """How a handled job ends."""

    FINISH = enum.auto()
    SKIP = enum.auto()
    FAIL = enum.auto()
    RELEASE = enum.auto()  # back to ready, to be retried
    BACK_OFF = enum.auto()  # back to ready, its attempt not counted (`RetryAfter`)
    BACK_OFF_PAUSE = enum.auto()  # BACK_OFF, and pause the destination as long


# How a handled job ends, when (the worker's clock), from when it may be
# retried (RELEASE and the BACK_OFFs), and the error to record (FAIL,
# RELEASE, the BACK_OFFs). A tuple, not a dataclass: one is made for every
# job.
Verdict = tuple[Ending, datetime, datetime | None, str | None]


class Cancellable(Protocol):
    """A claimed job, as a cancel reaches it (`inflight.Held`)."""

    cancelled: str | None  # the last_error to skip it with, once cancelled
    task: asyncio.Task[Any] | None  # an async handler's task, while it runs


#: The job the current handler call runs on (None outside one): what
#: `cancel_requested` reads. A context variable, so that it follows the
#: handler into a thread of its own (a `timeout`) and into its task.
current_job: ContextVar[Cancellable | None] = ContextVar("fulltext_jobs_job", default=None)


def cancel_requested() -> bool:
    """Whether an operator has cancelled the job the calling handler runs
    on (`Repository.cancel`, `fulltext-jobs cancel`), as far as its worker
    has heard: within a second on PostgreSQL, at the job's next heartbeat
    elsewhere. A sync handler that does long work may poll it and return
    early; the job is saved `skipped` with the cancel's reason whatever the
    handler then returns or raises. False outside a handler called by a
    `Worker`, and in the transaction mode (`in_transaction=True`)."""
    job = current_job.get()
    return job is not None and job.cancelled is not None


class HandlerRunner:
    """Runs `handler` on jobs of `destination` and judges how each ends:
    by `retry` when it raised, within `timeout` seconds if given (None: no
    limit), stamped by `clock`; tells `observer` how long each call took."""

    __slots__ = ("_clock", "_destination", "_handler", "_metrics", "_retry", "_timeout")

    def __init__(  # noqa: PLR0913 - what a handler call depends on
        self,
        handler: Handler,
        *,
        destination: str,
        retry: RetryPolicy,
        timeout: float | None,
        clock: Callable[[], datetime],
        observer: WorkerObserver | None,
    ) -> None:
        self._handler = handler
        self._destination = destination
        self._retry = retry
        self._timeout = timeout
        self._clock = clock
        self._metrics = observer

    def judge(self, job: FullText, cancellable: Cancellable | None = None) -> Verdict:
        """Run the handler on a copy of `job`, and say how the job ends
        according to how the handler ended (see `settle`); or, if
        `cancellable` (the job as the worker holds it) is cancelled before
        the handler ends, that the job is skipped with the cancel's error,
        however the handler ends (not called at all if it was cancelled
        before)."""
        if cancellable is None:
            return self._judge(job, None)
        if cancellable.cancelled is not None:
            return Ending.SKIP, self._clock(), None, cancellable.cancelled
        token = current_job.set(cancellable)
        try:
            verdict = self._judge(job, cancellable)
        except asyncio.CancelledError:
            if cancellable.cancelled is None:
                raise  # not a cancel of the job: not for the verdict to hide
            verdict = Ending.SKIP, self._clock(), None, cancellable.cancelled
        finally:
            current_job.reset(token)
        if cancellable.cancelled is not None:
            return Ending.SKIP, verdict[1], None, cancellable.cancelled
        return verdict

    def _judge(self, job: FullText, cancellable: Cancellable | None) -> Verdict:
        """As `judge`, but for a cancel (an async handler's task cancelled
        raises `asyncio.CancelledError` from here)."""
        began = time.monotonic()
        try:
            if self._timeout is None:
                result = self._handler(job.copy())
                # Most handlers return None: spare them the awaitable test.
                if result is not None and inspect.isawaitable(result):
                    _run_on_thread_loop(result, cancellable)
            else:
                self._call_within(job, self._timeout, cancellable)
        except SkipJob as exc:
            _log.info("job %s (item %s) skipped: %s", job.id, job.item_id, exc)
            # The reason is the message alone: a skip is the handler's
            # decision, not an error to name by its type.
            return Ending.SKIP, self._clock(), None, str(exc) or None
        except FailJob as exc:
            _log.warning("job %s (item %s) failed (FailJob): %s", job.id, job.item_id, exc)
            return Ending.FAIL, self._clock(), None, describe(exc)
        except RetryAfter as exc:
            if not self._retry.backs_off(job.backoffs):
                return self._retry_or_fail(job, exc, backed_off=True)
            now = self._clock()
            due = _later(utc(now), timedelta(seconds=exc.seconds))
            _log.info(
                "job %s (item %s) backs off for %g s%s",
                *(job.id, job.item_id, exc.seconds),
                "; pausing the destination as long" if exc.pause else "",
            )
            ending = Ending.BACK_OFF_PAUSE if exc.pause else Ending.BACK_OFF
            return ending, now, due, exc.error()
        except Exception as exc:  # noqa: BLE001 - any failure of the handler fails or retries the job
            return self._retry_or_fail(job, exc)
        else:
            return Ending.FINISH, self._clock(), None, None
        finally:
            if self._metrics is not None:
                self._metrics.observe_handler(self._destination, time.monotonic() - began)

    def _retry_or_fail(self, job: FullText, exc: Exception, *, backed_off: bool = False) -> Verdict:
        """The verdict on a handler that raised `exc`, counted as an attempt:
        retried after the policy's delay, or failed once the policy gives
        up. `backed_off`: `exc` is a `RetryAfter` past `max_backoffs`."""
        now = self._clock()
        error = describe(exc)
        if backed_off:
            error += f" (backed off {job.backoffs} times, max_backoffs reached: an attempt)"
        if self._retry.gives_up(job.attempts):
            _log.warning("job %s (item %s) failed", job.id, job.item_id, exc_info=exc)
            return Ending.FAIL, now, None, error
        due = _later(utc(now), self._retry.delay(job.attempts))
        _log.warning(
            "job %s (item %s) failed (attempt %d of %d); retrying at %s",
            *(job.id, job.item_id, job.attempts, self._retry.max_attempts),
            due.isoformat(),
            exc_info=exc,
        )
        return Ending.RELEASE, now, due, error

    def _call_within(self, job: FullText, timeout: float, cancellable: Cancellable | None) -> None:
        """Run the handler on a copy of `job`, for at most `timeout`
        seconds; raise what it raised, or `TimeoutError` if it ran past.

        A coroutine function runs on this thread's loop and is cancelled
        at the timeout (a coroutine that blocks the loop cannot be, and is
        waited for). Any other handler runs in a thread of its own, which
        Python cannot stop: past the timeout it is left to run (a daemon),
        and whatever it then returns or raises is dropped, never saved or
        counted; the job's outcome is the timeout's."""
        copy = job.copy()
        if inspect.iscoroutinefunction(self._handler):
            try:
                _run_on_thread_loop(asyncio.wait_for(self._handler(copy), timeout), cancellable)
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


def settle(job: FullText, verdict: Verdict) -> None:
    """End `job` as `verdict` says: finished, skipped or failed at its time,
    or released to be retried (or backed off) until its due time, with its
    error."""
    ending, now, due, error = verdict
    if ending is Ending.FINISH:
        job.finish(now)
    elif ending is Ending.SKIP:
        job.skip(now, error=error)
    elif ending is Ending.FAIL:
        job.fail(now, error=error)
    elif ending is Ending.RELEASE:
        job.release(now, not_before=due, error=error)
    else:
        assert due is not None  # noqa: S101 - a back-off verdict always has its end
        job.back_off(now, not_before=due, error=error)


def describe(exc: BaseException) -> str:
    """The exception as one line: its type, and its message if it has one."""
    message = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


class JobFields(Mapping[str, str]):
    """The log context of a handler call: the thread's own (`base`) and the
    job's id, which is written out only when a record is formatted. What
    `log_context(job_id=...)` would set, for less work a job (see
    docs/benchmarks.md, "Why the hot path is written as it is")."""

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


# Each claim thread's own event loop, for async handlers.
_loops = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, made on first use."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop


def _run_on_thread_loop(awaitable: Awaitable[object], cancellable: Cancellable | None) -> None:
    """Run `awaitable` to its end on this thread's loop, as a task that a
    cancel of `cancellable` cancels (`cancelling.interrupt`)."""
    loop = _thread_loop()
    if cancellable is None:
        loop.run_until_complete(awaitable)
        return
    task = loop.create_task(awaitable if inspect.iscoroutine(awaitable) else _awaited(awaitable))
    cancellable.task = task
    # Registered first, then looked at: a cancel that came between is seen
    # here or sees the task (`interrupt`), so it is never missed.
    if cancellable.cancelled is not None:
        task.cancel()
    try:
        loop.run_until_complete(task)
    finally:
        cancellable.task = None


def close_thread_loop() -> None:
    """Close this thread's event loop, if it made one: a claim thread
    calls it as it ends."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is not None and not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    _loops.loop = None


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
