"""The holds of the transaction mode, recorded where a dead holder's
rollback cannot erase them (PostgreSQL).

`jobs.fulltext_holds`: one row per `hold_ready` batch while it is held,
with the held jobs' ids and versions. The holder writes the row on a
second connection, in autocommit, as soon as it holds the jobs, and
deletes it in the hold's own transaction, so the row disappears with the
commit; a holder that stops without an error deletes it first. A row
whose jobs are still ready at the versions held, and no longer locked, is
therefore the trace of a holder that died (its process or its connection
ended) with the transaction open: `rescue_expired` counts an attempt for
each such death, and fails the job at `max_attempts` (see
docs/guide-workers.md, "The transaction mode"). Before this revision a
handler that killed its process in the transaction mode was retried for
ever, its attempts never counted.

SQLite has no such table: there the hold's transaction holds the
database's write lock, so no other connection could write the row until
the hold ends, and a crashed holder cannot be told from one that never
was (use the leased mode for handlers that may crash the process).

An expand-only revision: code built for 0006 to 0011 never reads the
table, and its holds go uncounted, as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0012"
down_revision = "0011"
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
    if op.get_bind().dialect.name == "postgresql":
        op.create_table(
            "fulltext_holds",
            sa.Column("id", sa.Uuid, primary_key=True),
            sa.Column("destination", sa.Text, nullable=False),
            sa.Column("job_ids", pg.ARRAY(sa.Uuid), nullable=False),
            sa.Column("versions", pg.ARRAY(sa.Integer), nullable=False),
            sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
            schema="jobs",
        )
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    if op.get_bind().dialect.name == "postgresql":
        op.drop_table("fulltext_holds", schema="jobs")
