"""The SQLAlchemy adapter: PostgreSQL (through psycopg 3) and SQLite.

Each call runs in its own short transaction on a pooled connection of the
engine the repository was given (a sessionmaker's engine, if given one); a
call that is one statement runs in autocommit on PostgreSQL. The statements
themselves, with why each is safe under concurrency, are in
`fulltext_jobs.statements`.
"""

from __future__ import annotations

import copy
import logging
import operator
import re
import uuid
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from fulltext_jobs._lazy import IfImported, if_imported
from fulltext_jobs.audit import AuditCheck, AuditProblem, AuditSettings, sort_problems
from fulltext_jobs.checks import (
    check_batch_size,
    check_clock,
    check_item_ids,
    check_lease,
    read_clock,
)
from fulltext_jobs.domain import DEFAULT_LEASE, DestinationStats, FullText, JobStatus
from fulltext_jobs.engine import (
    configure_sqlite,
    is_retryable,
    quiet_lost_pipelines,
    store_error,
)
from fulltext_jobs.errors import (
    AllQueued,
    DuplicateJob,
    InvalidInput,
    JobNotFound,
    LostClaim,
    NoJobs,
    NotSupported,
    StaleJob,
    StoreError,
)
from fulltext_jobs.migrate import UPGRADE_ADVICE, SchemaState, check_schema
from fulltext_jobs.notifications import PostgresReadyListener
from fulltext_jobs.port import Hold, ReadyListener, hold_copy
from fulltext_jobs.rate_limit import RateTokens, wait_for_next
from fulltext_jobs.repository import Repository
from fulltext_jobs.schema import SUPPORTED_DIALECTS, tables_for
from fulltext_jobs.statements import (
    ItemSource,
    Statements,
    compile_for_driver,
    held_arrays,
    held_from_values,
    job_arrays,
    job_from_values,
    job_row,
    to_job,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import pq
    from sqlalchemy.orm import Session, sessionmaker
else:
    # Only to test objects against: a command on SQLite imports neither
    # psycopg nor the ORM, and none of their objects exist until they are
    # imported (see `_lazy`).
    psycopg = IfImported("psycopg")
    pq = IfImported("psycopg.pq")
    Session = if_imported("sqlalchemy.orm", "Session")
    sessionmaker = if_imported("sqlalchemy.orm", "sessionmaker")

__all__ = ["UPGRADE_ADVICE", "ItemSource", "SqlAlchemyRepository"]

#: What each engine's database was found to be, learnt by the first call on
#: it: a repository per request (or per `in_session` view) costs no second
#: check. A deploy migrates first and then starts new processes, so a
#: process never needs to see its engine's database change revision. Weak
#: keys: an engine that is garbage-collected is forgotten with it.
_SCHEMAS: weakref.WeakKeyDictionary[Engine, SchemaState] = weakref.WeakKeyDictionary()

#: On SQLite the lease must be at least this many busy timeouts (see
#: `_check_sqlite_lease`).
SQLITE_LEASE_PER_BUSY_TIMEOUT: Final = 2

_log = logging.getLogger(__name__)

_BATCH_DUPLICATE: Final = "one of the jobs would be a second job for its item and destination"

# A caller that loses the race for an item tries again; each lost race means
# another caller won, so this bound is only reached if something is wrong.
_MAX_CREATE_ATTEMPTS: Final = 1000


class SqlAlchemyRepository(Repository):
    """A `Repository` in PostgreSQL or SQLite, through SQLAlchemy 2.

    `bind` is an Engine, or a sessionmaker whose engine is used; every call
    runs in a transaction of its own and commits before it returns. `bind`
    may also be a `Session`: then the repository joins the caller's
    transaction instead (see `in_session`). `items`
    is where the items come from (an `ItemSource`, or anything `ItemSource`
    accepts); by default the `items` table that the migrations create.
    `clock` returns the current time (aware): it stamps `started` and
    leases, so the machines sharing a database need clocks in step to well
    within a lease. `lease` is how long a claim lasts without a heartbeat.
    `enqueue_batch_size` is how many items `enqueue_unqueued` queues per
    transaction. Raises `InvalidInput` for a `clock` that is not callable,
    a `lease` that is not a timedelta above zero and at most `MAX_LEASE`,
    or an `enqueue_batch_size` outside 1 to `MAX_BATCH_SIZE`; each reading
    of the clock is checked before it is used (see
    `fulltext_jobs.repository`). On SQLite the lease should be at least twice
    the busy timeout (a save or heartbeat may wait that long for the write
    lock): the first call logs a warning if it is not.

    `mixed_fleet`: whether creators (`create_job_for_unqueued`,
    `enqueue_unqueued`) also take the Go original's advisory lock
    (`pg_advisory_xact_lock(10)`), so that the original's creators, which
    take it and then search with `NOT EXISTS`, never meet a job of ours
    created under their feet (a duplicate-key error on their side). None,
    the default, means: on a PostgreSQL database adopted from the original
    (`fulltext_jobs.adopt`), off elsewhere. It serialises creators of every
    destination, as the original does, so turn it off once no Go creator is
    left.

    A SQLite engine is given WAL, a busy timeout and `BEGIN IMMEDIATE` (see
    `fulltext_jobs.configure_sqlite`). The first call on an engine checks
    that its database is at a revision this version can use (its own, or a
    newer one inside the compatibility window) and raises
    `SchemaNotMigrated` (upgrade the database) or `SchemaTooNew` (upgrade
    the library), naming what to run, if not.
    """

    def __init__(  # noqa: PLR0913 - each is a setting a deployment tunes
        self,
        bind: Engine | sessionmaker[Session] | Session,
        *,
        items: ItemSource | sa.FromClause | sa.Select[Any] | type[Any] | None = None,
        clock: Callable[[], datetime] | None = None,
        lease: timedelta = DEFAULT_LEASE,
        enqueue_batch_size: int = 50_000,
        mixed_fleet: bool | None = None,
    ) -> None:
        session = None
        if isinstance(bind, Session):
            session, bind = bind, _session_engine(bind)
        if isinstance(bind, sessionmaker) and isinstance(bind.kw.get("bind"), Engine):
            bind = bind.kw["bind"]
        if not isinstance(bind, Engine):
            msg = f"bind must be an Engine or a sessionmaker bound to one, not {bind!r}"
            raise InvalidInput(msg)
        if bind.dialect.name not in SUPPORTED_DIALECTS:
            msg = f"fulltext-jobs supports PostgreSQL and SQLite, not {bind.dialect.name}"
            raise InvalidInput(msg)
        configure_sqlite(bind)
        self._engine = bind
        # A call that is one statement needs no BEGIN and COMMIT: on
        # PostgreSQL it runs in autocommit, saving two round trips. SQLite
        # keeps its transactions, which take the write lock up front.
        self._autocommit_engine = (
            bind.execution_options(isolation_level="AUTOCOMMIT")
            if bind.dialect.name == "postgresql"
            else None
        )
        tables = tables_for(bind.dialect.name)
        if items is None:
            items = ItemSource(tables.items)
        self._items = items if isinstance(items, ItemSource) else ItemSource(items)
        self._owns_items = self._items.from_clause is tables.items
        self._sql = Statements(tables, self._items, bind.dialect.name)
        # The hot path drives psycopg's own cursor; an asyncio engine's
        # driver is psycopg's async one, behind SQLAlchemy's adaptation.
        self._hot = (
            _HotPath(self._sql, bind)
            if bind.dialect.name == "postgresql" and not bind.dialect.is_async
            else None
        )
        self._clock = check_clock(clock)
        # The rate limit's bucket reads the server's clock on PostgreSQL,
        # unless a clock was given (see `_take_rate_tokens`).
        self._server_clock = clock is None and bind.dialect.name == "postgresql"
        self._enqueue_batch_size = check_batch_size(enqueue_batch_size)
        self._lease = check_lease(lease)
        if mixed_fleet is not None and not isinstance(mixed_fleet, bool):
            msg = f"mixed_fleet must be True, False or None, not {mixed_fleet!r}"
            raise InvalidInput(msg)
        self._mixed_fleet = mixed_fleet
        self._session: Session | None = session

    def in_session(self, session: Session) -> SqlAlchemyRepository:
        """This repository, joined to the caller's `session`: a cheap view
        that shares everything but the transaction, so an app can build the
        repository once and join each request's session.

        In a session, every call runs on the session's connection inside a
        SAVEPOINT, after flushing the session (so the app's pending writes
        come first). It never commits: the caller does, and the call's effect
        (a claim, a finish, new jobs) commits or rolls back with the app's
        own writes. A call that fails (`DuplicateJob`, `LostClaim`, ...)
        rolls back to its savepoint only: the caller's transaction stays
        usable and holds nothing of the call.

        A failure that can pass (a lost connection, a server restarting, a
        deadlock, a lock wait that timed out) raises a retryable `StoreError`,
        also when it surfaces in the flush of the app's pending writes; the
        app's own errors from that flush (an `IntegrityError` of its table)
        are raised as they are. After a `StoreError` the transaction is
        lost: roll the session back and do the whole unit of work again,
        from the claim (see docs/guide-web-app.md).

        A claim's row lock lasts until the caller commits: other workers pass
        the job over meanwhile (on SQLite, whose locks are per database, they
        wait). Commit soon after the work is done, and do not do long work
        inside the claiming transaction: a long-open transaction holds back
        vacuum for the whole database and slows every claim.

        Raises `InvalidInput` if `session` is not a Session bound to an
        engine of this repository's database kind.
        """
        check_same_kind(_session_engine(session), self._engine)
        joined = copy.copy(self)
        joined._session = session  # noqa: SLF001 - a copy of this very class
        return joined

    def add_items(self, item_ids: Iterable[str], *, batch_size: int = 10_000) -> int:
        """Add items to the default `items` table; return how many were new.

        Ids already there are left alone. All ids are checked before anything
        is written: a bad one raises `InvalidInput` and adds nothing. Each
        batch of `batch_size` ids commits on its own, so a failure part way
        through (`StoreError`) leaves the earlier batches added. Raises
        `InvalidInput` when the repository reads an app's own item source,
        which is the app's to fill, for a `batch_size` that is not a whole
        number from 1 to 1,000,000, and for `item_ids` given as one str.
        """
        if not self._owns_items:
            msg = "add_items fills the default items table; this repository reads the app's own"
            raise InvalidInput(msg)
        if self._engine.dialect.name == "postgresql" and self._schema_state().adopted:
            msg = (
                "add_items fills the default items table, which on a database adopted from "
                "the Go original is a view of the original's items: add items there"
            )
            raise InvalidInput(msg)
        check_batch_size(batch_size)
        ids = check_item_ids(item_ids)
        added = 0
        for start in range(0, len(ids), batch_size):
            rows = [{"id": item_id} for item_id in ids[start : start + batch_size]]
            with self._connection("add_items") as connection:
                added += len(connection.execute(self._sql.add_items(), rows).all())
        return added

    def _get_fulltext(self, key: uuid.UUID) -> FullText:
        with self._connection("get_fulltext", single_statement=True) as connection:
            row = connection.execute(self._sql.select_job, {"id": key}).one_or_none()
        if row is None:
            raise JobNotFound(f"no job has id {key}")
        return to_job(row)

    def _save_fulltext(self, stored: FullText) -> None:
        if self._hot is not None and self._session is None:
            # The single-job loop's finish: one statement, run alone.
            hot = self._hot.update_job if stored.version else self._hot.insert_job
            wrote = self._run_alone(hot, job_row(stored), "save_fulltext", duplicate_of=stored)
            if wrote is None:
                raise StaleJob(_stale_message(stored))
            return
        with self._connection(
            "save_fulltext", single_statement=True, duplicate=_duplicate_message(stored)
        ) as connection:
            written = self._save_rows(connection, [stored])
        if not written:
            raise StaleJob(_stale_message(stored))

    def _save_many(self, checked: list[FullText]) -> None:
        with self._connection("save_many", duplicate=_BATCH_DUPLICATE) as connection:
            # Each row is the compare-and-swap of save_fulltext; the
            # transaction makes them all or nothing.
            written = self._save_rows(connection, checked)
            if len(written) != len(checked):
                # Leaving the block with an exception rolls every row back.
                raise StaleJob(
                    f"{len(checked) - len(written)} of the jobs have changed since they were "
                    "read (or lost their claims); nothing was saved"
                )

    def _save_each(self, checked: list[FullText]) -> set[uuid.UUID]:
        # On PostgreSQL a batch of stored jobs is one statement, which
        # needs no transaction of its own.
        one_statement = self._sql.postgresql and all(job.version for job in checked)
        with self._connection(
            "save_many", single_statement=one_statement, duplicate=_BATCH_DUPLICATE
        ) as connection:
            written = self._save_rows(connection, checked)
        return {job.id for job in checked} - written

    def _save_rows(self, connection: sa.Connection, jobs: list[FullText]) -> set[uuid.UUID]:
        """Run each job's save (`insert_job` for a job never stored, else
        `update_job`); return the ids of the jobs that wrote their row.

        On PostgreSQL, a batch of stored jobs is one `update_jobs`
        statement; a batch of new ones is one pipeline of `insert_job`."""
        inserts = [job.version == 0 for job in jobs]
        if self._sql.postgresql and len(jobs) > 1 and not any(inserts):
            arrays = job_arrays(jobs)
            if self._hot is not None:
                return {row[0] for row in self._hot.update_jobs.run_all(connection, arrays)}
            return set(connection.execute(self._sql.update_jobs, arrays).scalars())
        rows = [job_row(job) for job in jobs]
        if self._hot is not None and all(inserts):
            # One kind of statement: pipelined, in one round trip.
            returned = self._hot.insert_job.run_many(connection, rows)
            return {job.id for job, row in zip(jobs, returned, strict=True) if row}
        written = set()
        for job, insert, row in zip(jobs, inserts, rows, strict=True):
            if self._hot is not None:
                hot = self._hot.insert_job if insert else self._hot.update_job
                wrote = hot.run(connection, row) is not None
            else:
                statement = self._sql.insert_job if insert else self._sql.update_job
                wrote = connection.execute(statement, row).first() is not None
            if wrote:
                written.add(job.id)
        return written

    def _heartbeat(self, job: FullText) -> datetime:
        lease_until = read_clock(self._clock, self._lease) + self._lease
        with self._connection("heartbeat", single_statement=True) as connection:
            extended: datetime | None = connection.execute(
                self._sql.heartbeat,
                {"job_id": job.id, "token": job.claim_token, "lease_until": lease_until},
            ).scalar_one_or_none()
        if extended is None:
            raise LostClaim(f"job {job.id} is no longer held by this claim")
        return extended

    def _rescue_expired(self, destination: str | None, max_attempts: int) -> list[uuid.UUID]:
        now = read_clock(self._clock, self._lease)
        with self._connection("rescue_expired", single_statement=True) as connection:
            return list(
                connection.execute(
                    self._sql.rescue_expired(destination),
                    {"now": now, "max_attempts": max_attempts},
                ).scalars()
            )

    def _retry(
        self, destination: str, statuses: frozenset[JobStatus], item_ids: frozenset[str] | None
    ) -> int:
        chosen = sorted(status.value for status in statuses)
        only = None if item_ids is None else sorted(item_ids)
        with self._connection("retry", single_statement=True) as connection:
            return connection.execute(self._sql.retry(destination, chosen, only)).rowcount

    def _create_job_for_unqueued(self, destination: str) -> FullText:
        sql = self._sql
        with self._connection("create_job_for_unqueued") as connection:
            self._lock_out_original_creators(connection)
            params = {"dest": destination}
            watermark = connection.execute(sql.lock_cursor, params).scalar_one()
            for _ in range(_MAX_CREATE_ATTEMPTS):
                item_id = connection.execute(
                    sql.find_unqueued_above, {**params, "after": watermark}
                ).scalar_one_or_none()
                if item_id is None:
                    # Items that arrived below the watermark, or became
                    # eligible late: found by one scan from the start.
                    item_id = connection.execute(sql.find_unqueued, params).scalar_one_or_none()
                if item_id is None:
                    raise AllQueued(f"every eligible item has a job for {destination!r}")
                # Built directly: the id comes from the app's table, which
                # this library does not police; the database still enforces
                # one job per pair.
                job = FullText(id=uuid.uuid4(), item_id=item_id, destination=destination, version=1)
                inserted = connection.execute(
                    sql.insert_if_unqueued, {**params, "new_id": job.id, "new_item_id": item_id}
                ).scalar_one_or_none()
                if item_id > watermark:
                    connection.execute(sql.move_cursor, {**params, "new_item_id": item_id})
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

    def _enqueue_unqueued(
        self, destination: str, *, limit: int | None, progress: Callable[[int], object] | None
    ) -> int:
        created = 0
        after: str | None = None
        while limit is None or created < limit:
            with self._connection("enqueue_unqueued") as connection:
                self._lock_out_original_creators(connection)
                upper = connection.execute(
                    self._sql.batch_upper_bound(after, self._enqueue_batch_size)
                ).scalar_one_or_none()
                skip_queued = connection.execute(
                    self._sql.any_queued(destination, after, upper)
                ).scalar_one()
                remaining = None if limit is None else limit - created
                batch = connection.execute(
                    self._sql.enqueue_batch(
                        destination, after, upper, remaining, skip_queued=skip_queued
                    )
                ).rowcount
            created += batch
            if progress is not None:
                progress(batch)
            if upper is None:
                break
            after = upper
        return created

    def _enqueue_new(self, destination: str, sweep_interval: timedelta) -> int:
        now = read_clock(self._clock, self._lease)
        sequenced = self._sequenced()
        key = self._sql.producer_key(sequenced=sequenced)
        params = {"dest": destination}
        created = 0
        while True:
            # Each batch in a transaction of its own, holding the producer's
            # row, so that producers of one destination take turns; an idle
            # call is this one transaction: the lock and one index probe.
            with self._connection("enqueue_new") as connection:
                self._lock_out_original_creators(connection)
                row = connection.execute(self._sql.lock_producer, params).one()
                if row.swept_at is None or row.swept_at + sweep_interval <= now:
                    break  # a sweep is due (it also takes what is new)
                watermark = (row.item_seq or 0) if sequenced else row.item_id
                upper, found = connection.execute(
                    self._sql.new_items(key, watermark, self._enqueue_batch_size)
                ).one()
                if not found:
                    return created
                created += connection.execute(
                    self._sql.enqueue_batch(
                        destination, watermark, upper, None, skip_queued=False, key=key
                    )
                ).rowcount
                connection.execute(
                    self._sql.move_producer(sequenced=sequenced, swept=False),
                    {**params, "upper": upper},
                )
            if found < self._enqueue_batch_size:
                return created
        return self._sweep(destination, key, now, sequenced=sequenced)

    def _sweep(
        self, destination: str, key: sa.ColumnElement[Any], now: datetime, *, sequenced: bool
    ) -> int:
        """The producer's full sweep: every unqueued eligible item, then the
        watermark moved to the largest key there was before the sweep began
        (an item added meanwhile is past it, and found next time).

        The producer's row is not held through the sweep, which runs in
        batches of their own: two producers that find a sweep due at the
        same moment both sweep, which costs time only (the inserts pass
        over each other's jobs)."""
        with self._connection("enqueue_new") as connection:
            top = connection.execute(self._sql.top_key(key)).scalar_one_or_none()
        created = self._enqueue_unqueued(destination, limit=None, progress=None)
        with self._connection("enqueue_new") as connection:
            connection.execute(self._sql.lock_producer, {"dest": destination})
            connection.execute(
                self._sql.move_producer(sequenced=sequenced, swept=True),
                {
                    "dest": destination,
                    "upper": (0 if sequenced else "") if top is None else top,
                    "now": now,
                },
            )
        return created

    def _sequenced(self) -> bool:
        """Whether the producer's watermark can be over the items' insertion
        order: the default items table, except the view an adopted database
        has in its place."""
        if not self._owns_items:
            return False
        return self._engine.dialect.name != "postgresql" or not self._schema_state().adopted

    def _has_destination(self, destination: str) -> bool:
        with self._connection("has_destination", single_statement=True) as connection:
            return bool(
                connection.execute(self._sql.has_destination, {"dest": destination}).scalar_one()
            )

    def _get_ready_job(self, destination: str) -> FullText:
        now = read_clock(self._clock, self._lease)
        params = {
            "dest": destination,
            "now": now,
            "token": uuid.uuid4(),
            "lease_until": now + self._lease,
        }
        if self._hot is not None and self._session is None:
            values = self._run_alone(self._hot.claim_one, params, "get_ready_job")
            job = None if values is None else job_from_values(values)
        else:
            with self._connection("get_ready_job", single_statement=True) as connection:
                if self._hot is None:
                    row = connection.execute(self._sql.claim_one, params).one_or_none()
                    job = None if row is None else to_job(row)
                else:
                    values = self._hot.claim_one.run(connection, params)
                    job = None if values is None else job_from_values(values)
        if job is None:
            raise NoJobs(f"no job is ready for {destination!r}")
        return job

    def _claim_ready(self, destination: str, n: int) -> list[FullText]:
        now = read_clock(self._clock, self._lease)
        params = {"dest": destination, "n": n, "now": now, "lease_until": now + self._lease}
        with self._connection("claim_ready", single_statement=True) as connection:
            if self._hot is not None:
                values = self._hot.claim_many.run_all(connection, params)
                # RETURNING keeps no order: `seq`, after the job's columns.
                values.sort(key=operator.itemgetter(len(self._sql.job_columns)))
                return [job_from_values(row) for row in values]
            rows = connection.execute(self._sql.claim_many, params).all()
        return [to_job(row) for row in sorted(rows, key=lambda row: row.seq)]

    @contextmanager
    def _hold_ready(self, destination: str, n: int) -> Iterator[Hold]:
        now = read_clock(self._clock, self._lease)
        params = {"dest": destination, "n": n, "now": now}
        with self._connection("hold_ready", duplicate=_BATCH_DUPLICATE) as connection:
            if _in_autocommit(connection):
                msg = (
                    "hold_ready needs a transaction to hold its jobs, and this engine runs "
                    "in autocommit (isolation_level='AUTOCOMMIT'), where the row locks would "
                    "end with the statement and another worker could take the same jobs: "
                    "use an engine without it, or the leased mode (claim_ready)"
                )
                raise NotSupported(msg)
            if self._hot is not None:
                rows = self._hot.hold_ready.run_all(connection, params)
                jobs = [held_from_values(row, now) for row in rows]
            else:
                found = connection.execute(self._sql.hold_ready, params)
                jobs = [hold_copy(to_job(row), now) for row in found]

            def write(checked: list[FullText], finished_as_held: bool) -> set[uuid.UUID]:  # noqa: FBT001 - the port's call
                written = self._write_held(connection, checked, now if finished_as_held else None)
                # Each job's row is written at most once, so a full count
                # means none was refused (the common case, told without
                # hashing a hundred ids).
                if len(written) == len(checked):
                    return set()
                return {job.id for job in checked} - set(written)

            # The caller's block runs here, inside the transaction; leaving
            # it with an exception rolls the transaction back.
            yield Hold(jobs, write)

    def _write_held(
        self, connection: sa.Connection, jobs: list[FullText], finished_from: datetime | None
    ) -> Collection[uuid.UUID]:
        """Write the outcomes of held jobs; return the ids written, each
        once. On PostgreSQL one statement (the port has checked that each
        job is still the held one: same item and destination): `finish_held`
        when every job is a plain finish of a hold from `finished_from`,
        else `write_held`."""
        if self._hot is None:
            return self._save_rows(connection, jobs)
        if finished_from is not None:
            params = {
                "job_id": [job.id for job in jobs],
                "read_version": [job.version for job in jobs],
                "finished": [job.finished for job in jobs],
                "started": finished_from,
            }
            rows = self._hot.finish_held.run_all(connection, params)
        else:
            rows = self._hot.write_held.run_all(connection, held_arrays(jobs))
        return [row[0] for row in rows]

    def _list_jobs(
        self,
        destination: str,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: str | None,
    ) -> list[FullText]:
        chosen = None if statuses is None else sorted(status.value for status in statuses)
        query = self._sql.list_jobs(destination, chosen, limit, after)
        with self._connection("list_jobs") as connection:
            return [to_job(row) for row in connection.execute(query)]

    # --- delays and rate limits -------------------------------------

    def _next_due(self, destination: str) -> datetime | None:
        now = read_clock(self._clock, self._lease)
        with self._connection("next_due", single_statement=True) as connection:
            due: datetime | None = connection.execute(
                self._sql.next_due, {"dest": destination, "now": now}
            ).scalar_one()
        return due

    def _take_rate_tokens(self, destination: str, rate: float, n: int, burst: int) -> RateTokens:
        # On PostgreSQL, the server's clock unless the repository was given
        # one (tests): see `Statements.take_rate_tokens`.
        now = None if self._server_clock else read_clock(self._clock, self._lease).timestamp()
        params = {"dest": destination, "now": now, "interval": 1 / rate, "burst": burst, "n": n}
        with self._connection("take_rate_tokens", single_statement=True) as connection:
            if self._hot is None:
                row = tuple(connection.execute(self._sql.take_rate_tokens, params).one())
            else:
                # A take precedes every claim of a limited worker: the
                # claim's own path, straight to the cursor.
                row = self._hot.take_rate_tokens.run(connection, params) or ()
            tat, granted, judged_at = row
        return RateTokens(granted, wait_for_next(tat, judged_at, rate, burst))

    def _listen(self, destination: str) -> ReadyListener | None:
        """On PostgreSQL, a listener on a connection of its own (see
        `fulltext_jobs.notifications`); on SQLite, which cannot notify, None."""
        if self._engine.dialect.name != "postgresql":
            return None
        return PostgresReadyListener(self._engine, destination)

    # --- audit ---------------------------------------------------

    def _audit(self, destination: str | None, settings: AuditSettings) -> list[AuditProblem]:
        now = read_clock(self._clock, self._lease)
        binds = {
            "now": now,
            "stale_before": now - settings.rescue_after,
            "future_after": now + settings.clock_tolerance,
            "max_attempts": settings.max_attempts,
        }
        problems = []
        # One transaction; on PostgreSQL (READ COMMITTED) each query still
        # sees the ledger as it is when that query runs, so a busy ledger's
        # examples may differ slightly from its counts. On SQLite the
        # transaction is BEGIN IMMEDIATE, as for `stats`: writers wait for
        # the audit (see docs/benchmarks.md for its cost).
        with self._connection("audit") as connection:
            for check, condition in self._sql.audit_conditions().items():
                counts = connection.execute(
                    self._sql.audit_counts(condition, destination), binds
                ).all()
                for name, count, oldest in counts:
                    examples = connection.execute(
                        self._sql.audit_examples(condition),
                        {**binds, "destination": name, "examples": settings.examples},
                    ).scalars()
                    problems.append(
                        AuditProblem(
                            destination=name,
                            check=check,
                            count=count,
                            examples=tuple(examples),
                            oldest_started=(
                                oldest if check is AuditCheck.RUNNING_WITHOUT_LEASE else None
                            ),
                        )
                    )
        return sort_problems(problems)

    def _release_unleased(self, older_than: timedelta, destination: str | None) -> list[uuid.UUID]:
        now = read_clock(self._clock, self._lease)
        with self._connection("release_unleased") as connection:
            released = connection.execute(
                self._sql.release_unleased(destination), {"started_before": now - older_than}
            ).scalars()
            return sorted(released)

    def _count_unqueued(self, destination: str) -> int:
        with self._connection("count_unqueued", single_statement=True) as connection:
            return connection.execute(self._sql.count_unqueued(destination)).scalar_one()

    def _stats(self, destination: str | None, unqueued: bool) -> list[DestinationStats]:  # noqa: FBT001 - checked by the port
        # One transaction, so the counts and the unqueued figures agree.
        with self._connection("stats", single_statement=not unqueued) as connection:
            counts: dict[str, dict[str, int]] = {}
            for name, status, count in connection.execute(self._sql.count_by_status(destination)):
                counts.setdefault(name, {})[status] = count
            names = [destination] if destination is not None else sorted(counts)
            return [
                DestinationStats.of(
                    name,
                    counts.get(name, {}),
                    connection.execute(self._sql.count_unqueued(name)).scalar_one()
                    if unqueued
                    else None,
                )
                for name in names
            ]

    @contextmanager
    def _connection(
        self, action: str, *, single_statement: bool = False, duplicate: str | None = None
    ) -> Iterator[sa.Connection]:
        """A connection in a transaction that commits on leaving and rolls
        back on an exception (`single_statement`: in autocommit where that
        saves round trips). A clash on (item_id, destination) becomes
        `DuplicateJob` (with the message `duplicate`), other driver errors
        `StoreError`."""
        if self._session is not None:
            # The app's pending writes go first.
            _flush(self._session, action)
        try:
            if self._session is not None:
                with self._in_session() as connection:
                    yield connection
            elif single_statement and self._autocommit_engine is not None:
                if not self._schema_checked:
                    self._check_schema()
                with self._autocommit_engine.connect() as connection:
                    yield connection
            else:
                if not self._schema_checked:
                    self._check_schema()
                with self._engine.begin() as connection:
                    yield connection
        except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
            # psycopg.Error: the driver's own, which some paths let through
            # unwrapped: a pooled connection closed under the pool fails when
            # the checkout sets its isolation level.
            failure = _failure(exc, action, duplicate)
            raise failure from (None if isinstance(failure, DuplicateJob) else exc)

    def _run_alone(
        self,
        hot: _Compiled,
        params: dict[str, Any],
        action: str,
        *,
        duplicate_of: FullText | None = None,
    ) -> tuple[Any, ...] | None:
        """Run one of the hot path's statements as a call of its own, in
        autocommit, on a connection of the engine's pool; return its first
        row, if any. Not in a session (see `_connection`).

        What `_connection(single_statement=True)` and `_Compiled.run` do,
        without a SQLAlchemy Connection around the pool's: one checked out
        of the autocommit engine sets the isolation level on checkout and
        resets it on checkin, about 19 us of Python a call where the pool's
        connection alone costs 7 (see `_Compiled.run_alone`). Errors are
        translated as `_connection` translates them; a clash on (item_id,
        destination) is `DuplicateJob` naming `duplicate_of`'s pair."""
        try:
            if not self._schema_checked:
                self._check_schema()
            pooled = self._engine.raw_connection()
            try:
                return hot.run_alone(pooled, params)
            finally:
                pooled.close()
        except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
            duplicate = None if duplicate_of is None else _duplicate_message(duplicate_of)
            failure = _failure(exc, action, duplicate)
            raise failure from (None if isinstance(failure, DuplicateJob) else exc)

    @contextmanager
    def _in_session(self) -> Iterator[sa.Connection]:
        """The session's connection, inside a savepoint released on leaving
        and rolled back to on an exception."""
        session = self._session
        if session is None:  # pragma: no cover - only called in a session
            msg = "not joined to a session"
            raise RuntimeError(msg)
        with session.begin_nested():
            connection = session.connection()
            if not self._schema_checked:
                self._check_schema(connection)
            yield connection

    def _lock_out_original_creators(self, connection: sa.Connection) -> None:
        """In a mixed fleet (see the class docstring), take the Go original's
        creator lock for the rest of the transaction."""
        mixed = self._mixed_fleet
        if mixed is None:
            state = _SCHEMAS.get(self._engine)
            mixed = state is not None and state.adopted
        if mixed and connection.dialect.name == "postgresql":
            connection.execute(self._sql.original_creator_lock)

    def _check_schema(self, connection: sa.Connection | None = None) -> None:
        """Check the database's schema once per engine (see
        `fulltext_jobs.migrate.check_schema`), on `connection` if given."""
        if connection is None:
            with self._engine.connect() as own:
                self._check_schema(own)
            return
        state = check_schema(connection, self._url())
        if connection.dialect.name == "sqlite":
            _check_sqlite_lease(connection, self._lease)
        _SCHEMAS[self._engine] = state

    def _schema_state(self) -> SchemaState:
        """What the first call on the engine found (checking now if none has
        been made)."""
        state = _SCHEMAS.get(self._engine)
        if state is None:
            try:
                self._check_schema()
            except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
                raise store_error(exc, "checking the schema") from exc
            state = _SCHEMAS[self._engine]
        return state

    @property
    def _schema_checked(self) -> bool:
        return self._engine in _SCHEMAS

    def _url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)


def _check_sqlite_lease(connection: sa.Connection, lease: timedelta) -> None:
    """Log a warning if `lease` is too short for SQLite's busy timeout.

    On SQLite a save or a heartbeat waits for the one write lock for up to
    the busy timeout, and that wait counts against the lease: a heartbeat
    due every third of the lease that waits the whole busy timeout must
    still land before the lease runs out, or the job is rescued and run
    twice (the late save is refused, so the ledger stays right). Hence a
    lease of at least `SQLITE_LEASE_PER_BUSY_TIMEOUT` busy timeouts. A
    warning, not an error: a test on a fake clock, or a database with one
    writer, may want a shorter one."""
    busy_ms = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    if not isinstance(busy_ms, int) or busy_ms <= 0:
        return
    needed = timedelta(milliseconds=busy_ms * SQLITE_LEASE_PER_BUSY_TIMEOUT)
    if lease < needed:
        _log.warning(
            "a lease of %g s is short for SQLite, whose busy timeout is %g s: a save or "
            "heartbeat waiting for the write lock may arrive after the lease ran out, and "
            "the job be run twice; use a lease of %g s or more, or a shorter busy timeout",
            lease.total_seconds(),
            busy_ms / 1000,
            needed.total_seconds(),
        )


def _flush(session: Session, action: str) -> None:
    """Flush the app's pending writes before a call in its session. Their
    errors are the app's (a constraint of its own table, bad data), except
    the ones no data causes and that pass: a lost connection, a server
    restarting, a deadlock or a lock wait that timed out. Those become a
    retryable `StoreError`, as they would in any call of the repository: the
    caller rolls back and does the whole unit of work again."""
    try:
        session.flush()
    except sa.exc.DBAPIError as exc:
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) and is_retryable(exc):
            raise store_error(exc, f"{action} (flushing the session)") from exc
        raise


def _in_autocommit(connection: sa.Connection) -> bool:
    """Whether `connection`'s driver connection commits every statement on
    its own (an engine made with isolation_level="AUTOCOMMIT"), where
    SQLAlchemy's `begin()` opens no transaction: on PostgreSQL, psycopg's
    `autocommit`. (SQLite's transactions are the `BEGIN IMMEDIATE` of
    `configure_sqlite`, not the driver's.)"""
    dbapi_connection = connection.connection.dbapi_connection
    return connection.dialect.name == "postgresql" and bool(
        getattr(dbapi_connection, "autocommit", False)
    )


def _failure(
    exc: sa.exc.SQLAlchemyError | psycopg.Error, action: str, duplicate: str | None
) -> DuplicateJob | StoreError:
    """What a call doing `action` raises for `exc`: `DuplicateJob` (with the
    message `duplicate`) for a clash on (item_id, destination), otherwise
    a `StoreError` (see `store_error`)."""
    if isinstance(exc, sa.exc.IntegrityError) and _is_pair_violation(exc):
        return DuplicateJob(duplicate)
    return store_error(exc, action)


def _duplicate_message(job: FullText) -> str:
    return f"a job already exists for item {job.item_id!r} and destination {job.destination!r}"


def _stale_message(job: FullText) -> str:
    if job.version == 0:
        return f"job {job.id} exists already: a new job cannot replace it; nothing was saved"
    return (
        f"job {job.id} has changed since this copy was read at version {job.version} "
        "(or its claim was lost); nothing was saved"
    )


def check_same_kind(session_engine: Engine, own: Engine) -> None:
    """Raise `InvalidInput` unless a session's engine is of the repository's
    database kind."""
    if session_engine.dialect.name != own.dialect.name:
        msg = (
            f"the session's database is {session_engine.dialect.name}; "
            f"this repository's is {own.dialect.name}"
        )
        raise InvalidInput(msg)


def _session_engine(session: object) -> Engine:
    """The engine a session is bound to (through a Connection, if it is
    bound to one); `InvalidInput` if there is none."""
    if not isinstance(session, Session):
        msg = f"expected a Session, not {session!r}"
        raise InvalidInput(msg)
    try:
        bind = session.get_bind()
    except sa.exc.UnboundExecutionError as exc:
        msg = "the session is bound to no engine"
        raise InvalidInput(msg) from exc
    return bind if isinstance(bind, Engine) else bind.engine


def _is_pair_violation(exc: sa.exc.IntegrityError) -> bool:
    diag = getattr(exc.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    if constraint is not None:
        return bool(constraint == "jobs_fulltext_unique")
    message = str(exc.orig)
    return "UNIQUE constraint failed" in message and "item_id" in message


#: The key of the cursor `_Compiled.run_alone` keeps in a pooled
#: connection's `info`.
_CURSOR: Final = "fulltext_jobs_cursor"


class _Compiled:
    """A statement compiled once, run straight on the DBAPI cursor.

    SQLAlchemy's execution layer (events, parameter and result processing,
    the compiled cache) costs more Python time than a claim costs the
    server: for the two calls a worker makes per job, going to the cursor
    directly is worth about a third more jobs per second (see
    docs/benchmarks.md). The SQL is still the one SQLAlchemy compiles from
    `Statements`; driver errors are wrapped in SQLAlchemy's exception
    classes, so that they are translated in one place, as for every other
    call; and a lost connection discards the pool, as SQLAlchemy does.
    """

    def __init__(
        self,
        statement: sa.ClauseElement,
        engine: Engine,
        keys: list[str],
        *,
        binary: bool = False,
    ) -> None:
        self.sql, self.defaults = compile_for_driver(statement, engine.dialect, keys)
        if binary:
            # Parameters sent in binary: psycopg dumps a list as an array
            # without quoting each element in Python, which for the arrays
            # of a batch save costs more than the statement's round trip.
            self.sql = re.sub(r"%\((\w+)\)s", r"%(\1)b", self.sql)
        self.engine = engine

    def run(self, connection: sa.Connection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """Execute with `params`; return the first row, if any."""
        rows = self.run_all(connection, params, first=True)
        return rows[0] if rows else None

    def run_alone(
        self, pooled: PoolProxiedConnection, params: dict[str, Any]
    ) -> tuple[Any, ...] | None:
        """Execute with `params` in autocommit on `pooled`, a connection
        just checked out of the engine's pool; return the first row, if any.

        The connection goes back to the autocommit setting it came with
        before this returns: the pool hands it to transactional calls next
        (the app's too), which SQLAlchemy begins implicitly on a connection
        that is not in autocommit. If it cannot (the connection was lost),
        it is invalidated instead: the pool replaces it on its next
        checkout. A SQLAlchemy Connection of an autocommit engine makes the
        same switch and back through its isolation level, with several times
        the Python work per call.
        """
        dbapi_connection = pooled.dbapi_connection
        if dbapi_connection is None:  # pragma: no cover - the connection was just checked out
            msg = "the connection has been invalidated"
            raise sa.exc.ResourceClosedError(msg)
        # An engine made with isolation_level="AUTOCOMMIT" hands out
        # connections in autocommit already: leave them so.
        switched = not dbapi_connection.autocommit
        try:
            if switched:
                dbapi_connection.autocommit = True
            # A cursor kept with the driver connection (the pool clears
            # `info` when it replaces the connection): making one per call
            # costs a few microseconds.
            cursor = pooled.info.get(_CURSOR)
            if cursor is None or cursor.connection is not dbapi_connection:
                cursor = pooled.info[_CURSOR] = dbapi_connection.cursor()
            cursor.execute(self.sql, {**self.defaults, **params})
            # Every statement of the hot path returns rows; fetchone,
            # unlike `description`, builds no column objects.
            row: tuple[Any, ...] | None = cursor.fetchone()
        except psycopg.Error as exc:
            raise self._wrapped(pooled, exc, params) from exc
        finally:
            if switched and pooled.dbapi_connection is not None:
                try:
                    dbapi_connection.autocommit = False
                except psycopg.Error as exc:
                    # Lost, most likely. The statement's outcome stands
                    # (autocommit committed it, or it failed), but the
                    # connection may still be in autocommit: the pool
                    # must not hand it out again.
                    self.engine.pool._invalidate(pooled, exc)  # noqa: SLF001
        return row

    def run_all(
        self, connection: sa.Connection, params: dict[str, Any], *, first: bool = False
    ) -> list[tuple[Any, ...]]:
        """Execute with `params`; return every row (or only the first)."""
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is None:  # pragma: no cover - the connection was just checked out
            msg = "the connection has been invalidated"
            raise sa.exc.ResourceClosedError(msg)
        cursor = self._cursor(connection, dbapi_connection, params)
        try:
            cursor.execute(self.sql, {**self.defaults, **params})
            rows: list[tuple[Any, ...]] = []
            if cursor.description:
                rows = cursor.fetchmany(1) if first else cursor.fetchall()
        except psycopg.Error as exc:
            raise self._wrapped(connection, exc, params) from exc
        finally:
            cursor.close()
        return rows

    def _cursor(
        self,
        connection: sa.Connection,
        dbapi_connection: Any,  # noqa: ANN401 - the driver's connection
        params: dict[str, Any] | list[dict[str, Any]],
    ) -> Any:  # noqa: ANN401 - the driver's cursor
        """A cursor; a connection the driver already knows to be closed
        raises here, wrapped like any error of the statement."""
        try:
            return dbapi_connection.cursor()
        except psycopg.Error as exc:
            raise self._wrapped(connection, exc, params) from exc

    def _wrapped(
        self,
        connection: sa.Connection | PoolProxiedConnection,
        exc: psycopg.Error,
        params: dict[str, Any] | list[dict[str, Any]],
    ) -> sa.exc.StatementError:
        """The driver error as SQLAlchemy's. If the connection was lost (only
        if it says so: a lock or statement timeout is an OperationalError
        too, on a healthy connection), it is invalidated and the pool's idle
        connections are discarded: whatever killed one (a server restart, a
        network cut) killed them too, and the next call must not meet them.
        `connection` is a SQLAlchemy Connection or the pool's own."""
        pooled = connection.connection if isinstance(connection, sa.Connection) else connection
        dbapi_connection = pooled.dbapi_connection
        lost = bool(getattr(dbapi_connection, "closed", False)) or bool(
            getattr(dbapi_connection, "broken", False)
        )
        # A pipeline (save_many's) that the server's shutdown cut short can
        # leave the connection stuck in pipeline mode, though not yet seen
        # closed ("cannot exit pipeline mode while busy"): nothing more can
        # run on it, not even the rollback, so it is as good as lost.
        pgconn = getattr(dbapi_connection, "pgconn", None)
        lost = lost or (pgconn is not None and pgconn.pipeline_status != pq.PipelineStatus.OFF)
        if lost:
            # What SQLAlchemy's own execution does on a disconnect: mark every
            # connection of the pool older than now as stale (each is replaced
            # on its next checkout, and closed properly), and this one invalid.
            self.engine.pool._invalidate(pooled, exc)  # noqa: SLF001
            if isinstance(connection, sa.Connection):
                # The pool's connection is invalid now; the Connection
                # around it learns so here.
                connection.invalidate(exc)
        return sa.exc.DBAPIError.instance(
            self.sql, params, exc, psycopg.Error, connection_invalidated=lost
        )

    def run_many(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> list[bool]:
        """Execute once per row of parameters, pipelined (one round trip);
        return, for each, whether it returned a row."""
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is None:  # pragma: no cover - the connection was just checked out
            msg = "the connection has been invalidated"
            raise sa.exc.ResourceClosedError(msg)
        cursor = self._cursor(connection, dbapi_connection, rows)
        if not isinstance(cursor, psycopg.Cursor):  # pragma: no cover - PostgreSQL is psycopg
            msg = f"expected a psycopg cursor, not {type(cursor).__name__}"
            raise TypeError(msg)
        try:
            cursor.executemany(self.sql, [{**self.defaults, **row} for row in rows], returning=True)
            returned = []
            while True:
                returned.append(bool(cursor.fetchall()))
                if not cursor.nextset():
                    return returned
        except psycopg.Error as exc:
            raise self._wrapped(connection, exc, rows) from exc
        finally:
            cursor.close()


class _HotPath:
    """The compiled forms of the statements on a worker's hot path."""

    def __init__(self, sql: Statements, engine: Engine) -> None:
        quiet_lost_pipelines()
        self.claim_one = _Compiled(sql.claim_one, engine, [])
        self.insert_job = _Compiled(sql.insert_job, engine, [])
        self.update_job = _Compiled(sql.update_job, engine, [])
        self.update_jobs = _Compiled(sql.update_jobs, engine, [], binary=True)
        self.claim_many = _Compiled(sql.claim_many, engine, [])
        self.hold_ready = _Compiled(sql.hold_ready, engine, [])
        self.write_held = _Compiled(sql.write_held, engine, [], binary=True)
        self.finish_held = _Compiled(sql.finish_held, engine, [], binary=True)
        self.take_rate_tokens = _Compiled(sql.take_rate_tokens, engine, [])
