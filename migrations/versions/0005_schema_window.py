"""The compatibility window: which library code can use a database at each
revision, written into the database itself.

`fulltext_jobs_schema_window` has a row per applied revision: `oldest_code`,
the oldest revision whose library code can still use a database at this
one, and `expand_only`, whether the revision only added things that older
code ignores (then `oldest_code` is the previous revision's). A library
built for revision C accepts a database at revision D when D is C, or when D
is newer and `oldest_code` of D is C or older. Because the rows live in the
database, a library can judge revisions newer than itself, and tells
"upgrade the database" (D older than C) from "upgrade the library" (C older
than `oldest_code` of D).

Every later revision inserts its own row on upgrade and deletes it on
downgrade, and declares the same two values as module attributes
(`expand_only`, `oldest_code`); a test holds the two to agreement.

The rows for the revisions before this one say what they did: 0001 built
the ledger; 0002 added a table (expand); 0003 added claims, which older code
would save over without their tokens (contract); 0004 added triggers
(expand); this revision adds a table (expand).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

expand_only = True
oldest_code = "0003"

WINDOW_TABLE = "fulltext_jobs_schema_window"

#: (revision, oldest_code, expand_only) of this revision and those before it.
ROWS = (
    ("0001", "0001", False),
    ("0002", "0001", True),
    ("0003", "0003", False),
    ("0004", "0003", True),
    (revision, oldest_code, expand_only),
)


def upgrade() -> None:
    window = op.create_table(
        WINDOW_TABLE,
        sa.Column("revision", sa.Text, primary_key=True),
        sa.Column("oldest_code", sa.Text, nullable=False),
        sa.Column("expand_only", sa.Boolean, nullable=False),
    )
    op.bulk_insert(
        window,
        [{"revision": r, "oldest_code": o, "expand_only": e} for r, o, e in ROWS],
    )


def downgrade() -> None:
    op.drop_table(WINDOW_TABLE)
