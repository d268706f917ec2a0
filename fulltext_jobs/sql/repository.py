"""The SQLAlchemy adapter: PostgreSQL (through psycopg 3) and SQLite.

Each call runs in its own short transaction on a pooled connection of the
engine the repository was given (a sessionmaker's engine, if given one), or
in the caller's session; a call that is one statement runs in autocommit on
PostgreSQL (`fulltext_jobs.sql.transactions`). What each operation does in
SQL is in `fulltext_jobs.sql.operations`, which the asyncio adapter runs
too; the statements, with why each is safe under concurrency, are in
`fulltext_jobs.sql.statements`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fulltext_jobs._lazy import if_imported
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
from fulltext_jobs.port import Hold, ReadyListener
from fulltext_jobs.rate_limit import RateTokens
from fulltext_jobs.repository import Repository
from fulltext_jobs.sql.items import ItemSource
from fulltext_jobs.sql.migrate import UPGRADE_ADVICE
from fulltext_jobs.sql.operations import SqlOperations
from fulltext_jobs.sql.transactions import session_engine

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker
else:
    # Only to test objects against: a command on SQLite never imports the
    # ORM (see `_lazy`).
    Session = if_imported("sqlalchemy.orm", "Session")
    sessionmaker = if_imported("sqlalchemy.orm", "sessionmaker")

__all__ = ["UPGRADE_ADVICE", "ItemSource", "SqlAlchemyRepository"]


class SqlAlchemyRepository(Repository):
    """A `Repository` in PostgreSQL or SQLite, through SQLAlchemy 2.

    `bind` is an Engine, or a sessionmaker whose engine is used; every call
    runs in a transaction of its own and commits before it returns. `bind`
    may also be a `Session`: then the repository joins the caller's
    transaction instead (see `in_session`). `items`
    is where the items come from (an `ItemSource`, or anything `ItemSource`
    accepts); by default the `items` table that the migrations create.
    `clock` returns the current time (aware): it stamps `started` and
    leases, so the machines sharing a database need clocks in step to well
    within a lease. `lease` is how long a claim lasts without a heartbeat.
    `enqueue_batch_size` is how many items `enqueue_unqueued` queues per
    transaction. Raises `InvalidInput` for a `clock` that is not callable,
    a `lease` that is not a timedelta above zero and at most `MAX_LEASE`,
    or an `enqueue_batch_size` outside 1 to `MAX_BATCH_SIZE`; each reading
    of the clock is checked before it is used (see
    `fulltext_jobs.repository`). On SQLite the lease should be at least twice
    the busy timeout (a save or heartbeat may wait that long for the write
    lock): the first call logs a warning if it is not.

    `mixed_fleet`: whether creators (`create_job_for_unqueued`,
    `enqueue_unqueued`) also take the Go original's advisory lock
    (`pg_advisory_xact_lock(10)`), so that the original's creators, which
    take it and then search with `NOT EXISTS`, never meet a job of ours
    created under their feet (a duplicate-key error on their side). None,
    the default, means: on a PostgreSQL database adopted from the original
    (`fulltext_jobs.adopt`), off elsewhere. It serialises creators of every
    destination, as the original does, so turn it off once no Go creator is
    left.

    A SQLite engine is given WAL, a busy timeout and `BEGIN IMMEDIATE` (see
    `fulltext_jobs.configure_sqlite`). The first call on an engine checks
    that its database is at a revision this version can use (its own, or a
    newer one inside the compatibility window) and raises
    `SchemaNotMigrated` (upgrade the database) or `SchemaTooNew` (upgrade
    the library), naming what to run, if not.
    """

    def __init__(  # noqa: PLR0913 - each is a setting a deployment tunes
        self,
        bind: Engine | sessionmaker[Session] | Session,
        *,
        items: ItemSource | sa.FromClause | sa.Select[Any] | type[Any] | None = None,
        clock: Callable[[], datetime] | None = None,
        lease: timedelta = DEFAULT_LEASE,
        enqueue_batch_size: int = 50_000,
        mixed_fleet: bool | None = None,
    ) -> None:
        session = None
        if isinstance(bind, Session):
            session, bind = bind, session_engine(bind)
        if isinstance(bind, sessionmaker) and isinstance(bind.kw.get("bind"), Engine):
            bind = bind.kw["bind"]
        if not isinstance(bind, Engine):
            msg = f"bind must be an Engine or a sessionmaker bound to one, not {bind!r}"
            raise InvalidInput(msg)
        self._ops = SqlOperations(
            bind,
            items=items,
            clock=clock,
            lease=lease,
            enqueue_batch_size=enqueue_batch_size,
            mixed_fleet=mixed_fleet,
            session=session,
        )

    def in_session(self, session: Session) -> SqlAlchemyRepository:
        """This repository, joined to the caller's `session`: a cheap view
        that shares everything but the transaction, so an app can build the
        repository once and join each request's session.

        In a session, every call runs on the session's connection inside a
        SAVEPOINT, after flushing the session (so the app's pending writes
        come first). It never commits: the caller does, and the call's effect
        (a claim, a finish, new jobs) commits or rolls back with the app's
        own writes. A call that fails (`DuplicateJob`, `LostClaim`, ...)
        rolls back to its savepoint only: the caller's transaction stays
        usable and holds nothing of the call.

        A failure that can pass (a lost connection, a server restarting, a
        deadlock, a lock wait that timed out) raises a retryable `StoreError`,
        also when it surfaces in the flush of the app's pending writes; the
        app's own errors from that flush (an `IntegrityError` of its table)
        are raised as they are. After a `StoreError` the transaction is
        lost: roll the session back and do the whole unit of work again,
        from the claim (see docs/guide-web-app.md).

        A claim's row lock lasts until the caller commits: other workers pass
        the job over meanwhile (on SQLite, whose locks are per database, they
        wait). Commit soon after the work is done, and do not do long work
        inside the claiming transaction: a long-open transaction holds back
        vacuum for the whole database and slows every claim.

        Raises `InvalidInput` if `session` is not a Session bound to an
        engine of this repository's database kind.
        """
        joined = copy.copy(self)
        joined._ops = self._ops.in_session(session)  # noqa: SLF001 - a copy of this very class
        return joined

    def add_items(self, item_ids: Iterable[str], *, batch_size: int = 10_000) -> int:
        """Add items to the default `items` table; return how many were new.

        Ids already there are left alone. All ids are checked before anything
        is written: a bad one raises `InvalidInput` and adds nothing. Each
        batch of `batch_size` ids commits on its own, so a failure part way
        through (`StoreError`) leaves the earlier batches added. Raises
        `InvalidInput` for a `batch_size` that is not a whole number from 1
        to 1,000,000, for `item_ids` given as one str, and when the
        repository reads an app's own item source, which is the app's to
        fill.
        """
        check_batch_size(batch_size)
        return self._ops.add_items(check_item_ids(item_ids), batch_size)

    # The port has checked every argument; each operation is
    # `SqlOperations`' (`fulltext_jobs.sql.operations`).

    def _get_fulltext(self, key: uuid.UUID) -> FullText:
        return self._ops.get_fulltext(key)

    def _save_fulltext(self, stored: FullText) -> None:
        self._ops.save_fulltext(stored)

    def _save_many(self, checked: list[FullText]) -> None:
        self._ops.save_many(checked)

    def _save_each(self, checked: list[FullText]) -> set[uuid.UUID]:
        return self._ops.save_each(checked)

    def _heartbeat(self, job: FullText) -> datetime:
        return self._ops.heartbeat(job)

    def _rescue_expired(self, destination: str | None, max_attempts: int) -> list[uuid.UUID]:
        return self._ops.rescue_expired(destination, max_attempts)

    def _retry(
        self, destination: str, statuses: frozenset[JobStatus], item_ids: frozenset[str] | None
    ) -> int:
        return self._ops.retry(destination, statuses, item_ids)

    def _create_job_for_unqueued(self, destination: str, priority: int) -> FullText:
        return self._ops.create_job_for_unqueued(destination, priority)

    def _enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None,
        progress: Callable[[int], object] | None,
        priority: int,
    ) -> int:
        return self._ops.enqueue_unqueued(
            destination, limit=limit, progress=progress, priority=priority
        )

    def _enqueue_new(self, destination: str, sweep_interval: timedelta, priority: int) -> int:
        return self._ops.enqueue_new(destination, sweep_interval, priority)

    def _has_destination(self, destination: str) -> bool:
        return self._ops.has_destination(destination)

    def _get_ready_job(self, destination: str) -> FullText:
        return self._ops.get_ready_job(destination)

    def _claim_ready(self, destination: str, n: int) -> list[FullText]:
        return self._ops.claim_ready(destination, n)

    def _hold_ready(self, destination: str, n: int) -> AbstractContextManager[Hold]:
        return self._ops.hold_ready(destination, n)

    def _list_jobs(
        self,
        destination: str,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: str | None,
    ) -> list[FullText]:
        return self._ops.list_jobs(destination, statuses, limit, after)

    def _next_due(self, destination: str) -> datetime | None:
        return self._ops.next_due(destination)

    def _take_rate_tokens(self, destination: str, rate: float, n: int, burst: int) -> RateTokens:
        return self._ops.take_rate_tokens(destination, rate, n, burst)

    def _listen(self, destination: str) -> ReadyListener | None:
        """On PostgreSQL, a listener on a connection of its own (see
        `fulltext_jobs.sql.notifications`); on SQLite, which cannot notify, None."""
        return self._ops.listen(destination)

    def _audit(self, destination: str | None, settings: AuditSettings) -> list[AuditProblem]:
        return self._ops.audit(destination, settings)

    def _queue_health(self, destination: str | None) -> QueueHealth:
        return self._ops.queue_health(destination)

    def _release_unleased(self, older_than: timedelta, destination: str | None) -> list[uuid.UUID]:
        return self._ops.release_unleased(older_than, destination)

    def _count_unqueued(self, destination: str) -> int:
        return self._ops.count_unqueued(destination)

    def _lag(self, destination: str) -> timedelta | None:
        return self._ops.lag(destination)

    def _stats(self, destination: str | None, unqueued: bool) -> list[DestinationStats]:  # noqa: FBT001 - checked by the port
        return self._ops.stats(destination, unqueued)

    def _controls(self, destination: str) -> DestinationControls:
        return self._ops.controls(destination)

    def _list_controls(self) -> list[DestinationControls]:
        return self._ops.list_controls()

    def _pause(
        self, destination: str, until: datetime | None, reason: str | None, *, at_least: bool
    ) -> DestinationControls:
        return self._ops.pause(destination, until, reason, at_least=at_least)

    def _resume(self, destination: str) -> DestinationControls:
        return self._ops.resume(destination)

    def _limit(self, destination: str, limits: Limits) -> DestinationControls:
        return self._ops.limit(destination, limits)

    def _cancel(self, destination: str, item_ids: list[str] | None, error: str) -> Cancellation:
        return self._ops.cancel(destination, item_ids, error)

    def _prioritize(self, destination: str, item_ids: list[str], priority: int) -> int:
        return self._ops.prioritize(destination, item_ids, priority)

    def _depend(
        self, destination: str, upstreams: list[str], statuses: frozenset[JobStatus]
    ) -> list[Dependency]:
        return self._ops.depend(destination, upstreams, statuses)

    def _undepend(self, destination: str, upstreams: list[str] | None) -> list[Dependency]:
        return self._ops.undepend(destination, upstreams)

    def _dependencies(self, destination: str | None) -> list[Dependency]:
        return self._ops.dependencies(destination)

    def _take_cancel_requests(
        self, claims: list[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, str]:
        return self._ops.take_cancel_requests(claims)

    def _listen_for_cancels(self, destination: str) -> ReadyListener | None:
        return self._ops.listen_for_cancels(destination)
