"""The port: what every store of jobs promises.

Adapters (`InMemoryRepository`, `SqlAlchemyRepository`,
`AsyncSqlAlchemyRepository`) implement it; the `Worker` uses nothing else.
(The command line builds a `SqlAlchemyRepository`, since it also fills the
default items table with `add_items`, and migrates; everything else it does
goes through this port.) The port's public methods check every argument, once,
and then call the adapter's protected implementation (`_get_fulltext`,
...) with clean values: bad input raises `InvalidInput` before any adapter
code runs, so it writes nothing, and no two adapters can answer it
differently. The checks of each operation are written once, in
`fulltext_jobs.port`, for this port and the asyncio one (`AsyncRepository`,
at home in `fulltext_jobs.repository_async` and importable from here). The
rules are the `check_*` functions of `fulltext_jobs.checks`:

- text (destinations, item ids) is a non-empty `str` within its length
  limit, with no NUL byte, that encodes as UTF-8 (no lone surrogates);
  error text is kept, with NUL bytes and lone surrogates escaped;
- an iterable of ids or jobs is never a `str` (nor one job);
- every whole number is an `int` (not a `bool`) within bounds that the
  columns hold: `n` of `claim_ready` 1 to 10,000; `limit` and
  `max_attempts` 1 to 2**31 - 1; a job's `attempts` 0 to 2**31 - 1 and its
  `version` 0 to 2**31 - 2; batch sizes 1 to 1,000,000;
- timestamps are aware and from 0001-01-02 to 9999-12-30 (UTC); a lease is
  above zero and at most 3,650 days;
- a rate (`take_rate_tokens`) is a finite number of tokens a second from
  one a week to 100,000, and its `n` and `burst` whole numbers from 1 to
  10,000;
- a repository's `clock` is checked to be callable when it is built, and
  each time it is read: a result that is not an aware datetime in range
  (with room for a lease) raises `InvalidInput` before anything is
  written.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta

from fulltext_jobs.domain import DEFAULT_SWEEP_INTERVAL, FullText
from fulltext_jobs.port import (
    AsyncHold,
    Hold,
    ReadyListener,
    cannot_hold,
    claim_ready_args,
    create_job_for_unqueued_args,
    enqueue_new_args,
    enqueue_unqueued_args,
    get_fulltext_args,
    get_ready_job_args,
    handed_out,
    heartbeat_args,
    held_outcomes,
    hold_copy,
    hold_ready_args,
    listen_args,
    listen_for_cancels_args,
    moved_on,
    moved_on_but,
    next_due_args,
    save_fulltext_args,
    save_many_args,
    take_cancel_requests_args,
    take_rate_tokens_args,
)
from fulltext_jobs.rate_limit import RateTokens
from fulltext_jobs.repository_async import AsyncRepository
from fulltext_jobs.upkeep import Upkeep

# The port's names, and what an adapter's `_hold_ready` needs (at home in
# `fulltext_jobs.port`), importable from here.
__all__ = ["AsyncHold", "AsyncRepository", "Hold", "ReadyListener", "Repository", "hold_copy"]


class Repository(Upkeep, abc.ABC):
    """A ledger of full-text jobs: at most one job per (item, destination).

    The workers' operations are here; the operators' (looking at the
    ledger, repairing it) are its part `fulltext_jobs.upkeep.Upkeep`."""

    def get_fulltext(self, job_id: uuid.UUID | str) -> FullText:
        """Return the job with this id, as a copy the caller may change.

        Raises `JobNotFound` if there is none and `InvalidInput` if `job_id`
        is not a UUID (or its string form).
        """
        return self._get_fulltext(get_fulltext_args(job_id))

    def save_fulltext(self, job: FullText) -> None:
        """Store `job`: a compare-and-swap on its `version`.

        A job never stored (`FullText.new`, version 0) is inserted; if a job
        with its id exists already, it is not replaced. A copy read from the
        store replaces the stored job only if that is still at the copy's
        `version` and holds the copy's `claim_token`, checked in the same
        statement that writes: a job saved, claimed, rescued or retried
        since the copy was read is left alone, so no stale copy (an admin
        screen, a worker whose lease ran out) can undo what happened since.
        A job that leaves `running` is stored without token or lease, ending
        the claim. On success the copy's `version` is set to the stored
        one's, so the caller may change and save it again.

        Raises `StaleJob` (a `LostClaim`) if the stored job is not the one
        the copy was read from (or, for version 0, exists; or, for a stored
        copy, is gone), `DuplicateJob` if another job (another id) already
        exists for the same item and destination, and `InvalidInput` if the
        job has an unknown status, a bad item id or destination, or a naive
        timestamp. Either way nothing is written.
        """
        checked = save_fulltext_args(job)
        self._save_fulltext(checked)
        job.version = checked.version + 1

    def create_job_for_unqueued(self, destination: str, *, priority: int = 0) -> FullText:
        """Create and return a `ready` job, of `priority`, for one eligible
        item that has no job for `destination`.

        Items are handed out in id order from a per-destination watermark
        (the largest id handed out so far), so a call costs the same however
        many items are already queued. Once nothing is left above the
        watermark, one scan from the start finds items that arrived with
        smaller ids or became eligible late; only then `AllQueued`. That
        scan grows with the ledger: for backfills use `enqueue_unqueued`.

        Safe under any number of concurrent callers: no item gets two jobs,
        and a caller never sees a duplicate-key error. Creators of one
        destination take turns (the watermark is locked for the call);
        creators of different destinations do not wait for each other.
        Raises `AllQueued` when every eligible item already has a job for
        `destination` (or there are no eligible items), and `InvalidInput` for
        a bad destination or priority (see `FullText.priority`).
        """
        return self._create_job_for_unqueued(*create_job_for_unqueued_args(destination, priority))

    def get_ready_job(self, destination: str) -> FullText:
        """Claim the first `ready` job for `destination`: mark it `running`,
        set `started`, a fresh `claim_token` and `lease_expires` (now plus
        the repository's lease), count an attempt, and return it.

        The first is the one of highest `priority`, and among those the
        oldest by enqueue order, among the jobs not delayed and those whose
        `not_before` has passed (a delayed job that came due keeps its
        place). A job whose `attempts` are already at `MAX_ATTEMPTS` is not
        handed out: the claim fails it (`last_error` is
        `ATTEMPTS_EXHAUSTED_ERROR`) and claims the next one instead.

        Safe under any number of concurrent callers: each job is handed to
        exactly one of them. Raises `NoJobs` when no job is ready for
        `destination`, and `InvalidInput` for a bad destination or if the
        clock's reading is not a time to write (nothing is claimed then).
        """
        return self._get_ready_job(get_ready_job_args(destination))

    def enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None = None,
        progress: Callable[[int], object] | None = None,
        priority: int = 0,
    ) -> int:
        """Create `ready` jobs, of `priority`, for every eligible item that
        has none for `destination`, or for up to `limit` of them (smallest
        ids first), and return how many were created.

        Set-based and done in batches, each committed on its own, so no
        transaction holds millions of rows; if it fails part way through, the
        batches already committed stay. After each batch commits, `progress`
        (if given) is called with the number of jobs that batch created.

        Safe while other callers run it or `create_job_for_unqueued`: an item
        another caller queues meanwhile is passed over, never given a second
        job. Raises `InvalidInput` for a bad destination, a `limit` that is
        not a whole number from 1 to 2**31 - 1, a `progress` that is not
        callable, or a bad priority.
        """
        destination, limit, progress, priority = enqueue_unqueued_args(
            destination, limit, progress, priority
        )
        return self._enqueue_unqueued(
            destination, limit=limit, progress=progress, priority=priority
        )

    def claim_ready(self, destination: str, n: int) -> list[FullText]:
        """Claim up to `n` of the oldest `ready` jobs of `destination` at once,
        as `get_ready_job` claims one (failing, in place of handing them out,
        the jobs already at `MAX_ATTEMPTS`), and return them oldest first.

        Returns an empty list when none is ready. Safe under concurrent
        callers: each job goes to exactly one of them. Raises `InvalidInput`
        for a bad destination or an `n` that is not a whole number from 1 to
        10,000, or if the clock's reading is not a time to write.
        """
        # Unpacked into names, not passed with `*`: the cheaper call on a hot path.
        destination, n = claim_ready_args(destination, n)
        return self._claim_ready(destination, n)

    def save_many(self, jobs: Iterable[FullText], *, atomic: bool = True) -> None:
        """Store many jobs at once, each as `save_fulltext` would: all of them
        or, on any error, none.

        Raises `DuplicateJob` if any would be a second job for its item and
        destination, else `StaleJob` (a `LostClaim`) if any copy is stale
        (see `save_fulltext`), and `InvalidInput` if any job is bad or two of
        them share an id or an (item, destination) pair. Only when all are
        saved are the copies' `version`s moved on.

        With `atomic=False` (what a worker finishing a batch wants) each job
        is judged on its own: the stale copies are refused and the others
        saved, in one transaction. The saved copies' `version`s move on;
        then, if any was refused, `StaleJobs` (a `StaleJob`) is raised with
        the refused ids in `refused`, and those copies are left as they
        were. `DuplicateJob` and `InvalidInput` still save nothing: they
        are errors in the batch, not news about other writers.
        """
        originals, checked, atomic = save_many_args(jobs, atomic)
        if atomic:
            if checked:
                self._save_many(checked)
            moved_on(originals)
            return
        refused = self._save_each(checked) if checked else set()
        moved_on_but(originals, refused)

    @contextmanager
    def hold_ready(self, destination: str, n: int) -> Iterator[list[FullText]]:
        """Claim up to `n` of the oldest due `ready` jobs of `destination` for
        the length of a `with` block, by holding them in an open transaction,
        and write each job once, at the end: the transaction mode for short
        handlers.

            with repo.hold_ready("d", 100) as jobs:
                for job in jobs:
                    handle(job)
                    job.finish()

        The jobs come oldest first as `running` copies (`started` set, the
        attempt counted, no claim token or lease), chosen as `claim_ready`
        chooses (a job already at `MAX_ATTEMPTS` is failed in the block's
        transaction, and the next one held instead), but nothing else is
        written: the claim is the rows' locks
        (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so other claimers pass
        them over and no lease, heartbeat or claim token is needed. Move each copy
        through the state machine (`finish`, `fail`, `skip`, or `release`,
        with `not_before` for a retry). On leaving the block normally, every
        job that left `running` is written once (on PostgreSQL one
        statement for the batch), with `started` and its attempt counted,
        and the transaction commits; the copies' `version`s move on. A job
        still `running` at the end is not written: it stays `ready`, its
        attempt not counted, claimable again at once.

        On an exception inside the block, or if the process dies or its
        connection is lost, the transaction rolls back: every job is `ready`
        as before, its attempt not counted, and other workers take it. On
        PostgreSQL (outside a caller's session) the hold is recorded beside
        its transaction, so that `rescue_expired` later counts an attempt
        for a holder that died (not for an exception in the block), and
        fails the job at its `max_attempts`; on SQLite a handler that kills
        its process is retried forever. Use the leased mode (`claim_ready`,
        a `Worker` without `in_transaction`) for handlers that run long,
        and on SQLite for handlers that may crash the process. The transaction
        stays open for the whole block: keep the block short (on PostgreSQL
        a long-open transaction holds back vacuum for the whole database; on
        SQLite the block holds the database's write lock, and every other
        writer waits for it, up to its busy timeout). Do not save the held
        jobs through the repository inside the block: on PostgreSQL that
        waits for the block's own locks. Joined to a session
        (`SqlAlchemyRepository.in_session`), the block is a savepoint of the
        caller's transaction: the locks last, and the writes commit, with it.

        Raises `InvalidInput` for a bad destination or an `n` that is not a
        whole number from 1 to 10,000, and, on leaving the block, if a copy
        is no longer a valid job or not one of the held ones (nothing is
        then written); `StaleJobs` if a row changed under the hold anyway
        (the others are written); `NotSupported` where the adapter cannot
        hold a transaction (on PostgreSQL, an engine in autocommit);
        `StoreError` if the store fails (nothing is written).
        """
        destination, n = hold_ready_args(destination, n)
        with self._hold_ready(destination, n) as hold:
            handed = handed_out(hold.jobs)
            yield list(hold.jobs)
            moved, checked, finished_as_held = held_outcomes(hold.jobs, handed)
            # The copies hold no token, as the row holds none: the
            # compare-and-swap finds the row's own.
            refused = hold.write(checked, finished_as_held) if checked else set()
        moved_on_but(moved, refused)

    def _hold_ready(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        n: int,  # noqa: ARG002 - for adapters
    ) -> AbstractContextManager[Hold]:
        """As `hold_ready`: a context manager that opens a transaction, holds
        the jobs and yields them with their writer, commits on a clean exit
        and rolls back on an exception. The base class cannot hold one."""
        raise cannot_hold(self)

    def enqueue_new(
        self,
        destination: str,
        *,
        sweep_interval: timedelta = DEFAULT_SWEEP_INTERVAL,
        priority: int = 0,
    ) -> int:
        """What an idle producer runs: create `ready` jobs, of `priority`, for the eligible
        items that arrived since the last call for `destination`, and, once
        `sweep_interval` has passed since the last full sweep (or there has
        been none), for every eligible item without one, as
        `enqueue_unqueued` does. Returns how many jobs were created.

        New items are found past a per-destination watermark kept in the
        store: over the items' insertion order for the default items table
        (so a new item whose id sorts below every other is found too), over
        the item id for an app's own item source (or a database adopted
        from the Go original). A call with nothing new costs one index
        probe, however many items there are. The sweep finds what the
        watermark cannot: items that became eligible after it passed them,
        items of an app's source whose ids sort below ones seen before, and
        items committed after a later-inserted one was already passed. A
        `sweep_interval` of zero sweeps on every call. The time is the
        repository's clock, and the last sweep is recorded in the store, so
        producers in different processes share one schedule.

        Safe beside other callers of itself, `enqueue_unqueued` and
        `create_job_for_unqueued`. Raises `InvalidInput` for a bad
        destination or priority, or a `sweep_interval` that is not a
        timedelta from 0 to 3,650 days.
        """
        return self._enqueue_new(*enqueue_new_args(destination, sweep_interval, priority))

    def heartbeat(self, job: FullText) -> datetime:
        """Extend the lease of a job the caller has claimed to now plus the
        repository's lease; set it on `job` and return it.

        Call it well within the lease (a third of it, say) while the work
        goes on. It changes neither the job's `version` nor any other
        copy of it, so a worker may heartbeat one copy and save another.
        Raises `LostClaim` if the caller no longer holds the claim (the job
        is not `running`, or its token is another's), and `InvalidInput` if
        `job` is not a `FullText` whose id is a UUID and whose token is a
        UUID or None, or if the clock's reading is not a time to write;
        either way nothing changes.
        """
        lease = self._heartbeat(heartbeat_args(job))
        job.lease_expires = lease
        return lease

    # --- delays and rate limits -------------------------------------

    def next_due(self, destination: str) -> datetime | None:
        """When the next of `destination`'s `ready` jobs may be claimed: the
        earliest `not_before` among them, the repository clock's now if
        one of them is not delayed (another claimer may be taking it), or
        None if none is ready. Changes nothing.

        Its cost grows with the destination's ready jobs: ask after a claim
        came back empty, when those are the delayed ones. Raises
        `InvalidInput` for a bad destination or a clock reading that is
        not a time.
        """
        return self._next_due(next_due_args(destination))

    def take_rate_tokens(
        self, destination: str, rate: float, n: int = 1, *, burst: int = 1
    ) -> RateTokens:
        """Take up to `n` start tokens from `destination`'s bucket, which
        every caller sharing this store draws from: at most `rate` tokens a
        second, and never more than `burst` at once (over any `t` seconds,
        at most `rate * t + burst`). Returns the tokens granted (0 to
        `min(n, burst)`) and the seconds until a token is there again.

        Start a job only with a token: a caller that starts fewer jobs
        than it was granted loses the rest (see docs/guide-workers.md).
        Callers of one destination should share `rate` and `burst`: each
        take is judged by its own. On PostgreSQL the bucket reads the
        server's clock (unless the repository was given a `clock`), so
        machines whose clocks disagree share one bucket; elsewhere the
        repository's clock. (In a joined Session the bucket's row stays
        locked until the caller commits, holding back every other taker:
        take tokens outside it.) Raises `InvalidInput` for a bad
        destination, a `rate` that is not a number from one a week to
        100,000 a second, an `n` or `burst` that is not a whole number from
        1 to 10,000, or a clock reading that is not a time.
        """
        return self._take_rate_tokens(*take_rate_tokens_args(destination, rate, n, burst))

    @abc.abstractmethod
    def _next_due(self, destination: str) -> datetime | None:
        """As `next_due`."""

    @abc.abstractmethod
    def _take_rate_tokens(self, destination: str, rate: float, n: int, burst: int) -> RateTokens:
        """As `take_rate_tokens`."""

    # --- waiting for work -------------------------------------

    def listen(self, destination: str) -> ReadyListener | None:
        """A listener that wakes when jobs of `destination` become ready, or
        None if this store cannot announce it (then callers poll).

        The base class returns None. Raises `InvalidInput` for a bad
        destination, and `StoreError` if the store cannot be reached.
        """
        return self._listen(listen_args(destination))

    def _listen(self, destination: str) -> ReadyListener | None:  # noqa: ARG002 - for adapters
        """As `listen`; the base class cannot announce, so None."""
        return None

    # --- cancel requests --------------------------------------

    def take_cancel_requests(self, jobs: Iterable[FullText]) -> dict[uuid.UUID, str]:
        """The cancel requests (`cancel`) made for the claims of `jobs`
        (those the caller holds): each job's id, with the `last_error` it
        is to be saved `skipped` with. Each request returned is taken: it is
        deleted from the store, with any left by an earlier claim of these
        jobs, so a request is applied once. One statement for every 500
        jobs; jobs with no claim token are passed over. Changes no job.

        The base class keeps no requests, so returns none. Raises
        `InvalidInput` if `jobs` is not an iterable of jobs, or for an id
        or claim token that is not a UUID.
        """
        return self._take_cancel_requests(take_cancel_requests_args(jobs))

    def listen_for_cancels(self, destination: str) -> ReadyListener | None:
        """A listener that wakes when a cancel request is made for a running
        job of `destination` (the caller then takes its requests:
        `take_cancel_requests`), or None if this store cannot announce it
        (then callers look at each heartbeat). On PostgreSQL, a connection
        of its own; in memory, at once.

        The base class returns None. Raises `InvalidInput` for a bad
        destination, and `StoreError` if the store cannot be reached.
        """
        return self._listen_for_cancels(listen_for_cancels_args(destination))

    def _take_cancel_requests(
        self,
        claims: list[tuple[uuid.UUID, uuid.UUID]],  # noqa: ARG002 - for adapters
    ) -> dict[uuid.UUID, str]:
        """As `take_cancel_requests`, for these (job id, claim token)
        pairs; the base class keeps no requests."""
        return {}

    def _listen_for_cancels(self, destination: str) -> ReadyListener | None:  # noqa: ARG002 - for adapters
        """As `listen_for_cancels`; the base class cannot announce, so None."""
        return None

    # --- what each adapter implements, given checked arguments ------------

    @abc.abstractmethod
    def _get_fulltext(self, job_id: uuid.UUID) -> FullText:
        """The job with this id (`JobNotFound` if none)."""

    @abc.abstractmethod
    def _save_fulltext(self, job: FullText) -> None:
        """Store the checked copy `job` as `save_fulltext` promises (`StaleJob`,
        `DuplicateJob`); the port moves the caller's version on."""

    @abc.abstractmethod
    def _create_job_for_unqueued(self, destination: str, priority: int) -> FullText:
        """As `create_job_for_unqueued`."""

    @abc.abstractmethod
    def _get_ready_job(self, destination: str) -> FullText:
        """As `get_ready_job`."""

    @abc.abstractmethod
    def _enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None,
        progress: Callable[[int], object] | None,
        priority: int,
    ) -> int:
        """As `enqueue_unqueued`."""

    @abc.abstractmethod
    def _claim_ready(self, destination: str, n: int) -> list[FullText]:
        """As `claim_ready`."""

    @abc.abstractmethod
    def _save_many(self, jobs: list[FullText]) -> None:
        """Store the checked copies `jobs` (at least one) as `save_many`
        promises; the port moves the callers' versions on."""

    @abc.abstractmethod
    def _save_each(self, jobs: list[FullText]) -> set[uuid.UUID]:
        """Store each of the checked copies `jobs` (at least one) that is not
        stale, in one transaction, and return the ids of the stale ones; a
        `DuplicateJob` saves none. The port moves the saved copies'
        versions on."""

    @abc.abstractmethod
    def _enqueue_new(self, destination: str, sweep_interval: timedelta, priority: int) -> int:
        """As `enqueue_new`."""

    @abc.abstractmethod
    def _heartbeat(self, job: FullText) -> datetime:
        """Extend the lease of `job` (`LostClaim` if not held) and return it;
        the port sets it on the caller's job."""
