"""The plans of the claims: each reads the due jobs' and the delayed jobs'
partial indexes, never the ready jobs' index nor the whole table, and sorts
no more than a bounded set, however many delayed jobs wait ahead of the due
ones (docs/scaling.md, "Claims behind delayed jobs").

On PostgreSQL the plans are PostgreSQL's own choice on a ledger with its
statistics (no planner setting forced); the row locks are taken inside
each branch, below its LIMIT."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from fulltext_jobs import SqlAlchemyRepository
from fulltext_jobs.sql.compiled import compile_for_driver
from fulltext_jobs.sql.floors import FROM_START, PAST_END, range_params

#: Delayed jobs not due for a day, ahead of as many due ones, and a few
#: delayed ones that came due.
DELAYED, DUE, CAME_DUE = 20_000, 20_000, 150

CLAIMS = ("claim_one", "claim_many", "hold_ready", "next_due")


def fill(engine: sa.Engine) -> datetime:
    """The ledger of the plans; returns its moment."""
    now = datetime.now(UTC)
    postgresql = engine.dialect.name == "postgresql"
    table = "jobs.fulltext" if postgresql else "fulltext"
    rows = (
        "SELECT gen_random_uuid(), :prefix || g, 'd', 'ready', CAST(:later AS timestamptz) "
        "FROM generate_series(1, :n) g"
        if postgresql
        else "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :n) "
        "SELECT lower(hex(randomblob(16))), :prefix || x, 'd', 'ready', :later FROM g"
    )
    insert = f"INSERT INTO {table} (id, item_id, destination, status, not_before) {rows}"

    def moment(delta: timedelta) -> str:
        at = now + delta
        return at.isoformat() if postgresql else f"{at.replace(tzinfo=None):%Y-%m-%d %H:%M:%S.%f}"

    with engine.begin() as connection:
        for prefix, n, later in (
            ("came-due-", CAME_DUE, moment(-timedelta(minutes=1))),
            ("later-", DELAYED, moment(timedelta(days=1))),
            ("due-", DUE, None),
        ):
            connection.execute(sa.text(insert), {"prefix": prefix, "n": n, "later": later})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM ANALYZE {table}" if postgresql else "ANALYZE")
    return now


def params(now: datetime) -> dict[str, Any]:
    """The claims' parameters, the claim floor's range (PostgreSQL) the
    whole queue."""
    return {
        "dest": "d",
        "now": now,
        "n": 100,
        "lease_until": now,
        "token": None,
        **range_params(FROM_START, PAST_END),
        "uncapped_only": True,
    }


def due_index(name: str) -> str:
    """The due jobs' index statement `name` reads: the claims read the one
    in claim order (priority, then `seq`); `next_due` wants any due job,
    the first entry of the one in `seq` order."""
    return "fulltext_due_idx" if name == "next_due" else "fulltext_due_priority_idx"


@pytest.mark.postgresql
def test_postgresql_claims_read_the_two_indexes_and_lock_below_each_limit(
    clean_postgres_engine: sa.Engine,
):
    now = fill(clean_postgres_engine)
    statements = SqlAlchemyRepository(clean_postgres_engine)._ops.statements
    with clean_postgres_engine.connect() as connection:
        for name in CLAIMS:
            sql, fixed = compile_for_driver(getattr(statements, name), connection.dialect)
            plan = "\n".join(
                connection.exec_driver_sql(
                    f"EXPLAIN (COSTS OFF) {sql}", {**fixed, **params(now)}
                ).scalars()
            )
            assert due_index(name) in plan, (name, plan)
            assert "fulltext_delayed_idx" in plan, (name, plan)
            assert "fulltext_ready_idx" not in plan, (name, plan)
            assert "Seq Scan" not in plan, (name, plan)
            if name != "next_due":
                # Each branch locks its rows below its own LIMIT: at most
                # `n` each, whatever the merge above them does.
                lines = plan.splitlines()
                locks = [i for i, line in enumerate(lines) if "LockRows" in line]
                assert len(locks) == 2, (name, plan)
                for at in locks:
                    depth = len(lines[at]) - len(lines[at].lstrip())
                    above = [
                        line
                        for line in lines[:at]
                        if line.lstrip().startswith("->") and len(line) - len(line.lstrip()) < depth
                    ]
                    assert "Limit" in above[-1], (name, plan)


@pytest.mark.postgresql
def test_on_a_drained_queue_the_claims_probe_come_due_jobs_by_primary_key(
    clean_postgres_engine: sa.Engine,
):
    # Every job claimed and finished since the last vacuum: the ready
    # jobs' indexes hold only dead entries, which a scan of them would read
    # on every claim. The delayed jobs that came due are probed by id.
    with clean_postgres_engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO jobs.fulltext (id, item_id, destination, status) "
            "SELECT gen_random_uuid(), 'drained-' || g, 'd', 'ready' "
            "FROM generate_series(1, 40000) g"
        )
        connection.exec_driver_sql("ANALYZE jobs.fulltext")
        connection.exec_driver_sql(
            "UPDATE jobs.fulltext SET status = 'finished', started = now(), finished = now()"
        )
    with clean_postgres_engine.connect().execution_options(
        isolation_level="AUTOCOMMIT"
    ) as connection:
        connection.exec_driver_sql("ANALYZE jobs.fulltext")
    statements = SqlAlchemyRepository(clean_postgres_engine)._ops.statements
    now = datetime.now(UTC)
    with clean_postgres_engine.connect() as connection:
        for name in ("claim_one", "claim_many", "hold_ready", "claim_capped", "hold_capped"):
            sql, fixed = compile_for_driver(getattr(statements, name), connection.dialect)
            plan = "\n".join(
                connection.exec_driver_sql(
                    f"EXPLAIN (COSTS OFF) {sql}",
                    {**fixed, **params(now), "max_running": 10},
                ).scalars()
            )
            lines = plan.splitlines()
            probes = [at for at, line in enumerate(lines) if "Index Cond: (id = ANY" in line]
            assert probes, (name, plan)
            for at in probes:
                # The ids are read by the primary key (an index scan's, or
                # a bitmap's), never filtered out of another index's scan.
                assert "fulltext_pkey" in lines[at - 1], (name, plan)
            assert not [line for line in lines if "Filter" in line and "id = ANY" in line], (
                name,
                plan,
            )
            assert "fulltext_ready_idx" not in plan, (name, plan)


def test_sqlite_claims_read_the_two_indexes(sqlite_engine: sa.Engine):
    now = fill(sqlite_engine)
    statements = SqlAlchemyRepository(sqlite_engine)._ops.statements
    with sqlite_engine.connect() as connection:
        for name in CLAIMS:
            statement = getattr(statements, name)
            compiled = statement.compile(dialect=connection.dialect)
            values = compiled.construct_params(params(now))
            processors = compiled._bind_processors
            args = [
                processors[key](values[key]) if key in processors else values[key]
                for key in compiled.positiontup or ()
            ]
            plan = "\n".join(
                str(row[-1])
                for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(args))
            )
            assert due_index(name) in plan, (name, plan)
            assert "fulltext_delayed_idx" in plan, (name, plan)
            assert "fulltext_ready_idx" not in plan, (name, plan)
            assert "SCAN fulltext\n" not in f"{plan}\n", (name, plan)
