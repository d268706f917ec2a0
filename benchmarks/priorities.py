"""Claims among mixed priorities: benchmark `priorities` of
benchmarks/run.py (table o.).

    python benchmarks/run.py --only priorities

Claims take the highest priority first, then the oldest, reading the due
jobs' index in that order (`fulltext_due_priority_idx`, migration 0016).
This times `claim_ready(100)` and `get_ready_job` with `READY` ready jobs
whose priorities are spread over `LEVELS` levels, mixed in enqueue order
(so that the claim order jumps about the table's pages), against the same
claims with every job at one level, in the same run, on PostgreSQL and on
SQLite: a claim among mixed levels should cost at most `TARGET` times one
among one level. Each claim's jobs are finished (untimed) before the next.

On SQLite it also counts the work a batch claim does that a slower disk
or a busier machine makes dearer: the pages it writes (the frames it
appends to the write-ahead log, the WAL emptied before each claim). With
mixed levels one level's jobs are spread over ten times as many rows, so
the claim rewrites more of the table's and the seq-ordered indexes' pages;
the count is informational, the target is on time.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

import fulltext_jobs
from fulltext_jobs import FullText, SqlAlchemyRepository

if TYPE_CHECKING:
    from run import Bench, Table

#: The ready jobs the claims run among.
READY = 200_000
#: The priority levels of the mixed queue: 0 to LEVELS - 1.
LEVELS = 10
#: The batch a batch claim takes.
BATCH = 100
#: The most a claim among mixed levels may cost, against one level.
TARGET = 1.2


def priority_of(n: str, levels: int, modulo: str = "%") -> str:
    """The SQL priority of the `n`-th job enqueued: mixed over `levels`
    levels by a multiplicative hash (so neighbours in enqueue order differ),
    or 0 for one level. `modulo` is the operator as the driver takes it
    (psycopg's `%%`, where `%` starts a placeholder)."""
    return f"(({n} * 7919) {modulo} {levels})" if levels > 1 else "0"


def postgres_jobs(bench: Bench, n: int, levels: int) -> None:
    """An empty PostgreSQL ledger but for `n` ready jobs over `levels`
    priority levels."""
    from run import DESTINATION  # noqa: PLC0415 - the script that imports this module

    bench.reset()
    bench.sql(
        "INSERT INTO jobs.fulltext (id, item_id, destination, status, priority) "
        "SELECT gen_random_uuid(), 'todo-' || lpad(g::text, 9, '0'), %(dest)s, 'ready', "
        f"{priority_of('g', levels, '%%')} FROM generate_series(1, {int(n)}) g",
        "VACUUM ANALYZE jobs.fulltext",
        dest=DESTINATION,
    )


def sqlite_jobs(engine: sa.Engine, destination: str, n: int, levels: int) -> None:
    """An empty SQLite ledger but for `n` ready jobs over `levels` priority
    levels (the rows `postgres_jobs` makes)."""
    insert = (
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :n) "
        "INSERT INTO fulltext (id, item_id, destination, status, priority) "
        f"SELECT lower(hex(randomblob(16))), 'todo-' || x, :dest, 'ready', "
        f"{priority_of('x', levels)} FROM g"
    )
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM fulltext")
        connection.execute(sa.text(insert), {"n": n, "dest": destination})
        connection.exec_driver_sql("ANALYZE")


def wal_frames_per_claim(
    path: Path,
    repo: SqlAlchemyRepository,
    claim: Callable[[], list[FullText]],
    calls: int,
) -> float:
    """The median number of pages (WAL frames) one `claim` writes to the
    SQLite ledger at `path`, the log checkpointed and emptied before each
    by a connection of its own; each claim's jobs are finished (untimed,
    uncounted) before the next."""
    log = path.with_name(f"{path.name}-wal")
    checkpointer = sqlite3.connect(path, isolation_level=None)
    try:
        page = checkpointer.execute("PRAGMA page_size").fetchone()[0]
        counted = []
        for _ in range(calls):
            busy, _, _ = checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:  # the log was not emptied: the count would take in older frames
                msg = "a reader held the SQLite log: cannot count a claim's pages"
                raise RuntimeError(msg)
            jobs = claim()
            # The log: a 32-byte header, then a 24-byte header per frame.
            counted.append(max(0, log.stat().st_size - 32) // (page + 24))
            for job in jobs:
                job.finish()
            if jobs:
                repo.save_many(jobs, atomic=False)
    finally:
        checkpointer.close()
    return statistics.median(counted)


def bench_priorities(bench: Bench, args: argparse.Namespace) -> Table:
    """Claim latency among `LEVELS` mixed priority levels against one."""
    # run.py is the script that imports this module: import it when called.
    from cap import claim_latency  # noqa: PLC0415 - a sibling benchmark's timer
    from run import DESTINATION, Table, ms, verdict  # noqa: PLC0415

    # --quick checks that it runs, cheaply (the test suite runs it).
    runs, calls = args.runs, args.calls * (1 if args.quick else 4)
    # 200,000 at full size; with --quick, what the claims take (a claim
    # must never find the queue empty).
    ready = max(min(READY, args.items // 5), (runs * calls + 3) * (BATCH + 1))
    table = Table(f"o. Claims among {LEVELS} priority levels")
    claims = (f"claim_ready({BATCH})", "get_ready_job")

    def latencies(
        fill: Callable[[int], None], repo: Callable[[], SqlAlchemyRepository]
    ) -> dict[tuple[str, int], float]:
        """Each claim's median latency among one level, among `LEVELS`,
        and among one again (the two one-level runs are averaged: a drift
        of the machine falls on both sides). The queue is filled afresh
        for each."""
        found: dict[tuple[str, int], list[float]] = {}
        for levels in (1, LEVELS, 1):
            fill(levels)
            claiming = repo()
            calls_of: dict[str, Callable[[], list[FullText]]] = {
                claims[0]: lambda r=claiming: r.claim_ready(DESTINATION, BATCH),
                claims[1]: lambda r=claiming: [r.get_ready_job(DESTINATION)],
            }
            for name, claim in calls_of.items():
                claim_latency(claiming, claim, 1, 3)  # warm-up
                found.setdefault((name, levels), []).append(
                    claim_latency(claiming, claim, runs, calls)
                )
        return {key: statistics.fmean(values) for key, values in found.items()}

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "priorities.db"
        fulltext_jobs.upgrade(f"sqlite:///{path}")
        engine = fulltext_jobs.create_engine(f"sqlite:///{path}")
        try:
            stores = {
                "PostgreSQL": latencies(
                    lambda levels: postgres_jobs(bench, ready, levels), bench.repo
                ),
                "SQLite": latencies(
                    lambda levels: sqlite_jobs(engine, DESTINATION, ready, levels),
                    lambda: SqlAlchemyRepository(engine),
                ),
            }
            written: dict[int, float] = {}
            for levels in (1, LEVELS):
                sqlite_jobs(engine, DESTINATION, ready, levels)
                repo = SqlAlchemyRepository(engine)
                written[levels] = wal_frames_per_claim(
                    path, repo, lambda r=repo: r.claim_ready(DESTINATION, BATCH), calls
                )
        finally:
            engine.dispose()
    for store, found in stores.items():
        for claim in claims:
            one, mixed = found[claim, 1], found[claim, LEVELS]
            ratio = mixed / one
            table.add(f"{store}: {claim}, one level", ms(one))
            table.add(
                f"{store}: {claim}, {LEVELS} levels mixed",
                ms(mixed),
                f"{ratio:.2f} x one level",
                f"<= {TARGET}",
                verdict(ratio <= TARGET),
            )
    table.add(f"SQLite: claim_ready({BATCH}), pages written, one level", f"{written[1]:.0f}")
    table.add(
        f"SQLite: claim_ready({BATCH}), pages written, {LEVELS} levels mixed",
        f"{written[LEVELS]:.0f}",
        f"{written[LEVELS] / max(written[1], 1):.2f} x one level",
        "counted, no target",
    )
    table.notes.append(
        f"{ready:,} ready jobs; medians of {runs} runs of {calls} claims each; the "
        "one-level figure is the mean of a run before and a run after the mixed one, each "
        "on a queue filled afresh. Mixed: the n-th job enqueued has priority "
        f"(n * 7919) mod {LEVELS}, so the claim order jumps about the table's pages. "
        "Each claim's jobs are finished, untimed, before the next claim. Pages written: "
        f"the median of {calls} batch claims' frames in SQLite's write-ahead log, emptied "
        "before each claim."
    )
    return table
