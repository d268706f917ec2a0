"""The contract suite every repository adapter keeps, for yours to run.

Not imported by `fulltext_jobs` itself: it needs pytest, which whoever
imports it runs. Subclass `RepositoryContract` (or one of its parts) in a
test module and provide a `contract_backend` fixture; see
docs/guide-adapters.md and `fulltext_jobs.testing.contract`.
"""

from fulltext_jobs.testing.backend import (
    AppSource,
    Capabilities,
    Clock,
    ContractBackend,
    ContractSettings,
    FakeClock,
    ItemAdder,
)
from fulltext_jobs.testing.contract import (
    CLOCK_START,
    CLOCKED_LEASE,
    BatchContract,
    ClaimContract,
    CompareAndSwapContract,
    ContractFixtures,
    HoldContract,
    HostileInputContract,
    ListJobsContract,
    ProducerContract,
    RepositoryContract,
    StorageContract,
)

__all__ = [
    "CLOCKED_LEASE",
    "CLOCK_START",
    "AppSource",
    "BatchContract",
    "Capabilities",
    "ClaimContract",
    "Clock",
    "CompareAndSwapContract",
    "ContractBackend",
    "ContractFixtures",
    "ContractSettings",
    "FakeClock",
    "HoldContract",
    "HostileInputContract",
    "ItemAdder",
    "ListJobsContract",
    "ProducerContract",
    "RepositoryContract",
    "StorageContract",
]
