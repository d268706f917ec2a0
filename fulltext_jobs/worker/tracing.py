"""A worker's OpenTelemetry spans (`Worker(telemetry=...)`): `JobSpans`
wraps the worker's claim, handler call and save, each a callable the
worker binds once, so that a worker without telemetry runs exactly the
code it ran before and pays nothing.

The spans, after OpenTelemetry's semantic conventions for messaging
(`messaging.system` is `fulltext_jobs`, `messaging.destination.name` the
destination, `messaging.operation.name` and `.type` the operation, and the
span named `<operation> <destination>`):

- `process <destination>`, one per handler run (kind INTERNAL: the claim
  has its own CONSUMER span), current while the handler runs, so that the
  handler's own spans are its children. Attributes: `messaging.message.id`
  (the job's id), `fulltext_jobs.item.id`, `fulltext_jobs.job.attempt`,
  and `fulltext_jobs.job.outcome`: how the handler's run ends the job
  (`finished`, `skipped`, `failed`, or `retry`: back to ready after a
  backoff). A failed or retried run has status ERROR, `error.type`, and
  the handler's exception recorded (`record_exception`; a timeout, which
  the handler did not raise, as an `exception` event of the same form).
- `receive <destination>` (CONSUMER): a claim (`get_ready_job`,
  `claim_ready`, or entering `hold_ready`).
- `settle <destination>` (CLIENT): a save of the outcomes (`save_fulltext`
  or `save_many`; leaving `hold_ready`, which commits them).

How the claim and the save relate to a run depends on how many jobs they
carried. A claim of one job (the default, `batch_size=1`) is one job's
alone: its `process` span starts when the claim started and ends when the
save ended, with the `receive` and the `settle` spans as its children. A
claim of many jobs is one statement for all of them, so it is one
`receive` span (with `messaging.batch.message_count`), not a copy per job:
each `process` span covers its handler call and links to that `receive`
span, and the batch's `settle` span links to each `process` span it saved,
as the conventions do for batches. A claim that finds nothing makes no
span (an idle worker would otherwise send one every poll); one that fails
makes a `receive` span with the error.

The `receive` span of a claim is made when the claim has returned (with
its start and end times), because until then it is not known whether
there is a job, and so a `process` span, to hang it on: a database
client's own spans during the claim are not its children.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

from fulltext_jobs.domain import FullText
from fulltext_jobs.errors import NoJobs
from fulltext_jobs.worker.stats import Handler, SkipJob, WorkerObserver

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer

    from fulltext_jobs.telemetry import Telemetry
    from fulltext_jobs.worker.handlers import Verdict
    from fulltext_jobs.worker.inflight import Held, Run

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: How `hold_ready` is called: a block holding the jobs.
Hold = Callable[[str, int], AbstractContextManager[list[FullText]]]

#: `fulltext_jobs.job.outcome` for each way a handler's run ends a job, by
#: the name of its `handlers.Ending`; another ending is named in lower case.
OUTCOMES: Final = {
    "FINISH": "finished",
    "SKIP": "skipped",
    "FAIL": "failed",
    "RELEASE": "retry",
    "BACK_OFF": "backed_off",
    "BACK_OFF_PAUSE": "backed_off",
}

#: The endings that are the handler's failure: status ERROR.
_ERRORS: Final = frozenset({"FAIL", "RELEASE"})


class _Raised:
    """The exception the handler raised in the current run, if any: a
    holder shared with a handler that runs in a thread of its own (a
    `timeout`), which gets a copy of the context but the same holder."""

    __slots__ = ("exc",)

    def __init__(self) -> None:
        self.exc: Exception | None = None


_raised: contextvars.ContextVar[_Raised | None] = contextvars.ContextVar(
    "fulltext_jobs_raised", default=None
)


def _note(exc: Exception) -> None:
    """Keep `exc` for the current run's span (a skip is no error)."""
    holder = _raised.get()
    if holder is not None and not isinstance(exc, SkipJob):
        holder.exc = exc


class _Claim:
    """A claim this thread made whose jobs are being worked through."""

    __slots__ = ("end", "link", "n", "start")

    def __init__(self, start: int, end: int, n: int, link: SpanContext | None) -> None:
        self.start, self.end, self.n, self.link = start, end, n, link


class _Thread(threading.local):
    """What one claim thread's spans share between its claim, its handler
    calls and its save: each claim thread claims, handles and saves one
    batch at a time."""

    claim: _Claim | None = None  # the claim being worked through
    open: Span | None = None  # a single job's run span, ended by its save
    runs: list[SpanContext]  # the batch's run spans, for the save's links

    def __init__(self) -> None:
        self.runs = []


class JobSpans:
    """The spans of one worker's jobs of `destination`, made by `tracer`
    (see the module's docstring for which and how they relate)."""

    def __init__(self, tracer: Tracer, destination: str) -> None:
        self._trace = importlib.import_module("opentelemetry.trace")
        self._context = importlib.import_module("opentelemetry.context")
        self._tracer = tracer
        self._destination = destination
        self._names = {op: f"{op} {destination}" for op in ("process", "receive", "settle")}
        self._base = {
            "messaging.system": "fulltext_jobs",
            "messaging.destination.name": destination,
        }
        self._ops = {
            op: {**self._base, "messaging.operation.name": op, "messaging.operation.type": op}
            for op in ("process", "receive", "settle")
        }
        self._thread = _Thread()

    # --- the claim ----------------------------------------------------------------

    def claiming(self, claim: Callable[_P, _R]) -> Callable[_P, _R]:
        """`claim` (`get_ready_job` or `claim_ready`), timed for its span."""

        def traced(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            start = time.time_ns()
            try:
                claimed = claim(*args, **kwargs)
            except NoJobs:
                self._thread.claim = None
                raise
            except BaseException as exc:
                self._failed_claim(start, exc)
                raise
            n = 1 if isinstance(claimed, FullText) else len(claimed)  # type: ignore[arg-type]
            self._claimed(start, n)
            return claimed

        return traced

    def holding(self, hold: Hold) -> Hold:
        """`hold_ready`, whose entry is timed as the claim and whose exit
        (the commit of the outcomes) as the save."""

        def traced(destination: str, n: int) -> AbstractContextManager[list[FullText]]:
            return _TracedHold(self, hold(destination, n))

        return traced

    def _claimed(self, start: int, n: int) -> None:
        """A claim that began at `start` took `n` jobs: keep it for their
        runs; a batch's `receive` span is made now, for them to link to."""
        end = time.time_ns()
        thread = self._thread
        thread.runs = []
        if n == 0:
            thread.claim = None
            return
        link = None
        if n > 1:
            span = self._tracer.start_span(
                self._names["receive"],
                kind=self._trace.SpanKind.CONSUMER,
                attributes={**self._ops["receive"], "messaging.batch.message_count": n},
                start_time=start,
            )
            span.end(end)
            link = span.get_span_context()
        thread.claim = _Claim(start, end, n, link)

    def _failed_claim(self, start: int, exc: BaseException) -> None:
        self._thread.claim = None
        span = self._tracer.start_span(
            self._names["receive"],
            kind=self._trace.SpanKind.CONSUMER,
            attributes={**self._ops["receive"], "error.type": type(exc).__qualname__},
            start_time=start,
        )
        _error(span, self._trace, exc, str(exc))
        span.end()

    def _receive_span(self, claim: _Claim, parent: Span | None) -> None:
        """A single job's claim, as a child of `parent` (its run), or
        alone when its job was never run."""
        context = None if parent is None else self._trace.set_span_in_context(parent)
        span = self._tracer.start_span(
            self._names["receive"],
            context=context,
            kind=self._trace.SpanKind.CONSUMER,
            attributes=self._ops["receive"],
            start_time=claim.start,
        )
        span.end(claim.end)

    # --- the handler's run -----------------------------------------------------------

    def handler(self, handler: Handler) -> Handler:
        """`handler`, keeping what it raises for its run's span; still a
        coroutine function if it was one (the worker looks)."""
        if inspect.iscoroutinefunction(handler):

            async def traced_async(job: FullText) -> object:
                try:
                    return await handler(job)
                except Exception as exc:
                    _note(exc)
                    raise

            return traced_async

        def traced(job: FullText) -> object:
            try:
                result = handler(job)
            except Exception as exc:
                _note(exc)
                raise
            if result is not None and inspect.isawaitable(result):
                return _noting(result)
            return result

        return traced

    def judging(
        self, judge: Callable[[FullText, Held | None], Verdict]
    ) -> Callable[[FullText, Held | None], Verdict]:
        """`judge` (the handler runner's), inside the job's `process` span."""

        def traced(job: FullText, held: Held | None) -> Verdict:
            thread = self._thread
            claim = thread.claim
            single = claim is not None and claim.n == 1
            span = self._tracer.start_span(
                self._names["process"],
                kind=self._trace.SpanKind.INTERNAL,
                attributes={
                    **self._ops["process"],
                    "messaging.message.id": str(job.id),
                    "fulltext_jobs.item.id": job.item_id,
                    "fulltext_jobs.job.attempt": job.attempts,
                },
                links=None
                if claim is None or claim.link is None
                else [self._trace.Link(claim.link)],
                start_time=claim.start if single and claim is not None else None,
            )
            if single and claim is not None:
                self._receive_span(claim, span)
                thread.claim = None
            raised = _Raised()
            token = _raised.set(raised)
            attached = self._context.attach(self._trace.set_span_in_context(span))
            try:
                verdict = judge(job, held)
            except BaseException as exc:
                _error(span, self._trace, exc, str(exc))
                span.end()
                raise
            finally:
                self._context.detach(attached)
                _raised.reset(token)
            self._judged(span, verdict, raised.exc)
            if single:
                thread.open = span  # ended by the save
            else:
                span.end()
                thread.runs.append(span.get_span_context())
            return verdict

        return traced

    def _judged(self, span: Span, verdict: Verdict, exc: Exception | None) -> None:
        """Say on `span` how the run ended the job, and record the error of
        a failed or retried run."""
        ending = verdict[0].name
        span.set_attribute("fulltext_jobs.job.outcome", OUTCOMES.get(ending, ending.lower()))
        if ending not in _ERRORS:
            return
        error = verdict[3] or ending.lower()
        if exc is not None:
            span.set_attribute("error.type", type(exc).__qualname__)
            _error(span, self._trace, exc, error)
            return
        # An error the handler did not raise (a timeout): named by the verdict.
        kind, _, message = error.partition(": ")
        span.set_attribute("error.type", kind)
        span.add_event("exception", {"exception.type": kind, "exception.message": message})
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))

    # --- the save --------------------------------------------------------------------

    def saving(self, save: Callable[[Run, list[Held]], None]) -> Callable[[Run, list[Held]], None]:
        """`save` (the saver's `save_held`), inside its `settle` span."""

        def traced(run: Run, held: list[Held]) -> None:
            span = self._settle(len(held))
            attached = self._context.attach(self._trace.set_span_in_context(span))
            try:
                save(run, held)
            except BaseException as exc:
                _error(span, self._trace, exc, str(exc))
                raise
            finally:
                self._context.detach(attached)
                self._settled(span)

        return traced

    def _settle(self, n: int) -> Span:
        """The `settle` span of this thread's batch of `n` jobs: a child of
        a single job's run, or linked to the batch's runs."""
        thread = self._thread
        runs, thread.runs = thread.runs, []
        parent = thread.open
        claim, thread.claim = thread.claim, None
        if claim is not None and claim.n == 1:
            self._receive_span(claim, None)  # its job was never run
        attributes: dict[str, Any] = self._ops["settle"]
        if n > 1:
            attributes = {**attributes, "messaging.batch.message_count": n}
        return self._tracer.start_span(
            self._names["settle"],
            context=None if parent is None else self._trace.set_span_in_context(parent),
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
            links=[self._trace.Link(run) for run in runs],
        )

    def _settled(self, span: Span) -> None:
        span.end()
        thread = self._thread
        if thread.open is not None:
            thread.open.end()
            thread.open = None


class _TracedHold(AbstractContextManager[list[FullText]]):
    """`hold_ready`'s block, with its entry as the claim and its exit as
    the save."""

    def __init__(self, spans: JobSpans, hold: AbstractContextManager[list[FullText]]) -> None:
        self._spans = spans
        self._hold = hold
        self._n = 0

    def __enter__(self) -> list[FullText]:
        start = time.time_ns()
        try:
            jobs = self._hold.__enter__()
        except BaseException as exc:
            self._spans._failed_claim(start, exc)  # noqa: SLF001 - the spans' own helper
            raise
        self._spans._claimed(start, len(jobs))  # noqa: SLF001
        self._n = len(jobs)
        return jobs

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        if not self._n:
            return self._hold.__exit__(kind, exc, traceback)
        spans = self._spans
        span = spans._settle(self._n)  # noqa: SLF001
        trace = spans._trace  # noqa: SLF001
        try:
            if exc is not None:
                # The block raised: its exit rolls the batch back.
                _error(span, trace, exc, str(exc))
            return self._hold.__exit__(kind, exc, traceback)
        except BaseException as raised:
            if raised is not exc:
                _error(span, trace, raised, str(raised))
            raise
        finally:
            spans._settled(span)  # noqa: SLF001


def _error(span: Span, trace: Any, exc: BaseException, description: str) -> None:  # noqa: ANN401 - the opentelemetry.trace module
    """Record `exc` on `span`, and mark the span failed."""
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, description))


async def _noting(awaitable: Awaitable[object]) -> object:
    """`awaitable`'s result, keeping what it raises for the run's span."""
    try:
        return await awaitable
    except Exception as exc:
        _note(exc)
        raise


def traced(
    telemetry: Telemetry | None, destination: str, observer: WorkerObserver | None
) -> tuple[JobSpans | None, WorkerObserver | None]:
    """A worker's spans (None without telemetry or with its traces off),
    and the observer its counts go to: `observer` (its `metrics=`), the
    telemetry's metrics, or both in turn."""
    if telemetry is None:
        return None, observer
    spans = None if telemetry.tracer is None else JobSpans(telemetry.tracer, destination)
    ours = telemetry.metrics
    if ours is None or observer is None:
        return spans, observer if ours is None else ours
    return spans, _Both(observer, ours)


class _Both:
    """Two observers, told everything in turn."""

    def __init__(self, first: WorkerObserver, second: WorkerObserver) -> None:
        self._first, self._second = first, second

    def declare(self, destination: str) -> None:
        self._first.declare(destination)
        self._second.declare(destination)

    def count(self, destination: str, name: str, n: int = 1) -> None:
        self._first.count(destination, name, n)
        self._second.count(destination, name, n)

    def observe_handler(self, destination: str, seconds: float) -> None:
        self._first.observe_handler(destination, seconds)
        self._second.observe_handler(destination, seconds)
