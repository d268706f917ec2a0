"""Claims: attempts, a claim token, a lease, the last error.

Four columns appended after the existing ones, each with a default (or
nullable), so the original's positional six-value insert still works. A
claim sets a fresh token and a lease and counts an attempt; saves that leave
`running` must carry the token. The lease column is in no index, so a
heartbeat (which changes only the lease) can be a HOT update on PostgreSQL;
rescue finds running jobs through a partial index on status alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = "jobs" if op.get_bind().dialect.name == "postgresql" else None
    op.add_column(
        "fulltext",
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        schema=schema,
    )
    op.add_column("fulltext", sa.Column("claim_token", sa.Uuid, nullable=True), schema=schema)
    op.add_column(
        "fulltext",
        sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True),
        schema=schema,
    )
    op.add_column("fulltext", sa.Column("last_error", sa.Text, nullable=True), schema=schema)
    op.create_index(
        "fulltext_running_idx",
        "fulltext",
        ["destination"],
        schema=schema,
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    schema = "jobs" if op.get_bind().dialect.name == "postgresql" else None
    op.drop_index("fulltext_running_idx", table_name="fulltext", schema=schema)
    # SQLite 3.35 and newer drops columns in place (no index names them),
    # which keeps the table's trigger.
    for column in ("last_error", "lease_expires", "claim_token", "attempts"):
        op.drop_column("fulltext", column, schema=schema)
