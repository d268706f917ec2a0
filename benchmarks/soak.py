"""A soak run: steady enqueue and drain at a fixed rate on PostgreSQL, for
many minutes, with what a deployment runs beside the workers.

    python benchmarks/soak.py --minutes 30            # the figures of docs/benchmarks.md
    python benchmarks/soak.py --minutes 30 --private-server   # autovacuum on
    python benchmarks/soak.py --minutes 0.5 --quick   # checks that it runs

By default it runs on the server of `FULLTEXT_JOBS_BENCH_ADMIN_URL` (the
local one, as `run.py` does). With `--private-server` it runs on a
PostgreSQL server of its own instead, with the server's default settings
(autovacuum on) but for `log_autovacuum_min_duration = 0`, which only logs
each autovacuum: made with `initdb` in a temporary folder, started on a
free port, and stopped and deleted at the end however the run ends
(tests/private_server.py; `--server-log FILE` keeps its log).
`--setting NAME=VALUE` (repeatable) changes one of its settings: with
`--setting autovacuum=off` it runs as the shared server of this machine
does, for a comparison in which nothing else differs.

In a database of its own (as `run.py` makes it, dropped at the end):

- a feeder adds `--rate` new items a second to the items table;
- `--workers` worker processes (`Worker(produce=True)`, batches of 50,
  LISTEN/NOTIFY on) queue the new items themselves (the producer's
  watermark) and work them with a no-op handler;
- the dashboard (`fulltext-jobs dashboard`) is read once a second, as a
  browser left open would.

Each minute (`--interval`) it reports the workers' `claim_ready` latency (50th, 95th and
99th percentiles), the jobs finished, the ready jobs left, the jobs table's
size with its indexes, and its live and dead rows with the autovacuums so
far; then the share of claims that found nothing ("empty": such a claim
from a floor reads the due index behind the floor too) and their median,
and the index pages that each scan of the due jobs' index
(`fulltext_due_idx`) and of the ready jobs' (`fulltext_ready_idx`) read
in the interval: dead entries that a scan walks show there; last, the
machine's load average over the last minute (this machine is shared: a
latency that follows it is not the soak's). A soak is flat if the
latencies, the backlog and the dead rows stay level while the table grows
by the jobs added. Its title gives the server's `autovacuum` setting and
the jobs table's storage options (revision 0011's autovacuum settings).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fulltext_jobs
from fulltext_jobs import FullText, SqlAlchemyRepository, Worker

DESTINATION = "soak"
HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
CLI = Path(sys.executable).with_name("fulltext-jobs")


def noop(job: FullText) -> None:
    """The handler: does nothing."""
    del job


def feeder(url: str, rate: int, seconds: float) -> None:
    """Add `rate` items a second for `seconds`."""
    repo = SqlAlchemyRepository(fulltext_jobs.create_engine(url))
    start = time.monotonic()
    second = 0
    while second < seconds:
        repo.add_items([f"soak/{second:07}/{i:05}" for i in range(rate)])
        second += 1
        time.sleep(max(0.0, start + second - time.monotonic()))


#: A claim's interval (its number), latency (seconds), and whether it
#: found nothing.
Timing = tuple[int, float, bool]


def worker(url: str, seconds: float, interval: float, results: Any) -> None:  # noqa: ANN401 - a multiprocessing queue
    """Run a producing Worker for `seconds`; put each claim's `Timing` on
    `results`, then None."""
    repo = SqlAlchemyRepository(fulltext_jobs.create_engine(url))
    start = time.monotonic()
    timings: list[Timing] = []
    claim = repo.claim_ready

    def timed_claim(destination: str, n: int) -> list[FullText]:
        began = time.monotonic()
        jobs = claim(destination, n)
        at = int((began - start) // interval)
        timings.append((at, time.monotonic() - began, not jobs))
        return jobs

    repo.claim_ready = timed_claim  # type: ignore[method-assign]
    # An idle worker's producer looks for new items each time it polls: a
    # poll of at most 2 s keeps the queue fed steadily (the default backs
    # off to 30 s, which feeds it in bursts).
    run = Worker(repo, DESTINATION, noop, batch_size=50, produce=True, max_poll_interval=2.0)
    threading.Timer(seconds, run.stop).start()
    run.run(install_signal_handlers=False)
    results.put(timings)
    results.put(None)


def read_dashboard(url: str, seconds: float, errors: list[str], stopped: threading.Event) -> None:
    """Serve the dashboard and read its page once a second for `seconds`
    (or until `stopped` is set)."""
    process = subprocess.Popen(
        [str(CLI), "--database-url", url, "dashboard", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = process.stdout.readline() if process.stdout is not None else ""
        found = re.search(r"http://\S+/", first)
        if found is None:
            errors.append("the dashboard printed no address")
            return
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with urllib.request.urlopen(found.group(0), timeout=10) as page:  # noqa: S310 - our own local server
                page.read()
            if stopped.wait(1.0):
                break
    except OSError as error:
        errors.append(f"the dashboard: {error}")
    finally:
        process.terminate()
        process.wait(timeout=30)


TABLE_SQL = """
SELECT pg_total_relation_size('jobs.fulltext'), pg_indexes_size('jobs.fulltext'),
       n_live_tup, n_dead_tup, autovacuum_count,
       (SELECT count(*) FROM jobs.fulltext WHERE destination = %(dest)s AND status = 'ready'),
       (SELECT count(*) FROM jobs.fulltext WHERE destination = %(dest)s AND status = 'finished'),
       (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = %(due)s::regclass),
       (SELECT idx_blks_hit + idx_blks_read FROM pg_statio_user_indexes
        WHERE indexrelid = %(due)s::regclass),
       (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = %(ready)s::regclass),
       (SELECT idx_blks_hit + idx_blks_read FROM pg_statio_user_indexes
        WHERE indexrelid = %(ready)s::regclass)
FROM pg_stat_user_tables WHERE relid = 'jobs.fulltext'::regclass
"""

#: The indexes whose pages a scan reads are reported: the due jobs', which
#: claims read from their floor, and the ready jobs'.
INDEXES = {"due": "jobs.fulltext_due_idx", "ready": "jobs.fulltext_ready_idx"}

SETTINGS_SQL = """
SELECT current_setting('autovacuum'), current_setting('server_version'),
       coalesce(array_to_string(reloptions, ', '), 'none')
FROM pg_class WHERE oid = 'jobs.fulltext'::regclass
"""

#: Only logs: each autovacuum's work, in the private server's log.
PRIVATE_SETTINGS = ("log_autovacuum_min_duration=0",)

HEADER = (
    "| at (s) | claims | claim p50 | p95 | p99 | finished (total) | ready "
    "| table with indexes | indexes | live rows | dead rows | autovacuums "
    "| empty | empty p50 | due index pages a scan | ready index pages a scan | load |"
)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def admin_url(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """The URL of a database the soak can make its own in, and what server
    that is: the shared one (`run.ADMIN_URL`), or with `--private-server`
    a new one, removed when the block ends."""
    from run import ADMIN_URL  # noqa: PLC0415 - run.py sits beside this file

    if not args.private_server:
        yield ADMIN_URL, f"the server at {ADMIN_URL.split('@')[-1]}"
        return
    sys.path.insert(0, str(TESTS))
    from private_server import private_postgres  # noqa: PLC0415 - tests/ holds it

    settings = (*PRIVATE_SETTINGS, *args.setting)
    with private_postgres("ftj-soak-", settings=settings) as server:
        print(f"private server: {server.base} on port {server.port}", flush=True)
        try:
            changed = f"; {', '.join(args.setting)}" if args.setting else ""
            yield server.url(), f"a private server (initdb's defaults{changed})"
        finally:
            if args.server_log:
                Path(args.server_log).write_text(server.log.read_text(errors="replace"))
            print(f"private server stopped and removed: {server.base}", flush=True)


def soak(args: argparse.Namespace) -> str:
    """Run the soak; return its table as Markdown."""
    from run import bench_database  # noqa: PLC0415 - run.py sits beside this file

    seconds = args.minutes * 60
    with admin_url(args) as (url, server), bench_database(url) as bench:
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        procs = [context.Process(target=feeder, args=(bench.sa_url, args.rate, seconds))]
        procs += [
            context.Process(target=worker, args=(bench.sa_url, seconds, args.interval, results))
            for _ in range(args.workers)
        ]
        for proc in procs:
            proc.start()
        errors: list[str] = []
        stopped = threading.Event()
        reader = threading.Thread(
            target=read_dashboard, args=(bench.sa_url, seconds, errors, stopped)
        )
        reader.start()
        try:
            settings = bench.sql(SETTINGS_SQL)[0]
            print(
                f"{server}, PostgreSQL {settings[1]}: autovacuum {settings[0]}; "
                f"jobs.fulltext's options: {settings[2]}",
                flush=True,
            )
            samples = sample_table(bench, seconds, args.interval)
            timings: list[Timing] = []
            for _ in range(args.workers):
                while (batch := results.get(timeout=120)) is not None:
                    timings += batch
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): end the processes now, before
            # the database is dropped and a private server stopped.
            for proc in procs:
                proc.terminate()
            raise
        finally:
            stopped.set()
            for proc in procs:
                proc.join(timeout=60)
            reader.join(timeout=60)
        if errors:
            raise RuntimeError("; ".join(errors))
    title = (
        f"### Soak: {args.minutes:g} minutes at {args.rate:,} items/s, {args.workers} workers "
        f"on {server} (autovacuum: {settings[0]}; jobs.fulltext: {settings[2]})"
    )
    return table(title, samples, timings, args.interval)


def sample_table(bench: Any, seconds: float, interval: float) -> list[tuple[Any, ...]]:  # noqa: ANN401 - run.Bench
    """`TABLE_SQL` with the load average: at the start, then every
    `interval` for `seconds`."""

    def one() -> tuple[Any, ...]:
        return (*bench.sql(TABLE_SQL, dest=DESTINATION, **INDEXES)[0], os.getloadavg()[0])

    samples = [one()]
    start = time.monotonic()
    while (len(samples) - 1) * interval < seconds:
        time.sleep(max(0.0, start + len(samples) * interval - time.monotonic()))
        samples.append(one())
        print(f"{(len(samples) - 1) * interval:.0f} s: {samples[-1]}", flush=True)
    return samples


def table(
    title: str, samples: list[tuple[Any, ...]], timings: list[Timing], interval: float
) -> str:
    """The Markdown table: a row per interval of `samples` (the first is the
    start) and the claims' `timings`."""
    lines = [title, "", HEADER, "|" + " ---: |" * (HEADER.count("|") - 1)]
    for index, (before, sample) in enumerate(itertools.pairwise(samples)):
        size, indexes, live, dead, vacuums, ready, finished = sample[:7]
        claims = [seconds for at, seconds, _ in timings if at == index]
        empty = [seconds for at, seconds, nothing in timings if at == index and nothing]
        p50, p95, p99 = (
            (statistics.median(claims), percentile(claims, 0.95), percentile(claims, 0.99))
            if claims
            else (float("nan"),) * 3
        )
        empty_p50 = statistics.median(empty) if empty else float("nan")
        share = len(empty) / len(claims) if claims else float("nan")
        due_pages, ready_pages = (
            (sample[at + 1] - before[at + 1]) / max(1, sample[at] - before[at]) for at in (7, 9)
        )
        lines.append(
            f"| {(index + 1) * interval:g} | {len(claims):,} | {p50 * 1000:.2f} ms | "
            f"{p95 * 1000:.2f} ms | {p99 * 1000:.2f} ms | {finished:,} | {ready:,} | "
            f"{size / 2**20:.1f} MB | "
            f"{indexes / 2**20:.1f} MB | {live:,} | {dead:,} | {vacuums} | "
            f"{share:.0%} | {empty_p50 * 1000:.2f} ms | {due_pages:,.1f} | {ready_pages:,.1f} | "
            f"{sample[-1]:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    from run import stop  # noqa: PLC0415 - run.py sits beside this file

    # SIGTERM unwinds like Ctrl-C: the database is dropped, and a private
    # server stopped and removed.
    signal.signal(signal.SIGTERM, stop)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=300, help="new items a second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds a row")
    parser.add_argument("--quick", action="store_true", help="a small rate, to check it runs")
    parser.add_argument("--markdown", help="append the table to this file")
    parser.add_argument(
        "--private-server",
        action="store_true",
        help="run on a PostgreSQL server of its own (initdb, default settings: autovacuum "
        "on), removed at the end",
    )
    parser.add_argument("--server-log", help="with --private-server: keep its log in this file")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --private-server: one of its settings (e.g. autovacuum=off)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rate, args.workers, args.interval = 20, 1, 10.0
    from run import report  # noqa: PLC0415 - run.py sits beside this file

    report(soak(args), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
