"""Engines set up the way the ledger needs them, and driver errors translated.

SQLite needs three things for many processes to share one file: WAL (readers
do not block the writer), a busy timeout, and `BEGIN IMMEDIATE` for every
transaction. A deferred `BEGIN` takes the write lock only at the first
write, and that upgrade fails at once with "database is locked" instead of
waiting, because SQLite does not call the busy handler for it.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from fulltext_jobs._defaults import DATABASE_URL_ENV, DEFAULT_DATABASE_URL
from fulltext_jobs._lazy import IfImported
from fulltext_jobs.errors import InvalidInput, MissingDependency
from fulltext_jobs.sql.schema import JOBS_SCHEMA

if TYPE_CHECKING:
    import psycopg

    # Only for annotations: SQLAlchemy's asyncio extension needs greenlet,
    # which comes with the `async` extra, not with a plain install.
    from sqlalchemy.ext.asyncio import AsyncEngine
else:
    # Only to test errors against: SQLite needs no psycopg (see `_lazy`).
    psycopg = IfImported("psycopg")

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "configure_sqlite",
    "create_async_engine",
    "create_engine",
    "parse_url",
    "ping_idle_connections",
    "quiet_lost_pipelines",
    "require_asyncio",
]

SQLITE_BUSY_TIMEOUT_MS: Final = 60_000

#: What to install for the async adapter (greenlet and aiosqlite).
ASYNC_EXTRA_ADVICE: Final = "pip install 'fulltext-jobs[async]'"

#: A pooled PostgreSQL connection idle this long is tested before use.
IDLE_PING_SECONDS: Final = 5.0


def parse_url(url: str | URL) -> URL:
    """Parse a database URL, naming psycopg 3 as PostgreSQL's driver.

    `postgresql://` and `postgres://` mean `postgresql+psycopg://` (SQLAlchemy
    would otherwise look for psycopg2). Raises `InvalidInput` for a URL that
    is not one of PostgreSQL's or SQLite's, or that holds a NUL byte or a
    lone surrogate (which no driver can pass on).
    """
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError) as exc:
        msg = f"not a database URL: {url!r}"
        raise InvalidInput(msg) from exc
    for part in _url_parts(parsed):
        # Checked here, or the first connect fails with a bare ValueError
        # (SQLite's file name) or UnicodeEncodeError (every driver).
        if "\x00" in part:
            msg = f"the database URL {_shown(parsed)} holds a NUL byte, which no name can"
            raise InvalidInput(msg)
        if not part.isascii():
            try:
                part.encode("utf-8")
            except UnicodeEncodeError:
                msg = f"the database URL {_shown(parsed)} is not valid Unicode (a lone surrogate)"
                raise InvalidInput(msg) from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in {"postgresql", "sqlite"}:
        msg = (
            f"unsupported database {backend!r} in URL "
            f"{parsed.render_as_string(hide_password=True)!r}: "
            "use postgresql+psycopg://... or sqlite:///..."
        )
        raise InvalidInput(msg)
    return parsed


def _shown(url: URL) -> str:
    """`url` quoted for a message, its password hidden."""
    try:
        return repr(url.render_as_string(hide_password=True))
    except UnicodeEncodeError:  # a lone surrogate, which quoting cannot encode
        return f"for {url.drivername} (host {url.host!a}, database {url.database!a})"


def _url_parts(url: URL) -> Iterator[str]:
    """Every piece of text in `url`, its query's values included."""
    for part in (url.drivername, url.username, url.password, url.host, url.database):
        if isinstance(part, str):
            yield part
    for key, value in url.query.items():
        yield key
        yield from (value,) if isinstance(value, str) else value


def create_engine(url: str | URL, **kwargs: Any) -> Engine:  # noqa: ANN401 - passed through to SQLAlchemy
    """An engine for `url`, set up for the ledger.

    PostgreSQL engines test a pooled connection that has been idle for a
    while before handing it out (see `ping_idle_connections`), so a restart
    while the app was idle costs no failed call. SQLite engines get WAL, a busy
    timeout and `BEGIN IMMEDIATE` (see `configure_sqlite`). Extra keyword
    arguments go to `sqlalchemy.create_engine`. Raises `InvalidInput` for a
    bad URL or an unknown driver.
    """
    parsed = parse_url(url)
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        msg = f"cannot open {parsed.render_as_string(hide_password=True)!r}: {exc}"
        raise InvalidInput(msg) from exc
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    elif not kwargs.get("pool_pre_ping"):
        ping_idle_connections(engine)
    return engine


def require_asyncio() -> None:
    """Check that SQLAlchemy's asyncio extension can run: it needs greenlet,
    which comes with the `async` extra, not with a plain install.

    Raises `MissingDependency` naming the extra. Modules that use the
    extension import it inside functions, after this check, so that a plain
    install imports the package and only the async adapter asks for more.
    """
    try:
        importlib.import_module("greenlet")
    except ImportError as exc:
        msg = f"the async adapter needs greenlet: {ASYNC_EXTRA_ADVICE}"
        raise MissingDependency(msg) from exc


def create_async_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:  # noqa: ANN401 - passed through to SQLAlchemy
    """An asyncio engine for `url`, set up as `create_engine` sets up its
    engines: psycopg 3's async mode for `postgresql://` URLs, aiosqlite for
    `sqlite://` ones (with WAL, a busy timeout and `BEGIN IMMEDIATE`).

    Raises `MissingDependency` if greenlet or aiosqlite (the `async` extra:
    `pip install 'fulltext-jobs[async]'`) is needed and not installed, and
    `InvalidInput` for a bad URL or a driver that is not an asyncio one.
    """
    require_asyncio()
    from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine  # noqa: PLC0415

    parsed = parse_url(url)
    if parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    try:
        engine = sa_create_async_engine(parsed, **kwargs)
    except ImportError as exc:
        url_text = parsed.render_as_string(hide_password=True)
        msg = f"cannot open {url_text!r}: {exc}; {ASYNC_EXTRA_ADVICE}"
        raise MissingDependency(msg) from exc
    except (
        sa.exc.ArgumentError,
        sa.exc.InvalidRequestError,  # a driver that is not an asyncio one
        sa.exc.NoSuchModuleError,
    ) as exc:
        msg = f"cannot open {parsed.render_as_string(hide_password=True)!r}: {exc}"
        raise InvalidInput(msg) from exc
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine.sync_engine)
    elif not kwargs.get("pool_pre_ping"):
        ping_idle_connections(engine.sync_engine)
    return engine


def _note_checkin(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    record.info["fulltext_jobs_checkin"] = time.monotonic()


def _ping_if_idle(
    dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: object
) -> None:
    last_used = record.info.get("fulltext_jobs_checkin")
    if last_used is None or time.monotonic() - last_used < IDLE_PING_SECONDS:
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT 1")
        # Outside autocommit the ping opened a transaction: end it.
        dbapi_connection.rollback()
    except psycopg.Error as exc:
        # The pool discards this connection and checks out another.
        raise sa.exc.DisconnectionError from exc
    finally:
        cursor.close()


def ping_idle_connections(engine: Engine) -> None:
    """Make the engine test a pooled connection before use if it has sat
    idle for `IDLE_PING_SECONDS` or more, and replace it if it is dead.

    `pool_pre_ping` pings before every use, a round trip per call; a worker
    that calls all the time keeps its connections alive and needs none. A
    connection that idled through a server restart is still replaced before
    anyone uses it. Idempotent.
    """
    if not event.contains(engine, "checkout", _ping_if_idle):
        event.listen(engine, "checkin", _note_checkin)
        event.listen(engine, "checkout", _ping_if_idle)


class _LostPipelineFilter(logging.Filter):
    """Drops psycopg's "error ignored terminating <psycopg.Pipeline [BAD]>"
    warning when the pipeline's connection is lost. psycopg logs it when a
    pipeline ends inside an exception: here, the loss of the connection
    itself, which the caller already receives as a retryable `StoreError`.
    The second report of the same loss is noise; any other is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("error ignored terminating"):
            return True
        pipeline = record.args[0] if isinstance(record.args, tuple) and record.args else None
        connection = getattr(pipeline, "_conn", None)
        lost = bool(getattr(connection, "closed", False) or getattr(connection, "broken", False))
        return not lost


_LOST_PIPELINE_FILTER: Final = _LostPipelineFilter()


def quiet_lost_pipelines() -> None:
    """Stop psycopg from logging a lost connection a second time when a
    pipeline (`save_many`'s) ends with it (see `_LostPipelineFilter`).
    Idempotent."""
    psycopg_log = logging.getLogger("psycopg")
    if _LOST_PIPELINE_FILTER not in psycopg_log.filters:
        psycopg_log.addFilter(_LOST_PIPELINE_FILTER)


def _sqlite_on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Hand transaction control to SQLAlchemy's "begin" event below; the
    # driver's own implicit BEGIN is the deferred kind.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def configure_sqlite(engine: Engine) -> None:
    """Give a SQLite engine WAL, a busy timeout and `BEGIN IMMEDIATE`.

    Idempotent. Affects every transaction on the engine, the app's too: each
    takes the write lock when it begins and so never fails on upgrading it.
    Tables declared in the schema `jobs` (as `fulltext_jobs.sql.orm`'s read
    models are) are looked up in the main database, SQLite having no
    schemas.
    Connections already pooled are discarded so that all get the settings.
    Raises `InvalidInput` for anything but an `Engine`.
    """
    if not isinstance(engine, Engine):
        msg = f"expected a SQLAlchemy Engine, got {type(engine).__name__}"
        raise InvalidInput(msg)
    if engine.dialect.name != "sqlite" or event.contains(engine, "connect", _sqlite_on_connect):
        return
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    # SQLite has no schemas: tables declared in `jobs` (the read models of
    # `fulltext_jobs.sql.orm`) live in the main database.
    engine.update_execution_options(schema_translate_map={JOBS_SCHEMA: None})
    engine.dispose()
