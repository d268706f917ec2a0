"""Claim floors (PostgreSQL): a claim starts where this process's last one
ended, so that it does not walk the entries of jobs already claimed, and a
job that becomes ready behind the floor is still found.

The rule itself (`ClaimFloors`) is tested on a hand-moved clock; the SQL
adapter's use of it on the real server: the plan starts the index scan at
the floor, a claim that finds nothing ahead reads behind the floor before it
says so, a look-back puts jobs behind the floor first again, and a snapshot
held open (what holds vacuum back) changes none of the answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from harness import Monotonic

from fulltext_jobs import FullText, JobStatus, NoJobs, SqlAlchemyRepository
from fulltext_jobs.sql.compiled import compile_for_driver
from fulltext_jobs.sql.floors import (
    FROM_START,
    LOOKBACK_SECONDS,
    LOOKBACK_SHARE,
    PAST_END,
    ClaimFloors,
    range_params,
)

# --- The rule ----------------------------------------------------------------


def test_the_first_claim_reads_from_the_start_and_the_next_from_past_what_it_took():
    clock = Monotonic()
    floors = ClaimFloors(clock)
    assert floors.start("lang") == FROM_START
    floors.claimed("lang", FROM_START, (0, 41), began=clock())
    assert floors.start("lang") == (0, 42)
    assert floors.start("other") == FROM_START  # each destination its own
    floors.claimed("lang", (0, 42), (0, 99), began=clock())
    assert floors.start("lang") == (0, 100)


def test_a_claim_from_a_floor_that_took_only_older_delayed_jobs_keeps_the_floor():
    floors = ClaimFloors(Monotonic())
    floors.claimed("lang", FROM_START, (0, 41), began=0.0)
    floors.claimed("lang", (0, 42), (0, 5), began=0.0)  # a delayed job enqueued long ago came due
    assert floors.start("lang") == (0, 42)
    floors.claimed("lang", FROM_START, (0, 5), began=0.0)  # read from the start: the floor follows
    assert floors.start("lang") == (0, 6)


def test_a_claim_that_took_nothing_keeps_the_floor():
    clock = Monotonic()
    floors = ClaimFloors(clock)
    floors.claimed("lang", FROM_START, (0, 10), began=0.0)
    floors.claimed("lang", (0, 11), None, began=0.0)
    assert floors.start("lang") == (0, 11)
    floors.claimed("other", FROM_START, None, began=0.0)
    assert floors.start("other") == FROM_START  # no floor yet


def test_a_look_back_is_due_a_second_after_the_last_one_while_they_are_cheap():
    clock = Monotonic()
    floors = ClaimFloors(clock)
    floors.claimed("lang", FROM_START, (0, 5), began=0.0)
    clock.now = LOOKBACK_SECONDS - 0.001
    assert floors.start("lang") == (0, 6)
    floors.claimed(
        "lang", (0, 6), (0, 7), began=clock.now
    )  # claims from the floor move nothing else
    clock.now = LOOKBACK_SECONDS
    assert floors.start("lang") == FROM_START


def test_a_dear_look_back_puts_the_next_one_off_in_proportion():
    clock = Monotonic()
    floors = ClaimFloors(clock)
    clock.now = 2.0  # the look-back began at 0 and took 2 s
    floors.claimed("lang", FROM_START, (0, 5), began=0.0)
    wait = 2.0 / LOOKBACK_SHARE
    clock.now = 2.0 + wait - 0.001
    assert floors.start("lang") == (0, 6)
    clock.now = 2.0 + wait
    assert floors.start("lang") == FROM_START


def test_the_floor_orders_by_priority_then_seq_and_new_jobs_above_it_drop_it():
    floors = ClaimFloors(Monotonic())
    floors.claimed("lang", FROM_START, (-5, 41), began=0.0)  # priority 5, seq 41
    assert floors.start("lang") == (-5, 42)
    floors.enqueued("lang", 5)  # the floor's priority: after it (a larger seq)
    floors.enqueued("lang", -3)
    assert floors.start("lang") == (-5, 42)
    floors.enqueued("lang", 6)  # above the floor's priority: behind it
    assert floors.start("lang") == FROM_START


# --- The SQL adapter -----------------------------------------------------------


@pytest.fixture
def floored(clean_postgres_engine: sa.Engine) -> tuple[SqlAlchemyRepository, Monotonic]:
    """A repository whose claim floors run on a clock the test moves."""
    repo = SqlAlchemyRepository(clean_postgres_engine)
    clock = Monotonic()
    repo._ops._floors = ClaimFloors(clock)
    return repo, clock


def queue(repo: SqlAlchemyRepository, item_ids: Iterable[str]) -> list[FullText]:
    jobs = [FullText.new(item_id, "lang") for item_id in item_ids]
    repo.save_many(jobs)
    return jobs


def make_ready_again(repo: SqlAlchemyRepository, job: FullText) -> None:
    """Fail a claimed job and retry it through `repo`: ready again, with
    its place in the queue (a retry keeps it)."""
    job.fail(datetime.now(UTC), error="upstream")
    repo.save_fulltext(job)
    assert repo.retry("lang", statuses={JobStatus.FAILED}) == 1


def item_ids(jobs: list[FullText]) -> str:
    return "".join(job.item_id for job in jobs)


def test_the_claims_index_scan_starts_at_the_floor(clean_postgres_engine: sa.Engine):
    repo = SqlAlchemyRepository(clean_postgres_engine)
    queue(repo, "abc")
    statements = repo._ops.statements
    for statement in (statements.claim_many, statements.hold_ready):
        sql, fixed = compile_for_driver(statement, clean_postgres_engine.dialect)
        params = {
            **fixed,
            "dest": "lang",
            "n": 10,
            "now": datetime.now(UTC),
            "lease_until": datetime.now(UTC),
            **range_params((0, 12345), PAST_END),
            "uncapped_only": True,
        }
        with clean_postgres_engine.connect() as connection:
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(
                connection.exec_driver_sql(f"EXPLAIN (COSTS OFF) {sql}", params).scalars()
            )
            connection.rollback()
        conditions = [line for line in plan.splitlines() if "Index Cond" in line]
        assert any("ROW((- priority), seq) >= " in line for line in conditions), plan


def test_jobs_this_process_makes_ready_keep_their_place(
    floored: tuple[SqlAlchemyRepository, Monotonic],
):
    repo, clock = floored
    queue(repo, "abcdefgh")
    first = repo.claim_ready("lang", 3)
    make_ready_again(repo, first[0])  # a retry
    first[1].release(datetime.now(UTC))  # a release, due at once
    repo.save_fulltext(first[1])
    assert item_ids(repo.claim_ready("lang", 3)) == "abd"
    job = repo.get_ready_job("lang")
    assert job.item_id == "e"
    clock.now += 0.5  # no look-back is due: the floor was dropped by the writes
    job.release()
    repo.save_many([job])
    assert repo.get_ready_job("lang").item_id == "e"


def test_an_empty_claim_from_the_floor_reads_behind_it(
    floored: tuple[SqlAlchemyRepository, Monotonic], clean_postgres_engine: sa.Engine
):
    repo, _ = floored
    other = SqlAlchemyRepository(clean_postgres_engine)  # another process's
    queue(repo, "abcde")
    first = repo.claim_ready("lang", 2)
    assert item_ids(first) == "ab"
    make_ready_again(other, first[0])
    # Ahead of the floor first: `a` waits behind it until a look-back ...
    assert item_ids(repo.claim_ready("lang", 2)) == "cd"
    assert repo.get_ready_job("lang").item_id == "e"
    # ... or until nothing is left ahead: never "no jobs" while one is due.
    assert repo.get_ready_job("lang").item_id == "a"
    with pytest.raises(NoJobs):
        repo.get_ready_job("lang")
    assert repo.claim_ready("lang", 5) == []


def test_a_look_back_takes_the_jobs_behind_the_floor_first(
    floored: tuple[SqlAlchemyRepository, Monotonic], clean_postgres_engine: sa.Engine
):
    repo, clock = floored
    queue(repo, "abcdef")
    first = repo.claim_ready("lang", 2)
    make_ready_again(SqlAlchemyRepository(clean_postgres_engine), first[1])
    assert item_ids(repo.claim_ready("lang", 1)) == "c"
    clock.now += LOOKBACK_SECONDS
    assert item_ids(repo.claim_ready("lang", 2)) == "bd"


def test_a_rolled_back_hold_keeps_its_jobs_places_in_this_process_and_not_in_others(
    floored: tuple[SqlAlchemyRepository, Monotonic], clean_postgres_engine: sa.Engine
):
    repo, _ = floored
    other = SqlAlchemyRepository(clean_postgres_engine)  # another process's
    other._ops._floors = ClaimFloors(Monotonic())
    queue(repo, "abcdefgh")

    def give_up() -> None:
        with repo.hold_ready("lang", 2) as held:
            assert item_ids(held) == "ab"
            # Meanwhile the other process claims past the held jobs.
            assert item_ids(other.claim_ready("lang", 2)) == "cd"
            raise RuntimeError  # the batch rolls back: a and b are ready again

    with pytest.raises(RuntimeError):
        give_up()
    with repo.hold_ready("lang", 1) as held:  # this process dropped its floor
        assert item_ids(held) == "a"
        held[0].finish()
    # The other stays on its floor, past d: b (left unwritten by the
    # stopping holder above) waits behind it until nothing is left ahead.
    assert item_ids(other.claim_ready("lang", 5)) == "efgh"
    assert item_ids(other.claim_ready("lang", 5)) == "b"
    with repo.hold_ready("lang", 4) as held:
        assert held == []


def test_a_held_snapshot_changes_no_answer(
    floored: tuple[SqlAlchemyRepository, Monotonic], clean_postgres_engine: sa.Engine
):
    repo, clock = floored
    queue(repo, "abcdefghij")
    with clean_postgres_engine.connect() as holder:
        holder.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.exec_driver_sql("SELECT count(*) FROM jobs.fulltext").scalar_one()
        taken: list[str] = []
        for round_ in range(5):
            batch = repo.claim_ready("lang", 2)
            taken += [job.item_id for job in batch]
            for job in batch:
                job.finish()
            repo.save_many(batch)
            clock.now += LOOKBACK_SECONDS * (round_ % 2)
        assert taken == list("abcdefghij")
        assert repo.claim_ready("lang", 2) == []
        holder.rollback()


def test_threads_sharing_a_repository_take_each_job_once(
    floored: tuple[SqlAlchemyRepository, Monotonic],
):
    repo, _ = floored
    queue(repo, [f"item-{i:03}" for i in range(300)])
    taken: list[list[str]] = [[] for _ in range(3)]

    def drain(mine: list[str]) -> None:
        while batch := repo.claim_ready("lang", 7):
            mine += [job.item_id for job in batch]

    threads = [threading.Thread(target=drain, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every = sorted(item for mine in taken for item in mine)
    assert every == [f"item-{i:03}" for i in range(300)]
