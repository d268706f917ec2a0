"""The import rule of docs/architecture.md, read from the source: nothing
outside `fulltext_jobs/sql/`, the command line (`fulltext_jobs/cli/`) and the
web dashboard imports SQLAlchemy, psycopg or alembic; and the inner layers
(the domain, the checks, the port, the in-memory adapter, the worker, the
contract suite) import none of those three, so they run, and are understood,
without SQL.

Every import counts, those made inside functions or for type checkers too:
the rule is about what a module depends on, not when it loads.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fulltext_jobs"

#: The libraries that talk to a database, or migrate one.
DATABASE_LIBRARIES = frozenset({"sqlalchemy", "psycopg", "psycopg_pool", "alembic", "aiosqlite"})

#: Where they may be imported: the SQL adapter's package, and the two edges
#: that build engines and print what they read.
DATABASE_ROOTS = ("fulltext_jobs.sql", "fulltext_jobs.cli", "fulltext_jobs.dashboard")

#: Import paths kept for code written against 0.1.0, each re-exporting
#: names from `fulltext_jobs.sql`; and the package's `__init__`, which
#: imports each public name from its home when it is first used.
KEPT_PATHS = frozenset(
    {
        "fulltext_jobs",
        "fulltext_jobs.engine",
        "fulltext_jobs.schema",
        "fulltext_jobs.orm",
        "fulltext_jobs.sql_async",
        "fulltext_jobs.statements",
    }
)

#: Modules beside the edges that read what the SQL package makes: the
#: metrics' ledger gauges report the dashboard's overview.
READERS = frozenset({"fulltext_jobs.metrics"})

#: The inner layers: none of them may import a database library or a
#: module of `DATABASE_ROOTS`.
INNER = (
    "fulltext_jobs.domain",
    "fulltext_jobs.pipeline",
    "fulltext_jobs.checks",
    "fulltext_jobs.errors",
    "fulltext_jobs.port",
    "fulltext_jobs.repository",
    "fulltext_jobs.repository_async",
    "fulltext_jobs.memory",
    "fulltext_jobs.retry",
    "fulltext_jobs.rate_limit",
    "fulltext_jobs.audit",
    "fulltext_jobs.health",
    "fulltext_jobs.logs",
    "fulltext_jobs.worker",
    "fulltext_jobs.testing",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, by absolute name (relative imports are
    not used in this package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {
    module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "_migrations" not in path.parts
}


def within(name: str, roots: frozenset[str] | tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(f"{root}.") for root in roots)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_nothing_outside_sql_cli_and_dashboard_imports_a_database_library(name: str):
    if within(name, DATABASE_ROOTS):
        return
    used = {
        imported
        for imported in imports_of(MODULES[name])
        if imported.split(".")[0] in DATABASE_LIBRARIES
    }
    assert used == set(), f"{name} imports {sorted(used)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_the_edges_and_kept_paths_import_the_sql_package(name: str):
    if within(name, DATABASE_ROOTS) or name in KEPT_PATHS | READERS:
        return
    used = {
        imported
        for imported in imports_of(MODULES[name])
        if within(imported, ("fulltext_jobs.sql",))
    }
    assert used == set(), f"{name} imports {sorted(used)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if within(n, INNER)))
def test_the_inner_layers_import_no_database_module(name: str):
    used = {
        imported
        for imported in imports_of(MODULES[name])
        if within(imported, DATABASE_ROOTS) or imported.split(".")[0] in DATABASE_LIBRARIES
    }
    assert used == set(), f"{name} imports {sorted(used)}"


def test_the_rule_names_only_modules_that_exist():
    """A module renamed or moved must take its place in the rule with it."""
    assert MODULES.keys() >= KEPT_PATHS | READERS | set(DATABASE_ROOTS)
    assert all(any(within(module, (root,)) for module in MODULES) for root in INNER)


#: Names code written against 0.1.0 imports from the kept paths, each with
#: the home it now lives in.
OLD_IMPORTS = {
    ("fulltext_jobs.sql", "SqlAlchemyRepository"): "fulltext_jobs.sql.repository",
    ("fulltext_jobs.sql", "ItemSource"): "fulltext_jobs.sql.items",
    ("fulltext_jobs.sql", "UPGRADE_ADVICE"): "fulltext_jobs.sql.migrate",
    ("fulltext_jobs.sql_async", "AsyncSqlAlchemyRepository"): "fulltext_jobs.sql.repository_async",
    ("fulltext_jobs.engine", "create_engine"): "fulltext_jobs.sql.engine",
    ("fulltext_jobs.engine", "store_error"): "fulltext_jobs.sql.errors",
    ("fulltext_jobs.engine", "is_retryable"): "fulltext_jobs.sql.errors",
    ("fulltext_jobs.schema", "tables_for"): "fulltext_jobs.sql.schema",
    ("fulltext_jobs.orm", "include_object"): "fulltext_jobs.sql.orm",
    ("fulltext_jobs.orm", "FullTextRecord"): "fulltext_jobs.sql.orm",
    ("fulltext_jobs.statements", "Statements"): "fulltext_jobs.sql.statements",
    ("fulltext_jobs.statements", "ItemSource"): "fulltext_jobs.sql.items",
    ("fulltext_jobs.statements", "compile_for_driver"): "fulltext_jobs.sql.compiled",
    ("fulltext_jobs.statements", "to_job"): "fulltext_jobs.sql.rows",
}


@pytest.mark.parametrize(("old", "home"), sorted(OLD_IMPORTS.items()))
def test_an_import_path_of_0_1_0_gives_the_name_from_its_new_home(
    old: tuple[str, str], home: str
) -> None:
    module, name = old
    assert getattr(importlib.import_module(module), name) is getattr(
        importlib.import_module(home), name
    )
    assert name in importlib.import_module(module).__all__
