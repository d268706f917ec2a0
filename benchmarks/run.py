"""Benchmarks of fulltext-jobs on PostgreSQL, each against a baseline measured
in the same run.

    python benchmarks/run.py                 # everything, at full scale (~15 min)
    python benchmarks/run.py --only claim    # one benchmark
    python benchmarks/run.py --quick         # small sizes: checks that it runs

The benchmarks run in a database of their own on the server named by
FULLTEXT_JOBS_BENCH_ADMIN_URL (default: the local test server), created and
dropped here. Each prints a table of medians and ratios; `--markdown FILE`
appends the tables to FILE too. Targets are the issue's: they are checked
here, never in the test suite, because this machine is shared and noisy.

a. enqueue     enqueue_unqueued of N items vs a raw INSERT ... SELECT of the
               same rows; the original's one-at-a-time loop at 10k and 20k
               items, extrapolated to N.
b. create      create_job_for_unqueued latency with 99% of items queued, at
               10k and at N items; the original's query beside it.
c. claim       get_ready_job latency on an empty ledger and with N finished jobs.
d. throughput  claim-and-finish jobs/s with 1, 2 and 4 processes: the
               single-job API, the batch API (n=100), and the single-job SQL
               run through raw psycopg.
e. memory      peak RSS of one worker process after 10k and after 200k jobs.
f. wakeup      latency from making a job ready to its handler starting, for an
               idle Worker polling every 5 s: woken by LISTEN/NOTIFY, and
               (the baseline) by its poll alone.
g. save        server time per save of one job: the compare-and-swap UPDATE
               with its version trigger (whose WHEN is false for it), the
               same with the trigger disabled, and the guarded upsert that
               saved before revision 0007 (the baseline); and a foreign
               write (the original's positional upsert) with and without the
               trigger, which then calls its function.
j. peers       the batch drain (20,000 no-op jobs, batch 100) against the
               physical limit (raw psycopg, one claiming and one finishing
               statement a batch), a one-write-a-job reference, PGQueuer
               (asyncpg, psycopg) and the notify triggers' cost; the
               single-job API against raw psycopg; the Worker and
               `fulltext-jobs work` against the bare drain and PGQueuer's
               worker. PGQueuer runs in an environment of its own
               (benchmarks/.peers-venv, made with pip when missing, never
               with --quick; see benchmarks/peers.py); without it its rows
               are left out, and the table says why.
l. delayed     get_ready_job and claim_ready(100) behind --delayed jobs not yet
               due against behind none, PostgreSQL and SQLite (delayed.py);
               the jobs' priorities mixed over --priority-levels levels (10).
m. vacuum      a drain of 200,000 jobs in each claim mode, with and without a
               REPEATABLE READ transaction holding vacuum back (vacuum.py);
               priorities mixed over --priority-levels levels, as for l.
n. cap         claim_ready(100) and get_ready_job under a cap that does not
               bind against under none, PostgreSQL and SQLite (cap.py).
o. priorities  claim_ready(100) and get_ready_job among 200,000 ready jobs of
               10 priority levels mixed against of one level, PostgreSQL and
               SQLite (priorities.py).
p. lag         Repository.lag, stats and a /metrics scrape on a ledger of
               --lag-jobs jobs (10 million) against one of 20,000,
               PostgreSQL and SQLite (lag.py).
q. tracing     a Worker's batch of 100 (claim, no-op runs, save) with
               OpenTelemetry tracing on against off, PostgreSQL and SQLite
               (tracing.py).
s. dependencies  finishing an upstream job and enqueue_new making its
               follower's job, on a ledger of --deps-items items (1 million)
               against one of 20,000; and claim + save of a batch of 100
               with the dependency triggers against without them,
               PostgreSQL and SQLite (dependencies.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

import fulltext_jobs
from fulltext_jobs import DEFAULT_LEASE, FullText, NoJobs, SqlAlchemyRepository, Worker
from fulltext_jobs.sql.compiled import compile_for_driver
from fulltext_jobs.sql.floors import FROM_START, PAST_END, range_params
from fulltext_jobs.sql.items import ItemSource
from fulltext_jobs.sql.rows import BACKOFFS, PRIORITY, READY_AT, VERSION
from fulltext_jobs.sql.schema import tables_for
from fulltext_jobs.sql.statements import Statements

ADMIN_URL = os.environ.get(
    "FULLTEXT_JOBS_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DESTINATION = "bench"

# The original's CreateJobForUnqueued, as its Go code ran it: the search,
# then its positional insert-or-update, in one transaction.
ORIGINAL_SEARCH = """
SELECT id FROM {items} i
WHERE NOT EXISTS (
    SELECT item_id, destination FROM jobs.fulltext
    WHERE item_id = i.id AND destination = %(dest)s
)
FOR NO KEY UPDATE OF i SKIP LOCKED
LIMIT 1
"""
ORIGINAL_SAVE = """
INSERT INTO jobs.fulltext VALUES (%(id)s, %(item)s, %(dest)s, NULL, NULL, 'ready')
ON CONFLICT (id) DO UPDATE SET item_id = %(item)s, destination = %(dest)s,
    started = NULL, finished = NULL, status = 'ready'
"""
RAW_INSERT_SELECT = """
INSERT INTO jobs.fulltext (id, item_id, destination, status)
SELECT gen_random_uuid(), id, %(dest)s, 'ready' FROM jobs.fulltext_items
"""


# --- Reporting -------------------------------------------------------------


@dataclass
class Row:
    what: str
    value: str
    ratio: str = ""
    target: str = ""
    met: str = ""


@dataclass
class Table:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, what: str, value: str, ratio: str = "", target: str = "", met: str = "") -> None:
        self.rows.append(Row(what, value, ratio, target, met))

    def markdown(self) -> str:
        lines = [
            f"### {self.title}",
            "",
            "| measure | median | ratio | target | met |",
            "| --- | ---: | ---: | --- | --- |",
        ]
        lines += [f"| {r.what} | {r.value} | {r.ratio} | {r.target} | {r.met} |" for r in self.rows]
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines) + "\n"


def verdict(ok: bool) -> str:  # noqa: FBT001 - a plain predicate
    return "yes" if ok else "NO"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- Database --------------------------------------------------------------


class Bench:
    """A database of the benchmark's own on the server of `admin_url`,
    migrated; dropped on close."""

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.name = f"ftj_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
        self.url = sa.make_url(admin_url).set(database=self.name)
        self.sa_url = self.url.render_as_string(hide_password=False)
        self.dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        fulltext_jobs.upgrade(self.sa_url)
        self.engine = fulltext_jobs.create_engine(self.sa_url)

    def close(self) -> None:
        self.engine.dispose()
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.dispose()

    def sql(self, *statements: str, **params: Any) -> list[tuple[Any, ...]]:  # noqa: ANN401
        """Run statements in autocommit; return the last one's rows."""
        rows: list[tuple[Any, ...]] = []
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            for statement in statements:
                cursor = connection.execute(statement, params or None)
                rows = cursor.fetchall() if cursor.description else []
        return rows

    def reset(self) -> None:
        self.sql("TRUNCATE jobs.fulltext, jobs.enqueue_cursor")

    def load_items(self, n: int) -> None:
        self.sql(
            "TRUNCATE jobs.fulltext_items, jobs.fulltext, jobs.enqueue_cursor",
            "INSERT INTO jobs.fulltext_items SELECT 'loc.gov/item/' || lpad(g::text, 9, '0') "
            f"FROM generate_series(1, {int(n)}) g",
            "VACUUM ANALYZE jobs.fulltext_items",
        )

    def ready_jobs(self, n: int, *, finished: int = 0, delayed: int = 0, levels: int = 1) -> None:
        """An empty ledger but for `finished` finished jobs, then `delayed`
        ready jobs not due for a day (a retry's backoff, ahead of the others
        in the queue), and then `n` ready ones (no items needed: jobs need
        no item row). The delayed and the ready jobs have priorities mixed
        over `levels` levels as table o.'s (`priorities.priority_of`: the
        g-th of each kind gets `(g * 7919) mod levels`), or all 0."""
        from priorities import priority_of  # noqa: PLC0415 - a sibling benchmark's mix

        priority = priority_of("g", levels, "%%")
        self.reset()
        if delayed:
            self.sql(
                "INSERT INTO jobs.fulltext (id, item_id, destination, status, not_before, "
                "priority) SELECT gen_random_uuid(), 'later-' || g, %(dest)s, 'ready', "
                f"now() + interval '1 day', {priority} "
                f"FROM generate_series(1, {int(delayed)}) g",
                dest=DESTINATION,
            )
        if finished:
            self.sql(
                "INSERT INTO jobs.fulltext (id, item_id, destination, started, finished, status) "
                "SELECT gen_random_uuid(), 'done-' || g, %(dest)s, now(), now(), 'finished' "
                f"FROM generate_series(1, {int(finished)}) g",
                dest=DESTINATION,
            )
        self.sql(
            "INSERT INTO jobs.fulltext (id, item_id, destination, status, priority) "
            "SELECT gen_random_uuid(), 'todo-' || lpad(g::text, 9, '0'), %(dest)s, 'ready', "
            f"{priority} FROM generate_series(1, {int(n)}) g",
            "VACUUM ANALYZE jobs.fulltext",
            dest=DESTINATION,
        )

    def repo(self) -> SqlAlchemyRepository:
        return SqlAlchemyRepository(self.engine)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median_latency(call: Callable[[], object], runs: int, calls: int) -> float:
    """The median over `runs` runs of each run's median latency of `calls`
    calls."""
    return median([median([timed(call) for _ in range(calls)]) for _ in range(runs)])


# --- a. enqueue ------------------------------------------------------------


def original_loop(bench: Bench, n: int) -> float:
    """Seconds for the original's loop to queue `n` items one at a time."""
    bench.reset()
    bench.sql(
        "DROP TABLE IF EXISTS original_items",
        "CREATE TABLE original_items (id text PRIMARY KEY)",
        "INSERT INTO original_items SELECT 'loc.gov/item/' || lpad(g::text, 9, '0') "
        f"FROM generate_series(1, {int(n)}) g",
        "VACUUM ANALYZE original_items",
        # Fresh statistics for the ledger too: planned as an empty table, the
        # search becomes a nested loop over a sequential scan, far slower
        # than the original ever ran.
        "VACUUM ANALYZE jobs.fulltext",
    )
    search = ORIGINAL_SEARCH.format(items="original_items")
    # Planned afresh each time, with statistics kept fresh below: a plan
    # made while the ledger was empty would make this loop far slower than
    # the original's typical run, which is what this benchmark measures.
    with psycopg.connect(bench.dsn, prepare_threshold=None) as connection:
        start = time.perf_counter()
        queued = 0
        while True:
            row = connection.execute(search, {"dest": DESTINATION}).fetchone()
            if row is None:
                connection.rollback()
                break
            connection.execute(
                ORIGINAL_SAVE, {"id": uuid.uuid4(), "item": row[0], "dest": DESTINATION}
            )
            connection.commit()
            queued += 1
            if queued % 500 == 0:
                # What autovacuum does for a growing table in production:
                # with statistics of an empty ledger the planner picks a
                # nested loop over a sequential scan of it, which would
                # make the loop cubic rather than the original's quadratic.
                connection.execute("ANALYZE jobs.fulltext")
                connection.commit()
        return time.perf_counter() - start


def extrapolate(n1: int, t1: float, n2: int, t2: float, n: int) -> float:
    """T(n) from T(n1) and T(n2) under T(n) = a n^2 + b n (linear if the
    points give no positive a)."""
    a = (t2 / n2 - t1 / n1) / (n2 - n1)
    b = t1 / n1 - a * n1
    if a <= 0:
        return t2 / n2 * n
    return a * n * n + b * n


def bench_enqueue(bench: Bench, args: argparse.Namespace) -> Table:
    n = args.items
    table = Table(f"a. Enqueue {n:,} items for one destination")
    bench.load_items(n)
    repo = bench.repo()
    raw: list[float] = []
    ours: list[float] = []
    for _ in range(args.runs):
        bench.reset()
        raw.append(timed(lambda: bench.sql(RAW_INSERT_SELECT, dest=DESTINATION)))
        bench.reset()
        ours.append(timed(lambda: repo.enqueue_unqueued(DESTINATION)))
    queued = bench.sql("SELECT count(*) FROM jobs.fulltext")[0][0]
    if queued != n:
        msg = f"enqueue_unqueued queued {queued} of {n} items"
        raise RuntimeError(msg)
    again = median([timed(lambda: repo.enqueue_unqueued(DESTINATION)) for _ in range(3)])
    small, large = args.original_sizes
    t_small = median([original_loop(bench, small) for _ in range(args.original_runs)])
    t_large = median([original_loop(bench, large) for _ in range(args.original_runs)])
    t_original = extrapolate(small, t_small, large, t_large, n)
    untriggered: list[float] = []
    bench.sql("ALTER TABLE jobs.fulltext DISABLE TRIGGER fulltext_ready_inserted")
    try:
        for _ in range(args.runs):
            bench.reset()
            untriggered.append(timed(lambda: bench.sql(RAW_INSERT_SELECT, dest=DESTINATION)))
    finally:
        bench.sql("ALTER TABLE jobs.fulltext ENABLE TRIGGER fulltext_ready_inserted")
    bench.reset()
    repo.enqueue_unqueued(DESTINATION)
    ratio_raw = median(ours) / median(raw)
    speedup = t_original / median(ours)
    table.add(
        "raw INSERT ... SELECT without the ready-notification trigger",
        f"{median(untriggered):.2f} s",
        f"{median(untriggered) / median(raw):.2f} x raw",
    )
    table.add("raw psycopg INSERT ... SELECT (the limit)", f"{median(raw):.2f} s", "1.00")
    table.add(
        "enqueue_unqueued",
        f"{median(ours):.2f} s",
        f"{ratio_raw:.2f} x raw",
        "<= 1.5 x raw",
        verdict(ratio_raw <= 1.5),
    )
    table.add("enqueue_unqueued again, nothing left to queue", f"{again:.2f} s")
    table.add(f"original loop, {small:,} items", f"{t_small:.1f} s")
    table.add(f"original loop, {large:,} items", f"{t_large:.1f} s")
    table.add(
        f"original loop, extrapolated to {n:,}",
        f"{t_original:,.0f} s",
        f"{speedup:,.0f} x slower than ours",
        ">= 100 x",
        verdict(speedup >= 100),
    )
    table.notes.append(
        f"Medians of {args.runs} runs; the original's loop ran {args.original_runs} time(s) "
        "per size (it takes minutes) and is extrapolated with T(n) = a n^2 + b n."
    )
    return table


# --- b. create -------------------------------------------------------------


def create_latencies(bench: Bench, n: int, runs: int, calls: int) -> tuple[float, float, float]:
    """Median latency of create_job_for_unqueued, of the same in a mixed
    fleet (taking the original's advisory lock too), and of the original's
    search, with 99% of `n` items queued."""
    bench.load_items(n)
    repo = bench.repo()
    mixed = SqlAlchemyRepository(bench.engine, mixed_fleet=True)
    # 99% queued, and enough left for both repositories' calls.
    repo.enqueue_unqueued(DESTINATION, limit=n - max(n // 100, 2 * runs * calls + 2))
    bench.sql("VACUUM ANALYZE jobs.fulltext")
    repo.create_job_for_unqueued(DESTINATION)  # warm-up: moves the watermark up
    # Alternating runs, so that both see the same ledger and machine.
    plain_runs, mixed_runs = [], []
    for _ in range(runs):
        plain_runs.append(
            median_latency(lambda: repo.create_job_for_unqueued(DESTINATION), 1, calls)
        )
        mixed_runs.append(
            median_latency(lambda: mixed.create_job_for_unqueued(DESTINATION), 1, calls)
        )
    ours, ours_mixed = median(plain_runs), median(mixed_runs)
    search = ORIGINAL_SEARCH.format(items="jobs.fulltext_items")
    # Autocommit: the search's row lock ends with the statement, so there is
    # no transaction to roll back and nothing but the search is timed.
    with psycopg.connect(bench.dsn, autocommit=True) as connection:
        original = median_latency(
            lambda: connection.execute(search, {"dest": DESTINATION}).fetchone(), runs, calls
        )
    return ours, ours_mixed, original


def bench_create(bench: Bench, args: argparse.Namespace) -> Table:
    small, large = args.create_sizes
    table = Table("b. create_job_for_unqueued latency with 99% of items queued")
    ours_small, _, orig_small = create_latencies(bench, small, args.runs, args.calls)
    ours_large, mixed_large, orig_large = create_latencies(bench, large, args.runs, args.calls)
    ratio = ours_large / ours_small
    table.add(f"ours, {small:,} items", ms(ours_small))
    table.add(
        f"ours, {large:,} items",
        ms(ours_large),
        f"{ratio:.2f} x ({large:,} / {small:,})",
        "<= 2",
        verdict(ratio <= 2),
    )
    table.add(
        f"ours in a mixed fleet (the original's lock too), {large:,} items",
        ms(mixed_large),
        f"{mixed_large / ours_large:.2f} x ours",
    )
    table.add(f"original's search, {small:,} items", ms(orig_small))
    table.add(
        f"original's search, {large:,} items",
        ms(orig_large),
        f"{orig_large / orig_small:.1f} x",
    )
    table.notes.append(
        f"Each figure is the median of {args.runs} runs of {args.calls} calls; the first "
        "call after the bulk enqueue (which scans up to the watermark) is a warm-up. The "
        "original's figure is its search alone (no insert), in autocommit. The mixed-fleet "
        "figure is one creator alone: the lock is uncontended, so it shows the extra "
        "statement's cost, not the queueing behind the original's creators."
    )
    return table


# --- c. claim --------------------------------------------------------------


def claim_latency(bench: Bench, finished: int, runs: int, calls: int) -> float:
    bench.ready_jobs(runs * calls + 10, finished=finished)
    repo = bench.repo()
    repo.get_ready_job(DESTINATION)  # warm-up: connection, schema check, prepared statement
    return median_latency(lambda: repo.get_ready_job(DESTINATION), runs, calls)


def bench_claim(bench: Bench, args: argparse.Namespace) -> Table:
    n = args.items
    table = Table("c. get_ready_job latency")
    empty = claim_latency(bench, 0, args.runs, args.calls * 4)
    full = claim_latency(bench, n, args.runs, args.calls * 4)
    ratio = full / empty
    table.add("empty ledger", ms(empty))
    table.add(
        f"{n:,} finished jobs",
        ms(full),
        f"{ratio:.2f} x empty",
        "<= 1.5",
        verdict(ratio <= 1.5),
    )
    table.notes.append(f"Medians of {args.runs} runs of {args.calls * 4} claims each.")
    return table


# --- d. throughput ---------------------------------------------------------


def _raw_statements(bench_url: str) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """The single-job API's two statements, as SQL for psycopg."""
    dialect = sa.create_engine(bench_url).dialect
    tables = tables_for("postgresql")
    statements = Statements(tables, ItemSource(tables.items), "postgresql")
    claim, fixed = compile_for_driver(statements.claim_one, dialect)
    save, save_fixed = compile_for_driver(statements.update_job, dialect)
    return claim, fixed, save, save_fixed


def worker(mode: str, bench_url: str, dsn: str, barrier: Any, results: Any) -> None:  # noqa: ANN401 - one process of any mode
    """One process: claim and finish jobs until there are none."""
    done = 0
    if mode in {"raw-batch", "raw-locked"}:
        done = raw_batches(dsn, barrier, locked=mode == "raw-locked")
    elif mode == "raw":
        claim, defaults, save, save_defaults = _raw_statements(bench_url)
        with psycopg.connect(dsn, autocommit=True) as connection:
            barrier.wait()
            while True:
                now = datetime.now(UTC)
                token = uuid.uuid4()
                cursor = connection.execute(
                    claim,
                    {
                        **defaults,
                        "dest": DESTINATION,
                        "now": now,
                        "token": token,
                        "lease_until": now + DEFAULT_LEASE,
                        # The whole queue: no claim floor (a fresh table
                        # holds no dead entries for one to pass over).
                        **range_params(FROM_START, PAST_END),
                        "uncapped_only": True,
                    },
                )
                claimed = cursor.fetchone()
                if claimed is None:
                    break
                (job_id, item_id, destination, started, _, _, attempts, _, _, error) = claimed[:10]
                backoffs, priority = claimed[BACKOFFS], claimed[PRIORITY]
                ready_at, version = claimed[READY_AT], claimed[VERSION]
                connection.execute(
                    save,
                    {
                        **save_defaults,
                        "job_id": job_id,
                        "read_version": version,
                        "item_id": item_id,
                        "destination": destination,
                        "started": started,
                        "finished": datetime.now(UTC),
                        "status": "finished",
                        "attempts": attempts,
                        "claim_token": None,
                        "lease_expires": None,
                        "last_error": error,
                        "not_before": None,
                        "backoffs": backoffs,
                        "priority": priority,
                        "ready_at": ready_at,
                        "claim": token,
                    },
                )
                done += 1
    else:
        engine = fulltext_jobs.create_engine(bench_url, pool_size=1)
        repo = SqlAlchemyRepository(engine)
        repo.count_unqueued(DESTINATION)  # connect and check the schema before the clock starts
        barrier.wait()
        done = _drain(mode, repo)
        engine.dispose()
    results.put(done)


def _drain(mode: str, repo: SqlAlchemyRepository) -> int:
    """Drain the queue through the repository in `mode`; return how many
    jobs were finished."""
    done = 0
    if mode == "single":
        while True:
            try:
                job = repo.get_ready_job(DESTINATION)
            except NoJobs:
                break
            job.finish()
            repo.save_fulltext(job)
            done += 1
    elif mode in {"worker", "held-worker"}:
        stats = Worker(
            repo,
            DESTINATION,
            noop,
            batch_size=100,
            in_transaction=mode == "held-worker",
            listen=False,
            poll_interval=0.01,
        ).run(until_idle=True, install_signal_handlers=False)
        done = stats.finished
    elif mode == "held":
        done = _drain_held(repo)
    else:
        atomic = mode == "batch-atomic"
        while batch := repo.claim_ready(DESTINATION, 100):
            for job in batch:
                job.finish()
            repo.save_many(batch, atomic=atomic)
            done += len(batch)
    return done


def _drain_held(repo: SqlAlchemyRepository) -> int:
    """The transaction mode: the claim is the block's row locks, and each
    job is written once, when the block ends."""
    done = 0
    while True:
        with repo.hold_ready(DESTINATION, 100) as batch:
            for job in batch:
                job.finish()
        if not batch:
            return done
        done += len(batch)


def noop(job: FullText) -> None:
    """A handler that does nothing."""
    del job


# The physical reference of a batch (`raw-batch`): per batch of 100, one
# claiming UPDATE (the locking SELECT in a CTE, its ids probed as one array
# as `Statements.claim_many` does) and one finishing UPDATE
# ... FROM unnest(...), guarded by token and version: two row writes a job.
RAW_CLAIM_BATCH = """
WITH picked AS (
    SELECT id FROM jobs.fulltext
    WHERE destination = %(dest)s AND status = 'ready'
    ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED
)
UPDATE jobs.fulltext f SET status = 'running', started = now(), attempts = f.attempts + 1,
    claim_token = gen_random_uuid(), lease_expires = now() + interval '5 minutes',
    version = f.version + 1
WHERE f.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING f.id, f.claim_token, f.version
"""
RAW_FINISH_BATCH = """
UPDATE jobs.fulltext f SET status = 'finished', finished = now(), claim_token = NULL,
    lease_expires = NULL, version = f.version + 1
FROM unnest(%(ids)s::uuid[], %(tokens)s::uuid[], %(versions)s::integer[]) AS v(id, tok, ver)
WHERE f.id = v.id AND f.claim_token = v.tok AND f.version = v.ver
RETURNING f.id
"""
# One write a job (`raw-locked`): what a "transaction batch" mode could
# reach, where the claim is the row lock of an open transaction and the job
# is written once, at its finish.
RAW_LOCK_BATCH = """
SELECT id FROM jobs.fulltext
WHERE destination = %(dest)s AND status = 'ready'
ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED
"""
RAW_FINISH_LOCKED = """
UPDATE jobs.fulltext SET status = 'finished', started = now(), finished = now(),
    attempts = attempts + 1, version = version + 1
WHERE id = ANY(%(ids)s::uuid[])
"""


def raw_batches(dsn: str, barrier: Any, *, locked: bool) -> int:  # noqa: ANN401
    """Drain the queue in batches of 100 through psycopg, no Python objects
    but the rows; return how many jobs were finished."""
    done = 0
    with psycopg.connect(dsn, autocommit=not locked) as connection:
        barrier.wait()
        while True:
            if locked:
                with connection.transaction():
                    ids = [
                        row[0] for row in connection.execute(RAW_LOCK_BATCH, {"dest": DESTINATION})
                    ]
                    if ids:
                        connection.execute(RAW_FINISH_LOCKED, {"ids": ids})
                    finished = len(ids)
            else:
                rows = connection.execute(RAW_CLAIM_BATCH, {"dest": DESTINATION}).fetchall()
                finished = 0
                if rows:
                    ids, tokens, versions = (list(column) for column in zip(*rows, strict=True))
                    finished = len(
                        connection.execute(
                            RAW_FINISH_BATCH, {"ids": ids, "tokens": tokens, "versions": versions}
                        ).fetchall()
                    )
            if not finished:
                return done
            done += finished


def run_workers(bench: Bench, mode: str, processes: int, jobs: int) -> float:
    """Jobs per second for `processes` workers of `mode` over `jobs` jobs."""
    bench.ready_jobs(jobs)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    procs = [
        context.Process(target=worker, args=(mode, bench.sa_url, bench.dsn, barrier, results))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=120)
    start = time.perf_counter()
    done = sum(results.get(timeout=600) for _ in procs)
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join(timeout=60)
    if done != jobs:
        msg = f"{mode} x{processes}: {done} jobs finished, expected {jobs}"
        raise RuntimeError(msg)
    left = bench.sql("SELECT count(*) FROM jobs.fulltext WHERE status <> 'finished'")[0][0]
    if left:
        msg = f"{mode} x{processes}: {left} jobs not finished"
        raise RuntimeError(msg)
    return jobs / elapsed


def bench_throughput(bench: Bench, args: argparse.Namespace) -> Table:
    table = Table("d. Claim-and-finish throughput, no-op work (jobs/s)")
    sizes = {"raw": args.jobs, "single": args.jobs, "batch": args.jobs * 5}
    for processes in (1, 2, 4):
        rate = {
            mode: median(
                [run_workers(bench, mode, processes, sizes[mode]) for _ in range(args.runs)]
            )
            for mode in ("raw", "single", "batch")
        }
        single_vs_raw = rate["single"] / rate["raw"]
        batch_vs_single = rate["batch"] / rate["single"]
        table.add(
            f"{processes} process(es): raw psycopg, same SQL (the limit)", f"{rate['raw']:,.0f}"
        )
        table.add(
            f"{processes} process(es): single-job API",
            f"{rate['single']:,.0f}",
            f"{single_vs_raw:.2f} x raw",
            ">= 0.8 x raw",
            verdict(single_vs_raw >= 0.8),
        )
        table.add(
            f"{processes} process(es): batch API, n=100",
            f"{rate['batch']:,.0f}",
            f"{batch_vs_single:.1f} x single",
            ">= 5 x single",
            verdict(batch_vs_single >= 5),
        )
    table.notes.append(
        f"Medians of {args.runs} runs; each run finishes {args.jobs:,} jobs "
        f"({args.jobs * 5:,} for the batch API). The single-job API is get_ready_job, then "
        "finish() and save_fulltext; raw psycopg runs the same two statements in autocommit. "
        "The batch API is claim_ready(100), then finish() and save_many(atomic=False), as "
        "the Worker saves a batch."
    )
    return table


# --- e. memory -------------------------------------------------------------


def memory_worker(bench_url: str, checkpoints: Sequence[int], batch: int, results: Any) -> None:  # noqa: ANN401
    engine = fulltext_jobs.create_engine(bench_url, pool_size=1)
    repo = SqlAlchemyRepository(engine)
    done, peaks = 0, []
    pending = list(checkpoints)
    while pending:
        if batch == 1:
            job = repo.get_ready_job(DESTINATION)
            job.finish()
            repo.save_fulltext(job)
            done += 1
        else:
            jobs = repo.claim_ready(DESTINATION, batch)
            for job in jobs:
                job.finish()
            repo.save_many(jobs)
            done += len(jobs)
        if done >= pending[0]:
            pending.pop(0)
            peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    engine.dispose()
    results.put(peaks)


def memory_run(bench: Bench, jobs: int, batch: int) -> tuple[int, int]:
    bench.ready_jobs(jobs)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    proc = context.Process(
        target=memory_worker, args=(bench.sa_url, (10_000, jobs), batch, results)
    )
    proc.start()
    early, late = results.get(timeout=1200)
    proc.join(timeout=60)
    return early, late


def bench_memory(bench: Bench, args: argparse.Namespace) -> Table:
    jobs = args.memory_jobs
    table = Table(f"e. Peak RSS of one worker process, 10,000 vs {jobs:,} jobs")
    for label, batch, runs in (
        ("batch API, n=100", 100, args.runs),
        ("single-job API", 1, args.memory_single_runs),
    ):
        samples = [memory_run(bench, jobs, batch) for _ in range(runs)]
        early = median([s[0] for s in samples])
        late = median([s[1] for s in samples])
        ratio = late / early
        table.add(f"{label}: after 10,000 jobs", f"{early / 1024:.1f} MiB")
        table.add(
            f"{label}: after {jobs:,} jobs",
            f"{late / 1024:.1f} MiB",
            f"{ratio:.3f} x",
            "<= 1.2",
            verdict(ratio <= 1.2),
        )
    table.notes.append(
        f"Peak RSS (ru_maxrss) of a fresh process; medians of {args.runs} runs for the batch "
        f"API and {args.memory_single_runs} for the single-job API (about two minutes each)."
    )
    return table


# --- f. wakeup -------------------------------------------------------------


def wake_latencies(bench: Bench, *, listen: bool, samples: int, poll: float) -> list[float]:
    """Seconds from the call that makes a job ready to its handler starting,
    for an idle worker that polls every `poll` seconds. Each job is made
    ready at a random point of the worker's poll cycle."""
    bench.reset()
    repo = bench.repo()
    started: dict[str, float] = {}
    arrived = threading.Event()

    def handler(job: FullText) -> None:
        started[job.item_id] = time.perf_counter()
        arrived.set()

    worker = Worker(
        repo,
        DESTINATION,
        handler,
        poll_interval=poll,
        max_poll_interval=poll,
        listen=listen,
        shutdown_timeout=5,
    )
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    rng = random.Random(20261201)  # noqa: S311 - a reproducible phase, not a secret
    latencies = []
    try:
        time.sleep(0.5)  # its first claim found nothing: it sleeps now
        for k in range(samples):
            # Listening, the phase does not matter; keep that run short.
            time.sleep(rng.uniform(0.05, 0.25) if listen else rng.uniform(0, poll))
            arrived.clear()
            item_id = f"wake-{k:04}"
            began = time.perf_counter()
            repo.save_fulltext(FullText.new(item_id, DESTINATION))
            if not arrived.wait(poll * 2 + 10):
                msg = f"the handler never started for {item_id}"
                raise RuntimeError(msg)
            latencies.append(started[item_id] - began)
    finally:
        worker.stop()
        thread.join(30)
    return latencies


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile, by linear interpolation between ranks."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def bench_wakeup(bench: Bench, args: argparse.Namespace) -> Table:
    poll = args.wake_poll
    table = Table(f"f. Wake-up: enqueue to handler start, idle Worker polling every {poll:g} s")
    polled = wake_latencies(bench, listen=False, samples=args.wake_poll_samples, poll=poll)
    woken = wake_latencies(bench, listen=True, samples=args.wake_samples, poll=poll)
    table.add("poll alone (the baseline): median", ms(median(polled)), "1.00")
    table.add("poll alone: 95th percentile", ms(percentile(polled, 0.95)))
    table.add(
        "LISTEN/NOTIFY: median",
        ms(median(woken)),
        f"{median(woken) / median(polled):.4f} x poll",
        "< 50 ms",
        verdict(median(woken) < 0.050),
    )
    table.add("LISTEN/NOTIFY: 95th percentile", ms(percentile(woken, 0.95)))
    table.notes.append(
        f"{len(woken)} jobs woken, {len(polled)} polled; each made ready by save_fulltext of a "
        "new job at a random point of the poll cycle, and timed from before that call to the "
        "first line of the handler (one process, one worker thread)."
    )
    return table


# --- g. save ---------------------------------------------------------------

#: How `save_fulltext` wrote before revision 0007: an upsert guarded by the
#: claim token only.
UPSERT_BEFORE_0007 = """
INSERT INTO jobs.fulltext (id, item_id, destination, started, finished, status, attempts,
    claim_token, lease_expires, last_error)
VALUES (%(id)s, %(item_id)s, %(destination)s, %(started)s, %(finished)s, %(status)s,
    %(attempts)s, %(claim_token)s, %(lease_expires)s, %(last_error)s)
ON CONFLICT (id) DO UPDATE SET item_id = excluded.item_id,
    destination = excluded.destination, started = excluded.started,
    finished = excluded.finished, status = excluded.status, attempts = excluded.attempts,
    claim_token = excluded.claim_token, lease_expires = excluded.lease_expires,
    last_error = excluded.last_error
WHERE jobs.fulltext.claim_token IS NOT DISTINCT FROM %(claim)s::uuid
RETURNING jobs.fulltext.id
"""
ORIGINAL_POSITIONAL_UPSERT = """
INSERT INTO jobs.fulltext VALUES (%(id)s, %(item_id)s, %(destination)s, %(started)s,
    %(finished)s, %(status)s)
ON CONFLICT (id) DO UPDATE SET item_id = excluded.item_id,
    destination = excluded.destination, started = excluded.started,
    finished = excluded.finished, status = excluded.status
"""


def save_round(bench: Bench, variant: str, rows: list[dict[str, Any]], sql: str) -> float:
    """Seconds per save, over one save of each of `rows` with `sql`, in
    autocommit on one connection (prepared after the first few); then each
    row's `read_version` is the stored one again."""
    trigger = "ENABLE" if variant.endswith("trigger") else "DISABLE"
    bench.sql(f"ALTER TABLE jobs.fulltext {trigger} TRIGGER fulltext_count_write")
    with psycopg.connect(bench.dsn, autocommit=True) as connection:
        start = time.perf_counter()
        written = sum(connection.execute(sql, row).rowcount for row in rows)
        elapsed = time.perf_counter() - start
    if written != len(rows):
        msg = f"{variant}: {written} of {len(rows)} saves wrote"
        raise RuntimeError(msg)
    versions = dict(bench.sql("SELECT id, version FROM jobs.fulltext"))
    for row in rows:
        row["read_version"] = versions[row["id"]]
    return elapsed / len(rows)


def bench_save(bench: Bench, args: argparse.Namespace) -> Table:
    table = Table("g. The save's compare-and-swap: time per save of one job (µs)")
    n = args.jobs
    bench.ready_jobs(n)
    stamp = datetime.now(UTC)
    rows = [
        {
            "id": job_id,
            "job_id": job_id,
            "item_id": item_id,
            "destination": DESTINATION,
            "started": stamp,
            "finished": stamp,
            "status": "finished",
            "attempts": 1,
            "claim_token": None,
            "lease_expires": None,
            "last_error": None,
            "not_before": None,
            "backoffs": 0,
            "priority": 0,
            "ready_at": stamp,
            "claim": None,
            "read_version": version,
        }
        for job_id, item_id, version in bench.sql(
            "SELECT id, item_id, version FROM jobs.fulltext ORDER BY seq"
        )
    ]
    statements = Statements(
        tables_for("postgresql"), ItemSource(tables_for("postgresql").items), "postgresql"
    )
    update, fixed = compile_for_driver(
        statements.update_job, sa.create_engine(bench.sa_url).dialect
    )
    for row in rows:
        row.update(fixed)
    variants = {
        "compare-and-swap UPDATE, with the trigger": update,
        "compare-and-swap UPDATE, trigger disabled": update,
        "guarded upsert before 0007, trigger disabled (the baseline)": UPSERT_BEFORE_0007,
        "the original's positional upsert, with the trigger": ORIGINAL_POSITIONAL_UPSERT,
        "the original's positional upsert, trigger disabled": ORIGINAL_POSITIONAL_UPSERT,
    }
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    names = list(variants)
    for run in range(args.runs):
        # A different order each round, so that drift favours no variant.
        for variant in names[run % len(names) :] + names[: run % len(names)]:
            times[variant].append(save_round(bench, variant, rows, variants[variant]))
    bench.sql("ALTER TABLE jobs.fulltext ENABLE TRIGGER fulltext_count_write")
    baseline = median(times[names[2]])
    for variant in names:
        value = median(times[variant])
        table.add(variant, f"{value * 1e6:,.0f}", f"{value / baseline:.2f} x baseline")
    table.notes.append(
        f"Medians of {args.runs} rounds, each saving {n:,} finished jobs once per variant, one "
        "connection in autocommit; the variants take turns within a round."
    )
    return table


# --- j. peers ---------------------------------------------------------------

HERE = Path(__file__).resolve().parent
PEERS_SCRIPT = HERE / "peers.py"
PEERS_PACKAGES = ("pgqueuer", "asyncpg", "psycopg[binary]")
NOTIFY_TRIGGERS = ("fulltext_ready_inserted", "fulltext_ready_updated")

# The bare repository drain as a process of its own, to set beside the
# command line's `work` (both timed from the process's start to its end).
BARE_DRAIN = """
import sys
import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository
engine = fulltext_jobs.create_engine(sys.argv[1])
repo = SqlAlchemyRepository(engine)
while batch := repo.claim_ready(sys.argv[2], 100):
    for job in batch:
        job.finish()
    repo.save_many(batch, atomic=False)
"""


def peers_python(args: argparse.Namespace) -> tuple[Path | None, str]:
    """The Python of the peers' environment, or None and why there is none.

    The environment is created (with pip) when it is missing, except in
    `--quick` runs: the test suite never needs the peers."""
    if args.no_peers:
        return None, "--no-peers was given"
    venv = Path(args.peers_venv)
    python = venv / "bin" / "python"
    if not python.exists():
        if args.quick:
            return None, f"no peers environment at {venv} (--quick does not create one)"
        print(f"creating the peers environment at {venv} ...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", *PEERS_PACKAGES],
                check=True,
                timeout=900,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"could not create the peers environment at {venv}: {exc}"
    found = subprocess.run(
        [str(python), "-c", "import pgqueuer, asyncpg, psycopg; print(pgqueuer.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if found.returncode != 0:
        return None, f"the peers environment at {venv} lacks pgqueuer, asyncpg or psycopg"
    args.pgqueuer_version = found.stdout.strip()
    return python, ""


def pgqueuer_rate(bench: Bench, python: Path, mode: str, jobs: int) -> tuple[float, float]:
    """PGQueuer's jobs/s for `mode` over `jobs` queued jobs: timed inside its
    process, and from the process's start to its end."""
    command = [str(python), str(PEERS_SCRIPT), bench.dsn]
    subprocess.run(
        [*command, "prepare", str(jobs), "100"], check=True, timeout=600, capture_output=True
    )
    start = time.perf_counter()
    done = subprocess.run(
        [*command, mode, str(jobs), "100"], check=True, timeout=600, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    inside = json.loads(done.stdout.splitlines()[-1])["seconds"]
    return jobs / inside, jobs / wall


def process_rate(bench: Bench, command: list[str], jobs: int) -> float:
    """Jobs/s of a process that drains `jobs` ready jobs, its start included."""
    bench.ready_jobs(jobs)
    start = time.perf_counter()
    subprocess.run(command, check=True, timeout=600, cwd=HERE, capture_output=True)
    elapsed = time.perf_counter() - start
    left = bench.sql("SELECT count(*) FROM jobs.fulltext WHERE status <> 'finished'")[0][0]
    if left:
        msg = f"{command[:4]}: {left} jobs not finished"
        raise RuntimeError(msg)
    return jobs / elapsed


@contextmanager
def notify_triggers_off(bench: Bench) -> Iterator[None]:
    """The ready-notification triggers disabled, for one measurement."""
    for name in NOTIFY_TRIGGERS:
        bench.sql(f"ALTER TABLE jobs.fulltext DISABLE TRIGGER {name}")
    try:
        yield
    finally:
        for name in NOTIFY_TRIGGERS:
            bench.sql(f"ALTER TABLE jobs.fulltext ENABLE TRIGGER {name}")


def without_triggers(bench: Bench, jobs: int) -> float:
    with notify_triggers_off(bench):
        return run_workers(bench, "batch", 1, jobs)


def bench_peers(bench: Bench, args: argparse.Namespace) -> Table:  # noqa: C901 - one table of many rows
    jobs = args.peer_jobs
    table = Table(
        f"j. Batch throughput against the physical limit and PGQueuer ({jobs:,} no-op "
        "jobs, batch 100, jobs/s)"
    )
    python, why_not = peers_python(args)
    ours: dict[str, Callable[[], float]] = {
        "raw-batch": lambda: run_workers(bench, "raw-batch", 1, jobs),
        "raw-locked": lambda: run_workers(bench, "raw-locked", 1, jobs),
        "batch": lambda: run_workers(bench, "batch", 1, jobs),
        "batch-atomic": lambda: run_workers(bench, "batch-atomic", 1, jobs),
        "batch x2": lambda: run_workers(bench, "batch", 2, jobs),
        "batch x4": lambda: run_workers(bench, "batch", 4, jobs),
        "batch, no notify triggers": lambda: without_triggers(bench, jobs),
        "raw": lambda: run_workers(bench, "raw", 1, args.jobs),
        "single": lambda: run_workers(bench, "single", 1, args.jobs),
        "worker": lambda: run_workers(bench, "worker", 1, jobs),
        "held": lambda: run_workers(bench, "held", 1, jobs),
        "held x2": lambda: run_workers(bench, "held", 2, jobs),
        "held x4": lambda: run_workers(bench, "held", 4, jobs),
        "held worker": lambda: run_workers(bench, "held-worker", 1, jobs),
        "bare process": lambda: process_rate(
            bench, [sys.executable, "-c", BARE_DRAIN, bench.sa_url, DESTINATION], jobs
        ),
        "cli process": lambda: process_rate(
            bench,
            [
                *(sys.executable, "-m", "fulltext_jobs", "work", DESTINATION),
                *("--handler", "noop_handler:run", "--batch-size", "100", "--until-idle"),
                *("--database-url", bench.sa_url),
            ],
            jobs,
        ),
        "cli held process": lambda: process_rate(
            bench,
            [
                *(sys.executable, "-m", "fulltext_jobs", "work", DESTINATION),
                *("--handler", "noop_handler:run", "--batch-size", "100", "--until-idle"),
                *("--in-transaction", "--database-url", bench.sa_url),
            ],
            jobs,
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in ours}
    peer_modes = ("drain-asyncpg", "drain-psycopg", "worker-asyncpg")
    for mode in peer_modes:
        samples[mode] = []
    samples["worker-asyncpg process"] = []
    for _ in range(args.peer_runs):
        # Alternating: each round measures every contender once.
        for name, measure in ours.items():
            samples[name].append(measure())
        if python is not None:
            for mode in peer_modes:
                inside, wall = pgqueuer_rate(bench, python, mode, jobs)
                samples[mode].append(inside)
                if mode == "worker-asyncpg":
                    samples["worker-asyncpg process"].append(wall)
    rate = {name: median(values) for name, values in samples.items() if values}
    raw = rate["raw-batch"]
    table.add(
        "raw psycopg, claim UPDATE + finish UPDATE ... FROM unnest (the limit: 2 writes a job)",
        f"{raw:,.0f}",
    )
    table.add(
        "raw psycopg, lock in a transaction + one finishing UPDATE (1 write a job)",
        f"{rate['raw-locked']:,.0f}",
        f"{rate['raw-locked'] / raw:.2f} x the limit",
    )
    best_peer = max(
        (rate[mode] for mode in ("drain-asyncpg", "drain-psycopg") if mode in rate), default=None
    )
    batch = rate["batch"]
    table.add(
        "fulltext-jobs claim_ready(100) + save_many(atomic=False), 1 process",
        f"{batch:,.0f}",
        f"{batch / raw:.2f} x the limit",
    )
    if best_peer is not None:
        table.add(
            "  the same, against PGQueuer's best drain",
            f"{batch:,.0f}",
            f"{batch / best_peer:.2f} x PGQueuer",
            ">= 2 x PGQueuer",
            verdict(batch / best_peer >= 2),
        )
    table.add(
        "fulltext-jobs claim_ready(100) + save_many() (atomic), 1 process",
        f"{rate['batch-atomic']:,.0f}",
        f"{rate['batch-atomic'] / raw:.2f} x the limit",
    )
    for processes in (2, 4):
        value = rate[f"batch x{processes}"]
        table.add(
            f"fulltext-jobs batch, {processes} processes",
            f"{value:,.0f}",
            f"{value / batch:.2f} x 1 process",
        )
    _held_rows(table, rate, best_peer)
    quiet = rate["batch, no notify triggers"]
    table.add(
        "fulltext-jobs batch, notify triggers disabled",
        f"{quiet:,.0f}",
        f"{batch / quiet:.2f} x (with / without)",
        ">= 0.95: the triggers cost nothing",
        verdict(batch / quiet >= 0.95),
    )
    if python is not None:
        for mode, label in (("drain-asyncpg", "asyncpg"), ("drain-psycopg", "psycopg")):
            table.add(
                f"PGQueuer {args.pgqueuer_version} dequeue + log_jobs, {label}",
                f"{rate[mode]:,.0f}",
                f"{rate[mode] / raw:.2f} x our limit",
            )
    single = rate["single"] / rate["raw"]
    table.add(
        "single job: get_ready_job + save_fulltext, against raw psycopg running the same SQL",
        f"{rate['single']:,.0f}",
        f"{single:.2f} x raw ({rate['raw']:,.0f})",
        ">= 0.8 x raw",
        verdict(single >= 0.8),
    )
    worker = rate["worker"] / batch
    table.add(
        "Worker(batch_size=100), in process, against the bare drain",
        f"{rate['worker']:,.0f}",
        f"{worker:.2f} x bare",
        ">= 0.9 x bare",
        verdict(worker >= 0.9),
    )
    cli = rate["cli process"] / rate["bare process"]
    table.add(
        "`fulltext-jobs work --batch-size 100 --until-idle`, process start included, "
        "against the bare drain as a process",
        f"{rate['cli process']:,.0f}",
        f"{cli:.2f} x bare ({rate['bare process']:,.0f})",
        ">= 0.9 x bare",
        verdict(cli >= 0.9),
    )
    if python is not None:
        peer_worker = rate["worker-asyncpg process"]
        table.add(
            "  the same, against PGQueuer's worker (QueueManager.run, drain mode) as a process",
            f"{rate['cli process']:,.0f}",
            f"{rate['cli process'] / peer_worker:.2f} x PGQueuer ({peer_worker:,.0f}; "
            f"{rate['worker-asyncpg']:,.0f} without its start)",
            ">= 1 x PGQueuer",
            verdict(rate["cli process"] >= peer_worker),
        )
        table.add(
            "`fulltext-jobs work --batch-size 100 --in-transaction --until-idle`, process "
            "start included, against PGQueuer's worker as a process",
            f"{rate['cli held process']:,.0f}",
            f"{rate['cli held process'] / peer_worker:.2f} x PGQueuer",
            ">= 1 x PGQueuer",
            verdict(rate["cli held process"] >= peer_worker),
        )
    else:
        table.notes.append(f"PGQueuer rows skipped: {why_not}.")
    table.notes.append(
        f"Medians of {args.peer_runs} rounds; in each round every contender runs once, in "
        f'turn. Single-job rows finish {args.jobs:,} jobs. "the limit": raw psycopg, per '
        "batch one claiming UPDATE (locking SELECT in a CTE) and one finishing UPDATE ... "
        "FROM unnest(ids, tokens, versions), one round trip each, no Python objects."
    )
    return table


def _held_rows(table: Table, rate: dict[str, float], best_peer: float | None) -> None:
    """The peers table's rows of the transaction mode (`hold_ready`)."""
    raw = rate["raw-batch"]
    held = rate["held"]
    table.add(
        "ours, transaction mode: hold_ready(100), each job written once, 1 process",
        f"{held:,.0f}",
        f"{held / raw:.2f} x the limit; {held / rate['raw-locked']:.2f} x its raw reference",
    )
    if best_peer is not None:
        table.add(
            "  the same, against PGQueuer's best drain",
            f"{held:,.0f}",
            f"{held / best_peer:.2f} x PGQueuer",
            ">= 2 x PGQueuer",
            verdict(held / best_peer >= 2),
        )
    for processes in (2, 4):
        value = rate[f"held x{processes}"]
        table.add(
            f"ours, transaction mode, {processes} processes",
            f"{value:,.0f}",
            f"{value / held:.2f} x 1 process",
        )
    held_worker = rate["held worker"] / held
    table.add(
        "Worker(batch_size=100, in_transaction=True), in process, against the bare "
        "transaction-mode drain",
        f"{rate['held worker']:,.0f}",
        f"{held_worker:.2f} x bare",
        ">= 0.9 x bare",
        verdict(held_worker >= 0.9),
    )


# --- Main ------------------------------------------------------------------

BENCHMARKS: dict[str, Callable[[Bench, argparse.Namespace], Table]] = {
    "enqueue": bench_enqueue,
    "create": bench_create,
    "claim": bench_claim,
    "throughput": bench_throughput,
    "memory": bench_memory,
    "wakeup": bench_wakeup,
    "save": bench_save,
    "rate": __import__("rate_limit").bench_rate_limit,  # h. benchmarks/rate_limit.py
    "peers": bench_peers,
    "scale": lambda bench, args: __import__("scale").bench_scale(bench, args),
    "delayed": __import__("delayed").bench_delayed,  # l. benchmarks/delayed.py
    "vacuum": lambda bench, args: __import__("vacuum").bench_vacuum(bench, args),  # m.
    "cap": lambda bench, args: __import__("cap").bench_cap(bench, args),  # n. benchmarks/cap.py
    # o. benchmarks/priorities.py
    "priorities": lambda bench, args: __import__("priorities").bench_priorities(bench, args),
    # p. benchmarks/lag.py
    "lag": lambda bench, args: __import__("lag").bench_lag(bench, args),
    # q. benchmarks/tracing.py
    "tracing": lambda bench, args: __import__("tracing").bench_tracing(bench, args),
    # r. benchmarks/counting.py
    "counting": lambda bench, args: __import__("counting").bench_counting(bench, args),
    # s. benchmarks/dependencies.py
    "dependencies": lambda bench, args: __import__("dependencies").bench_dependencies(bench, args),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=15, help="calls per latency run")
    parser.add_argument("--jobs", type=int, default=6_000, help="jobs per throughput run")
    parser.add_argument("--memory-jobs", type=int, default=200_000)
    parser.add_argument("--memory-single-runs", type=int, default=1)
    parser.add_argument("--original-runs", type=int, default=1)
    parser.add_argument(
        "--original-sizes", type=int, nargs=2, default=(10_000, 20_000), metavar=("N1", "N2")
    )
    parser.add_argument("--delayed", type=int, default=100_000, help="delayed jobs, for l.")
    parser.add_argument(
        "--priority-levels",
        type=int,
        default=10,
        metavar="N",
        help="priority levels mixed over the jobs of l. and m. (1: every job at priority 0)",
    )
    parser.add_argument("--wake-poll", type=float, default=5.0, help="the worker's poll (s)")
    parser.add_argument("--wake-samples", type=int, default=100)
    parser.add_argument("--wake-poll-samples", type=int, default=12)
    parser.add_argument(
        "--vacuum-jobs", type=int, default=200_000, help="jobs per drain of the vacuum table"
    )
    parser.add_argument(
        "--lag-jobs", type=int, default=10_000_000, help="jobs of the large ledger of p."
    )
    parser.add_argument("--lag-sqlite-jobs", type=int, default=1_000_000, help="the same on SQLite")
    parser.add_argument(
        "--deps-items", type=int, default=1_000_000, help="items of the large ledger of r."
    )
    parser.add_argument(
        "--deps-sqlite-items", type=int, default=1_000_000, help="the same on SQLite"
    )
    parser.add_argument(
        "--deps-small-items", type=int, default=20_000, help="items of the small ledger of r."
    )
    parser.add_argument("--peer-jobs", type=int, default=20_000, help="jobs per peers run")
    parser.add_argument("--peer-runs", type=int, default=3, help="rounds of the peers table")
    parser.add_argument(
        "--peers-venv",
        default=str(Path(__file__).resolve().parent / ".peers-venv"),
        help="the environment holding PGQueuer (created if missing, but not with --quick)",
    )
    parser.add_argument("--no-peers", action="store_true", help="leave PGQueuer out")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check it runs")
    parser.add_argument("--markdown", help="append the tables, as Markdown, to this file")
    args = parser.parse_args(argv)
    if args.priority_levels < 1:
        parser.error("--priority-levels must be at least 1")
    args.create_sizes = (10_000, args.items)
    if args.quick:
        args.runs, args.items, args.calls, args.jobs = 1, 20_000, 5, 600
        args.memory_jobs, args.original_sizes = 12_000, (300, 600)
        args.create_sizes = (2_000, 20_000)
        args.wake_poll, args.wake_samples, args.wake_poll_samples = 0.5, 5, 3
        args.delayed = 2_000
        args.peer_jobs, args.peer_runs = 1_000, 1
        args.vacuum_jobs = 2_000
        args.tracing_jobs = 400
        args.lag_jobs = args.lag_sqlite_jobs = 40_000
        args.deps_items = args.deps_sqlite_items = 20_000
        args.deps_small_items = 2_000
    return args


def report(text: str, markdown: str | None) -> None:
    """Print `text`, and append it to the file `markdown` if given."""
    print(text)
    if markdown:
        with Path(markdown).open("a", encoding="utf-8") as out:
            out.write(f"\n{text}")


@contextmanager
def bench_database(admin_url: str = ADMIN_URL) -> Iterator[Bench]:
    bench = Bench(admin_url)
    try:
        yield bench
    finally:
        bench.close()


def stop(_signal: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the benchmark database is dropped."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, stop)
    args = parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    header = (
        f"fulltext-jobs benchmarks, {started:%Y-%m-%d %H:%M} UTC; "
        f"{os.cpu_count()} cores; PostgreSQL via {ADMIN_URL.split('@')[-1]}"
    )
    print(header, flush=True)
    failed = False
    with bench_database() as bench:
        for name in names:
            began = time.perf_counter()
            table = BENCHMARKS[name](bench, args)
            text = table.markdown()
            print(f"\n{text}({time.perf_counter() - began:.0f} s)", flush=True)
            failed |= any(row.met == "NO" for row in table.rows)
            if args.markdown:
                with Path(args.markdown).open("a", encoding="utf-8") as out:
                    out.write(f"\n{text}")
    print("\nsome targets were not met" if failed else "\nevery target checked was met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
