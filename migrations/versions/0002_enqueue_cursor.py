"""A per-destination watermark for create_job_for_unqueued.

`jobs.enqueue_cursor` holds, for each destination, the largest item id that
create_job_for_unqueued has handed out. The next call searches above it
with an index range scan instead of reading every queued item from the start,
so a call's cost stays flat as the ledger fills. The row is also the lock
that serialises creators of one destination (and only of that one).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = "jobs" if op.get_bind().dialect.name == "postgresql" else None
    op.create_table(
        "enqueue_cursor",
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Text, nullable=False),
        schema=schema,
    )


def downgrade() -> None:
    schema = "jobs" if op.get_bind().dialect.name == "postgresql" else None
    op.drop_table("enqueue_cursor", schema=schema)
