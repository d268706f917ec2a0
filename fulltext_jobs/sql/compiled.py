"""Statements compiled once and run straight on psycopg's cursor: the
adapter's hot path on PostgreSQL.

SQLAlchemy's execution layer (events, parameter and result processing, the
compiled cache) costs more Python time than a claim costs the server, so the
statements a worker runs per job go to the driver's cursor directly (see
docs/benchmarks.md for what that is worth). The SQL is still the one
SQLAlchemy compiles from `Statements`. A driver error is raised as it is, for
the caller's `translated` block (`fulltext_jobs.sql.errors`); a lost
connection is first taken out of the pool, as SQLAlchemy's own execution
does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler

from fulltext_jobs._lazy import IfImported
from fulltext_jobs.sql.engine import quiet_lost_pipelines

if TYPE_CHECKING:
    import psycopg
    from psycopg import pq

    from fulltext_jobs.sql.statements import Statements
else:
    # Only to test objects against (see `_lazy`).
    psycopg = IfImported("psycopg")
    pq = IfImported("psycopg.pq")


def compile_for_driver(statement: sa.ClauseElement, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """The SQL of `statement` as `dialect`'s driver takes it, and the values
    of the parameters the statement fixes itself (LIMIT 1, ...); the caller
    supplies the others by name."""
    compiled = cast("SQLCompiler", statement.compile(dialect=dialect))
    fixed = {
        compiled.bind_names[bind]: bind.effective_value
        for bind in compiled.binds.values()
        if not bind.required
    }
    return str(compiled), fixed


#: The key of the cursor `Compiled.run_alone` keeps in a pooled
#: connection's `info`.
_CURSOR: Final = "fulltext_jobs_cursor"


class Compiled:
    """A statement compiled once, run straight on the DBAPI cursor (see the
    module's docstring). A driver error is raised as it is, after a lost
    connection has discarded the pool, as SQLAlchemy does."""

    def __init__(
        self,
        statement: sa.ClauseElement,
        engine: Engine,
        *,
        binary: bool = False,
    ) -> None:
        self.sql, self.defaults = compile_for_driver(statement, engine.dialect)
        if binary:
            # Parameters sent in binary: psycopg dumps a list as an array
            # without quoting each element in Python, which for the arrays
            # of a batch save costs more than the statement's round trip.
            self.sql = re.sub(r"%\((\w+)\)s", r"%(\1)b", self.sql)
        self.engine = engine

    def run(self, connection: sa.Connection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """Execute with `params`; return the first row, if any."""
        rows = self.run_all(connection, params, first=True)
        return rows[0] if rows else None

    def run_alone(
        self, pooled: PoolProxiedConnection, params: dict[str, Any]
    ) -> tuple[Any, ...] | None:
        """Execute with `params` in autocommit on `pooled`, a connection
        just checked out of the engine's pool; return the first row, if any.

        The connection goes back to the autocommit setting it came with
        before this returns: the pool hands it to transactional calls next
        (the app's too), which SQLAlchemy begins implicitly on a connection
        that is not in autocommit. If it cannot (the connection was lost),
        it is invalidated instead: the pool replaces it on its next
        checkout. A SQLAlchemy Connection of an autocommit engine makes the
        same switch and back through its isolation level, with several times
        the Python work per call.
        """
        dbapi_connection = pooled.dbapi_connection
        if dbapi_connection is None:  # pragma: no cover - the connection was just checked out
            msg = "the connection has been invalidated"
            raise sa.exc.ResourceClosedError(msg)
        # An engine made with isolation_level="AUTOCOMMIT" hands out
        # connections in autocommit already: leave them so.
        switched = not dbapi_connection.autocommit
        try:
            if switched:
                dbapi_connection.autocommit = True
            # A cursor kept with the driver connection (the pool clears
            # `info` when it replaces the connection): making one per call
            # costs a few microseconds.
            cursor = pooled.info.get(_CURSOR)
            if cursor is None or cursor.connection is not dbapi_connection:
                cursor = pooled.info[_CURSOR] = dbapi_connection.cursor()
            cursor.execute(self.sql, {**self.defaults, **params})
            # Every statement of the hot path returns rows; fetchone,
            # unlike `description`, builds no column objects.
            row: tuple[Any, ...] | None = cursor.fetchone()
        except psycopg.Error as exc:
            self._drop_if_lost(pooled, exc)
            raise
        finally:
            if switched and pooled.dbapi_connection is not None:
                try:
                    dbapi_connection.autocommit = False
                except psycopg.Error as exc:
                    # Lost, most likely. The statement's outcome stands
                    # (autocommit committed it, or it failed), but the
                    # connection may still be in autocommit: the pool
                    # must not hand it out again.
                    self.engine.pool._invalidate(pooled, exc)  # noqa: SLF001
        return row

    def run_all(
        self, connection: sa.Connection, params: dict[str, Any], *, first: bool = False
    ) -> list[tuple[Any, ...]]:
        """Execute with `params`; return every row (or only the first)."""
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is None:  # pragma: no cover - the connection was just checked out
            msg = "the connection has been invalidated"
            raise sa.exc.ResourceClosedError(msg)
        cursor = self._cursor(connection, dbapi_connection)
        try:
            cursor.execute(self.sql, {**self.defaults, **params})
            rows: list[tuple[Any, ...]] = []
            if cursor.description:
                rows = cursor.fetchmany(1) if first else cursor.fetchall()
        except psycopg.Error as exc:
            self._drop_if_lost(connection, exc)
            raise
        finally:
            cursor.close()
        return rows

    def _cursor(
        self,
        connection: sa.Connection,
        dbapi_connection: Any,  # noqa: ANN401 - the driver's connection
    ) -> Any:  # noqa: ANN401 - the driver's cursor
        """A cursor; a connection the driver already knows to be closed
        raises here, as for any error of the statement."""
        try:
            return dbapi_connection.cursor()
        except psycopg.Error as exc:
            self._drop_if_lost(connection, exc)
            raise

    def _drop_if_lost(
        self, connection: sa.Connection | PoolProxiedConnection, exc: psycopg.Error
    ) -> None:
        """If `exc` left the connection lost (only if the connection says
        so: a lock or statement timeout is an OperationalError too, on a
        healthy connection), invalidate it and discard the pool's idle
        connections: whatever killed one (a server restart, a network cut)
        killed them too, and the next call must not meet them. `connection`
        is a SQLAlchemy Connection or the pool's own. The error itself is
        the caller's to raise, and `translated`'s to classify."""
        pooled = connection.connection if isinstance(connection, sa.Connection) else connection
        dbapi_connection = pooled.dbapi_connection
        lost = bool(getattr(dbapi_connection, "closed", False)) or bool(
            getattr(dbapi_connection, "broken", False)
        )
        # A pipeline (save_many's) that the server's shutdown cut short can
        # leave the connection stuck in pipeline mode, though not yet seen
        # closed ("cannot exit pipeline mode while busy"): nothing more can
        # run on it, not even the rollback, so it is as good as lost.
        pgconn = getattr(dbapi_connection, "pgconn", None)
        lost = lost or (pgconn is not None and pgconn.pipeline_status != pq.PipelineStatus.OFF)
        if lost:
            # What SQLAlchemy's own execution does on a disconnect: mark every
            # connection of the pool older than now as stale (each is replaced
            # on its next checkout, and closed properly), and this one invalid.
            self.engine.pool._invalidate(pooled, exc)  # noqa: SLF001
            if isinstance(connection, sa.Connection):
                # The pool's connection is invalid now; the Connection
                # around it learns so here.
                connection.invalidate(exc)

    def run_many(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> list[bool]:
        """Execute once per row of parameters, pipelined (one round trip);
        return, for each, whether it returned a row."""
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is None:  # pragma: no cover - the connection was just checked out
            msg = "the connection has been invalidated"
            raise sa.exc.ResourceClosedError(msg)
        cursor = self._cursor(connection, dbapi_connection)
        if not isinstance(cursor, psycopg.Cursor):  # pragma: no cover - PostgreSQL is psycopg
            msg = f"expected a psycopg cursor, not {type(cursor).__name__}"
            raise TypeError(msg)
        try:
            cursor.executemany(self.sql, [{**self.defaults, **row} for row in rows], returning=True)
            returned = []
            while True:
                returned.append(bool(cursor.fetchall()))
                if not cursor.nextset():
                    return returned
        except psycopg.Error as exc:
            self._drop_if_lost(connection, exc)
            raise
        finally:
            cursor.close()


class HotPath:
    """The compiled forms of the statements on a worker's hot path."""

    def __init__(self, sql: Statements, engine: Engine) -> None:
        quiet_lost_pipelines()
        self.claim_one = Compiled(sql.claim_one, engine)
        self.insert_job = Compiled(sql.insert_job, engine)
        self.update_job = Compiled(sql.update_job, engine)
        self.update_jobs = Compiled(sql.update_jobs, engine, binary=True)
        self.claim_many = Compiled(sql.claim_many, engine)
        self.hold_ready = Compiled(sql.hold_ready, engine)
        self.claim_capped = Compiled(sql.claim_capped, engine)
        self.hold_capped = Compiled(sql.hold_capped, engine)
        self.write_held = Compiled(sql.write_held, engine, binary=True)
        self.finish_held = Compiled(sql.finish_held, engine, binary=True)
        self.take_rate_tokens = Compiled(sql.take_rate_tokens, engine)
