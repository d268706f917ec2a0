"""Cancel requests for running jobs (`fulltext_cancels`, in schema `jobs` on
PostgreSQL): a job's id, the claim asked to stop, the destination, the
`last_error` to skip the job with, and when it was asked.

`fulltext-jobs cancel` and `Repository.cancel` write a row for each running
job they cancel; the worker holding the job takes its row (a delete that
returns it) at the job's next heartbeat, or at once on PostgreSQL when the
notification on `fulltext_jobs_cancel` reaches it, and saves the job
skipped. A row whose claim has ended unheard is dropped by the next cancel.

An expand-only revision: code built for 0006 to 0013 never reads the table,
so its workers do not hear cancels of the jobs they run (docs/guide-workers.md
says so); ready jobs are cancelled by any code alike, in the jobs table.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
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
        "fulltext_cancels",
        sa.Column("job_id", sa.Uuid, primary_key=True),
        sa.Column("claim_token", sa.Uuid, nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        schema="jobs" if postgresql else None,
    )
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    op.drop_table("fulltext_cancels", schema="jobs" if postgresql else None)
