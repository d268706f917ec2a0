"""What keeping the counts costs the writers: benchmark `counting` of
benchmarks/run.py (table r.).

    python benchmarks/run.py --only counting

Migration 0019 has the database count the jobs per destination and status
(triggers on the jobs table) and index the ended jobs by `finished`, so
that `stats`, the dashboard and `/metrics` cost the same on any ledger
(table p.). Both add work to every claim and save. This times, on
PostgreSQL and SQLite, in the same run and alternately (so that a drift of
the machine falls on every variant):

- a batch: `claim_ready(100)`, each job finished, `save_many(atomic=False)`,
  as a worker's claim thread does;
- a single job: `get_ready_job`, finished, `save_fulltext`;

with the counting triggers and the index (0019 as shipped), with the
triggers alone, and with neither (the write path of 0017), the baseline
of the ratios. The triggers are disabled (PostgreSQL) or dropped and made
again from their own text (SQLite), the index dropped and made again.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository

if TYPE_CHECKING:
    from run import Bench, Table

#: The batch a batch claim takes.
BATCH = 100
#: The most the counts may cost a batch, against the write path of 0017.
TARGET = 1.1

TRIGGERS = (
    "fulltext_status_inserted",
    "fulltext_status_updated",
    "fulltext_status_deleted",
)
INDEX = "fulltext_ended_idx"
INDEX_COLUMNS = "(finished, destination, status) WHERE status IN ('finished', 'skipped', 'failed')"

#: The variants, by name: (triggers on, index there).
VARIANTS = {
    "without (0017)": (False, False),
    "triggers only": (True, False),
    "triggers and index (0019)": (True, True),
}


class Switch:
    """Turns the counting triggers and the ended jobs' index on and off on
    one store."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.postgresql = engine.dialect.name == "postgresql"
        self.table = "jobs.fulltext" if self.postgresql else "fulltext"
        self.triggers = True
        self.index = True
        self.saved: dict[str, str] = {}
        if not self.postgresql:
            with engine.connect() as connection:
                rows = connection.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                    "AND name LIKE 'fulltext_status_%'"
                )
                self.saved = {str(name): str(sql) for name, sql in rows}

    def set(self, *, triggers: bool, index: bool) -> None:
        with self.engine.begin() as connection:
            if triggers != self.triggers:
                for name in TRIGGERS:
                    if self.postgresql:
                        state = "ENABLE" if triggers else "DISABLE"
                        connection.exec_driver_sql(
                            f"ALTER TABLE {self.table} {state} TRIGGER {name}"
                        )
                    elif triggers:
                        connection.exec_driver_sql(self.saved[name])
                    else:
                        connection.exec_driver_sql(f"DROP TRIGGER {name}")
            if index != self.index:
                schema = "jobs." if self.postgresql else ""
                connection.exec_driver_sql(
                    f"CREATE INDEX {INDEX} ON {self.table} {INDEX_COLUMNS}"
                    if index
                    else f"DROP INDEX {schema}{INDEX}"
                )
        self.triggers, self.index = triggers, index


@contextmanager
def switched(engine: sa.Engine) -> Iterator[Switch]:
    """A `Switch` on `engine`'s store, everything on again on exit."""
    switch = Switch(engine)
    try:
        yield switch
    finally:
        switch.set(triggers=True, index=True)


def batch_round(repo: SqlAlchemyRepository, destination: str, batches: int) -> float:
    """The median seconds of `batches` batch claims and saves."""
    took = []
    for _ in range(batches):
        start = time.perf_counter()
        jobs = repo.claim_ready(destination, BATCH)
        for job in jobs:
            job.finish()
        repo.save_many(jobs, atomic=False)
        took.append(time.perf_counter() - start)
        if len(jobs) < BATCH:
            msg = "the ledger ran dry"
            raise RuntimeError(msg)
    return statistics.median(took)


def single_round(repo: SqlAlchemyRepository, destination: str, calls: int) -> float:
    """The median seconds of `calls` single claims and saves."""
    took = []
    for _ in range(calls):
        start = time.perf_counter()
        job = repo.get_ready_job(destination)
        job.finish()
        repo.save_fulltext(job)
        took.append(time.perf_counter() - start)
    return statistics.median(took)


def measure(
    repo: SqlAlchemyRepository,
    switch: Switch,
    fill: Callable[[int], None],
    runs: int,
    calls: int,
) -> dict[tuple[str, str], float]:
    """Each variant's median latency, by (variant, path): `runs` rounds,
    each timing every variant in turn (in an order rotated from round to
    round) on a ledger filled afresh for it."""
    from run import DESTINATION  # noqa: PLC0415 - the script that imports this module

    batches = max(calls, 5)
    found: dict[tuple[str, str], list[float]] = {}
    names = list(VARIANTS)
    for round_ in range(runs):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            triggers, index = VARIANTS[name]
            switch.set(triggers=triggers, index=index)
            fill(batches * BATCH + calls + 2 * BATCH)
            repo.claim_ready(DESTINATION, BATCH)  # warm-up: the statements, the plans
            found.setdefault((name, "batch"), []).append(batch_round(repo, DESTINATION, batches))
            found.setdefault((name, "single"), []).append(single_round(repo, DESTINATION, calls))
    return {key: statistics.median(values) for key, values in found.items()}


def bench_counting(bench: Bench, args: argparse.Namespace) -> Table:
    """Claims and saves with the counts kept against without, on both stores."""
    # run.py is the script that imports this module: import it when called.
    from delayed import sqlite_jobs  # noqa: PLC0415
    from run import DESTINATION, Table, ms, verdict  # noqa: PLC0415

    runs, calls = args.runs, args.calls * 2
    table = Table("r. What the counts cost the writers")
    stores: dict[str, dict[tuple[str, str], float]] = {}
    with switched(bench.engine) as switch:
        stores["PostgreSQL"] = measure(bench.repo(), switch, bench.ready_jobs, runs, calls)
    bench.reset()  # with the triggers on: the counts start again from nothing
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'counting.db'}"
        fulltext_jobs.upgrade(url)
        engine = fulltext_jobs.create_engine(url)
        try:
            with switched(engine) as switch:
                stores["SQLite"] = measure(
                    SqlAlchemyRepository(engine),
                    switch,
                    lambda n: sqlite_jobs(engine, DESTINATION, n, 0),
                    runs,
                    calls,
                )
        finally:
            engine.dispose()
    paths = {
        "batch": f"claim_ready({BATCH}) + save_many",
        "single": "get_ready_job + save_fulltext",
    }
    for store, found in stores.items():
        for path, what in paths.items():
            base = found["without (0017)", path]
            for name in VARIANTS:
                value = found[name, path]
                if name == "without (0017)":
                    table.add(f"{store}: {what}, {name}", ms(value))
                    continue
                ratio = value / base
                shipped = name.endswith("(0019)") and path == "batch"
                table.add(
                    f"{store}: {what}, {name}",
                    ms(value),
                    f"{ratio:.2f} x without",
                    f"<= {TARGET}" if shipped else "",
                    verdict(ratio <= TARGET) if shipped else "",
                )
    table.notes.append(
        f"Medians of {runs} rounds; each round times every variant in turn (the order "
        "rotated from round to round), each on a ledger of ready jobs filled afresh: "
        f"{max(calls, 5)} batches, then {calls} single jobs, every job finished. Triggers "
        "off: disabled on PostgreSQL, dropped on SQLite; the index dropped."
    )
    return table
