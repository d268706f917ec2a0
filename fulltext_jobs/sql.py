"""The SQLAlchemy adapter: PostgreSQL (through psycopg 3) and SQLite.

Each call runs in its own short transaction, on a session from the
sessionmaker the repository was given (or made from the engine it was
given). The statements that matter for correctness under concurrency are
the module-level functions below the repository, one per operation, each
with a comment on why it is safe.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from fulltext_jobs.domain import (
    FullText,
    JobStatus,
    check_destination,
    check_item_id,
    check_job,
    check_job_id,
    utc,
)
from fulltext_jobs.engine import configure_sqlite, store_error
from fulltext_jobs.errors import (
    AllQueued,
    DuplicateJob,
    InvalidInput,
    JobNotFound,
    NoJobs,
    SchemaNotMigrated,
    StoreError,
)
from fulltext_jobs.repository import Repository
from fulltext_jobs.schema import (
    SCHEMA_REVISION,
    SUPPORTED_DIALECTS,
    VERSION_TABLE,
    Tables,
    tables_for,
)

__all__ = ["ItemSource", "SqlAlchemyRepository"]

UPGRADE_ADVICE: Final = (
    "run `alembic upgrade head` from a checkout, "
    "`fulltext_jobs.upgrade(url)` from Python, or `fulltext-jobs migrate upgrade`"
)

# A caller that loses the race for an item tries again; each lost race means
# another caller won, so this bound is only reached if something is wrong.
_MAX_CREATE_ATTEMPTS: Final = 1000


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


class SqlAlchemyRepository(Repository):
    """A `Repository` in PostgreSQL or SQLite, through SQLAlchemy 2.

    `bind` is an Engine or a sessionmaker; every call runs in a transaction
    of its own and commits before it returns. `items` is where the items come
    from (an `ItemSource`, or anything `ItemSource` accepts); by default the
    `items` table that the migrations create. `clock` returns the current
    time (aware) and stamps `started`.

    A SQLite engine is given WAL, a busy timeout and `BEGIN IMMEDIATE` (see
    `fulltext_jobs.configure_sqlite`). The first call checks that the
    database is migrated to the revision this version needs and raises
    `SchemaNotMigrated`, naming the command to run, if not.
    """

    def __init__(
        self,
        bind: Engine | sessionmaker[Session],
        *,
        items: ItemSource | sa.FromClause | sa.Select[Any] | type[Any] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if isinstance(bind, Engine):
            engine = bind
            self._sessions: sessionmaker[Session] = sessionmaker(bind)
        elif isinstance(bind, sessionmaker) and isinstance(bind.kw.get("bind"), Engine):
            engine = bind.kw["bind"]
            self._sessions = bind
        else:
            msg = f"bind must be an Engine or a sessionmaker bound to one, not {bind!r}"
            raise InvalidInput(msg)
        if engine.dialect.name not in SUPPORTED_DIALECTS:
            msg = f"fulltext-jobs supports PostgreSQL and SQLite, not {engine.dialect.name}"
            raise InvalidInput(msg)
        configure_sqlite(engine)
        self._engine = engine
        self._dialect = engine.dialect.name
        self._tables = tables_for(self._dialect)
        if items is None:
            items = ItemSource(self._tables.items)
        self._items = items if isinstance(items, ItemSource) else ItemSource(items)
        self._owns_items = self._items.from_clause is self._tables.items
        self._clock = clock or utc
        self._schema_checked = False

    def add_items(self, item_ids: Iterable[str], *, batch_size: int = 10_000) -> int:
        """Add items to the default `items` table; return how many were new.

        Ids already there are left alone. All ids are checked before anything
        is written: a bad one raises `InvalidInput` and adds nothing. Each
        batch of `batch_size` ids commits on its own, so a failure part way
        through (`StoreError`) leaves the earlier batches added. Raises
        `InvalidInput` when the repository reads an app's own item source,
        which is the app's to fill.
        """
        if not self._owns_items:
            msg = "add_items fills the default items table; this repository reads the app's own"
            raise InvalidInput(msg)
        ids = [check_item_id(item_id) for item_id in item_ids]
        added = 0
        for start in range(0, len(ids), batch_size):
            rows = [{"id": item_id} for item_id in ids[start : start + batch_size]]
            with self._transaction("add_items") as session:
                added += len(session.execute(add_items(self._tables, self._dialect), rows).all())
        return added

    def get_fulltext(self, job_id: uuid.UUID | str) -> FullText:
        key = check_job_id(job_id)
        with self._transaction("get_fulltext") as session:
            row = session.execute(select_job(self._tables, key)).one_or_none()
        if row is None:
            raise JobNotFound(f"no job has id {key}")
        return _to_job(row)

    def save_fulltext(self, job: FullText) -> None:
        stored = check_job(job)
        duplicate = (
            f"a job already exists for item {stored.item_id!r} "
            f"and destination {stored.destination!r}"
        )
        with self._transaction("save_fulltext", duplicate=duplicate) as session:
            session.execute(upsert_job(self._tables, stored, self._dialect))

    def create_job_for_unqueued(self, destination: str) -> FullText:
        check_destination(destination)
        for _ in range(_MAX_CREATE_ATTEMPTS):
            with self._transaction("create_job_for_unqueued") as session:
                item_id = session.execute(
                    find_unqueued(self._tables, self._items, destination)
                ).scalar_one_or_none()
                if item_id is None:
                    raise AllQueued(f"every eligible item has a job for {destination!r}")
                # Built directly: the id comes from the app's table, which
                # this library does not police; the database still enforces
                # one job per pair.
                job = FullText(id=uuid.uuid4(), item_id=item_id, destination=destination)
                inserted = session.execute(
                    insert_if_unqueued(self._tables, job, self._dialect)
                ).scalar_one_or_none()
            if inserted is not None:
                return job
        raise StoreError(
            f"create_job_for_unqueued lost {_MAX_CREATE_ATTEMPTS} races in a row "
            "(retryable: the same call may succeed if made again)",
            retryable=True,
        )

    def get_ready_job(self, destination: str) -> FullText:
        check_destination(destination)
        with self._transaction("get_ready_job") as session:
            row = session.execute(claim_one(self._tables, destination, self._clock())).one_or_none()
        if row is None:
            raise NoJobs(f"no job is ready for {destination!r}")
        return _to_job(row)

    @contextmanager
    def _transaction(self, action: str, *, duplicate: str | None = None) -> Iterator[Session]:
        """A session in a transaction that commits on leaving and rolls back
        on an exception. A clash on (item_id, destination) becomes
        `DuplicateJob` (with the message `duplicate`), other driver errors
        `StoreError`."""
        try:
            if not self._schema_checked:
                self._check_schema()
            with self._sessions.begin() as session:
                yield session
        except sa.exc.IntegrityError as exc:
            if _is_pair_violation(exc):
                raise DuplicateJob(duplicate) from None
            raise store_error(exc, action) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise store_error(exc, action) from exc

    def _check_schema(self) -> None:
        with self._engine.connect() as connection:
            if not sa.inspect(connection).has_table(VERSION_TABLE):
                raise SchemaNotMigrated(
                    f"the database {self._url()} has no fulltext-jobs schema: {UPGRADE_ADVICE}"
                )
            versions = (
                connection.execute(
                    sa.text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - a constant
                )
                .scalars()
                .all()
            )
        if versions != [SCHEMA_REVISION]:
            found = ", ".join(versions) or "none"
            raise SchemaNotMigrated(
                f"the database {self._url()} is at revision {found}; this version of "
                f"fulltext-jobs needs revision {SCHEMA_REVISION}: {UPGRADE_ADVICE}"
            )
        self._schema_checked = True

    def _url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)


# --- The statements -------------------------------------------------------


def _to_job(row: sa.Row[Any]) -> FullText:
    return FullText(
        id=row.id,
        item_id=row.item_id,
        destination=row.destination,
        started=row.started,
        finished=row.finished,
        status=JobStatus(row.status),
    )


def _job_columns(tables: Tables) -> tuple[sa.Column[Any], ...]:
    t = tables.fulltext.c
    return (t.id, t.item_id, t.destination, t.started, t.finished, t.status)


def _insert(dialect_name: str, table: sa.Table) -> pg.Insert | sqlite.Insert:
    return pg.insert(table) if dialect_name == "postgresql" else sqlite.insert(table)


def add_items(tables: Tables, dialect_name: str) -> sa.Insert:
    """Insert item ids (executed with many rows), skipping those already
    there; returns the ids that were new."""
    items = tables.items
    return (
        _insert(dialect_name, items)
        .on_conflict_do_nothing(index_elements=[items.c.id])
        .returning(items.c.id)
    )


def select_job(tables: Tables, job_id: uuid.UUID) -> sa.Select[Any]:
    """The job with this id."""
    return sa.select(*_job_columns(tables)).where(tables.fulltext.c.id == job_id)


def upsert_job(tables: Tables, job: FullText, dialect_name: str) -> sa.Insert:
    """Insert the job, or replace the one with its id (the original's
    `INSERT ... ON CONFLICT (id) DO UPDATE`). A clash on (item_id,
    destination) with another id raises an integrity error. `seq` is left
    alone, so a saved job keeps its place in the queue."""
    fields = {
        "id": job.id,
        "item_id": job.item_id,
        "destination": job.destination,
        "started": job.started,
        "finished": job.finished,
        "status": job.status.value,
    }
    stmt = _insert(dialect_name, tables.fulltext).values(fields)
    return stmt.on_conflict_do_update(
        index_elements=[tables.fulltext.c.id],
        set_={name: stmt.excluded[name] for name in fields if name != "id"},
    )


def find_unqueued(tables: Tables, items: ItemSource, destination: str) -> sa.Select[str]:
    """The eligible item with the smallest id that has no job for
    `destination`. Read without locks: the insert that follows decides any
    race (see `insert_if_unqueued`)."""
    ft = tables.fulltext
    queued = sa.exists().where(ft.c.item_id == items.id, ft.c.destination == destination)
    return items.ids().where(~queued).order_by(items.id).limit(1)


def insert_if_unqueued(tables: Tables, job: FullText, dialect_name: str) -> sa.Insert:
    """Insert the new job unless its (item, destination) pair has one.

    Why this is safe under concurrency: two callers may pick the same item
    (the search takes no locks); the unique constraint lets one insert win,
    and `ON CONFLICT DO NOTHING` turns the other's insert into no row rather
    than a duplicate-key error. On PostgreSQL the loser waits for the
    winner's transaction to end first, so its next search, with a new
    snapshot, sees the winner's job. The statement returns the new job's id,
    or nothing when the race was lost.
    """
    ft = tables.fulltext
    stmt = _insert(dialect_name, ft).values(
        id=job.id,
        item_id=job.item_id,
        destination=job.destination,
        status=JobStatus.READY.value,
    )
    return stmt.on_conflict_do_nothing(index_elements=[ft.c.item_id, ft.c.destination]).returning(
        ft.c.id
    )


def claim_one(tables: Tables, destination: str, now: datetime) -> sa.Update:
    """Mark the oldest ready job of `destination` running, and return it.

    One statement, one round trip. The id is chosen by a scalar subquery,
    which PostgreSQL runs once (an InitPlan), so exactly one row is updated;
    `FOR UPDATE SKIP LOCKED` makes concurrent claimers pass over a row another
    is taking rather than wait for it or take it too (a locked row that has
    meanwhile stopped being ready is re-checked and skipped). The partial
    index on ready jobs, ordered by `seq`, keeps the cost flat however many
    finished jobs there are. SQLite ignores `FOR UPDATE`; there the
    transaction's `BEGIN IMMEDIATE` holds the only write lock.
    """
    ft = tables.fulltext
    oldest_ready = (
        sa.select(ft.c.id)
        .where(ft.c.destination == destination, ft.c.status == JobStatus.READY.value)
        .order_by(ft.c.seq)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        sa.update(ft)
        .where(ft.c.id == oldest_ready)
        .values(status=JobStatus.RUNNING.value, started=now)
        .returning(*_job_columns(tables))
    )


def _is_pair_violation(exc: sa.exc.IntegrityError) -> bool:
    diag = getattr(exc.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    if constraint is not None:
        return bool(constraint == "jobs_fulltext_unique")
    message = str(exc.orig)
    return "UNIQUE constraint failed" in message and "item_id" in message
