"""The SQLAlchemy adapter: PostgreSQL (through psycopg 3) and SQLite.

Each call runs in its own short transaction, on a session from the
sessionmaker the repository was given (or made from the engine it was
given). The statements themselves, with why each is safe under concurrency,
are in `fulltext_jobs.statements`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fulltext_jobs.domain import (
    DestinationStats,
    FullText,
    check_batch_size,
    check_destination,
    check_item_id,
    check_job,
    check_job_id,
    check_jobs,
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
from fulltext_jobs.schema import SCHEMA_REVISION, SUPPORTED_DIALECTS, VERSION_TABLE, tables_for
from fulltext_jobs.statements import ItemSource, Statements, to_job

__all__ = ["ItemSource", "SqlAlchemyRepository"]

UPGRADE_ADVICE: Final = (
    "run `alembic upgrade head` from a checkout or `fulltext_jobs.upgrade(url)` from Python"
)

# A caller that loses the race for an item tries again; each lost race means
# another caller won, so this bound is only reached if something is wrong.
_MAX_CREATE_ATTEMPTS: Final = 1000


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
        self._sql = Statements(self._tables, self._items, self._dialect)
        self._clock = clock or utc
        self._schema_checked = False
        #: How many items `enqueue_unqueued` takes per transaction.
        self.enqueue_batch_size = 50_000

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
                added += len(session.execute(self._sql.add_items(), rows).all())
        return added

    def get_fulltext(self, job_id: uuid.UUID | str) -> FullText:
        key = check_job_id(job_id)
        with self._transaction("get_fulltext") as session:
            row = session.execute(self._sql.select_job(key)).one_or_none()
        if row is None:
            raise JobNotFound(f"no job has id {key}")
        return to_job(row)

    def save_fulltext(self, job: FullText) -> None:
        stored = check_job(job)
        duplicate = (
            f"a job already exists for item {stored.item_id!r} "
            f"and destination {stored.destination!r}"
        )
        with self._transaction("save_fulltext", duplicate=duplicate) as session:
            session.execute(self._sql.upsert_jobs([stored]))

    def create_job_for_unqueued(self, destination: str) -> FullText:
        check_destination(destination)
        with self._transaction("create_job_for_unqueued") as session:
            watermark = session.execute(self._sql.lock_cursor(destination)).scalar_one()
            for _ in range(_MAX_CREATE_ATTEMPTS):
                item_id = session.execute(
                    self._sql.find_unqueued(destination, after=watermark)
                ).scalar_one_or_none()
                if item_id is None:
                    # Items that arrived below the watermark, or became
                    # eligible late: found by one scan from the start.
                    item_id = session.execute(
                        self._sql.find_unqueued(destination, after=None)
                    ).scalar_one_or_none()
                if item_id is None:
                    raise AllQueued(f"every eligible item has a job for {destination!r}")
                # Built directly: the id comes from the app's table, which
                # this library does not police; the database still enforces
                # one job per pair.
                job = FullText(id=uuid.uuid4(), item_id=item_id, destination=destination)
                inserted = session.execute(self._sql.insert_if_unqueued(job)).scalar_one_or_none()
                if item_id > watermark:
                    session.execute(self._sql.move_cursor(destination, item_id))
                    watermark = item_id
                if inserted is not None:
                    return job
                # Another path (enqueue_unqueued, save_fulltext) queued this
                # item since the search read it: look again.
        raise StoreError(
            f"create_job_for_unqueued lost {_MAX_CREATE_ATTEMPTS} races in a row "
            "(retryable: the same call may succeed if made again)",
            retryable=True,
        )

    def save_many(self, jobs: Iterable[FullText]) -> None:
        checked = check_jobs(jobs)
        if not checked:
            return
        duplicate = "one of the jobs would be a second job for its item and destination"
        with self._transaction("save_many", duplicate=duplicate) as session:
            session.execute(self._sql.upsert_jobs(checked))

    def enqueue_unqueued(self, destination: str, *, limit: int | None = None) -> int:
        check_destination(destination)
        if limit is not None:
            check_batch_size(limit)
        created = 0
        after: str | None = None
        while limit is None or created < limit:
            with self._transaction("enqueue_unqueued") as session:
                upper = session.execute(
                    self._sql.batch_upper_bound(after, self.enqueue_batch_size)
                ).scalar_one_or_none()
                remaining = None if limit is None else limit - created
                skip_queued = session.execute(
                    self._sql.any_queued(destination, after, upper)
                ).scalar_one()
                result = session.execute(
                    self._sql.enqueue_batch(
                        destination, after, upper, remaining, skip_queued=skip_queued
                    )
                )
                created += cast("sa.CursorResult[Any]", result).rowcount
            if upper is None:
                break
            after = upper
        return created

    def claim_ready(self, destination: str, n: int) -> list[FullText]:
        check_destination(destination)
        check_batch_size(n)
        with self._transaction("claim_ready") as session:
            rows = session.execute(self._sql.claim_many(destination, n, self._clock())).all()
        return [to_job(row) for row in sorted(rows, key=lambda row: row.seq)]

    def count_unqueued(self, destination: str) -> int:
        check_destination(destination)
        with self._transaction("count_unqueued") as session:
            return session.execute(self._sql.count_unqueued(destination)).scalar_one()

    def stats(self, destination: str | None = None) -> list[DestinationStats]:
        if destination is not None:
            check_destination(destination)
        with self._transaction("stats") as session:
            counts: dict[str, dict[str, int]] = {}
            for name, status, count in session.execute(self._sql.count_by_status(destination)):
                counts.setdefault(name, {})[status] = count
            names = [destination] if destination is not None else sorted(counts)
            return [
                DestinationStats.of(
                    name,
                    counts.get(name, {}),
                    session.execute(self._sql.count_unqueued(name)).scalar_one(),
                )
                for name in names
            ]

    def get_ready_job(self, destination: str) -> FullText:
        check_destination(destination)
        with self._transaction("get_ready_job") as session:
            row = session.execute(self._sql.claim_one(destination, self._clock())).one_or_none()
        if row is None:
            raise NoJobs(f"no job is ready for {destination!r}")
        return to_job(row)

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


def _is_pair_violation(exc: sa.exc.IntegrityError) -> bool:
    diag = getattr(exc.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    if constraint is not None:
        return bool(constraint == "jobs_fulltext_unique")
    message = str(exc.orig)
    return "UNIQUE constraint failed" in message and "item_id" in message
