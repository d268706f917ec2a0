"""Destinations that follow one another: the declarations
(`fulltext_dependencies`) and the items an upstream job let follow
(`fulltext_unblocked`, written by the triggers of migration 0018).

Which items may get a job whatever the path (`_upstreams_done`) is in
`base.py`, beside the probe of the queued items it joins.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa

from fulltext_jobs.sql.statements.base import StatementsBase


class DependencyStatements(StatementsBase):
    """Declaring dependencies, and taking the items they let follow."""

    @functools.cached_property
    def all_dependencies(self) -> sa.Select[tuple[str, str, str]]:
        """Every declared (destination, upstream, status): a handful of rows,
        read whole, as the check for cycles needs them all."""
        deps = self.tables.dependencies
        return sa.select(deps.c.destination, deps.c.upstream, deps.c.status).order_by(
            deps.c.destination, deps.c.upstream, deps.c.status
        )

    @functools.cached_property
    def lock_dependencies(self) -> sa.TextClause:
        """Make declarations take turns (PostgreSQL; SQLite's writers do
        anyway): two declarations read in parallel could each find no cycle
        and together make one. Plain reads and the triggers' probes are not
        held back by this lock mode."""
        return sa.text("LOCK TABLE jobs.fulltext_dependencies IN SHARE ROW EXCLUSIVE MODE")

    @functools.cached_property
    def insert_dependency(self) -> sa.Insert:
        """Declare that `:dest` follows `:upstream` when its job is `:status`."""
        deps = self.tables.dependencies
        return sa.insert(deps).values(
            destination=sa.bindparam("dest"),
            upstream=sa.bindparam("upstream"),
            status=sa.bindparam("status", type_=deps.c.status.type),
        )

    @functools.cached_property
    def delete_dependencies(self) -> sa.Delete:
        """Drop `:dest`'s dependencies on the upstreams `:upstreams`."""
        deps = self.tables.dependencies
        return sa.delete(deps).where(
            deps.c.destination == sa.bindparam("dest"),
            deps.c.upstream.in_(sa.bindparam("upstreams", expanding=True)),
        )

    @functools.cached_property
    def delete_all_dependencies(self) -> sa.Delete:
        """Drop every dependency of `:dest`."""
        deps = self.tables.dependencies
        return sa.delete(deps).where(deps.c.destination == sa.bindparam("dest"))

    @functools.cached_property
    def drop_unblocked_of(self) -> sa.Delete:
        """Forget the items recorded for `:dest` by the upstreams
        `:upstreams` (it follows them no more)."""
        unblocked = self.tables.unblocked
        return sa.delete(unblocked).where(
            unblocked.c.destination == sa.bindparam("dest"),
            unblocked.c.upstream.in_(sa.bindparam("upstreams", expanding=True)),
        )

    @functools.cached_property
    def drop_all_unblocked(self) -> sa.Delete:
        """Forget every item recorded for `:dest`."""
        unblocked = self.tables.unblocked
        return sa.delete(unblocked).where(unblocked.c.destination == sa.bindparam("dest"))

    @functools.cached_property
    def sweep_next(self) -> sa.Update:
        """Make `:dest`'s producer sweep at its next call: items its
        watermark passed while they waited for an upstream come then."""
        cursor = self.tables.enqueue_cursor
        return (
            sa.update(cursor)
            .where(cursor.c.destination == sa.bindparam("dest"))
            .values(swept_at=None)
        )

    @functools.cached_property
    def take_unblocked(self) -> sa.Select[tuple[str, str]]:
        """Up to `:n` (item id, upstream) rows recorded for `:dest`, in item
        order, from the start of the primary key's range for it: a cost of
        the rows taken, not of the ledger. On PostgreSQL each row taken is
        locked, and rows another producer holds are passed over, so two
        producers of one destination share the rows out."""
        unblocked = self.tables.unblocked
        query = (
            sa.select(unblocked.c.item_id, unblocked.c.upstream)
            .where(unblocked.c.destination == sa.bindparam("dest"))
            .order_by(unblocked.c.item_id, unblocked.c.upstream)
            .limit(sa.bindparam("n"))
        )
        return query.with_for_update(skip_locked=True) if self.postgresql else query

    @functools.cached_property
    def drop_unblocked(self) -> sa.Delete:
        """Delete exactly the rows taken (`:pairs` of item id and upstream):
        a row recorded meanwhile for the same item by another upstream stays,
        for the next producer to judge with that upstream done."""
        unblocked = self.tables.unblocked
        return sa.delete(unblocked).where(
            unblocked.c.destination == sa.bindparam("dest"),
            sa.tuple_(unblocked.c.item_id, unblocked.c.upstream).in_(
                sa.bindparam("pairs", expanding=True)
            ),
        )
