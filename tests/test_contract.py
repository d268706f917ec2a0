"""The contract suite (`fulltext_jobs.testing`), run against each of our
adapters: in memory, SQLite and PostgreSQL, and the last two again through
the async adapter. Each test id appears once per backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from functools import partial

import pytest
import sqlalchemy as sa
from harness import (
    BACKENDS,
    Backend,
    BlockingAsyncRepository,
    async_sql_backend,
    memory_backend,
    sql_backend,
)

from fulltext_jobs import AsyncSqlAlchemyRepository, InMemoryRepository, SqlAlchemyRepository
from fulltext_jobs.sql.schema import tables_for
from fulltext_jobs.testing import (
    AppSource,
    AttemptsBoundContract,
    BackOffContract,
    BatchContract,
    CancelContract,
    Capabilities,
    ClaimContract,
    CompareAndSwapContract,
    ContractBackend,
    ContractSettings,
    ControlsContract,
    DependencyContract,
    HoldContract,
    HostileInputContract,
    ListJobsContract,
    PriorityContract,
    ProducerContract,
    ReadyTimeContract,
    StorageContract,
)


def contract_backend_of(backend: Backend) -> ContractBackend:
    """The harness's backend as the suite takes it."""
    repo = backend.repo
    if isinstance(repo, InMemoryRepository):
        build = InMemoryRepository
    elif isinstance(repo, BlockingAsyncRepository):
        build = partial(AsyncSqlAlchemyRepository, repo.repo._engine)
    else:
        build = partial(SqlAlchemyRepository, backend.engine)
    return ContractBackend(
        repo=repo,
        add_items=backend.add_items,
        app_source=AppSource(backend.app_repo, backend.set_api),
        build=build,
        # SQLite has one writer: hold_ready's transaction holds its lock.
        capabilities=Capabilities(holds_write_lock_in_hold_ready=backend.name.startswith("sqlite")),
    )


@pytest.fixture(params=BACKENDS)
def contract_backend(
    request: pytest.FixtureRequest, contract_settings: ContractSettings
) -> Iterator[ContractBackend]:
    name: str = request.param
    settings = {"clock": contract_settings.clock, "lease": contract_settings.lease}
    if name == "memory":
        yield contract_backend_of(memory_backend(**settings))
        return
    fixture = "sqlite_engine" if name.startswith("sqlite") else "clean_postgres_engine"
    engine = request.getfixturevalue(fixture)
    if name.endswith("-async"):
        with async_sql_backend(engine, **settings) as backend:
            yield contract_backend_of(backend)
    else:
        yield contract_backend_of(sql_backend(engine, **settings))


class TestRepositoryContract(StorageContract):
    pass


class TestBatchContract(BatchContract):
    pass


class TestProducerContract(ProducerContract):
    pass


class TestListJobsContract(ListJobsContract):
    pass


class TestClaimContract(ClaimContract):
    pass


class TestAttemptsBoundContract(AttemptsBoundContract):
    pass


class TestCompareAndSwapContract(CompareAndSwapContract):
    pass


class TestHostileInputContract(HostileInputContract):
    pass


class TestHoldContract(HoldContract):
    pass


class TestControlsContract(ControlsContract):
    pass


class TestBackOffContract(BackOffContract):
    pass


class TestCancelContract(CancelContract):
    pass


class TestPriorityContract(PriorityContract):
    pass


class TestReadyTimeContract(ReadyTimeContract):
    pass


class TestDependencyContract(DependencyContract):
    def test_a_job_ended_by_other_code_lets_its_item_follow(
        self, clocked: ContractBackend, request: pytest.FixtureRequest
    ) -> None:
        # A job written to the table by code that knows nothing of the port
        # (the Go original's insert, an app's update): the database's
        # triggers record its item, as they do the port's writes.
        name: str = request.node.callspec.params["contract_backend"]
        if name == "memory":
            pytest.skip("the in-memory adapter has no table to write to")
        engine: sa.Engine = request.getfixturevalue(
            "sqlite_engine" if name.startswith("sqlite") else "clean_postgres_engine"
        )
        repo = clocked.repo
        clocked.add_items(["a", "b", "c"])
        repo.depend("lang", on="fetch")
        assert repo.enqueue_new("lang", sweep_interval=timedelta(hours=1)) == 0
        fulltext = tables_for(engine.dialect.name).fulltext
        ready = uuid.uuid4()
        with engine.begin() as connection:
            connection.execute(
                sa.insert(fulltext),
                [
                    {
                        "id": uuid.uuid4(),
                        "item_id": "a",
                        "destination": "fetch",
                        "status": "finished",
                    },
                    {"id": ready, "item_id": "b", "destination": "fetch", "status": "ready"},
                    {
                        "id": uuid.uuid4(),
                        "item_id": "c",
                        "destination": "fetch",
                        "status": "failed",
                    },
                ],
            )
        with engine.begin() as connection:
            connection.execute(
                sa.update(fulltext).where(fulltext.c.id == ready).values(status="finished")
            )
        assert repo.enqueue_new("lang", sweep_interval=timedelta(hours=1)) == 2
        assert [job.item_id for job in repo.list_jobs("lang")] == ["a", "b"]
