"""The port for asyncio apps: `AsyncRepository`, the operations of
`Repository` (`fulltext_jobs.repository`), each a coroutine, with the same
promises, the same checks of its arguments (`fulltext_jobs.port`, shared
with `Repository`) and the same errors. tests/test_port.py holds the two
ports to the same methods and signatures.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta

from fulltext_jobs.audit import (
    DEFAULT_CLOCK_TOLERANCE,
    DEFAULT_EXAMPLES,
    DEFAULT_RESCUE_AFTER,
    AuditProblem,
    AuditSettings,
)
from fulltext_jobs.domain import (
    DEFAULT_SWEEP_INTERVAL,
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
    AsyncHold,
    ReadyListener,
    audit_args,
    cancel_args,
    cannot_cancel,
    cannot_depend,
    cannot_hold,
    cannot_prioritize,
    cannot_steer,
    claim_ready_args,
    controls_args,
    count_unqueued_args,
    create_job_for_unqueued_args,
    depend_args,
    dependencies_args,
    enqueue_new_args,
    enqueue_unqueued_args,
    get_fulltext_args,
    get_ready_job_args,
    handed_out,
    has_destination_args,
    heartbeat_args,
    held_outcomes,
    hold_ready_args,
    lag_args,
    limit_args,
    list_jobs_args,
    listen_args,
    listen_for_cancels_args,
    moved_on,
    moved_on_but,
    next_due_args,
    pause_args,
    prioritize_args,
    queue_health_args,
    release_unleased_args,
    renamed_keyword,
    rescue_expired_jobs_args,
    resume_args,
    retry_args,
    save_fulltext_args,
    save_many_args,
    stats_args,
    take_cancel_requests_args,
    take_rate_tokens_args,
    undepend_args,
)
from fulltext_jobs.rate_limit import RateTokens
from fulltext_jobs.retry import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY

__all__ = ["AsyncRepository"]


class AsyncRepository(abc.ABC):
    """The port for asyncio apps: the operations of `Repository`, each a
    coroutine, with the same promises and the same errors."""

    async def get_fulltext(self, job_id: uuid.UUID | str) -> FullText:
        """As `Repository.get_fulltext`."""
        return await self._get_fulltext(get_fulltext_args(job_id))

    async def save_fulltext(self, job: FullText) -> None:
        """As `Repository.save_fulltext`."""
        checked = save_fulltext_args(job)
        await self._save_fulltext(checked)
        job.version = checked.version + 1

    async def create_job_for_unqueued(self, destination: str, *, priority: int = 0) -> FullText:
        """As `Repository.create_job_for_unqueued`."""
        return await self._create_job_for_unqueued(
            *create_job_for_unqueued_args(destination, priority)
        )

    async def get_ready_job(self, destination: str) -> FullText:
        """As `Repository.get_ready_job`."""
        return await self._get_ready_job(get_ready_job_args(destination))

    async def enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None = None,
        progress: Callable[[int], object] | None = None,
        priority: int = 0,
    ) -> int:
        """As `Repository.enqueue_unqueued`; `progress` is a plain function."""
        destination, limit, progress, priority = enqueue_unqueued_args(
            destination, limit, progress, priority
        )
        return await self._enqueue_unqueued(
            destination, limit=limit, progress=progress, priority=priority
        )

    async def claim_ready(self, destination: str, n: int) -> list[FullText]:
        """As `Repository.claim_ready`."""
        return await self._claim_ready(*claim_ready_args(destination, n))

    async def save_many(self, jobs: Iterable[FullText], *, atomic: bool = True) -> None:
        """As `Repository.save_many`."""
        originals, checked, atomic = save_many_args(jobs, atomic)
        if atomic:
            if checked:
                await self._save_many(checked)
            moved_on(originals)
            return
        refused = await self._save_each(checked) if checked else set()
        moved_on_but(originals, refused)

    @asynccontextmanager
    async def hold_ready(self, destination: str, n: int) -> AsyncIterator[list[FullText]]:
        """As `Repository.hold_ready`, as an async context manager
        (`async with repo.hold_ready(d, n) as jobs:`)."""
        destination, n = hold_ready_args(destination, n)
        async with self._hold_ready(destination, n) as hold:
            handed = handed_out(hold.jobs)
            yield list(hold.jobs)
            moved, checked, finished_as_held = held_outcomes(hold.jobs, handed)
            # The copies hold no token, as the row holds none: the
            # compare-and-swap finds the row's own.
            refused = await hold.write(checked, finished_as_held) if checked else set()
        moved_on_but(moved, refused)

    def _hold_ready(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        n: int,  # noqa: ARG002 - for adapters
    ) -> AbstractAsyncContextManager[AsyncHold]:
        """As `Repository._hold_ready`, yielding an `AsyncHold` (whose
        `write` is awaited); the base class cannot hold jobs."""
        raise cannot_hold(self)

    async def enqueue_new(
        self,
        destination: str,
        *,
        sweep_interval: timedelta = DEFAULT_SWEEP_INTERVAL,
        priority: int = 0,
    ) -> int:
        """As `Repository.enqueue_new`."""
        return await self._enqueue_new(*enqueue_new_args(destination, sweep_interval, priority))

    async def has_destination(self, destination: str) -> bool:
        """As `Repository.has_destination`."""
        return await self._has_destination(has_destination_args(destination))

    async def count_unqueued(self, destination: str) -> int:
        """As `Repository.count_unqueued`."""
        return await self._count_unqueued(count_unqueued_args(destination))

    async def stats(
        self, destination: str | None = None, *, unqueued: bool = True
    ) -> list[DestinationStats]:
        """As `Repository.stats`."""
        return await self._stats(*stats_args(destination, unqueued))

    async def lag(self, destination: str) -> timedelta | None:
        """As `Repository.lag`."""
        return await self._lag(lag_args(destination))

    async def heartbeat(self, job: FullText) -> datetime:
        """As `Repository.heartbeat`."""
        lease = await self._heartbeat(heartbeat_args(job))
        job.lease_expires = lease
        return lease

    async def rescue_expired(
        self, destination: str | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> int:
        """As `Repository.rescue_expired`."""
        return len(await self.rescue_expired_jobs(destination, max_attempts=max_attempts))

    async def rescue_expired_jobs(
        self, destination: str | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> list[uuid.UUID]:
        """As `Repository.rescue_expired_jobs`."""
        return sorted(
            await self._rescue_expired(*rescue_expired_jobs_args(destination, max_attempts))
        )

    async def retry(
        self,
        destination: str,
        *,
        statuses: Iterable[JobStatus | str] = (JobStatus.FAILED, JobStatus.SKIPPED),
        item_ids: Iterable[str] | None = None,
    ) -> int:
        """As `Repository.retry`."""
        return await self._retry(*retry_args(destination, statuses, item_ids))

    async def list_jobs(
        self,
        destination: str,
        *,
        statuses: Iterable[JobStatus | str] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[FullText]:
        """As `Repository.list_jobs`."""
        return await self._list_jobs(*list_jobs_args(destination, statuses, limit, after))

    @abc.abstractmethod
    async def _list_jobs(
        self,
        destination: str,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: str | None,
    ) -> list[FullText]:
        """As `Repository._list_jobs`."""

    # --- delays and rate limits -------------------------------------

    async def next_due(self, destination: str) -> datetime | None:
        """As `Repository.next_due`."""
        return await self._next_due(next_due_args(destination))

    async def take_rate_tokens(
        self, destination: str, rate: float, n: int = 1, *, burst: int = 1
    ) -> RateTokens:
        """As `Repository.take_rate_tokens`."""
        return await self._take_rate_tokens(*take_rate_tokens_args(destination, rate, n, burst))

    @abc.abstractmethod
    async def _next_due(self, destination: str) -> datetime | None:
        """As `Repository._next_due`."""

    @abc.abstractmethod
    async def _take_rate_tokens(
        self, destination: str, rate: float, n: int, burst: int
    ) -> RateTokens:
        """As `Repository._take_rate_tokens`."""

    # --- waiting for work -------------------------------------

    async def listen(self, destination: str) -> ReadyListener | None:
        """As `Repository.listen`: a `ReadyListener` (whose `wait` blocks:
        call it from a thread, as the `Worker`'s listener thread does), or
        None if this store cannot announce ready jobs (then callers poll).

        The base class returns None, and so does `AsyncSqlAlchemyRepository`:
        the PostgreSQL listener needs a blocking connection of its own, which
        an engine of the asyncio drivers does not give.
        """
        return await self._listen(listen_args(destination))

    async def _listen(self, destination: str) -> ReadyListener | None:  # noqa: ARG002 - for adapters
        """As `Repository._listen`; the base class cannot announce, so None."""
        return None

    # --- cancel requests --------------------------------------

    async def take_cancel_requests(self, jobs: Iterable[FullText]) -> dict[uuid.UUID, str]:
        """As `Repository.take_cancel_requests`."""
        return await self._take_cancel_requests(take_cancel_requests_args(jobs))

    async def listen_for_cancels(self, destination: str) -> ReadyListener | None:
        """As `Repository.listen_for_cancels` (None from
        `AsyncSqlAlchemyRepository`, as for `listen`)."""
        return await self._listen_for_cancels(listen_for_cancels_args(destination))

    async def _take_cancel_requests(
        self,
        claims: list[tuple[uuid.UUID, uuid.UUID]],  # noqa: ARG002 - for adapters
    ) -> dict[uuid.UUID, str]:
        """As `Repository._take_cancel_requests`."""
        return {}

    async def _listen_for_cancels(self, destination: str) -> ReadyListener | None:  # noqa: ARG002 - for adapters
        """As `Repository._listen_for_cancels`."""
        return None

    # --- audit ---------------------------------------------------

    @renamed_keyword("rescue_interval", "rescue_after")
    async def audit(
        self,
        destination: str | None = None,
        *,
        rescue_after: timedelta = DEFAULT_RESCUE_AFTER,
        clock_tolerance: timedelta = DEFAULT_CLOCK_TOLERANCE,
        max_attempts: int = DEFAULT_RETRY.max_attempts,
        examples: int = DEFAULT_EXAMPLES,
    ) -> list[AuditProblem]:
        """As `Repository.audit`."""
        return await self._audit(
            *audit_args(destination, rescue_after, clock_tolerance, max_attempts, examples)
        )

    async def release_unleased(
        self, older_than: timedelta, destination: str | None = None
    ) -> list[uuid.UUID]:
        """As `Repository.release_unleased`."""
        return await self._release_unleased(*release_unleased_args(older_than, destination))

    async def queue_health(self, destination: str | None = None) -> QueueHealth:
        """As `Repository.queue_health`."""
        return await self._queue_health(queue_health_args(destination))

    async def _queue_health(self, destination: str | None) -> QueueHealth:  # noqa: ARG002 - for adapters
        """As `Repository._queue_health`; the base class reports nothing."""
        return not_reported(type(self).__name__)

    @abc.abstractmethod
    async def _audit(self, destination: str | None, settings: AuditSettings) -> list[AuditProblem]:
        """As `Repository._audit`."""

    @abc.abstractmethod
    async def _release_unleased(
        self, older_than: timedelta, destination: str | None
    ) -> list[uuid.UUID]:
        """As `Repository._release_unleased`."""

    # --- steering the fleet ----------------------------------------------

    async def controls(self, destination: str) -> DestinationControls:
        """As `Repository.controls`."""
        return await self._controls(controls_args(destination))

    async def list_controls(self) -> list[DestinationControls]:
        """As `Repository.list_controls`."""
        return await self._list_controls()

    async def limit(
        self,
        destination: str,
        *,
        max_running: int | Keep | None = KEEP,
        rate: float | Keep | None = KEEP,
        burst: int | Keep | None = KEEP,
    ) -> DestinationControls:
        """As `Repository.limit`."""
        return await self._limit(*limit_args(destination, max_running, rate, burst))

    async def pause(
        self,
        destination: str,
        *,
        until: datetime | None = None,
        reason: str | None = None,
        at_least: bool = False,
    ) -> DestinationControls:
        """As `Repository.pause`."""
        destination, until, reason, at_least = pause_args(
            destination, until, reason, at_least=at_least
        )
        return await self._pause(destination, until, reason, at_least=at_least)

    async def resume(self, destination: str) -> DestinationControls:
        """As `Repository.resume`."""
        return await self._resume(resume_args(destination))

    async def cancel(
        self,
        destination: str,
        *,
        item_ids: Iterable[str] | None = None,
        all_ready: bool = False,
        reason: str | None = None,
    ) -> Cancellation:
        """As `Repository.cancel`."""
        return await self._cancel(*cancel_args(destination, item_ids, all_ready, reason))

    async def prioritize(self, destination: str, *, item_ids: Iterable[str], priority: int) -> int:
        """As `Repository.prioritize`."""
        return await self._prioritize(*prioritize_args(destination, item_ids, priority))

    async def _prioritize(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        item_ids: list[str],  # noqa: ARG002 - for adapters
        priority: int,  # noqa: ARG002 - for adapters
    ) -> int:
        """As `Repository._prioritize`."""
        raise cannot_prioritize(self)

    async def depend(
        self,
        destination: str,
        *,
        on: str | Iterable[str],
        statuses: Iterable[JobStatus | str] = DEFAULT_ON_STATUSES,
    ) -> list[Dependency]:
        """As `Repository.depend`."""
        return await self._depend(*depend_args(destination, on, statuses))

    async def undepend(
        self, destination: str, *, on: str | Iterable[str] | None = None
    ) -> list[Dependency]:
        """As `Repository.undepend`."""
        return await self._undepend(*undepend_args(destination, on))

    async def dependencies(self, destination: str | None = None) -> list[Dependency]:
        """As `Repository.dependencies`."""
        return await self._dependencies(dependencies_args(destination))

    async def _depend(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        upstreams: list[str],  # noqa: ARG002 - for adapters
        statuses: frozenset[JobStatus],  # noqa: ARG002 - for adapters
    ) -> list[Dependency]:
        """As `Repository._depend`."""
        raise cannot_depend(self)

    async def _undepend(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        upstreams: list[str] | None,  # noqa: ARG002 - for adapters
    ) -> list[Dependency]:
        """As `Repository._undepend`."""
        raise cannot_depend(self)

    async def _dependencies(self, destination: str | None) -> list[Dependency]:  # noqa: ARG002 - for adapters
        """As `Repository._dependencies`."""
        raise cannot_depend(self)

    async def _cancel(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        item_ids: list[str] | None,  # noqa: ARG002 - for adapters
        error: str,  # noqa: ARG002 - for adapters
    ) -> Cancellation:
        """As `Repository._cancel`."""
        raise cannot_cancel(self)

    async def _controls(self, destination: str) -> DestinationControls:
        """As `Repository._controls`."""
        return DestinationControls(destination)

    async def _list_controls(self) -> list[DestinationControls]:
        """As `Repository._list_controls`."""
        return []

    async def _pause(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        until: datetime | None,  # noqa: ARG002 - for adapters
        reason: str | None,  # noqa: ARG002 - for adapters
        *,
        at_least: bool,  # noqa: ARG002 - for adapters
    ) -> DestinationControls:
        """As `Repository._pause`."""
        raise cannot_steer(self)

    async def _resume(self, destination: str) -> DestinationControls:  # noqa: ARG002 - for adapters
        """As `Repository._resume`."""
        raise cannot_steer(self)

    async def _limit(
        self,
        destination: str,  # noqa: ARG002 - for adapters
        limits: Limits,  # noqa: ARG002 - for adapters
    ) -> DestinationControls:
        """As `Repository._limit`."""
        raise cannot_steer(self)

    # --- what the adapter implements, given checked arguments --------------

    @abc.abstractmethod
    async def _get_fulltext(self, job_id: uuid.UUID) -> FullText:
        """As `Repository._get_fulltext`."""

    @abc.abstractmethod
    async def _save_fulltext(self, job: FullText) -> None:
        """As `Repository._save_fulltext`."""

    @abc.abstractmethod
    async def _create_job_for_unqueued(self, destination: str, priority: int) -> FullText:
        """As `Repository._create_job_for_unqueued`."""

    @abc.abstractmethod
    async def _get_ready_job(self, destination: str) -> FullText:
        """As `Repository._get_ready_job`."""

    @abc.abstractmethod
    async def _enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None,
        progress: Callable[[int], object] | None,
        priority: int,
    ) -> int:
        """As `Repository._enqueue_unqueued`."""

    @abc.abstractmethod
    async def _claim_ready(self, destination: str, n: int) -> list[FullText]:
        """As `Repository._claim_ready`."""

    @abc.abstractmethod
    async def _save_many(self, jobs: list[FullText]) -> None:
        """As `Repository._save_many`."""

    @abc.abstractmethod
    async def _save_each(self, jobs: list[FullText]) -> set[uuid.UUID]:
        """As `Repository._save_each`."""

    @abc.abstractmethod
    async def _enqueue_new(self, destination: str, sweep_interval: timedelta, priority: int) -> int:
        """As `Repository._enqueue_new`."""

    @abc.abstractmethod
    async def _has_destination(self, destination: str) -> bool:
        """As `Repository._has_destination`."""

    @abc.abstractmethod
    async def _count_unqueued(self, destination: str) -> int:
        """As `Repository._count_unqueued`."""

    @abc.abstractmethod
    async def _lag(self, destination: str) -> timedelta | None:
        """As `Repository._lag`."""

    @abc.abstractmethod
    async def _stats(self, destination: str | None, unqueued: bool) -> list[DestinationStats]:  # noqa: FBT001 - checked by the port
        """As `Repository._stats`."""

    @abc.abstractmethod
    async def _heartbeat(self, job: FullText) -> datetime:
        """As `Repository._heartbeat`."""

    @abc.abstractmethod
    async def _rescue_expired(self, destination: str | None, max_attempts: int) -> list[uuid.UUID]:
        """As `Repository._rescue_expired`."""

    @abc.abstractmethod
    async def _retry(
        self, destination: str, statuses: frozenset[JobStatus], item_ids: frozenset[str] | None
    ) -> int:
        """As `Repository._retry`."""
