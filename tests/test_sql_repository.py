"""What only the SQL adapter has: a schema to check, URLs, drivers, item
sources built from tables, mapped classes and selects, and the original's
own SQL reading what we write."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from harness import APP_ITEMS, sql_backend
from sqlalchemy.orm import DeclarativeBase, sessionmaker

import fulltext_jobs
from fulltext_jobs import (
    AllQueued,
    FullText,
    InvalidInput,
    ItemSource,
    JobStatus,
    SchemaNotMigrated,
    SqlAlchemyRepository,
    StoreError,
)
from fulltext_jobs.sql.schema import SCHEMA_REVISION


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest) -> str:
    fixture = "tmp_sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def engine_of(unmigrated_url: str) -> Iterator[sa.Engine]:
    engine = fulltext_jobs.create_engine(unmigrated_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_engine(request: pytest.FixtureRequest) -> sa.Engine:
    fixture = "sqlite_engine" if request.param == "sqlite" else "clean_postgres_engine"
    engine: sa.Engine = request.getfixturevalue(fixture)
    return engine


# --- The schema check ------------------------------------------------------


def test_unmigrated_database_names_the_command_to_run(engine_of: sa.Engine):
    repo = SqlAlchemyRepository(engine_of)
    with pytest.raises(SchemaNotMigrated, match="alembic upgrade head"):
        repo.create_job_for_unqueued("lang")
    with pytest.raises(SchemaNotMigrated, match=r"fulltext_jobs\.upgrade"):
        repo.get_fulltext(uuid.uuid4())
    assert sa.inspect(engine_of).get_table_names() == []


OLDER = f"is at revision 0004; this version of fulltext-jobs needs revision {SCHEMA_REVISION}"


@pytest.mark.parametrize(
    ("revision", "needle"), [("0004", OLDER), ("base", "has no fulltext-jobs schema")]
)
def test_database_at_an_older_revision_is_refused(engine_of: sa.Engine, revision, needle):
    fulltext_jobs.upgrade(engine_of)
    fulltext_jobs.downgrade(engine_of, revision)
    repo = SqlAlchemyRepository(engine_of)
    with pytest.raises(SchemaNotMigrated, match=needle) as refused:
        repo.get_ready_job("lang")
    assert "fulltext_jobs.upgrade(url)" in str(refused.value)


def test_migrating_afterwards_makes_the_same_repository_work(engine_of: sa.Engine):
    repo = SqlAlchemyRepository(engine_of)
    with pytest.raises(SchemaNotMigrated):
        repo.get_ready_job("lang")
    fulltext_jobs.upgrade(engine_of)
    with pytest.raises(AllQueued):
        repo.create_job_for_unqueued("lang")


# --- URLs, engines and binds -----------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["not a url", "mysql://root@localhost/db", "postgresql+nosuchdriver://x/y", ""],
)
def test_bad_urls_raise_invalid_input(url: str):
    with pytest.raises(InvalidInput):
        fulltext_jobs.create_engine(url)


def test_plain_postgresql_url_means_psycopg():
    engine = fulltext_jobs.create_engine("postgresql://postgres@127.0.0.1:5432/test")
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_bind_must_be_an_engine_or_sessionmaker():
    with pytest.raises(InvalidInput):
        SqlAlchemyRepository("sqlite:///x.sqlite3")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        SqlAlchemyRepository(sessionmaker())


def test_a_sessionmaker_works_as_bind(sql_engine: sa.Engine):
    repo = SqlAlchemyRepository(sessionmaker(sql_engine))
    job = FullText.new("item", "lang")
    repo.save_fulltext(job)
    assert repo.get_fulltext(job.id) == job


def test_unreachable_server_raises_a_retryable_store_error():
    engine = fulltext_jobs.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    try:
        repo = SqlAlchemyRepository(engine)
        with pytest.raises(StoreError) as caught:
            repo.get_ready_job("lang")
        assert caught.value.retryable
        assert "retryable" in str(caught.value)
    finally:
        engine.dispose()


def test_a_plain_sqlalchemy_sqlite_engine_is_configured(tmp_sqlite_url: str):
    fulltext_jobs.upgrade(tmp_sqlite_url)
    engine = sa.create_engine(tmp_sqlite_url)
    try:
        SqlAlchemyRepository(engine)
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert (mode, timeout) == ("wal", 60_000)
    finally:
        engine.dispose()


# --- Item sources ----------------------------------------------------------


class Base(DeclarativeBase):
    pass


class AppItem(Base):
    __table__ = APP_ITEMS


def test_item_source_from_a_mapped_class(sql_engine: sa.Engine):
    backend = sql_backend(sql_engine)
    backend.set_api("fetched", {"k": 1})
    backend.set_api("pending", None)
    repo = SqlAlchemyRepository(
        sql_engine, items=ItemSource(AppItem, eligible=APP_ITEMS.c.api.is_not(None))
    )
    assert repo.create_job_for_unqueued("lang").item_id == "fetched"
    with pytest.raises(AllQueued):
        repo.create_job_for_unqueued("lang")


def test_item_source_from_a_select_of_one_column(sql_engine: sa.Engine):
    backend = sql_backend(sql_engine)
    for item_id in ("a", "b", "c"):
        backend.set_api(item_id, {"k": 1})
    repo = SqlAlchemyRepository(
        sql_engine, items=sa.select(APP_ITEMS.c.id).where(APP_ITEMS.c.id != "b")
    )
    assert {repo.create_job_for_unqueued("lang").item_id for _ in range(2)} == {"a", "c"}
    with pytest.raises(AllQueued):
        repo.create_job_for_unqueued("lang")


def test_add_items_refuses_an_apps_own_source(sql_engine: sa.Engine):
    backend = sql_backend(sql_engine)
    with pytest.raises(InvalidInput, match="app's own"):
        backend.app_repo.add_items(["x"])  # type: ignore[attr-defined]


def test_add_items_commits_in_batches(sql_engine: sa.Engine):
    repo = SqlAlchemyRepository(sql_engine)
    assert repo.add_items((f"item-{n:03}" for n in range(250)), batch_size=100) == 250
    assert repo.add_items([f"item-{n:03}" for n in range(300)], batch_size=100) == 50


def test_item_source_rejects_what_it_cannot_read():
    with pytest.raises(InvalidInput, match="one column"):
        ItemSource(sa.select(APP_ITEMS.c.id, APP_ITEMS.c.api))
    with pytest.raises(InvalidInput, match="no column"):
        ItemSource(APP_ITEMS, id_column="item_id")
    with pytest.raises(InvalidInput):
        ItemSource(object)


# --- PostgreSQL specifics --------------------------------------------------


def test_timestamps_are_utc_whatever_the_session_time_zone(
    postgres_url: str, clean_postgres_engine: sa.Engine
):
    new_york = fulltext_jobs.create_engine(
        postgres_url, connect_args={"options": "-c TimeZone=America/New_York"}
    )
    try:
        job = FullText.new("item", "lang")
        job.start(datetime(2026, 7, 1, 3, 30, 0, 5, tzinfo=UTC))
        SqlAlchemyRepository(new_york).save_fulltext(job)
        for engine in (new_york, clean_postgres_engine):
            loaded = SqlAlchemyRepository(engine).get_fulltext(job.id)
            assert loaded.started == job.started
            assert loaded.started is not None
            assert loaded.started.tzinfo is UTC
    finally:
        new_york.dispose()


def test_the_originals_sql_reads_and_claims_what_we_write(clean_postgres_engine: sa.Engine):
    repo = SqlAlchemyRepository(clean_postgres_engine)
    job = FullText.new("item", "lang")
    repo.save_fulltext(job)
    with clean_postgres_engine.begin() as connection:
        # The original's GetFullText, as its Go code ran it.
        row = connection.exec_driver_sql(
            "SELECT id, item_id, destination, started, finished, status "
            "FROM jobs.fulltext WHERE id = %(id)s",
            {"id": job.id},
        ).one()
        assert tuple(row) == (job.id, "item", "lang", None, None, "ready")
        # The original's claim (a plain status update by id after a select).
        connection.exec_driver_sql(
            "UPDATE jobs.fulltext SET status = 'running', started = now() WHERE id = %(id)s",
            {"id": job.id},
        )
    loaded = repo.get_fulltext(job.id)
    assert loaded.status is JobStatus.RUNNING
    assert loaded.started is not None


# --- Lost connections ------------------------------------------------------


def _terminate_other_backends(engine: sa.Engine) -> int:
    """Kill every connection to the engine's database but the caller's."""
    with engine.connect() as connection:
        killed = len(
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).all()
        )
    # The engine's own idle pooled connections were among them; the tests
    # after this one must not meet them.
    engine.dispose()
    return killed


@pytest.mark.parametrize("call", ["get_ready_job", "save_fulltext", "claim_ready"])
def test_a_terminated_connection_gives_a_retryable_error_then_recovers(
    postgres_url: str, clean_postgres_engine: sa.Engine, call: str
):
    engine = fulltext_jobs.create_engine(postgres_url, pool_size=1, max_overflow=0)
    try:
        repo = SqlAlchemyRepository(engine)
        job = FullText.new("item", "lang")
        repo.save_fulltext(job)  # the pool now holds one live connection
        assert _terminate_other_backends(clean_postgres_engine) >= 1
        calls = {
            "get_ready_job": lambda: repo.get_ready_job("lang"),
            "save_fulltext": lambda: repo.save_fulltext(job),
            "claim_ready": lambda: repo.claim_ready("lang", 5),
        }
        with pytest.raises(StoreError) as caught:
            calls[call]()
        assert caught.value.retryable
        assert "retryable" in str(caught.value)
        # The same repository works at once, on a new connection, and the
        # failed call changed nothing.
        assert repo.get_fulltext(job.id) == job
        assert repo.get_ready_job("lang").id == job.id
    finally:
        engine.dispose()


def test_an_idle_connection_is_tested_and_replaced_before_use(
    postgres_url: str, clean_postgres_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(fulltext_jobs.sql.engine, "IDLE_PING_SECONDS", 0.0)
    engine = fulltext_jobs.create_engine(postgres_url, pool_size=1, max_overflow=0)
    try:
        repo = SqlAlchemyRepository(engine)
        job = FullText.new("item", "lang")
        repo.save_fulltext(job)
        assert _terminate_other_backends(clean_postgres_engine) >= 1
        assert repo.get_ready_job("lang").id == job.id  # no error: pinged, replaced
    finally:
        engine.dispose()


# --- Keyset batches --------------------------------------------------------


def test_enqueue_works_across_batches(sql_engine: sa.Engine):
    repo = SqlAlchemyRepository(sql_engine, enqueue_batch_size=3)
    items = [f"item-{n:02}" for n in range(10)]
    repo.add_items(items)
    saved = ["item-01", "item-04", "item-05"]
    for item_id in saved:
        repo.save_fulltext(FullText.new(item_id, "lang"))
    assert repo.enqueue_unqueued("lang", limit=4) == 4
    assert repo.enqueue_unqueued("lang") == 3
    assert repo.count_unqueued("lang") == 0
    claimed = [job.item_id for job in repo.claim_ready("lang", 20)]
    # Saved jobs first, then the bulk-queued ones in id order.
    assert claimed == saved + [item_id for item_id in items if item_id not in saved]


def test_enqueue_reports_each_committed_batch(sql_engine: sa.Engine):
    repo = SqlAlchemyRepository(sql_engine, enqueue_batch_size=3)
    repo.add_items([f"item-{n:02}" for n in range(8)])
    repo.save_fulltext(FullText.new("item-01", "lang"))
    reported: list[int] = []
    assert repo.enqueue_unqueued("lang", progress=reported.append) == 7
    # Ranges of 3 ids (the first holds the queued one), then the remainder.
    assert reported == [2, 3, 2]


def test_enqueue_batch_size_must_be_positive(sql_engine: sa.Engine):
    with pytest.raises(InvalidInput):
        SqlAlchemyRepository(sql_engine, enqueue_batch_size=0)


@pytest.mark.parametrize("call", ["save_fulltext", "save_many", "get_ready_job"])
def test_a_lock_timeout_is_retryable_and_keeps_the_connection(
    postgres_url: str, clean_postgres_engine: sa.Engine, call: str
):
    engine = fulltext_jobs.create_engine(
        postgres_url, pool_size=1, max_overflow=0, connect_args={"options": "-c lock_timeout=200"}
    )
    try:
        repo = SqlAlchemyRepository(engine)
        job = FullText.new("item", "lang")
        repo.save_fulltext(job)
        pid_before = _backend_pid(engine)
        with clean_postgres_engine.connect() as holder:
            holder.exec_driver_sql(
                "SELECT 1 FROM jobs.fulltext WHERE id = %(id)s FOR UPDATE", {"id": job.id}
            )
            calls = {
                "save_fulltext": lambda: repo.save_fulltext(job),
                "save_many": lambda: repo.save_many([job]),
                # The claim skips the locked row, so lock the whole table.
                "get_ready_job": lambda: repo.get_ready_job("lang"),
            }
            if call == "get_ready_job":
                holder.exec_driver_sql("LOCK TABLE jobs.fulltext IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(StoreError) as caught:
                calls[call]()
            assert caught.value.retryable
            holder.rollback()
        assert _backend_pid(engine) == pid_before  # the healthy connection was kept
        assert repo.get_fulltext(job.id) == job
    finally:
        engine.dispose()


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


@pytest.mark.parametrize("call", ["get_ready_job", "save_fulltext", "stats"])
def test_after_a_lost_connection_no_other_pooled_connection_fails(
    postgres_url: str, clean_postgres_engine: sa.Engine, call: str
):
    engine = fulltext_jobs.create_engine(postgres_url, pool_size=5, max_overflow=0)
    try:
        repo = SqlAlchemyRepository(engine)
        job = FullText.new("item", "lang")
        repo.save_fulltext(job)
        held = [engine.connect() for _ in range(5)]  # fill the pool with five connections
        for connection in held:
            connection.close()
        assert _terminate_other_backends(clean_postgres_engine) >= 5  # as a restart would
        calls = {
            "get_ready_job": lambda: repo.get_ready_job("lang"),
            "save_fulltext": lambda: repo.save_fulltext(job),
            "stats": lambda: repo.stats("lang"),
        }
        with pytest.raises(StoreError) as caught:
            calls[call]()
        assert caught.value.retryable
        calls[call]()  # the next call works: no dead connection is left in the pool
    finally:
        engine.dispose()


@pytest.mark.postgresql
def test_a_pooled_connection_the_driver_knows_closed_is_a_retryable_store_error(
    fresh_postgres_url: str,
):
    """The hot path asks the driver for a cursor on a pooled connection: one
    closed under the pool (say, by a crashed pgbouncer) raises there, and
    must come out as the port's error, then leave the pool usable."""
    fulltext_jobs.upgrade(fresh_url := fresh_postgres_url)
    engine = fulltext_jobs.create_engine(fresh_url)
    try:
        repo = SqlAlchemyRepository(engine)
        repo.add_items(["a"])
        repo.enqueue_unqueued("d")
        # The engine's pool, which the repository's autocommit calls share.
        with engine.connect() as connection:
            pooled = connection.connection.dbapi_connection
        assert pooled is not None
        pooled.close()  # back in the pool, closed under it
        with pytest.raises(StoreError) as lost:
            repo.get_ready_job("d")
        retryable = lost.value.retryable
        del lost  # its traceback holds the dead connection: see below
        assert retryable
        assert repo.get_ready_job("d").item_id == "a"  # the next call works
    finally:
        engine.dispose()
        del pooled
        # The closed driver connection's finalizer runs now, not inside some
        # later ast.parse (CPython 3.11.7 then fails with "AST constructor
        # recursion depth mismatch").
        gc.collect()


def test_the_row_positions_read_by_position_follow_the_job_columns():
    from fulltext_jobs.sql import rows  # noqa: PLC0415 - the module under test
    from fulltext_jobs.sql.items import ItemSource  # noqa: PLC0415
    from fulltext_jobs.sql.schema import tables_for  # noqa: PLC0415
    from fulltext_jobs.sql.statements import Statements  # noqa: PLC0415

    for dialect in ("postgresql", "sqlite"):
        tables = tables_for(dialect)
        columns = Statements(tables, ItemSource(tables.items), dialect).job_columns
        named = {
            name: columns[getattr(rows, name.upper())].name
            for name in ("not_before", "backoffs", "priority", "ready_at", "version")
        }
        assert named == {name: name for name in named}
