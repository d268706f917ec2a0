"""A follower's job at scale, and what the dependency triggers cost
everyone: benchmark `dependencies` of benchmarks/run.py (table s., issue 27).

    python benchmarks/run.py --only dependencies

When an upstream job ends, a row trigger of migration 0018 records its item
in `fulltext_unblocked` for each destination that follows the upstream,
and the follower's producer (`enqueue_new`) takes the recorded rows and
queues their items, a probe per item. So finishing one more upstream job
and creating its downstream job should cost the same on a ledger of
`--deps-items` items (1 million) as on one of `--deps-small-items`
(20,000): at most `TARGET` times as much.

Each ledger has that many items; destination A has a finished job for
every item but one in `stride` (the reserved items, about `reserved` of
them), whose A job is ready; B follows A (`depend("B", on="A")`) and has a
finished job for every item whose A job is finished: B has caught up, and
nothing waits in `fulltext_unblocked`. A first `enqueue_new("B")` sweeps
(and must create nothing); the timed calls pass `sweep_interval` of a day,
so no sweep runs inside the timed loop, only the producer's idle probe of
the new items. Each step claims, untimed, one ready A job (a reserved
item, with no B job), then times its finish (`save_fulltext`: the
compare-and-swap and the trigger recording the item) and `enqueue_new("B")`
(taking the row, the insert of the B job with `_upstreams_done`, the
watermark's probe), and checks that exactly one B job was made. Rounds of
`calls` steps alternate between the two ledgers, in turn first.

PostgreSQL builds its rows in the server (`INSERT ... SELECT
generate_series`); SQLite the same way with a recursive CTE, with
`--deps-sqlite-items` items (1 million by default).

Then the triggers' cost on a plain worker path, for those who declare no
dependency: `claim_ready(100)` and `save_many(..., atomic=False)` of the
finished batch on a destination nobody follows, on a ledger with the 0018
triggers against the same ledger with the two `fulltext_unblock_*`
triggers dropped (re-created from their own definitions), alternately in
the same run: at most `PLAIN_TARGET` times as much with them. Beside it,
the server's own time (`EXPLAIN ANALYZE`) of one UPDATE finishing 100
jobs, with the triggers and without, which the machine's noise touches
less, and the trigger's share of it.

With `--quick` (the test suite's run): 2,000 and 20,000 items, one round
of each, a few seconds.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import sqlalchemy as sa
from counting import BATCH, batch_round  # the claim and save a batch of the plain path

import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository

if TYPE_CHECKING:
    from run import Bench, Table

#: The most the large ledger's finish and creation may cost, against the small one's.
TARGET = 1.2
#: The most a plain batch may cost with the dependency triggers, against without.
PLAIN_TARGET = 1.05
#: The upstream and the follower.
UPSTREAM, FOLLOWER = "A", "B"
#: The plain path's destination (nobody follows it) and batch.
PLAIN = "plain"
#: No sweep within the timed calls (the first call sweeps).
NO_SWEEP = timedelta(days=1)
#: The triggers the plain path's baseline drops.
TRIGGERS = ("fulltext_unblock_inserted", "fulltext_unblock_updated")

ITEM = "'loc.gov/item/' || lpad(g::text, 9, '0')"
POSTGRESQL_FILL = (
    (
        "TRUNCATE jobs.fulltext_items, jobs.fulltext, jobs.enqueue_cursor, "
        "jobs.fulltext_unblocked, jobs.fulltext_dependencies"
    ),
    f"INSERT INTO jobs.fulltext_items (id) SELECT {ITEM} FROM generate_series(1, {{n}}) g",
    (
        "INSERT INTO jobs.fulltext (id, item_id, destination, started, finished, status) "
        f"SELECT gen_random_uuid(), {ITEM}, '{UPSTREAM}', "
        "CASE WHEN g % {stride} = 0 THEN NULL ELSE now() END, "
        "CASE WHEN g % {stride} = 0 THEN NULL ELSE now() END, "
        "CAST(CASE WHEN g % {stride} = 0 THEN 'ready' ELSE 'finished' END AS job_statuses) "
        "FROM generate_series(1, {n}) g"
    ),
    (
        "INSERT INTO jobs.fulltext (id, item_id, destination, started, finished, status) "
        f"SELECT gen_random_uuid(), {ITEM}, '{FOLLOWER}', now(), now(), 'finished' "
        "FROM generate_series(1, {n}) g WHERE g % {stride} <> 0"
    ),
    "VACUUM ANALYZE jobs.fulltext_items",
    "VACUUM ANALYZE jobs.fulltext",
)

SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
SQLITE_SERIES = "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) "
SQLITE_ITEM = "'loc.gov/item/' || substr('000000000' || x, -9, 9)"
SQLITE_INSERT = "INSERT INTO fulltext (id, item_id, destination, started, finished, status) "
SQLITE_FILL = (
    "DELETE FROM fulltext",
    "DELETE FROM fulltext_items",
    f"{SQLITE_SERIES}INSERT INTO fulltext_items (id) SELECT {SQLITE_ITEM} FROM g",
    (
        f"{SQLITE_SERIES}{SQLITE_INSERT}"
        f"SELECT lower(hex(randomblob(16))), {SQLITE_ITEM}, '{UPSTREAM}', "
        f"CASE WHEN x % {{stride}} = 0 THEN NULL ELSE {SQLITE_NOW} END, "
        f"CASE WHEN x % {{stride}} = 0 THEN NULL ELSE {SQLITE_NOW} END, "
        "CASE WHEN x % {stride} = 0 THEN 'ready' ELSE 'finished' END FROM g"
    ),
    (
        f"{SQLITE_SERIES}{SQLITE_INSERT}"
        f"SELECT lower(hex(randomblob(16))), {SQLITE_ITEM}, '{FOLLOWER}', "
        f"{SQLITE_NOW}, {SQLITE_NOW}, 'finished' FROM g WHERE x % {{stride}} <> 0"
    ),
)


@dataclass
class Ledger:
    """One ledger of the follower's benchmark: its repository, its items,
    and the seconds its rows took to build."""

    repo: SqlAlchemyRepository
    items: int
    built: float


def fill_postgresql(bench: Bench, n: int, stride: int) -> None:
    """`bench`'s ledger with `n` items, as the module docstring says."""
    bench.sql(*(statement.format(n=int(n), stride=int(stride)) for statement in POSTGRESQL_FILL))


def fill_sqlite(engine: sa.Engine, n: int, stride: int) -> None:
    """The SQLite ledger behind `engine` with `n` items, as on PostgreSQL."""
    with engine.begin() as connection:
        for statement in SQLITE_FILL:
            connection.exec_driver_sql(statement.format(n=int(n), stride=int(stride)))
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")


def follow(repo: SqlAlchemyRepository) -> None:
    """B follows A; the producer's first call sweeps (creating nothing: B
    has caught up), so that the timed calls find no sweep due."""
    repo.depend(FOLLOWER, on=UPSTREAM)
    created = repo.enqueue_new(FOLLOWER, sweep_interval=NO_SWEEP)
    if created:
        msg = f"the first enqueue_new({FOLLOWER!r}) created {created} jobs, not 0"
        raise RuntimeError(msg)


def step(repo: SqlAlchemyRepository) -> tuple[float, float]:
    """Claim one ready A job (untimed), finish it, and make its B job:
    the seconds of the finish and of the creation."""
    job = repo.get_ready_job(UPSTREAM)
    job.finish()
    start = time.perf_counter()
    repo.save_fulltext(job)
    finished = time.perf_counter()
    created = repo.enqueue_new(FOLLOWER, sweep_interval=NO_SWEEP)
    made = time.perf_counter()
    if created != 1:
        msg = f"enqueue_new({FOLLOWER!r}) created {created} jobs after one finish, not 1"
        raise RuntimeError(msg)
    return finished - start, made - finished


PARTS = ("finish + creation", "finish (save_fulltext)", "creation (enqueue_new)")


def follower_latencies(
    small: SqlAlchemyRepository, large: SqlAlchemyRepository, runs: int, calls: int
) -> dict[tuple[str, str], float]:
    """Each part's median on each ledger: `runs` rounds of `calls` steps on
    each ledger, the ledger that goes first alternating by round; the
    median of the rounds' medians."""
    found: dict[tuple[str, str], list[float]] = {}
    for repo in (small, large):  # warm-up: connections, plans, caches
        step(repo)
    for round_ in range(runs):
        order = (("small", small), ("large", large))
        for size, repo in order if round_ % 2 == 0 else reversed(order):
            took = [step(repo) for _ in range(calls)]
            parts = (
                [f + c for f, c in took],
                [f for f, _ in took],
                [c for _, c in took],
            )
            for name, values in zip(PARTS, parts, strict=True):
                found.setdefault((name, size), []).append(statistics.median(values))
    return {key: statistics.median(values) for key, values in found.items()}


# --- the plain path, with and without the triggers --------------------------


@contextmanager
def postgresql_triggers_dropped(bench: Bench) -> Iterator[None]:
    """The two unblock triggers dropped, and re-created from their own
    definitions afterwards."""
    definitions = bench.sql(
        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t "
        "WHERE t.tgrelid = 'jobs.fulltext'::regclass AND t.tgname = ANY(%(names)s) "
        "ORDER BY t.tgname",
        names=list(TRIGGERS),
    )
    if len(definitions) != len(TRIGGERS):
        msg = f"expected the triggers {TRIGGERS}, found {len(definitions)}"
        raise RuntimeError(msg)
    bench.sql(*(f"DROP TRIGGER {name} ON jobs.fulltext" for name in TRIGGERS))
    try:
        yield
    finally:
        bench.sql(*(definition for (definition,) in definitions))


@contextmanager
def sqlite_triggers_dropped(engine: sa.Engine) -> Iterator[None]:
    """The same on SQLite, from `sqlite_master`."""
    with engine.connect() as connection:
        definitions = [
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name IN (?, ?) "
                "ORDER BY name",
                TRIGGERS,
            )
        ]
    if len(definitions) != len(TRIGGERS):
        msg = f"expected the triggers {TRIGGERS}, found {len(definitions)}"
        raise RuntimeError(msg)
    with engine.begin() as connection:
        for name in TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER {name}")
    try:
        yield
    finally:
        with engine.begin() as connection:
            for definition in definitions:
                connection.exec_driver_sql(definition)


def plain_latencies(
    repo: SqlAlchemyRepository,
    dropped: Callable[[], AbstractContextManager[None]],
    runs: int,
    calls: int,
) -> tuple[float, float]:
    """The plain batch's median with the triggers and without: `runs`
    rounds, each timing `calls` batches in both cases, the case that goes
    first alternating by round."""
    batch_round(repo, PLAIN, 2)  # warm-up
    with_them: list[float] = []
    without: list[float] = []

    def kept() -> float:
        return batch_round(repo, PLAIN, calls)

    def gone() -> float:
        with dropped():
            batch_round(repo, PLAIN, 1)  # the statements planned afresh
            return batch_round(repo, PLAIN, calls)

    for round_ in range(runs):
        if round_ % 2 == 0:
            with_them.append(kept())
            without.append(gone())
        else:
            without.append(gone())
            with_them.append(kept())
    return statistics.median(with_them), statistics.median(without)


CLAIM_RAW = (
    "UPDATE jobs.fulltext SET status = 'running', started = now() WHERE id IN ("
    f"SELECT id FROM jobs.fulltext WHERE destination = '{PLAIN}' AND status = 'ready' "
    f"ORDER BY item_id LIMIT {BATCH})"
)
FINISH_EXPLAINED = (
    "EXPLAIN (ANALYZE, COSTS OFF) UPDATE jobs.fulltext SET status = 'finished', "
    f"finished = now() WHERE destination = '{PLAIN}' AND status = 'running'"
)


def server_finish(bench: Bench, runs: int, calls: int) -> tuple[float, float, float]:
    """The server's time to finish `BATCH` running jobs in one UPDATE
    (`EXPLAIN ANALYZE`: no round trip, no client), the median with the
    triggers, the median of their share of it, and the median without
    them; alternately as `plain_latencies`. Counted by the server, so less
    at the mercy of the machine's other work than the client's clock."""
    found: dict[str, list[float]] = {"with": [], "trigger": [], "without": []}
    with psycopg.connect(bench.dsn, autocommit=True) as connection:

        def finish() -> tuple[float, float]:
            connection.execute(CLAIM_RAW)
            plan = "\n".join(row[0] for row in connection.execute(FINISH_EXPLAINED))
            total = re.search(r"Execution Time: ([\d.]+)", plan)
            if total is None:
                msg = f"no execution time in the plan:\n{plan}"
                raise RuntimeError(msg)
            trigger = re.findall(r"Trigger fulltext_unblock_\w+: time=([\d.]+)", plan)
            return float(total[1]) / 1000, sum(float(t) for t in trigger) / 1000

        def timed(kept: bool) -> None:  # noqa: FBT001 - which case
            for _ in range(2):  # the function's plans made afresh
                finish()
            took = [finish() for _ in range(calls)]
            if kept:
                found["with"].append(statistics.median(t for t, _ in took))
                found["trigger"].append(statistics.median(g for _, g in took))
            else:
                found["without"].append(statistics.median(t for t, _ in took))

        for round_ in range(runs):
            for kept in (True, False) if round_ % 2 == 0 else (False, True):
                if kept:
                    timed(kept)
                else:
                    with postgresql_triggers_dropped(bench):
                        timed(kept)
    return (
        statistics.median(found["with"]),
        statistics.median(found["trigger"]),
        statistics.median(found["without"]),
    )


def postgresql_plain_jobs(bench: Bench, n: int) -> None:
    """`bench`'s ledger emptied but for `n` ready jobs of the plain
    destination, and no dependency declared."""
    bench.sql(
        "TRUNCATE jobs.fulltext, jobs.enqueue_cursor, jobs.fulltext_unblocked, "
        "jobs.fulltext_dependencies",
        "INSERT INTO jobs.fulltext (id, item_id, destination, status) "
        f"SELECT gen_random_uuid(), {ITEM}, '{PLAIN}', 'ready' "
        f"FROM generate_series(1, {int(n)}) g",
        "VACUUM ANALYZE jobs.fulltext",
    )


def sqlite_plain_jobs(engine: sa.Engine, n: int) -> None:
    """The same on SQLite."""
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM fulltext")
        connection.exec_driver_sql("DELETE FROM fulltext_unblocked")
        connection.exec_driver_sql("DELETE FROM fulltext_dependencies")
        connection.exec_driver_sql(
            f"{SQLITE_SERIES.format(n=int(n))}INSERT INTO fulltext "
            "(id, item_id, destination, status) "
            f"SELECT lower(hex(randomblob(16))), {SQLITE_ITEM}, '{PLAIN}', 'ready' FROM g"
        )
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")


def bench_dependencies(bench: Bench, args: argparse.Namespace) -> Table:  # noqa: PLR0915
    """The follower's job at `args.deps_small_items` and at `args.deps_items`
    items, and the plain path with the triggers against without,
    PostgreSQL and SQLite."""
    # run.py is the script that imports this module: import it when called.
    from run import Bench, Table, ms, verdict  # noqa: PLC0415

    # Each step is a few milliseconds, and this machine's noise swings one
    # round's ratio by a third: many rounds (10 of 30 steps at full size).
    runs, calls = args.runs * (1 if args.quick else 2), args.calls * (1 if args.quick else 2)
    small_items = args.deps_small_items
    # The reserved items: every step takes one, and a warm-up one per ledger.
    reserved = runs * calls + 10
    # The plain path's ratio is a few per cent: more, shorter rounds.
    plain_runs, plain_calls = args.runs * (1 if args.quick else 4), args.calls
    plain_jobs = (2 * plain_runs * (plain_calls + 3) + 4) * BATCH
    table = Table("s. Dependencies: a follower's job at scale, and the triggers' cost")
    follower: dict[str, tuple[Ledger, Ledger, dict[tuple[str, str], float]]] = {}
    plain: dict[str, tuple[float, float]] = {}

    # The plain path first, on `bench` while nothing is declared in it.
    postgresql_plain_jobs(bench, plain_jobs)
    plain["PostgreSQL"] = plain_latencies(
        bench.repo(), lambda: postgresql_triggers_dropped(bench), plain_runs, plain_calls
    )
    postgresql_plain_jobs(bench, plain_jobs)
    server = server_finish(bench, plain_runs, plain_calls)

    small_bench = Bench()
    try:
        ledgers = []
        for where, n in ((small_bench, small_items), (bench, args.deps_items)):
            began = time.perf_counter()
            fill_postgresql(where, n, max(n // reserved, 2))
            repo = where.repo()
            follow(repo)
            ledgers.append(Ledger(repo, n, time.perf_counter() - began))
        follower["PostgreSQL"] = (
            *ledgers,
            follower_latencies(ledgers[0].repo, ledgers[1].repo, runs, calls),
        )
    finally:
        small_bench.close()

    with tempfile.TemporaryDirectory() as folder:
        engines: list[sa.Engine] = []
        try:
            ledgers = []
            for size, n in (("small", small_items), ("large", args.deps_sqlite_items)):
                url = f"sqlite:///{Path(folder) / f'{size}.db'}"
                fulltext_jobs.upgrade(url)
                engine = fulltext_jobs.create_engine(url)
                engines.append(engine)
                began = time.perf_counter()
                fill_sqlite(engine, n, max(n // reserved, 2))
                repo = SqlAlchemyRepository(engine)
                follow(repo)
                ledgers.append(Ledger(repo, n, time.perf_counter() - began))
            follower["SQLite"] = (
                *ledgers,
                follower_latencies(ledgers[0].repo, ledgers[1].repo, runs, calls),
            )
            # The plain path on the small ledger's file, emptied.
            sqlite_plain_jobs(engines[0], plain_jobs)
            plain["SQLite"] = plain_latencies(
                SqlAlchemyRepository(engines[0]),
                lambda: sqlite_triggers_dropped(engines[0]),
                plain_runs,
                plain_calls,
            )
        finally:
            for engine in engines:
                engine.dispose()

    for store, (small, large, found) in follower.items():
        for part in PARTS:
            small_s, large_s = found[part, "small"], found[part, "large"]
            ratio = large_s / small_s
            table.add(f"{store}: {part}, {small.items:,} items", ms(small_s))
            checked = part == PARTS[0]
            table.add(
                f"{store}: {part}, {large.items:,} items",
                ms(large_s),
                f"{ratio:.2f} x {small.items:,}",
                f"<= {TARGET}" if checked else "",
                verdict(ratio <= TARGET) if checked else "",
            )
    for store, (with_them, without) in plain.items():
        ratio = with_them / without
        table.add(
            f"{store}: claim_ready({BATCH}) + save_many, nobody follows, triggers dropped",
            ms(without),
        )
        table.add(
            f"{store}: the same with the 0018 triggers",
            ms(with_them),
            f"{ratio:.2f} x dropped",
            f"<= {PLAIN_TARGET}",
            verdict(ratio <= PLAIN_TARGET),
        )
    with_them, trigger, without = server
    table.add(
        f"PostgreSQL: server time of one UPDATE finishing {BATCH} jobs, triggers dropped",
        ms(without),
    )
    table.add(
        f"PostgreSQL: the same with the 0018 triggers (of which the trigger {ms(trigger)})",
        ms(with_them),
        f"{with_them / without:.2f} x dropped",
    )
    builds = "; ".join(
        f"{store} {small.items:,} items in {small.built:.0f} s, "
        f"{large.items:,} in {large.built:.0f} s"
        for store, (small, large, _found) in follower.items()
    )
    table.notes.append(
        f"Follower rows: medians of {runs} rounds of {calls} steps on each ledger, the "
        "ledger timed first alternating by round. A step claims one ready A job (untimed), "
        f"finishes it (save_fulltext) and calls enqueue_new({FOLLOWER!r}, sweep_interval="
        "1 day), which must create exactly one B job; the first enqueue_new of each ledger "
        "swept (creating none), so no sweep runs in the timed calls. Each ledger: A "
        f"finished for every item but about {reserved} (ready), B following A and finished "
        "for every item whose A job is finished. Ledgers built (rows, statistics, the "
        f"first sweep): {builds}. Plain rows: medians of {plain_runs} rounds of "
        f"{plain_calls} batches "
        f"in each case, among {plain_jobs:,} ready jobs, no dependency declared; the "
        "triggers dropped and re-created from their definitions around each timed run "
        "without them, the case timed first alternating by round (a warm-up batch "
        "after each change). Server time: EXPLAIN ANALYZE of one UPDATE setting "
        f"{BATCH} running jobs (claimed by a raw UPDATE) finished, as many rounds."
    )
    return table
