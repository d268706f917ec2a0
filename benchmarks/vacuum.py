"""m. Draining while vacuum is held back: the claim against dead index entries.

A transaction that stays open (an analytics query, a forgotten `BEGIN`, a
replica's feedback) keeps every row version that was live when it began:
vacuum cannot remove the versions of the jobs claimed and finished since,
nor can an index scan mark their entries dead. A claim that read the ready
jobs from the oldest would walk past all of them, more with every batch.

This table drains the same queue twice in each claim mode, once on a quiet
database and once while a `REPEATABLE READ` transaction holds a snapshot
taken after the jobs were queued and before the drain began, and reports:

- the drain's rate with the snapshot held against the rate without it
  (target: at least 0.8x);
- the median claim time of the last tenth of the batches against the first
  tenth, with the snapshot held (target: at most 1.5x).

One process, batches of 100: `claim_ready(100)` then `save_many` (the
leased mode, as the Worker saves a batch), and `hold_ready(100)` (the
transaction mode), timed from the call to the jobs in hand. The jobs'
priorities are mixed over `--priority-levels` levels (10, as table o.'s:
the n-th job has priority `(n * 7919) mod 10`), so the drain takes them in
the claim order of priorities, a level at a time; 1 puts every job at
priority 0, as the table did before priorities.

    python benchmarks/run.py --only vacuum [--vacuum-jobs 200000] [--priority-levels 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from run import Bench, Table

from fulltext_jobs import SqlAlchemyRepository

BATCH = 100
MODES = {"leased": "claim_ready(100) + save_many", "transaction": "hold_ready(100)"}


@contextmanager
def held_snapshot(dsn: str) -> Iterator[None]:
    """A `REPEATABLE READ` transaction whose snapshot is taken on entry and
    held until exit: what keeps vacuum from removing any row version that
    dies meanwhile."""
    with psycopg.connect(dsn) as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        connection.execute("SELECT count(*) FROM jobs.fulltext").fetchall()
        try:
            yield
        finally:
            connection.rollback()


def drain(repo: SqlAlchemyRepository, destination: str, mode: str) -> tuple[float, list[float]]:
    """Drain `destination` in `mode`; return the elapsed seconds and each
    batch's claim time (seconds, in order)."""
    claims: list[float] = []
    start = time.perf_counter()
    while True:
        began = time.perf_counter()
        if mode == "leased":
            batch = repo.claim_ready(destination, BATCH)
            claims.append(time.perf_counter() - began)
            if not batch:
                break
            for job in batch:
                job.finish()
            repo.save_many(batch, atomic=False)
        else:
            hold = repo.hold_ready(destination, BATCH)
            held = hold.__enter__()
            claims.append(time.perf_counter() - began)
            for job in held:
                job.finish()
            hold.__exit__(None, None, None)
            if not held:
                break
    return time.perf_counter() - start, claims[:-1]


def tenths(claims: list[float]) -> tuple[float, float]:
    """The median claim time of the first and of the last tenth of the
    batches."""
    tenth = max(1, len(claims) // 10)
    return statistics.median(claims[:tenth]), statistics.median(claims[-tenth:])


def one_drain(
    bench: Bench, mode: str, jobs: int, levels: int, *, held: bool
) -> tuple[float, float, float]:
    """Queue `jobs` jobs, their priorities mixed over `levels` levels, drain
    them in `mode` (with a snapshot held from before the drain if `held`);
    return jobs/s and the first and last tenths' claim medians."""
    bench.ready_jobs(jobs, levels=levels)
    repo = bench.repo()
    repo.count_unqueued("bench")  # connect and check the schema before the clock starts
    with held_snapshot(bench.dsn) if held else nullcontext():
        elapsed, claims = drain(repo, "bench", mode)
    left = bench.sql("SELECT count(*) FROM jobs.fulltext WHERE status <> 'finished'")[0][0]
    if left:
        msg = f"vacuum {mode}: {left} jobs not finished"
        raise RuntimeError(msg)
    first, last = tenths(claims)
    return jobs / elapsed, first, last


def bench_vacuum(bench: Bench, args: argparse.Namespace) -> Table:
    from run import Table, ms, verdict  # noqa: PLC0415 - run.py imports this module by name

    jobs, levels = args.vacuum_jobs, args.priority_levels
    mixed = f"{levels} priority levels mixed" if levels > 1 else "one priority level"
    table = Table(f"m. Draining {jobs:,} jobs while vacuum is held back (one process, {mixed})")
    for mode, what in MODES.items():
        clean, clean_first, clean_last = one_drain(bench, mode, jobs, levels, held=False)
        rate, first, last = one_drain(bench, mode, jobs, levels, held=True)
        table.add(f"{what}: drain, quiet database (jobs/s)", f"{clean:,.0f}")
        table.add(
            f"{what}: drain, snapshot held (jobs/s)",
            f"{rate:,.0f}",
            f"{rate / clean:.2f} x quiet",
            ">= 0.8",
            verdict(rate / clean >= 0.8),
        )
        table.add(
            f"{what}: claim, first / last tenth, quiet",
            f"{ms(clean_first)} / {ms(clean_last)}",
            f"{clean_last / clean_first:.2f}",
        )
        table.add(
            f"{what}: claim, first / last tenth, snapshot held",
            f"{ms(first)} / {ms(last)}",
            f"{last / first:.2f}",
            "<= 1.5",
            verdict(last / first <= 1.5),
        )
    table.notes.append(
        f"One drain of {jobs:,} jobs per line, batches of {BATCH}. The snapshot is a "
        "REPEATABLE READ transaction begun after the jobs were queued and vacuumed, and "
        "held until the drain ends. Claim times are the medians of the first and the last "
        "tenth of the batches, from the call to the jobs in hand. "
        + (
            f"Priorities mixed over {levels} levels: the n-th job queued has priority "
            f"(n * 7919) mod {levels}, so the drain takes the levels in turn, each one's "
            "jobs spread over the whole table."
            if levels > 1
            else "Every job at priority 0."
        )
    )
    return table
