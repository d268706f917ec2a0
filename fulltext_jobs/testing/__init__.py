"""The contract suite every repository adapter keeps, for yours to run.

Not imported by `fulltext_jobs` itself: it needs pytest, which whoever
imports it runs. Subclass `RepositoryContract` (or one of its parts) in a
test module and provide a `contract_backend` fixture; see
`fulltext_jobs.testing.contract`, and the unit-test guide's section "Hold
your own adapter to the contract".
"""

import pkgutil

import pytest

# pytest explains a failed assert (the values compared) only in modules it
# rewrites; it rewrites test files by itself, and the suite's modules (every
# submodule of this package) once told, before they are imported.
pytest.register_assert_rewrite(
    *(f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__))
)

from fulltext_jobs.testing.backend import (  # noqa: E402 - after the rewrite is registered
    AppSource,
    Capabilities,
    Clock,
    ContractBackend,
    ContractSettings,
    FakeClock,
    ItemAdder,
)
from fulltext_jobs.testing.contract import (  # noqa: E402 - as above
    CLOCK_START,
    CLOCKED_LEASE,
    AttemptsBoundContract,
    BackOffContract,
    BatchContract,
    CancelContract,
    ClaimContract,
    CompareAndSwapContract,
    ContractFixtures,
    ControlsContract,
    DependencyContract,
    HoldContract,
    HostileInputContract,
    ListJobsContract,
    PriorityContract,
    ProducerContract,
    ReadyTimeContract,
    RepositoryContract,
    StorageContract,
)

__all__ = [
    "CLOCKED_LEASE",
    "CLOCK_START",
    "AppSource",
    "AttemptsBoundContract",
    "BackOffContract",
    "BatchContract",
    "CancelContract",
    "Capabilities",
    "ClaimContract",
    "Clock",
    "CompareAndSwapContract",
    "ContractBackend",
    "ContractFixtures",
    "ContractSettings",
    "ControlsContract",
    "DependencyContract",
    "FakeClock",
    "HoldContract",
    "HostileInputContract",
    "ItemAdder",
    "ListJobsContract",
    "PriorityContract",
    "ProducerContract",
    "ReadyTimeContract",
    "RepositoryContract",
    "StorageContract",
]
