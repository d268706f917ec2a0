"""Destination controls the fleet agrees on: a destination paused, until
when and why, and its cap on jobs running at once (`fulltext_controls`, in
schema `jobs` on PostgreSQL).

One row per destination an operator has paused or capped (`fulltext-jobs
pause`, `fulltext-jobs limit`, `Repository.pause`, `Repository.limit`);
resuming clears its pause, `limit --max-running none` its cap. Every claim
of code at this revision or later reads the destination's row (one
primary-key probe) and hands out nothing while a pause is in force
(`paused_at` set, and `paused_until` null, until resumed, or still ahead);
under a cap (`max_running`) it hands out at most the cap less the jobs
running.

An expand-only revision: code built for 0006 to 0012 never reads the table,
so its workers keep claiming through a pause and past a cap (a rolling deploy finishes
before a pause binds every worker; docs/guide-workers.md says so).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
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
    op.create_table(
        "fulltext_controls",
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("paused_at", sa.DateTime(timezone=True)),
        sa.Column("paused_until", sa.DateTime(timezone=True)),
        sa.Column("pause_reason", sa.Text),
        sa.Column("max_running", sa.Integer),
        schema="jobs" if postgresql else None,
    )
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    op.drop_table("fulltext_controls", schema="jobs" if postgresql else None)
