"""The argument checks: each `check_*` function returns its argument, made
canonical, or raises `InvalidInput` naming what is wrong; with them, the
bounds they hold arguments to (`MAX_CLAIM`, `MAX_LEASE`, ...). The ports
check every argument with these before any adapter code runs (see
`fulltext_jobs.repository`).

Standard library and the domain only. The checks need the entity (`check_job`
makes a checked copy of a `FullText`), so this module imports the domain and
the domain never imports it as it loads. The checks the entity itself makes
stay in the domain, with the limits they enforce: `check_item_id`,
`check_destination` and `check_priority` (`FullText.new` calls them;
`MAX_ITEM_ID_LENGTH`, `MAX_DESTINATION_LENGTH`, `MIN_PRIORITY`,
`MAX_PRIORITY`), `utc` and `clean_error`, which its methods call
(`MIN_TIMESTAMP`, `MAX_TIMESTAMP`, `MAX_ERROR_LENGTH`), and `MAX_ATTEMPTS`,
which `FullText.attempt` holds (`check_job` and every adapter's claim hold
the same bound, imported from here). A lazy import in
`FullText.new` instead would cost a look-up for every job made. The two text
checks are imported here, so that every `check_*` function can be imported
from this module. Most names here can also be imported from the domain (its
`_CHECKS`), which imports this module at the first such look-up.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Final, cast

from fulltext_jobs.domain import (
    MAX_ATTEMPTS,
    MAX_BACKOFFS,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    RETRYABLE_STATUSES,
    FullText,
    JobStatus,
    cancelled_error,
    check_destination,
    check_item_id,
    check_priority,
    clean_error,
    utc,
)
from fulltext_jobs.errors import InvalidInput

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_BATCH_SIZE",
    "MAX_CLAIM",
    "MAX_INT32",
    "MAX_LEASE",
    "MAX_LISTED",
    "MAX_RUNNING",
    "as_real",
    "check_batch_size",
    "check_cancel",
    "check_claim_size",
    "check_claims",
    "check_clock",
    "check_count",
    "check_destination",
    "check_duration",
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
    "check_max_running",
    "check_optional_destination",
    "check_pause",
    "check_pause_ends_after",
    "check_priority",
    "check_progress",
    "check_retry_statuses",
    "check_statuses",
    "job_list",
    "read_clock",
]

#: The largest value of a 32-bit signed integer column (`version`, and
#: `attempts`, whose bound `MAX_ATTEMPTS` is in the domain with the other
#: limits the entity itself enforces): the bound of every count the stores
#: compare with them.
MAX_INT32: Final = 2**31 - 1
#: The most jobs one `claim_ready` call may claim.
MAX_CLAIM: Final = 10_000
#: The most jobs one page of `list_jobs` may hold.
MAX_LISTED: Final = 10_000
#: The largest batch size (`enqueue_batch_size`, `add_items(batch_size=)`).
MAX_BATCH_SIZE: Final = 1_000_000
#: The longest lease a repository accepts, and the longest span any other
#: timedelta argument may give (`check_duration`: retry delays, intervals).
MAX_LEASE: Final = timedelta(days=3650)


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


def check_duration(value: object, what: str, *, zero: bool = False) -> timedelta:
    """`value` if it is a timedelta above zero (or zero, if `zero`) and at
    most `MAX_LEASE`; raise `InvalidInput`, naming `what`, otherwise."""
    low = timedelta(0)
    if (
        not isinstance(value, timedelta)
        or value > MAX_LEASE
        or value < low
        or (value == low and not zero)
    ):
        bound = "0 or more" if zero else "above 0"
        msg = f"{what} must be a timedelta {bound}, at most {MAX_LEASE.days} days, not {value!r}"
        raise InvalidInput(msg)
    return value


def check_lease(lease: object) -> timedelta:
    """`lease` if it is a positive timedelta of at most `MAX_LEASE`; raise
    `InvalidInput` otherwise."""
    return check_duration(lease, "a lease")


def check_max_attempts(max_attempts: object) -> int:
    """`max_attempts` if it is a whole number from 1 to `MAX_ATTEMPTS`; raise
    `InvalidInput` otherwise."""
    return check_count(max_attempts, "max_attempts", MAX_ATTEMPTS)


def check_pause(until: object, reason: object) -> tuple[datetime | None, str | None]:
    """A pause's end and reason, made canonical: `until` None (until
    resumed) or an aware datetime in the stores' range, as UTC; `reason`
    None or a str, kept as `last_error` is (`clean_error`). Raises
    `InvalidInput` otherwise. Whether `until` is still ahead is the
    adapter's to judge, on its clock (`check_pause_ends_after`)."""
    if until is not None and not isinstance(until, datetime):
        msg = f"until must be an aware datetime or None, not {until!r}"
        raise InvalidInput(msg)
    if reason is not None and not isinstance(reason, str):
        msg = f"reason must be a str or None, not {reason!r}"
        raise InvalidInput(msg)
    return (
        None if until is None else utc(until),
        None if reason is None else clean_error(reason),
    )


#: The largest cap on a destination's running jobs (`Repository.limit`): the
#: stores' 32-bit column.
MAX_RUNNING: Final = 2**31 - 1


def check_max_running(max_running: object) -> int | None:
    """`max_running` if it is None (no cap) or a whole number from 1 to
    `MAX_RUNNING`; raise `InvalidInput` otherwise."""
    if max_running is None:
        return None
    return check_count(max_running, "max_running", MAX_RUNNING)


def check_cancel(
    item_ids: object, all_ready: object, reason: object
) -> tuple[list[str] | None, str]:
    """What a cancel chooses, made canonical: the item ids given (sorted,
    each once), or None for every ready job (`all_ready=True`), and the
    `last_error` the cancelled jobs get (`cancelled_error(reason)`).
    Raises `InvalidInput` unless exactly one of `item_ids` (an iterable of
    good item ids, not a str) and `all_ready=True` is given, for an
    `all_ready` that is not a bool, and for a `reason` that is neither a
    str nor None."""
    chosen = check_flag(all_ready, "all_ready")
    if (item_ids is None) == (not chosen):
        msg = "give either item_ids or all_ready=True, not both nor neither"
        raise InvalidInput(msg)
    if reason is not None and not isinstance(reason, str):
        msg = f"reason must be a str or None, not {reason!r}"
        raise InvalidInput(msg)
    only = None if item_ids is None else sorted(set(check_item_ids(item_ids)))
    return only, cancelled_error(reason)


def check_pause_ends_after(until: datetime | None, now: datetime) -> None:
    """Raise `InvalidInput` if a pause to `until` would be over already at
    `now` (a pause that binds nobody is a mistake worth hearing of)."""
    if until is not None and until <= now:
        msg = f"until ({until.isoformat()}) is not after now ({now.isoformat()})"
        raise InvalidInput(msg)


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


def check_claims(jobs: object) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """The (id, claim token) of each of `jobs` that has a claim token, in
    order, each pair once; raise `InvalidInput` if `jobs` is not an
    iterable of jobs or one of them is not fit for `check_held`."""
    claims: dict[tuple[uuid.UUID, uuid.UUID], None] = {}
    for job in job_list(jobs):
        check_held(job)
        if job.claim_token is not None:
            claims[job.id, job.claim_token] = None
    return list(claims)


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
    a non-UUID id, a bad item id, destination or priority, or a naive
    timestamp is rejected.
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
    if attempts.__class__ is not int or not 0 <= attempts <= MAX_ATTEMPTS:
        # Only now the message: formatting the id costs more than the check.
        check_count(attempts, f"job {job.id}'s attempts", MAX_ATTEMPTS, minimum=0)
    backoffs = job.backoffs
    if backoffs.__class__ is not int or not 0 <= backoffs <= MAX_BACKOFFS:
        check_count(backoffs, f"job {job.id}'s backoffs", MAX_BACKOFFS, minimum=0)
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
        backoffs,
        check_priority(job.priority),
        None if job.ready_at is None else utc(job.ready_at),
    )
