"""The idle producer's discovery on the SQL stores (`enqueue_new`): what the
watermark finds, what only the sweep finds, that both live in the database,
and that an idle call reads no item beyond one probe. The behaviour every
store shares is in test_contract.py (`TestProducerContract`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from harness import Backend, FakeClock, sql_backend

from fulltext_jobs import FullText, InMemoryRepository, ItemSource, SqlAlchemyRepository, Worker
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.sql.schema import tables_for
from fulltext_jobs.sql.statements import Statements

HOUR = timedelta(hours=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def sql(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
    """Each SQL store, empty, on `clock`."""
    fixture = "sqlite_engine" if request.param == "sqlite" else "clean_postgres_engine"
    engine: sa.Engine = request.getfixturevalue(fixture)
    return sql_backend(engine, clock=clock)


def test_a_late_eligible_item_waits_for_the_sweep_interval(sql: Backend, clock: FakeClock):
    sql.set_api("b", {"title": "A letter"})
    sql.set_api("a", None)
    assert sql.app_repo.enqueue_new("lang", sweep_interval=HOUR) == 1
    sql.set_api("a", {"title": "A diary"})
    # "a" sorts below the watermark over the app's ids: between sweeps it
    # is not looked for, which is what keeps an idle call cheap.
    clock.advance(minutes=59)
    assert sql.app_repo.enqueue_new("lang", sweep_interval=HOUR) == 0
    assert sql.app_repo.count_unqueued("lang") == 1
    clock.advance(minutes=1)
    assert sql.app_repo.enqueue_new("lang", sweep_interval=HOUR) == 1
    assert sql.app_repo.count_unqueued("lang") == 0


def test_the_watermark_and_the_last_sweep_are_shared_through_the_database(
    sql: Backend, clock: FakeClock
):
    assert sql.engine is not None
    sql.add_items(["m", "n"])
    assert sql.repo.enqueue_new("lang") == 2
    swept_at = clock.now
    clock.advance(minutes=1)
    other = SqlAlchemyRepository(sql.engine, clock=clock)  # another process's, say
    sql.add_items(["a"])
    assert other.enqueue_new("lang") == 1
    assert sql.repo.enqueue_new("lang") == 0
    cursor = tables_for(sql.engine.dialect.name).enqueue_cursor
    with sql.engine.connect() as connection:
        # Not a sweep: the other repository knew when the last one was.
        assert connection.execute(sa.select(cursor.c.swept_at)).scalar_one() == swept_at


def test_an_idle_call_costs_one_probe_and_writes_nothing(sql: Backend):
    assert sql.engine is not None
    sql.add_items([f"item-{n:03d}" for n in range(200)])
    sql.repo.enqueue_new("lang")
    with recording(sql.engine) as statements:
        assert sql.repo.enqueue_new("lang") == 0
    reads_items = [text for text in statements if "fulltext_items" in text]
    assert len(reads_items) == 1, reads_items
    assert "LIMIT" in reads_items[0]
    assert not [text for text in statements if "INSERT INTO" in text and "fulltext (" in text]


def test_the_default_items_table_orders_new_items_by_insertion(sql: Backend):
    assert sql.engine is not None
    dialect = sql.engine.dialect.name
    tables = tables_for(dialect)
    key = Statements(tables, ItemSource(tables.items), dialect).producer_key(sequenced=True)
    sql.add_items(["z", "a"])
    sql.add_items(["m"])
    with sql.engine.connect() as connection:
        order = connection.execute(sa.select(tables.items.c.id).order_by(key)).scalars().all()
    assert order == ["z", "a", "m"]


def test_a_worker_finds_late_eligible_items_at_its_sweep_interval(sql: Backend):
    sql.set_api("b", {"title": "A letter"})
    sql.set_api("a", None)
    handled: list[str] = []
    quick = {"poll_interval": 0.01, "max_poll_interval": 0.02, "produce": True}
    Worker(sql.app_repo, "lang", lambda job: handled.append(job.item_id), **quick).run(
        until_idle=True, install_signal_handlers=False
    )
    sql.set_api("a", {"title": "A diary"})
    Worker(sql.app_repo, "lang", lambda job: handled.append(job.item_id), **quick).run(
        until_idle=True, install_signal_handlers=False
    )
    assert handled == ["b"]  # the hour between sweeps has not passed
    Worker(
        sql.app_repo, "lang", lambda job: handled.append(job.item_id), sweep_interval=0, **quick
    ).run(until_idle=True, install_signal_handlers=False)
    assert handled == ["b", "a"]


def running_upstream(sql: Backend) -> FullText:
    """An item's job of A, running, which B follows; B's producer has made
    its first sweep (nothing done upstream), so what comes next reaches B
    by the record the job's end makes."""
    sql.add_items(["x"])
    sql.repo.depend("B", on="A")
    sql.repo.enqueue_new("A")
    assert sql.repo.enqueue_new("B") == 0
    (upstream,) = sql.repo.claim_ready("A", 1)
    return upstream


def test_a_followers_job_is_not_ready_before_the_upstream_end_it_follows(
    sql: Backend, clock: FakeClock
):
    """An upstream job that ends (stamped, then committed) after a
    follower's `enqueue_new` began, but before it took the recorded items:
    the follower's job is ready from a time after that end, not from the
    call's start."""
    upstream = running_upstream(sql)
    reads: list[datetime] = []

    def follower_clock() -> datetime:
        # The follower's first reading of its clock, and then, before it
        # reads the items recorded, the upstream job's end a second later.
        reads.append(clock.now)
        if len(reads) == 1:
            clock.advance(seconds=1)
            upstream.finish(clock.now)
            sql.repo.save_fulltext(upstream)
            clock.advance(seconds=1)
        return reads[-1]

    assert sql.engine is not None
    assert SqlAlchemyRepository(sql.engine, clock=follower_clock).enqueue_new("B") == 1
    (follower,) = sql.repo.list_jobs("B")
    assert upstream.finished is not None
    assert follower.ready_at is not None
    assert follower.ready_at >= upstream.finished, (follower.ready_at, upstream.finished)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "60", 8 * 24 * 3600])
def test_a_worker_refuses_a_bad_sweep_interval(bad):
    with pytest.raises(InvalidInput, match="sweep_interval"):
        Worker(InMemoryRepository(), "lang", print, produce=True, sweep_interval=bad)


@pytest.mark.postgresql
def test_has_destination_reads_the_ready_index_first(clean_postgres_engine: sa.Engine):
    repo = SqlAlchemyRepository(clean_postgres_engine)
    repo.add_items([f"item-{n}" for n in range(50)])
    repo.enqueue_unqueued("lang")
    statement = repo._ops.statements.has_destination.params(dest="lang")
    sql_text = str(
        statement.compile(
            dialect=clean_postgres_engine.dialect, compile_kwargs={"literal_binds": True}
        )
    )
    with clean_postgres_engine.connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")  # the plan of a big table
        plan = "\n".join(
            connection.exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF) {sql_text}").scalars()
        )
    # Either index of the ready jobs alone (both lead with the destination).
    assert "fulltext_ready_idx" in plan or "fulltext_ready_at_idx" in plan, plan
    # The OR stops at the first EXISTS that holds: the others never run.
    assert plan.count("never executed") >= 2, plan


@contextmanager
def recording(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL of every statement `engine` runs (through SQLAlchemy's
    execution) inside the block, in order."""
    seen: list[str] = []

    def before(_conn, _cursor, statement, _params, _context, _many) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


@pytest.mark.parametrize("claim", ["get_ready_job", "claim_ready"])
def test_a_claim_stamps_started_from_inside_its_transaction(
    sql: Backend, clock: FakeClock, claim: str
):
    """A claim reads its clock once its transaction has begun (on SQLite,
    after waiting for the write lock): a job an upstream's end made ready
    while the claimer waited is not stamped as started before it was ready,
    nor before that end."""
    upstream = running_upstream(sql)
    reads: list[datetime] = []

    def claimer_clock() -> datetime:
        # The claimer's first reading; then, as if it waited for the lock
        # meanwhile, the upstream ends and the follower's job is made.
        reads.append(clock.now)
        if len(reads) == 1:
            clock.advance(seconds=1)
            upstream.finish(clock.now)
            sql.repo.save_fulltext(upstream)
            clock.advance(seconds=1)
            assert sql.repo.enqueue_new("B") == 1
            clock.advance(seconds=1)
        return reads[-1] if len(reads) == 1 else clock.now

    assert sql.engine is not None
    claimer = SqlAlchemyRepository(sql.engine, clock=claimer_clock)
    job = claimer.get_ready_job("B") if claim == "get_ready_job" else claimer.claim_ready("B", 1)[0]
    (stored,) = sql.repo.list_jobs("B")
    assert upstream.finished is not None
    assert stored.ready_at is not None
    assert stored.started is not None
    assert upstream.finished <= stored.ready_at <= stored.started == job.started
