"""Claims behind delayed jobs: benchmark `delayed` of benchmarks/run.py.

    python benchmarks/run.py --only delayed                 # 100,000 delayed
    python benchmarks/run.py --only delayed --delayed 10000
    python benchmarks/run.py --only delayed --priority-levels 1   # every job at 0

After an upstream outage, many jobs wait out a retry's backoff (ready, with
`not_before` in the future) ahead of the due ones in enqueue order. This
times `get_ready_job` and `claim_ready(100)` with `--delayed` such jobs
ahead of as many due ones, against the same claims with none delayed, in
the same run, on PostgreSQL and on SQLite: a claim should cost the same
(docs/scaling.md, "Claims behind delayed jobs"). The priorities of the due
and of the delayed jobs are mixed over `--priority-levels` levels (10, as
table o.'s: the n-th job of each kind has priority `(n * 7919) mod 10`),
so that the guarantee is measured with the claim order of priorities; 1
puts every job at priority 0, as the table did before priorities.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy as sa

import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository

if TYPE_CHECKING:
    from run import Bench, Table

_T = TypeVar("_T")

#: The batch a batch claim takes.
BATCH = 100
#: The most a claim behind delayed jobs may cost, against one behind none.
TARGET = 1.2


def sqlite_jobs(
    engine: sa.Engine, destination: str, due: int, delayed: int, levels: int = 1
) -> None:
    """An empty SQLite ledger but for `delayed` ready jobs not due for a
    day, then `due` ready ones, their priorities mixed over `levels` levels
    (the same rows `Bench.ready_jobs` makes on PostgreSQL)."""
    from priorities import priority_of  # noqa: PLC0415 - a sibling benchmark's mix

    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    insert = (
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :n) "
        "INSERT INTO fulltext (id, item_id, destination, status, not_before, priority) "
        "SELECT lower(hex(randomblob(16))), :prefix || x, :dest, 'ready', :later, "
        f"{priority_of('x', levels)} FROM g"
    )
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM fulltext")
        for prefix, n, not_before in (("later-", delayed, later), ("todo-", due, None)):
            if n:
                connection.execute(
                    sa.text(insert),
                    {
                        "n": n,
                        "prefix": prefix,
                        "dest": destination,
                        "later": None
                        if not_before is None
                        else f"{not_before:%Y-%m-%d %H:%M:%S.%f}",
                    },
                )
        connection.exec_driver_sql("ANALYZE")


def on_both_stores(
    bench: Bench, due: int, name: str, measure: Callable[[SqlAlchemyRepository], _T]
) -> dict[str, _T]:
    """`measure` of a ledger of `due` ready jobs of the destination, on
    PostgreSQL (the bench's database) and on a fresh SQLite file named
    after `name`, by store."""
    from run import DESTINATION  # noqa: PLC0415 - the script that imports this module

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / f'{name}.db'}"
        fulltext_jobs.upgrade(url)
        engine = fulltext_jobs.create_engine(url)
        try:
            bench.ready_jobs(due)
            sqlite_jobs(engine, DESTINATION, due, 0)
            return {
                "PostgreSQL": measure(bench.repo()),
                "SQLite": measure(SqlAlchemyRepository(engine)),
            }
        finally:
            engine.dispose()


def bench_delayed(bench: Bench, args: argparse.Namespace) -> Table:
    """Claim latency behind `args.delayed` delayed jobs against behind none."""
    # run.py is the script that imports this module: import it when called.
    from run import DESTINATION, Table, median_latency, ms, verdict  # noqa: PLC0415

    runs, calls, n, levels = args.runs, args.calls * 4, args.delayed, args.priority_levels
    # As many due jobs as delayed ones, and at least as many as the claims take.
    due = max(n, runs * calls * (BATCH + 1) + BATCH + 1)
    mixed = f"{levels} priority levels mixed" if levels > 1 else "one priority level"
    table = Table(f"l. Claims behind delayed jobs, {mixed}")

    def latencies(repo: SqlAlchemyRepository, fill: Callable[[int], None]) -> dict[str, float]:
        """Each claim's median latency behind `fill(delayed)`: none, then `n`."""
        found = {}
        for delayed in (0, n):
            fill(delayed)
            repo.get_ready_job(DESTINATION)  # warm-up: connection, schema check, statements
            found["get_ready_job", delayed] = median_latency(
                lambda: repo.get_ready_job(DESTINATION), runs, calls
            )
            found[f"claim_ready({BATCH})", delayed] = median_latency(
                lambda: repo.claim_ready(DESTINATION, BATCH), runs, calls
            )
        return found

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'delayed.db'}"
        fulltext_jobs.upgrade(url)
        engine = fulltext_jobs.create_engine(url)
        try:
            stores = {
                "PostgreSQL": latencies(
                    bench.repo(),
                    lambda delayed: bench.ready_jobs(due, delayed=delayed, levels=levels),
                ),
                "SQLite": latencies(
                    SqlAlchemyRepository(engine),
                    lambda delayed: sqlite_jobs(engine, DESTINATION, due, delayed, levels),
                ),
            }
        finally:
            engine.dispose()
    for store, found in stores.items():
        for claim in ("get_ready_job", f"claim_ready({BATCH})"):
            none, behind = found[claim, 0], found[claim, n]
            ratio = behind / none
            table.add(f"{store}: {claim}, none delayed", ms(none))
            table.add(
                f"{store}: {claim}, {n:,} delayed ahead",
                ms(behind),
                f"{ratio:.2f} x none",
                f"<= {TARGET}",
                verdict(ratio <= TARGET),
            )
    table.notes.append(
        f"Medians of {runs} runs of {calls} claims each, behind {n:,} ready jobs not due "
        f"for a day that were enqueued before {due:,} due ones, and behind none (the same "
        "due jobs); each store filled afresh for each case. "
        + (
            f"Priorities mixed over {levels} levels, among the due and the delayed jobs "
            f"alike: the n-th of each kind has priority (n * 7919) mod {levels}."
            if levels > 1
            else "Every job at priority 0."
        )
    )
    return table
