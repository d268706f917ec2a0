"""The contract suite (`fulltext_jobs.testing`), run against each of our
adapters: in memory, SQLite and PostgreSQL, and the last two again through
the async adapter. Each test id appears once per backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest
from harness import (
    BACKENDS,
    Backend,
    BlockingAsyncRepository,
    async_sql_backend,
    memory_backend,
    sql_backend,
)

from fulltext_jobs import AsyncSqlAlchemyRepository, InMemoryRepository, SqlAlchemyRepository
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
