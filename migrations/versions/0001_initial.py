"""The ledger: jobs.fulltext in the original's layout, the items table, the
enqueue sequence and the partial index on ready jobs.

On PostgreSQL the first six columns of jobs.fulltext, the job_statuses enum
(in the default schema, values in the original's order) and the unique pair
jobs_fulltext_unique are the original's; `seq` comes after them with a
default, so the original's positional six-value insert still works. SQLite
has no schemas and no second identity column: the same tables live in the
main database and a trigger fills `seq` from the rowid.

This file is a snapshot: it does not import the package, whose declarations
move on with later revisions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("ready", "running", "skipped", "failed", "finished")

SQLITE_SEQ_TRIGGER = """
CREATE TRIGGER fulltext_seq AFTER INSERT ON fulltext
FOR EACH ROW WHEN NEW.seq IS NULL
BEGIN
    UPDATE fulltext SET seq = NEW.rowid WHERE rowid = NEW.rowid;
END
"""


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    if postgresql:
        op.execute("CREATE SCHEMA IF NOT EXISTS jobs")
    op.create_table("items", sa.Column("id", sa.Text, primary_key=True), schema=schema)
    seq = (
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False)
        if postgresql
        else sa.Column("seq", sa.Integer, nullable=True)
    )
    op.create_table(
        "fulltext",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("started", sa.DateTime(timezone=True)),
        sa.Column("finished", sa.DateTime(timezone=True)),
        sa.Column(
            "status",
            sa.Enum(*STATUSES, name="job_statuses", create_constraint=True),
            nullable=False,
        ),
        seq,
        sa.UniqueConstraint("item_id", "destination", name="jobs_fulltext_unique"),
        schema=schema,
    )
    op.create_index(
        "fulltext_ready_idx",
        "fulltext",
        ["destination", "seq"],
        schema=schema,
        postgresql_where=sa.text("status = 'ready'"),
        sqlite_where=sa.text("status = 'ready'"),
    )
    if not postgresql:
        op.execute(SQLITE_SEQ_TRIGGER)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    op.drop_index("fulltext_ready_idx", table_name="fulltext", schema=schema)
    op.drop_table("fulltext", schema=schema)
    op.drop_table("items", schema=schema)
    if postgresql:
        sa.Enum(name="job_statuses").drop(op.get_bind(), checkfirst=True)
        op.execute("DROP SCHEMA IF EXISTS jobs")
