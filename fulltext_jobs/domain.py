"""The domain: a full-text job, its statuses, and the one table of legal moves.

Standard library only. The clock is passed in (`now=`); nothing here reads it
unless the caller leaves `now` out.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, TypeGuard, cast

from fulltext_jobs.errors import InvalidInput, InvalidTransition

__all__ = [
    "ACTIONS",
    "DEFAULT_SWEEP_INTERVAL",
    "MAX_BATCH_SIZE",
    "MAX_CLAIM",
    "MAX_DESTINATION_LENGTH",
    "MAX_ERROR_LENGTH",
    "MAX_INT32",
    "MAX_ITEM_ID_LENGTH",
    "MAX_LEASE",
    "MAX_LISTED",
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "RESCUED_ERROR",
    "RETRYABLE_STATUSES",
    "TRANSITIONS",
    "Action",
    "DestinationStats",
    "FullText",
    "JobStatus",
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
    "check_progress",
    "check_retry_statuses",
    "check_statuses",
    "clean_error",
    "job_list",
    "lease_expired_error",
    "read_clock",
    "stored_form",
    "utc",
]

#: The largest value of a 32-bit signed integer column (`attempts`,
#: `version`): the bound of every count the stores compare with them.
MAX_INT32: Final = 2**31 - 1
#: The most jobs one `claim_ready` call may claim.
MAX_CLAIM: Final = 10_000
#: The most jobs one page of `list_jobs` may hold.
MAX_LISTED: Final = 10_000
#: The largest batch size (`enqueue_batch_size`, `add_items(batch_size=)`).
MAX_BATCH_SIZE: Final = 1_000_000
#: The longest lease a repository accepts.
MAX_LEASE: Final = timedelta(days=3650)
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


def check_job_id(job_id: object) -> uuid.UUID:
    """Return `job_id` as a UUID; accept a UUID or its string form.

    Raises `InvalidInput` for anything else.
    """
    if isinstance(job_id, uuid.UUID):
        return job_id
    if isinstance(job_id, str):
        try:
            return uuid.UUID(job_id)
        except ValueError:
            pass
    msg = f"job id {job_id!r} is not a UUID"
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
    a backoff); a claim or a `retry` clears it.

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

    @classmethod
    def new(cls, item_id: str, destination: str) -> FullText:
        """A `ready` job with a fresh uuid4. Raises `InvalidInput` for a bad
        item id or destination."""
        return cls(
            id=uuid.uuid4(),
            item_id=check_item_id(item_id),
            destination=check_destination(destination),
        )

    def copy(self) -> FullText:
        """A copy of the job, field for field: what `dataclasses.replace(job)`
        makes, at a third of its cost (a worker copies every job it
        handles)."""
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
        )

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
    ) -> None:
        """running to ready: the worker gives the job back; clears `started`.

        With `not_before`, the job may not be claimed before that moment (a
        retry after a backoff); with `error`, `last_error` records why (cut
        and escaped as for `fail`). The attempt the claim counted stays
        counted.

        `now` stamps nothing, but is checked like the other methods' (a naive
        datetime raises `InvalidInput`), so every method takes the same clock;
        so is `not_before`.
        """
        target = self._move(Action.RELEASE)
        utc(now)
        due = None if not_before is None else utc(not_before)
        self.started, self.status, self.lease_expires = None, target, None
        self.not_before = due
        if error is not None:
            self.last_error = clean_error(error)

    def retry(self, now: datetime | None = None) -> None:
        """failed or skipped to ready, with a fresh budget of attempts:
        clears `started`, `finished` and `not_before`, and sets `attempts`
        to 0; keeps `last_error`, the record of why it failed or was
        skipped. `Repository.retry` stores exactly this.

        `now` is checked as for `release`.
        """
        target = self._move(Action.RETRY)
        utc(now)
        self.started, self.finished, self.status = None, None, target
        self.not_before = None
        self.attempts = 0

    def apply(self, action: Action, now: datetime | None = None) -> None:
        """Do `action` by name; the same as calling its method."""
        getattr(self, action.value)(now)


@dataclasses.dataclass(frozen=True, slots=True)
class DestinationStats:
    """How far one destination has got: jobs per status, and how many
    eligible items have no job yet (the coverage figure)."""

    destination: str
    counts: Mapping[JobStatus, int]
    #: None when not counted (`stats(unqueued=False)`).
    unqueued: int | None

    @property
    def jobs(self) -> int:
        """All jobs of the destination, whatever their status."""
        return sum(self.counts.values())

    @classmethod
    def of(
        cls, destination: str, counts: Mapping[str, int], unqueued: int | None
    ) -> DestinationStats:
        """Stats with a count for every status (zero where `counts` has none)."""
        return cls(
            destination=destination,
            counts={status: counts.get(status.value, 0) for status in JobStatus},
            unqueued=unqueued,
        )


def check_flag(value: object, what: str) -> bool:
    """Return `value` if it is a bool; raise `InvalidInput`, naming `what`,
    otherwise (a truthy string or number is more likely a mistake)."""
    if not isinstance(value, bool):
        msg = f"{what} must be True or False, not {value!r}"
        raise InvalidInput(msg)
    return value


def as_real(value: object) -> float | None:
    """`value` as a float if it is a real number (an int or a float, not a
    bool), NaN and infinities included; None otherwise, and for a whole
    number too large for a float (which `float()` and `math` would refuse
    with `OverflowError`). The one way the checks of numbers read one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def check_count(n: object, what: str, maximum: int, minimum: int = 1) -> int:
    """Return `n` if it is an int (not a bool) from `minimum` to `maximum`;
    raise `InvalidInput`, naming `what`, otherwise."""
    if isinstance(n, bool) or not isinstance(n, int) or not minimum <= n <= maximum:
        if minimum == 1:
            msg = f"{what} must be a positive whole number, at most {maximum:,}, not {n!r}"
        else:
            msg = f"{what} must be a whole number from {minimum} to {maximum:,}, not {n!r}"
        raise InvalidInput(msg)
    return n


def check_batch_size(n: object) -> int:
    """Return `n` if it is a whole number from 1 to `MAX_BATCH_SIZE`; raise
    `InvalidInput` otherwise."""
    return check_count(n, "a batch size", MAX_BATCH_SIZE)


def check_claim_size(n: object) -> int:
    """Return `n`, how many jobs to claim at once, if it is a whole number
    from 1 to `MAX_CLAIM`; raise `InvalidInput` otherwise."""
    return check_count(n, "n", MAX_CLAIM)


def check_limit(limit: object) -> int | None:
    """Return `limit` if it is None or a whole number from 1 to `MAX_INT32`;
    raise `InvalidInput` otherwise."""
    return None if limit is None else check_count(limit, "limit", MAX_INT32)


def check_optional_destination(destination: object) -> str | None:
    """`destination` if it is None or a good destination (see
    `check_destination`)."""
    return None if destination is None else check_destination(destination)


def check_progress(progress: object) -> Callable[[int], object] | None:
    """`progress` if it is None or callable; raise `InvalidInput` otherwise."""
    if progress is not None and not callable(progress):
        msg = f"progress must be a function of one int, not {progress!r}"
        raise InvalidInput(msg)
    return progress


def check_item_ids(item_ids: object) -> list[str]:
    """`item_ids` as a list of good item ids (see `check_item_id`); raise
    `InvalidInput` if any is bad, or if `item_ids` is not an iterable of
    them (a str is refused: it is one id, not many)."""
    if isinstance(item_ids, (str, bytes)) or not isinstance(item_ids, Iterable):
        msg = f"expected an iterable of item ids, not {type(item_ids).__name__}"
        raise InvalidInput(msg)
    return [check_item_id(item_id) for item_id in item_ids]


#: How long a claim lasts unless a heartbeat extends it.
DEFAULT_LEASE: Final = timedelta(minutes=5)

#: How often an idle producer sweeps every item (`Repository.enqueue_new`),
#: for items that became eligible after its watermark passed them.
DEFAULT_SWEEP_INTERVAL: Final = timedelta(hours=1)

#: The statuses `Repository.retry` may return to ready.
RETRYABLE_STATUSES: Final = ACTIONS[Action.RETRY][0]


def _status_set(statuses: object) -> frozenset[JobStatus]:
    """`statuses` (an iterable, not a str) as a set of statuses; raise
    `InvalidInput` for anything else."""
    if isinstance(statuses, (str, bytes)) or not isinstance(statuses, Iterable):
        msg = f"statuses must be an iterable of statuses, not {statuses!r}"
        raise InvalidInput(msg)
    try:
        return frozenset(JobStatus(status) for status in statuses)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(str(exc)) from None


def check_retry_statuses(statuses: object) -> frozenset[JobStatus]:
    """`statuses` as a non-empty set of the statuses retry starts from
    (failed, skipped); raise `InvalidInput` otherwise."""
    chosen = _status_set(statuses)
    if not chosen or not chosen <= RETRYABLE_STATUSES:
        msg = f"retry starts from {' or '.join(sorted(RETRYABLE_STATUSES))}, not {sorted(chosen)}"
        raise InvalidInput(msg)
    return chosen


def check_statuses(statuses: object) -> frozenset[JobStatus] | None:
    """`statuses` as a non-empty set of statuses, or None if it is None;
    raise `InvalidInput` for anything else (a str is one status, not many:
    refused)."""
    if statuses is None:
        return None
    chosen = _status_set(statuses)
    if not chosen:
        msg = "statuses must name at least one status"
        raise InvalidInput(msg)
    return chosen


def check_lease(lease: object) -> timedelta:
    """`lease` if it is a positive timedelta of at most `MAX_LEASE`; raise
    `InvalidInput` otherwise."""
    if not isinstance(lease, timedelta) or not timedelta(0) < lease <= MAX_LEASE:
        msg = f"a lease must be a timedelta above 0, at most {MAX_LEASE.days} days, not {lease!r}"
        raise InvalidInput(msg)
    return lease


def check_max_attempts(max_attempts: object) -> int:
    """`max_attempts` if it is a whole number from 1 to `MAX_INT32`; raise
    `InvalidInput` otherwise."""
    return check_count(max_attempts, "max_attempts", MAX_INT32)


def check_clock(clock: object) -> Callable[[], datetime]:
    """`clock` if it is callable (`utc` if it is None); raise `InvalidInput`
    otherwise. What it returns is checked at each use (`read_clock`)."""
    if clock is None:
        return utc
    if not callable(clock):
        msg = f"clock must be a function that returns an aware datetime, not {clock!r}"
        raise InvalidInput(msg)
    return cast("Callable[[], datetime]", clock)


def read_clock(clock: Callable[[], datetime], lease: timedelta) -> datetime:
    """The time now by `clock`, in UTC, checked before anything is written:
    an aware datetime from `MIN_TIMESTAMP`, with `now + lease` at most
    `MAX_TIMESTAMP`. Raises `InvalidInput` (naming the clock) otherwise."""
    moment = clock()
    try:
        now = utc(moment) if isinstance(moment, datetime) else None
    except InvalidInput:
        now = None
    if now is None or now > MAX_TIMESTAMP - lease:
        msg = (
            f"the repository's clock returned {moment!r}: it must return an aware datetime "
            f"from {MIN_TIMESTAMP.date()} to {lease} before {MAX_TIMESTAMP.date()} (UTC)"
        )
        raise InvalidInput(msg)
    return now


def check_held(job: object) -> FullText:
    """`job` if it is a `FullText` whose id is a UUID and whose claim token
    is a UUID or None, as `heartbeat` needs; raise `InvalidInput` otherwise."""
    if not isinstance(job, FullText):
        msg = f"expected a FullText, got {type(job).__name__}"
        raise InvalidInput(msg)
    if not isinstance(job.id, uuid.UUID):
        msg = f"job id {job.id!r} is not a UUID"
        raise InvalidInput(msg)
    if job.claim_token is not None and not isinstance(job.claim_token, uuid.UUID):
        msg = f"job {job.id} has claim token {job.claim_token!r}, not a UUID"
        raise InvalidInput(msg)
    return job


def lease_expired_error(attempts: int) -> str:
    """The `last_error` of a job that rescue fails for good."""
    return f"lease expired after {attempts} attempt(s); max_attempts reached"


#: The `last_error` of a job that rescue returns to `ready`: its worker
#: stopped, hung or lost the store before it saved the job. A fixed text
#: (not the lease's time), so that every store writes the same words.
RESCUED_ERROR: Final = "rescued: its lease ran out before its worker saved it"


def stored_form(job: FullText) -> FullText:
    """The job as a store keeps it: only a `running` job holds a claim
    token and a lease."""
    if job.status is JobStatus.RUNNING:
        return job
    return dataclasses.replace(job, claim_token=None, lease_expires=None)


def job_list(jobs: object) -> list[FullText]:
    """`jobs` as a list, checked to be an iterable of jobs (not one job, nor
    a string); raise `InvalidInput` otherwise."""
    if isinstance(jobs, (FullText, str, bytes)) or not isinstance(jobs, Iterable):
        msg = f"expected an iterable of FullText, got {type(jobs).__name__}"
        raise InvalidInput(msg)
    listed = list(jobs)
    for job in listed:
        if not isinstance(job, FullText):
            msg = f"expected a FullText, got {type(job).__name__}"
            raise InvalidInput(msg)
    return listed


def check_jobs(jobs: object) -> list[FullText]:
    """Normalised copies of `jobs` (see `check_job`) fit to store together.

    Raises `InvalidInput` if any job is bad, or if two of them share an id or
    an (item_id, destination) pair.
    """
    if isinstance(jobs, FullText) or not isinstance(jobs, Iterable):
        msg = f"expected an iterable of FullText, got {type(jobs).__name__}"
        raise InvalidInput(msg)
    checked = [check_job(job) for job in jobs]
    if len({job.id for job in checked}) != len(checked):
        msg = "the same job id appears twice in one batch"
        raise InvalidInput(msg)
    if len({(job.item_id, job.destination) for job in checked}) != len(checked):
        msg = "two jobs of one batch share an item and destination"
        raise InvalidInput(msg)
    return checked


def check_job(job: object) -> FullText:
    """Return a normalised copy of `job` fit to store, or raise `InvalidInput`.

    The copy has a `JobStatus` status and UTC timestamps. An unknown status,
    a non-UUID id, a bad item id or destination, or a naive timestamp is
    rejected.
    """
    if not isinstance(job, FullText):
        msg = f"expected a FullText, got {type(job).__name__}"
        raise InvalidInput(msg)
    status = job.status
    if status.__class__ is not JobStatus:
        try:
            status = JobStatus(status)
        except (ValueError, TypeError):
            msg = f"job {job.id} has unknown status {job.status!r}"
            raise InvalidInput(msg) from None
    if not isinstance(job.id, uuid.UUID):
        msg = f"job id {job.id!r} is not a UUID"
        raise InvalidInput(msg)
    attempts = job.attempts
    if attempts.__class__ is not int or not 0 <= attempts <= MAX_INT32:
        # Only now the message: formatting the id costs more than the check.
        check_count(attempts, f"job {job.id}'s attempts", MAX_INT32, minimum=0)
    if job.last_error is not None and not isinstance(job.last_error, str):
        msg = f"job {job.id} has last_error {job.last_error!r}, not a str"
        raise InvalidInput(msg)
    if (
        isinstance(job.version, bool)
        or not isinstance(job.version, int)
        or not 0 <= job.version < MAX_INT32
    ):
        msg = f"job {job.id} has version {job.version!r}; expected 0 to {MAX_INT32 - 1}"
        raise InvalidInput(msg)
    if job.claim_token is not None and not isinstance(job.claim_token, uuid.UUID):
        msg = f"job {job.id} has claim token {job.claim_token!r}, not a UUID"
        raise InvalidInput(msg)
    # Positional: a batch checks a hundred jobs.
    return FullText(
        job.id,
        check_item_id(job.item_id),
        check_destination(job.destination),
        None if job.started is None else utc(job.started),
        None if job.finished is None else utc(job.finished),
        status,
        attempts,
        job.claim_token,
        None if job.lease_expires is None else utc(job.lease_expires),
        None if job.last_error is None else clean_error(job.last_error),
        job.version,
        None if job.not_before is None else utc(job.not_before),
    )
