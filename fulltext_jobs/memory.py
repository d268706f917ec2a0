"""An in-memory repository for tests of the apps that use fulltext-jobs.

It behaves like the database adapters, checked by the same contract suite:
one job per (item, destination), copies in and out (a caller cannot change a
stored job without `save_fulltext`), the same errors, the same order of
items and claims, and safety under threads.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta

from fulltext_jobs.audit import UNLEASED_ERROR, AuditProblem, AuditSettings, audit_jobs
from fulltext_jobs.checks import (
    MAX_CLAIM,
    check_batch_size,
    check_clock,
    check_item_ids,
    check_lease,
    read_clock,
)
from fulltext_jobs.domain import (
    ATTEMPTS_EXHAUSTED_ERROR,
    DEFAULT_LEASE,
    MAX_ATTEMPTS,
    RESCUED_ERROR,
    DestinationControls,
    DestinationStats,
    FullText,
    JobStatus,
    lag_at,
    lease_expired_error,
    stored_form,
)
from fulltext_jobs.errors import AllQueued, DuplicateJob, JobNotFound, LostClaim, NoJobs, StaleJob
from fulltext_jobs.health import DelayedAhead, QueueHealth, delayed_ahead_of
from fulltext_jobs.memory_pipeline import MemoryPipeline
from fulltext_jobs.memory_steering import MemorySteering, _Announcements, _MemoryReadyListener
from fulltext_jobs.pipeline import Dependency
from fulltext_jobs.port import Hold, ReadyListener, hold_copy
from fulltext_jobs.rate_limit import RateTokens, take, wait_for_next
from fulltext_jobs.repository import Repository

__all__ = ["InMemoryRepository"]

#: The state `InMemoryRepository._saved` keeps: jobs by id, job ids by
#: (item, destination), enqueue order by id, and the items recorded.
_Saved = tuple[
    dict[uuid.UUID, FullText],
    dict[tuple[str, str], uuid.UUID],
    dict[uuid.UUID, int],
    set[tuple[str, str, str]],
]


class InMemoryRepository(MemorySteering, MemoryPipeline, Repository):
    """A `Repository` held in this process's memory.

    `items` are the ids of the eligible items; `add_items` adds more. `clock`
    returns the current time (aware); tests may fix it. `lease` is how long
    a claim lasts without a heartbeat. Raises `InvalidInput` for a `clock`
    that is not callable or a `lease` that is not a timedelta above zero and
    at most `MAX_LEASE`; each reading of the clock is checked before it is
    used (see `fulltext_jobs.repository`).
    """

    def __init__(
        self,
        items: Iterable[str] = (),
        *,
        clock: Callable[[], datetime] | None = None,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self._lock = threading.Lock()
        self._announcements = _Announcements(self._lock)
        # Cancel requests made for running jobs, announced to their workers'
        # listeners; and the end of a `hold_ready` block, which a cancel of
        # held jobs waits for, as the SQL adapter's UPDATE waits for the
        # hold's row locks.
        self._cancel_announcements = _Announcements(self._lock)
        self._hold_ended = threading.Condition(self._lock)
        self._clock = check_clock(clock)
        self._lease = check_lease(lease)
        self._items: list[str] = []  # sorted, like the index the SQL adapter reads
        self._item_set: set[str] = set()
        self._jobs: dict[uuid.UUID, FullText] = {}
        self._by_pair: dict[tuple[str, str], uuid.UUID] = {}
        # The enqueue order of each job, as the SQL adapter's `seq` column.
        self._seq: dict[uuid.UUID, int] = {}
        # The jobs `hold_ready` blocks hold, as the SQL adapter's row locks:
        # every claim passes them over.
        self._held: set[uuid.UUID] = set()
        self._next_seq = itertools.count(1)
        # The largest item id create_job_for_unqueued handed out, per
        # destination, as the SQL adapter's enqueue_cursor table.
        self._watermark: dict[str, str] = {}
        # Each destination's rate-limit bucket: its `tat`, as the SQL
        # adapter's fulltext_rate_limit table (see fulltext_jobs.rate_limit).
        self._buckets: dict[str, float] = {}
        # The items in the order they were added, and, per destination, how
        # far the producer (`enqueue_new`) has read that list and when its
        # last full sweep began, as the SQL adapter's enqueue_cursor.
        self._arrivals: list[str] = []
        self._produced: dict[str, int] = {}
        self._swept_at: dict[str, datetime] = {}
        # What operators set per destination, as the SQL adapter's
        # fulltext_controls table.
        self._controls_of: dict[str, DestinationControls] = {}
        # The cancel requests, by job: the claim asked to stop and the
        # error to skip it with, as the SQL adapter's fulltext_cancels.
        self._cancels: dict[uuid.UUID, tuple[uuid.UUID, str]] = {}
        # Which destinations follow which, and the items an upstream job let
        # follow since the follower's producer last looked (MemoryPipeline).
        self._follows: dict[tuple[str, str], Dependency] = {}
        self._unblocked: set[tuple[str, str, str]] = set()
        self.add_items(items)

    def add_items(self, item_ids: Iterable[str], *, batch_size: int = 10_000) -> int:
        """Make these items eligible; return how many were new.

        Takes what `SqlAlchemyRepository.add_items` takes, so that either
        adapter can stand in for the other; `batch_size` is checked as there
        (a whole number from 1 to 1,000,000) and has nothing else to do: all
        ids are added at once. Raises `InvalidInput` (adding nothing) for a
        bad `batch_size`, if any id is bad, or if `item_ids` is a str rather
        than an iterable of ids.
        """
        check_batch_size(batch_size)
        ids = check_item_ids(item_ids)
        with self._lock:
            added = 0
            for item_id in ids:
                if item_id not in self._item_set:
                    self._item_set.add(item_id)
                    bisect.insort(self._items, item_id)
                    self._arrivals.append(item_id)
                    added += 1
            return added

    def _get_fulltext(self, key: uuid.UUID) -> FullText:
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                raise JobNotFound(f"no job has id {key}")
            return replace(job)

    def _save_fulltext(self, job: FullText) -> None:
        with self._lock:
            if self._is_stale(job):
                raise StaleJob(
                    f"job {job.id} has changed since this copy was read; nothing was saved"
                )
            self._check_pair_free(job)
            self._store(replace(stored_form(job), version=job.version + 1))

    def _save_many(self, jobs: list[FullText]) -> None:
        with self._lock:
            saved = self._saved()
            stale = len(self._store_each(jobs, saved))
            if stale:
                # All or nothing, as the SQL adapter's transaction is.
                self._restore(saved)
                raise StaleJob(
                    f"{stale} of the jobs have changed since they were read (or lost their "
                    "claims); nothing was saved"
                )

    def _save_each(self, jobs: list[FullText]) -> set[uuid.UUID]:
        with self._lock:
            saved = self._saved()
            return self._store_each(jobs, saved)

    def _store_each(
        self,
        jobs: list[FullText],
        saved: _Saved,
    ) -> set[uuid.UUID]:
        """Store each job that is not stale, row by row as the SQL adapter's
        compare-and-swap runs, and return the ids of the stale ones; a clash
        on the unique pair puts `saved` (the state before) back and raises
        `DuplicateJob`. Called under the lock."""
        refused: set[uuid.UUID] = set()
        try:
            for job in jobs:
                if self._is_stale(job):
                    refused.add(job.id)
                    continue
                self._check_pair_free(job)
                self._store(replace(stored_form(job), version=job.version + 1))
        except DuplicateJob:
            self._restore(saved)
            raise
        return refused

    def _saved(self) -> _Saved:
        """What a write of several jobs puts back if it is refused whole:
        the jobs, and the items their ends recorded (as the SQL adapter's
        transaction rolls back its triggers' rows). Called under the lock."""
        return dict(self._jobs), dict(self._by_pair), dict(self._seq), set(self._unblocked)

    def _restore(self, saved: _Saved) -> None:
        self._jobs, self._by_pair, self._seq, self._unblocked = saved

    def _heartbeat(self, job: FullText) -> datetime:
        lease_until = read_clock(self._clock, self._lease) + self._lease
        with self._lock:
            stored = self._jobs.get(job.id)
            if (
                stored is None
                or stored.status is not JobStatus.RUNNING
                or stored.claim_token is None
                or stored.claim_token != job.claim_token
            ):
                raise LostClaim(f"job {job.id} is no longer held by this claim")
            stored.lease_expires = lease_until
            return lease_until

    def _rescue_expired(self, destination: str | None, max_attempts: int) -> list[uuid.UUID]:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            rescued = []
            for job in self._jobs.values():
                if (
                    job.status is JobStatus.RUNNING
                    and destination in (None, job.destination)
                    and job.lease_expires is not None
                    and job.lease_expires < now
                ):
                    if job.attempts >= max_attempts:
                        job.status, job.finished = JobStatus.FAILED, now
                        job.last_error = lease_expired_error(job.attempts)
                        self._unblock(job)
                    else:
                        # The entity's own move, as the SQL statement's.
                        job.release(now, error=RESCUED_ERROR)
                        self._announcements.announce(job.destination)
                    job.claim_token = job.lease_expires = None
                    job.version += 1
                    rescued.append(job.id)
            return rescued

    def _retry(
        self, destination: str, statuses: frozenset[JobStatus], item_ids: frozenset[str] | None
    ) -> int:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            retried = 0
            for job in self._jobs.values():
                if (
                    job.destination == destination
                    and job.status in statuses
                    and (item_ids is None or job.item_id in item_ids)
                ):
                    # The entity's own move, so that the stored retry is
                    # the domain's.
                    job.retry(now)
                    job.version += 1
                    self._announcements.announce(destination)
                    retried += 1
            return retried

    def _create_job_for_unqueued(self, destination: str, priority: int) -> FullText:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            watermark = self._watermark.get(destination, "")
            above = bisect.bisect_right(self._items, watermark)
            # Above the watermark first, then one scan from the start, as the
            # SQL adapter does.
            for item_id in itertools.chain(self._items[above:], self._items[:above]):
                if self._unqueued(item_id, destination):
                    job = self._new_job(item_id, destination, priority, now)
                    self._store(job)
                    self._watermark[destination] = max(watermark, item_id)
                    return replace(job)
        raise AllQueued(f"every eligible item has a job for {destination!r}")

    def _enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None,
        progress: Callable[[int], object] | None,
        priority: int,
    ) -> int:
        created = 0
        now = read_clock(self._clock, self._lease)
        with self._lock:
            for item_id in self._items:
                if created == limit:
                    break
                if self._unqueued(item_id, destination):
                    self._store(self._new_job(item_id, destination, priority, now))
                    created += 1
        # One batch: all of it is done under one lock.
        if progress is not None:
            progress(created)
        return created

    def _enqueue_new(self, destination: str, sweep_interval: timedelta, priority: int) -> int:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            swept_at = self._swept_at.get(destination)
            if swept_at is None or swept_at + sweep_interval <= now:
                new, self._swept_at[destination] = self._items, now
            else:
                # In id order, as the SQL stores queue each batch.
                new = sorted(self._arrivals[self._produced.get(destination, 0) :])
            self._produced[destination] = len(self._arrivals)

            def make(item_id: str) -> None:
                self._store(self._new_job(item_id, destination, priority, now))

            # First the items their upstreams let follow, as the SQL stores do.
            created = self._queue_unblocked(destination, make)
            for item_id in new:
                if self._unqueued(item_id, destination):
                    make(item_id)
                    created += 1
            return created

    @staticmethod
    def _new_job(item_id: str, destination: str, priority: int, now: datetime) -> FullText:
        """A new ready job as the store keeps it (at version 1), ready from `now`."""
        return replace(FullText.new(item_id, destination, priority=priority, now=now), version=1)

    def _has_destination(self, destination: str) -> bool:
        with self._lock:
            return any(job.destination == destination for job in self._jobs.values())

    def _get_ready_job(self, destination: str) -> FullText:
        claimed = self._claim(destination, 1)
        if not claimed:
            raise NoJobs(f"no job is ready for {destination!r}")
        return claimed[0]

    def _claim_ready(self, destination: str, n: int) -> list[FullText]:
        return self._claim(destination, n)

    @contextmanager
    def _hold_ready(self, destination: str, n: int) -> Iterator[Hold]:
        now = read_clock(self._clock, self._lease)
        failed: list[FullText] = []
        with self._lock:
            jobs = [hold_copy(job, now) for job in self._take_due(destination, now, n, failed)]
            # The ids as held: the caller may change its copies' ids.
            held = [job.id for job in jobs]
            self._held.update(held)

        def write(checked: list[FullText], finished_as_held: bool) -> set[uuid.UUID]:  # noqa: ARG001, FBT001 - the port's call
            with self._lock:
                saved = self._saved()
                return self._store_each(checked, saved)

        try:
            yield Hold(jobs, write)
        except BaseException:
            # The SQL adapter fails them in the hold's transaction, which
            # the block's exception rolls back.
            with self._lock:
                self._jobs.update((job.id, job) for job in failed)
            raise
        else:
            with self._lock:
                for job in failed:
                    self._unblock(self._jobs[job.id])
        finally:
            with self._lock:
                self._held.difference_update(held)
                self._hold_ended.notify_all()

    # --- delays and rate limits -------------------------------------

    def _next_due(self, destination: str) -> datetime | None:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            return min(
                (
                    job.not_before or now
                    for job in self._jobs.values()
                    if job.destination == destination and job.status is JobStatus.READY
                ),
                default=None,
            )

    def _take_rate_tokens(self, destination: str, rate: float, n: int, burst: int) -> RateTokens:
        now = read_clock(self._clock, self._lease).timestamp()
        with self._lock:
            tat, granted = take(self._buckets.get(destination), now, rate, burst, n)
            self._buckets[destination] = tat
        return RateTokens(granted, wait_for_next(tat, now, rate, burst))

    def _listen(self, destination: str) -> ReadyListener:
        """A listener woken, in this process, whenever jobs of `destination`
        become ready: created, saved as ready, released, rescued or retried."""
        return _MemoryReadyListener(self._announcements, destination)

    def _list_jobs(
        self,
        destination: str,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: str | None,
    ) -> list[FullText]:
        with self._lock:
            page = sorted(
                (
                    job
                    for job in self._jobs.values()
                    if job.destination == destination
                    and (statuses is None or job.status in statuses)
                    and (after is None or job.item_id > after)
                ),
                key=lambda job: job.item_id,
            )[:limit]
            return [replace(job) for job in page]

    def _count_unqueued(self, destination: str) -> int:
        with self._lock:
            return sum(self._unqueued(item_id, destination) for item_id in self._items)

    def _lag(self, destination: str) -> timedelta | None:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            return lag_at(now, self._oldest_ready_at(destination))

    def _oldest_ready_at(self, destination: str) -> datetime | None:
        """The earliest `ready_at` among `destination`'s ready jobs, as the
        SQL stores' index gives it; called under the lock."""
        return min(
            (
                job.ready_at
                for job in self._jobs.values()
                if job.destination == destination
                and job.status is JobStatus.READY
                and job.ready_at is not None
            ),
            default=None,
        )

    def _stats(self, destination: str | None, unqueued: bool) -> list[DestinationStats]:  # noqa: FBT001 - checked by the port
        now = read_clock(self._clock, self._lease)
        with self._lock:
            counts: dict[str, Counter[str]] = defaultdict(Counter)
            for job in self._jobs.values():
                if destination in (None, job.destination):
                    counts[job.destination][job.status.value] += 1
            names = [destination] if destination is not None else sorted(counts)
            return [
                DestinationStats.of(
                    name,
                    counts[name],
                    sum(self._unqueued(item_id, name) for item_id in self._items)
                    if unqueued
                    else None,
                    lag_at(now, self._oldest_ready_at(name)),
                )
                for name in names
            ]

    def _claim(self, destination: str, n: int) -> list[FullText]:
        # The clock is read, and checked, before anything changes.
        now = read_clock(self._clock, self._lease)
        with self._lock:
            ready = self._take_due(destination, now, n)
            for job in ready:
                job.start(now)
                job.attempt()
                job.claim_token = uuid.uuid4()
                job.lease_expires = now + self._lease
                job.version += 1
            return [replace(job) for job in ready]

    def _take_due(
        self, destination: str, now: datetime, n: int, failed: list[FullText] | None = None
    ) -> list[FullText]:
        """The `n` oldest stored jobs of `destination` due at `now` that a
        claim may hand out; a job among them already at `MAX_ATTEMPTS` is
        failed (`ATTEMPTS_EXHAUSTED_ERROR`) and the next one taken in its
        place, as the SQL adapter's claims do; `failed` (a hold's) gets a
        copy of each such job as it was, and the hold records its item for
        the destinations that follow (`_unblock`) once its block ends
        without an exception; a claim's is recorded at once. Called under
        the lock."""
        taken: list[FullText] = []
        if self._paused(destination, now):
            return taken
        n = min(n, self._room_under_cap(destination))
        for job in self._due(destination, now):
            if len(taken) == n:
                break
            if job.attempts < MAX_ATTEMPTS:
                taken.append(job)
                continue
            if failed is not None:
                failed.append(replace(job))
            job.status, job.finished, job.not_before = JobStatus.FAILED, now, None
            job.last_error = ATTEMPTS_EXHAUSTED_ERROR
            job.version += 1
            if failed is None:
                self._unblock(job)
        return taken

    def _paused(self, destination: str, now: datetime) -> bool:
        """Whether a pause of `destination` is in force at `now`; called
        under the lock."""
        controls = self._controls_of.get(destination)
        return controls is not None and controls.paused(now)

    def _room_under_cap(self, destination: str) -> int:
        """How many more jobs of `destination` its cap lets start: the cap
        less its running jobs and those held by `hold_ready` blocks (no
        limit without a cap); called under the lock."""
        controls = self._controls_of.get(destination)
        if controls is None or controls.max_running is None:
            return MAX_CLAIM
        busy = sum(
            1
            for job in self._jobs.values()
            if job.destination == destination
            and (job.status is JobStatus.RUNNING or job.id in self._held)
        )
        return max(0, controls.max_running - busy)

    def _due(self, destination: str, now: datetime) -> list[FullText]:
        """The stored ready jobs of `destination` due at `now` and not held
        by a `hold_ready` block, in claim order (the highest priority first,
        then the oldest); called under the lock."""
        return sorted(
            (
                job
                for job in self._jobs.values()
                if job.destination == destination
                and job.status is JobStatus.READY
                and (job.not_before is None or job.not_before <= now)
                and job.id not in self._held
            ),
            key=lambda job: (-job.priority, self._seq[job.id]),
        )

    def _is_stale(self, job: FullText) -> bool:
        """Whether the stored job is not the one `job` was read from: the
        compare-and-swap of a save (see `Statements.update_job`)."""
        stored = self._jobs.get(job.id)
        if job.version == 0:
            return stored is not None
        return (
            stored is None or stored.version != job.version or stored.claim_token != job.claim_token
        )

    def _check_pair_free(self, job: FullText) -> None:
        owner = self._by_pair.get((job.item_id, job.destination))
        if owner is not None and owner != job.id:
            raise DuplicateJob(
                f"job {owner} already exists for item {job.item_id!r} "
                f"and destination {job.destination!r}"
            )

    def _store(self, job: FullText) -> None:
        previous = self._jobs.get(job.id)
        if (
            job.status is JobStatus.READY
            and job.not_before is None  # released for later: nothing to claim yet
            and (previous is None or previous.status is not JobStatus.READY)
        ):
            self._announcements.announce(job.destination)
        if previous is not None:
            del self._by_pair[previous.item_id, previous.destination]
        else:
            self._seq[job.id] = next(self._next_seq)
        self._jobs[job.id] = job
        self._by_pair[job.item_id, job.destination] = job.id
        if previous is None or previous.status is not job.status:
            self._unblock(job)

    # --- queue health ----------------------------------------------

    def _queue_health(self, destination: str | None) -> QueueHealth:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            ready: dict[str, list[FullText]] = {}
            for job in self._jobs.values():
                if job.status is JobStatus.READY and destination in (None, job.destination):
                    ready.setdefault(job.destination, []).append(job)
            delayed = []
            for name in sorted(ready):
                jobs = sorted(ready[name], key=lambda job: self._seq[job.id])
                due = [job.not_before is None or job.not_before <= now for job in jobs]
                if not all(due):
                    delayed.append(DelayedAhead(name, due.count(False), delayed_ahead_of(due)))
        return QueueHealth(
            store="memory",
            horizon=None,
            table=None,
            delayed=tuple(delayed),
            notes=("in memory: not applicable: no transactions hold anything back, no table",),
        )

    # --- audit ---------------------------------------------------

    def _audit(self, destination: str | None, settings: AuditSettings) -> list[AuditProblem]:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            return audit_jobs(
                self._jobs.values(),
                self._item_set,
                settings,
                now,
                destination,
                controls=self._controls_of.values(),
            )

    def _release_unleased(self, older_than: timedelta, destination: str | None) -> list[uuid.UUID]:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            released = []
            for job in self._jobs.values():
                if (
                    job.status is JobStatus.RUNNING
                    and destination in (None, job.destination)
                    and job.lease_expires is None
                    and job.started is not None
                    and job.started < now - older_than
                ):
                    job.release(now, error=UNLEASED_ERROR)
                    job.claim_token = None
                    # The lost claim counts, up to the bound (see `MAX_ATTEMPTS`).
                    job.attempts = min(job.attempts + 1, MAX_ATTEMPTS)
                    job.version += 1
                    self._announcements.announce(job.destination)
                    released.append(job.id)
            return sorted(released)
