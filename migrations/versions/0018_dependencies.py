"""Destinations that follow one another: the dependencies declared
(`fulltext_dependencies`), the items an upstream job let follow
(`fulltext_unblocked`), and the triggers that record them.

- `fulltext_dependencies (destination, upstream, status)`: one row per
  status a destination's dependency on an upstream names (`fulltext-jobs
  depend`, `Repository.depend`), indexed by `(upstream, status)` for the
  triggers' probe.
- `fulltext_unblocked (destination, item_id, upstream)`: when a job ends
  in a status some destination's dependency names, a trigger records its
  item for that destination, in the transaction that ended the job; the
  follower's producer (`enqueue_new`) takes the rows and queues each item
  that is eligible and done upstream, a probe per item rather than a scan
  of the items. One row per upstream, so that two upstreams ending at once
  never fold into one row that a producer could take between them.
- Triggers on `jobs.fulltext`, row-level, each guarded by a WHEN clause the
  server evaluates without calling the function: a job inserted in an end
  status (a save of a new job, the Go original's positional insert) and a
  status changed to one. Claims, heartbeats and enqueues of ready jobs pay
  the WHEN clause only. On SQLite the WHEN clause also asks whether anyone
  follows the job's destination, so an end nobody follows runs nothing; on
  PostgreSQL, whose WHEN cannot read a table, a job's end pays one call of
  the function and one probe of the dependencies' index (empty when
  nothing is declared), and notifies only when it recorded an item
  (docs/benchmarks.md, table s.: about 4% of a claim and save of 100 jobs
  nobody follows). Triggers rather than library code
  so that every writer is covered: the Go original's workers, which know
  nothing of dependencies, and an app's own SQL. On PostgreSQL the function
  also notifies the follower's channel (`fulltext_jobs_ready`, as 0004), so
  its listening producers wake and queue the item at once. It runs as the
  role that migrated (SECURITY DEFINER, with the catalogue's search path
  only and every name qualified): a writer granted the jobs table and
  nothing else of ours, the Go original's role or an app's, can still end
  a job.

An expand-only revision: code built for 0006 to 0017 never reads the
tables. Its producers pass over no dependency (they queue an item whatever
its upstreams: run the upgrade before declaring any), and the triggers
record the items its workers' ends let follow as they do everyone's.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

revision = "0018"
down_revision = "0017"
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

#: The attribute `fulltext_jobs.upgrade` sets when it runs the revisions
#: in a transaction the caller began (see `fulltext_jobs.sql.migrate`).
IN_CALLERS_TRANSACTION = "fulltext_jobs_in_callers_transaction"
#: How long creating the triggers may wait for the jobs table's lock: the
#: writers queued behind the wait would stall for as long.
LOCK_TIMEOUT = "10s"
ENDED = "('finished', 'failed', 'skipped')"
STATUSES = ("ready", "running", "finished", "failed", "skipped")

POSTGRESQL_UPGRADE = (
    """
CREATE FUNCTION jobs.fulltext_unblock() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO jobs.fulltext_unblocked (destination, item_id, upstream)
    SELECT d.destination, NEW.item_id, NEW.destination
    FROM jobs.fulltext_dependencies AS d
    WHERE d.upstream = NEW.destination AND d.status = NEW.status
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('fulltext_jobs_ready', d.destination)
        FROM jobs.fulltext_dependencies AS d
        WHERE d.upstream = NEW.destination AND d.status = NEW.status;
    END IF;
    RETURN NULL;
END
$$
""",
    f"""
CREATE TRIGGER fulltext_unblock_inserted
AFTER INSERT ON jobs.fulltext
FOR EACH ROW
WHEN (NEW.status IN {ENDED})
EXECUTE FUNCTION jobs.fulltext_unblock()
""",
    f"""
CREATE TRIGGER fulltext_unblock_updated
AFTER UPDATE OF status ON jobs.fulltext
FOR EACH ROW
WHEN (NEW.status IN {ENDED} AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION jobs.fulltext_unblock()
""",
)

POSTGRESQL_DOWNGRADE = (
    "DROP TRIGGER fulltext_unblock_updated ON jobs.fulltext",
    "DROP TRIGGER fulltext_unblock_inserted ON jobs.fulltext",
    "DROP FUNCTION jobs.fulltext_unblock()",
)

SQLITE_RECORD = (
    "INSERT OR IGNORE INTO fulltext_unblocked (destination, item_id, upstream) "
    "SELECT d.destination, NEW.item_id, NEW.destination FROM fulltext_dependencies AS d "
    "WHERE d.upstream = NEW.destination AND d.status = NEW.status;"
)

#: SQLite's WHEN may read a table: a job of a destination nobody follows
#: runs nothing.
SQLITE_FOLLOWED = (
    "EXISTS (SELECT 1 FROM fulltext_dependencies AS d WHERE d.upstream = NEW.destination)"
)

SQLITE_UPGRADE = (
    (
        "CREATE TRIGGER fulltext_unblock_inserted AFTER INSERT ON fulltext FOR EACH ROW "
        f"WHEN NEW.status IN {ENDED} AND {SQLITE_FOLLOWED} BEGIN {SQLITE_RECORD} END"
    ),
    (
        "CREATE TRIGGER fulltext_unblock_updated AFTER UPDATE OF status ON fulltext FOR EACH ROW "
        f"WHEN NEW.status IN {ENDED} AND OLD.status IS NOT NEW.status AND {SQLITE_FOLLOWED} "
        f"BEGIN {SQLITE_RECORD} END"
    ),
)

SQLITE_DOWNGRADE = (
    "DROP TRIGGER fulltext_unblock_updated",
    "DROP TRIGGER fulltext_unblock_inserted",
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    schema = "jobs" if postgresql else None
    status = (
        pg.ENUM(name="job_statuses", create_type=False)
        if postgresql
        else sa.Enum(*STATUSES, name="job_statuses", create_constraint=True)
    )
    op.create_table(
        "fulltext_dependencies",
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("upstream", sa.Text, primary_key=True),
        sa.Column("status", status, primary_key=True),
        schema=schema,
    )
    op.create_index(
        "fulltext_dependencies_upstream_idx",
        "fulltext_dependencies",
        ["upstream", "status"],
        schema=schema,
    )
    op.create_table(
        "fulltext_unblocked",
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Text, primary_key=True),
        sa.Column("upstream", sa.Text, primary_key=True),
        schema=schema,
    )
    if postgresql:
        own_transaction = not context.config.attributes.get(IN_CALLERS_TRANSACTION, False)
        if own_transaction:
            op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        for statement in POSTGRESQL_UPGRADE:
            op.execute(statement)
        if own_transaction:
            op.execute("SET LOCAL lock_timeout TO DEFAULT")
    else:
        for statement in SQLITE_UPGRADE:
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
    op.drop_table("fulltext_unblocked", schema=schema)
    op.drop_index(
        "fulltext_dependencies_upstream_idx", table_name="fulltext_dependencies", schema=schema
    )
    op.drop_table("fulltext_dependencies", schema=schema)
