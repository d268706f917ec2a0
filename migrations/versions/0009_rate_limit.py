"""Rate limits across the fleet, and no wake-up for a job released for later.

- `fulltext_rate_limit` (in schema `jobs` on PostgreSQL): one row per
  destination whose workers run under a rate limit, holding its token
  bucket (see `fulltext_jobs.rate_limit`). A row appears on the first take;
  nothing else reads the table.
- On PostgreSQL, the ready notification of an update
  (`fulltext_ready_updated`, 0004) no longer fires for a job released with
  a `not_before` (a retry after a backoff): it cannot be claimed yet, so
  waking every idle worker of its destination was for nothing. A job
  released without one, rescued or retried still notifies. SQLite has no
  notifications: there only the table is added.

An expand-only revision: code built for 0006 to 0008 never reads the new
table, and the narrower trigger only spares its workers a useless wake-up
(code before 0008 writes no `not_before`, so all its releases still
notify).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
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

# The trigger as 0004 made it, and as this revision makes it: only its
# WHEN differs. Dropped and created in one transaction (alembic runs each
# revision in one on PostgreSQL), so no committed state lacks it.
READY_UPDATED = """
CREATE TRIGGER fulltext_ready_updated
AFTER UPDATE OF status ON jobs.fulltext
FOR EACH ROW
WHEN ({when})
EXECUTE FUNCTION jobs.fulltext_notify_ready_updated()
"""
WHEN_0004 = "NEW.status = 'ready' AND OLD.status IS DISTINCT FROM 'ready'"
WHEN_0009 = f"{WHEN_0004} AND NEW.not_before IS NULL"


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "fulltext_rate_limit",
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("tat", sa.Double, nullable=False),
        sa.Column("granted", sa.Integer, nullable=False),
        schema="jobs" if postgresql else None,
    )
    if postgresql:
        op.execute("DROP TRIGGER fulltext_ready_updated ON jobs.fulltext")
        op.execute(READY_UPDATED.format(when=WHEN_0009))
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    if postgresql:
        op.execute("DROP TRIGGER fulltext_ready_updated ON jobs.fulltext")
        op.execute(READY_UPDATED.format(when=WHEN_0004))
    op.drop_table("fulltext_rate_limit", schema="jobs" if postgresql else None)
