"""The asyncio adapter beyond the contract suite (which runs it as the
`sqlite-async` and `postgresql-async` backends): engines, joining an
AsyncSession, errors, and the worker running async handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import fulltext_jobs
from fulltext_jobs import (
    AsyncSqlAlchemyRepository,
    DuplicateJob,
    FullText,
    InMemoryRepository,
    InvalidInput,
    JobStatus,
    NoJobs,
    SchemaNotMigrated,
    SqlAlchemyRepository,
    Worker,
)

DEST = "lang"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    """A migrated database of each kind with two ready jobs, and a results
    table of the app's."""
    fixture = "sqlite_engine" if request.param == "sqlite" else "clean_postgres_engine"
    engine: sa.Engine = request.getfixturevalue(fixture)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS app_results")
        connection.exec_driver_sql("CREATE TABLE app_results (item_id TEXT PRIMARY KEY)")
    repo = SqlAlchemyRepository(engine)
    repo.add_items(["item-1", "item-2"])
    repo.enqueue_unqueued(DEST)
    return engine


def run_with(
    engine: sa.Engine, body: Callable[[AsyncEngine], Coroutine[Any, Any, object]]
) -> object:
    """Run `body` with an async engine on the same database, disposed after."""

    async def main() -> object:
        async_engine = fulltext_jobs.create_async_engine(
            engine.url.render_as_string(hide_password=False)
        )
        try:
            return await body(async_engine)
        finally:
            await async_engine.dispose()

    return asyncio.run(main())


def results(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.exec_driver_sql("SELECT item_id FROM app_results").scalars())


def test_joining_an_async_session_commits_with_the_apps_writes(engine: sa.Engine):
    async def body(async_engine: AsyncEngine) -> FullText:
        repo = AsyncSqlAlchemyRepository(async_engine)
        async with AsyncSession(async_engine) as session:
            joined = repo.in_session(session)
            job = await joined.get_ready_job(DEST)
            await session.execute(
                sa.text("INSERT INTO app_results VALUES (:i)"), {"i": job.item_id}
            )
            job.finish()
            await joined.save_fulltext(job)
            await session.commit()
        return job

    job = run_with(engine, body)
    assert isinstance(job, FullText)
    assert results(engine) == {job.item_id}
    assert SqlAlchemyRepository(engine).get_fulltext(job.id).status is JobStatus.FINISHED


def test_an_async_session_rolled_back_undoes_both(engine: sa.Engine):
    async def body(async_engine: AsyncEngine) -> None:
        repo = AsyncSqlAlchemyRepository(async_engine)
        make_session = async_sessionmaker(async_engine)
        async with make_session() as session:
            joined = AsyncSqlAlchemyRepository(session)
            job = await joined.get_ready_job(DEST)
            await session.execute(
                sa.text("INSERT INTO app_results VALUES (:i)"), {"i": job.item_id}
            )
            job.finish()
            await joined.save_fulltext(job)
            # A failed call rolls back to its savepoint; the session goes on.
            with pytest.raises(DuplicateJob):
                await joined.save_fulltext(FullText.new(job.item_id, DEST))
            await session.rollback()
        assert len(await repo.claim_ready(DEST, 5)) == 2

    run_with(engine, body)
    assert results(engine) == set()


def test_an_async_sessionmaker_gives_its_engine(engine: sa.Engine):
    async def body(async_engine: AsyncEngine) -> None:
        repo = AsyncSqlAlchemyRepository(async_sessionmaker(async_engine))
        assert len(await repo.claim_ready(DEST, 5)) == 2
        with pytest.raises(NoJobs):
            await repo.get_ready_job(DEST)

    run_with(engine, body)


def test_bad_binds_and_sessions_are_refused(engine: sa.Engine):
    async def body(async_engine: AsyncEngine) -> None:
        with pytest.raises(InvalidInput):
            AsyncSqlAlchemyRepository(engine)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            AsyncSqlAlchemyRepository(AsyncSession())
        repo = AsyncSqlAlchemyRepository(async_engine)
        with pytest.raises(InvalidInput):
            repo.in_session(object())  # type: ignore[arg-type]

    run_with(engine, body)


def test_an_unmigrated_database_is_reported(tmp_sqlite_url: str):
    async def main() -> None:
        async_engine = fulltext_jobs.create_async_engine(tmp_sqlite_url)
        try:
            with pytest.raises(SchemaNotMigrated):
                await AsyncSqlAlchemyRepository(async_engine).get_ready_job(DEST)
        finally:
            await async_engine.dispose()

    asyncio.run(main())


@pytest.mark.parametrize("url", ["mysql://nowhere/db", "not a url", "sqlite+pysqlite:///x.sqlite3"])
def test_create_async_engine_refuses_what_it_cannot_open(url: str):
    with pytest.raises(InvalidInput):
        fulltext_jobs.create_async_engine(url)


# --- The worker runs async handlers ------------------------------------------


def test_the_worker_awaits_async_handlers():
    repo = InMemoryRepository(items=["a", "b", "c", "skip-me"])
    repo.enqueue_unqueued(DEST)
    seen: list[str] = []

    async def handler(job: FullText) -> None:
        await asyncio.sleep(0)
        if job.item_id == "skip-me":
            raise fulltext_jobs.SkipJob
        if job.item_id == "c":
            raise RuntimeError("no text")
        seen.append(job.item_id)

    stats = Worker(repo, DEST, handler, concurrency=2, max_attempts=1).run(
        until_idle=True, install_signal_handlers=False
    )
    assert sorted(seen) == ["a", "b"]
    assert (stats.finished, stats.failed, stats.skipped) == (2, 1, 1)
    assert repo.claim_ready(DEST, 10) == []  # none left ready
