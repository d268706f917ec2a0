"""What every part of the contract suite shares: its fixtures, clock, and
the jobs and bad values its tests make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fulltext_jobs import (
    MAX_DESTINATION_LENGTH,
    MAX_ITEM_ID_LENGTH,
    Action,
    FullText,
    JobStatus,
)
from fulltext_jobs.domain import DEFAULT_LEASE
from fulltext_jobs.testing.backend import ContractBackend, ContractSettings, FakeClock, ItemAdder

#: An argument of the wrong type or value, handed to the port on purpose.
Hostile = Any

#: Where the suite's `FakeClock` starts.
CLOCK_START = datetime(2026, 11, 28, 12, 0, 0, 250_000, tzinfo=UTC)
#: The lease of the tests that move time.
CLOCKED_LEASE = timedelta(seconds=60)


class ContractFixtures:
    """The fixtures every part of the suite uses. Yours is `contract_backend`.

    `clock`: a `FakeClock` at `CLOCK_START`. `contract_settings`: for tests
    that move time (those taking `clocked`), that clock and `CLOCKED_LEASE`;
    for the others, no clock and the default lease. `backend` and `clocked`
    are your `contract_backend`, built with those settings.
    """

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock(CLOCK_START)

    @pytest.fixture
    def contract_settings(
        self, request: pytest.FixtureRequest, clock: FakeClock
    ) -> ContractSettings:
        if "clocked" in request.fixturenames:
            return ContractSettings(clock=clock, lease=CLOCKED_LEASE)
        return ContractSettings(clock=None, lease=DEFAULT_LEASE)

    @pytest.fixture
    def backend(self, contract_backend: ContractBackend) -> ContractBackend:
        return contract_backend

    @pytest.fixture
    def clocked(self, contract_backend: ContractBackend) -> ContractBackend:
        if not contract_backend.capabilities.takes_a_clock:
            pytest.skip("the adapter takes no clock (Capabilities.takes_a_clock)")
        return contract_backend


def item_adder(backend: ContractBackend) -> ItemAdder:
    """The repository, which has an `add_items` of its own; the test is
    skipped if the backend says it has none."""
    if not backend.capabilities.repository_adds_items:
        pytest.skip("the repository has no add_items (Capabilities.repository_adds_items)")
    repo = backend.repo
    assert isinstance(repo, ItemAdder), "Capabilities.repository_adds_items, but no add_items"
    return repo


T0 = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)

BAD_DESTINATIONS = {
    "empty": "",
    "too-long": "d" * (MAX_DESTINATION_LENGTH + 1),
    "nul": "lang\x00uage",
    "not-a-str": 42,
}
BAD_ITEM_IDS = {
    "empty": "",
    "too-long": "i" * (MAX_ITEM_ID_LENGTH + 1),
    "nul": "item\x00",
}


def job_in(status: JobStatus, item_id: str = "item", destination: str = "lang") -> FullText:
    """A job brought to `status` by legal moves."""
    job = FullText.new(item_id, destination)
    path = {
        JobStatus.READY: [],
        JobStatus.RUNNING: [Action.START],
        JobStatus.FINISHED: [Action.START, Action.FINISH],
        JobStatus.FAILED: [Action.START, Action.FAIL],
        JobStatus.SKIPPED: [Action.SKIP],
    }[status]
    for step, action in enumerate(path):
        job.apply(action, T0 + timedelta(seconds=step))
    return job


def build_like(backend: ContractBackend, **settings: object) -> object:
    """A repository of `backend`'s kind, built with `settings`; the test is
    skipped if the backend cannot build one (`ContractBackend.build`)."""
    if backend.build is None:
        pytest.skip("the adapter gives no way to build a repository (ContractBackend.build)")
    return backend.build(**settings)
