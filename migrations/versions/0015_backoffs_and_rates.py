"""Back-offs on each job, and a start rate per destination.

- `backoffs` on the jobs table: how often a job was put back for later at
  its handler's word (`RetryAfter`) without the attempt being counted, so
  that the worker can bound it (`RetryPolicy.max_backoffs`). An integer
  appended after the existing columns, `NOT NULL DEFAULT 0`: PostgreSQL
  (11 and later) stores a constant default in the catalog and rewrites no
  row, existing jobs read 0, and the Go original's positional six-value
  insert still works. In no index and not in the version trigger of 0007:
  only this library writes it, with a version of its own.
- `rate` and `rate_burst` on `fulltext_controls` (0013): the start rate an
  operator set for a destination (`fulltext-jobs limit DEST --rate R`),
  which its workers keep to unless given their own `rate_limit`; null:
  none set.

An expand-only revision: code built for 0006 to 0014 ignores the columns
(its workers never back off, and keep to their own rate limit only).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
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


def upgrade() -> None:
    schema = "jobs" if op.get_bind().dialect.name == "postgresql" else None
    op.add_column(
        "fulltext",
        sa.Column("backoffs", sa.Integer, nullable=False, server_default="0"),
        schema=schema,
    )
    op.add_column("fulltext_controls", sa.Column("rate", sa.Double), schema=schema)
    op.add_column("fulltext_controls", sa.Column("rate_burst", sa.Integer), schema=schema)
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    schema = "jobs" if op.get_bind().dialect.name == "postgresql" else None
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    op.drop_column("fulltext_controls", "rate_burst", schema=schema)
    op.drop_column("fulltext_controls", "rate", schema=schema)
    op.drop_column("fulltext", "backoffs", schema=schema)
