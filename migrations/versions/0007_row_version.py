"""Row versions: a write count on each job, for compare-and-swap saves.

`version` is appended after the existing columns with a default of 1, so
the original's positional six-value insert still works, and it is in no
index, so that an update which changes nothing indexed (a heartbeat) can
still be a HOT update on PostgreSQL.

The library's own writes (saves, claims, rescues, retries) set
`version = version + 1` themselves, and a save writes only
`WHERE version = <the version the copy was read at>`. Every other writer
(the Go original's positional upsert and its claim, an app's own SQL) is
counted by a trigger on the job's columns, guarded by `WHEN (NEW.version =
OLD.version)`: the server evaluates that without calling the function, so
the library's statements, which change the version themselves, pay only the
test. Updates of the lease alone (heartbeats) are not counted: they change
no state a copy could overwrite.

An expand-only revision: code built for 0006 writes without the version,
and the trigger counts its writes, so it keeps working (its own saves keep
the claim-token guard they had).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
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

POSTGRESQL_UPGRADE = (
    """
CREATE FUNCTION jobs.fulltext_count_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$
""",
    # The columns whose update is a write to count: all but the lease,
    # `seq` and the version itself.
    """
CREATE TRIGGER fulltext_count_write
BEFORE UPDATE OF item_id, destination, started, finished, status, attempts, claim_token,
    last_error ON jobs.fulltext
FOR EACH ROW
WHEN (NEW.version = OLD.version)
EXECUTE FUNCTION jobs.fulltext_count_write()
""",
)

POSTGRESQL_DOWNGRADE = (
    "DROP TRIGGER fulltext_count_write ON jobs.fulltext",
    "DROP FUNCTION jobs.fulltext_count_write()",
)

SQLITE_UPGRADE = (
    """
CREATE TRIGGER fulltext_count_write AFTER UPDATE OF item_id, destination, started, finished,
    status, attempts, claim_token, last_error ON fulltext
FOR EACH ROW WHEN NEW.version = OLD.version
BEGIN
    UPDATE fulltext SET version = OLD.version + 1 WHERE rowid = NEW.rowid;
END
""",
)

SQLITE_DOWNGRADE = ("DROP TRIGGER fulltext_count_write",)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    op.add_column(
        "fulltext",
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        schema=schema,
    )
    for statement in POSTGRESQL_UPGRADE if postgresql else SQLITE_UPGRADE:
        op.execute(statement)
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    for statement in POSTGRESQL_DOWNGRADE if postgresql else SQLITE_DOWNGRADE:
        op.execute(statement)
    op.drop_column("fulltext", "version", schema=schema)
