"""The import rule of docs/architecture.md, read from the source: the
database libraries are imported only by the modules that talk to a
database, and the inner layers (the domain, the checks, the port, the
in-memory adapter, the worker, the contract suite) import none of those
modules, so they run, and are understood, without SQL.

Every import counts, those made inside functions or for type checkers too:
the rule is about what a module depends on, not when it loads.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fulltext_jobs"

#: The libraries that talk to a database, or migrate one.
DATABASE_LIBRARIES = frozenset({"sqlalchemy", "psycopg", "psycopg_pool", "alembic", "aiosqlite"})

#: The modules that may import them: the SQL adapter and what it is built
#: from, the migrations, the ORM read models, and the edges (the command
#: line, the dashboard and its read model, the demo).
DATABASE_MODULES = frozenset(
    {
        "fulltext_jobs.sql",
        "fulltext_jobs.sql_async",
        "fulltext_jobs.statements",
        "fulltext_jobs.engine",
        "fulltext_jobs.schema",
        "fulltext_jobs.schema_audit",
        "fulltext_jobs.notifications",
        "fulltext_jobs.migrate",
        "fulltext_jobs.orm",
        "fulltext_jobs.overview",
        "fulltext_jobs.dashboard",
        "fulltext_jobs.demo",
    }
)

#: The inner layers: none of them may import a database library or a
#: module of `DATABASE_MODULES`.
INNER = (
    "fulltext_jobs.domain",
    "fulltext_jobs.checks",
    "fulltext_jobs.errors",
    "fulltext_jobs.port",
    "fulltext_jobs.repository",
    "fulltext_jobs.repository_async",
    "fulltext_jobs.memory",
    "fulltext_jobs.retry",
    "fulltext_jobs.rate_limit",
    "fulltext_jobs.audit",
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
def test_only_the_database_modules_import_a_database_library(name: str):
    if within(name, DATABASE_MODULES) or within(name, ("fulltext_jobs.cli",)):
        return
    used = {
        imported
        for imported in imports_of(MODULES[name])
        if imported.split(".")[0] in DATABASE_LIBRARIES
    }
    assert used == set(), f"{name} imports {sorted(used)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if within(n, INNER)))
def test_the_inner_layers_import_no_database_module(name: str):
    used = {
        imported for imported in imports_of(MODULES[name]) if within(imported, DATABASE_MODULES)
    }
    assert used == set(), f"{name} imports {sorted(used)}"


def test_the_rule_names_only_modules_that_exist():
    """A module renamed or moved must take its place in the rule with it."""
    assert MODULES.keys() >= DATABASE_MODULES
    assert all(any(within(module, (root,)) for module in MODULES) for root in INNER)
