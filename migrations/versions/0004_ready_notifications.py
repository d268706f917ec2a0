"""Ready notifications: PostgreSQL announces, on commit, which destinations
have jobs that became ready, so waiting workers wake at once instead of at
their next poll.

Triggers rather than NOTIFYs sent by the library: every writer is covered,
the Go original's positional insert and an app's own SQL included, and the
notification goes out exactly when the job becomes visible (on commit; a
rolled-back transaction sends nothing).

- Inserts: one statement-level trigger reading the transition table, so a
  bulk enqueue of 50,000 rows costs one `SELECT DISTINCT` and one NOTIFY per
  destination, not 50,000 function calls.
- Updates: a row-level trigger on `status` only, guarded by its WHEN clause,
  which the server evaluates without calling the function: claims,
  heartbeats and finishes pay nothing; releases, rescues and retries notify.

The channel is `fulltext_jobs_ready`; the payload is the destination. The
server folds identical notifications of one transaction into one. SQLite has
no notifications: there, workers poll, and this revision changes nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = (
    """
CREATE FUNCTION jobs.fulltext_notify_ready_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fulltext_jobs_ready', ready.destination)
    FROM (SELECT DISTINCT destination FROM inserted WHERE status = 'ready') AS ready;
    RETURN NULL;
END
$$
""",
    """
CREATE FUNCTION jobs.fulltext_notify_ready_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fulltext_jobs_ready', NEW.destination);
    RETURN NULL;
END
$$
""",
    """
CREATE TRIGGER fulltext_ready_inserted
AFTER INSERT ON jobs.fulltext
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION jobs.fulltext_notify_ready_inserted()
""",
    """
CREATE TRIGGER fulltext_ready_updated
AFTER UPDATE OF status ON jobs.fulltext
FOR EACH ROW
WHEN (NEW.status = 'ready' AND OLD.status IS DISTINCT FROM 'ready')
EXECUTE FUNCTION jobs.fulltext_notify_ready_updated()
""",
)

DOWNGRADE = (
    "DROP TRIGGER fulltext_ready_updated ON jobs.fulltext",
    "DROP TRIGGER fulltext_ready_inserted ON jobs.fulltext",
    "DROP FUNCTION jobs.fulltext_notify_ready_updated()",
    "DROP FUNCTION jobs.fulltext_notify_ready_inserted()",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWNGRADE:
            op.execute(statement)
