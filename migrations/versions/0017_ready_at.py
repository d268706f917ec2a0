"""When each job became ready: `ready_at`, and the ready jobs indexed by it.

- `ready_at timestamptz` (SQLite: the UTC wall time, as every timestamp),
  appended after the existing columns. The library sets it on every move to
  ready (`fulltext_jobs.domain.FullText.ready_at` says when, and
  `ready_moment` how): enqueue and create, retry, release (for later: the
  moment the job comes due), and the rescues of expired leases and of the
  Go original's unleased claims. A claim returns it, so a worker knows how
  long each job waited.
- `fulltext_ready_at_idx (destination, ready_at) WHERE status = 'ready'`:
  a destination's oldest ready job by `ready_at` is the index's first entry
  for it, so the lag (`Repository.lag`, `stats`, the dashboard,
  `/metrics`) costs one probe per destination however many jobs the
  ledger holds. Built as 0011 builds its indexes (`CREATE INDEX
  CONCURRENTLY` on PostgreSQL outside a caller's transaction, an invalid
  leftover dropped first); a write adds an entry only for a job that
  becomes ready.

What existing rows get. On PostgreSQL the column's default is `now()`,
which is stable, not volatile: `ADD COLUMN` evaluates it once and keeps the
value in the catalogue, so the table is not rewritten (milliseconds at ten
million rows) and every job stored before the upgrade, whatever its status,
reads the upgrade's moment. For a job ready then, that is a lower bound of
when it became ready (the ledger did not record it): its lag and its wait
count from the upgrade. The default stays, so the Go original's writes,
which name six columns, keep working and record their inserts' moment (the
transaction's start): its jobs are enqueued by insert only (its retry
deletes and re-inserts), so an adopted database's jobs get the adoption's
moment and the Go side's later ones their own. An app's own SQL that sets a
job back to ready leaves `ready_at` alone (it is a lower bound of the wait
then too). On SQLite a column cannot be added with a default that is not a
constant: the column is nullable without a default, and the jobs ready at
the upgrade are set to its moment (one UPDATE of the ready jobs only; the
version trigger of 0007 does not count it); the others keep null, which
every reader takes as unknown.

An expand-only revision: code built for 0006 to 0016 does not read the
column and writes without it (a ready job it makes keeps the `ready_at` it
had, or the default on insert), so the lag of those jobs is at most
overstated by what that code did not record.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

expand_only = True
oldest_code = "0006"

WINDOW = sa.table(
    "fulltext_jobs_schema_window",
    sa.column("revision", sa.Text),
    sa.column("oldest_code", sa.Text),
    sa.column("expand_only", sa.Boolean),
)

#: The attribute `fulltext_jobs.upgrade` sets when it runs the revisions
#: in a transaction the caller began (see `fulltext_jobs.sql.migrate`).
IN_CALLERS_TRANSACTION = "fulltext_jobs_in_callers_transaction"

INDEX = "fulltext_ready_at_idx"
READY = "status = 'ready'"


def _build_concurrently() -> None:
    """The index, built with CREATE INDEX CONCURRENTLY outside any
    transaction; one an interrupted build left invalid is dropped first."""
    with op.get_context().autocommit_block():
        if not context.is_offline_mode():
            invalid = (
                op.get_bind()
                .execute(
                    sa.text(
                        "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"
                    ),
                    {"name": f"jobs.{INDEX}"},
                )
                .scalar()
            )
            if invalid:
                op.execute(f"DROP INDEX CONCURRENTLY jobs.{INDEX}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
            f"ON jobs.fulltext (destination, ready_at) WHERE {READY}"
        )


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        # A stable default: kept in the catalogue, no rewrite (see above).
        op.execute("ALTER TABLE jobs.fulltext ADD COLUMN ready_at timestamptz DEFAULT now()")
    else:
        op.add_column("fulltext", sa.Column("ready_at", sa.DateTime(timezone=True)))
        moment = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        op.execute(
            sa.text(f"UPDATE fulltext SET ready_at = :moment WHERE {READY}").bindparams(  # noqa: S608 - a constant
                moment=moment
            )
        )
    if postgresql and not context.config.attributes.get(IN_CALLERS_TRANSACTION, False):
        _build_concurrently()
    else:
        op.create_index(
            INDEX,
            "fulltext",
            ["destination", "ready_at"],
            schema="jobs" if postgresql else None,
            postgresql_where=sa.text(READY),
            sqlite_where=sa.text(READY),
        )
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    op.drop_index(INDEX, table_name="fulltext", schema=schema)
    op.drop_column("fulltext", "ready_at", schema=schema)
