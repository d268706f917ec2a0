"""The default items table is `fulltext_items`: on SQLite, which has no
schemas, our `items` shared the main database with any app table of that
name (an app's `items` collided with it); on PostgreSQL it becomes
`jobs.fulltext_items` too, so that both dialects have one table name and
one declaration (the read models of `fulltext_jobs.sql.orm` map it).

A contract revision: code built for earlier revisions names the old table,
so it cannot use a database at this one. Its rows move with it (a rename);
on a database adopted from the Go original, the view of the original's
items is renamed the same way.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

expand_only = False
oldest_code = "0006"

WINDOW = sa.table(
    "fulltext_jobs_schema_window",
    sa.column("revision", sa.Text),
    sa.column("oldest_code", sa.Text),
    sa.column("expand_only", sa.Boolean),
)


def _rename(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        # ALTER TABLE renames a view too (an adopted database's items).
        op.execute(f"ALTER TABLE jobs.{old} RENAME TO {new}")
    else:
        op.rename_table(old, new)


def upgrade() -> None:
    _rename("items", "fulltext_items")
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    _rename("fulltext_items", "items")
