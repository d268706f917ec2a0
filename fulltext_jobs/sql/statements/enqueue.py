"""Making jobs: finding unqueued items, bulk enqueue, and the producer's watermark and sweep."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from fulltext_jobs.domain import JobStatus
from fulltext_jobs.sql.statements.base import ORIGINAL_CREATOR_LOCK, StatementsBase

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql as pg
    from sqlalchemy.dialects import sqlite


class EnqueueStatements(StatementsBase):
    """Making jobs: finding unqueued items, bulk enqueue, and the producer's watermark and sweep."""

    # --- finding unqueued items --------------------------------------------

    @functools.cached_property
    def original_creator_lock(self) -> sa.Select[Any]:
        """Take the advisory lock that the Go original's creators take
        (`common/jobs`, `CreateJobForUnqueued`), until the transaction ends.

        The original searches with `NOT EXISTS` once it holds this lock and
        then inserts; a job of ours committed between its search and its
        insert would be a duplicate-key error on its side. Taking the same
        lock before our search and insert puts our creators in its queue.
        PostgreSQL only (mixed fleets run on adopted databases).
        """
        return sa.select(sa.func.pg_advisory_xact_lock(ORIGINAL_CREATOR_LOCK))

    @functools.cached_property
    def lock_cursor(self) -> sa.Insert:
        """Return the watermark of `:dest` (the largest item id
        `create_job_for_unqueued` has handed out; '' at first), creating it
        if need be, and lock it until the transaction ends.

        An upsert that always updates, so one round trip both creates the row
        and takes its lock: creators of one destination queue up here, one at
        a time, while creators of other destinations pass.
        """
        return self._cursor_row().returning(self.tables.enqueue_cursor.c.item_id)

    def _cursor_row(self) -> pg.Insert | sqlite.Insert:
        """The upsert of `:dest`'s cursor row that creates it if need be and
        otherwise updates it to itself, which locks it."""
        cursor = self.tables.enqueue_cursor
        stmt = self._insert(cursor).values(destination=sa.bindparam("dest"), item_id="")
        return stmt.on_conflict_do_update(
            index_elements=[cursor.c.destination],
            set_={"item_id": cursor.c.item_id},
        )

    @functools.cached_property
    def move_cursor(self) -> sa.Update:
        """Raise the watermark of `:dest` to `:new_item_id` (never lower it)."""
        cursor = self.tables.enqueue_cursor
        return (
            sa.update(cursor)
            .where(
                cursor.c.destination == sa.bindparam("dest"),
                cursor.c.item_id < sa.bindparam("new_item_id"),
            )
            .values(item_id=sa.bindparam("new_item_id"))
        )

    @functools.cached_property
    def find_unqueued_above(self) -> sa.Select[str]:
        """The eligible item with the smallest id above `:after` that has no
        job for `:dest`.

        With `:after` the watermark, an index range scan that starts where
        the last call ended, so its cost does not grow with the number of
        items already queued. Read without locks: the insert that follows
        decides any race (see `insert_if_unqueued`).
        """
        query = self.items.ids().where(self.items.id > sa.bindparam("after"))
        return self._unqueued(query, sa.bindparam("dest")).order_by(self.items.id).limit(1)

    @functools.cached_property
    def find_unqueued(self) -> sa.Select[str]:
        """The eligible item with the smallest id that has no job for
        `:dest`: a scan from the start."""
        query = self._unqueued(self.items.ids(), sa.bindparam("dest"))
        return query.order_by(self.items.id).limit(1)

    @functools.cached_property
    def insert_if_unqueued(self) -> sa.Insert:
        """Insert a ready job (`:new_id`, `:new_item_id`, `:dest`, of
        priority `:priority`), ready from `:now`, unless its (item,
        destination) pair has one.

        Why this is safe under concurrency: two callers may pick the same
        item (the search takes no locks); the unique constraint lets one
        insert win, and `ON CONFLICT DO NOTHING` turns the other's insert into
        no row rather than a duplicate-key error. On PostgreSQL the loser
        waits for the winner's transaction to end first, so its next search,
        with a new snapshot, sees the winner's job. The statement returns the
        new job's id, or nothing when the race was lost.
        """
        ft = self.tables.fulltext
        stmt = self._insert(ft).values(
            id=sa.bindparam("new_id", type_=sa.Uuid),
            item_id=sa.bindparam("new_item_id"),
            destination=sa.bindparam("dest"),
            status=JobStatus.READY.value,
            priority=sa.bindparam("priority", type_=ft.c.priority.type),
            ready_at=sa.bindparam("now", type_=ft.c.ready_at.type),
        )
        return stmt.on_conflict_do_nothing(
            index_elements=[ft.c.item_id, ft.c.destination]
        ).returning(ft.c.id)

    # --- bulk enqueue --------------------------------------------------------

    def batch_upper_bound(self, after: str | None, size: int) -> sa.Select[str]:
        """The id that ends the next keyset batch of `size` eligible items
        after `after`, or no row if fewer remain (the last batch is open)."""
        query = self.items.ids()
        if after is not None:
            query = query.where(self.items.id > after)
        return query.order_by(self.items.id).offset(size - 1).limit(1)

    def any_queued(self, destination: str, after: str | None, upper: str | None) -> sa.Select[bool]:
        """Whether any item with an id in (after, upper] has a job for
        `destination`: a range scan of the unique (item_id, destination)
        index that stops at the first hit."""
        ft = self.tables.fulltext
        query = sa.select(ft.c.item_id).where(ft.c.destination == destination)
        if after is not None:
            query = query.where(ft.c.item_id > after)
        if upper is not None:
            query = query.where(ft.c.item_id <= upper)
        return sa.select(query.exists())

    def enqueue_batch(  # noqa: PLR0913 - the parts of one statement
        self,
        destination: str,
        after: str | int | None,
        upper: str | int | None,
        limit: int | None,
        *,
        skip_queued: bool,
        key: ColumnElement[Any] | None = None,
        priority: int = 0,
        among: bool = False,
    ) -> sa.Insert:
        """Queue the unqueued eligible items with ids in (after, upper], at
        most `limit` of them, smallest ids first, as jobs of `priority`,
        ready from `:now`; with `among`, only those among the ids
        `:item_ids` (a probe of the item source's id each).

        `INSERT ... SELECT ... ON CONFLICT DO NOTHING`. With `skip_queued` the
        SELECT passes over items already queued (one index probe each, see
        `_unqueued`); without it (when `any_queued` found none in the range)
        the conflict clause alone does, which is cheaper when there is
        nothing to pass over. Either way the conflict clause turns an item
        that another caller queues meanwhile into no row, so concurrent
        callers never collide. Jobs get `seq` in id order.

        `key` (default: the item id) is the column the range is over: the
        producer's `producer_key` for new items. Within a batch, jobs get
        `seq` in id order whatever the key, as the in-memory store does.
        """
        ft = self.tables.fulltext
        item_id = self.items.id
        key = item_id if key is None else key
        query = sa.select(
            self._new_uuid(),
            item_id,
            sa.literal(destination, sa.Text),
            sa.literal(JobStatus.READY.value, ft.c.status.type),
            sa.literal(priority, ft.c.priority.type),
            sa.bindparam("now", type_=ft.c.ready_at.type),
        ).select_from(self.items.from_clause)
        if self.items.eligible is not None:
            query = query.where(self.items.eligible)
        if after is not None:
            query = query.where(key > after)
        if upper is not None:
            query = query.where(key <= upper)
        if among:
            query = query.where(item_id.in_(sa.bindparam("item_ids", expanding=True)))
        # Without the probe of the jobs, the upstreams' still: an item with
        # upstreams not done gets no job, queued or not.
        query = (
            self._unqueued(query, destination)
            if skip_queued
            else query.where(self._upstreams_done(destination))
        )
        query = query.order_by(item_id)
        if limit is not None:
            query = query.limit(limit)
        stmt = self._insert(ft).from_select(
            [ft.c.id, ft.c.item_id, ft.c.destination, ft.c.status, ft.c.priority, ft.c.ready_at],
            query,
        )
        # SQLAlchemy reports an INSERT's rowcount only when asked to keep it.
        return stmt.on_conflict_do_nothing(
            index_elements=[ft.c.item_id, ft.c.destination]
        ).execution_options(preserve_rowcount=True)

    # --- the producer: new items past a watermark, and a periodic sweep -------

    def producer_key(self, *, sequenced: bool) -> ColumnElement[Any]:
        """The column the producer's watermark is over: with `sequenced`
        (the default items table, not a view of an adopted database's), the
        items' insertion order (`seq` on PostgreSQL, the rowid on SQLite),
        which every new item passes whatever its id; otherwise the item id,
        which finds new items whose ids sort above every id seen before
        (the others wait for the sweep)."""
        if not sequenced:
            return self.items.id
        items = self.tables.items
        if self.postgresql:
            return items.c.seq
        return sa.literal_column(f"{items.name}.rowid", sa.Integer)

    @functools.cached_property
    def lock_producer(self) -> sa.Insert:
        """Return the producer's state for `:dest` (the item id watermark,
        the insertion-order watermark, when the last full sweep began),
        creating the row if need be, and lock it until the transaction ends:
        the row of `lock_cursor`, so producers and creators of one
        destination take turns."""
        cursor = self.tables.enqueue_cursor
        return self._cursor_row().returning(cursor.c.item_id, cursor.c.item_seq, cursor.c.swept_at)

    def new_items(
        self, key: ColumnElement[Any], after: str | int, size: int
    ) -> sa.Select[Any, int]:
        """The largest key among the first `size` eligible items past
        `after` in `key` order, and how many there are (size: maybe more
        follow). With nothing new, one probe of the key's index: the idle
        producer's whole cost."""
        batch = (
            self.items.ids()
            .add_columns(key.label("k"))
            .where(key > after)
            .order_by(key)
            .limit(size)
            .subquery("batch")
        )
        return sa.select(sa.func.max(batch.c.k), sa.func.count()).select_from(batch)

    def top_key(self, key: ColumnElement[Any]) -> sa.Select[Any]:
        """The largest key of any item: where a sweep leaves the watermark."""
        return sa.select(sa.func.max(key)).select_from(self.items.from_clause)

    def move_producer(self, *, sequenced: bool, swept: bool) -> sa.Update:
        """Raise the producer's watermark of `:dest` to `:upper` (never
        lower it); with `swept`, also record `:now` as the start of the last
        full sweep."""
        cursor = self.tables.enqueue_cursor
        column = cursor.c.item_seq if sequenced else cursor.c.item_id
        upper = sa.bindparam("upper", type_=column.type)
        values: dict[str, Any] = {
            column.name: sa.case((sa.or_(column.is_(None), column < upper), upper), else_=column)
        }
        if swept:
            values["swept_at"] = sa.bindparam("now", type_=cursor.c.swept_at.type)
        return sa.update(cursor).where(cursor.c.destination == sa.bindparam("dest")).values(values)
