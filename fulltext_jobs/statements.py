"""The SQL that matters, in one place: every statement the SQLAlchemy
adapter runs, each with a comment on why it is correct under concurrency
and what keeps its cost flat.

`Statements` binds the declared tables, the item source and the dialect, so
each statement reads as SQL with no plumbing around it. The statements of a
fixed shape are built once, with named parameters (`:dest`, `:now`,
...), because building a statement costs more Python time than running a
claim costs the server.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

from fulltext_jobs.audit import AUDIT_TERMINAL, UNLEASED_ERROR, AuditCheck
from fulltext_jobs.domain import RESCUED_ERROR, FullText, JobStatus
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.rate_limit import TOLERANCE_SECONDS
from fulltext_jobs.schema import Tables

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql as pg
    from sqlalchemy.dialects import sqlite

__all__ = [
    "ORIGINAL_CREATOR_LOCK",
    "ItemSource",
    "Statements",
    "compile_for_driver",
    "job_arrays",
    "job_from_values",
    "job_row",
    "to_job",
]


#: The key of the Go original's creator lock: `pg_advisory_xact_lock(10)`.
ORIGINAL_CREATOR_LOCK: Final = 10


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


def compile_for_driver(
    statement: sa.ClauseElement, dialect: Dialect, column_keys: Sequence[str] = ()
) -> tuple[str, dict[str, Any]]:
    """The SQL of `statement` as `dialect`'s driver takes it, and the values
    of the parameters the statement fixes itself (LIMIT 1, ...); the caller
    supplies the others by name."""
    compiled = cast(
        "SQLCompiler", statement.compile(dialect=dialect, column_keys=list(column_keys))
    )
    fixed = {
        compiled.bind_names[bind]: bind.effective_value
        for bind in compiled.binds.values()
        if not bind.required
    }
    return str(compiled), fixed


def job_from_values(values: tuple[Any, ...]) -> FullText:
    """The job in a raw driver row of `Statements.job_columns` (timestamps
    aware, in any zone)."""
    (job_id, item_id, destination, started, finished, status, attempts, token, lease, error) = (
        values[:10]
    )
    return FullText(
        id=job_id,
        item_id=item_id,
        destination=destination,
        started=None if started is None else started.astimezone(UTC),
        finished=None if finished is None else finished.astimezone(UTC),
        status=JobStatus(status),
        attempts=attempts,
        claim_token=token,
        lease_expires=None if lease is None else lease.astimezone(UTC),
        last_error=error,
        not_before=None if values[10] is None else values[10].astimezone(UTC),
        version=values[11],
    )


def held_from_values(values: tuple[Any, ...], now: datetime) -> FullText:
    """The ready job in a raw driver row of `Statements.hold_ready` as
    `hold_ready` hands it out (see `fulltext_jobs.port.hold_copy`):
    `running` from `now`, its attempt counted, no token, lease or delay,
    at its stored version. Built in one step: a batch builds a hundred."""
    return FullText(
        values[0],
        values[1],
        values[2],
        now,
        None,
        JobStatus.RUNNING,
        values[6] + 1,
        None,
        None,
        values[9],
        values[11],
        None,
    )


def to_job(row: Any) -> FullText:  # noqa: ANN401 - a Row, or any object with the columns
    """The job in a row selected or returned with `Statements.job_columns`,
    or in anything else with the job table's columns as attributes (the read
    model `fulltext_jobs.orm.FullTextRecord`)."""
    return FullText(
        id=row.id,
        item_id=row.item_id,
        destination=row.destination,
        started=row.started,
        finished=row.finished,
        status=JobStatus(row.status),
        attempts=row.attempts,
        claim_token=row.claim_token,
        lease_expires=row.lease_expires,
        last_error=row.last_error,
        version=row.version,
        not_before=row.not_before,
    )


def job_row(job: FullText) -> dict[str, Any]:
    """The job's columns as the store keeps them (see `stored_form`: only a
    running job holds a claim token and a lease), with the id again
    (`job_id`), the version the copy was read at (`read_version`) and its
    claim token (`claim`): the
    parameters of `insert_job` and `update_job`."""
    running = job.status is JobStatus.RUNNING
    return {
        "job_id": job.id,
        "read_version": job.version,
        "claim": job.claim_token,
        "id": job.id,
        "item_id": job.item_id,
        "destination": job.destination,
        "started": job.started,
        "finished": job.finished,
        "status": job.status.value,
        "attempts": job.attempts,
        "claim_token": job.claim_token if running else None,
        "lease_expires": job.lease_expires if running else None,
        "last_error": job.last_error,
        "not_before": job.not_before,
    }


def job_arrays(jobs: Sequence[FullText]) -> dict[str, list[Any]]:
    """The parameters of `Statements.update_jobs`: `job_row`'s, one list
    per column, in the order of `jobs`."""
    running = [job.status is JobStatus.RUNNING for job in jobs]
    return {
        "job_id": [job.id for job in jobs],
        "read_version": [job.version for job in jobs],
        "claim": [job.claim_token for job in jobs],
        "item_id": [job.item_id for job in jobs],
        "destination": [job.destination for job in jobs],
        "started": [job.started for job in jobs],
        "finished": [job.finished for job in jobs],
        "status": [job.status.value for job in jobs],
        "attempts": [job.attempts for job in jobs],
        "claim_token": [
            job.claim_token if held else None for job, held in zip(jobs, running, strict=True)
        ],
        "lease_expires": [
            job.lease_expires if held else None for job, held in zip(jobs, running, strict=True)
        ],
        "last_error": [job.last_error for job in jobs],
        "not_before": [job.not_before for job in jobs],
    }


def held_arrays(jobs: Sequence[FullText]) -> dict[str, list[Any]]:
    """The parameters of `Statements.write_held`, one list per column."""
    return {
        "job_id": [job.id for job in jobs],
        "read_version": [job.version for job in jobs],
        "status": [job.status.value for job in jobs],
        "started": [job.started for job in jobs],
        "finished": [job.finished for job in jobs],
        "attempts": [job.attempts for job in jobs],
        "last_error": [job.last_error for job in jobs],
        "not_before": [job.not_before for job in jobs],
    }


class Statements:
    """The adapter's statements for one set of tables, item source and dialect."""

    def __init__(self, tables: Tables, items: ItemSource, dialect_name: str) -> None:
        self.tables = tables
        self.items = items
        self.postgresql = dialect_name == "postgresql"
        ft = tables.fulltext.c
        self.job_columns = (
            *(ft.id, ft.item_id, ft.destination, ft.started, ft.finished, ft.status),
            *(ft.attempts, ft.claim_token, ft.lease_expires, ft.last_error, ft.not_before),
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

    # --- items and single jobs ---------------------------------------------

    def add_items(self) -> sa.Insert:
        """Insert item ids (executed with many rows), skipping those already
        there; returns the ids that were new."""
        items = self.tables.items
        return (
            self._insert(items)
            .on_conflict_do_nothing(index_elements=[items.c.id])
            .returning(items.c.id)
        )

    @functools.cached_property
    def select_job(self) -> sa.Select[Any]:
        """The job with id `:id`."""
        return sa.select(*self.job_columns).where(self.tables.fulltext.c.id == sa.bindparam("id"))

    @functools.cached_property
    def insert_job(self) -> sa.Insert:
        """Insert a job never stored before (its copy's version is 0) at
        version 1; the columns are given as parameters (see `job_row`).
        Returns the id, or no row if a job with this id exists already: a
        copy that was never read from the store must not replace what is
        there (`StaleJob`). A clash on (item_id, destination) with another id
        raises an integrity error.
        """
        ft = self.tables.fulltext
        values = {c.name: sa.bindparam(c.name, type_=c.type) for c in self.saved_columns}
        stmt = self._insert(ft).values(
            {"id": sa.bindparam("id", type_=sa.Uuid), **values, "version": 1}
        )
        return stmt.on_conflict_do_nothing(index_elements=[ft.c.id]).returning(ft.c.id)

    @functools.cached_property
    def update_job(self) -> sa.Update:
        """Replace job `:job_id` with the given columns (see `job_row`) if it is
        still at version `:read_version` under claim token `:claim` (both
        none counts): the compare-and-swap of a save. Returns the new
        version, or no row when the stored job has changed since the copy
        was read (or is gone) and nothing was written.

        The check sits in the UPDATE's own WHERE, so it is judged against
        the row as it is when the update happens, with the row locked: a
        save, claim, rescue or retry that committed a moment before bumped
        the version, and the stale copy cannot write. A clash on
        (item_id, destination) with another job raises an integrity error.
        `seq` is left alone, so a saved job keeps its place in the queue.
        """
        ft = self.tables.fulltext
        values = {c.name: sa.bindparam(c.name, type_=c.type) for c in self.saved_columns}
        return (
            sa.update(ft)
            .where(
                ft.c.id == sa.bindparam("job_id", type_=sa.Uuid),
                ft.c.version == sa.bindparam("read_version", type_=sa.Integer),
                ft.c.claim_token.is_not_distinct_from(sa.bindparam("claim", type_=sa.Uuid)),
            )
            .values({**values, "version": ft.c.version + 1})
            .returning(ft.c.version)
        )

    @functools.cached_property
    def update_jobs(self) -> sa.TextClause:
        """`update_job` for a whole batch in one statement (PostgreSQL): the
        parameters are one array per column of `job_row` (see `job_arrays`),
        and each row of the arrays is the compare-and-swap of one job.
        Returns the ids of the jobs written; a job whose stored row has
        changed since its copy was read (or is gone) matches nothing and is
        passed over, alone.

        The guards (version, claim token) sit in the UPDATE's own WHERE, as
        in `update_job`, so each is judged on the row as it is when it is
        updated, locked. The ids are distinct (the port refuses a batch that
        repeats one), so each row is matched at most once. One statement
        means one round trip and one statement's overhead for the batch,
        where a pipeline of `update_job` pays both per job. A clash on
        (item_id, destination) aborts the statement: nothing is written.
        """
        ft = self.tables.fulltext
        columns = [c.name for c in self.saved_columns]
        types = {
            "item_id": "text",
            "destination": "text",
            "started": "timestamptz",
            "finished": "timestamptz",
            "status": "text",
            "attempts": "integer",
            "claim_token": "uuid",
            "lease_expires": "timestamptz",
            "last_error": "text",
            "not_before": "timestamptz",
        }
        arrays = ", ".join(
            f"CAST(:{name} AS {kind}[])"
            for name, kind in (
                ("job_id", "uuid"),
                ("read_version", "integer"),
                ("claim", "uuid"),
                *((name, types[name]) for name in columns),
            )
        )
        assignments = ", ".join(
            f"{name} = CAST(v.status AS job_statuses)" if name == "status" else f"{name} = v.{name}"
            for name in columns
        )
        return sa.text(
            f"UPDATE {ft.fullname} AS f SET {assignments}, version = f.version + 1 "  # noqa: S608 - names from the declared table, values bound
            f"FROM unnest({arrays}) AS v(job_id, read_version, claim, {', '.join(columns)}) "
            "WHERE f.id = v.job_id AND f.version = v.read_version "
            "AND f.claim_token IS NOT DISTINCT FROM v.claim "
            "RETURNING f.id"
        )

    # --- finding unqueued items --------------------------------------------

    def _unqueued(
        self, query: sa.Select[Any], destination: str | sa.BindParameter[str]
    ) -> sa.Select[Any]:
        """Keep the rows of `query` (over the item source) whose item has no
        job for `destination`.

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
            return query.where(~queued)
        probe = (
            sa.select(sa.literal(1).label("found"))
            .where(ft.c.item_id == self.items.id, ft.c.destination == destination)
            .limit(1)
            .lateral("queued")
        )
        return query.outerjoin(probe, sa.true()).where(probe.c.found.is_(None))

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
        """Insert a ready job (`:id`, `:new_item_id`, `:dest`) unless its
        (item, destination) pair has one.

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
        )
        return stmt.on_conflict_do_nothing(
            index_elements=[ft.c.item_id, ft.c.destination]
        ).returning(ft.c.id)

    # --- bulk enqueue --------------------------------------------------------

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
    ) -> sa.Insert:
        """Queue the unqueued eligible items with ids in (after, upper], at
        most `limit` of them, smallest ids first.

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
        ).select_from(self.items.from_clause)
        if self.items.eligible is not None:
            query = query.where(self.items.eligible)
        if after is not None:
            query = query.where(key > after)
        if upper is not None:
            query = query.where(key <= upper)
        # Without the probe, still a WHERE: SQLite needs one to tell the
        # upsert's ON CONFLICT from a join's ON.
        query = self._unqueued(query, destination) if skip_queued else query.where(sa.true())
        query = query.order_by(item_id)
        if limit is not None:
            query = query.limit(limit)
        stmt = self._insert(ft).from_select(
            [ft.c.id, ft.c.item_id, ft.c.destination, ft.c.status], query
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

    # --- claims --------------------------------------------------------------

    def _oldest_ready(self, n: sa.BindParameter[int] | int) -> sa.Select[Any]:
        ft = self.tables.fulltext
        return (
            sa.select(ft.c.id)
            .where(
                ft.c.destination == sa.bindparam("dest"),
                # A literal, not a parameter: a prepared statement's generic
                # plan can use the partial index `WHERE status = 'ready'` only
                # if the query says 'ready' itself.
                ft.c.status == sa.literal_column("'ready'"),
                # Jobs delayed past `:now` (a retry after a backoff) are
                # passed over. Tested on the rows the index scan visits, in
                # `seq` order: while no job is delayed, every row passes and
                # the plan and its cost are those of the plain claim; each
                # delayed job ahead of the first due one costs one row more.
                sa.or_(ft.c.not_before.is_(None), ft.c.not_before <= sa.bindparam("now")),
            )
            .order_by(ft.c.seq)
            .limit(n)
        )

    @functools.cached_property
    def claim_one(self) -> sa.Update:
        """Mark the oldest ready job of `:dest` running, with `started`
        set to `:now`, claim token `:token` and lease `:lease_until`, count an
        attempt, and return it.

        One statement, one round trip. The id is chosen by a scalar
        subquery, which PostgreSQL runs once (an InitPlan), so exactly one row
        is updated; `FOR UPDATE SKIP LOCKED` makes concurrent claimers pass
        over a row another is taking rather than wait for it or take it too (a
        locked row that has meanwhile stopped being ready is re-checked and
        skipped). The partial index on ready jobs, ordered by `seq`, keeps the
        cost flat however many finished jobs there are. SQLite ignores
        `FOR UPDATE`; there the transaction's `BEGIN IMMEDIATE` holds the
        only write lock.
        """
        ft = self.tables.fulltext
        oldest = self._oldest_ready(1).with_for_update(skip_locked=True)
        return (
            sa.update(ft)
            .where(ft.c.id == oldest.scalar_subquery())
            .values(
                status=JobStatus.RUNNING.value,
                started=sa.bindparam("now"),
                attempts=ft.c.attempts + 1,
                claim_token=sa.bindparam("token", type_=sa.Uuid),
                lease_expires=sa.bindparam("lease_until"),
                not_before=None,
                version=ft.c.version + 1,
            )
            .returning(*self.job_columns)
        )

    @functools.cached_property
    def claim_many(self) -> sa.Update:
        """Mark the `:n` oldest ready jobs of `:dest` running, with
        `started` set to `:now`, a fresh claim token each and lease
        `:lease_until`, count an attempt, and return them (with `seq`, to
        sort them: RETURNING keeps no order).

        On PostgreSQL the locking SELECT sits in a CTE, which is never
        inlined: written as `WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP
        LOCKED)` the planner may turn it into a semi join that re-runs the
        subquery and updates more than `n` rows. The UPDATE takes the CTE's
        ids as one array (`id = ANY(ARRAY(SELECT id FROM picked))`, an
        InitPlan run once), which it can only probe the primary key with:
        joined to the CTE (`UPDATE ... FROM picked`), the planner, which
        sees 100 picked rows, chose a hash join over a sequential scan of
        the whole table, and a claim of 100 cost 13 ms at 20,000 jobs and
        grew with the table (see docs/benchmarks.md). SQLite runs the IN
        subquery once, under the transaction's write lock.
        """
        ft = self.tables.fulltext
        oldest = self._oldest_ready(sa.bindparam("n", type_=sa.Integer))
        stmt = sa.update(ft).values(
            status=JobStatus.RUNNING.value,
            started=sa.bindparam("now"),
            attempts=ft.c.attempts + 1,
            claim_token=self._new_uuid(),  # one per row: it is volatile
            lease_expires=sa.bindparam("lease_until"),
            not_before=None,
            version=ft.c.version + 1,
        )
        if self.postgresql:
            picked = oldest.with_for_update(skip_locked=True).cte("picked")
            ids = sa.func.array(sa.select(picked.c.id).scalar_subquery())
            stmt = stmt.where(ft.c.id == sa.any_(ids))
        else:
            stmt = stmt.where(ft.c.id.in_(oldest.scalar_subquery()))
        return stmt.returning(*self.job_columns, ft.c.seq)

    @functools.cached_property
    def hold_ready(self) -> sa.Select[Any]:
        """The `:n` oldest due ready jobs of `:dest` (as `claim_many` chooses
        them), oldest first, row-locked until the transaction ends: the
        claim of `Repository.hold_ready`, which writes nothing. `SKIP
        LOCKED` passes over the rows other holders and claimers have
        locked; a locked row that has meanwhile stopped being ready is
        re-checked and skipped. SQLite ignores `FOR UPDATE`: there the
        transaction's `BEGIN IMMEDIATE` holds the only write lock."""
        oldest = self._oldest_ready(sa.bindparam("n", type_=sa.Integer))
        stmt = oldest.with_only_columns(*self.job_columns)
        return stmt.with_for_update(skip_locked=True) if self.postgresql else stmt

    @functools.cached_property
    def write_held(self) -> sa.TextClause:
        """`update_jobs` for the jobs of a `hold_ready` block (PostgreSQL):
        only the columns a held job's outcome can change, one array each
        (`job_id`, `read_version`, `status`, `started`, `finished`,
        `attempts`, `last_error`, `not_before`; see `held_arrays`); the
        claim token and lease are cleared, as the row holds neither. Returns
        the ids written; the version guard stays, though the block's row
        locks leave nobody else to change the rows. Five arrays fewer than
        `update_jobs` to send and unnest: the one write a held job costs."""
        return self._held_update(
            "status = CAST(v.status AS job_statuses), started = v.started, "
            "finished = v.finished, attempts = v.attempts, last_error = v.last_error, "
            "not_before = v.not_before",
            {
                "status": "text",
                "started": "timestamptz",
                "finished": "timestamptz",
                "attempts": "integer",
                "last_error": "text",
                "not_before": "timestamptz",
            },
        )

    @functools.cached_property
    def finish_held(self) -> sa.TextClause:
        """`write_held` for a batch of held jobs that were all plainly
        finished (PostgreSQL): only `job_id`, `read_version` and `finished`
        travel as arrays; `started` is the hold's one moment (`:started`),
        the attempt is counted on the row (`attempts + 1`: the row is
        locked, so it is the count the copy was handed out with), the last
        error stays and the delay is cleared. Returns the ids written."""
        return self._held_update(
            "status = 'finished', started = :started, finished = v.finished, "
            "attempts = f.attempts + 1, not_before = NULL",
            {"finished": "timestamptz"},
        )

    def _held_update(self, assignments: str, arrays: dict[str, str]) -> sa.TextClause:
        """The write of held jobs: `assignments` from the arrays `job_id`,
        `read_version` and `arrays` (name: element type), unnested as `v`;
        the claim token and lease cleared, as the row holds neither; the
        version moved on under its guard; the ids written returned."""
        columns = {"job_id": "uuid", "read_version": "integer", **arrays}
        unnested = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns.items())
        return sa.text(
            f"UPDATE {self.tables.fulltext.fullname} AS f SET {assignments}, "  # noqa: S608 - names from the declared table, values bound
            "claim_token = NULL, lease_expires = NULL, version = f.version + 1 "
            f"FROM unnest({unnested}) AS v({', '.join(columns)}) "
            "WHERE f.id = v.job_id AND f.version = v.read_version RETURNING f.id"
        )

    @functools.cached_property
    def next_due(self) -> sa.Select[Any]:
        """When the next of `:dest`'s ready jobs may be claimed: the earliest
        `not_before` among them, `:now` for one not delayed, or NULL if none
        is ready.

        Read along the partial index of ready jobs; a worker asks only after
        a claim came back empty, when the ready jobs are the delayed ones
        (and any another claimer is taking), the rows that claim just passed
        over. No row is locked.
        """
        ft = self.tables.fulltext
        now = sa.bindparam("now", type_=ft.c.not_before.type)
        due = sa.func.coalesce(ft.c.not_before, now, type_=ft.c.not_before.type)
        return sa.select(sa.func.min(due, type_=ft.c.not_before.type)).where(
            ft.c.destination == sa.bindparam("dest"),
            ft.c.status == sa.literal_column("'ready'"),
        )

    # --- rate limits ------------------------------------------------

    @functools.cached_property
    def take_rate_tokens(self) -> sa.Insert:
        """Take up to `:n` start tokens from `:dest`'s bucket, for a rate of
        one token every `:interval` seconds and bursts of `:burst` (the
        arithmetic of `fulltext_jobs.rate_limit.take`); return the bucket's
        new `tat`, the tokens granted, and the time the take was judged at
        (seconds since 1970).

        One upsert, one round trip: the first take of a destination
        creates its row, full. Why it is safe under concurrency: on
        PostgreSQL `ON CONFLICT DO UPDATE` locks the row, so takers of one
        destination queue on it for the length of one statement and each
        computes from the `tat` the previous one wrote (takers of other
        destinations do not wait); on SQLite the transaction's `BEGIN
        IMMEDIATE` holds the only write lock.

        The clock: on PostgreSQL `:now` may be NULL, and then the server's
        clock is read (`statement_timestamp()`, fixed for the statement),
        so that workers on machines whose clocks disagree still share one
        notion of "now" for the bucket. If the statement waits for the row,
        that reading is a little old, which only hands out fewer tokens.
        """
        bucket = self.tables.rate_limit
        interval = sa.bindparam("interval", type_=sa.Double)
        burst = sa.bindparam("burst", type_=sa.Integer)
        n = sa.bindparam("n", type_=sa.Integer)
        now: ColumnElement[float] = sa.bindparam("now", type_=sa.Double)
        if self.postgresql:
            now = sa.func.coalesce(
                sa.cast(now, sa.Double),
                sa.func.date_part("epoch", sa.func.statement_timestamp()),
                type_=sa.Double,
            )
        # SQLite's many-argument max() and min() are scalar functions.
        greatest = getattr(sa.func, "greatest" if self.postgresql else "max")
        least = getattr(sa.func, "least" if self.postgresql else "min")
        base = greatest(bucket.c.tat, now, type_=sa.Double)
        earned = greatest(
            sa.literal(0.0, sa.Double),
            (now - base + sa.literal(TOLERANCE_SECONDS, sa.Double)) / interval + burst,
            type_=sa.Double,
        )
        # The value is at least 0 here, where a cast (SQLite's truncation)
        # and floor() agree; PostgreSQL's cast would round.
        available = (
            sa.cast(sa.func.floor(earned), sa.Integer)
            if self.postgresql
            else sa.cast(earned, sa.Integer)
        )
        granted = least(n, available, type_=sa.Integer)
        first = least(n, burst, type_=sa.Integer)
        stmt = self._insert(bucket).values(
            destination=sa.bindparam("dest"), tat=now + first * interval, granted=first
        )
        return stmt.on_conflict_do_update(
            index_elements=[bucket.c.destination],
            # Each SET reads the row as it was: `granted` is spelt out again.
            set_={"tat": base + granted * interval, "granted": granted},
        ).returning(bucket.c.tat, bucket.c.granted, now)

    # --- leases ----------------------------------------------------------------

    @functools.cached_property
    def heartbeat(self) -> sa.Update:
        """Extend the lease of job `:id` to `:lease_until`, if it is still
        running under claim `:token`; returns the new lease, or no row.

        It changes only `lease_expires`, which is in no index, so on
        PostgreSQL it can be a HOT update; it leaves `version` alone (and
        the version trigger does not fire on the lease), so the worker's
        other copies of the job stay current."""
        ft = self.tables.fulltext
        return (
            sa.update(ft)
            .where(
                ft.c.id == sa.bindparam("job_id", type_=sa.Uuid),
                ft.c.status == sa.literal_column("'running'"),
                ft.c.claim_token == sa.bindparam("token", type_=sa.Uuid),
            )
            .values(lease_expires=sa.bindparam("lease_until"))
            .returning(ft.c.lease_expires)
        )

    def rescue_expired(self, destination: str | None) -> sa.Update:
        """Return running jobs whose lease ended before `:now` to ready, with
        `RESCUED_ERROR` as their last error, or, at `:max_attempts`
        attempts, fail them with that reason recorded (`lease_expired_error`);
        end their claims. Returns their ids.

        The condition (running, lease expired) is in the UPDATE itself, so it
        is judged on each row as it is when updated, with the row locked: a
        job finished a moment before no longer matches and is left alone.
        """
        ft = self.tables.fulltext
        give_up = ft.c.attempts >= sa.bindparam("max_attempts", type_=sa.Integer)
        failed_reason = (
            sa.literal("lease expired after ")
            + sa.cast(ft.c.attempts, sa.Text)
            + sa.literal(" attempt(s); max_attempts reached")
        )
        stmt = sa.update(ft).where(
            ft.c.status == sa.literal_column("'running'"),
            ft.c.lease_expires < sa.bindparam("now"),
        )
        if destination is not None:
            stmt = stmt.where(ft.c.destination == destination)
        return stmt.values(
            # Cast: a CASE of plain strings is text, which PostgreSQL will
            # not put in an enum column.
            status=sa.case(
                (give_up, sa.cast(sa.literal_column("'failed'"), ft.c.status.type)),
                else_=sa.cast(sa.literal_column("'ready'"), ft.c.status.type),
            ),
            started=sa.case((give_up, ft.c.started), else_=None),
            finished=sa.case((give_up, sa.bindparam("now")), else_=ft.c.finished),
            last_error=sa.case((give_up, failed_reason), else_=sa.literal(RESCUED_ERROR)),
            claim_token=None,
            lease_expires=None,
            version=ft.c.version + 1,
        ).returning(ft.c.id)

    def retry(self, destination: str, statuses: list[str], item_ids: list[str] | None) -> sa.Update:
        """Return `destination`'s jobs in `statuses` (of `item_ids`, if
        given) to ready as `FullText.retry` does: `started`, `finished` and
        the delay cleared, `attempts` back to 0, the last error and `seq`
        kept; the version moved on (the library's own write, which the
        version trigger does not count again)."""
        ft = self.tables.fulltext
        stmt = sa.update(ft).where(ft.c.destination == destination, ft.c.status.in_(statuses))
        if item_ids is not None:
            stmt = stmt.where(ft.c.item_id.in_(item_ids))
        return stmt.values(
            status=JobStatus.READY.value,
            started=None,
            finished=None,
            attempts=0,
            claim_token=None,
            lease_expires=None,
            not_before=None,
            version=ft.c.version + 1,
        ).execution_options(preserve_rowcount=True)

    # --- looking at jobs -------------------------------------------------------

    def list_jobs(
        self, destination: str, statuses: list[str] | None, limit: int, after: str | None
    ) -> sa.Select[Any]:
        """A page of `destination`'s jobs (in `statuses`, if given) in item
        id order, after item `after`: a keyset page, read along the unique
        (item_id, destination) index, so a page costs the same wherever it
        starts. Read-only, and no row is locked."""
        ft = self.tables.fulltext
        query = sa.select(*self.job_columns).where(ft.c.destination == destination)
        if statuses is not None:
            query = query.where(ft.c.status.in_(statuses))
        if after is not None:
            query = query.where(ft.c.item_id > after)
        return query.order_by(ft.c.item_id).limit(limit)

    # --- coverage --------------------------------------------------------------

    def count_unqueued(self, destination: str) -> sa.Select[int]:
        """How many eligible items have no job for `destination`."""
        unqueued = self._unqueued(self.items.ids(), destination).subquery()
        return sa.select(sa.func.count()).select_from(unqueued)

    @functools.cached_property
    def has_destination(self) -> sa.Select[bool]:
        """Whether `:dest` has any job.

        Three EXISTS, tried in turn (PostgreSQL runs each as an InitPlan
        only when the OR before it was false): a ready job, through the
        partial ready index; a running job, through the partial running
        index; then any job, which is a scan that stops at the first job of
        the destination. The last one reads the whole table only for a
        destination with no job at all (a typo) or whose jobs sit at the
        end of the table: no index leads with the destination alone, since
        one more index on every claim and finish would cost throughput.
        """
        ft = self.tables.fulltext
        dest = ft.c.destination == sa.bindparam("dest")
        probes = [
            sa.exists().where(dest, ft.c.status == sa.literal_column(f"'{status}'"))
            for status in ("ready", "running")
        ]
        return sa.select(sa.or_(*probes, sa.exists().where(dest)))

    def count_by_status(self, destination: str | None) -> sa.Select[Any]:
        """Jobs per (destination, status)."""
        ft = self.tables.fulltext
        query = sa.select(ft.c.destination, ft.c.status, sa.func.count()).group_by(
            ft.c.destination, ft.c.status
        )
        if destination is not None:
            query = query.where(ft.c.destination == destination)
        return query

    # --- audit ----------------------------------------------------

    def audit_conditions(self) -> dict[AuditCheck, ColumnElement[bool]]:
        """Each check of `Repository.audit` as a condition on a job, over
        the binds `:now`, `:stale_before` (now minus the rescue interval),
        `:future_after` (now plus the clock tolerance) and `:max_attempts`.

        The two running checks are served by `fulltext_running_idx`; the
        others read every job of the destination (see docs/benchmarks.md):
        no index on the ledger knows which timestamps disagree, and an item
        leaves the source without the ledger knowing.
        """
        ft = self.tables.fulltext.c
        running = ft.status == sa.literal_column("'running'")
        eligible = self.items.ids().where(self.items.id == ft.item_id)
        return {
            AuditCheck.RUNNING_WITHOUT_LEASE: sa.and_(running, ft.lease_expires.is_(None)),
            AuditCheck.LEASE_EXPIRED_UNRESCUED: sa.and_(
                running, ft.lease_expires < sa.bindparam("stale_before")
            ),
            AuditCheck.ITEM_MISSING: ~sa.exists(eligible),
            AuditCheck.FINISHED_BEFORE_STARTED: ft.finished < ft.started,
            AuditCheck.STARTED_IN_FUTURE: ft.started > sa.bindparam("future_after"),
            AuditCheck.TERMINAL_WITHOUT_FINISHED: sa.and_(
                ft.status.in_(sorted(s.value for s in AUDIT_TERMINAL)), ft.finished.is_(None)
            ),
            AuditCheck.ATTEMPTS_ABOVE_MAX: ft.attempts
            > sa.bindparam("max_attempts", type_=sa.Integer),
            AuditCheck.READY_WITH_CLAIM_TOKEN: sa.and_(
                ft.status == sa.literal_column("'ready'"), ft.claim_token.is_not(None)
            ),
        }

    def audit_counts(
        self, condition: ColumnElement[bool], destination: str | None
    ) -> sa.Select[Any]:
        """Per destination: how many jobs meet `condition`, and the oldest
        `started` among them."""
        ft = self.tables.fulltext
        query = (
            sa.select(ft.c.destination, sa.func.count(), sa.func.min(ft.c.started))
            .where(condition)
            .group_by(ft.c.destination)
        )
        if destination is not None:
            query = query.where(ft.c.destination == destination)
        return query

    def audit_examples(self, condition: ColumnElement[bool]) -> sa.Select[Any]:
        """The smallest `:examples` ids of `:destination`'s jobs that meet
        `condition`."""
        ft = self.tables.fulltext
        return (
            sa.select(ft.c.id)
            .where(condition, ft.c.destination == sa.bindparam("destination"))
            .order_by(ft.c.id)
            .limit(sa.bindparam("examples", type_=sa.Integer))
        )

    def release_unleased(self, destination: str | None) -> sa.Update:
        """Return running jobs with no lease and a `started` before
        `:started_before` to ready, counting an attempt and saying why.

        As in `rescue_expired`, the condition is in the UPDATE itself and is
        judged on each row, locked, as it is when written: a job finished
        or given a lease a moment before no longer matches.
        """
        ft = self.tables.fulltext
        stmt = sa.update(ft).where(
            ft.c.status == sa.literal_column("'running'"),
            ft.c.lease_expires.is_(None),
            ft.c.started < sa.bindparam("started_before"),
        )
        if destination is not None:
            stmt = stmt.where(ft.c.destination == destination)
        return stmt.values(
            status=sa.cast(sa.literal_column("'ready'"), ft.c.status.type),
            started=None,
            claim_token=None,
            attempts=ft.c.attempts + 1,
            last_error=UNLEASED_ERROR,
            version=ft.c.version + 1,
        ).returning(ft.c.id)
