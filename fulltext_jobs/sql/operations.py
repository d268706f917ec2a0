"""The SQLAlchemy adapter's operations: what each operation of the port
does in SQL, on arguments the port has checked.

`SqlAlchemyRepository` and `AsyncSqlAlchemyRepository` both run these, the
second from asyncio in SQLAlchemy's greenlet bridge; each call reaches the
database through `Transactions`. The statements themselves, with why each
is safe under concurrency, are in `fulltext_jobs.sql.statements`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fulltext_jobs.audit import (
    AuditCheck,
    AuditProblem,
    AuditSettings,
    paused_after,
    sort_problems,
)
from fulltext_jobs.checks import check_batch_size, check_clock, check_lease, read_clock
from fulltext_jobs.domain import (
    HOLDER_DIED_ERROR,
    HOLDER_DIED_FAILED,
    DestinationStats,
    FullText,
    JobStatus,
    lag_at,
)
from fulltext_jobs.errors import (
    AllQueued,
    InvalidInput,
    JobNotFound,
    LostClaim,
    StaleJob,
    StoreError,
)
from fulltext_jobs.port import ReadyListener
from fulltext_jobs.sql.cancelling import CancelOperations
from fulltext_jobs.sql.claiming import BATCH_DUPLICATE, ClaimOperations
from fulltext_jobs.sql.compiled import HotPath
from fulltext_jobs.sql.controlling import ControlOperations
from fulltext_jobs.sql.engine import configure_sqlite
from fulltext_jobs.sql.floors import floors_of
from fulltext_jobs.sql.following import DependencyOperations
from fulltext_jobs.sql.items import ItemSource
from fulltext_jobs.sql.notifications import PostgresReadyListener
from fulltext_jobs.sql.prioritizing import PriorityOperations
from fulltext_jobs.sql.rows import (
    controls_of,
    job_arrays,
    job_row,
    to_job,
)
from fulltext_jobs.sql.schema import SUPPORTED_DIALECTS, tables_for
from fulltext_jobs.sql.statements import Statements
from fulltext_jobs.sql.transactions import Transactions

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from fulltext_jobs.health import QueueHealth

__all__ = ["SqlOperations"]


# A caller that loses the race for an item tries again; each lost race means
# another caller won, so this bound is only reached if something is wrong.
_MAX_CREATE_ATTEMPTS: Final = 1000


class SqlOperations(
    ClaimOperations,
    ControlOperations,
    CancelOperations,
    PriorityOperations,
    DependencyOperations,
):
    """Every operation of the port on one engine (see
    `SqlAlchemyRepository` for the arguments, which this checks in the
    same order and with the same errors), on checked arguments.

    Raises `InvalidInput` for an engine that is neither PostgreSQL nor
    SQLite, a `clock` that is not callable, a `lease` that is not a
    timedelta above zero and at most `MAX_LEASE`, an `enqueue_batch_size`
    outside 1 to `MAX_BATCH_SIZE`, or a `mixed_fleet` that is not a bool or
    None.
    """

    def __init__(  # noqa: PLR0913 - the repository's settings, passed on
        self,
        engine: Engine,
        *,
        items: ItemSource | sa.FromClause | sa.Select[Any] | type[Any] | None,
        clock: Callable[[], datetime] | None,
        lease: timedelta,
        enqueue_batch_size: int,
        mixed_fleet: bool | None,
        session: Session | None = None,
    ) -> None:
        if engine.dialect.name not in SUPPORTED_DIALECTS:
            msg = f"fulltext-jobs supports PostgreSQL and SQLite, not {engine.dialect.name}"
            raise InvalidInput(msg)
        configure_sqlite(engine)
        self._engine = engine
        self._capped: set[str] = set()
        tables = tables_for(engine.dialect.name)
        if items is None:
            items = ItemSource(tables.items)
        self._items = items if isinstance(items, ItemSource) else ItemSource(items)
        self._owns_items = self._items.from_clause is tables.items
        self._sql = Statements(tables, self._items, engine.dialect.name)
        # The hot path drives psycopg's own cursor; an asyncio engine's
        # driver is psycopg's async one, behind SQLAlchemy's adaptation.
        self._hot = (
            HotPath(self._sql, engine)
            if engine.dialect.name == "postgresql" and not engine.dialect.is_async
            else None
        )
        self._clock = check_clock(clock)
        # The rate limit's bucket reads the server's clock on PostgreSQL,
        # unless a clock was given (see `take_rate_tokens`).
        self._server_clock = clock is None and engine.dialect.name == "postgresql"
        self._enqueue_batch_size = check_batch_size(enqueue_batch_size)
        self._lease = check_lease(lease)
        if mixed_fleet is not None and not isinstance(mixed_fleet, bool):
            msg = f"mixed_fleet must be True, False or None, not {mixed_fleet!r}"
            raise InvalidInput(msg)
        # Shared by every repository on this engine: a hint, good for all.
        self._floors = floors_of(engine) if self._sql.postgresql else None
        self._tx = Transactions(
            engine,
            lease=self._lease,
            creator_lock=self._sql.original_creator_lock,
            mixed_fleet=mixed_fleet,
            session=session,
        )

    @property
    def engine(self) -> Engine:
        """The engine every call runs on."""
        return self._engine

    @property
    def statements(self) -> Statements:
        """The statements the operations run."""
        return self._sql

    def in_session(self, session: Session) -> SqlOperations:
        """These operations in the caller's `session` (see
        `SqlAlchemyRepository.in_session`): a cheap copy that shares
        everything but the transaction. Raises `InvalidInput` if `session`
        is not a Session bound to an engine of this database kind."""
        joined = copy.copy(self)
        joined._tx = self._tx.in_session(session)  # noqa: SLF001 - a copy of this very class
        return joined

    def add_items(self, ids: list[str], batch_size: int) -> int:
        """Add checked `ids` to the default items table, `batch_size` a
        transaction (see `SqlAlchemyRepository.add_items`)."""
        if not self._owns_items:
            msg = "add_items fills the default items table; this repository reads the app's own"
            raise InvalidInput(msg)
        if self._engine.dialect.name == "postgresql" and self._tx.schema_state().adopted:
            msg = (
                "add_items fills the default items table, which on a database adopted from "
                "the Go original is a view of the original's items: add items there"
            )
            raise InvalidInput(msg)
        added = 0
        for start in range(0, len(ids), batch_size):
            rows = [{"id": item_id} for item_id in ids[start : start + batch_size]]
            with self._tx.connection("add_items") as connection:
                added += len(connection.execute(self._sql.add_items(), rows).all())
        return added

    def get_fulltext(self, key: uuid.UUID) -> FullText:
        with self._tx.connection("get_fulltext", single_statement=True) as connection:
            row = connection.execute(self._sql.select_job, {"id": key}).one_or_none()
        if row is None:
            raise JobNotFound(f"no job has id {key}")
        return to_job(row)

    def save_fulltext(self, stored: FullText) -> None:
        if self._hot is not None and not self._tx.joined:
            # The single-job loop's finish: one statement, run alone.
            hot = self._hot.update_job if stored.version else self._hot.insert_job
            wrote = self._tx.run_alone(hot, job_row(stored), "save_fulltext", duplicate=stored)
            if wrote is None:
                raise StaleJob(_stale_message(stored))
        else:
            with self._tx.connection(
                "save_fulltext", single_statement=True, duplicate=stored
            ) as connection:
                if not self._save_rows(connection, [stored]):
                    raise StaleJob(_stale_message(stored))
        self._returning_to_ready((stored,))

    def save_many(self, checked: list[FullText]) -> None:
        with self._tx.connection("save_many", duplicate=BATCH_DUPLICATE) as connection:
            # Each row is the compare-and-swap of save_fulltext; the
            # transaction makes them all or nothing.
            written = self._save_rows(connection, checked)
            if len(written) != len(checked):
                # Leaving the block with an exception rolls every row back.
                raise StaleJob(
                    f"{len(checked) - len(written)} of the jobs have changed since they were "
                    "read (or lost their claims); nothing was saved"
                )
        self._returning_to_ready(checked)

    def save_each(self, checked: list[FullText]) -> set[uuid.UUID]:
        # On PostgreSQL a batch of stored jobs is one statement, which
        # needs no transaction of its own.
        one_statement = self._sql.postgresql and all(job.version for job in checked)
        with self._tx.connection(
            "save_many", single_statement=one_statement, duplicate=BATCH_DUPLICATE
        ) as connection:
            written = self._save_rows(connection, checked)
        self._returning_to_ready(checked)
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

    def heartbeat(self, job: FullText) -> datetime:
        lease_until = read_clock(self._clock, self._lease) + self._lease
        with self._tx.connection("heartbeat", single_statement=True) as connection:
            extended: datetime | None = connection.execute(
                self._sql.heartbeat,
                {"job_id": job.id, "token": job.claim_token, "lease_until": lease_until},
            ).scalar_one_or_none()
        if extended is None:
            raise LostClaim(f"job {job.id} is no longer held by this claim")
        return extended

    def rescue_expired(self, destination: str | None, max_attempts: int) -> list[uuid.UUID]:
        now = read_clock(self._clock, self._lease)
        params = {"now": now, "max_attempts": max_attempts}
        with self._tx.connection("rescue_expired", single_statement=True) as connection:
            rescued = list(
                connection.execute(self._sql.rescue_expired(destination), params).scalars()
            )
        if self._sql.tables.holds is not None:
            # The transaction mode's dead holders (see migration 0012): each
            # death counts an attempt, as an expired lease does.
            params |= {
                "dest": destination,
                "rescued": HOLDER_DIED_ERROR,
                "failed": HOLDER_DIED_FAILED,
            }
            with self._tx.connection("rescue_expired", single_statement=True) as connection:
                rescued += connection.execute(self._sql.rescue_dead_holds, params).scalars()
        self._forget_floor(destination, len(rescued))
        return rescued

    def retry(
        self, destination: str, statuses: frozenset[JobStatus], item_ids: frozenset[str] | None
    ) -> int:
        chosen = sorted(status.value for status in statuses)
        only = None if item_ids is None else sorted(item_ids)
        now = read_clock(self._clock, self._lease)
        with self._tx.connection("retry", single_statement=True) as connection:
            retried = connection.execute(
                self._sql.retry(destination, chosen, only), {"now": now}
            ).rowcount
        self._forget_floor(destination, retried)
        return retried

    def create_job_for_unqueued(self, destination: str, priority: int) -> FullText:
        job = self._create_job(destination, priority)
        self._enqueued(destination, priority)  # committed: see `_enqueued`
        return job

    def _create_job(self, destination: str, priority: int) -> FullText:
        """`create_job_for_unqueued`'s job, made and committed."""
        sql = self._sql
        with self._tx.connection("create_job_for_unqueued") as connection:
            # Read in the transaction (on SQLite, once it has the write
            # lock): the job is not ready from before what made it eligible.
            now = read_clock(self._clock, self._lease)
            self._tx.lock_out_original_creators(connection)
            params: dict[str, Any] = {"dest": destination, "now": now}
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
                job = FullText(
                    id=uuid.uuid4(),
                    item_id=item_id,
                    destination=destination,
                    version=1,
                    priority=priority,
                    ready_at=now,
                )
                inserted = connection.execute(
                    sql.insert_if_unqueued,
                    {**params, "new_id": job.id, "new_item_id": item_id, "priority": priority},
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

    def enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None,
        progress: Callable[[int], object] | None,
        priority: int,
    ) -> int:
        created = 0
        after: str | None = None
        while limit is None or created < limit:
            with self._tx.connection("enqueue_unqueued") as connection:
                # Each batch's jobs are ready from when its transaction
                # begins (on SQLite, once it has the write lock): not from
                # before an upstream end that made one of them eligible.
                now = {"now": read_clock(self._clock, self._lease)}
                self._tx.lock_out_original_creators(connection)
                upper = connection.execute(
                    self._sql.batch_upper_bound(after, self._enqueue_batch_size)
                ).scalar_one_or_none()
                skip_queued = connection.execute(
                    self._sql.any_queued(destination, after, upper)
                ).scalar_one()
                remaining = None if limit is None else limit - created
                batch = connection.execute(
                    self._sql.enqueue_batch(
                        destination,
                        after,
                        upper,
                        remaining,
                        skip_queued=skip_queued,
                        priority=priority,
                    ),
                    now,
                ).rowcount
            if batch:
                self._enqueued(destination, priority)
            created += batch
            if progress is not None:
                progress(batch)
            if upper is None:
                break
            after = upper
        return created

    def enqueue_new(self, destination: str, sweep_interval: timedelta, priority: int) -> int:
        now = read_clock(self._clock, self._lease)
        sequenced = self._sequenced()
        key = self._sql.producer_key(sequenced=sequenced)
        params = {"dest": destination}
        # First the items the upstreams' ends let follow (none unless the
        # destination has upstreams): a probe of an index when none wait.
        created = self.enqueue_unblocked(destination, priority)
        while True:
            # Each batch in a transaction of its own, holding the producer's
            # row, so that producers of one destination take turns; an idle
            # call is this one transaction: the lock and one index probe.
            with self._tx.connection("enqueue_new") as connection:
                self._tx.lock_out_original_creators(connection)
                row = connection.execute(self._sql.lock_producer, params).one()
                if row.swept_at is None or row.swept_at + sweep_interval <= now:
                    break  # a sweep is due (it also takes what is new)
                watermark = (row.item_seq or 0) if sequenced else row.item_id
                upper, found = connection.execute(
                    self._sql.new_items(key, watermark, self._enqueue_batch_size)
                ).one()
                if not found:
                    return created
                batch = connection.execute(
                    self._sql.enqueue_batch(
                        destination,
                        watermark,
                        upper,
                        None,
                        skip_queued=False,
                        key=key,
                        priority=priority,
                    ),
                    {"now": read_clock(self._clock, self._lease)},  # as enqueue_unqueued's
                ).rowcount
                connection.execute(
                    self._sql.move_producer(sequenced=sequenced, swept=False),
                    {**params, "upper": upper},
                )
            if batch:
                self._enqueued(destination, priority)
            created += batch
            if found < self._enqueue_batch_size:
                return created
        return created + self._sweep(destination, key, now, sequenced=sequenced, priority=priority)

    def _sweep(
        self,
        destination: str,
        key: sa.ColumnElement[Any],
        now: datetime,
        *,
        sequenced: bool,
        priority: int,
    ) -> int:
        """The producer's full sweep: every unqueued eligible item, then the
        watermark moved to the largest key there was before the sweep began
        (an item added meanwhile is past it, and found next time).

        The producer's row is not held through the sweep, which runs in
        batches of their own: two producers that find a sweep due at the
        same moment both sweep, which costs time only (the inserts pass
        over each other's jobs)."""
        with self._tx.connection("enqueue_new") as connection:
            top = connection.execute(self._sql.top_key(key)).scalar_one_or_none()
        created = self.enqueue_unqueued(destination, limit=None, progress=None, priority=priority)
        with self._tx.connection("enqueue_new") as connection:
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
        return self._engine.dialect.name != "postgresql" or not self._tx.schema_state().adopted

    def has_destination(self, destination: str) -> bool:
        with self._tx.connection("has_destination", single_statement=True) as connection:
            return bool(
                connection.execute(self._sql.has_destination, {"dest": destination}).scalar_one()
            )

    def list_jobs(
        self,
        destination: str,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: str | None,
    ) -> list[FullText]:
        chosen = None if statuses is None else sorted(status.value for status in statuses)
        query = self._sql.list_jobs(destination, chosen, limit, after)
        with self._tx.connection("list_jobs") as connection:
            return [to_job(row) for row in connection.execute(query)]

    def listen(self, destination: str) -> ReadyListener | None:
        """On PostgreSQL, a listener on a connection of its own (see
        `fulltext_jobs.sql.notifications`); on SQLite, which cannot notify, None."""
        if self._engine.dialect.name != "postgresql":
            return None
        return PostgresReadyListener(self._engine, destination)

    # --- audit ---------------------------------------------------

    def audit(self, destination: str | None, settings: AuditSettings) -> list[AuditProblem]:
        now = read_clock(self._clock, self._lease)
        binds = {
            "now": now,
            "stale_before": now - settings.rescue_after,
            "future_after": now + settings.clock_tolerance,
            "max_attempts": settings.max_attempts,
            "examples": settings.examples,
        }
        problems = []
        # One transaction; on PostgreSQL (READ COMMITTED) each query still
        # sees the ledger as it is when that query runs, so a busy ledger's
        # examples may differ slightly from its counts. On SQLite the
        # transaction is BEGIN IMMEDIATE, as for `stats`: writers wait for
        # the audit (see docs/benchmarks.md for its cost).
        with self._tx.connection("audit") as connection:
            for check, condition in self._sql.audit_conditions().items():
                problems += self._audit_check(connection, check, condition, destination, binds)
            # Claims while paused: per destination paused now, the jobs
            # started since its pause began.
            controls = [controls_of(row) for row in connection.execute(self._sql.list_controls)]
            for name, after in paused_after(controls, settings, now).items():
                if destination in (None, name):
                    problems += self._audit_check(
                        connection,
                        AuditCheck.CLAIMED_WHILE_PAUSED,
                        self._sql.started_after,
                        name,
                        {**binds, "after": after},
                    )
            # Over its cap: more jobs running than a capped destination's cap.
            for one in controls:
                if one.max_running is not None and destination in (None, one.destination):
                    problems += [
                        found
                        for found in self._audit_check(
                            connection,
                            AuditCheck.OVER_CAP,
                            self._sql.running,
                            one.destination,
                            binds,
                        )
                        if found.count > one.max_running
                    ]
        return sort_problems(problems)

    def _audit_check(
        self,
        connection: sa.Connection,
        check: AuditCheck,
        condition: sa.ColumnElement[bool],
        destination: str | None,
        binds: dict[str, Any],
    ) -> list[AuditProblem]:
        """The findings of `check` (jobs meeting `condition`, of
        `destination` or of all) per destination, each with its examples."""
        problems = []
        counts = connection.execute(self._sql.audit_counts(condition, destination), binds).all()
        for name, count, oldest in counts:
            examples = connection.execute(
                self._sql.audit_examples(condition), {**binds, "destination": name}
            ).scalars()
            problems.append(
                AuditProblem(
                    destination=name,
                    check=check,
                    count=count,
                    examples=tuple(examples),
                    oldest_started=oldest if check is AuditCheck.RUNNING_WITHOUT_LEASE else None,
                )
            )
        return problems

    def queue_health(self, destination: str | None) -> QueueHealth:
        # Imported here: the dashboard's read model it stands on is no part
        # of a worker's claims and saves.
        from fulltext_jobs.sql.health import read_queue_health  # noqa: PLC0415

        now = read_clock(self._clock, self._lease)
        with self._tx.connection("queue_health") as connection:
            return read_queue_health(connection, now, destination)

    def release_unleased(self, older_than: timedelta, destination: str | None) -> list[uuid.UUID]:
        now = read_clock(self._clock, self._lease)
        with self._tx.connection("release_unleased") as connection:
            released = sorted(
                connection.execute(
                    self._sql.release_unleased(destination),
                    {"started_before": now - older_than, "now": now},
                ).scalars()
            )
        self._forget_floor(destination, len(released))
        return released

    def count_unqueued(self, destination: str) -> int:
        with self._tx.connection("count_unqueued", single_statement=True) as connection:
            return connection.execute(self._sql.count_unqueued(destination)).scalar_one()

    def lag(self, destination: str) -> timedelta | None:
        now = read_clock(self._clock, self._lease)
        with self._tx.connection("lag", single_statement=True) as connection:
            return self._lag(connection, destination, now)

    def _lag(self, connection: sa.Connection, destination: str, now: datetime) -> timedelta | None:
        """`destination`'s lag at `now`: one probe of the ready jobs' index
        by `ready_at` (see `Statements.oldest_ready_at`)."""
        oldest = connection.execute(self._sql.oldest_ready_at, {"dest": destination}).scalar()
        return lag_at(now, oldest)

    def stats(self, destination: str | None, unqueued: bool) -> list[DestinationStats]:  # noqa: FBT001 - checked by the port
        now = read_clock(self._clock, self._lease)
        # One transaction, so the counts and the unqueued figures agree.
        with self._tx.connection("stats", single_statement=not unqueued) as connection:
            if self._sql.fold_status_counts is not None:
                # Its own statement, before the count: in autocommit a
                # fold commits at once and holds nothing while we read.
                connection.execute(self._sql.fold_status_counts)
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
                    self._lag(connection, name, now),
                )
                for name in names
            ]


def _stale_message(job: FullText) -> str:
    if job.version == 0:
        return f"job {job.id} exists already: a new job cannot replace it; nothing was saved"
    return (
        f"job {job.id} has changed since this copy was read at version {job.version} "
        "(or its claim was lost); nothing was saved"
    )
