"""What users run often, from 20,000 to 10,000,000 items: flat or not.

    python benchmarks/run.py --only scale                   # 20k and 1M items
    python benchmarks/run.py --only scale --items 10000000  # 20k, 1M and 10M (~15 min)
    python benchmarks/scale.py --items 10000000             # the same, alone
    python benchmarks/scale.py --processes                  # also jobs/s with 1-8 processes
    python benchmarks/scale.py --processes-only             # only those
    python benchmarks/scale.py --partitions                 # the partitioned layout (~5 min)

At each size the ledger holds N items and one finished job of destination
`bench` for each of them (loaded by `INSERT ... SELECT generate_series`,
the triggers off, then analysed), and the producer has swept once. Then, as
ratios against the 20,000-item ledger of the same run (medians of 3):

- each command as a user runs it, process start included: `stats bench`,
  `stats bench --unqueued` (what `stats` did before: it counts the
  unqueued items), `retry bench` (nothing to retry), and `work bench
  --produce --until-idle` with a no-op handler (nothing to do: the idle
  producer's cycle, a claim, a rescue, and out);
- in-process: the destination check (`has_destination`) for the
  destination and for one with no jobs (a typo, its worst case), one idle
  producer cycle (`enqueue_new` with nothing new), and, once, the full
  sweep, which is what every idle cycle cost before `enqueue_new` (an
  `enqueue_unqueued` with nothing to queue; now once per sweep interval);
- the ledger's size on disk.

With `--processes`, jobs/s for 1, 2, 4 and 8 processes draining 30,000 ready
jobs through `claim_ready(100)` and `save_many` (the batch API), and through
the single-job API.

With `--partitions`, an experiment outside the shipped schema: the jobs
table's hot columns and indexes as one table and as a table partitioned by
destination (4 destinations x 1,000,000 finished jobs, in a schema `exp`
of the benchmark's database), compared on the counts of one destination,
the existence check of a destination with no jobs, and a raw-SQL batch
drain.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from run import Bench, Table

HERE = Path(__file__).resolve().parent
CLI = Path(sys.executable).with_name("fulltext-jobs")
DESTINATION = "bench"
RUNS = 3


def noop(_job: object) -> None:
    """The handler of the `work` runs (it never runs: nothing is ready)."""


def load(bench: Bench, n: int) -> float:
    """Fill the ledger with `n` items, each with a finished job; return the
    seconds it took. The triggers are off while loading: the notify
    trigger's transition table would hold every row."""
    started = time.perf_counter()
    bench.sql(
        "TRUNCATE jobs.fulltext_items, jobs.fulltext, jobs.enqueue_cursor RESTART IDENTITY",
        "INSERT INTO jobs.fulltext_items (id) "
        "SELECT 'loc.gov/item/' || md5(g::text) FROM generate_series(1, %(n)s) g",
        "ALTER TABLE jobs.fulltext DISABLE TRIGGER USER",
        "INSERT INTO jobs.fulltext (id, item_id, destination, started, finished, status, "
        "attempts, version) "
        "SELECT gen_random_uuid(), id, %(dest)s, now(), now(), 'finished', 1, 3 "
        "FROM jobs.fulltext_items",
        "ALTER TABLE jobs.fulltext ENABLE TRIGGER USER",
        "VACUUM ANALYZE jobs.fulltext_items",
        "VACUUM ANALYZE jobs.fulltext",
        n=n,
        dest=DESTINATION,
    )
    return time.perf_counter() - started


def command(bench: Bench, *args: str) -> float:
    """Seconds for one run of the command line, process start included."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(CLI), "--database-url", bench.sa_url, *args],
        cwd=HERE,  # so that `--handler scale:noop` imports this module
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        msg = f"fulltext-jobs {' '.join(args)} failed: {done.stderr.strip()}"
        raise RuntimeError(msg)
    return elapsed


def in_process(call: Callable[[], object], calls: int = 5) -> float:
    """The median of `RUNS` runs of the median latency of `calls` calls."""
    runs = []
    for _ in range(RUNS):
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        runs.append(statistics.median(times))
    return statistics.median(runs)


COMMANDS: dict[str, tuple[str, ...]] = {
    "`stats bench`": ("stats", DESTINATION),
    "`stats bench --unqueued` (the old default)": ("stats", DESTINATION, "--unqueued"),
    "`retry bench`": ("retry", DESTINATION),
    "`work bench --produce --until-idle`": (
        "work",
        DESTINATION,
        "--handler",
        "scale:noop",
        "--produce",
        "--until-idle",
    ),
}


def measure(bench: Bench, n: int, runs: int = RUNS) -> dict[str, float]:
    """Every figure of the table at `n` items (seconds, or MB), commands
    run `runs` times."""
    found: dict[str, float] = {"load (INSERT ... SELECT generate_series)": load(bench, n)}
    repo = bench.repo()
    started = time.perf_counter()
    repo.enqueue_new(DESTINATION)  # the first call sweeps, creating nothing
    # Also what every idle cycle cost before `enqueue_new`: a full
    # `enqueue_unqueued` with nothing to queue.
    found["full sweep (the old idle cycle), once"] = time.perf_counter() - started
    for name, args in COMMANDS.items():
        found[name] = statistics.median(command(bench, *args) for _ in range(runs))
    found["destination check, in process"] = in_process(lambda: repo.has_destination(DESTINATION))
    found["destination check, no such destination"] = in_process(
        lambda: repo.has_destination("no-such-destination"), calls=1
    )
    found["idle producer cycle (`enqueue_new`)"] = in_process(
        lambda: repo.enqueue_new(DESTINATION), calls=10
    )
    sizes = bench.sql(
        "SELECT pg_total_relation_size('jobs.fulltext'), "
        "pg_total_relation_size('jobs.fulltext_items')"
    )[0]
    found["jobs table + indexes (MB)"] = sizes[0] / 2**20
    found["items table + indexes (MB)"] = sizes[1] / 2**20
    return found


def sizes_for(args: argparse.Namespace) -> list[int]:
    """20k, 1M and 10M items, up to `--items`; 2k and 20k with `--quick`."""
    if getattr(args, "quick", False):
        return [2_000, 20_000]
    return sorted({20_000, *(n for n in (1_000_000, 10_000_000) if n <= args.items), args.items})


def seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def bench_scale(bench: Bench, args: argparse.Namespace) -> Table:
    """The table of `run.py --only scale`."""
    from run import Table  # noqa: PLC0415 - run.py imports this module by name

    sizes = sizes_for(args)
    results = {}
    quick = getattr(args, "quick", False)
    for n in sizes:
        results[n] = measure(bench, n, runs=1 if quick else RUNS)
        print(f"  scale: {n:,} items measured", file=sys.stderr, flush=True)
    base = results[sizes[0]]
    table = Table(
        "k. Costs at scale: "
        + " / ".join(f"{n:,}" for n in sizes)
        + " items (ratios: each larger size against the smallest)"
    )
    for name in base:
        shown = [
            f"{results[n][name]:,.0f} MB" if name.endswith("(MB)") else seconds(results[n][name])
            for n in sizes
        ]
        ratios = [f"{results[n][name] / base[name]:.1f} x" for n in sizes[1:] if base[name]]
        table.add(name, " / ".join(shown), " / ".join(ratios))
    table.notes.append(
        f"Medians of {RUNS}; commands run as processes (`{CLI.name} --database-url ...`), start "
        "included. Every item has a finished job of `bench`, and the producer has swept "
        "once; 'no such destination' is the destination check's worst case."
    )
    return table


def bench_processes(bench: Bench, jobs: int = 30_000) -> list[tuple[str, int, float]]:
    """Jobs/s of the batch and single-job APIs for 1, 2, 4 and 8 processes."""
    from run import run_workers  # noqa: PLC0415

    rates = []
    for mode in ("batch", "single"):
        for processes in (1, 2, 4, 8):
            size = jobs if mode == "batch" else jobs // 5
            rate = statistics.median(run_workers(bench, mode, processes, size) for _ in range(RUNS))
            rates.append((mode, processes, rate))
            print(f"  {mode} x{processes}: {rate:,.0f} jobs/s", file=sys.stderr, flush=True)
    return rates


# --- the partitioned layout, an experiment ------------------------------------

#: The jobs table's hot columns and indexes, plain and partitioned by
#: destination (the primary key must then include the destination).
LAYOUT = """
CREATE TABLE exp.{name} (
    id uuid NOT NULL, item_id text NOT NULL, destination text NOT NULL,
    started timestamptz, finished timestamptz, status job_statuses NOT NULL,
    seq bigint GENERATED BY DEFAULT AS IDENTITY, claim_token uuid,
    version integer NOT NULL DEFAULT 1,
    PRIMARY KEY ({key}), UNIQUE (item_id, destination)
) {partitioning}
"""

CLAIM = """
WITH picked AS (
    SELECT id FROM exp.{name} WHERE destination = %(dest)s AND status = 'ready'
    ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED
)
UPDATE exp.{name} f SET status = 'running', started = now(),
    claim_token = gen_random_uuid(), version = f.version + 1
FROM picked WHERE f.id = picked.id AND f.destination = %(dest)s
RETURNING f.id, f.claim_token
"""

FINISH = """
UPDATE exp.{name} f SET status = 'finished', finished = now(), claim_token = NULL,
    version = f.version + 1
FROM unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS v(id, token)
WHERE f.id = v.id AND f.destination = %(dest)s AND f.claim_token = v.token
"""


def _layouts(bench: Bench, destinations: int, finished: int) -> None:
    """`exp.plain` and `exp.parted` (one partition per destination), each
    holding `finished` finished jobs of each of `destinations`
    destinations, loaded destination after destination."""
    names = [f"d{n}" for n in range(destinations)]
    parts = [
        f"CREATE TABLE exp.parted_{name} PARTITION OF exp.parted FOR VALUES IN ('{name}')"
        for name in names
    ]
    bench.sql(
        "DROP SCHEMA IF EXISTS exp CASCADE",
        "CREATE SCHEMA exp",
        LAYOUT.format(name="plain", key="id", partitioning=""),
        LAYOUT.format(
            name="parted", key="id, destination", partitioning="PARTITION BY LIST (destination)"
        ),
        *parts,
        *(
            f"CREATE INDEX ON exp.{name} (destination, seq) WHERE status = 'ready'"
            for name in ("plain", "parted")
        ),
    )
    for table in ("plain", "parted"):
        for name in names:
            bench.sql(
                f"INSERT INTO exp.{table} (id, item_id, destination, started, finished, status) "
                "SELECT gen_random_uuid(), 'item-' || g, %(dest)s, now(), now(), 'finished' "
                "FROM generate_series(1, %(n)s) g",
                dest=name,
                n=finished,
            )
        bench.sql(f"VACUUM ANALYZE exp.{table}")


def _drain(bench: Bench, table: str, jobs: int) -> float:
    """Jobs/s of one process draining `jobs` new ready jobs of the first
    destination in batches of 100, in raw SQL (one claim and one finish
    statement per batch, autocommit)."""
    import psycopg  # noqa: PLC0415 - the benchmark's own dependency

    dest = "d0"
    bench.sql(
        f"INSERT INTO exp.{table} (id, item_id, destination, status) "
        "SELECT gen_random_uuid(), 'new-' || gen_random_uuid(), %(dest)s, 'ready' "
        "FROM generate_series(1, %(n)s)",
        dest=dest,
        n=jobs,
    )
    claim, finish = CLAIM.format(name=table), FINISH.format(name=table)
    done = 0
    with psycopg.connect(bench.dsn, autocommit=True) as connection:
        started = time.perf_counter()
        while rows := connection.execute(claim, {"dest": dest}).fetchall():
            ids, tokens = [row[0] for row in rows], [row[1] for row in rows]
            connection.execute(finish, {"ids": ids, "tokens": tokens, "dest": dest})
            done += len(rows)
        elapsed = time.perf_counter() - started
    if done != jobs:
        msg = f"{table}: drained {done} jobs, expected {jobs}"
        raise RuntimeError(msg)
    return jobs / elapsed


def bench_partitions(
    bench: Bench, destinations: int = 4, finished: int = 1_000_000, jobs: int = 20_000
) -> str:
    """The plain jobs table against one partitioned by destination: the
    counts of one destination, the existence check of a destination with
    no jobs (a full scan of the plain table), and a batch drain; a Markdown
    table."""
    _layouts(bench, destinations, finished)
    rows = []
    for table in ("plain", "parted"):
        count = f"SELECT status, count(*) FROM exp.{table} WHERE destination = 'd0' GROUP BY 1"
        exists = f"SELECT EXISTS (SELECT 1 FROM exp.{table} WHERE destination = 'none')"
        rows.append(
            (
                table,
                in_process(lambda count=count: bench.sql(count), calls=1),
                in_process(lambda exists=exists: bench.sql(exists), calls=1),
                statistics.median(_drain(bench, table, jobs) for _ in range(RUNS)),
            )
        )
    bench.sql("DROP SCHEMA exp CASCADE")
    lines = [
        (
            f"### l. Partitioned by destination: {destinations} destinations x "
            f"{finished:,} finished jobs"
        ),
        "",
        (
            "| layout | count by status, one destination | any job of a destination with none? "
            "| batch drain, 1 process (jobs/s) |"
        ),
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {t} | {seconds(c)} | {seconds(e)} | {r:,.0f} |" for t, c, e, r in rows]
    lines += [
        "",
        (
            f"Medians of {RUNS}; raw SQL through psycopg; the drain claims 100 with a locking CTE "
            f"and finishes 100 with one UPDATE ... FROM unnest, over {jobs:,} new ready jobs of d0."
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    from run import bench_database  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--processes", action="store_true", help="also jobs/s for 1-8 processes")
    parser.add_argument(
        "--processes-only", action="store_true", help="only jobs/s for 1-8 processes"
    )
    parser.add_argument(
        "--partitions",
        action="store_true",
        help="only the experiment with the jobs table partitioned by destination",
    )
    parser.add_argument("--markdown", help="append the tables, as Markdown, to this file")
    args = parser.parse_args(argv)
    print(f"scale benchmark; {os.cpu_count()} cores", flush=True)
    with bench_database() as bench:
        if args.partitions:
            text = bench_partitions(bench, finished=20_000 if args.quick else 1_000_000)
            print(text)
            return 0
        text = "" if args.processes_only else bench_scale(bench, args).markdown()
        if args.processes or args.processes_only:
            rows = bench_processes(bench)
            lines = ["", "| API | processes | jobs/s |", "| --- | ---: | ---: |"]
            lines += [f"| {mode} | {p} | {rate:,.0f} |" for mode, p, rate in rows]
            text += "\n".join(lines) + "\n"
    from run import report  # noqa: PLC0415

    report(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
