"""The contract every adapter keeps, as pytest test classes.

`RepositoryContract` is the whole suite; `StorageContract`, `BatchContract`,
`ProducerContract`, `ListJobsContract`, `ClaimContract`,
`AttemptsBoundContract`, `CompareAndSwapContract`, `HostileInputContract`,
`HoldContract`, `ControlsContract`, `CancelContract`, `BackOffContract`,
`PriorityContract`, `DependencyContract` and `ReadyTimeContract` are its
parts. Subclass one in a test module (its name starting with `Test`) and
provide a `contract_backend` fixture that takes the suite's
`contract_settings` and returns a `ContractBackend`:

    @pytest.fixture
    def contract_backend(contract_settings: ContractSettings) -> ContractBackend:
        repo = MyRepository(clock=contract_settings.clock, lease=contract_settings.lease)
        return ContractBackend(repo, repo.add_items)

    class TestMyRepository(RepositoryContract):
        pass

Tests speak only through the port (`Repository`), the backend's hooks and
its `Capabilities`.
"""

from __future__ import annotations

from fulltext_jobs.testing._fixtures import CLOCK_START, CLOCKED_LEASE, ContractFixtures
from fulltext_jobs.testing.backoff import BackOffContract
from fulltext_jobs.testing.batches import BatchContract
from fulltext_jobs.testing.cancel import CancelContract
from fulltext_jobs.testing.claims import (
    AttemptsBoundContract,
    ClaimContract,
    CompareAndSwapContract,
)
from fulltext_jobs.testing.controls import ControlsContract
from fulltext_jobs.testing.dependencies import DependencyContract
from fulltext_jobs.testing.hold import HoldContract
from fulltext_jobs.testing.hostile import HostileInputContract
from fulltext_jobs.testing.lag import ReadyTimeContract
from fulltext_jobs.testing.priorities import PriorityContract
from fulltext_jobs.testing.producer import ListJobsContract, ProducerContract
from fulltext_jobs.testing.storage import StorageContract

__all__ = [
    "CLOCKED_LEASE",
    "CLOCK_START",
    "AttemptsBoundContract",
    "BackOffContract",
    "BatchContract",
    "CancelContract",
    "ClaimContract",
    "CompareAndSwapContract",
    "ContractFixtures",
    "ControlsContract",
    "DependencyContract",
    "HoldContract",
    "HostileInputContract",
    "ListJobsContract",
    "PriorityContract",
    "ProducerContract",
    "ReadyTimeContract",
    "RepositoryContract",
    "StorageContract",
]


class RepositoryContract(
    StorageContract,
    BatchContract,
    ProducerContract,
    ListJobsContract,
    ClaimContract,
    AttemptsBoundContract,
    CompareAndSwapContract,
    HostileInputContract,
    HoldContract,
    ControlsContract,
    CancelContract,
    BackOffContract,
    PriorityContract,
    DependencyContract,
    ReadyTimeContract,
):
    """The whole contract suite: every part's tests in one class."""
