"""Job priorities: a `priority` column on the jobs table, and the due queue
indexed in claim order, the highest priority first and then the oldest.

- `priority smallint NOT NULL DEFAULT 0`. On PostgreSQL 11 and later a
  column added with a constant default is a change to the catalogue only:
  the table is not rewritten, and the lock it takes (ACCESS EXCLUSIVE, for
  a moment) is released at once. So that the lock's wait, behind a long
  transaction that reads the table, does not queue every claim and save
  behind it, the statement gives up after `LOCK_TIMEOUT` (the upgrade
  fails and changes nothing; run it again). Existing jobs, and the jobs the Go
  original's workers insert (positionally, six values), read 0.
- `fulltext_due_priority_idx (destination, (-priority), seq) WHERE status =
  'ready' AND not_before IS NULL`: the due queue in claim order. On the
  negated priority, not on `priority DESC`, so that one ascending row
  comparison, `(-priority, seq) >= (:from_rank, :from_seq)`, is a range of
  the index: the claim floor of `fulltext_jobs.sql.floors`, which a mixed
  direction could not express. SQLite, which keeps no claim floor, indexes
  `(destination, priority DESC, seq)`.

On PostgreSQL the index is built with `CREATE INDEX CONCURRENTLY`, outside
any transaction, as 0011 builds its own (the same reasons: no claim or save
waits while it reads the table; an index left invalid by an interrupted
build is dropped and built again; in a transaction the caller began, and on
SQLite, it is built plainly).

`fulltext_due_idx` stays: the code of revisions 0011 to 0015, which this
window still admits, claims through it, oldest first, whatever a job's
priority. A later contract revision, once that code is out of the window,
drops it.

An expand-only revision: code built for 0006 to 0015 never reads the
column; it claims in enqueue order and its inserts get priority 0.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0016"
down_revision = "0015"
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

#: How long the column's addition waits for the table's lock before the
#: upgrade gives up (PostgreSQL): while it waits, writers queue behind it.
LOCK_TIMEOUT = "10s"

INDEX = "fulltext_due_priority_idx"
COLUMNS = "(destination, (-priority), seq)"
DUE = "status = 'ready' AND not_before IS NULL"


def _build_concurrently() -> None:
    """The index, built with CREATE INDEX CONCURRENTLY outside any
    transaction; one an interrupted build left invalid is dropped first
    (IF NOT EXISTS alone would keep it)."""
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
            f"ON jobs.fulltext {COLUMNS} WHERE {DUE}"
        )


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    own_transaction = not context.config.attributes.get(IN_CALLERS_TRANSACTION, False)
    if postgresql and own_transaction:
        op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    op.add_column(
        "fulltext",
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
        schema=schema,
    )
    if postgresql and own_transaction:
        op.execute("SET LOCAL lock_timeout TO DEFAULT")
        _build_concurrently()
    else:
        # SQLite keeps no claim floor, so no row comparison to serve: the
        # plain descending column, which its reflection (and so the schema
        # comparison) reads, where it reads no expression.
        columns = COLUMNS if postgresql else "(destination, priority DESC, seq)"
        table = "jobs.fulltext" if postgresql else "fulltext"
        op.execute(f"CREATE INDEX {INDEX} ON {table} {columns} WHERE {DUE}")
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    op.drop_index(INDEX, table_name="fulltext", schema=schema)
    op.drop_column("fulltext", "priority", schema=schema)
