"""Whether a read goes to a replica, read from the server itself
(`fulltext_jobs.replica` says what each figure means and how it is
told). PostgreSQL only: a SQLite database is its own primary."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

from fulltext_jobs.replica import ReadSource
from fulltext_jobs.sql.engine import create_engine, parse_url
from fulltext_jobs.sql.errors import translated

__all__ = ["read_source", "read_source_on"]

# One row: in recovery; seconds since the last replayed commit (NULL if
# none, or on a primary); received WAL not replayed, in bytes (NULL on a
# primary); WAL receivers, and the status of the one there is (NULL where
# the role may not see it). clock_timestamp(): now() is the transaction's
# start, which a long read transaction would hold back.
_SOURCE: Final = sa.text(
    """
    SELECT pg_is_in_recovery(),
           extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()),
           pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),
           (SELECT count(*) FROM pg_stat_wal_receiver),
           (SELECT min(status) FROM pg_stat_wal_receiver)
    """
)


def read_source_on(connection: Connection) -> ReadSource:
    """What the server behind `connection` says of itself (see
    `ReadSource`). Raises the driver's errors: the caller translates."""
    if connection.dialect.name != "postgresql":
        return ReadSource(replica=False)
    replica, age, pending, receivers, status = connection.execute(_SOURCE).one()
    if not replica:
        return ReadSource(replica=False)
    return ReadSource(
        replica=True,
        last_replay_age=None if age is None else timedelta(seconds=max(0.0, float(age))),
        replay_pending=None if pending is None else max(0, int(pending)),
        receiving=False if not receivers else (None if status is None else status == "streaming"),
    )


def read_source(bind: Engine | str | URL) -> ReadSource:
    """Whether the database behind `bind` (an engine or a URL) is a replica,
    and if so how far behind it may be: see `ReadSource`. On SQLite, never a
    replica.

    Raises `InvalidInput` for a bad URL and `StoreError` if the server
    cannot be reached.
    """
    if isinstance(bind, Engine):
        if bind.dialect.name != "postgresql":
            return ReadSource(replica=False)
        engine = bind
    else:
        parsed = parse_url(bind)
        if parsed.get_backend_name() != "postgresql":
            return ReadSource(replica=False)
        engine = create_engine(parsed, poolclass=NullPool)
    try:
        with translated("read the server's recovery state"), engine.connect() as connection:
            return read_source_on(connection)
    finally:
        if engine is not bind:
            engine.dispose()
