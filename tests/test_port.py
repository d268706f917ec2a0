"""The two ports, method by method: `AsyncRepository` offers every operation
of `Repository`, with the same parameters (names, kinds, defaults,
annotations), as coroutines (an async context manager where the sync port
gives a context manager), and both run each operation's checks from the one
place they are written, `fulltext_jobs.port`. An operation added to one
port and not the other, or a default changed in one, fails here; so does
the old name of a parameter (`port.renamed_keyword`) kept in one only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

import pytest

from fulltext_jobs import port
from fulltext_jobs.repository import AsyncRepository, Repository

#: Where the ports are meant to differ, by method name, and why: each name
#: here is left out of the comparisons below. None today. (Not differences:
#: `hold_ready` is a context manager in one and an async one in the other,
#: which the tests below require; `listen` returns the same `ReadyListener`
#: from both, whose `wait` blocks, as a thread's does; an adapter's
#: `_hold_ready` yields a `Hold` to one and an `AsyncHold`, whose `write` is
#: awaited, to the other.)
INTENDED_DIFFERENCES: dict[str, str] = {}

#: Public operations that do not check their own arguments, by name, and the
#: operation that does.
DELEGATES = {"rescue_expired": "rescue_expired_jobs"}

#: Operations that take no argument: nothing to check.
NO_ARGUMENTS = {"list_controls"}


def methods(cls: type, *, public: bool) -> dict[str, Callable[..., Any]]:
    """The methods `cls` defines or inherits from the port, public ones or
    the protected ones an adapter writes, by name."""
    found = {}
    for name, value in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("__") or name in INTENDED_DIFFERENCES:
            continue
        if name.startswith("_") != public:
            found[name] = value
    return found


SYNC, ASYNC = methods(Repository, public=True), methods(AsyncRepository, public=True)
SYNC_IMPL = methods(Repository, public=False)
ASYNC_IMPL = methods(AsyncRepository, public=False)


def parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    """Each parameter's name, kind, default and annotation (a string: the
    modules postpone their annotations)."""
    return [
        (p.name, p.kind, p.default, p.annotation)
        for p in inspect.signature(function).parameters.values()
    ]


def stub(cls: type) -> Any:
    """An instance of the port `cls` with no adapter behind it: enough to
    see what a method returns without running it."""
    concrete = type(f"Stub{cls.__name__}", (cls,), {})
    concrete.__abstractmethods__ = frozenset()  # type: ignore[attr-defined]
    return concrete()


def test_both_ports_have_the_same_operations():
    assert sorted(SYNC) == sorted(ASYNC)
    assert sorted(SYNC_IMPL) == sorted(ASYNC_IMPL)
    # An adapter of either port writes the same protected methods.
    assert Repository.__abstractmethods__ == AsyncRepository.__abstractmethods__


@pytest.mark.parametrize("name", sorted(SYNC.keys() | SYNC_IMPL.keys()))
def test_an_operation_takes_the_same_parameters_in_both_ports(name: str):
    sync, async_ = {**SYNC, **SYNC_IMPL}[name], {**ASYNC, **ASYNC_IMPL}[name]
    assert parameters(async_) == parameters(sync)


@pytest.mark.parametrize("name", sorted(SYNC))
def test_an_operation_keeps_the_same_old_names_in_both_ports(name: str):
    """A renamed parameter's old name (`port.renamed_keyword`), which the
    signatures do not show, is kept in both or in neither."""
    sync, async_ = SYNC[name], ASYNC[name]
    assert getattr(async_, "__renamed_keywords__", {}) == getattr(sync, "__renamed_keywords__", {})


@pytest.mark.parametrize("name", sorted(SYNC))
def test_an_async_operation_is_a_coroutine_or_an_async_context_manager(name: str):
    sync_repo, async_repo = stub(Repository), stub(AsyncRepository)
    if name == "hold_ready":
        # Neither runs its body until entered: no adapter is called.
        assert isinstance(sync_repo.hold_ready("d", 1), AbstractContextManager)
        assert isinstance(async_repo.hold_ready("d", 1), AbstractAsyncContextManager)
        assert not inspect.iscoroutinefunction(ASYNC[name])
        return
    assert not inspect.iscoroutinefunction(SYNC[name])
    assert inspect.iscoroutinefunction(ASYNC[name])


@pytest.mark.parametrize("name", sorted(SYNC_IMPL))
def test_what_an_async_adapter_writes_is_a_coroutine(name: str):
    if name == "_hold_ready":
        # A context manager in both, not run until entered.
        assert not inspect.iscoroutinefunction(ASYNC_IMPL[name])
        return
    assert not inspect.iscoroutinefunction(SYNC_IMPL[name])
    assert inspect.iscoroutinefunction(ASYNC_IMPL[name])


@pytest.mark.parametrize("name", sorted(SYNC))
def test_both_ports_check_an_operation_in_the_one_place(name: str):
    if name in NO_ARGUMENTS:
        assert list(inspect.signature(SYNC[name]).parameters) == ["self"]
        return
    checked_by = DELEGATES.get(name, name)
    assert callable(getattr(port, f"{checked_by}_args"))
    for method in (SYNC[name], ASYNC[name]):
        source = inspect.getsource(inspect.unwrap(method))
        if name in DELEGATES:
            assert f"self.{checked_by}(" in source
        else:
            assert f"{name}_args(" in source
        assert "check_" not in source.split('"""')[-1]  # no check of its own


@pytest.mark.parametrize("name", sorted(SYNC))
def test_every_operation_keeps_its_docstring(name: str):
    assert inspect.getdoc(SYNC[name])
    assert inspect.getdoc(ASYNC[name])


def test_the_default_hold_and_listen_are_the_same_in_both():
    sync_repo, async_repo = stub(Repository), stub(AsyncRepository)
    assert sync_repo.listen("d") is None
    assert inspect.iscoroutinefunction(async_repo.listen)
    coroutine = async_repo.listen("d")
    with pytest.raises(StopIteration) as stopped:
        coroutine.send(None)
    assert stopped.value.value is None
