"""The port's operations for operators: looking at the ledger (what exists,
counts, pages of jobs, the audit, the queue's health), repairing it
(rescues, retries, releasing the Go original's abandoned claims), and
steering the fleet (pausing and resuming a destination, capping its
running jobs, cancelling jobs, changing priorities, declaring which
destinations follow which).

`Upkeep` is a part of `Repository` (which inherits it), kept apart from the
workers' operations (claims, saves, heartbeats) because an operator's
commands and a worker's loop change for different reasons. The checks of
each operation are in `fulltext_jobs.port`, as for every other.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from fulltext_jobs.audit import (
    DEFAULT_CLOCK_TOLERANCE,
    DEFAULT_EXAMPLES,
    DEFAULT_RESCUE_AFTER,
    AuditProblem,
    AuditSettings,
)
from fulltext_jobs.domain import (
    KEEP,
    Cancellation,
    DestinationControls,
    DestinationStats,
    FullText,
    JobStatus,
    Keep,
    Limits,
)
from fulltext_jobs.health import QueueHealth, not_reported
from fulltext_jobs.pipeline import DEFAULT_ON_STATUSES, Dependency
from fulltext_jobs.port import (
    audit_args,
    cancel_args,
    cannot_cancel,
    cannot_depend,
    cannot_prioritize,
    cannot_steer,
    controls_args,
    count_unqueued_args,
    depend_args,
    dependencies_args,
    has_destination_args,
    lag_args,
    limit_args,
    list_jobs_args,
    pause_args,
    prioritize_args,
    queue_health_args,
    release_unleased_args,
    renamed_keyword,
    rescue_expired_jobs_args,
    resume_args,
    retry_args,
    stats_args,
    undepend_args,
)
from fulltext_jobs.retry import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY

__all__ = ["Upkeep"]


class Upkeep(abc.ABC):
    """The operators' part of the port (see the module docstring)."""

    # --- looking at the ledger ------------------------------------------

    def has_destination(self, destination: str) -> bool:
        """Whether `destination` has any job: the check that a destination
        exists, without counting anything. On the SQL stores a destination
        with ready or running jobs costs an index probe; one whose jobs are
        all finished, failed or skipped, a scan up to its first job; one
        with no job at all (a typo), a scan of every job.

        Raises `InvalidInput` for a bad destination.
        """
        return self._has_destination(has_destination_args(destination))

    def count_unqueued(self, destination: str) -> int:
        """How many eligible items have no job for `destination`.

        It reads every eligible item and probes the jobs for each: linear
        in the items (seconds at ten million; see docs/scaling.md).
        Raises `InvalidInput` for a bad destination.
        """
        return self._count_unqueued(count_unqueued_args(destination))

    def stats(
        self, destination: str | None = None, *, unqueued: bool = True
    ) -> list[DestinationStats]:
        """Jobs per status, unqueued items and the lag (see `lag`), for
        `destination` or, if None, for every destination that has jobs,
        sorted by name.

        The counts by status read the destination's jobs (every job, for
        all destinations); the unqueued figure reads every eligible item as
        well (`count_unqueued`), which is the larger cost on a big ledger.
        With `unqueued=False` it is not counted, and each `unqueued` is
        None. Raises `InvalidInput` for a bad destination or an `unqueued`
        that is not a bool.
        """
        return self._stats(*stats_args(destination, unqueued))

    def lag(self, destination: str) -> timedelta | None:
        """How long the oldest due `ready` job of `destination` has waited
        to be claimed, at the repository's clock: its clock's now less that
        job's `ready_at` (see `FullText.ready_at`: a job given back for
        later waits from its `not_before`), never below zero; None when no
        job of `destination` is due (or the due ones' ready times are
        unknown: stored by code that did not record them).

        On the SQL stores one probe of an index of the ready jobs by
        `ready_at`, whatever the ledger's size: cheap enough to read on
        every scrape. `stats` gives it for every destination at once.
        Raises `InvalidInput` for a bad destination.
        """
        return self._lag(lag_args(destination))

    def list_jobs(
        self,
        destination: str,
        *,
        statuses: Iterable[JobStatus | str] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[FullText]:
        """A page of `destination`'s jobs (those in `statuses`, if given), in
        item id order: at most `limit`, and only those whose item id is
        above `after`. Pass the last job's `item_id` as `after` for the next
        page (keyset pages: stable while jobs change, whatever the ledger's
        size); an empty list is the end.

        Raises `InvalidInput` for a bad destination or item id, for
        `statuses` that is empty, one str, or names an unknown status, and
        for a `limit` that is not a whole number from 1 to 10,000.
        """
        return self._list_jobs(*list_jobs_args(destination, statuses, limit, after))

    @renamed_keyword("rescue_interval", "rescue_after")
    def audit(
        self,
        destination: str | None = None,
        *,
        rescue_after: timedelta = DEFAULT_RESCUE_AFTER,
        clock_tolerance: timedelta = DEFAULT_CLOCK_TOLERANCE,
        max_attempts: int = DEFAULT_RETRY.max_attempts,
        examples: int = DEFAULT_EXAMPLES,
    ) -> list[AuditProblem]:
        """Check the jobs (of `destination`, or of all) against the ledger's
        invariants and return what is wrong, one `AuditProblem` per
        destination and `AuditCheck` found, sorted by destination then
        check; an empty list when the ledger is clean. Changes nothing.

        `rescue_after`: how long after its lease ran out a running job
        counts as unrescued; `clock_tolerance`: how far in the future a
        `started` may be; `max_attempts`: the largest in use (more attempts
        are reported); `examples`: how many job ids a finding carries.
        Raises `InvalidInput` for a bad destination, a duration that is
        not a timedelta from 0 to 3,650 days, a `max_attempts` or
        `examples` out of range (1 to 2**31 - 1, 1 to 1,000), or a clock
        reading that is not a time.

        Deprecated: `rescue_interval=` is the old name of `rescue_after=`
        (a worker's `rescue_interval` is how often it rescues, in seconds).
        It still works, with a `DeprecationWarning`; giving both raises
        `InvalidInput`.
        """
        return self._audit(
            *audit_args(destination, rescue_after, clock_tolerance, max_attempts, examples)
        )

    def queue_health(self, destination: str | None = None) -> QueueHealth:
        """Read what slows or stalls the queue without any job being wrong
        (see `fulltext_jobs.health`): on PostgreSQL, what holds vacuum back
        (open and prepared transactions, replication slots, standbys'
        feedback) and the jobs table's live and dead rows with its last
        (auto)vacuum and (auto)analyze; everywhere, per destination (of
        `destination`, or of all), the ready jobs waiting for a retry and
        how many of them come before the first due one. What does not apply
        to the store is None, and `notes` says why. Changes nothing; judge
        it with `QueueHealth.warnings`.

        The base class reports nothing (`horizon`, `table` None, no
        destinations). Raises `InvalidInput` for a bad destination, and
        `StoreError` if the store cannot be read.
        """
        return self._queue_health(queue_health_args(destination))

    # --- repairing it ---------------------------------------------------

    def rescue_expired(
        self, destination: str | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> int:
        """Give back the `running` jobs whose lease has run out (of
        `destination`, or of all): each returns to `ready`, saying why in
        `last_error` ("rescued: its lease ran out before its worker saved
        it", `fulltext_jobs.domain.RESCUED_ERROR`), or, once it has had
        `max_attempts` attempts (by default the retry policy's, 5), goes to
        `failed` with that reason in
        `last_error` (`lease_expired_error`). Either way its attempt stays
        counted. Their claims end, so their workers' late saves raise
        `LostClaim`. On PostgreSQL it also counts an attempt for each
        holder in the transaction mode (`hold_ready`) that died with its
        jobs held (`HOLDER_DIED_ERROR`, or failed with
        `holder_died_error` at `max_attempts`): those jobs are ready again
        already, and are counted among those rescued. Returns how many
        jobs were rescued.

        A job is rescued only if, at that moment, it is still running with an
        expired lease: a job finished meanwhile is never touched. Jobs
        without a lease (claimed by the original Go code) are left alone.
        Raises `InvalidInput` for a bad destination, a `max_attempts` that is
        not a whole number from 1 to 2**31 - 1, or a clock reading that is
        not a time to write.
        """
        return len(self.rescue_expired_jobs(destination, max_attempts=max_attempts))

    def rescue_expired_jobs(
        self, destination: str | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> list[uuid.UUID]:
        """As `rescue_expired`, but return the ids of the jobs rescued, in
        order: for an operator's record of what a repair changed."""
        return sorted(self._rescue_expired(*rescue_expired_jobs_args(destination, max_attempts)))

    def retry(
        self,
        destination: str,
        *,
        statuses: Iterable[JobStatus | str] = (JobStatus.FAILED, JobStatus.SKIPPED),
        item_ids: Iterable[str] | None = None,
    ) -> int:
        """Return the `destination`'s jobs in `statuses` (failed, skipped or
        both), or only those of `item_ids`, to `ready`, as `FullText.retry`
        does: `started`, `finished` and `not_before` cleared, `attempts`
        set to 0 (a fresh budget: a worker gives each its retries with
        backoff again), `last_error` kept (why it failed stays readable)
        and the place in the queue kept; each `version` moves on. Returns
        how many.

        This replaces the original's retry, which deleted the rows and lost
        their history (a row it queued again started from no attempts, as
        these do). Raises `InvalidInput` for a bad destination or item
        id, for `item_ids` given as one str, or for a status other than
        failed and skipped.
        """
        return self._retry(*retry_args(destination, statuses, item_ids))

    def release_unleased(
        self, older_than: timedelta, destination: str | None = None
    ) -> list[uuid.UUID]:
        """Return to `ready` the `running` jobs (of `destination`, or of
        all) that have no lease and a `started` more than `older_than` ago
        (as the Go original's claim leaves a job whose worker died): each
        counts an attempt, gets the reason in `last_error`, and moves its
        `version` on. Returns their ids.

        The condition is judged in the statement that writes, on each job
        as it is then: a job finished, released or given a lease meanwhile
        is left alone, and so is one with no `started` (its age is
        unknown). Raises `InvalidInput` for a bad destination or an
        `older_than` that is not a timedelta above 0, at most 3,650 days.
        """
        return self._release_unleased(*release_unleased_args(older_than, destination))

    # --- steering the fleet ----------------------------------------------

    def controls(self, destination: str) -> DestinationControls:
        """What is set for `destination` (see `DestinationControls`): all
        None if nothing is. Changes nothing. Raises `InvalidInput` for a bad
        destination."""
        return self._controls(controls_args(destination))

    def list_controls(self) -> list[DestinationControls]:
        """What is set for every destination that has anything set (a pause
        in force or over), by destination. Changes nothing."""
        return self._list_controls()

    def limit(
        self,
        destination: str,
        *,
        max_running: int | Keep | None = KEEP,
        rate: float | Keep | None = KEEP,
        burst: int | Keep | None = KEEP,
    ) -> DestinationControls:
        """Set `destination`'s limits across the fleet, each of those given
        (None removes it; one not given is left as it is); return its
        controls.

        `rate`: at most this many job starts a second, with at most `burst`
        at once (None: a claim's worth, each worker's `batch_size`), kept
        by every `Worker` of the destination that is not given its own
        `rate_limit` (which overrides it): each reads it within a second
        of the change and takes start tokens from the destination's bucket
        (`take_rate_tokens`). Claims outside a `Worker` do not read it.

        `max_running`: cap the jobs running at once. Every
        claim of this library (`get_ready_job`, `claim_ready`, `hold_ready`,
        a `Worker`) then hands out at most the cap less the jobs running,
        counted in the database under a lock of the destination's row, so
        no interleaving of claimers on any machine takes more; the jobs a
        transaction-mode hold has in hand count as running (there, holds of
        a capped destination take turns). A cap lowered below the jobs
        running stops new starts until enough have ended; jobs running are
        not stopped. Claims of code older than this release do not know of
        caps (nor do the Go original's), and a claim that began before the
        cap was set may still take its jobs: a cap set on a busy
        destination binds from the next claims on. A capped claim in a
        caller's session (`SqlAlchemyRepository.in_session`) keeps the
        destination's row locked until the caller's transaction ends,
        holding back its other capped claims: commit promptly.

        Raises `InvalidInput`, and sets nothing, for a bad destination, no
        limit given, a `max_running` that is not None or a whole number
        from 1 to 2**31 - 1, a `rate` that is not None or a number from one
        a week to 100,000 a second, or a `burst` that is not None or a
        whole number from 1 to 10,000."""
        return self._limit(*limit_args(destination, max_running, rate, burst))

    def pause(
        self,
        destination: str,
        *,
        until: datetime | None = None,
        reason: str | None = None,
        at_least: bool = False,
    ) -> DestinationControls:
        """Pause `destination` until `until` (None: until `resume`), saying
        why in `reason`; return its controls. While the pause is in force
        no claim of this library (`get_ready_job`, `claim_ready`,
        `hold_ready`, a `Worker`) hands out a job of the destination, on any
        machine: each claim reads the pause in the statement that claims,
        so no job is handed out by a claim that begins after the pause is
        committed. Jobs already running finish and are saved as usual. A
        worker waits while the destination is paused, and claims again
        when the pause ends (at `until`, or on `resume`: at once on
        PostgreSQL, which announces it, at the next poll elsewhere).
        Pausing a paused destination sets its end and reason anew and keeps
        when it began; with `at_least=True`, a pause in force that lasts as
        long or longer (until `until` or later, or until resumed) is kept
        as it is, so a pause that only needs "at least this long" (a
        handler's `RetryAfter(pause=True)`) never shortens an operator's.
        Workers of code older than this release (and the Go original's) do
        not know of pauses, and keep claiming.

        Raises `InvalidInput` for a bad destination, an `until` that is not
        an aware datetime in range or is not after the repository clock's
        now, or a `reason` that is not a str (it is kept as a `last_error`
        is, cut to `MAX_ERROR_LENGTH` characters).
        """
        destination, until, reason, at_least = pause_args(
            destination, until, reason, at_least=at_least
        )
        return self._pause(destination, until, reason, at_least=at_least)

    def resume(self, destination: str) -> DestinationControls:
        """End `destination`'s pause, if any (its workers claim again at
        once on PostgreSQL, at their next poll elsewhere); return its
        controls. Raises `InvalidInput` for a bad destination."""
        return self._resume(resume_args(destination))

    def cancel(
        self,
        destination: str,
        *,
        item_ids: Iterable[str] | None = None,
        all_ready: bool = False,
        reason: str | None = None,
    ) -> Cancellation:
        """Cancel jobs of `destination`: those of `item_ids`, or with
        `all_ready=True` every ready job. Each cancelled job ends `skipped`
        with `last_error` "cancelled: " and `reason` ("cancelled: by an
        operator" if None; cut as any `last_error` is), and is not retried
        by a worker. Returns what was done (`Cancellation`).

        A ready job is skipped at once: its `finished` set, its `version`
        moved on. The condition (still `ready`) is judged in the statement
        that writes, on each job as it then is, so a job claimed a moment
        before is not skipped but, if among `item_ids`, asked to stop as a
        running one. A job in a transaction-mode batch (`hold_ready`) is
        waited for: the cancel applies to it when its batch has committed,
        if the batch left it `ready`.

        A running job of `item_ids` (under a claim with a lease) is asked to
        stop: the request is recorded in the store for that claim, and the
        `Worker` holding the job hears it within a second on PostgreSQL
        (which notifies), at its job's next heartbeat elsewhere; it then
        cancels an async handler's task, tells a sync handler through
        `fulltext_jobs.cancel_requested()`, and saves the job `skipped` with
        the reason under its claim, whatever the handler then returned or
        raised. A job whose handler had already ended keeps its outcome, and
        so does one whose claim ends before its worker hears (it finished,
        failed, or went back to `ready` for a retry: cancel it again). A job
        held by code that does not read requests (other workers, the Go
        original) is not stopped.

        Item ids with no job, or whose job is finished, failed or skipped,
        are passed over. Items are written in batches, each in a
        transaction of its own: after an error, the batches before it
        stand, and calling again does the rest.

        Raises `InvalidInput` for a bad destination or item id, for
        `item_ids` given as one str, unless exactly one of `item_ids` and
        `all_ready=True` is given, and for a `reason` that is not a str;
        `NotSupported` if the adapter cannot cancel.
        """
        return self._cancel(*cancel_args(destination, item_ids, all_ready, reason))

    def prioritize(self, destination: str, *, item_ids: Iterable[str], priority: int) -> int:
        """Give the ready jobs of `destination` for `item_ids` the priority
        `priority` (claims take the highest first, then the oldest; see
        `FullText.priority`); return how many were changed. Each changed
        job's `version` moves on; its `not_before` (a delay) and its place
        among the jobs of its new priority (its enqueue order) stay.

        Only `ready` jobs change: the condition is judged in the statement
        that writes, on each job as it then is, so a job claimed a moment
        before keeps its priority (and a retry of it later keeps that one).
        Item ids with no job, or whose job is not ready, are passed over.
        Items are written in batches, each in a transaction of its own:
        after an error, the batches before it stand, and calling again does
        the rest. A job held in a transaction-mode batch (`hold_ready`) is
        waited for. Workers on other processes see a raised priority at
        their next look back at the queue's start (about a second; see
        docs/scaling.md, "Claims while vacuum is held back").

        Raises `InvalidInput` for a bad destination, item id or priority,
        or for `item_ids` given as one str, with nothing changed;
        `NotSupported` if the adapter cannot change priorities.
        """
        return self._prioritize(*prioritize_args(destination, item_ids, priority))

    def depend(
        self,
        destination: str,
        *,
        on: str | Iterable[str],
        statuses: Iterable[JobStatus | str] = DEFAULT_ON_STATUSES,
    ) -> list[Dependency]:
        """Declare that `destination` follows each destination of `on`: an
        item gets a `destination` job only once its job of every upstream
        has one of `statuses` (default: finished), besides the item
        source's own eligibility. Return the destination's dependencies.

        Stored in the ledger, so every producer of the fleet agrees. A
        dependency on an upstream already declared gets the new statuses;
        the destination's other upstreams stay. From the commit on, an
        upstream job that reaches a named status records its item for the
        destination in the same transaction (a trigger of the database, so
        the Go original's writes count too), and the destination's producer
        (`enqueue_new`, a `Worker` with `produce=True`) queues it with a
        probe of the item, not a scan of the items. Every way of making
        jobs (`enqueue_unqueued`, `create_job_for_unqueued`, `enqueue_new`'s
        sweep) passes over items whose upstreams are not done: jobs made
        before the declaration stay as they are, and the ones for items
        already done upstream come from `enqueue_unqueued` (the backlog).

        Raises `InvalidInput`, and changes nothing, for a bad destination
        or upstream, none, the destination itself, a status that is not
        finished, failed or skipped, or a dependency that would make a
        cycle (the message shows it); `NotSupported` if the adapter keeps
        no dependencies."""
        return self._depend(*depend_args(destination, on, statuses))

    def undepend(
        self, destination: str, *, on: str | Iterable[str] | None = None
    ) -> list[Dependency]:
        """Drop `destination`'s dependencies on `on` (None: all of them);
        return those left. Its items no longer wait for those upstreams:
        the items those upstreams' ends recorded are forgotten, and the
        destination's producer sweeps at its next call (`enqueue_new`), so
        the items its watermark passed while they waited get their jobs
        then. Upstreams it does not follow are passed over. Raises
        `InvalidInput` for a bad name, with nothing changed; `NotSupported`
        as `depend`."""
        return self._undepend(*undepend_args(destination, on))

    def dependencies(self, destination: str | None = None) -> list[Dependency]:
        """The dependencies declared (of `destination` only, if given),
        sorted. Changes nothing; `NotSupported` as `depend`."""
        return self._dependencies(dependencies_args(destination))

    # --- what each adapter implements, given checked arguments ------------

    @abc.abstractmethod
    def _list_jobs(
        self,
        destination: str,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: str | None,
    ) -> list[FullText]:
        """As `list_jobs`, with the statuses, if any, as a set."""

    def _queue_health(self, destination: str | None) -> QueueHealth:  # noqa: ARG002 - for adapters
        """As `queue_health`; the base class reports nothing."""
        return not_reported(type(self).__name__)

    @abc.abstractmethod
    def _audit(self, destination: str | None, settings: AuditSettings) -> list[AuditProblem]:
        """As `audit`, with the settings checked."""

    @abc.abstractmethod
    def _has_destination(self, destination: str) -> bool:
        """As `has_destination`."""

    @abc.abstractmethod
    def _count_unqueued(self, destination: str) -> int:
        """As `count_unqueued`."""

    @abc.abstractmethod
    def _lag(self, destination: str) -> timedelta | None:
        """As `lag`, on a checked destination."""

    @abc.abstractmethod
    def _stats(self, destination: str | None, unqueued: bool) -> list[DestinationStats]:  # noqa: FBT001 - checked by the port
        """As `stats`."""

    @abc.abstractmethod
    def _rescue_expired(self, destination: str | None, max_attempts: int) -> list[uuid.UUID]:
        """As `rescue_expired_jobs`, in any order."""

    @abc.abstractmethod
    def _retry(
        self, destination: str, statuses: frozenset[JobStatus], item_ids: frozenset[str] | None
    ) -> int:
        """As `retry`, with the statuses as a set and the item ids, if any, as one."""

    @abc.abstractmethod
    def _release_unleased(self, older_than: timedelta, destination: str | None) -> list[uuid.UUID]:
        """As `release_unleased`."""

    # An adapter that cannot keep controls inherits these: nothing is set
    # (so a `Worker` runs on it unchanged), and pausing says it cannot.

    def _controls(self, destination: str) -> DestinationControls:
        """As `controls`; the base class keeps none."""
        return DestinationControls(destination)

    def _list_controls(self) -> list[DestinationControls]:
        """As `list_controls`, sorted by destination; the base class keeps none."""
        return []

    def _pause(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        until: datetime | None,  # noqa: ARG002 - for adapters
        reason: str | None,  # noqa: ARG002 - for adapters
        *,
        at_least: bool,  # noqa: ARG002 - for adapters
    ) -> DestinationControls:
        """As `pause`, with `until` and `reason` checked (`at_least` false
        when `until` is None), and
        `check_pause_ends_after` left to the adapter, on its clock. The base
        class cannot pause."""
        raise cannot_steer(self)

    def _resume(self, destination: str) -> DestinationControls:  # noqa: ARG002 - for adapters
        """As `resume`; the base class cannot pause, so cannot resume."""
        raise cannot_steer(self)

    def _limit(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        limits: Limits,  # noqa: ARG002 - for adapters
    ) -> DestinationControls:
        """As `limit`, with the limits checked; the base class cannot cap."""
        raise cannot_steer(self)

    def _prioritize(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        item_ids: list[str],  # noqa: ARG002 - for adapters
        priority: int,  # noqa: ARG002 - for adapters
    ) -> int:
        """As `prioritize`, on the item ids given (sorted, each once). The
        base class cannot change priorities."""
        raise cannot_prioritize(self)

    def _depend(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        upstreams: list[str],  # noqa: ARG002 - for adapters
        statuses: frozenset[JobStatus],  # noqa: ARG002 - for adapters
    ) -> list[Dependency]:
        """As `depend`, with the names checked; the adapter refuses a cycle
        (`check_acyclic`) under the lock that orders declarations. The base
        class keeps no dependencies."""
        raise cannot_depend(self)

    def _undepend(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        upstreams: list[str] | None,  # noqa: ARG002 - for adapters
    ) -> list[Dependency]:
        """As `undepend`; the base class keeps no dependencies."""
        raise cannot_depend(self)

    def _dependencies(self, destination: str | None) -> list[Dependency]:  # noqa: ARG002 - for adapters
        """As `dependencies`; the base class keeps no dependencies."""
        raise cannot_depend(self)

    def _cancel(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        item_ids: list[str] | None,  # noqa: ARG002 - for adapters
        error: str,  # noqa: ARG002 - for adapters
    ) -> Cancellation:
        """As `cancel`, on the item ids given (sorted, each once; None: every
        ready job) with `error`, the cancelled jobs' `last_error`. The base
        class cannot cancel."""
        raise cannot_cancel(self)
