"""The ledger's invariants, as an audit can check them: what each check
means, its findings, its settings, and the rule for jobs held in memory.

A ledger written by many programs (this library's workers, the Go original,
an app's own SQL, people with psql) drifts in ways that no single call sees:
a job the original claimed stays `running` forever once its worker dies,
since `rescue_expired` leaves lease-less jobs alone. `Repository.audit`
reports such jobs per destination and check; it changes nothing.
`Repository.release_unleased` is the one repair of a job-level finding
(besides `rescue_expired`): it is explicit, guarded in its statement, and
counts an attempt. Everything else is for a person to judge.

This module imports only the standard library, the domain and its checks.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from fulltext_jobs.checks import check_count, check_duration, check_max_attempts
from fulltext_jobs.domain import DestinationControls, FullText, JobStatus
from fulltext_jobs.retry import DEFAULT_RETRY

__all__ = [
    "AUDIT_TERMINAL",
    "DEFAULT_CLOCK_TOLERANCE",
    "DEFAULT_EXAMPLES",
    "DEFAULT_RESCUE_AFTER",
    "MAX_EXAMPLES",
    "STUCK_CHECKS",
    "UNLEASED_ERROR",
    "AuditCheck",
    "AuditProblem",
    "AuditSettings",
    "audit_jobs",
    "check_duration",
    "paused_after",
    "sort_problems",
]


class AuditCheck(StrEnum):
    """The kinds of problem an audit reports, by their stable names (the
    `check` field of `fulltext-jobs audit --json`)."""

    #: `running` with no lease: claimed by the Go original or by hand; no
    #: rescue will ever return it.
    RUNNING_WITHOUT_LEASE = "running_without_lease"
    #: `running` with a lease that ran out more than `rescue_after` ago:
    #: nothing is rescuing this ledger.
    LEASE_EXPIRED_UNRESCUED = "lease_expired_unrescued"
    #: the job's item is gone from the item source, or no longer eligible.
    ITEM_MISSING = "item_missing"
    #: `finished` earlier than `started`.
    FINISHED_BEFORE_STARTED = "finished_before_started"
    #: `started` later than now plus the clock tolerance.
    STARTED_IN_FUTURE = "started_in_future"
    #: finished, failed or skipped with no `finished` (every way this
    #: library ends a job sets it).
    TERMINAL_WITHOUT_FINISHED = "terminal_without_finished"
    #: more `attempts` than the largest `max_attempts` in use. A retry sets
    #: a job's count back to 0, so a job retried and worked again is not
    #: one; a job retried by an older release of this library (which kept
    #: the count), one whose `max_attempts` was lowered, or one that
    #: `release_unleased` returned with its last attempt used (it counts
    #: the lost claim, and the next claim counts one more) is.
    ATTEMPTS_ABOVE_MAX = "attempts_above_max"
    #: `ready` and still holding a claim token.
    READY_WITH_CLAIM_TOKEN = "ready_with_claim_token"  # noqa: S105 - a check's name
    #: `started` after the pause in force on its destination began (by more
    #: than the clock tolerance): claimed by code that does not know of
    #: pauses (an older release, the Go original, an app's own SQL).
    CLAIMED_WHILE_PAUSED = "claimed_while_paused"
    #: `running` in a destination with more jobs running than its cap (the
    #: count is of all its running jobs): for a moment after the cap was
    #: lowered or set, or claimed by code that does not know of caps.
    OVER_CAP = "over_cap"


#: The checks the running-jobs index serves, cheap enough for every refresh
#: of the dashboard: running jobs that no rescue returns.
STUCK_CHECKS: Final = (AuditCheck.RUNNING_WITHOUT_LEASE, AuditCheck.LEASE_EXPIRED_UNRESCUED)

#: How many example job ids a finding carries, unless told otherwise.
DEFAULT_EXAMPLES: Final = 5
MAX_EXAMPLES: Final = 1000
#: How long after its lease ran out a running job counts as not rescued.
#: A worker rescues every `Worker(rescue_interval=)` seconds (60 by default); five minutes
#: past the lease leaves room for a rescuer that runs late.
DEFAULT_RESCUE_AFTER: Final = timedelta(minutes=5)
#: How far a writer's clock may run ahead of the auditor's.
DEFAULT_CLOCK_TOLERANCE: Final = timedelta(minutes=5)
#: The statuses whose jobs this library always gives a `finished`.
AUDIT_TERMINAL: Final = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.SKIPPED})


@dataclasses.dataclass(frozen=True, slots=True)
class AuditProblem:
    """One kind of problem in one destination: how many jobs have it, a few
    of their ids (smallest first), and, for `running_without_lease`, the
    oldest `started` among them (None for other checks, or if none has one).
    """

    destination: str
    check: AuditCheck
    count: int
    examples: tuple[uuid.UUID, ...]
    oldest_started: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AuditSettings:
    """What an audit compares against, checked (see `Repository.audit`)."""

    rescue_after: timedelta = DEFAULT_RESCUE_AFTER
    clock_tolerance: timedelta = DEFAULT_CLOCK_TOLERANCE
    max_attempts: int = DEFAULT_RETRY.max_attempts
    examples: int = DEFAULT_EXAMPLES

    @classmethod
    def checked(
        cls,
        *,
        rescue_after: object,
        clock_tolerance: object,
        max_attempts: object,
        examples: object,
    ) -> AuditSettings:
        """The settings, or `InvalidInput` for any that is out of range."""
        return cls(
            rescue_after=check_duration(rescue_after, "rescue_after", zero=True),
            clock_tolerance=check_duration(clock_tolerance, "clock_tolerance", zero=True),
            max_attempts=check_max_attempts(max_attempts),
            examples=check_count(examples, "examples", MAX_EXAMPLES),
        )


#: The `last_error` of a job `release_unleased` returned to ready.
UNLEASED_ERROR: Final = "released by audit: it was running without a lease"


def _problems(job: FullText, settings: AuditSettings, now: datetime) -> list[AuditCheck]:
    """The checks `job` fails, item eligibility aside."""
    found = []
    running = job.status is JobStatus.RUNNING
    if running and job.lease_expires is None:
        found.append(AuditCheck.RUNNING_WITHOUT_LEASE)
    if (
        running
        and job.lease_expires is not None
        and job.lease_expires < now - settings.rescue_after
    ):
        found.append(AuditCheck.LEASE_EXPIRED_UNRESCUED)
    if job.started is not None and job.finished is not None and job.finished < job.started:
        found.append(AuditCheck.FINISHED_BEFORE_STARTED)
    if job.started is not None and job.started > now + settings.clock_tolerance:
        found.append(AuditCheck.STARTED_IN_FUTURE)
    if job.status in AUDIT_TERMINAL and job.finished is None:
        found.append(AuditCheck.TERMINAL_WITHOUT_FINISHED)
    if job.attempts > settings.max_attempts:
        found.append(AuditCheck.ATTEMPTS_ABOVE_MAX)
    if job.status is JobStatus.READY and job.claim_token is not None:
        found.append(AuditCheck.READY_WITH_CLAIM_TOKEN)
    return found


def paused_after(
    controls: Iterable[DestinationControls], settings: AuditSettings, now: datetime
) -> dict[str, datetime]:
    """Per destination paused at `now`, the moment after which a job's
    `started` is `CLAIMED_WHILE_PAUSED`: when its pause began, plus the
    clock tolerance (a claim that read its clock just before the pause
    committed, on a clock a little ahead, is no finding)."""
    return {
        found.destination: found.paused_at + settings.clock_tolerance
        for found in controls
        if found.paused_at is not None and found.paused(now)
    }


def audit_jobs(  # noqa: PLR0913 - what the rules read
    jobs: Iterable[FullText],
    eligible: frozenset[str] | set[str],
    settings: AuditSettings,
    now: datetime,
    destination: str | None,
    *,
    controls: Iterable[DestinationControls] = (),
) -> list[AuditProblem]:
    """The problems of `jobs` (of `destination`, or of all), sorted by
    destination then check, as every adapter reports them; `controls`:
    what is set per destination (for `CLAIMED_WHILE_PAUSED`)."""
    found: dict[tuple[str, AuditCheck], list[FullText]] = {}
    controls = list(controls)
    pauses = paused_after(controls, settings, now)
    caps = {one.destination: one.max_running for one in controls if one.max_running is not None}
    running: dict[str, list[FullText]] = {}
    for job in jobs:
        if destination not in (None, job.destination):
            continue
        checks = _problems(job, settings, now)
        if job.item_id not in eligible:
            checks.append(AuditCheck.ITEM_MISSING)
        after = pauses.get(job.destination)
        if after is not None and job.started is not None and job.started > after:
            checks.append(AuditCheck.CLAIMED_WHILE_PAUSED)
        if job.status is JobStatus.RUNNING and job.destination in caps:
            running.setdefault(job.destination, []).append(job)
        for check in checks:
            found.setdefault((job.destination, check), []).append(job)
    for name, busy in running.items():
        if len(busy) > caps[name]:
            found[name, AuditCheck.OVER_CAP] = busy
    problems = []
    for (name, check), bad in found.items():
        started = [job.started for job in bad if job.started is not None]
        problems.append(
            AuditProblem(
                destination=name,
                check=check,
                count=len(bad),
                examples=tuple(sorted(job.id for job in bad)[: settings.examples]),
                oldest_started=(
                    min(started) if check is AuditCheck.RUNNING_WITHOUT_LEASE and started else None
                ),
            )
        )
    return sort_problems(problems)


def sort_problems(problems: Iterable[AuditProblem]) -> list[AuditProblem]:
    """`problems` in report order: by destination, then check."""
    order = list(AuditCheck)
    return sorted(problems, key=lambda p: (p.destination, order.index(p.check)))
