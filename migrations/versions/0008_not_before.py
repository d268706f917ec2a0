"""Delayed readiness: `not_before` on each job, for retries after a backoff.

A nullable column appended after the existing ones, with no default (null:
due at once), so the original's positional six-value insert still works. It
is in no index: the claim reads the partial index of ready jobs in `seq`
order, as before, and passes over the rows whose `not_before` is still in
the future, so a claim costs nothing more while no job is delayed.

The version trigger of 0007 is not extended to it: only this library writes
it, and its writes count the version themselves.

An expand-only revision: code built for 0007 ignores the column (and would
claim a delayed job early, which is harmless: it only retries sooner).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
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
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.add_column(
        "fulltext",
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        schema="jobs" if postgresql else None,
    )
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    op.drop_column("fulltext", "not_before", schema="jobs" if postgresql else None)
