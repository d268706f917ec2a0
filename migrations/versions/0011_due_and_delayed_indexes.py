"""Claims that do not walk delayed jobs: the ready jobs in two partial
indexes, due and delayed; and autovacuum settings for the jobs table.

- `fulltext_due_idx (destination, seq) WHERE status = 'ready' AND
  not_before IS NULL`: the due queue, in enqueue order.
- `fulltext_delayed_idx (destination, not_before, seq) WHERE status =
  'ready' AND not_before IS NOT NULL`: the delayed jobs (retries waiting out
  their backoff), in the order they come due.

A claim reads the due queue and the delayed jobs that have come due, and
takes the oldest by `seq` among them, so a delayed job keeps its place
among the due ones; it no longer reads, one by one, the delayed jobs that
are not yet due and sit ahead of the due ones in `seq` order (see
docs/scaling.md, "Claims behind delayed jobs").

On PostgreSQL the two indexes are built with `CREATE INDEX CONCURRENTLY`,
which blocks no claim or save while it reads the table, and which cannot run
inside a transaction: the revisions before this one are committed first,
the indexes are built outside any transaction, and the rest of this
revision (the window row, the table's settings, the version) is committed
after them. An index left invalid by an interrupted build is dropped and
built again. On a connection the caller had already begun a transaction on
(`fulltext_jobs.upgrade(connection)` inside the caller's transaction), which
the caller asked to be one transaction, and on SQLite, the indexes are built
plainly, in the transaction (on PostgreSQL, blocking writes to the jobs
table while they are built).

`fulltext_ready_idx (destination, seq) WHERE status = 'ready'` stays: the
code of revisions 0006 to 0010, which this window still admits, claims
through it (its query names no `not_before IS NULL`, so it cannot use the
new indexes). A later contract revision, once that code is out of the
window, drops it.

PostgreSQL only, the jobs table's autovacuum settings (`ALTER TABLE ... SET
(...)`, which changes the catalogue only and rewrites nothing; `fillfactor`
applies to pages written from now on): every job is written twice after
its insert (claim, outcome), so dead row versions and stale statistics pile
up far faster than the defaults (a fifth of the table) expect. Why each
value: docs/scaling.md, "The jobs table's autovacuum settings". The
downgrade resets them.

An expand-only revision: code built for 0006 to 0010 reads none of this.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0011"
down_revision = "0010"
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

DUE = "status = 'ready' AND not_before IS NULL"
DELAYED = "status = 'ready' AND not_before IS NOT NULL"

INDEXES = {
    "fulltext_due_idx": ("(destination, seq)", DUE),
    "fulltext_delayed_idx": ("(destination, not_before, seq)", DELAYED),
}

#: The jobs table's autovacuum settings (docs/scaling.md says why each).
AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_insert_scale_factor": "0.02",
    "autovacuum_analyze_scale_factor": "0.01",
    "autovacuum_analyze_threshold": "1000",
    "fillfactor": "90",
}


def _build_concurrently() -> None:
    """The two indexes, each built with CREATE INDEX CONCURRENTLY outside
    any transaction; one an interrupted build left invalid is dropped
    first (IF NOT EXISTS alone would keep it)."""
    with op.get_context().autocommit_block():
        for name, (columns, where) in INDEXES.items():
            if not context.is_offline_mode():
                invalid = (
                    op.get_bind()
                    .execute(
                        sa.text(
                            "SELECT NOT indisvalid FROM pg_index "
                            "WHERE indexrelid = to_regclass(:name)"
                        ),
                        {"name": f"jobs.{name}"},
                    )
                    .scalar()
                )
                if invalid:
                    op.execute(f"DROP INDEX CONCURRENTLY jobs.{name}")
            op.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} "
                f"ON jobs.fulltext {columns} WHERE {where}"
            )


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql and not context.config.attributes.get(IN_CALLERS_TRANSACTION, False):
        _build_concurrently()
    else:
        schema = "jobs" if postgresql else None
        for name, (columns, where) in INDEXES.items():
            op.create_index(
                name,
                "fulltext",
                columns.strip("()").split(", "),
                schema=schema,
                postgresql_where=sa.text(where),
                sqlite_where=sa.text(where),
            )
    if postgresql:
        settings = ", ".join(f"{name} = {value}" for name, value in AUTOVACUUM.items())
        op.execute(f"ALTER TABLE jobs.fulltext SET ({settings})")
    op.bulk_insert(
        WINDOW, [{"revision": revision, "oldest_code": oldest_code, "expand_only": expand_only}]
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(WINDOW.delete().where(WINDOW.c.revision == revision))
    if postgresql:
        op.execute(f"ALTER TABLE jobs.fulltext RESET ({', '.join(AUTOVACUUM)})")
    for name in INDEXES:
        op.drop_index(name, table_name="fulltext", schema="jobs" if postgresql else None)
