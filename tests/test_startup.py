"""Start-up: what the command line and the package import before doing
anything. Not timed (this machine is shared and noisy; benchmarks/startup.py
times it): each test runs a fresh interpreter and lists the modules it
imported, which are what the time goes to."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

import fulltext_jobs
from fulltext_jobs._lazy import IfImported, NotImported, if_imported

#: Runs the command line as `fulltext-jobs` would with the arguments given,
#: then prints the names of the modules imported, one a line, on stderr.
RUN_AND_LIST = """
import sys
sys.argv = ["fulltext-jobs", *sys.argv[1:]]
from fulltext_jobs.cli import main
try:
    main()
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""

#: Never needed to start: the extras' modules, alembic (migrations only),
#: pydantic (typer's, once a value is parsed), the ORM, the PostgreSQL
#: driver and dialect, the worker and the dashboard; and the contract suite
#: (`fulltext_jobs.testing`), which imports pytest, for adapters' tests only.
NEVER_AT_START = (
    "alembic",
    "prometheus_client",
    "starlette",
    "uvicorn",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.postgresql",
    "psycopg",
    "fulltext_jobs.worker",
    "fulltext_jobs.dashboard",
    "fulltext_jobs.cli._demo_app",
    "fulltext_jobs.testing",
    "pytest",
)


def imported(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter holds after the command line ran `args`."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stderr.split())


def found(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """`names` that are in `modules`, themselves or a submodule."""
    return [name for name in names if any(m == name or m.startswith(f"{name}.") for m in modules)]


def test_help_imports_neither_sqlalchemy_nor_pydantic():
    modules = imported("--help")
    assert found(modules, (*NEVER_AT_START, "sqlalchemy", "pydantic")) == []
    assert "typer" in modules  # the list is the command line's, not empty


def test_a_command_help_imports_no_sqlalchemy():
    assert found(imported("work", "--help"), (*NEVER_AT_START, "sqlalchemy")) == []


def test_stats_on_sqlite_imports_sqlalchemy_core_only(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    fulltext_jobs.upgrade(url)
    env = {"PATH": "/usr/bin:/bin", fulltext_jobs.DATABASE_URL_ENV: url}
    modules = imported("stats", env=env)
    assert found(modules, NEVER_AT_START) == []
    assert {"sqlalchemy", "fulltext_jobs.sql.repository"} <= modules


def test_the_package_imports_nothing_costly():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, fulltext_jobs; print(*sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = set(done.stdout.split())
    assert found(modules, (*NEVER_AT_START, "sqlalchemy", "typer", "rich")) == []


# --- the package's names, imported when first used ------------------------------


def type_checking_imports() -> dict[str, str]:
    """Each name the package's `if TYPE_CHECKING:` block imports (what mypy
    sees), and the module it imports it from."""
    tree = ast.parse(Path(fulltext_jobs.__file__).read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    return {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def test_every_public_name_resolves_to_what_mypy_sees():
    seen_by_mypy = type_checking_imports()
    assert sorted(seen_by_mypy) == sorted(fulltext_jobs.__all__)
    for name in fulltext_jobs.__all__:
        value = getattr(fulltext_jobs, name)
        assert value is getattr(importlib.import_module(seen_by_mypy[name]), name), name
    assert fulltext_jobs.SqlAlchemyRepository.__name__ == "SqlAlchemyRepository"
    assert set(fulltext_jobs.__all__) <= set(dir(fulltext_jobs))


def test_star_import_and_from_import_work():
    namespace: dict[str, object] = {}
    exec("from fulltext_jobs import *", namespace)  # noqa: S102 - our own constant code
    assert set(fulltext_jobs.__all__) <= set(namespace)
    from fulltext_jobs import Worker, sql  # noqa: PLC0415 - the import is the test

    assert Worker is fulltext_jobs.Worker
    assert isinstance(sql, types.ModuleType)  # a submodule still imports as one


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Wroker'"):
        _ = fulltext_jobs.Wroker  # type: ignore[attr-defined]
    assert not hasattr(fulltext_jobs, "Wroker")


# --- the stand-ins for classes of modules not imported ---------------------------


@pytest.fixture
def module_of_ours():
    """A module `ftj_startup_probe` with a class `Thing` and an exception
    `Oops`, imported (put in sys.modules) only when the test says so."""
    module = types.ModuleType("ftj_startup_probe")
    exec("class Thing: pass\nclass Oops(Exception): pass", module.__dict__)  # noqa: S102
    yield module
    sys.modules.pop("ftj_startup_probe", None)


def caught(raised: type[Exception], lazy: IfImported) -> bool:
    """Whether `except lazy.Oops` catches a `raised`."""
    try:
        raise raised  # noqa: TRY301 - the raise is the test
    except lazy.Oops:
        return True
    except raised:
        return False


def test_if_imported_is_the_real_class_once_the_module_is_imported(module_of_ours):
    lazy = IfImported("ftj_startup_probe")
    assert lazy.Oops is NotImported
    assert not caught(module_of_ours.Oops, lazy)
    sys.modules["ftj_startup_probe"] = module_of_ours
    assert lazy.Oops is module_of_ours.Oops
    assert caught(module_of_ours.Oops, lazy)


def test_if_imported_class_tests_instances_once_the_module_is_imported(module_of_ours):
    thing_class = if_imported("ftj_startup_probe", "Thing")
    thing = module_of_ours.Thing()
    assert not isinstance(thing, thing_class)  # cannot happen: the module is not imported
    assert not isinstance(object(), thing_class)
    sys.modules["ftj_startup_probe"] = module_of_ours
    assert isinstance(thing, thing_class)
    assert not isinstance(object(), thing_class)
    assert thing_class.__module__ == "ftj_startup_probe"
    assert thing_class.__qualname__ == "Thing"
