"""What a worker tells its caller: the handler's signals (`SkipJob`,
`FailJob`, `RetryAfter`), the counts of a run (`WorkerStats`), and the observer that is
told every count as it happens (`WorkerObserver`, which
`fulltext_jobs.metrics.WorkerMetrics` implements)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

from fulltext_jobs.checks import as_real
from fulltext_jobs.domain import BACKED_OFF_PREFIX, FullText, JobStatus
from fulltext_jobs.errors import InvalidInput

#: What a worker runs on each job: a function, or a coroutine function (an
#: awaitable it returns is run to completion). Its return value is ignored.
Handler = Callable[[FullText], object]


class SkipJob(Exception):  # noqa: N818 - reads as an instruction to the worker
    """Raised by a handler: this job has nothing to do (an item without full
    text, say). The worker marks it `skipped`, with the message, if any, in
    `last_error` as the reason (and logs it)."""


class FailJob(Exception):  # noqa: N818 - reads as an instruction to the worker
    """Raised by a handler: this job cannot succeed (a 404, a malformed
    text), so retrying is pointless. The worker marks it `failed` at once,
    whatever attempts are left, with the message in `last_error`."""


#: The longest back-off a handler may ask for, in seconds (a day): a longer
#: stop is an operator's decision (`fulltext-jobs pause`).
MAX_RETRY_AFTER: Final = 86_400.0


class RetryAfter(Exception):  # noqa: N818 - reads as an instruction to the worker
    """Raised by a handler: the service it calls asked for time (a 429 or
    503 with `Retry-After`), so try this job again in `seconds`, without
    counting the attempt. The worker puts the job back to `ready`, not to
    be claimed for `seconds`, with its `attempts` as they were before the
    claim and `last_error` saying why ("backed off: ..."); with
    `pause=True` it also pauses the whole destination for `seconds`
    (`Repository.pause(..., at_least=True)`: a longer pause in force, an
    operator's say, is kept), so no worker of the fleet calls the service
    in that time, and starts no more handlers of its current batch (their
    jobs go back unchanged).

    Bounded: a job backs off at most `RetryPolicy.max_backoffs` times (20
    by default) until an operator retries it; past that a `RetryAfter`
    counts as an attempt, as any other exception does, so a handler that
    always backs off ends its job within `max_attempts` more claims.

    Raises `InvalidInput` (inside the handler, where it counts as any
    error) for `seconds` that is not a number above 0 and at most a day
    (`MAX_RETRY_AFTER`), or a `reason` that is not a str.
    """

    def __init__(self, seconds: float, *, pause: bool = False, reason: str | None = None) -> None:
        value = as_real(seconds)
        if value is None or not 0 < value <= MAX_RETRY_AFTER:
            msg = f"RetryAfter takes seconds above 0, at most {MAX_RETRY_AFTER:g}, not {seconds!r}"
            raise InvalidInput(msg)
        if reason is not None and not isinstance(reason, str):
            msg = f"RetryAfter's reason must be a str, not {reason!r}"
            raise InvalidInput(msg)
        super().__init__(reason or f"retry after {value:g} s")
        self.seconds = float(value)
        self.pause = bool(pause)
        self.reason = reason

    def error(self) -> str:
        """The `last_error` a job backed off for this records."""
        why = f"; {self.reason}" if self.reason else ""
        return f"{BACKED_OFF_PREFIX}{self.seconds:g} s{why}"


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
    backoff (a job that fails for good counts as `failed`); `backed_off`
    those whose handler raised `RetryAfter`, which went back to `ready`
    without their attempt counted.
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
    backed_off: int = 0

    def summary(self) -> str:
        """The counts an operator reads in the worker's stop line."""
        return (
            f"claimed {self.claimed}, finished {self.finished}, failed {self.failed}, "
            f"skipped {self.skipped}, retried {self.retried}, released {self.released}"
        )


@runtime_checkable
class WorkerObserver(Protocol):
    """What a worker tells as it runs, for metrics: all it needs of
    `fulltext_jobs.metrics.WorkerMetrics`, so that the worker does not
    depend on prometheus_client, and a test or another exporter can stand
    in for it."""

    def declare(self, destination: str) -> None:
        """A worker for `destination` was made (before anything happens)."""

    def count(self, destination: str, name: str, n: int = 1) -> None:
        """`n` more of the `WorkerStats` field `name`."""

    def observe_handler(self, destination: str, seconds: float) -> None:
        """One handler call took `seconds`, whatever came of it."""


@runtime_checkable
class WaitObserver(Protocol):
    """What a worker also tells, if its metrics have this method: how long
    each job it claimed waited for a worker (`FullText.waited`: from the
    job's `ready_at` to its claim's `started`, both on the repository's
    clock). Apart from `WorkerObserver`, so that an observer written
    without it still serves."""

    def observe_wait(self, destination: str, seconds: float) -> None:
        """A job of `destination` was claimed `seconds` after it became ready."""


def check_observer(metrics: object) -> WorkerObserver | None:
    """`metrics` if it is None or has the three methods of
    `WorkerObserver`; `InvalidInput` otherwise (the worker would fail on
    its first count, in a thread of its own)."""
    if metrics is not None and not isinstance(metrics, WorkerObserver):
        msg = f"metrics must be a WorkerMetrics (or have its methods), not {metrics!r}"
        raise InvalidInput(msg)
    return metrics


# The counter kept for each status a saved job can have.
_SAVED_AS: Final[dict[JobStatus, str]] = {
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.SKIPPED: "skipped",
    JobStatus.READY: "released",
}


def saved_as(job: FullText) -> str:
    """The counter of a saved outcome: a job back to ready with a delay is
    retried, or backed off if its last error says so, without one released."""
    if job.status is JobStatus.READY and job.not_before is not None:
        error = job.last_error
        return "backed_off" if error and error.startswith(BACKED_OFF_PREFIX) else "retried"
    return _SAVED_AS[job.status]
