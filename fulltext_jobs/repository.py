"""The port: what every store of jobs promises.

Adapters (`InMemoryRepository`, `SqlAlchemyRepository`) implement it; the
worker and the command line use nothing else. Every method validates its
arguments before touching the store, so bad input raises `InvalidInput` and
writes nothing.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Self

from fulltext_jobs.domain import DestinationStats, FullText, JobStatus, check_destination

__all__ = ["AsyncRepository", "ReadyListener", "Repository"]


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


class Repository(abc.ABC):
    """A ledger of full-text jobs: at most one job per (item, destination)."""

    @abc.abstractmethod
    def get_fulltext(self, job_id: uuid.UUID | str) -> FullText:
        """Return the job with this id, as a copy the caller may change.

        Raises `JobNotFound` if there is none and `InvalidInput` if `job_id`
        is not a UUID (or its string form).
        """

    @abc.abstractmethod
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

    @abc.abstractmethod
    def create_job_for_unqueued(self, destination: str) -> FullText:
        """Create and return a `ready` job for one eligible item that has no
        job for `destination`.

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
        a bad destination.
        """

    @abc.abstractmethod
    def get_ready_job(self, destination: str) -> FullText:
        """Claim the oldest `ready` job for `destination`: mark it `running`,
        set `started`, a fresh `claim_token` and `lease_expires` (now plus
        the repository's lease), count an attempt, and return it.

        Safe under any number of concurrent callers: each job is handed to
        exactly one of them. Raises `NoJobs` when no job is ready for
        `destination`, and `InvalidInput` for a bad destination.
        """

    @abc.abstractmethod
    def enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> int:
        """Create `ready` jobs for every eligible item that has none for
        `destination`, or for up to `limit` of them (smallest ids first), and
        return how many were created.

        Set-based and done in batches, each committed on its own, so no
        transaction holds millions of rows; if it fails part way through, the
        batches already committed stay. After each batch commits, `progress`
        (if given) is called with the number of jobs that batch created.

        Safe while other callers run it or `create_job_for_unqueued`: an item
        another caller queues meanwhile is passed over, never given a second
        job. Raises `InvalidInput` for a bad
        destination or a `limit` that is not a positive whole number.
        """

    @abc.abstractmethod
    def claim_ready(self, destination: str, n: int) -> list[FullText]:
        """Claim up to `n` of the oldest `ready` jobs of `destination` at once,
        as `get_ready_job` claims one, and return them oldest first.

        Returns an empty list when none is ready. Safe under concurrent
        callers: each job goes to exactly one of them. Raises `InvalidInput`
        for a bad destination or an `n` that is not a positive whole number.
        """

    @abc.abstractmethod
    def save_many(self, jobs: Iterable[FullText]) -> None:
        """Store many jobs at once, each as `save_fulltext` would: all of them
        or, on any error, none.

        Raises `DuplicateJob` if any would be a second job for its item and
        destination, else `StaleJob` (a `LostClaim`) if any copy is stale
        (see `save_fulltext`), and `InvalidInput` if any job is bad or two of
        them share an id or an (item, destination) pair. Only when all are
        saved are the copies' `version`s moved on.
        """

    @abc.abstractmethod
    def count_unqueued(self, destination: str) -> int:
        """How many eligible items have no job for `destination`.

        Raises `InvalidInput` for a bad destination.
        """

    @abc.abstractmethod
    def stats(self, destination: str | None = None) -> list[DestinationStats]:
        """Jobs per status and unqueued items, for `destination` or, if None,
        for every destination that has jobs, sorted by name.

        Raises `InvalidInput` for a bad destination.
        """

    @abc.abstractmethod
    def heartbeat(self, job: FullText) -> datetime:
        """Extend the lease of a job the caller has claimed to now plus the
        repository's lease; set it on `job` and return it.

        Call it well within the lease (a third of it, say) while the work
        goes on. Raises `LostClaim` if the caller no longer holds the claim
        (the job is not `running`, or its token is another's), changing
        nothing.
        """

    @abc.abstractmethod
    def rescue_expired(self, destination: str | None = None, *, max_attempts: int = 3) -> int:
        """Give back the `running` jobs whose lease has run out (of
        `destination`, or of all): each returns to `ready`, or, once it has
        had `max_attempts` attempts, goes to `failed` with the reason in
        `last_error`. Their claims end, so their workers' late saves raise
        `LostClaim`. Returns how many jobs were rescued.

        A job is rescued only if, at that moment, it is still running with an
        expired lease: a job finished meanwhile is never touched. Jobs
        without a lease (claimed by the original Go code) are left alone.
        Raises `InvalidInput` for a bad destination or `max_attempts`.
        """

    @abc.abstractmethod
    def retry(
        self,
        destination: str,
        *,
        statuses: Iterable[JobStatus | str] = (JobStatus.FAILED, JobStatus.SKIPPED),
        item_ids: Iterable[str] | None = None,
    ) -> int:
        """Return the `destination`'s jobs in `statuses` (failed, skipped or
        both), or only those of `item_ids`, to `ready`, keeping their
        `attempts` and `last_error`; return how many.

        This replaces the original's retry, which deleted the rows and lost
        their history. Raises `InvalidInput` for a bad destination or item
        id, or for a status other than failed and skipped.
        """

    def listen(self, destination: str) -> ReadyListener | None:
        """A listener that wakes when jobs of `destination` become ready, or
        None if this store cannot announce it (then callers poll).

        The base class returns None. Raises `InvalidInput` for a bad
        destination, and `StoreError` if the store cannot be reached.
        """
        check_destination(destination)
        return None


class AsyncRepository(abc.ABC):
    """The port for asyncio apps: the operations of `Repository`, each a
    coroutine, with the same promises and the same errors."""

    @abc.abstractmethod
    async def get_fulltext(self, job_id: uuid.UUID | str) -> FullText:
        """As `Repository.get_fulltext`."""

    @abc.abstractmethod
    async def save_fulltext(self, job: FullText) -> None:
        """As `Repository.save_fulltext`."""

    @abc.abstractmethod
    async def create_job_for_unqueued(self, destination: str) -> FullText:
        """As `Repository.create_job_for_unqueued`."""

    @abc.abstractmethod
    async def get_ready_job(self, destination: str) -> FullText:
        """As `Repository.get_ready_job`."""

    @abc.abstractmethod
    async def enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> int:
        """As `Repository.enqueue_unqueued`; `progress` is a plain function."""

    @abc.abstractmethod
    async def claim_ready(self, destination: str, n: int) -> list[FullText]:
        """As `Repository.claim_ready`."""

    @abc.abstractmethod
    async def save_many(self, jobs: Iterable[FullText]) -> None:
        """As `Repository.save_many`."""

    @abc.abstractmethod
    async def count_unqueued(self, destination: str) -> int:
        """As `Repository.count_unqueued`."""

    @abc.abstractmethod
    async def stats(self, destination: str | None = None) -> list[DestinationStats]:
        """As `Repository.stats`."""

    @abc.abstractmethod
    async def heartbeat(self, job: FullText) -> datetime:
        """As `Repository.heartbeat`."""

    @abc.abstractmethod
    async def rescue_expired(
        self, destination: str | None = None, *, max_attempts: int = 3
    ) -> int:
        """As `Repository.rescue_expired`."""

    @abc.abstractmethod
    async def retry(
        self,
        destination: str,
        *,
        statuses: Iterable[JobStatus | str] = (JobStatus.FAILED, JobStatus.SKIPPED),
        item_ids: Iterable[str] | None = None,
    ) -> int:
        """As `Repository.retry`."""
