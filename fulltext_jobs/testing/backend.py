"""What an adapter hands the contract suite: `ContractBackend` and its
`Capabilities`, and what the suite hands the adapter: `ContractSettings`
(a `FakeClock` and a lease, or neither)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import pytest

from fulltext_jobs.domain import DEFAULT_LEASE
from fulltext_jobs.repository import Repository

#: A clock as the adapters take it: a function returning an aware datetime.
Clock = Callable[[], datetime]


class FakeClock:
    """A clock the test moves by hand: `now` is what it reads."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move on by `timedelta(**delta)`; return the new time."""
        self.now += timedelta(**delta)
        return self.now


@dataclass(frozen=True)
class ContractSettings:
    """How the suite wants the repository under test built.

    `clock`: the time the repository must read (None: its own, real time).
    `lease`: its lease. The suite's `contract_settings` fixture gives these
    to your `contract_backend` fixture; tests that move time get a
    `FakeClock` and a 60-second lease, the others None and the default.
    """

    clock: Clock | None = None
    lease: timedelta = DEFAULT_LEASE


@dataclass(frozen=True)
class Capabilities:
    """What sets an adapter apart, where the contract allows a difference.

    The suite asks these instead of asking which adapter it runs on. The
    defaults suit an adapter that adds items with a method of its own,
    takes a clock and lets other calls pass a `hold_ready` block.
    """

    holds_write_lock_in_hold_ready: bool = False
    """`hold_ready`'s block holds the store's one write lock until it ends,
    as on SQLite: other calls may wait for the block rather than pass the
    held jobs over. The suite then makes no other call inside a block, and
    expects a claim made meanwhile to go ahead only once the block ends.
    False: held jobs are locked one by one (PostgreSQL's row locks, the
    in-memory adapter), and a concurrent claim takes the next jobs at once."""

    repository_adds_items: bool = True
    """The repository itself has `add_items(item_ids, *, batch_size=...)`,
    returning how many ids were new (every adapter of this library has). The
    tests of that method's count and of its all-or-nothing refusal of a bad
    id run only then; the rest of the suite adds items through
    `ContractBackend.add_items`."""

    keeps_controls: bool = True
    """The adapter keeps destination controls (`pause`, `resume`): the
    tests of `ControlsContract` run only then. False for an adapter that
    inherits the port's defaults (nothing set; pausing raises
    `NotSupported`)."""

    cancels: bool = True
    """The adapter can cancel jobs (`cancel`, `take_cancel_requests`): the
    tests of `CancelContract` run only then. False for an adapter that
    inherits the port's defaults (cancelling raises `NotSupported`; no
    request is ever taken)."""

    prioritizes: bool = True
    """The adapter can change the priority of ready jobs (`prioritize`):
    the tests of it run only then. False for an adapter that inherits the
    port's default (`NotSupported`); claims in priority order are asked of
    every adapter."""

    keeps_dependencies: bool = True
    """The adapter keeps dependencies between destinations (`depend`,
    `undepend`, `dependencies`) and every way of making jobs obeys them:
    the tests of `DependencyContract` run only then. False for an adapter
    that inherits the port's defaults (`NotSupported`), which the suite
    then checks it raises."""

    takes_a_clock: bool = True
    """The repository reads the time from `ContractSettings.clock` (the
    adapters' `clock=`). The tests that move time (leases, delays, sweeps,
    hostile clock readings) run only then."""


@runtime_checkable
class ItemAdder(Protocol):
    """A repository with an `add_items` of its own (see
    `Capabilities.repository_adds_items`)."""

    def add_items(self, item_ids: Iterable[str], *, batch_size: int = ...) -> int: ...


@dataclass
class AppSource:
    """A second repository of the same store that reads items from a source
    with an eligibility rule (the library's `ItemSource(table, eligible=...)`),
    and how a test adds or changes an item there.

    `set_api(item_id, api)` adds the item or changes its metadata: it is
    eligible when `api` is not None. An adapter whose source only ever holds
    eligible ids may ignore None, as long as an item never becomes
    ineligible again in the suite (it does not).
    """

    repo: Repository
    set_api: Callable[[str, object], object]


@dataclass
class ContractBackend:
    """One adapter's repository, empty, with the means to set up what the
    port cannot. Return one from your `contract_backend` fixture.

    `repo`: the repository under test, built with the `ContractSettings`
    the fixture was given, over an empty store.
    `add_items(ids)`: adds eligible items to the source `repo` reads.
    `app_source`: see `AppSource`; None skips the tests of eligibility.
    `build(**settings)`: builds another repository of the adapter's kind,
    over the same store, with keyword settings (`clock=`, `lease=`); None
    skips the tests that hostile settings are refused at construction.
    `capabilities`: see `Capabilities`.
    """

    repo: Repository
    add_items: Callable[[Iterable[str]], object]
    app_source: AppSource | None = None
    build: Callable[..., object] | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)

    @property
    def app_repo(self) -> Repository:
        """`app_source.repo`; the test is skipped if there is none."""
        return self._app_source().repo

    def set_api(self, item_id: str, api: object) -> None:
        """`app_source.set_api`; the test is skipped if there is none."""
        self._app_source().set_api(item_id, api)

    def _app_source(self) -> AppSource:
        if self.app_source is None:
            pytest.skip("the adapter gives no app source (ContractBackend.app_source)")
        return self.app_source
