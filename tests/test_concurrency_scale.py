"""Many processes mixing every way of creating and claiming jobs, over many
items: one job per item, each claimed once, no exception to any caller.

Not timed; bounded in time (every wait has a timeout) and in size."""

from __future__ import annotations

import multiprocessing
import queue
from collections import Counter

import pytest
import sqlalchemy as sa
from harness import reset_database
from scale_workers import DESTINATION, mixed_worker

from fulltext_jobs import SqlAlchemyRepository
from fulltext_jobs.sql.schema import tables_for

DEADLINE_SECONDS = 300


def run_mixed(url: str, engine: sa.Engine, processes: int, items: int) -> None:
    repo = SqlAlchemyRepository(engine)
    assert repo.add_items(f"item-{n:06}" for n in range(items)) == items
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    procs = [
        context.Process(target=mixed_worker, args=(url, seed, barrier, results))
        for seed in range(processes)
    ]
    for proc in procs:
        proc.start()
    reports: list[dict] = []
    try:
        reports.extend(results.get(timeout=DEADLINE_SECONDS) for _ in procs)
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {processes} workers reported in time")
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()

    errors = [error for report in reports for error in report["errors"]]
    assert errors == [], errors[0]

    fulltext = tables_for(engine.dialect.name).fulltext
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(fulltext.c.id, fulltext.c.item_id, fulltext.c.status).where(
                fulltext.c.destination == DESTINATION
            )
        ).all()
    # One job per item: as many jobs as items, and every item covered.
    assert len(rows) == items
    assert {row.item_id for row in rows} == {f"item-{n:06}" for n in range(items)}
    # Every job created was counted exactly once by the caller that made it.
    created = sum(len(report["created"]) for report in reports)
    enqueued = sum(report["enqueued"] for report in reports)
    assert created + enqueued == items
    # Every job claimed exactly once.
    claims = Counter(job_id for report in reports for job_id in report["claimed"])
    assert claims.most_common(1)[0][1] == 1
    assert set(claims) == {str(row.id) for row in rows}
    assert {row.status for row in rows} == {"running"}
    print(
        f"{engine.dialect.name}: {processes} processes, {items} items: "
        f"{created} created one at a time, {enqueued} in bulk; claims per process "
        f"{[len(report['claimed']) for report in reports]}"
    )


@pytest.mark.slow
def test_eight_processes_on_postgresql(postgres_url: str, postgres_engine: sa.Engine):
    reset_database(postgres_engine)
    run_mixed(postgres_url, postgres_engine, processes=8, items=20_000)


@pytest.mark.slow
def test_four_processes_on_sqlite(sqlite_engine: sa.Engine):
    run_mixed(str(sqlite_engine.url), sqlite_engine, processes=4, items=20_000)
