"""The ground every part of the statements stands on."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from fulltext_jobs.sql.items import ItemSource
from fulltext_jobs.sql.schema import Tables

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql as pg
    from sqlalchemy.dialects import sqlite

#: The key of the Go original's creator lock: `pg_advisory_xact_lock(10)`.
ORIGINAL_CREATOR_LOCK: Final = 10


class StatementsBase:
    """What every part of `Statements` shares: the tables, the item source,
    the dialect, and the job's columns."""

    def __init__(self, tables: Tables, items: ItemSource, dialect_name: str) -> None:
        self.tables = tables
        self.items = items
        self.postgresql = dialect_name == "postgresql"
        ft = tables.fulltext.c
        self.job_columns = (
            *(ft.id, ft.item_id, ft.destination, ft.started, ft.finished, ft.status),
            *(ft.attempts, ft.claim_token, ft.lease_expires, ft.last_error, ft.not_before),
            ft.backoffs,
            ft.priority,
            ft.ready_at,
            ft.version,
        )
        #: The columns a save writes, besides `id` and `version`.
        self.saved_columns = self.job_columns[1:-1]

    def _insert(self, table: sa.Table) -> pg.Insert | sqlite.Insert:
        # Imported here, once per statement (each is built once): a command on
        # SQLite need not import PostgreSQL's dialect, nor one on PostgreSQL
        # SQLite's.
        if self.postgresql:
            from sqlalchemy.dialects import postgresql  # noqa: PLC0415

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite  # noqa: PLC0415

        return sqlite.insert(table)

    # --- pieces more than one part builds on ---------------------------------

    def _unqueued(
        self, query: sa.Select[Any], destination: str | sa.BindParameter[str]
    ) -> sa.Select[Any]:
        """Keep the rows of `query` (over the item source) whose item has no
        job for `destination` and may follow its upstreams (`_upstreams_done`).

        On PostgreSQL the test is a LATERAL subquery with LIMIT 1, which
        forces one index probe per item; a plain NOT EXISTS lets the planner
        choose an anti join that reads every job of the destination, again
        for each batch. SQLite always runs a correlated NOT EXISTS as an index
        probe.
        """
        ft = self.tables.fulltext
        if not self.postgresql:
            queued = sa.exists().where(
                ft.c.item_id == self.items.id, ft.c.destination == destination
            )
            return query.where(~queued, self._upstreams_done(destination))
        probe = (
            sa.select(sa.literal(1).label("found"))
            .where(ft.c.item_id == self.items.id, ft.c.destination == destination)
            .limit(1)
            .lateral("queued")
        )
        return query.outerjoin(probe, sa.true()).where(
            probe.c.found.is_(None), self._upstreams_done(destination)
        )

    def _upstreams_done(self, destination: str | sa.BindParameter[str]) -> sa.ColumnElement[bool]:
        """True for an item of the item source whose job of every upstream
        of `destination` has a status its dependency names (see
        `fulltext_jobs.pipeline`): no declared dependency of the destination
        is unmet.

        Read from the dependencies in the statement itself, so a producer
        always judges by the declarations as committed. A destination with
        none pays one probe of an index of the dependencies per item (an
        empty one where nothing is declared); one with upstreams, besides,
        a probe of the unique (item_id, destination) index per upstream.
        """
        ft = self.tables.fulltext
        declared = self.tables.dependencies.alias("declared")
        named = self.tables.dependencies.alias("named")
        upstream_job = ft.alias("upstream_job")
        # Each subquery names the one table it reads; the others are the
        # enclosing queries' rows.
        named_status = (
            sa.exists()
            .where(
                named.c.destination == declared.c.destination,
                named.c.upstream == declared.c.upstream,
                named.c.status == upstream_job.c.status,
            )
            .correlate_except(named)
        )
        done = (
            sa.exists()
            .where(
                upstream_job.c.item_id == self.items.id,
                upstream_job.c.destination == declared.c.upstream,
                named_status,
            )
            .correlate_except(upstream_job)
        )
        unmet = (
            sa.exists()
            .where(declared.c.destination == destination, ~done)
            .correlate_except(declared)
        )
        return ~unmet

    def _new_uuid(self) -> ColumnElement[uuid.UUID]:
        """A random (version 4) UUID made by the database, in the form the
        `Uuid` column stores: native on PostgreSQL, 32 hex digits on SQLite."""
        if self.postgresql:
            return sa.func.gen_random_uuid(type_=sa.Uuid)
        hex_of = "lower(hex(randomblob({})))"
        return sa.literal_column(
            f"{hex_of.format(4)} || {hex_of.format(2)} || '4' || substr({hex_of.format(2)}, 2)"
            " || substr('89ab', 1 + (abs(random()) % 4), 1)"
            f" || substr({hex_of.format(2)}, 2) || {hex_of.format(6)}",
            type_=sa.Uuid,
        )
