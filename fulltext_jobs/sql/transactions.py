"""How each call of the SQLAlchemy adapter reaches the database: a
transaction of its own on a pooled connection of the engine (in autocommit
on PostgreSQL when the call is one statement), or a savepoint in the
caller's session; the schema check on an engine's first call; and the
translation of every driver error at the edge of each (`translated`).
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fulltext_jobs._lazy import if_imported
from fulltext_jobs.domain import FullText
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.sql.compiled import Compiled
from fulltext_jobs.sql.errors import translated
from fulltext_jobs.sql.migrate import SchemaState, check_schema

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
else:
    # Only to test objects against: a command on SQLite never imports the
    # ORM (see `_lazy`).
    Session = if_imported("sqlalchemy.orm", "Session")

__all__ = ["SQLITE_LEASE_PER_BUSY_TIMEOUT", "Transactions", "check_same_kind", "session_engine"]

#: What each engine's database was found to be, learnt by the first call on
#: it: a repository per request (or per `in_session` view) costs no second
#: check. A deploy migrates first and then starts new processes, so a
#: process never needs to see its engine's database change revision. Weak
#: keys: an engine that is garbage-collected is forgotten with it.
_SCHEMAS: weakref.WeakKeyDictionary[Engine, SchemaState] = weakref.WeakKeyDictionary()

#: On SQLite the lease must be at least this many busy timeouts (see
#: `_check_sqlite_lease`).
SQLITE_LEASE_PER_BUSY_TIMEOUT: Final = 2

_log = logging.getLogger(__name__)


class Transactions:
    """The calls of one repository on `engine`, or, once `joined` to a
    caller's session, in that session's transaction.

    `lease` is the repository's (checked against SQLite's busy timeout on
    the first call); `creator_lock` is the statement that takes the Go
    original's creator lock, taken by creators when `mixed_fleet` is True,
    or, when it is None, on a database adopted from the original.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        lease: timedelta,
        creator_lock: sa.Executable,
        mixed_fleet: bool | None,
        session: Session | None = None,
    ) -> None:
        self._engine = engine
        # A call that is one statement needs no BEGIN and COMMIT: on
        # PostgreSQL it runs in autocommit, saving two round trips. SQLite
        # keeps its transactions, which take the write lock up front.
        self._autocommit_engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else None
        )
        self._lease = lease
        self._creator_lock = creator_lock
        self._mixed_fleet = mixed_fleet
        self._session = session

    @property
    def joined(self) -> bool:
        """Whether the calls run in a caller's session."""
        return self._session is not None

    def in_session(self, session: Session) -> Transactions:
        """These calls, in the caller's `session` (see
        `SqlAlchemyRepository.in_session`). Raises `InvalidInput` if
        `session` is not a Session bound to an engine of this database
        kind."""
        check_same_kind(session_engine(session), self._engine)
        joined = copy.copy(self)
        joined._session = session  # noqa: SLF001 - a copy of this very class
        return joined

    @contextmanager
    def connection(
        self,
        action: str,
        *,
        single_statement: bool = False,
        duplicate: str | FullText | None = None,
    ) -> Iterator[sa.Connection]:
        """A connection in a transaction that commits on leaving and rolls
        back on an exception (`single_statement`: in autocommit where that
        saves round trips). A clash on (item_id, destination) becomes
        `DuplicateJob` (with the message `duplicate`), other driver errors
        `StoreError`."""
        if self._session is not None:
            # The app's pending writes go first.
            with translated(f"{action} (flushing the session)", apps_own=True):
                self._session.flush()
        with translated(action, duplicate=duplicate):
            if self._session is not None:
                with self._in_session() as connection:
                    yield connection
            elif single_statement and self._autocommit_engine is not None:
                if not self._schema_checked:
                    self._check_schema()
                with self._autocommit_engine.connect() as connection:
                    yield connection
            else:
                if not self._schema_checked:
                    self._check_schema()
                with self._engine.begin() as connection:
                    yield connection

    def run_alone(
        self,
        hot: Compiled,
        params: dict[str, Any],
        action: str,
        *,
        duplicate: str | FullText | None = None,
    ) -> tuple[Any, ...] | None:
        """Run one of the hot path's statements as a call of its own, in
        autocommit, on a connection of the engine's pool; return its first
        row, if any. Not in a session (see `connection`).

        What `connection(single_statement=True)` and `Compiled.run` do,
        without a SQLAlchemy Connection around the pool's: one checked out
        of the autocommit engine sets the isolation level on checkout and
        resets it on checkin, with several times the Python work of the
        pool's connection alone (see `Compiled.run_alone`). Errors are
        translated as `connection` translates them."""
        with translated(action, duplicate=duplicate):
            if not self._schema_checked:
                self._check_schema()
            pooled = self._engine.raw_connection()
            try:
                return hot.run_alone(pooled, params)
            finally:
                pooled.close()

    @contextmanager
    def _in_session(self) -> Iterator[sa.Connection]:
        """The session's connection, inside a savepoint released on leaving
        and rolled back to on an exception."""
        session = self._session
        if session is None:  # pragma: no cover - only called in a session
            msg = "not joined to a session"
            raise RuntimeError(msg)
        with session.begin_nested():
            connection = session.connection()
            if not self._schema_checked:
                self._check_schema(connection)
            yield connection

    def lock_out_original_creators(self, connection: sa.Connection) -> None:
        """In a mixed fleet (see the class docstring), take the Go original's
        creator lock for the rest of the transaction."""
        mixed = self._mixed_fleet
        if mixed is None:
            state = _SCHEMAS.get(self._engine)
            mixed = state is not None and state.adopted
        if mixed and connection.dialect.name == "postgresql":
            connection.execute(self._creator_lock)

    def _check_schema(self, connection: sa.Connection | None = None) -> None:
        """Check the database's schema once per engine (see
        `fulltext_jobs.sql.migrate.check_schema`), on `connection` if given."""
        if connection is None:
            with self._engine.connect() as own:
                self._check_schema(own)
            return
        state = check_schema(connection, self._url())
        if connection.dialect.name == "sqlite":
            _check_sqlite_lease(connection, self._lease)
        _SCHEMAS[self._engine] = state

    def schema_state(self) -> SchemaState:
        """What the first call on the engine found (checking now if none has
        been made)."""
        state = _SCHEMAS.get(self._engine)
        if state is None:
            with translated("checking the schema"):
                self._check_schema()
            state = _SCHEMAS[self._engine]
        return state

    @property
    def _schema_checked(self) -> bool:
        return self._engine in _SCHEMAS

    def _url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)


def _check_sqlite_lease(connection: sa.Connection, lease: timedelta) -> None:
    """Log a warning if `lease` is too short for SQLite's busy timeout.

    On SQLite a save or a heartbeat waits for the one write lock for up to
    the busy timeout, and that wait counts against the lease: a heartbeat
    due every third of the lease that waits the whole busy timeout must
    still land before the lease runs out, or the job is rescued and run
    twice (the late save is refused, so the ledger stays right). Hence a
    lease of at least `SQLITE_LEASE_PER_BUSY_TIMEOUT` busy timeouts. A
    warning, not an error: a test on a fake clock, or a database with one
    writer, may want a shorter one."""
    busy_ms = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    if not isinstance(busy_ms, int) or busy_ms <= 0:
        return
    needed = timedelta(milliseconds=busy_ms * SQLITE_LEASE_PER_BUSY_TIMEOUT)
    if lease < needed:
        _log.warning(
            "a lease of %g s is short for SQLite, whose busy timeout is %g s: a save or "
            "heartbeat waiting for the write lock may arrive after the lease ran out, and "
            "the job be run twice; use a lease of %g s or more, or a shorter busy timeout",
            lease.total_seconds(),
            busy_ms / 1000,
            needed.total_seconds(),
        )


def in_autocommit(connection: sa.Connection) -> bool:
    """Whether `connection`'s driver connection commits every statement on
    its own (an engine made with isolation_level="AUTOCOMMIT"), where
    SQLAlchemy's `begin()` opens no transaction: on PostgreSQL, psycopg's
    `autocommit`. (SQLite's transactions are the `BEGIN IMMEDIATE` of
    `configure_sqlite`, not the driver's.)"""
    dbapi_connection = connection.connection.dbapi_connection
    return connection.dialect.name == "postgresql" and bool(
        getattr(dbapi_connection, "autocommit", False)
    )


def check_same_kind(session_engine: Engine, own: Engine) -> None:
    """Raise `InvalidInput` unless a session's engine is of the repository's
    database kind."""
    if session_engine.dialect.name != own.dialect.name:
        msg = (
            f"the session's database is {session_engine.dialect.name}; "
            f"this repository's is {own.dialect.name}"
        )
        raise InvalidInput(msg)


def session_engine(session: object) -> Engine:
    """The engine a session is bound to (through a Connection, if it is
    bound to one); `InvalidInput` if there is none."""
    if not isinstance(session, Session):
        msg = f"expected a Session, not {session!r}"
        raise InvalidInput(msg)
    try:
        bind = session.get_bind()
    except sa.exc.UnboundExecutionError as exc:
        msg = "the session is bound to no engine"
        raise InvalidInput(msg) from exc
    return bind if isinstance(bind, Engine) else bind.engine
