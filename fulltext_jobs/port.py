"""What the two ports share, so that they cannot drift apart.

`Repository` (`fulltext_jobs.repository`) and `AsyncRepository`
(`fulltext_jobs.repository_async`) promise the same operations, one
blocking and one a coroutine. Each public method of either is a line around
this module's checks of its arguments and the adapter's protected method:

- `<operation>_args`: one per operation, the checks of `fulltext_jobs.checks`
  in the order a call bad in two ways reports, returning the clean values
  the adapter's `_<operation>` takes (the rules are listed in
  `fulltext_jobs.repository`'s docstring). Where an operation has a single
  check, its entry is that check itself, not a function around it, so the
  per-job hot paths (`get_ready_job`, `save_fulltext`, `heartbeat`) pay no
  extra call for sharing it.
- the bookkeeping after a save: `moved_on`, `moved_on_but`;
- `hold_ready`'s pieces: what an adapter yields (`Hold`, `AsyncHold`),
  how it makes the copies it hands out (`hold_copy`), the error of a port
  that cannot hold (`cannot_hold`), and the check, on leaving the block,
  that every copy is still a job handed out (`handed_out`,
  `held_outcomes`), which both ports run whatever the adapter;
- `ReadyListener`, what `listen` returns;
- `renamed_keyword`, which keeps a parameter's old name working, for a
  while, as a deprecated alias of its new one, in both ports alike.

The defaults stay in the public methods' signatures, where a reader and
`help()` find them; tests/test_port.py holds the two ports' signatures
equal.
"""

from __future__ import annotations

import abc
import functools
import inspect
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, ParamSpec, Self, TypeVar, cast

from fulltext_jobs.audit import AuditSettings
from fulltext_jobs.checks import (
    MAX_LISTED,
    check_cancel,
    check_claim_size,
    check_claims,
    check_count,
    check_destination,
    check_duration,
    check_flag,
    check_held,
    check_item_id,
    check_item_ids,
    check_job,
    check_job_id,
    check_jobs,
    check_limit,
    check_max_attempts,
    check_max_running,
    check_optional_destination,
    check_pause,
    check_priority,
    check_progress,
    check_retry_statuses,
    check_statuses,
    job_list,
)
from fulltext_jobs.domain import KEEP, FullText, JobStatus, Keep, Limits, utc
from fulltext_jobs.errors import InvalidInput, NotSupported, StaleJobs
from fulltext_jobs.pipeline import check_on_statuses, check_upstreams
from fulltext_jobs.rate_limit import MAX_BURST, check_burst, check_rate

__all__ = [
    "AsyncHold",
    "Hold",
    "ReadyListener",
    "cannot_cancel",
    "cannot_hold",
    "cannot_prioritize",
    "cannot_steer",
    "handed_out",
    "held_outcomes",
    "hold_copy",
    "moved_on",
    "moved_on_but",
    "renamed_keyword",
]

# --- each operation's arguments, checked --------------------------------------

# One check each: the check is the entry (see the module's docstring).
get_fulltext_args = check_job_id
save_fulltext_args = check_job
get_ready_job_args = check_destination
has_destination_args = check_destination
lag_args = check_destination
count_unqueued_args = check_destination
next_due_args = check_destination
listen_args = check_destination
queue_health_args = check_optional_destination
controls_args = check_destination
resume_args = check_destination
listen_for_cancels_args = check_destination
heartbeat_args = check_held
take_cancel_requests_args = check_claims


def create_job_for_unqueued_args(destination: str, priority: int) -> tuple[str, int]:
    return check_destination(destination), check_priority(priority)


def enqueue_unqueued_args(
    destination: str, limit: int | None, progress: Callable[[int], object] | None, priority: int
) -> tuple[str, int | None, Callable[[int], object] | None, int]:
    return (
        check_destination(destination),
        check_limit(limit),
        check_progress(progress),
        check_priority(priority),
    )


def claim_ready_args(destination: str, n: int) -> tuple[str, int]:
    return check_destination(destination), check_claim_size(n)


# `hold_ready` chooses its jobs as `claim_ready` does, from the same arguments.
hold_ready_args = claim_ready_args


def save_many_args(
    jobs: Iterable[FullText],
    atomic: bool,  # noqa: FBT001 - the port's call
) -> tuple[list[FullText], list[FullText], bool]:
    """The jobs as given (whose versions move on), their checked copies
    (what the adapter stores), and `atomic`."""
    originals = job_list(jobs)
    return originals, check_jobs(originals), check_flag(atomic, "atomic")


def enqueue_new_args(
    destination: str, sweep_interval: timedelta, priority: int
) -> tuple[str, timedelta, int]:
    return (
        check_destination(destination),
        check_duration(sweep_interval, "sweep_interval", zero=True),
        check_priority(priority),
    )


def stats_args(destination: str | None, unqueued: bool) -> tuple[str | None, bool]:  # noqa: FBT001 - the port's call
    return check_optional_destination(destination), check_flag(unqueued, "unqueued")


def rescue_expired_jobs_args(destination: str | None, max_attempts: int) -> tuple[str | None, int]:
    return check_optional_destination(destination), check_max_attempts(max_attempts)


def retry_args(
    destination: str, statuses: Iterable[JobStatus | str], item_ids: Iterable[str] | None
) -> tuple[str, frozenset[JobStatus], frozenset[str] | None]:
    return (
        check_destination(destination),
        check_retry_statuses(statuses),
        None if item_ids is None else frozenset(check_item_ids(item_ids)),
    )


def list_jobs_args(
    destination: str, statuses: Iterable[JobStatus | str] | None, limit: int, after: str | None
) -> tuple[str, frozenset[JobStatus] | None, int, str | None]:
    return (
        check_destination(destination),
        check_statuses(statuses),
        check_count(limit, "limit", MAX_LISTED),
        None if after is None else check_item_id(after),
    )


def take_rate_tokens_args(
    destination: str, rate: float, n: int, burst: int
) -> tuple[str, float, int, int]:
    return (
        check_destination(destination),
        check_rate(rate),
        check_count(n, "n", MAX_BURST),
        check_burst(burst),
    )


def audit_args(
    destination: str | None,
    rescue_after: timedelta,
    clock_tolerance: timedelta,
    max_attempts: int,
    examples: int,
) -> tuple[str | None, AuditSettings]:
    return check_optional_destination(destination), AuditSettings.checked(
        rescue_after=rescue_after,
        clock_tolerance=clock_tolerance,
        max_attempts=max_attempts,
        examples=examples,
    )


def release_unleased_args(
    older_than: timedelta, destination: str | None
) -> tuple[timedelta, str | None]:
    return check_duration(older_than, "older_than"), check_optional_destination(destination)


def limit_args(
    destination: str,
    max_running: int | Keep | None,
    rate: float | Keep | None,
    burst: int | Keep | None,
) -> tuple[str, Limits]:
    if max_running is KEEP and rate is KEEP and burst is KEEP:
        msg = "limit needs max_running, rate or burst: nothing to set"
        raise InvalidInput(msg)
    return check_destination(destination), Limits(
        max_running=max_running if max_running is KEEP else check_max_running(max_running),
        rate=rate if rate is KEEP or rate is None else check_rate(rate),
        rate_burst=burst if burst is KEEP or burst is None else check_burst(burst),
    )


def pause_args(
    destination: str, until: datetime | None, reason: str | None, *, at_least: bool
) -> tuple[str, datetime | None, str | None, bool]:
    # A pause until resumed outlasts any: with no `until`, `at_least` is moot.
    at_least = check_flag(at_least, "at_least") and until is not None
    return (check_destination(destination), *check_pause(until, reason), at_least)


def cancel_args(
    destination: str,
    item_ids: Iterable[str] | None,
    all_ready: bool,  # noqa: FBT001 - the port's call
    reason: str | None,
) -> tuple[str, list[str] | None, str]:
    return (check_destination(destination), *check_cancel(item_ids, all_ready, reason))


def prioritize_args(
    destination: str, item_ids: Iterable[str], priority: int
) -> tuple[str, list[str], int]:
    """The destination, the item ids (sorted, each once) and the priority."""
    return (
        check_destination(destination),
        sorted(set(check_item_ids(item_ids))),
        check_priority(priority),
    )


def depend_args(
    destination: str, on: str | Iterable[str], statuses: Iterable[JobStatus | str]
) -> tuple[str, list[str], frozenset[JobStatus]]:
    """The destination, its upstreams (sorted, each once) and the statuses
    they must reach (see `fulltext_jobs.pipeline`)."""
    destination = check_destination(destination)
    return destination, check_upstreams(destination, on), check_on_statuses(statuses)


def undepend_args(destination: str, on: str | Iterable[str] | None) -> tuple[str, list[str] | None]:
    """The destination, and the upstreams to drop (None: all of them)."""
    destination = check_destination(destination)
    return destination, None if on is None else check_upstreams(destination, on)


def dependencies_args(destination: str | None) -> str | None:
    return check_optional_destination(destination)


# --- a parameter's old name ------------------------------------------------------

_P = ParamSpec("_P")
_R = TypeVar("_R")


def renamed_keyword(old: str, new: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A method's keyword parameter `new` may still be given by its old
    name, `old`: with a `DeprecationWarning`, then exactly as `new`. Both
    at once raise `InvalidInput`. The method keeps its signature, its
    docstring and its kind (a coroutine function stays one, and warns and
    raises when awaited, as its checks do); the wrapper records the
    renaming in `__renamed_keywords__` (old name to new), which
    tests/test_port.py holds equal in both ports."""

    def decorate(method: Callable[_P, _R]) -> Callable[_P, _R]:
        name = method.__name__
        if inspect.iscoroutinefunction(method):
            coroutine_function = cast("Callable[_P, Awaitable[object]]", method)

            @functools.wraps(method)
            async def awaited(*args: _P.args, **kwargs: _P.kwargs) -> object:
                return await coroutine_function(*args, **_renamed(kwargs, old, new, name))

            wrapper = cast("Callable[_P, _R]", awaited)
        else:

            @functools.wraps(method)
            def called(*args: _P.args, **kwargs: _P.kwargs) -> _R:
                return method(*args, **_renamed(kwargs, old, new, name))

            wrapper = called
        renamed = {**getattr(method, "__renamed_keywords__", {}), old: new}
        wrapper.__renamed_keywords__ = renamed  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _renamed(kwargs: dict[str, Any], old: str, new: str, method: str) -> dict[str, Any]:
    """`kwargs` with `old` given as `new` (see `renamed_keyword`)."""
    if old not in kwargs:
        return kwargs
    if new in kwargs:
        msg = f"{method}: {old} is the old name of {new}; give {new} only"
        raise InvalidInput(msg)
    # 1 is this function, 2 the wrapper, 3 the caller of the method.
    warnings.warn(
        f"{method}({old}=) is deprecated: use {method}({new}=), which means the same",
        DeprecationWarning,
        stacklevel=3,
    )
    kwargs[new] = kwargs.pop(old)
    return kwargs


# --- after a save ----------------------------------------------------------------


def moved_on(jobs: list[FullText]) -> None:
    """After a save of all of `jobs`, each copy is at the stored version."""
    for job in jobs:
        job.version += 1


def moved_on_but(jobs: list[FullText], refused: set[uuid.UUID]) -> None:
    """After a save of each of `jobs` on its own: the saved copies are at
    the stored version; raise `StaleJobs` naming the refused ones, if any."""
    if not refused:
        # The common case, without hashing every id.
        for job in jobs:
            job.version += 1
        return
    for job in jobs:
        if job.id not in refused:
            job.version += 1
    if refused:
        ids = [job.id for job in jobs if job.id in refused]
        msg = (
            f"{len(ids)} of {len(jobs)} jobs have changed since they were read (or lost "
            f"their claims) and were not saved: {', '.join(map(str, ids[:5]))}"
            f"{', ...' if len(ids) > 5 else ''}; the others were saved"
        )
        raise StaleJobs(msg, refused=ids)


# --- hold_ready ------------------------------------------------------------------


class Hold(NamedTuple):
    """What an adapter's `_hold_ready` yields: the held jobs, as `running`
    copies (`hold_copy`), and how to write the caller's outcomes inside
    the held transaction.

    `write(checked, finished_as_held)` takes the checked copies (stored
    form) and returns the ids refused by the compare-and-swap.
    `finished_as_held` says that every one of them was finished and
    nothing else was changed from how it was handed out (`started`,
    `attempts`, `last_error`; no `not_before`): the common outcome, which
    an adapter may write with less than every column."""

    jobs: list[FullText]
    write: Callable[[list[FullText], bool], set[uuid.UUID]]


class AsyncHold(NamedTuple):
    """What an `AsyncRepository` adapter's `_hold_ready` yields: as `Hold`,
    with a `write` that is awaited."""

    jobs: list[FullText]
    write: Callable[[list[FullText], bool], Awaitable[set[uuid.UUID]]]


def hold_copy(job: FullText, now: datetime) -> FullText:
    """The ready job `job`, as `hold_ready` hands it out: `running` from
    `now`, with its attempt counted, but no claim token and no lease (the
    transaction is the claim) and its stored `version` (nothing has been
    written). Raises `InvalidTransition` for a job at `MAX_ATTEMPTS`, which
    an adapter fails instead of holding it (`ATTEMPTS_EXHAUSTED_ERROR`)."""
    held = job.copy()
    held.start(now)
    held.attempt()
    return held


class _HandedOut(NamedTuple):
    """A job as `hold_ready` handed it out: the values that must come back
    (its id, item, destination and priority), and those a plain finish
    leaves alone. Kept apart from the caller's copy, which the caller may
    change."""

    id: uuid.UUID
    item_id: str
    destination: str
    priority: int
    started: datetime | None
    attempts: int
    last_error: str | None
    version: int

    @classmethod
    def of(cls, job: FullText) -> _HandedOut:
        return cls(
            job.id,
            job.item_id,
            job.destination,
            job.priority,
            job.started,
            job.attempts,
            job.last_error,
            job.version,
        )

    def same_job(self, stored: FullText) -> bool:
        """Whether `stored` (a checked copy) is still this job: same id,
        item, destination and priority (a held job's outcome does not
        reorder the queue; `prioritize` does)."""
        return (
            stored.id == self.id
            and stored.item_id == self.item_id
            and stored.destination == self.destination
            and stored.priority == self.priority
        )

    def plain_finish(self, job: FullText) -> FullText | None:
        """`job`'s stored form if it was finished and nothing else changed:
        every other field still the very object handed out (which `check_job`
        would pass as it is), token, lease and delay none, and a finish
        time in UTC (`utc` raises `InvalidInput` for a bad one). Else None:
        the job is checked field by field. The common outcome, told with
        identity tests only, as a batch has a hundred."""
        finished = job.finished
        if (
            job.status is JobStatus.FINISHED
            and finished is not None
            and job.id is self.id
            and job.item_id is self.item_id
            and job.destination is self.destination
            and job.priority is self.priority
            and job.started is self.started
            and job.attempts is self.attempts
            and job.last_error is self.last_error
            and job.version is self.version
            and job.claim_token is None
            and job.lease_expires is None
            and job.not_before is None
            and utc(finished) is finished
        ):
            return job.copy()
        return None


def cannot_hold(repo: object) -> NotSupported:
    """The error of either port's own `_hold_ready`, which an adapter
    without transactions keeps."""
    msg = (
        f"{type(repo).__name__} cannot hold jobs in a transaction; "
        "use claim_ready and save_many (the leased mode)"
    )
    return NotSupported(msg)


def cannot_steer(repo: object) -> NotSupported:
    """The error of either port's own `_pause` and `_resume`, which an
    adapter that keeps no controls inherits."""
    return NotSupported(
        f"{type(repo).__name__} keeps no destination controls: it cannot pause or cap"
    )


def cannot_cancel(repo: object) -> NotSupported:
    """The error of either port's own `_cancel`, which an adapter that
    cannot cancel inherits."""
    return NotSupported(f"{type(repo).__name__} cannot cancel jobs")


def cannot_depend(repo: object) -> NotSupported:
    """The error of either port's own `_depend`, `_undepend` and
    `_dependencies`, which an adapter that keeps no dependencies inherits."""
    return NotSupported(f"{type(repo).__name__} keeps no dependencies between destinations")


def cannot_prioritize(repo: object) -> NotSupported:
    """The error of either port's own `_prioritize`, which an adapter that
    cannot change priorities inherits."""
    return NotSupported(f"{type(repo).__name__} cannot change the priority of jobs")


def handed_out(jobs: list[FullText]) -> list[_HandedOut]:
    """What each held job was handed out as, by position, before the caller
    may change its copy: its id, item, destination and priority must come
    back unchanged. The ids handed out are distinct, and so are the (item,
    destination) pairs, so the jobs written are distinct too."""
    return [_HandedOut.of(job) for job in jobs]


def held_outcomes(
    jobs: list[FullText], handed: list[_HandedOut]
) -> tuple[list[FullText], list[FullText], bool]:
    """On leaving a `hold_ready` block: the caller's copies that left
    `running`, their stored forms, and whether every one is a plain finish
    (`Hold.write`'s `finished_as_held`). Raises `InvalidInput` if a copy is
    no longer a valid job, or not the one handed out at its place."""
    moved: list[FullText] = []
    checked: list[FullText] = []
    finished_as_held = True
    for job, out in zip(jobs, handed, strict=True):
        if job.status is JobStatus.RUNNING:
            continue
        stored = out.plain_finish(job)
        if stored is None:
            finished_as_held = False
            stored = check_job(job)
            if not out.same_job(stored):
                msg = f"job {job.id} is not one hold_ready handed out, as it was handed out"
                raise InvalidInput(msg)
        moved.append(job)
        checked.append(stored)
    return moved, checked, finished_as_held


# --- listen ----------------------------------------------------------------------


class ReadyListener(abc.ABC):
    """Tells a waiting worker that jobs of one destination have become ready.

    A wake-up is a hint, not a hand-over: the job may already be claimed by
    someone else, so the caller claims to find out. A listener is for one
    thread at a time.
    """

    @abc.abstractmethod
    def wait(self, timeout: float) -> bool:
        """Block until a job of the destination has become ready since the
        listener was opened or `wait` last returned True, or until `timeout`
        seconds have passed; return whether one did.

        Raises `StoreError` (retryable) if the connection it listens on was
        lost; the next call listens again, and returns True at once, since
        jobs may have become ready unseen.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop listening and let go of what the listener holds. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
