"""Jobs counted per destination and status by the database, and the ended
jobs indexed by when they ended: `stats`, the dashboard and `/metrics`
read both at a cost that does not grow with the ledger.

Counts kept by triggers, so that every writer is counted: this library,
the Go original's workers (their positional insert, their upsert, their
retry's delete and re-insert) and an app's own SQL.

PostgreSQL: an append-only ledger of deltas, not one counter row per
(destination, status). A counter row that every claim and save updated
would be locked by each writer's transaction until its commit, so the
fleet's claims would queue on it one after another.

- `fulltext_status_deltas (id, destination, status, jobs)`: statement-level
  triggers on insert, update and delete read their transition tables and
  append one row per (destination, status) the statement changed, with
  the change (`+n` or `-n`); an update that moves no job between statuses
  (a heartbeat, a save that keeps the status) appends nothing. Appending
  takes no lock another writer waits on. No index: nothing looks a delta
  up; the fold takes them all.
- `fulltext_status_counts (destination, status, jobs)`: the folded sum.
- `jobs.fulltext_status_fold()`: moves every committed delta into the sum
  in one statement (`DELETE ... RETURNING` feeding an upsert), so a count
  (sum plus deltas, read in one snapshot) is exact whether or not a fold
  runs beside it. It folds only in a read-write, read-committed
  transaction on a primary that gets its advisory lock at once
  (`pg_try_advisory_xact_lock(1718, 18)`: two keys, a space apart from
  the Go original's one-key creator lock, 10): it never waits, and no
  fold waits on another's row locks (elsewhere it returns false and does
  nothing). Readers that may write (`stats`) call it before counting;
  the delta triggers call it when they append a delta whose id is a
  multiple of 1,024, so that on a ledger nobody reads with write access
  (a fleet of Go workers, watched by the read-only dashboard) the deltas
  stay near 1,024 rows (more while a long transaction that folded holds
  the lock, or while vacuum is held back: the dead deltas are read too).
- A `TRUNCATE` of the jobs table empties both (under the fold's lock).
- The functions run as the role that migrated (`SECURITY DEFINER`), so a
  writer granted the jobs table alone is counted.

Writes that fire no trigger are not counted: with the triggers disabled
(`ALTER TABLE ... DISABLE TRIGGER`, `session_replication_role =
replica`, a restore with `--disable-triggers`). `POSTGRESQL_BASELINE`,
run again by hand, puts the counts right (it adds what they lack, in one
snapshot, and is harmless when they are right).

What the counting starts from, on a ledger that already holds jobs: the
tables and triggers are made in the migration's transaction (with a
`lock_timeout`, as 0016: creating a trigger takes a lock that queues
writers while it waits), which commits; the jobs are then counted in a
transaction of their own, which blocks no writer: one statement counts
the jobs and subtracts the deltas and the sum it sees, in one snapshot,
and adds the difference to the sum. Every job committed before that
snapshot is in the count; every write committed after it appended its
delta (the trigger existed before the snapshot: a writer in flight when
it was made held the lock `CREATE TRIGGER` waited for). The addition is
exact whatever fold runs meanwhile (a fold moves deltas into the sum,
leaving their total alone) and is zero when run again. Inside a caller's
transaction the two steps share it (writers then wait for the count).

SQLite has one writer at a time, so one counter row per (destination,
status) makes nobody wait: row-level triggers keep
`fulltext_status_counts` itself (an upsert per status a job enters or
leaves), there is no delta table, and the existing jobs are counted in
the migration's transaction. An `INSERT OR REPLACE` that replaces a job
fires no delete trigger (unless `recursive_triggers` is on): its job
would stay counted; the library never writes one.

The ended jobs, `fulltext_ended_idx (finished, destination, status) WHERE
status IN ('finished', 'skipped', 'failed')`: the dashboard's jobs ended
per minute read the window's entries (index only) instead of every job.
Only a job that ends adds an entry. Built as 0017 builds its index (`CREATE
INDEX CONCURRENTLY` outside a caller's transaction on PostgreSQL).

An expand-only revision: code built for 0006 to 0018 ignores both tables
and the index; its writes are counted by the triggers like anyone's.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0019"
down_revision = "0018"
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

#: How long making the triggers waits for the jobs table's lock before the
#: upgrade gives up (PostgreSQL): while it waits, writers queue behind it.
LOCK_TIMEOUT = "10s"

INDEX = "fulltext_ended_idx"
ENDED = "status IN ('finished', 'skipped', 'failed')"

# Each delta trigger: the statement's changes per (destination, status),
# appended; and a fold when an id it got is a multiple of 1,024.
_APPEND = """
DECLARE
    fold boolean;
BEGIN
    WITH added AS (
        INSERT INTO jobs.fulltext_status_deltas (destination, status, jobs)
        SELECT destination, status, sum(jobs) FROM ({changes}) AS changes
        GROUP BY destination, status HAVING sum(jobs) <> 0
        RETURNING id
    )
    SELECT bool_or(id % 1024 = 0) INTO fold FROM added;
    IF fold THEN
        PERFORM jobs.fulltext_status_fold();
    END IF;
    RETURN NULL;
END
"""

#: Every function runs as the role that migrated, so that a writer allowed
#: to write the jobs table only (the Go original's role, an app's) is
#: counted without grants on the counts' tables; with a search path of the
#: catalog alone, as such a function must (every name it uses is
#: qualified).
DEFINER = "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"


def _function(signature: str, body: str) -> str:
    """The statement that makes function `jobs.<signature>` of `body`."""
    return f"CREATE FUNCTION jobs.{signature} {DEFINER} AS $$ {body} $$"


POSTGRESQL_UPGRADE = (
    """
CREATE TABLE jobs.fulltext_status_counts (
    destination text NOT NULL,
    status job_statuses NOT NULL,
    jobs bigint NOT NULL,
    PRIMARY KEY (destination, status)
)
""",
    """
CREATE TABLE jobs.fulltext_status_deltas (
    id bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
    destination text NOT NULL,
    status job_statuses NOT NULL,
    jobs bigint NOT NULL
)
""",
    _function(
        "fulltext_status_fold() RETURNS boolean",
        """
BEGIN
    IF pg_is_in_recovery()
        OR current_setting('transaction_read_only') = 'on'
        OR current_setting('transaction_isolation') <> 'read committed'
        OR NOT pg_try_advisory_xact_lock(1718, 18) THEN
        RETURN false;
    END IF;
    WITH moved AS (
        DELETE FROM jobs.fulltext_status_deltas RETURNING destination, status, jobs
    )
    INSERT INTO jobs.fulltext_status_counts AS counts (destination, status, jobs)
    SELECT destination, status, sum(jobs) FROM moved GROUP BY destination, status
    ON CONFLICT (destination, status) DO UPDATE SET jobs = counts.jobs + excluded.jobs;
    RETURN true;
END
""",
    ),
    _function(
        "fulltext_status_inserted() RETURNS trigger",
        _APPEND.format(changes="SELECT destination, status, 1 AS jobs FROM inserted"),
    ),
    _function(
        "fulltext_status_updated() RETURNS trigger",
        _APPEND.format(
            changes="SELECT destination, status, 1 AS jobs FROM after_rows "
            "UNION ALL SELECT destination, status, -1 FROM before_rows"
        ),
    ),
    _function(
        "fulltext_status_deleted() RETURNS trigger",
        _APPEND.format(changes="SELECT destination, status, -1 AS jobs FROM deleted"),
    ),
    _function(
        "fulltext_status_truncated() RETURNS trigger",
        """
BEGIN
    PERFORM pg_advisory_xact_lock(1718, 18);
    DELETE FROM jobs.fulltext_status_deltas;
    DELETE FROM jobs.fulltext_status_counts;
    RETURN NULL;
END
""",
    ),
    """
CREATE TRIGGER fulltext_status_inserted AFTER INSERT ON jobs.fulltext
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION jobs.fulltext_status_inserted()
""",
    """
CREATE TRIGGER fulltext_status_updated AFTER UPDATE ON jobs.fulltext
REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
FOR EACH STATEMENT EXECUTE FUNCTION jobs.fulltext_status_updated()
""",
    """
CREATE TRIGGER fulltext_status_deleted AFTER DELETE ON jobs.fulltext
REFERENCING OLD TABLE AS deleted
FOR EACH STATEMENT EXECUTE FUNCTION jobs.fulltext_status_deleted()
""",
    """
CREATE TRIGGER fulltext_status_truncated AFTER TRUNCATE ON jobs.fulltext
FOR EACH STATEMENT EXECUTE FUNCTION jobs.fulltext_status_truncated()
""",
)

#: The jobs counted, less what the sum and the deltas hold, in one
#: snapshot, added to the sum: see the module's docstring.
POSTGRESQL_BASELINE = """
INSERT INTO jobs.fulltext_status_counts AS counts (destination, status, jobs)
SELECT destination, status, sum(jobs) FROM (
    SELECT destination, status, count(*) AS jobs FROM jobs.fulltext
    GROUP BY destination, status
    UNION ALL SELECT destination, status, -jobs FROM jobs.fulltext_status_deltas
    UNION ALL SELECT destination, status, -jobs FROM jobs.fulltext_status_counts
) AS gap
GROUP BY destination, status HAVING sum(jobs) <> 0
ON CONFLICT (destination, status) DO UPDATE SET jobs = counts.jobs + excluded.jobs
"""

POSTGRESQL_DOWNGRADE = (
    "DROP TRIGGER fulltext_status_truncated ON jobs.fulltext",
    "DROP TRIGGER fulltext_status_deleted ON jobs.fulltext",
    "DROP TRIGGER fulltext_status_updated ON jobs.fulltext",
    "DROP TRIGGER fulltext_status_inserted ON jobs.fulltext",
    "DROP FUNCTION jobs.fulltext_status_truncated()",
    "DROP FUNCTION jobs.fulltext_status_deleted()",
    "DROP FUNCTION jobs.fulltext_status_updated()",
    "DROP FUNCTION jobs.fulltext_status_inserted()",
    "DROP FUNCTION jobs.fulltext_status_fold()",
    "DROP TABLE jobs.fulltext_status_deltas",
    "DROP TABLE jobs.fulltext_status_counts",
)


def _sqlite_add(sign: str, row: str) -> str:
    """The upsert that adds `sign`1 to the count of the job `row` (NEW or OLD)."""
    return (
        "INSERT INTO fulltext_status_counts (destination, status, jobs) "  # noqa: S608 - constants
        f"VALUES ({row}.destination, {row}.status, {sign}1) "
        f"ON CONFLICT (destination, status) DO UPDATE SET jobs = jobs {sign} 1;"
    )


SQLITE_UPGRADE = (
    """
CREATE TABLE fulltext_status_counts (
    destination TEXT NOT NULL,
    status VARCHAR(8) NOT NULL,
    jobs BIGINT NOT NULL,
    PRIMARY KEY (destination, status)
)
""",
    "CREATE TRIGGER fulltext_status_inserted AFTER INSERT ON fulltext FOR EACH ROW BEGIN "
    + _sqlite_add("+", "NEW")
    + " END",
    # `seq` and the version are set by triggers' own updates, which name
    # neither column: they fire nothing here.
    "CREATE TRIGGER fulltext_status_updated AFTER UPDATE OF destination, status ON fulltext "
    "FOR EACH ROW WHEN NEW.status IS NOT OLD.status OR NEW.destination IS NOT OLD.destination "
    "BEGIN " + _sqlite_add("-", "OLD") + " " + _sqlite_add("+", "NEW") + " END",
    "CREATE TRIGGER fulltext_status_deleted AFTER DELETE ON fulltext FOR EACH ROW BEGIN "
    + _sqlite_add("-", "OLD")
    + " END",
    (
        "INSERT INTO fulltext_status_counts (destination, status, jobs) "
        "SELECT destination, status, count(*) FROM fulltext GROUP BY destination, status"
    ),
)

SQLITE_DOWNGRADE = (
    "DROP TRIGGER fulltext_status_deleted",
    "DROP TRIGGER fulltext_status_updated",
    "DROP TRIGGER fulltext_status_inserted",
    "DROP TABLE fulltext_status_counts",
)


def _build_concurrently() -> None:
    """The index, built with CREATE INDEX CONCURRENTLY outside any
    transaction; one an interrupted build left invalid is dropped first."""
    with op.get_context().autocommit_block():
        if not context.is_offline_mode():
            invalid = (
                op.get_bind()
                .execute(
                    sa.text(
                        "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"
                    ),
                    {"name": f"jobs.{INDEX}"},
                )
                .scalar()
            )
            if invalid:
                op.execute(f"DROP INDEX CONCURRENTLY jobs.{INDEX}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
            f"ON jobs.fulltext (finished, destination, status) WHERE {ENDED}"
        )


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    own_transaction = not context.config.attributes.get(IN_CALLERS_TRANSACTION, False)
    if not postgresql:
        for statement in SQLITE_UPGRADE:
            op.execute(statement)
        op.execute(
            f"CREATE INDEX {INDEX} ON fulltext (finished, destination, status) WHERE {ENDED}"
        )
    elif own_transaction:
        op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        for statement in POSTGRESQL_UPGRADE:
            op.execute(statement)
        # The triggers commit first; the jobs are then counted without
        # holding the lock that making them took (see above).
        with op.get_context().autocommit_block():
            op.execute(POSTGRESQL_BASELINE)
        _build_concurrently()
    else:
        for statement in POSTGRESQL_UPGRADE:
            op.execute(statement)
        op.execute(POSTGRESQL_BASELINE)
        op.execute(
            f"CREATE INDEX {INDEX} ON jobs.fulltext (finished, destination, status) WHERE {ENDED}"
        )
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    op.drop_index(INDEX, table_name="fulltext", schema="jobs" if postgresql else None)
    for statement in POSTGRESQL_DOWNGRADE if postgresql else SQLITE_DOWNGRADE:
        op.execute(statement)
