"""`ItemSource`: which items exist and which are eligible for jobs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from fulltext_jobs.errors import InvalidInput


class ItemSource:
    """Where the items come from, and which of them are eligible for jobs.

    `source` is a table, an ORM-mapped class, or a select of one id column.
    `id_column` names the id column of a table or mapped class. `eligible`,
    if given, is a boolean SQL expression over the source's columns (for
    example `Item.api.is_not(None)`); only items for which it is true get
    jobs.
    """

    def __init__(
        self,
        source: sa.FromClause | sa.Select[Any] | type[Any],
        *,
        id_column: str = "id",
        eligible: ColumnElement[bool] | None = None,
    ) -> None:
        from_clause: sa.FromClause
        if isinstance(source, sa.Select):
            from_clause = source.subquery("items")
            columns = list(from_clause.c)
            if len(columns) != 1:
                msg = f"an item select must have one column (the id), not {len(columns)}"
                raise InvalidInput(msg)
            self.id: ColumnElement[str] = columns[0]
        else:
            from_clause = source if isinstance(source, sa.FromClause) else _mapped_table(source)
            if id_column not in from_clause.c:
                msg = f"{from_clause} has no column {id_column!r}"
                raise InvalidInput(msg)
            self.id = from_clause.c[id_column]
        self.from_clause = from_clause
        self.eligible = eligible

    def ids(self) -> sa.Select[str]:
        """A select of the eligible items' ids."""
        stmt = sa.select(self.id).select_from(self.from_clause)
        if self.eligible is not None:
            stmt = stmt.where(self.eligible)
        return stmt


def _mapped_table(cls: type[Any]) -> sa.FromClause:
    try:
        mapper = sa.inspect(cls)
    except sa.exc.NoInspectionAvailable:
        mapper = None
    table = getattr(mapper, "local_table", None)
    if not isinstance(table, sa.FromClause):
        msg = f"{cls!r} is not a table, a mapped class or a select"
        raise InvalidInput(msg)
    return table
