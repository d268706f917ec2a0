"""Read models of the ledger for an app's ORM, and its alembic side by side
with the library's.

`FullTextRecord` and `ItemRecord` are declarative classes mapped onto the
very `Table` objects the SQL adapter uses (`fulltext_jobs.sql.schema`): one
declaration of the schema, queried in the app's own `Session` on PostgreSQL
and SQLite alike. They are for reading and reporting (joins with the app's
tables, "items without a finished job", a list of failures). Writes go
through the repository, which keeps the state machine, the claim tokens and
the compare-and-swap rules; a record changed and flushed through a Session
would bypass them all.

The classes map the PostgreSQL form of the tables (schema `jobs`). SQLite
has no schemas: engines set up by `fulltext_jobs.create_engine` or
`configure_sqlite` translate `jobs` away (`schema_translate_map`), so the
same classes read a SQLite ledger too.

`include_object` and `include_name` keep an app's alembic autogenerate away
from the library's tables, indexes, schema and version table: the library's
schema comes from its own migrations, with its own version table.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped

from fulltext_jobs.domain import FullText
from fulltext_jobs.sql.rows import to_job
from fulltext_jobs.sql.schema import JOBS_SCHEMA, VERSION_TABLE, WINDOW_TABLE, tables_for

__all__ = ["FullTextRecord", "ItemRecord", "LedgerBase", "include_name", "include_object"]

_TABLES = tables_for("postgresql")


class LedgerBase(DeclarativeBase):
    """The declarative base of the read models: a registry of its own, so
    that the app's metadata (and its `create_all`) never holds our tables."""

    metadata = _TABLES.metadata


class FullTextRecord(LedgerBase):
    """A row of the jobs table (`jobs.fulltext`), read through the app's
    Session. Read-only by convention: save jobs with the repository."""

    __table__ = _TABLES.fulltext

    id: Mapped[Any]
    item_id: Mapped[str]
    destination: Mapped[str]
    started: Mapped[datetime | None]
    finished: Mapped[datetime | None]
    status: Mapped[str]
    attempts: Mapped[int]
    claim_token: Mapped[Any]
    lease_expires: Mapped[datetime | None]
    last_error: Mapped[str | None]
    version: Mapped[int]
    not_before: Mapped[datetime | None]
    backoffs: Mapped[int]
    priority: Mapped[int]
    ready_at: Mapped[datetime | None]

    def to_entity(self) -> FullText:
        """The domain `FullText` this row holds, as `get_fulltext` returns
        it (a copy: changing it changes nothing until the repository saves
        it)."""
        return to_job(self)

    def __repr__(self) -> str:
        return f"<FullTextRecord {self.id} {self.item_id!r} {self.destination!r} {self.status}>"


class ItemRecord(LedgerBase):
    """A row of the library's default items table (`jobs.fulltext_items`)."""

    __table__ = _TABLES.items

    id: Mapped[str]

    def __repr__(self) -> str:
        return f"<ItemRecord {self.id!r}>"


#: The library's tables in the default schema: SQLite's, and beside them on
#: PostgreSQL the version and window tables. On PostgreSQL everything else
#: of the library is in the schema `jobs`.
_DEFAULT_SCHEMA_TABLES = frozenset(
    {*tables_for("sqlite").metadata.tables, VERSION_TABLE, WINDOW_TABLE}
)


def _is_library_table(name: str | None, schema: str | None) -> bool:
    return schema == JOBS_SCHEMA or (schema is None and name in _DEFAULT_SCHEMA_TABLES)


def include_name(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """For an app's `env.py`: `context.configure(include_name=include_name)`
    leaves the library's schema (`jobs`, with `include_schemas=True`) and its
    tables in the default schema out of reflection. Everything else is the
    app's."""
    if type_ == "schema":
        return name != JOBS_SCHEMA
    if type_ == "table":
        return not _is_library_table(name, parent_names.get("schema_name"))
    return True


def include_object(
    obj: Any,  # noqa: ANN401 - alembic's hook: any schema object
    name: str | None,  # noqa: ARG001 - alembic's signature
    type_: str,
    reflected: bool,  # noqa: ARG001, FBT001 - alembic's signature
    compare_to: Any,  # noqa: ANN401, ARG001 - alembic's signature
) -> bool:
    """For an app's `env.py`: `context.configure(include_object=include_object)`
    keeps autogenerate from proposing to drop or change the library's
    tables, their columns, indexes and constraints, its version table and
    its compatibility window, on PostgreSQL and SQLite. Everything else is
    the app's (an app table of the same name as one of the library's, in
    the same schema, would be skipped too: name yours otherwise)."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    if not isinstance(table, sa.Table):
        return True
    return not _is_library_table(table.name, table.schema)
