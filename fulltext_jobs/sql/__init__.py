"""The SQLAlchemy adapter, PostgreSQL (psycopg 3) and SQLite, and everything
that talks to those databases: the only part of the package that imports
SQLAlchemy, psycopg or alembic (tests/test_layers.py holds the rule).

`SqlAlchemyRepository` (`repository.py`) and `AsyncSqlAlchemyRepository`
(`repository_async.py`) are the port on SQLAlchemy; the SQL they run is in
`statements/`; `errors.py` is where every driver error becomes one of the
port's. docs/architecture.md maps the rest.

`fulltext_jobs.sql.SqlAlchemyRepository`, `.ItemSource` and
`.UPGRADE_ADVICE` stay importable from here, each loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fulltext_jobs.sql.items import ItemSource
    from fulltext_jobs.sql.migrate import UPGRADE_ADVICE
    from fulltext_jobs.sql.repository import SqlAlchemyRepository

__all__ = ["UPGRADE_ADVICE", "ItemSource", "SqlAlchemyRepository"]

_HOMES = {
    "ItemSource": "fulltext_jobs.sql.items",
    "UPGRADE_ADVICE": "fulltext_jobs.sql.migrate",
    "SqlAlchemyRepository": "fulltext_jobs.sql.repository",
}


def __getattr__(name: str) -> object:
    # Loaded on first use, so that importing one module of this package
    # (the engine, the schema) does not import the adapter and its SQL.
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(home), name)
