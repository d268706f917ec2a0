"""The domain: a full-text job, its statuses, and the one table of legal moves.

Standard library only. The clock is passed in (`now=`); nothing here reads it
unless the caller leaves `now` out.

The argument checks are in `fulltext_jobs.checks`, but for the few the
entity itself makes (`check_item_id`, `check_destination`, `utc`,
`clean_error`); the names of the others, and of their bounds, are
importable from here as well.
"""

from __future__ import annotations

import dataclasses
import importlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Final, TypeGuard

from fulltext_jobs.errors import InvalidInput, InvalidTransition

if TYPE_CHECKING:
    # Answered at run time by `__getattr__` below: the checks import the
    # entity, so this module cannot import them as it loads.
    from fulltext_jobs.checks import (
        MAX_BATCH_SIZE,
        MAX_CLAIM,
        MAX_INT32,
        MAX_LEASE,
        MAX_LISTED,
        as_real,
        check_batch_size,
        check_claim_size,
        check_clock,
        check_count,
        check_flag,
        check_held,
        check_item_ids,
        check_job,
        check_job_id,
        check_jobs,
        check_lease,
        check_limit,
        check_max_attempts,
        check_optional_destination,
        check_progress,
        check_retry_statuses,
        check_statuses,
        job_list,
        read_clock,
    )

__all__ = [
    "ACTIONS",
    "ATTEMPTS_EXHAUSTED_ERROR",
    "BACKED_OFF_PREFIX",
    "CANCELLED_PREFIX",
    "DEFAULT_SWEEP_INTERVAL",
    "HOLDER_DIED_ERROR",
    "HOLDER_DIED_FAILED",
    "KEEP",
    "MAX_ATTEMPTS",
    "MAX_BACKOFFS",
    "MAX_BATCH_SIZE",
    "MAX_CLAIM",
    "MAX_DESTINATION_LENGTH",
    "MAX_ERROR_LENGTH",
    "MAX_INT32",
    "MAX_ITEM_ID_LENGTH",
    "MAX_LEASE",
    "MAX_LISTED",
    "MAX_PRIORITY",
    "MAX_TIMESTAMP",
    "MIN_PRIORITY",
    "MIN_TIMESTAMP",
    "RESCUED_ERROR",
    "RETRYABLE_STATUSES",
    "TRANSITIONS",
    "Action",
    "Cancellation",
    "DestinationControls",
    "DestinationStats",
    "FullText",
    "JobStatus",
    "Keep",
    "Limits",
    "as_real",
    "cancelled_error",
    "check_batch_size",
    "check_claim_size",
    "check_clock",
    "check_count",
    "check_destination",
    "check_flag",
    "check_held",
    "check_item_id",
    "check_item_ids",
    "check_job",
    "check_job_id",
    "check_jobs",
    "check_lease",
    "check_limit",
    "check_max_attempts",
    "check_optional_destination",
    "check_priority",
    "check_progress",
    "check_retry_statuses",
    "check_statuses",
    "clean_error",
    "holder_died_error",
    "job_list",
    "lag_at",
    "lease_expired_error",
    "read_clock",
    "ready_moment",
    "stored_form",
    "utc",
]

#: The range of every timestamp stored or read from a clock: what Python,
#: SQLite and PostgreSQL all hold, with a day to spare at each end so that
#: no session time zone can push a value out of Python's years 1 to 9999.
MIN_TIMESTAMP: Final = datetime(1, 1, 2, tzinfo=UTC)
MAX_TIMESTAMP: Final = datetime(9999, 12, 30, tzinfo=UTC)

# Both limits are in characters. Together they keep the unique
# (item_id, destination) index entry under PostgreSQL's btree limit of
# 2,704 bytes even when every character takes 4 bytes of UTF-8.
MAX_ITEM_ID_LENGTH: Final = 500
MAX_DESTINATION_LENGTH: Final = 100
#: The longest `last_error` kept, in characters; longer ones are cut.
MAX_ERROR_LENGTH: Final = 4000
#: The most attempts a job may count: the largest value of the stores'
#: 32-bit `attempts` column, so that counting one more can never overflow
#: it. `FullText.attempt` refuses to pass it, `check_job` to store more, and
#: a claim of a job already at it fails the job (`ATTEMPTS_EXHAUSTED_ERROR`)
#: instead of handing it out, on every adapter.
MAX_ATTEMPTS: Final = 2**31 - 1
#: The most back-offs a job may count (`FullText.back_off`), for the same
#: reason: the largest value of the 32-bit `backoffs` column.
MAX_BACKOFFS: Final = 2**31 - 1

#: The range of a job's priority: the stores' 16-bit column, less its
#: lowest value, so that the claim order's key (the negated priority, see
#: migration 0016) fits the type too. Claims take the highest first.
MIN_PRIORITY: Final = -(2**15 - 1)
MAX_PRIORITY: Final = 2**15 - 1


class JobStatus(StrEnum):
    """The status of a job: exactly the original's five strings."""

    READY = "ready"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    SKIPPED = "skipped"


class Action(StrEnum):
    """What can be done to a job; each is a method of `FullText`."""

    START = "start"
    FINISH = "finish"
    FAIL = "fail"
    SKIP = "skip"
    RELEASE = "release"
    RETRY = "retry"


_S = JobStatus

#: The one table of legal moves: for each action, the statuses it may start
#: from and the status it leads to. Everything else is derived from it.
ACTIONS: Final[Mapping[Action, tuple[frozenset[JobStatus], JobStatus]]] = {
    Action.START: (frozenset({_S.READY}), _S.RUNNING),
    Action.FINISH: (frozenset({_S.RUNNING}), _S.FINISHED),
    Action.FAIL: (frozenset({_S.RUNNING}), _S.FAILED),
    # A ready job may be skipped without running (an item with no full text).
    Action.SKIP: (frozenset({_S.READY, _S.RUNNING}), _S.SKIPPED),
    Action.RELEASE: (frozenset({_S.RUNNING}), _S.READY),
    Action.RETRY: (frozenset({_S.FAILED, _S.SKIPPED}), _S.READY),
}

#: For each status, the statuses a job may move to from it.
TRANSITIONS: Final[Mapping[JobStatus, frozenset[JobStatus]]] = {
    status: frozenset(target for sources, target in ACTIONS.values() if status in sources)
    for status in JobStatus
}


def clean_error(error: object) -> str:
    """`error` as text fit to store: NUL bytes (which PostgreSQL's text
    cannot hold) and lone surrogates (which UTF-8 cannot encode) escaped,
    and cut to `MAX_ERROR_LENGTH` characters."""
    if _plain_text(error, MAX_ERROR_LENGTH):
        # Already fit to store: every save checks the error it carries.
        return error
    text = str(error).replace("\x00", "\\x00")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 1] + "\u2026"
    return text


def utc(moment: datetime | None = None) -> datetime:
    """Return `moment` (or the current time) as an aware datetime in UTC.

    Raises `InvalidInput` for a naive datetime (its zone would be a guess),
    for anything but a datetime, and for a moment outside `MIN_TIMESTAMP`
    to `MAX_TIMESTAMP`, which not every store can hold.
    """
    if moment is None:
        return datetime.now(UTC)
    if (
        moment.__class__ is datetime
        and moment.tzinfo is UTC
        and MIN_TIMESTAMP <= moment <= MAX_TIMESTAMP
    ):
        # Already what is asked for (as every timestamp read from a store
        # is): the common case, on the hot path, so it is cut short.
        return moment
    if not isinstance(moment, datetime):
        msg = f"expected a datetime, got {type(moment).__name__}"
        raise InvalidInput(msg)
    if moment.tzinfo is None or moment.utcoffset() is None:
        msg = f"datetime {moment.isoformat()} has no time zone"
        raise InvalidInput(msg)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = datetime.max.replace(tzinfo=UTC)  # past the end: refused below
    if not MIN_TIMESTAMP <= moment <= MAX_TIMESTAMP:
        msg = (
            f"datetime {moment.isoformat()} is out of range: "
            f"{MIN_TIMESTAMP.date()} to {MAX_TIMESTAMP.date()} (UTC)"
        )
        raise InvalidInput(msg)
    return moment


def _plain_text(value: object, max_length: int) -> TypeGuard[str]:
    """Whether `value` is a str of 1 to `max_length` ASCII characters with
    no NUL byte: text every store takes as it is, told in C calls only (the
    check every save makes of each job's text, on the hot path)."""
    return (
        value.__class__ is str
        and 0 < len(value) <= max_length
        and value.isascii()
        and "\x00" not in value
    )


def _check_text(value: object, what: str, max_length: int) -> str:
    if _plain_text(value, max_length):
        return value
    if not isinstance(value, str):
        msg = f"{what} must be a str, got {type(value).__name__}"
        raise InvalidInput(msg)
    if not value:
        msg = f"{what} must not be empty"
        raise InvalidInput(msg)
    if len(value) > max_length:
        msg = f"{what} is {len(value)} characters long; the limit is {max_length}"
        raise InvalidInput(msg)
    if "\x00" in value:
        msg = f"{what} contains a NUL byte"
        raise InvalidInput(msg)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        msg = f"{what} {value!r} is not valid Unicode (a lone surrogate): it cannot be UTF-8"
        raise InvalidInput(msg) from None
    # A str subclass (an enum member, say) as the plain str it equals: what
    # a database gives back, so that every adapter stores the same value.
    return str.__str__(value)


def check_item_id(item_id: object) -> str:
    """Return `item_id` (as a plain str) if it is a non-empty str of at most
    `MAX_ITEM_ID_LENGTH` characters with no NUL byte that encodes as UTF-8;
    raise `InvalidInput` otherwise."""
    return _check_text(item_id, "item id", MAX_ITEM_ID_LENGTH)


def check_destination(destination: object) -> str:
    """Return `destination` if it is a non-empty str of at most
    `MAX_DESTINATION_LENGTH` characters with no NUL byte that encodes as
    UTF-8; raise `InvalidInput` otherwise."""
    return _check_text(destination, "destination", MAX_DESTINATION_LENGTH)


def check_priority(priority: object) -> int:
    """Return `priority` (as a plain int) if it is an int, not a bool, from
    `MIN_PRIORITY` to `MAX_PRIORITY`; raise `InvalidInput` otherwise."""
    if (
        isinstance(priority, int)
        and not isinstance(priority, bool)
        and MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        # An int subclass (an IntEnum member) as the plain int it equals.
        return int(priority)
    msg = (
        f"priority must be a whole number from {MIN_PRIORITY:,} to {MAX_PRIORITY:,}, "
        f"not {priority!r}"
    )
    raise InvalidInput(msg)


@dataclasses.dataclass(slots=True)
class FullText:
    """A job: do the work of `destination` on the full text of `item_id`.

    Change it only through its methods, which follow `ACTIONS`; an illegal
    move raises `InvalidTransition` and leaves the job as it was. Timestamps
    are aware datetimes in UTC.

    The first six fields are the original's. A claim (`get_ready_job`,
    `claim_ready`) also sets `claim_token` and `lease_expires` and counts an
    `attempt`; a `retry` sets `attempts` back to 0, so a retried job has
    its whole budget of attempts again (as the original's retry, which
    deleted the row, gave it). Saving a job that leaves `running` (after
    `finish`, `fail`, `skip` or `release`) succeeds only with the token of
    the claim that is still current; the job is then stored without token
    or lease, while the caller's copy keeps its token. `finish`, `fail`,
    `skip` and `release` end the lease; `last_error` is the reason last
    recorded, by a `fail`, `skip` or `release` given an `error`, or by a
    rescue, and nothing clears it (a `retry` keeps it, so why the job
    failed stays readable). `not_before`, set by `release(not_before=)`,
    keeps a `ready` job from being claimed before that moment (a retry after
    a backoff); a claim or a `retry` clears it. `backoffs` counts the
    times the job was put back by `back_off` (its handler said the upstream
    wants it later) without the attempt being counted; a `retry` sets it
    back to 0.

    `priority` orders the ready jobs of a destination for claims: the
    highest first, then the oldest (from `MIN_PRIORITY` to `MAX_PRIORITY`;
    0 by default). Nothing in the job's life changes it: a claim, a release
    for a retry, a rescue and a `retry` keep it. `Repository.prioritize`
    changes it for ready jobs.

    `ready_at` is when the job last became ready to claim: when it was made
    (`new`), retried, or given back (`release`, and a store's rescue of an
    expired lease), or, for a job given back for later, the moment its
    `not_before` lets it be claimed. It stays through the job's run, so
    `started - ready_at` is how long the job waited for a worker (see
    `waited`), and on a ready job it is never before its `not_before`, so
    the oldest `ready_at` among a destination's ready jobs is its oldest due
    job's (the lag). `ready_moment` is the rule every move to ready follows,
    here and in the stores' own statements. None only for a job built by
    hand without one, or stored by code that did not record it.

    `version` is the stored job's write count as this copy last saw it: 0
    for a job never stored (`new`), then 1 on insert, and one more for
    every save, claim, rescue or retry, and for any other writer's update
    of the row (the Go original's included: a database trigger counts
    those). A heartbeat, which only moves the lease, leaves it alone. A
    save is a compare-and-swap on it: it is accepted only while the stored
    job is still at the copy's `version` (a copy with version 0 only
    inserts), and then sets the copy's `version` to the new one; otherwise
    it raises `StaleJob` and changes nothing.
    """

    id: uuid.UUID
    item_id: str
    destination: str
    started: datetime | None = None
    finished: datetime | None = None
    status: JobStatus = JobStatus.READY
    attempts: int = 0
    claim_token: uuid.UUID | None = None
    lease_expires: datetime | None = None
    last_error: str | None = None
    version: int = 0
    not_before: datetime | None = None
    backoffs: int = 0
    priority: int = 0
    ready_at: datetime | None = None

    @classmethod
    def new(
        cls, item_id: str, destination: str, *, priority: int = 0, now: datetime | None = None
    ) -> FullText:
        """A `ready` job with a fresh uuid4 and `priority`, ready from `now`
        (default: the current time). Raises `InvalidInput` for a bad item
        id, destination, priority or `now`."""
        return cls(
            id=uuid.uuid4(),
            item_id=check_item_id(item_id),
            destination=check_destination(destination),
            priority=check_priority(priority),
            ready_at=utc(now),
        )

    def copy(self) -> FullText:
        """A copy of the job, field for field: what `dataclasses.replace(job)`
        makes, for less work (a worker copies every job it handles; see
        docs/benchmarks.md, "Why the hot path is written as it is")."""
        return FullText(
            self.id,
            self.item_id,
            self.destination,
            self.started,
            self.finished,
            self.status,
            self.attempts,
            self.claim_token,
            self.lease_expires,
            self.last_error,
            self.version,
            self.not_before,
            self.backoffs,
            self.priority,
            self.ready_at,
        )

    def waited(self) -> timedelta | None:
        """How long the job waited for a worker: from `ready_at` to `started`
        (never below zero: clocks of different machines may disagree), or
        None while either is unknown (a job not started)."""
        if self.started is None or self.ready_at is None:
            return None
        return max(ZERO, self.started - self.ready_at)

    def can(self, action: Action) -> bool:
        """Whether `action` is legal from the job's current status."""
        sources, _ = ACTIONS[action]
        return self.status in sources

    def _move(self, action: Action) -> JobStatus:
        sources, target = ACTIONS[action]
        if self.status not in sources:
            msg = (
                f"cannot {action} job {self.id}: it is {self.status}, "
                f"and {action} needs {' or '.join(sorted(sources))}"
            )
            raise InvalidTransition(msg)
        return target

    def start(self, now: datetime | None = None) -> None:
        """ready to running; sets `started`."""
        target = self._move(Action.START)
        self.started, self.status, self.not_before = utc(now), target, None

    def attempt(self) -> None:
        """Count one more attempt (a claim's). Raises `InvalidTransition`,
        and counts nothing, for a job already at `MAX_ATTEMPTS`: a claim
        fails such a job instead (`ATTEMPTS_EXHAUSTED_ERROR`)."""
        if self.attempts >= MAX_ATTEMPTS:
            msg = f"job {self.id} has used all {MAX_ATTEMPTS} attempts a job may count"
            raise InvalidTransition(msg)
        self.attempts += 1

    def finish(self, now: datetime | None = None) -> None:
        """running to finished; sets `finished`."""
        target = self._move(Action.FINISH)
        self.finished, self.status, self.lease_expires = utc(now), target, None

    def fail(self, now: datetime | None = None, *, error: str | None = None) -> None:
        """running to failed; sets `finished`, and `last_error` to `error`
        if given (cut to `MAX_ERROR_LENGTH` characters, NUL bytes escaped)."""
        target = self._move(Action.FAIL)
        self.finished, self.status, self.lease_expires = utc(now), target, None
        if error is not None:
            self.last_error = clean_error(error)

    def skip(self, now: datetime | None = None, *, error: str | None = None) -> None:
        """ready or running to skipped; sets `finished`, and `last_error` to
        `error` if given (why there is nothing to do; cut and escaped as for
        `fail`)."""
        target = self._move(Action.SKIP)
        self.finished, self.status, self.lease_expires = utc(now), target, None
        if error is not None:
            self.last_error = clean_error(error)

    def release(
        self,
        now: datetime | None = None,
        *,
        not_before: datetime | None = None,
        error: str | None = None,
        count_attempt: bool = True,
    ) -> None:
        """running to ready: the worker gives the job back; clears `started`
        and sets `ready_at` (see `ready_moment`).

        With `not_before`, the job may not be claimed before that moment (a
        retry after a backoff); with `error`, `last_error` records why (cut
        and escaped as for `fail`). The attempt the claim counted stays
        counted, unless `count_attempt` is false: then it is given back
        (`attempts` one less, never below 0), for a job whose handler never
        ran or did not fail. A store's rescue of a job whose lease ran out is
        this move, with the store's clock and its reason.

        `now` is checked like the other methods' (a naive datetime raises
        `InvalidInput`), so every method takes the same clock; so is
        `not_before`.
        """
        target = self._move(Action.RELEASE)
        moment = utc(now)
        due = None if not_before is None else utc(not_before)
        self.started, self.status, self.lease_expires = None, target, None
        self.not_before, self.ready_at = due, ready_moment(moment, due)
        if error is not None:
            self.last_error = clean_error(error)
        if not count_attempt:
            self.attempts = max(self.attempts - 1, 0)

    def back_off(
        self, now: datetime | None = None, *, not_before: datetime, error: str | None = None
    ) -> None:
        """running to ready, as `release`, but the attempt the claim counted
        is given back (`attempts` one less, never below 0) and `backoffs`
        counts one more: the job is put back until `not_before` because
        the service its handler calls asked for time (`RetryAfter`), not
        because it failed. Raises `InvalidTransition`, and changes nothing,
        for a job at `MAX_BACKOFFS`; the worker bounds it far lower
        (`RetryPolicy.max_backoffs`)."""
        if self.backoffs >= MAX_BACKOFFS:
            msg = f"job {self.id} has backed off {MAX_BACKOFFS} times, the most a job may count"
            raise InvalidTransition(msg)
        self.release(now, not_before=not_before, error=error, count_attempt=False)
        self.backoffs += 1

    def retry(self, now: datetime | None = None) -> None:
        """failed or skipped to ready, with a fresh budget of attempts:
        clears `started`, `finished` and `not_before`, sets `attempts` and
        `backoffs` to 0 and `ready_at` to `now` (default: the current time);
        keeps `last_error`, the record of why it failed or was skipped.
        `Repository.retry` stores exactly this, at the repository's clock.
        """
        target = self._move(Action.RETRY)
        moment = utc(now)
        self.started, self.finished, self.status = None, None, target
        self.not_before, self.ready_at = None, moment
        self.attempts = self.backoffs = 0

    def apply(self, action: Action, now: datetime | None = None) -> None:
        """Do `action` by name; the same as calling its method."""
        getattr(self, action.value)(now)


#: No time at all: the least a wait or a lag can be.
ZERO: Final = timedelta(0)


def ready_moment(now: datetime, not_before: datetime | None) -> datetime:
    """When a job made ready at `now` may be claimed: `now`, or its
    `not_before` if that is later. The `ready_at` of every move to ready
    (`FullText.new`, `release`, `retry`, and the stores' rescues), so that a
    job given back for later does not count the wait it asked for as lag."""
    return now if not_before is None or not_before <= now else not_before


def lag_at(now: datetime, oldest_ready_at: datetime | None) -> timedelta | None:
    """How long the oldest due ready job has waited at `now`, given the
    earliest `ready_at` among its destination's ready jobs: None when
    there is none, or when even that one is not due yet (only jobs given
    back for later are ready, so none is due); never below zero."""
    if oldest_ready_at is None or oldest_ready_at > now:
        return None
    return now - oldest_ready_at


@dataclasses.dataclass(frozen=True, slots=True)
class DestinationStats:
    """How far one destination has got: jobs per status, how many eligible
    items have no job yet (the coverage figure), and its lag."""

    destination: str
    counts: Mapping[JobStatus, int]
    #: None when not counted (`stats(unqueued=False)`).
    unqueued: int | None
    #: How long its oldest due ready job has waited, at the store's clock
    #: when read (see `Upkeep.lag`); None when no job is due.
    lag: timedelta | None = None

    @property
    def jobs(self) -> int:
        """All jobs of the destination, whatever their status."""
        return sum(self.counts.values())

    @classmethod
    def of(
        cls,
        destination: str,
        counts: Mapping[str, int],
        unqueued: int | None,
        lag: timedelta | None = None,
    ) -> DestinationStats:
        """Stats with a count for every status (zero where `counts` has none)."""
        return cls(
            destination=destination,
            counts={status: counts.get(status.value, 0) for status in JobStatus},
            unqueued=unqueued,
            lag=lag,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class DestinationControls:
    """What an operator has set for one destination, which every worker of
    the fleet obeys: a pause, from `paused_at` until `paused_until` (None:
    until resumed), with its `pause_reason`; `max_running`, a cap on its
    jobs running at once (None: none); and `rate`, the job starts a second
    its workers keep to (None: none), at most `rate_burst` at once (None:
    a claim's worth, each worker's `batch_size`), unless a worker is given
    its own `rate_limit`. A destination nobody has steered has all of
    them None."""

    destination: str
    paused_at: datetime | None = None
    paused_until: datetime | None = None
    pause_reason: str | None = None
    max_running: int | None = None
    rate: float | None = None
    rate_burst: int | None = None

    def paused(self, now: datetime) -> bool:
        """Whether a pause is in force at `now`: no job of the destination
        is handed out then."""
        return self.paused_at is not None and (self.paused_until is None or now < self.paused_until)

    def outlasts(self, until: datetime | None, now: datetime) -> bool:
        """Whether a pause in force at `now` lasts until `until` or longer
        (`until` None: until resumed): `pause(at_least=True)` keeps it."""
        if not self.paused(now):
            return False
        return self.paused_until is None or (until is not None and self.paused_until >= until)


class Keep(Enum):
    """The type of `KEEP`."""

    KEEP = "keep"


#: A limit `Repository.limit` is not given: left as it is.
KEEP: Final = Keep.KEEP


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """What one `limit` sets, checked: for each of `max_running`, `rate`
    and `rate_burst` of `DestinationControls`, a new value (None: remove
    it) or `KEEP` (leave it as it is)."""

    max_running: int | Keep | None = KEEP
    rate: float | Keep | None = KEEP
    rate_burst: int | Keep | None = KEEP

    def applied_to(self, controls: DestinationControls) -> DestinationControls:
        """`controls` with these limits set."""
        changes = {
            name: value
            for name, value in (
                ("max_running", self.max_running),
                ("rate", self.rate),
                ("rate_burst", self.rate_burst),
            )
            if value is not KEEP
        }
        return dataclasses.replace(controls, **changes)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True, slots=True)
class Cancellation:
    """What one `cancel` did: the ids of the ready jobs it skipped, and of
    the running jobs whose workers it asked to stop (each is saved skipped
    by its worker once it hears; see `Repository.cancel`), both sorted."""

    skipped: list[uuid.UUID] = dataclasses.field(default_factory=list)
    requested: list[uuid.UUID] = dataclasses.field(default_factory=list)


#: The start of the `last_error` of a job put back at its handler's word
#: (`RetryAfter`): a type name, which an ordinary retry's error starts with,
#: holds no space, so the two cannot be confused.
BACKED_OFF_PREFIX: Final = "backed off: "

#: The start of a cancelled job's `last_error`, before the operator's reason.
CANCELLED_PREFIX: Final = "cancelled: "


def cancelled_error(reason: str | None) -> str:
    """The `last_error` of a job an operator cancelled for `reason` (None:
    none given): one text for every adapter and for the worker, cut as any
    `last_error` is."""
    return clean_error(CANCELLED_PREFIX + (reason or "by an operator"))


#: How long a claim lasts unless a heartbeat extends it.
DEFAULT_LEASE: Final = timedelta(minutes=5)

#: How often an idle producer sweeps every item (`Repository.enqueue_new`),
#: for items that became eligible after its watermark passed them.
DEFAULT_SWEEP_INTERVAL: Final = timedelta(hours=1)

#: The statuses `Repository.retry` may return to ready.
RETRYABLE_STATUSES: Final = ACTIONS[Action.RETRY][0]


def lease_expired_error(attempts: int) -> str:
    """The `last_error` of a job that rescue fails for good."""
    return f"lease expired after {attempts} attempt(s); max_attempts reached"


#: The `last_error` of a job that rescue returns to `ready`: its worker
#: stopped, hung or lost the store before it saved the job. A fixed text
#: (not the lease's time), so that every store writes the same words.
RESCUED_ERROR: Final = "rescued: its lease ran out before its worker saved it"


#: The `last_error` of a job whose holder in the transaction mode
#: (`hold_ready`) died before writing it, as `rescue_expired` records it
#: with the attempt counted (PostgreSQL).
HOLDER_DIED_ERROR: Final = "rescued: its holder died in the transaction mode before writing it"


#: The `last_error` of a job that rescue fails for good because its holders
#: in the transaction mode kept dying, with `{}` for its attempts (see
#: `holder_died_error`; the SQL adapter fills it in the database).
HOLDER_DIED_FAILED: Final = (
    "its holder died in the transaction mode; {} attempt(s), max_attempts reached"
)


def holder_died_error(attempts: int) -> str:
    """The `last_error` of a job that rescue fails for good because its
    holders in the transaction mode kept dying."""
    return HOLDER_DIED_FAILED.format(attempts)


#: The `last_error` of a job that a claim found at `MAX_ATTEMPTS` and failed
#: rather than hand out (another attempt could not be counted). A fixed
#: text, so that every store writes the same words.
ATTEMPTS_EXHAUSTED_ERROR: Final = (
    f"failed by a claim: it had used all {MAX_ATTEMPTS} attempts a job may count"
)


def stored_form(job: FullText) -> FullText:
    """The job as a store keeps it: only a `running` job holds a claim
    token and a lease."""
    if job.status is JobStatus.RUNNING:
        return job
    return dataclasses.replace(job, claim_token=None, lease_expires=None)


def _from_checks(name: str) -> object:
    """The check or bound `name` of `fulltext_jobs.checks`, imported when
    first asked for here; `AttributeError` for any other name. Only names
    this module does not define reach here, so a name of `__all__` that does
    is one that moved to the checks."""
    if name not in __all__:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module("fulltext_jobs.checks"), name)
    globals()[name] = value  # found once; later look-ups are plain
    return value


if not TYPE_CHECKING:
    # Hidden from type checkers, which would otherwise take any name of this
    # module to exist; they see the names through the imports at the top.
    __getattr__ = _from_checks


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
