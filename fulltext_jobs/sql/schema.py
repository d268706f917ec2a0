"""The declared tables, one set per dialect.

The migrations in `migrations/versions` build the schema; these declarations
say what it must look like, and a test checks that the two agree (alembic's
`compare_metadata` finds nothing). The repository reads and writes through
them.

PostgreSQL keeps the original's layout: schema `jobs`, table `fulltext` with
its six columns in the original's order, the `job_statuses` enum in the
default schema and the unique pair `jobs_fulltext_unique`. Columns this
library adds come after the six and have defaults, so the original's
positional `INSERT INTO jobs.fulltext VALUES ($1, ..., $6)` still works.
SQLite has no schemas: the same tables live in the main database.

Why Core tables and explicit row-to-entity functions rather than an
imperative ORM mapping: there is one flat table, the hot statements (claim,
create) are single Core statements whose SQL we want to read and control,
and `FullText` stays a plain dataclass that a session cannot track, expire
or flush behind the caller's back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "JOBS_SCHEMA",
    "SCHEMA_REVISION",
    "STATUS_VALUES",
    "VERSION_TABLE",
    "WINDOW_TABLE",
    "Tables",
    "UTCDateTime",
    "tables_for",
]

#: The alembic revision these declarations correspond to. The repository
#: accepts a database at this revision, or at a newer one whose
#: compatibility window (`WINDOW_TABLE`) still admits code of this one.
SCHEMA_REVISION: Final = "0019"

#: Alembic's version table for fulltext-jobs' own migrations; named so that it
#: cannot collide with the `alembic_version` table of the app that uses us.
VERSION_TABLE: Final = "fulltext_jobs_alembic_version"

#: Per revision, the oldest revision whose code can use a database at it
#: (migration 0005); beside the version table, in the default schema.
WINDOW_TABLE: Final = "fulltext_jobs_schema_window"

JOBS_SCHEMA: Final = "jobs"

#: The enum's values, in the order the original created them.
STATUS_VALUES: Final = ("ready", "running", "skipped", "failed", "finished")

SUPPORTED_DIALECTS: Final = frozenset({"postgresql", "sqlite"})

#: The statuses a job ends a run in, as the index of ended jobs (0019) and
#: every query it serves spell them (the same text, so that SQLite's
#: planner sees the index's condition in the query's).
ENDED: Final = "status IN ('finished', 'skipped', 'failed')"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware datetime in UTC on every backend, exact to the microsecond.

    PostgreSQL stores `timestamptz`; SQLite, which has no time zones, stores
    the UTC wall time and gets its zone back on reading.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002 - the signature is SQLAlchemy's
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Tables:
    """The declared tables for one dialect."""

    metadata: sa.MetaData
    fulltext: sa.Table
    items: sa.Table
    enqueue_cursor: sa.Table
    schema_window: sa.Table
    rate_limit: sa.Table
    #: PostgreSQL only (None on SQLite).
    holds: sa.Table | None
    controls: sa.Table
    cancels: sa.Table
    dependencies: sa.Table
    unblocked: sa.Table
    status_counts: sa.Table
    #: PostgreSQL only (None on SQLite).
    status_deltas: sa.Table | None


def status_type() -> sa.Enum:
    """The `job_statuses` type: a native enum on PostgreSQL, a checked
    string on SQLite."""
    return sa.Enum(
        *STATUS_VALUES,
        name="job_statuses",
        create_constraint=True,
        validate_strings=True,
    )


@functools.cache
def tables_for(dialect_name: str) -> Tables:
    """The tables as they stand for `dialect_name` ("postgresql" or "sqlite")."""
    if dialect_name not in SUPPORTED_DIALECTS:
        msg = f"fulltext-jobs supports PostgreSQL and SQLite, not {dialect_name}"
        raise ValueError(msg)
    postgresql = dialect_name == "postgresql"
    schema = JOBS_SCHEMA if postgresql else None

    def where(condition: sa.ColumnElement[bool]) -> dict[str, Any]:
        # A partial index's condition, named for this dialect only: naming
        # the other's makes SQLAlchemy import that dialect to check the
        # keyword, and a command on SQLite would import PostgreSQL's.
        return {f"{dialect_name}_where": condition}

    metadata = sa.MetaData()
    # The enqueue sequence orders claims (oldest first) and, with the partial
    # index, keeps a claim's cost flat as finished jobs pile up. PostgreSQL
    # fills it from an identity; SQLite from the rowid, by a trigger.
    seq = (
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False)
        if postgresql
        else sa.Column("seq", sa.Integer, nullable=True)
    )
    fulltext = sa.Table(
        "fulltext",
        metadata,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("started", UTCDateTime),
        sa.Column("finished", UTCDateTime),
        sa.Column("status", status_type(), nullable=False),
        seq,
        # Claims (0003). The lease is in no index, so that a heartbeat, which
        # changes nothing else, can be a HOT update on PostgreSQL.
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claim_token", sa.Uuid),
        sa.Column("lease_expires", UTCDateTime),
        sa.Column("last_error", sa.Text),
        # Row versions (0007): the compare-and-swap of saves. In no index,
        # like the lease; a trigger counts the writes of other writers.
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        # Delayed readiness (0008): a ready job is not claimed before it (a
        # retry after a backoff). The ready jobs are indexed apart by it
        # (0011): due ones by `seq`, delayed ones by when they come due.
        sa.Column("not_before", UTCDateTime),
        # Back-offs (0015): how often the job was put back for later at its
        # handler's word (`RetryAfter`) without an attempt counted.
        sa.Column("backoffs", sa.Integer, nullable=False, server_default="0"),
        # Priorities (0016): claims take the highest first, then the oldest.
        # A smallint, from -32,767 to 32,767 (`fulltext_jobs.checks.
        # check_priority`): its negation, which the claim order indexes,
        # must fit the type too.
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
        # When the job last became ready to claim (0017; see
        # `FullText.ready_at`). PostgreSQL's default, `now()`, is what the
        # Go original's inserts, which name six columns, record; SQLite
        # cannot add a column with one.
        sa.Column("ready_at", UTCDateTime, server_default=sa.func.now() if postgresql else None),
        sa.UniqueConstraint("item_id", "destination", name="jobs_fulltext_unique"),
        schema=schema,
    )
    # Every ready job: how the code of revisions 0006 to 0010, still in the
    # window, claims. A later contract revision drops it.
    sa.Index(
        "fulltext_ready_idx",
        fulltext.c.destination,
        fulltext.c.seq,
        **where(fulltext.c.status == "ready"),
    )
    # The ready jobs as the claims read them (0011): the due queue in `seq`
    # order, and the delayed jobs in the order they come due, so that a
    # claim reads no delayed job that is not yet due.
    sa.Index(
        "fulltext_due_idx",
        fulltext.c.destination,
        fulltext.c.seq,
        **where(sa.and_(fulltext.c.status == "ready", fulltext.c.not_before.is_(None))),
    )
    # The due queue in claim order (0016): the highest priority first.
    # On PostgreSQL on the negated priority, so that the claim floor, one
    # ascending row comparison over (-priority, seq), is a range of it;
    # SQLite, which has no floor (and whose reflection reads no expression
    # index), on `priority DESC`. Claims read it instead of
    # `fulltext_due_idx`, which the code of 0011 to 0014 claims through and
    # `next_due` still probes.
    sa.Index(
        "fulltext_due_priority_idx",
        fulltext.c.destination,
        -fulltext.c.priority if postgresql else fulltext.c.priority.desc(),
        fulltext.c.seq,
        **where(sa.and_(fulltext.c.status == "ready", fulltext.c.not_before.is_(None))),
    )
    sa.Index(
        "fulltext_delayed_idx",
        fulltext.c.destination,
        fulltext.c.not_before,
        fulltext.c.seq,
        **where(sa.and_(fulltext.c.status == "ready", fulltext.c.not_before.is_not(None))),
    )
    # The ready jobs by when they became ready (0017): a destination's
    # oldest is the first entry, so its lag is one probe.
    sa.Index(
        "fulltext_ready_at_idx",
        fulltext.c.destination,
        fulltext.c.ready_at,
        **where(fulltext.c.status == "ready"),
    )
    # Jobs a retry returns to ready (0010): `retry DEST` and the look at a
    # destination's failures read it instead of every job. Claims and
    # finishes do not pay for it: a write adds an entry only for a job that
    # becomes failed or skipped.
    retryable = fulltext.c.status.in_(["failed", "skipped"])
    sa.Index(
        "fulltext_retryable_idx",
        fulltext.c.destination,
        **where(retryable),
    )
    sa.Index(
        "fulltext_running_idx",
        fulltext.c.destination,
        **where(fulltext.c.status == "running"),
    )
    # The ended jobs by when they ended (0019): the dashboard's jobs ended
    # per minute read the window's entries only. A write adds one only for
    # a job that ends.
    sa.Index(
        "fulltext_ended_idx",
        fulltext.c.finished,
        fulltext.c.destination,
        fulltext.c.status,
        **where(fulltext.c.status.in_(["finished", "skipped", "failed"])),
    )
    # The default item source. Not "items": on SQLite, which has no schemas,
    # that would collide with an app's own table of that name (0006).
    # Its insertion order (0010) is the producer's watermark for new items,
    # whatever their ids: `seq` on PostgreSQL, the rowid on SQLite.
    items = sa.Table(
        "fulltext_items",
        metadata,
        sa.Column("id", sa.Text, primary_key=True),
        *(
            [
                # Filled by its default, `nextval` of a sequence the column
                # owns (which reflection, and so alembic's comparison, reads
                # as no default: a serial). Null for the items that were
                # there before 0010, which the producer's first call sweeps
                # anyway: filling them would have rewritten the table under
                # an exclusive lock.
                sa.Column("seq", sa.BigInteger),
                sa.Index(
                    "fulltext_items_seq_idx",
                    "seq",
                    postgresql_where=sa.text("seq IS NOT NULL"),
                ),
            ]
            if postgresql
            else []
        ),
        schema=schema,
    )
    # The largest item id create_job_for_unqueued has handed out, per
    # destination; the row is also the lock that serialises its creators.
    enqueue_cursor = sa.Table(
        "enqueue_cursor",
        metadata,
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Text, nullable=False),
        # The producer's (0010): how far its watermark over the items'
        # insertion order has got, and when its last full sweep began.
        sa.Column("item_seq", sa.BigInteger),
        sa.Column("swept_at", UTCDateTime),
        schema=schema,
    )
    # Each destination's start-rate bucket (0009; see
    # `fulltext_jobs.rate_limit`): `tat` is its theoretical arrival time in
    # seconds since 1970, `granted` what the last take handed out (PostgreSQL
    # before 18 cannot return a row's old values, which the count needs).
    # The row's lock serialises the takers of one destination.
    rate_limit = sa.Table(
        "fulltext_rate_limit",
        metadata,
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("tat", sa.Double, nullable=False),
        sa.Column("granted", sa.Integer, nullable=False),
        schema=schema,
    )
    # The transaction mode's holds, while they are held (0012; see
    # `Statements.record_hold`): a row left behind with its jobs unlocked
    # and unchanged is a holder that died. PostgreSQL only: on SQLite the
    # hold's write lock keeps every other connection from writing the row.
    holds = (
        sa.Table(
            "fulltext_holds",
            metadata,
            sa.Column("id", sa.Uuid, primary_key=True),
            sa.Column("destination", sa.Text, nullable=False),
            sa.Column("job_ids", sa.ARRAY(sa.Uuid), nullable=False),
            sa.Column("versions", sa.ARRAY(sa.Integer), nullable=False),
            sa.Column("held_at", UTCDateTime, nullable=False),
            schema=schema,
        )
        if postgresql
        else None
    )
    # What an operator set for a destination (0013): a pause in force while
    # `paused_at` is set and `paused_until` null or ahead, and a cap on its
    # running jobs; and (0015) the start rate its workers keep to, with its
    # burst. Every claim probes it by its primary key.
    controls = sa.Table(
        "fulltext_controls",
        metadata,
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("paused_at", UTCDateTime),
        sa.Column("paused_until", UTCDateTime),
        sa.Column("pause_reason", sa.Text),
        sa.Column("max_running", sa.Integer),
        sa.Column("rate", sa.Double),
        sa.Column("rate_burst", sa.Integer),
        schema=schema,
    )
    # Cancel requests for running jobs (0014): the claim asked to stop and
    # the error to skip its job with; its worker takes the row (see
    # `Statements.take_cancel_requests`).
    cancels = sa.Table(
        "fulltext_cancels",
        metadata,
        sa.Column("job_id", sa.Uuid, primary_key=True),
        sa.Column("claim_token", sa.Uuid, nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        schema=schema,
    )
    # Which destinations follow which (0018): one row per status a
    # destination's dependency on an upstream names. The trigger looks it up
    # by (upstream, status) at every job's end.
    dependencies = sa.Table(
        "fulltext_dependencies",
        metadata,
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("upstream", sa.Text, primary_key=True),
        sa.Column("status", status_type(), primary_key=True),
        sa.Index("fulltext_dependencies_upstream_idx", "upstream", "status"),
        schema=schema,
    )
    # The items an upstream job let follow (0018), written by the trigger in
    # the transaction that ended the job, taken by the follower's producer.
    unblocked = sa.Table(
        "fulltext_unblocked",
        metadata,
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Text, primary_key=True),
        sa.Column("upstream", sa.Text, primary_key=True),
        schema=schema,
    )
    # The jobs per destination and status, kept by triggers (0019; see
    # `Statements.count_by_status`): on PostgreSQL a folded sum plus the
    # deltas each writing statement appends, so that no writer waits on
    # another's counter row; on SQLite, one writer at a time, the sum alone.
    status_counts = sa.Table(
        "fulltext_status_counts",
        metadata,
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("status", status_type(), primary_key=True),
        sa.Column("jobs", sa.BigInteger, nullable=False),
        schema=schema,
    )
    status_deltas = (
        sa.Table(
            "fulltext_status_deltas",
            metadata,
            sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
            sa.Column("destination", sa.Text, nullable=False),
            sa.Column("status", status_type(), nullable=False),
            sa.Column("jobs", sa.BigInteger, nullable=False),
            schema=schema,
        )
        if postgresql
        else None
    )
    # Which library code can use a database at each revision (0005).
    schema_window = sa.Table(
        WINDOW_TABLE,
        metadata,
        sa.Column("revision", sa.Text, primary_key=True),
        sa.Column("oldest_code", sa.Text, nullable=False),
        sa.Column("expand_only", sa.Boolean, nullable=False),
    )
    return Tables(
        metadata=metadata,
        fulltext=fulltext,
        items=items,
        enqueue_cursor=enqueue_cursor,
        schema_window=schema_window,
        rate_limit=rate_limit,
        holds=holds,
        controls=controls,
        cancels=cancels,
        dependencies=dependencies,
        unblocked=unblocked,
        status_counts=status_counts,
        status_deltas=status_deltas,
    )
