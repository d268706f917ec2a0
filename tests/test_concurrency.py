"""Concurrent creators and claimers: every item gets exactly one job, every
job is claimed exactly once, and no caller ever sees an exception other than
`AllQueued` and `NoJobs`.

Four real processes on SQLite and on PostgreSQL, four threads on the
in-memory adapter; and, on PostgreSQL, a check that creators and claimers of
one destination do not make those of another wait (the original took a
global advisory lock around every creation).

Nothing here asserts on timing or on how the work was shared out; every wait
has a timeout, and processes still running at the deadline are killed.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from concurrency_workers import DESTINATION, process_worker, thread_worker
from harness import Monotonic, SqliteTemplate, reset_database, sql_backend

import fulltext_jobs
from fulltext_jobs import (
    AllQueued,
    FullText,
    InMemoryRepository,
    JobStatus,
    NoJobs,
    SqlAlchemyRepository,
    StoreError,
)
from fulltext_jobs.domain import utc
from fulltext_jobs.sql.floors import (
    FROM_START,
    LOOKBACK_SECONDS,
    PAST_END,
    ClaimFloors,
    range_params,
)
from fulltext_jobs.sql.schema import tables_for

WORKERS = 4
ITEM_IDS = [f"item-{n:04}" for n in range(500)]

#: The whole run of the workers, from start to the last report.
DEADLINE_SECONDS = 120

Report = dict[str, Any]


# --- Checking the workers' reports -----------------------------------------


def check_reports(reports: list[Report]) -> None:
    """What the workers saw: no failures, one creator per item, one claimer
    per job, and every claim a running job of the destination."""
    failures = [
        f"{report['name']}: {text}\n{trace}"
        for report in reports
        for text, trace in report["failures"]
    ]
    assert failures == [], (
        f"{len(failures)} exception(s) reached a caller; the first:\n{failures[0]}"
    )
    assert all(report["all_queued"] and report["no_jobs"] for report in reports)

    created_items = Counter(item for report in reports for item, _ in report["created"])
    twice = sorted(item for item, count in created_items.items() if count > 1)
    assert twice == [], f"{len(twice)} item(s) got more than one job, e.g. {twice[:5]}"
    assert sorted(created_items) == ITEM_IDS
    created_ids = Counter(job_id for report in reports for _, job_id in report["created"])
    assert len(created_ids) == len(ITEM_IDS)

    claims = Counter(claim[0] for report in reports for claim in report["claimed"])
    double = sorted(job_id for job_id, count in claims.items() if count > 1)
    assert double == [], f"{len(double)} job(s) claimed more than once, e.g. {double[:5]}"
    assert set(claims) == set(created_ids)
    # Each claim returned the job as created, now running and started.
    item_of = {job_id: item for report in reports for item, job_id in report["created"]}
    for report in reports:
        for job_id, item_id, destination, status, started in report["claimed"]:
            assert (item_id, destination, status, started) == (
                item_of[job_id],
                DESTINATION,
                JobStatus.RUNNING.value,
                True,
            )


def show_distribution(label: str, reports: list[Report]) -> None:
    shares = ", ".join(
        f"{report['name']}: created {len(report['created'])}, claimed {len(report['claimed'])}"
        for report in reports
    )
    print(f"\n{label}: {shares}")


def check_database(engine: sa.Engine, reports: list[Report]) -> None:
    """What the database holds: one running job per item, exactly the jobs
    the workers created and claimed."""
    fulltext = tables_for(engine.dialect.name).fulltext
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                fulltext.c.id,
                fulltext.c.item_id,
                fulltext.c.destination,
                fulltext.c.status,
                fulltext.c.started,
            )
        ).all()
    assert len(rows) == len(ITEM_IDS)
    per_item = Counter(row.item_id for row in rows)
    assert sorted(per_item) == ITEM_IDS
    assert set(per_item.values()) == {1}
    assert {row.destination for row in rows} == {DESTINATION}
    assert {row.status for row in rows} == {JobStatus.RUNNING.value}
    assert all(row.started is not None for row in rows)
    stored = {(row.item_id, str(row.id)) for row in rows}
    created = {pair for report in reports for pair in report["created"]}
    assert created == stored
    claimed = {claim[0] for report in reports for claim in report["claimed"]}
    assert claimed == {str(row.id) for row in rows}


# --- Four processes ----------------------------------------------------------


def run_processes(url: str) -> list[Report]:
    """Start WORKERS spawned processes on `url`, all released at once by a
    barrier; return their reports. Fails, after killing them, if any has not
    reported and exited by the deadline."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=process_worker,
            args=(url, index, barrier, results),
            name=f"concurrency-worker-{index}",
        )
        for index in range(WORKERS)
    ]
    reports: list[Report] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        for process in processes:
            process.start()
        while len(reports) < WORKERS:
            try:
                reports.append(results.get(timeout=max(deadline - time.monotonic(), 0.1)))
            except queue.Empty:
                break
    finally:
        stragglers = []
        for process in processes:
            process.join(timeout=max(deadline - time.monotonic(), 5))
            if process.is_alive():
                stragglers.append(process.name)
                process.kill()
                process.join(timeout=10)
        exit_codes = [process.exitcode for process in processes]
        for process in processes:
            if process.exitcode is not None:
                process.close()
        results.close()
        results.join_thread()
    assert stragglers == [], f"killed after {DEADLINE_SECONDS} s: {stragglers}"
    assert len(reports) == WORKERS, f"only {len(reports)} of {WORKERS} workers reported"
    assert exit_codes == [0] * WORKERS
    return reports


@pytest.mark.slow
def test_four_processes_on_sqlite(sqlite_template: SqliteTemplate):
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    try:
        sql_backend(engine).add_items(ITEM_IDS)
        reports = run_processes(url)
        show_distribution("sqlite, 4 processes", reports)
        check_reports(reports)
        check_database(engine, reports)
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgresql
def test_four_processes_on_postgresql(postgres_url: str, postgres_engine: sa.Engine):
    reset_database(postgres_engine)
    sql_backend(postgres_engine).add_items(ITEM_IDS)
    reports = run_processes(postgres_url)
    show_distribution("postgresql, 4 processes", reports)
    check_reports(reports)
    check_database(postgres_engine, reports)


# --- Four threads on the in-memory adapter ----------------------------------


def test_four_threads_in_memory():
    repo = InMemoryRepository(ITEM_IDS)
    barrier = threading.Barrier(WORKERS)
    reports: list[Report] = []
    threads = [
        threading.Thread(target=thread_worker, args=(repo, index, barrier, reports), daemon=True)
        for index in range(WORKERS)
    ]
    deadline = time.monotonic() + DEADLINE_SECONDS
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0.1))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        barrier.abort()
    assert stuck == [], f"threads still running after {DEADLINE_SECONDS} s: {stuck}"
    assert len(reports) == WORKERS
    show_distribution("memory, 4 threads", reports)
    check_reports(reports)

    # The repository agrees: one running job per item, each as created.
    (stats,) = repo.stats(DESTINATION)
    assert stats.unqueued == 0
    assert stats.counts[JobStatus.RUNNING] == len(ITEM_IDS) == stats.jobs
    for report in reports:
        for item_id, job_id in report["created"]:
            job = repo.get_fulltext(job_id)
            assert (job.item_id, job.status) == (item_id, JobStatus.RUNNING)


# --- PostgreSQL: no lock shared by all destinations --------------------------

#: Long enough for any call that does not wait for a lock; a call that waits
#: for one fails with a lock timeout rather than hang.
PATIENT = "-c lock_timeout=10000 -c statement_timeout=20000"
#: For the controls, which are meant to wait.
IMPATIENT = "-c lock_timeout=1000 -c statement_timeout=20000"


@contextmanager
def repository_with(url: str, options: str) -> Iterator[SqlAlchemyRepository]:
    engine = fulltext_jobs.create_engine(url, connect_args={"options": options})
    try:
        yield SqlAlchemyRepository(engine)
    finally:
        engine.dispose()


@pytest.fixture
def small_postgres(postgres_engine: sa.Engine) -> Iterator[sa.Engine]:
    """The session database, emptied, with ten items."""
    reset_database(postgres_engine)
    sql_backend(postgres_engine).add_items(ITEM_IDS[:10])
    yield postgres_engine
    reset_database(postgres_engine)


def timed(call: Any) -> tuple[Any, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


@pytest.mark.postgresql
def test_creating_for_one_destination_does_not_wait_for_another(
    postgres_url: str, small_postgres: sa.Engine
):
    """A transaction holding what a creator of "a" holds (the watermark row
    of "a", locked, and a new job of "a") does not delay a creator of "b"."""
    with (
        repository_with(postgres_url, PATIENT) as repo,
        repository_with(postgres_url, IMPATIENT) as impatient,
    ):
        sql = repo._ops.statements
        with small_postgres.connect() as holder:
            transaction = holder.begin()
            try:
                holder.execute(sql.lock_cursor, {"dest": "a"})
                inserted = holder.execute(
                    sql.insert_if_unqueued,
                    {
                        "dest": "a",
                        "new_id": uuid.uuid4(),
                        "new_item_id": ITEM_IDS[0],
                        "priority": 0,
                        "now": datetime.now(UTC),
                    },
                ).scalar_one_or_none()
                assert inserted is not None

                first, seconds = timed(lambda: repo.create_job_for_unqueued("b"))
                second = repo.create_job_for_unqueued("b")
                assert (first.item_id, second.item_id) == (ITEM_IDS[0], ITEM_IDS[1])
                print(f"\ncreate for 'b' beside an open create for 'a': {seconds * 1000:.1f} ms")

                # Control: the holder does hold what a creator of "a" waits
                # for, so the calls above would have waited had "b" shared it.
                with pytest.raises(StoreError, match="lock timeout"):
                    impatient.create_job_for_unqueued("a")
            finally:
                transaction.rollback()
        # The held job was rolled back: "a" starts from the first item.
        assert repo.create_job_for_unqueued("a").item_id == ITEM_IDS[0]


@pytest.mark.postgresql
@pytest.mark.usefixtures("small_postgres")
def test_a_paused_create_for_one_destination_does_not_hold_up_another(postgres_url: str):
    """The repository's own create_job_for_unqueued("a"), paused inside its
    transaction right after its insert, holding whatever locks it takes
    (an advisory lock too, if it took one), does not delay creating or
    claiming for "b"."""
    paused_engine = fulltext_jobs.create_engine(postgres_url)
    inside, release = threading.Event(), threading.Event()

    def pause_after_insert(*args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().upper().startswith("INSERT INTO JOBS.FULLTEXT"):
            inside.set()
            release.wait(timeout=30)

    sa.event.listen(paused_engine, "after_cursor_execute", pause_after_insert)
    outcome: dict[str, Any] = {}

    def create_a() -> None:
        try:
            outcome["job"] = SqlAlchemyRepository(paused_engine).create_job_for_unqueued("a")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=create_a, daemon=True)
    try:
        with (
            repository_with(postgres_url, PATIENT) as repo,
            repository_with(postgres_url, IMPATIENT) as impatient,
        ):
            repo.enqueue_unqueued("b", limit=3)
            thread.start()
            assert inside.wait(timeout=10), "create_job_for_unqueued('a') never reached its insert"

            created, seconds = timed(lambda: repo.create_job_for_unqueued("b"))
            assert created.item_id == ITEM_IDS[3]
            claimed = repo.get_ready_job("b")
            assert (claimed.item_id, claimed.status) == (ITEM_IDS[0], JobStatus.RUNNING)
            print(f"\ncreate for 'b' beside a paused create for 'a': {seconds * 1000:.1f} ms")

            # Control: a second creator of "a" takes its turn after the first.
            with pytest.raises(StoreError, match="lock timeout"):
                impatient.create_job_for_unqueued("a")
    finally:
        release.set()
        thread.join(timeout=30)
        sa.event.remove(paused_engine, "after_cursor_execute", pause_after_insert)
        paused_engine.dispose()
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    job: FullText = outcome["job"]
    assert (job.item_id, job.destination) == (ITEM_IDS[0], "a")


@pytest.mark.postgresql
def test_claiming_for_one_destination_does_not_wait_for_a_held_claim(
    postgres_url: str, small_postgres: sa.Engine
):
    """A claim of "a" held open (its row locked, its transaction not ended)
    delays neither a claim of "b" nor another claim of "a", which passes
    over the locked job to the next."""
    setup = SqlAlchemyRepository(small_postgres)
    assert setup.enqueue_unqueued("a") == 10
    assert setup.enqueue_unqueued("b") == 10
    with repository_with(postgres_url, PATIENT) as repo:
        sql = repo._ops.statements
        clock = Monotonic()
        repo._ops._floors = ClaimFloors(clock)  # the claim floors' clock, moved by hand
        with small_postgres.connect() as holder:
            transaction = holder.begin()
            try:
                held = holder.execute(
                    sql.claim_one,
                    {
                        "dest": "a",
                        "now": utc(),
                        "token": uuid.uuid4(),
                        "lease_until": utc(),
                        **range_params(FROM_START, PAST_END),
                        "uncapped_only": True,
                    },
                ).one()
                assert held.item_id == ITEM_IDS[0]

                claim_b, seconds = timed(lambda: repo.get_ready_job("b"))
                assert (claim_b.item_id, claim_b.status) == (ITEM_IDS[0], JobStatus.RUNNING)
                claim_a = repo.get_ready_job("a")
                assert claim_a.id != held.id
                assert claim_a.item_id == ITEM_IDS[1]
                print(f"\nclaim of 'b' beside an open claim of 'a': {seconds * 1000:.1f} ms")
            finally:
                transaction.rollback()
        # Rolled back: the held job is ready again, behind this process's
        # claim floor, and is the first claimed at the next look-back.
        assert repo.get_fulltext(held.id).status is JobStatus.READY
        clock.now += LOOKBACK_SECONDS
        assert repo.get_ready_job("a").id == held.id
        stats = {entry.destination: entry for entry in repo.stats()}
        assert stats["a"].counts[JobStatus.RUNNING] == 2
        assert stats["b"].counts[JobStatus.RUNNING] == 1
    with pytest.raises(AllQueued):
        setup.create_job_for_unqueued("b")
    assert len(setup.claim_ready("b", 100)) == 9
    with pytest.raises(NoJobs):
        setup.get_ready_job("b")
