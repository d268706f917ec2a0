"""The lag at scale: benchmark `lag` of benchmarks/run.py (table p.).

    python benchmarks/run.py --only lag

Reading a destination's lag (`Repository.lag`: the oldest `ready_at` among
its ready jobs) is one probe of `fulltext_ready_at_idx`, so it should cost
the same on a ledger of `--lag-jobs` jobs (10 million) as on one of
`SMALL` (20,000): at most `TARGET` times as much. This times it on both
ledgers, alternately in the same run, beside the two readers that carry
it to operators: `stats` (without the unqueued count) and a scrape of the
dashboard's `/metrics` (a fresh overview each time). Those two also read
the jobs per status (the counts the database keeps, migration 0019) and,
for the dashboard, the jobs ended in the last minutes (the index of ended
jobs): their rows show what the rest of a scrape costs at scale, against
the same target.

Each ledger has `DESTINATIONS` destinations; a tenth of its jobs are ready
(ready at random moments over the last day), the rest finished: `RECENT`
of the first jobs in the last 14 minutes on both ledgers (the same
throughput), the others over the day before the last hour. PostgreSQL
builds its rows in the server (`INSERT ... SELECT generate_series`);
SQLite, whose inserts through its indexes are slower, builds
`--lag-sqlite-jobs` (1 million by default) the same way.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest

import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository
from fulltext_jobs.dashboard import Snapshots
from fulltext_jobs.metrics import LedgerCollector
from fulltext_jobs.sql.overview import read_only_engine

if TYPE_CHECKING:
    from run import Bench, Table

#: The small ledger's jobs: the issue's baseline.
SMALL = 20_000
#: The most the large ledger's reading may cost, against the small one's.
TARGET = 1.5
#: The destinations of each ledger; the jobs are spread evenly over them.
DESTINATIONS = 4
#: One job in this many is ready, the others finished.
READY_EVERY = 10

#: The jobs, among the first of each ledger, that ended in the last 14
#: minutes (the finished ones among them): the same on both ledgers, as a
#: fleet's throughput does not grow with its ledger. The other finished
#: jobs ended over the day before the last hour.
RECENT = 2_000

POSTGRESQL_FILL = (
    "TRUNCATE jobs.fulltext, jobs.enqueue_cursor",
    (
        "INSERT INTO jobs.fulltext "
        "(id, item_id, destination, started, finished, status, ready_at) "
        "SELECT gen_random_uuid(), 'item-' || g, 'dest-' || (g % {destinations}), "
        "ended, ended, "
        "CAST(CASE WHEN g % {every} = 0 THEN 'ready' ELSE 'finished' END AS job_statuses), "
        "now() - random() * interval '1 day' "
        "FROM (SELECT g, CASE WHEN g % {every} = 0 THEN NULL "
        "WHEN g <= {recent} THEN now() - random() * interval '14 minutes' "
        "ELSE now() - interval '1 hour' - random() * interval '1 day' END AS ended "
        "FROM generate_series(1, {n}) g) AS jobs"
    ),
    "VACUUM ANALYZE jobs.fulltext",
)

SQLITE_FILL = (
    "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) "
    "INSERT INTO fulltext (id, item_id, destination, started, finished, status, ready_at) "
    "SELECT lower(hex(randomblob(16))), 'item-' || x, 'dest-' || (x % {destinations}), "
    "ended, ended, CASE WHEN x % {every} = 0 THEN 'ready' ELSE 'finished' END, "
    "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || abs(random() % 86400) || ' seconds') "
    "FROM (SELECT x, CASE WHEN x % {every} = 0 THEN NULL "
    "WHEN x <= {recent} THEN "
    "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || abs(random() % 840) || ' seconds') "
    "ELSE strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (3600 + abs(random() % 86400)) "
    "|| ' seconds') END AS ended FROM g)"
)


def fill_postgresql(bench: Bench, n: int) -> None:
    """`bench`'s ledger with `n` jobs, as the module docstring says."""
    bench.sql(
        *(
            statement.format(n=int(n), destinations=DESTINATIONS, every=READY_EVERY, recent=RECENT)
            for statement in POSTGRESQL_FILL
        )
    )


def fill_sqlite(engine: sa.Engine, n: int) -> None:
    """The SQLite ledger behind `engine` with `n` jobs, as on PostgreSQL."""
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM fulltext")
        connection.exec_driver_sql(
            SQLITE_FILL.format(
                n=int(n), destinations=DESTINATIONS, every=READY_EVERY, recent=RECENT
            )
        )
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")


def scrape(url: str) -> Callable[[], object]:
    """A scrape of the dashboard's `/metrics` on the ledger at `url`: a
    fresh overview (no cache), rendered in Prometheus' text format."""
    snapshots = Snapshots(read_only_engine(url), max_age=0)
    registry = CollectorRegistry()
    registry.register(LedgerCollector(snapshots.read))
    return lambda: generate_latest(registry)


def readings(repo: SqlAlchemyRepository, url: str) -> dict[str, Callable[[], object]]:
    """What is timed on one ledger, by row name."""
    return {
        "Repository.lag(one destination)": lambda: repo.lag("dest-1"),
        "stats(unqueued=False), every destination": lambda: repo.stats(unqueued=False),
        "/metrics scrape (a fresh overview)": scrape(url),
    }


def alternately(
    small: dict[str, Callable[[], object]],
    large: dict[str, Callable[[], object]],
    runs: int,
    calls: int,
) -> dict[tuple[str, str], float]:
    """Each reading's median latency on each ledger: `runs` rounds, each
    timing `calls` calls on the small ledger and then on the large one, so
    that a drift of the machine falls on both; the median of the rounds'
    medians."""
    found: dict[tuple[str, str], list[float]] = {}
    for name, on_small in small.items():
        on_large = large[name]
        on_small()  # warm-up: connections, plans, caches
        on_large()
        for _ in range(runs):
            for size, reading in (("small", on_small), ("large", on_large)):
                took = []
                for _ in range(calls):
                    start = time.perf_counter()
                    reading()
                    took.append(time.perf_counter() - start)
                found.setdefault((name, size), []).append(statistics.median(took))
    return {key: statistics.median(values) for key, values in found.items()}


def bench_lag(bench: Bench, args: argparse.Namespace) -> Table:
    """The lag's reading, `stats` and a `/metrics` scrape at `SMALL` jobs
    and at `args.lag_jobs`, PostgreSQL and SQLite."""
    # run.py is the script that imports this module: import it when called.
    from run import Bench, Table, ms, verdict  # noqa: PLC0415

    runs, calls = args.runs, args.calls
    table = Table("p. The lag at scale")
    stores: dict[str, tuple[int, dict[tuple[str, str], float]]] = {}
    small_bench = Bench()
    try:
        fill_postgresql(small_bench, SMALL)
        began = time.perf_counter()
        fill_postgresql(bench, args.lag_jobs)
        built = time.perf_counter() - began
        stores["PostgreSQL"] = (
            args.lag_jobs,
            alternately(
                readings(small_bench.repo(), small_bench.sa_url),
                readings(bench.repo(), bench.sa_url),
                runs,
                calls,
            ),
        )
    finally:
        small_bench.close()
    with tempfile.TemporaryDirectory() as folder:
        engines = {}
        try:
            for size, n in (("small", SMALL), ("large", args.lag_sqlite_jobs)):
                url = f"sqlite:///{Path(folder) / f'{size}.db'}"
                fulltext_jobs.upgrade(url)
                engines[size] = (fulltext_jobs.create_engine(url), url)
                fill_sqlite(engines[size][0], n)
            stores["SQLite"] = (
                args.lag_sqlite_jobs,
                alternately(
                    *(
                        readings(SqlAlchemyRepository(engine), url)
                        for engine, url in (engines["small"], engines["large"])
                    ),
                    runs,
                    calls,
                ),
            )
        finally:
            for engine, _url in engines.values():
                engine.dispose()
    for store, (large, found) in stores.items():
        for name in dict.fromkeys(name for name, _size in found):
            small_ms, large_ms = found[name, "small"], found[name, "large"]
            ratio = large_ms / small_ms
            table.add(f"{store}: {name}, {SMALL:,} jobs", ms(small_ms))
            table.add(
                f"{store}: {name}, {large:,} jobs",
                ms(large_ms),
                f"{ratio:.2f} x {SMALL:,}",
                f"<= {TARGET}",
                verdict(ratio <= TARGET),
            )
    table.notes.append(
        f"Medians of {runs} rounds of {calls} calls, each round timing the {SMALL:,}-job "
        "ledger and then the large one. A tenth of the jobs ready (ready at random moments "
        f"over the last day), the rest finished, over {DESTINATIONS} destinations. The "
        f"PostgreSQL ledger of {args.lag_jobs:,} jobs was built in {built:.0f} s "
        "(INSERT ... SELECT generate_series, then VACUUM ANALYZE); SQLite's has "
        f"{args.lag_sqlite_jobs:,} jobs (its inserts through the indexes are slower). "
        f"Of the finished jobs, those among the first {RECENT:,} of each ledger ended in the "
        "last 14 minutes, the others over the day before the last hour. stats and the scrape "
        "read the counts per status the database keeps and (the scrape) the ended jobs' index "
        "over its last minutes; the lag is one index probe within them."
    )
    return table
