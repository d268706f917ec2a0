"""What `Repository.audit` costs on a large ledger, check by check.

    .venv/bin/python benchmarks/audit_cost.py --jobs 1000000

Makes a PostgreSQL database of its own (`FULLTEXT_JOBS_BENCH_ADMIN_URL`, by
default the local server's `test` database as admin), fills it with `--jobs`
items and one job each (98% finished, 1% ready, 1% running with a lease,
and a handful of bad ones), analyses it, and prints the median of
`--repeat` full audits and each check's count query alone; then drops the
database.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
import uuid

import sqlalchemy as sa

import fulltext_jobs
from fulltext_jobs.audit import AuditSettings

ADMIN = os.environ.get(
    "FULLTEXT_JOBS_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

SCAN = re.compile(r"[A-Z][\w ]*Scan(?: using \w+)?(?: on \w+)?")

FILL = """
INSERT INTO jobs.fulltext_items (id) SELECT 'item-' || lpad(g::text, 9, '0')
FROM generate_series(1, :n) g;
INSERT INTO jobs.fulltext (id, item_id, destination, started, finished, status,
                           attempts, claim_token, lease_expires)
SELECT gen_random_uuid(), 'item-' || lpad(g::text, 9, '0'), 'lang',
       CASE WHEN g % 100 = 0 THEN NULL ELSE now() - interval '1 day' END,
       CASE WHEN g % 100 IN (0, 1) THEN NULL ELSE now() - interval '23 hours' END,
       (CASE WHEN g % 100 = 0 THEN 'ready' WHEN g % 100 = 1 THEN 'running'
             ELSE 'finished' END)::job_statuses,
       CASE WHEN g % 100 = 0 THEN 0 ELSE 1 END,
       CASE WHEN g % 100 = 1 THEN gen_random_uuid() END,
       CASE WHEN g % 100 = 1 THEN now() + interval '5 minutes' END
FROM generate_series(1, :n) g;
UPDATE jobs.fulltext SET lease_expires = NULL, claim_token = NULL
WHERE item_id IN ('item-000000101', 'item-000000201');
DELETE FROM jobs.fulltext_items WHERE id = 'item-000000002';
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    name = f"ftj_audit_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        fulltext_jobs.upgrade(url)
        engine = fulltext_jobs.create_engine(url)
        started = time.perf_counter()
        with engine.begin() as connection:
            for statement in filter(str.strip, FILL.split(";")):
                connection.execute(sa.text(statement), {"n": args.jobs})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE jobs.fulltext")
            connection.exec_driver_sql("VACUUM ANALYZE jobs.fulltext_items")
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
        repo = fulltext_jobs.SqlAlchemyRepository(engine)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            problems = repo.audit()
            times.append(time.perf_counter() - started)
        print(f"audit(): median {statistics.median(times):.2f} s of {args.repeat}")
        for problem in problems:
            print(f"  found {problem.check.value}: {problem.count}")
        statements = repo._ops.statements  # noqa: SLF001 - the adapter's own statements, timed one by one
        now = fulltext_jobs.domain.utc()
        settings = AuditSettings()
        binds = {
            "now": now,
            "stale_before": now - settings.rescue_after,
            "future_after": now + settings.clock_tolerance,
            "max_attempts": settings.max_attempts,
        }
        with engine.connect() as connection:
            for check, condition in statements.audit_conditions().items():
                query = statements.audit_counts(condition, None)
                started = time.perf_counter()
                connection.execute(query, binds).all()
                took = time.perf_counter() - started
                compiled = query.compile(engine, compile_kwargs={"render_postcompile": True})
                params = {
                    **compiled.params,
                    **{k: v for k, v in binds.items() if k in compiled.params},
                }
                plan = connection.exec_driver_sql("EXPLAIN " + str(compiled), params).scalars()
                scans = sorted({m[0] for line in plan if (m := SCAN.search(line)) is not None})
                print(f"  {check.value:28} {took * 1000:8.1f} ms  {'; '.join(scans)}")
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


if __name__ == "__main__":
    main()
