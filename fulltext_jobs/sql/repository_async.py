"""The asyncio adapter: `AsyncRepository` on SQLAlchemy's asyncio extension,
with psycopg 3's async mode on PostgreSQL and aiosqlite on SQLite.

It runs the SQLAlchemy adapter's own operations (`SqlOperations`), the way
SQLAlchemy's asyncio extension runs its own synchronous core: in a
greenlet, whose every wait on the database becomes an `await` on the async
driver. So both adapters share one implementation of every statement,
transaction and error translation, and the contract suite holds them to the
same behaviour; only psycopg's cursor-level hot path is left out, since the
async driver sits behind SQLAlchemy's adaptation.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fulltext_jobs.audit import AuditProblem, AuditSettings
from fulltext_jobs.checks import check_batch_size, check_item_ids
from fulltext_jobs.domain import (
    DEFAULT_LEASE,
    Cancellation,
    DestinationControls,
    DestinationStats,
    FullText,
    JobStatus,
    Limits,
)
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.health import QueueHealth
from fulltext_jobs.pipeline import Dependency
from fulltext_jobs.port import AsyncHold
from fulltext_jobs.rate_limit import RateTokens
from fulltext_jobs.repository_async import AsyncRepository
from fulltext_jobs.sql.engine import require_asyncio
from fulltext_jobs.sql.items import ItemSource
from fulltext_jobs.sql.operations import SqlOperations
from fulltext_jobs.sql.transactions import check_same_kind

if TYPE_CHECKING:
    # SQLAlchemy's asyncio extension needs greenlet (the `async` extra); it is
    # imported where it is used, after `require_asyncio`, so that this module,
    # and the package, import on a plain install.
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["AsyncSqlAlchemyRepository"]

_T = TypeVar("_T")


class AsyncSqlAlchemyRepository(AsyncRepository):
    """An `AsyncRepository` in PostgreSQL or SQLite, through SQLAlchemy's
    asyncio extension.

    `bind` is an `AsyncEngine` (see `fulltext_jobs.create_async_engine`), or
    an `async_sessionmaker` whose engine is used: every call runs in a
    transaction of its own and commits before it returns. `bind` may also be
    an `AsyncSession`, which the repository then joins (see `in_session`).
    The other arguments are `SqlAlchemyRepository`'s.

    Raises `MissingDependency` if the `async` extra is not installed
    (`pip install 'fulltext-jobs[async]'`), and `InvalidInput` for any other
    `bind`, or an engine whose driver is not an asyncio one.
    """

    def __init__(  # noqa: PLR0913 - each is a setting a deployment tunes
        self,
        bind: AsyncEngine | async_sessionmaker[AsyncSession] | AsyncSession,
        *,
        items: ItemSource | sa.FromClause | sa.Select[Any] | type[Any] | None = None,
        clock: Callable[[], datetime] | None = None,
        lease: timedelta = DEFAULT_LEASE,
        enqueue_batch_size: int = 50_000,
        mixed_fleet: bool | None = None,
    ) -> None:
        require_asyncio()
        from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: PLC0415

        session = None
        if isinstance(bind, AsyncSession):
            session, bind = bind, _session_engine(bind)
        if isinstance(bind, async_sessionmaker) and isinstance(bind.kw.get("bind"), AsyncEngine):
            bind = bind.kw["bind"]
        if not isinstance(bind, AsyncEngine):
            msg = (
                "bind must be an AsyncEngine, an async_sessionmaker bound to one or an "
                f"AsyncSession, not {bind!r}"
            )
            raise InvalidInput(msg)
        self._engine = bind
        self._ops = SqlOperations(
            bind.sync_engine,
            items=items,
            clock=clock,
            lease=lease,
            enqueue_batch_size=enqueue_batch_size,
            mixed_fleet=mixed_fleet,
        )
        self._session: AsyncSession | None = session

    def in_session(self, session: AsyncSession) -> AsyncSqlAlchemyRepository:
        """This repository, joined to the caller's `session`, as
        `SqlAlchemyRepository.in_session` joins a Session: each call flushes,
        runs in a SAVEPOINT and never commits; the caller's commit decides.

        Raises `InvalidInput` if `session` is not an AsyncSession bound to an
        engine of this repository's database kind.
        """
        check_same_kind(_session_engine(session).sync_engine, self._engine.sync_engine)
        joined = AsyncSqlAlchemyRepository.__new__(AsyncSqlAlchemyRepository)
        joined._engine, joined._ops, joined._session = self._engine, self._ops, session  # noqa: SLF001 - a new instance of this very class
        return joined

    async def _call(self, operation: Callable[[SqlOperations], _T]) -> _T:
        from sqlalchemy.util import greenlet_spawn  # noqa: PLC0415 - needs greenlet: see require_asyncio

        session = self._session
        if session is None:
            return await greenlet_spawn(operation, self._ops)

        def in_session(sync_session: Session) -> _T:
            return operation(self._ops.in_session(sync_session))

        return await session.run_sync(in_session)

    async def add_items(self, item_ids: Iterable[str], *, batch_size: int = 10_000) -> int:
        """As `SqlAlchemyRepository.add_items`."""
        # In the sync adapter's order, so that a call bad in both ways gets
        # the same error.
        check_batch_size(batch_size)
        ids = check_item_ids(item_ids)  # before the hop: a generator is read here
        return await self._call(lambda ops: ops.add_items(ids, batch_size))

    # The port has checked every argument; each call runs the operation of
    # `SqlOperations` (`fulltext_jobs.sql.operations`).

    async def _get_fulltext(self, job_id: uuid.UUID) -> FullText:
        return await self._call(lambda ops: ops.get_fulltext(job_id))

    async def _save_fulltext(self, job: FullText) -> None:
        await self._call(lambda ops: ops.save_fulltext(job))

    async def _create_job_for_unqueued(self, destination: str, priority: int) -> FullText:
        return await self._call(lambda ops: ops.create_job_for_unqueued(destination, priority))

    async def _get_ready_job(self, destination: str) -> FullText:
        return await self._call(lambda ops: ops.get_ready_job(destination))

    async def _enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None,
        progress: Callable[[int], object] | None,
        priority: int,
    ) -> int:
        return await self._call(
            lambda ops: ops.enqueue_unqueued(
                destination, limit=limit, progress=progress, priority=priority
            )
        )

    async def _claim_ready(self, destination: str, n: int) -> list[FullText]:
        return await self._call(lambda ops: ops.claim_ready(destination, n))

    async def _save_many(self, jobs: list[FullText]) -> None:
        await self._call(lambda ops: ops.save_many(jobs))

    @asynccontextmanager
    async def _hold_ready(self, destination: str, n: int) -> AsyncIterator[AsyncHold]:
        # The operations' own hold (the port has checked the arguments,
        # and checks the copies on the way out), entered, written and left
        # in greenlets of SQLAlchemy's bridge: its transaction stays open on
        # the connection in between, while the caller's block awaits.
        from sqlalchemy.util import greenlet_spawn  # noqa: PLC0415 - needs greenlet: see require_asyncio

        session = self._session
        ops = self._ops if session is None else self._ops.in_session(session.sync_session)
        held = ops.hold_ready(destination, n)
        hold = await greenlet_spawn(held.__enter__)

        async def write(checked: list[FullText], finished_as_held: bool) -> set[uuid.UUID]:  # noqa: FBT001 - the port's call
            return await greenlet_spawn(hold.write, checked, finished_as_held)

        try:
            yield AsyncHold(hold.jobs, write)
        except BaseException as exc:
            if not await greenlet_spawn(held.__exit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            await greenlet_spawn(held.__exit__, None, None, None)

    async def _save_each(self, jobs: list[FullText]) -> set[uuid.UUID]:
        return await self._call(lambda ops: ops.save_each(jobs))

    async def _enqueue_new(self, destination: str, sweep_interval: timedelta, priority: int) -> int:
        return await self._call(lambda ops: ops.enqueue_new(destination, sweep_interval, priority))

    async def _has_destination(self, destination: str) -> bool:
        return await self._call(lambda ops: ops.has_destination(destination))

    async def _count_unqueued(self, destination: str) -> int:
        return await self._call(lambda ops: ops.count_unqueued(destination))

    async def _lag(self, destination: str) -> timedelta | None:
        return await self._call(lambda ops: ops.lag(destination))

    async def _stats(self, destination: str | None, unqueued: bool) -> list[DestinationStats]:  # noqa: FBT001 - checked by the port
        return await self._call(lambda ops: ops.stats(destination, unqueued))

    async def _controls(self, destination: str) -> DestinationControls:
        return await self._call(lambda ops: ops.controls(destination))

    async def _list_controls(self) -> list[DestinationControls]:
        return await self._call(lambda ops: ops.list_controls())

    async def _pause(
        self, destination: str, until: datetime | None, reason: str | None, *, at_least: bool
    ) -> DestinationControls:
        return await self._call(
            lambda ops: ops.pause(destination, until, reason, at_least=at_least)
        )

    async def _resume(self, destination: str) -> DestinationControls:
        return await self._call(lambda ops: ops.resume(destination))

    async def _limit(self, destination: str, limits: Limits) -> DestinationControls:
        return await self._call(lambda ops: ops.limit(destination, limits))

    async def _list_jobs(
        self,
        destination: str,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: str | None,
    ) -> list[FullText]:
        return await self._call(lambda ops: ops.list_jobs(destination, statuses, limit, after))

    async def _next_due(self, destination: str) -> datetime | None:
        return await self._call(lambda ops: ops.next_due(destination))

    async def _take_rate_tokens(
        self, destination: str, rate: float, n: int, burst: int
    ) -> RateTokens:
        return await self._call(lambda ops: ops.take_rate_tokens(destination, rate, n, burst))

    async def _heartbeat(self, job: FullText) -> datetime:
        return await self._call(lambda ops: ops.heartbeat(job))

    async def _rescue_expired(self, destination: str | None, max_attempts: int) -> list[uuid.UUID]:
        return await self._call(lambda ops: ops.rescue_expired(destination, max_attempts))

    async def _retry(
        self, destination: str, statuses: frozenset[JobStatus], item_ids: frozenset[str] | None
    ) -> int:
        return await self._call(lambda ops: ops.retry(destination, statuses, item_ids))

    async def _audit(self, destination: str | None, settings: AuditSettings) -> list[AuditProblem]:
        return await self._call(lambda ops: ops.audit(destination, settings))

    async def _queue_health(self, destination: str | None) -> QueueHealth:
        return await self._call(lambda ops: ops.queue_health(destination))

    async def _release_unleased(
        self, older_than: timedelta, destination: str | None
    ) -> list[uuid.UUID]:
        return await self._call(lambda ops: ops.release_unleased(older_than, destination))

    async def _cancel(
        self, destination: str, item_ids: list[str] | None, error: str
    ) -> Cancellation:
        return await self._call(lambda ops: ops.cancel(destination, item_ids, error))

    async def _prioritize(self, destination: str, item_ids: list[str], priority: int) -> int:
        return await self._call(lambda ops: ops.prioritize(destination, item_ids, priority))

    async def _depend(
        self, destination: str, upstreams: list[str], statuses: frozenset[JobStatus]
    ) -> list[Dependency]:
        return await self._call(lambda ops: ops.depend(destination, upstreams, statuses))

    async def _undepend(self, destination: str, upstreams: list[str] | None) -> list[Dependency]:
        return await self._call(lambda ops: ops.undepend(destination, upstreams))

    async def _dependencies(self, destination: str | None) -> list[Dependency]:
        return await self._call(lambda ops: ops.dependencies(destination))

    async def _take_cancel_requests(
        self, claims: list[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, str]:
        return await self._call(lambda ops: ops.take_cancel_requests(claims))


def _session_engine(session: object) -> AsyncEngine:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession  # noqa: PLC0415 - see require_asyncio

    if not isinstance(session, AsyncSession):
        msg = f"expected an AsyncSession, not {session!r}"
        raise InvalidInput(msg)
    bind = session.bind
    if isinstance(bind, AsyncEngine):
        return bind
    if bind is not None:
        return bind.engine
    msg = "the session is bound to no engine"
    raise InvalidInput(msg)
