"""Queue health read from the database (what it means, and the rules that
judge it: `fulltext_jobs.health`): for `Repository.queue_health`, `fulltext-jobs
audit`, the dashboard and `/metrics`.

PostgreSQL. What holds the vacuum horizon back, from views any role may
read: `pg_stat_activity` (the transactions of this database's other
sessions, autovacuum's own aside, and WAL senders carrying a standby's
`hot_standby_feedback`), `pg_prepared_xacts` and `pg_replication_slots`. A
role without `pg_read_all_stats` sees another role's session without its
`xact_start` or `state` but with its `backend_xmin`: such a holder is
reported by the age of its `xmin` alone, and `unseen_sessions` counts them.
The jobs table's rows and (auto)vacuum times come from `pg_stat_user_tables`,
and autovacuum's trigger for it from its `reloptions` and the server's
settings. Ages are measured on the database's clock, never mixed with the
ledger's. Statistics are read fresh: `pg_stat_clear_snapshot()` first, so a
reading inside a long transaction does not see the snapshot of its start.

On a replica (a hot standby) the horizon is the replica's own sessions, and
the jobs table's statistics are not read: each server keeps its own, and a
standby's are empty (`notes` says so).

SQLite has one writer and no old row versions to vacuum: the horizon does
not apply, and of the table only the live rows are counted.

Delayed jobs ahead, everywhere: per destination with ready jobs waiting for
a retry (`overview.delayed_jobs`, which reads the ready jobs along their
partial index), the first due job's `seq` (`overview.next_due`, as the
claim finds it), then the ready jobs before it counted along the ready
index (`destination, seq`), at most `DELAYED_AHEAD_COUNTED` of them. A
destination with none waiting costs nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fulltext_jobs.domain import JobStatus
from fulltext_jobs.health import (
    DELAYED_AHEAD_COUNTED,
    DelayedAhead,
    HolderKind,
    HorizonHolder,
    QueueHealth,
    TableHealth,
)
from fulltext_jobs.sql.errors import translated
from fulltext_jobs.sql.overview import Overview, delayed_jobs, has_status, next_due
from fulltext_jobs.sql.schema import tables_for

__all__ = ["read_health", "read_queue_health"]

# Each row one holder: its kind, name, age in seconds (or NULL), the age
# of its xmin in transactions (or NULL), state and application.
_HOLDERS: Final = sa.text(
    """
    SELECT 'transaction', 'pid ' || pid,
           extract(epoch FROM clock_timestamp() - xact_start),
           greatest(age(backend_xmin), age(backend_xid)),
           state, application_name
      FROM pg_stat_activity
     WHERE pid <> pg_backend_pid()
       AND datname = current_database()
       AND backend_type IS DISTINCT FROM 'autovacuum worker'
       AND (xact_start IS NOT NULL OR backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
    UNION ALL
    SELECT 'standby_feedback', 'pid ' || pid, NULL, age(backend_xmin), state, application_name
      FROM pg_stat_activity
     WHERE backend_type = 'walsender' AND datname IS NULL AND backend_xmin IS NOT NULL
    UNION ALL
    SELECT 'prepared_transaction', gid,
           extract(epoch FROM clock_timestamp() - prepared), age(transaction), NULL, owner::text
      FROM pg_prepared_xacts
     WHERE database = current_database()
    UNION ALL
    SELECT 'replication_slot', slot_name::text, NULL, age(xmin),
           CASE WHEN active THEN 'active' ELSE 'inactive' END, slot_type
      FROM pg_replication_slots
     WHERE xmin IS NOT NULL
    """
)

# Sessions of this database this role may not inspect.
_UNSEEN: Final = sa.text(
    """
    SELECT count(*) FROM pg_stat_activity
     WHERE datname = current_database() AND query = '<insufficient privilege>'
    """
)

_TABLE: Final = sa.text(
    """
    SELECT s.n_live_tup, s.n_dead_tup,
           s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
           extract(epoch FROM clock_timestamp() - greatest(s.last_vacuum, s.last_autovacuum)),
           c.reltuples, c.reloptions,
           current_setting('autovacuum'),
           current_setting('autovacuum_vacuum_threshold'),
           current_setting('autovacuum_vacuum_scale_factor')
      FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
     WHERE s.schemaname = :schema AND s.relname = :table
    """
)

#: How PostgreSQL spells a boolean storage option that is off.
_OFF: Final = frozenset({"false", "f", "off", "no", "n", "0"})

_REPLICA_NOTE: Final = (
    "read from a replica: the transactions shown are the replica's own (with "
    "hot_standby_feedback they hold the primary's vacuum back too); the jobs table's "
    "row and vacuum statistics are each server's own and not replicated: read them on "
    "the primary"
)

_SQLITE_NOTE: Final = (
    "SQLite: not applicable: one writer at a time and no old row versions, so no "
    "transaction holds vacuum back and there are no dead rows; live rows are counted"
)


def read_queue_health(
    connection: Connection, now: datetime, destination: str | None = None
) -> QueueHealth:
    """The queue's health as seen on `connection` (PostgreSQL or SQLite),
    judging what is due at `now` (the ledger's clock), for `destination` or
    every destination. Raises the driver's errors: the caller translates."""
    delayed = delayed_jobs(connection, now)
    names = [name for name in sorted(delayed) if destination in (None, name)]
    first_due = {name: _first_due_seq(connection, name, now) for name in names}
    return _reading(connection, {name: delayed[name][0] for name in names}, first_due)


def read_health(engine: Engine, overview: Overview) -> QueueHealth:
    """The queue's health for the dashboard, reusing what `overview` read
    (each destination's jobs waiting for a retry and its next due job).
    Raises `StoreError` if the database cannot be read."""
    counts = {
        row.destination: row.waiting_for_retry.count
        for row in overview.destinations
        if row.waiting_for_retry.count
    }
    first_due = {
        row.destination: None if row.next_ready is None else row.next_ready.seq
        for row in overview.destinations
    }
    with translated("read the queue health"), engine.connect() as connection:
        return _reading(connection, counts, first_due)


def _reading(
    connection: Connection, delayed: Mapping[str, int], first_due: Mapping[str, int | None]
) -> QueueHealth:
    ahead = tuple(
        DelayedAhead(name, count, _ahead(connection, name, first_due.get(name)))
        for name, count in sorted(delayed.items())
    )
    if connection.dialect.name != "postgresql":
        # The jobs as the triggers count them (migration 0019): the same
        # figure as counting the table, without reading it.
        counts = tables_for(connection.dialect.name).status_counts
        live = connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(counts.c.jobs), 0))
        ).scalar_one()
        return QueueHealth(
            store=connection.dialect.name,
            horizon=None,
            table=TableHealth(live_rows=live),
            delayed=ahead,
            notes=(_SQLITE_NOTE,),
        )
    connection.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
    replica = bool(connection.execute(sa.text("SELECT pg_is_in_recovery()")).scalar_one())
    holders = sorted(
        (_holder(row) for row in connection.execute(_HOLDERS)),
        key=lambda h: (h.age or timedelta(-1), h.xmin_age or -1),
        reverse=True,
    )
    return QueueHealth(
        store="postgresql",
        horizon=tuple(holders),
        table=None if replica else _table(connection),
        delayed=ahead,
        unseen_sessions=connection.execute(_UNSEEN).scalar_one(),
        notes=(_REPLICA_NOTE,) if replica else (),
    )


def _first_due_seq(connection: Connection, destination: str, now: datetime) -> int | None:
    row = next_due(connection, destination, now)
    return None if row is None else row.seq


def _ahead(connection: Connection, destination: str, first_due: int | None) -> int:
    """The ready jobs of `destination` enqueued before its first due one
    (whose `seq` is `first_due`; None: none is due, so none is ahead),
    counted along the ready index up to `DELAYED_AHEAD_COUNTED`. All of
    them wait for a retry: the first due one is the first that does not."""
    if first_due is None:
        return 0
    ft = tables_for(connection.dialect.name).fulltext
    before = (
        sa.select(ft.c.seq)
        .where(
            ft.c.destination == destination,
            has_status(ft, JobStatus.READY),
            ft.c.seq < first_due,
        )
        .limit(DELAYED_AHEAD_COUNTED)
        .subquery()
    )
    return int(connection.execute(sa.select(sa.func.count()).select_from(before)).scalar_one())


def _holder(row: sa.Row[Any]) -> HorizonHolder:
    kind, name, age, xmin_age, state, application = tuple(row)
    return HorizonHolder(
        kind=HolderKind(str(kind)),
        name=str(name),
        age=None if age is None else timedelta(seconds=max(0.0, float(str(age)))),
        xmin_age=None if xmin_age is None else int(str(xmin_age)),
        state=None if state is None else str(state),
        application=str(application) if application else None,
    )


def _table(connection: Connection) -> TableHealth | None:
    ft = tables_for(connection.dialect.name).fulltext
    row = connection.execute(_TABLE, {"schema": ft.schema, "table": ft.name}).one_or_none()
    if row is None:  # pragma: no cover - the table is there once migrated
        return None
    (live, dead, vacuum, autovacuum, analyze, autoanalyze, since, reltuples, options) = row[:9]
    enabled, threshold, scale = row[9:]
    return TableHealth(
        live_rows=live,
        dead_rows=dead,
        last_vacuum=vacuum,
        last_autovacuum=autovacuum,
        last_analyze=analyze,
        last_autoanalyze=autoanalyze,
        since_vacuum=None if since is None else timedelta(seconds=max(0.0, float(since))),
        autovacuum_trigger=autovacuum_trigger(
            options or [], enabled=enabled, threshold=threshold, scale=scale, rows=reltuples
        ),
    )


def autovacuum_trigger(
    options: list[str], *, enabled: str, threshold: str, scale: str, rows: float
) -> int | None:
    """How many dead rows make autovacuum vacuum a table of `rows` rows (the
    planner's count; below 0: never counted), with the table's storage
    `options` (`name=value`) over the server's settings, as PostgreSQL
    decides it: threshold plus scale factor times rows. None if autovacuum
    is off for the table or the server."""
    own = dict(option.split("=", 1) for option in options if "=" in option)
    if enabled != "on" or own.get("autovacuum_enabled", "true").lower() in _OFF:
        return None
    base = float(own.get("autovacuum_vacuum_threshold", threshold))
    factor = float(own.get("autovacuum_vacuum_scale_factor", scale))
    return int(base + factor * max(0.0, float(rows)))
