"""The producer's watermark: new items are found without rescanning every item.

An idle producer (`Worker(produce=True)`, `work --produce`) used to run a
full `enqueue_unqueued` whenever a claim came back empty, reading every item
each time. It now queues only the items that arrived since its last call,
past a per-destination watermark, and sweeps every item only every
`sweep_interval` (for items that became eligible late).

- `jobs.fulltext_items.seq` (PostgreSQL): the items' insertion order, from
  a sequence (the column's default), with a partial index. Item ids are
  text and arrive in any order, so a watermark over the id would pass over
  a new item whose id sorts below it; the insertion order does not. SQLite
  needs no column: its rowid is the insertion order (one writer at a time).
  On a database adopted from the Go original the items "table" is a view of
  the original's items: it gets no column, and the producer keeps its
  watermark over the id there.
  The items already there keep a null `seq` (the producer's first call
  sweeps every item anyway), so adding the column rewrites nothing: an
  identity column, filled for every existing row, rewrote the items table
  under an exclusive lock (2.1 s at 1,000,000 items); this takes a
  millisecond, and the partial index of no rows is built from one read
  of the table (0.08 s at 1,000,000 items, blocking only writes to items).
  The partial index of failed and skipped jobs below is built the same
  way, blocking writes to the jobs table while it reads it (0.08 s at
  1,000,000 jobs): one transaction, as `fulltext_jobs.upgrade` promises,
  rules out `CREATE INDEX CONCURRENTLY`.
- `enqueue_cursor.item_seq` and `swept_at`: how far the producer's watermark
  over that order has got, and when its last full sweep began; both
  nullable (null: never), so that the first call sweeps.

- `fulltext_retryable_idx`: a partial index of failed and skipped jobs by
  destination, so that `retry DEST` (and a look at a destination's
  failures) reads those jobs, not every job of the ledger. Claims and
  finishes pay nothing for it: an update adds an index entry only when the
  job's new status is failed or skipped.

An expand-only revision: code built for 0006 to 0009 does not read the new
columns, and its inserts of items and cursor rows get their defaults.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
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


# A DO block rather than a check in Python, so that the offline SQL
# (`alembic upgrade --sql`) carries the condition too.
POSTGRESQL_UPGRADE = """
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('jobs.fulltext_items')) = 'r' THEN
        ALTER TABLE jobs.fulltext_items ADD COLUMN seq bigint;
        CREATE SEQUENCE jobs.fulltext_items_seq_seq OWNED BY jobs.fulltext_items.seq;
        ALTER TABLE jobs.fulltext_items
            ALTER COLUMN seq SET DEFAULT nextval('jobs.fulltext_items_seq_seq');
        CREATE INDEX fulltext_items_seq_idx ON jobs.fulltext_items (seq)
            WHERE seq IS NOT NULL;
    END IF;
END
$$
"""

POSTGRESQL_DOWNGRADE = """
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('jobs.fulltext_items')) = 'r' THEN
        DROP INDEX jobs.fulltext_items_seq_idx;
        ALTER TABLE jobs.fulltext_items DROP COLUMN seq;
    END IF;
END
$$
"""


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    op.add_column("enqueue_cursor", sa.Column("item_seq", sa.BigInteger), schema=schema)
    op.add_column(
        "enqueue_cursor", sa.Column("swept_at", sa.DateTime(timezone=True)), schema=schema
    )
    if postgresql:
        op.execute(POSTGRESQL_UPGRADE)
    retryable = sa.text("status IN ('failed', 'skipped')")
    op.create_index(
        "fulltext_retryable_idx",
        "fulltext",
        ["destination"],
        schema=schema,
        postgresql_where=retryable,
        sqlite_where=retryable,
    )
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    op.drop_index("fulltext_retryable_idx", table_name="fulltext", schema=schema)
    if postgresql:
        op.execute(POSTGRESQL_DOWNGRADE)
    op.drop_column("enqueue_cursor", "swept_at", schema=schema)
    op.drop_column("enqueue_cursor", "item_seq", schema=schema)
