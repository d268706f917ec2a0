"""What the dashboard shows, read with SQL over the declared tables:
per destination, the counts by status and the unqueued items (the
figures of `Repository.stats`), jobs done per minute over the last
minutes and the rate they make, the lag (the oldest due job's wait), the
oldest running job, the next due ready job, the ready jobs waiting for a
retry (how many, when the next is due, the latest with their
`last_error`), and the latest failures with their `last_error`; and pages
of jobs by status.

Everything here only reads, on PostgreSQL and SQLite alike, and
`read_only_engine` makes the database enforce that: on PostgreSQL every
transaction is `READ ONLY`; on SQLite the connection is `query_only` and,
unlike the ledger's own engines, never begins with `BEGIN IMMEDIATE`, so a
dashboard refreshing every few seconds never takes the write lock from the
workers (in WAL mode readers and the writer do not wait for each other).

What it costs: the unqueued items are counted only on request (they read
every item, against every job: seconds at ten million); the counts by
status are what the database's triggers keep (migration 0019,
`Statements.count_by_status`: on PostgreSQL the sum per destination and
status plus the deltas not folded yet, which a read-only reader leaves
for the writers to fold), and the jobs ended per minute are read from the
index of ended jobs, the entries of the minutes shown only: neither grows
with the ledger. The latest failures
read the destination's failed jobs (the retryable index); the lag is one
probe of the ready jobs' index by `ready_at`; the oldest running job, the next
due ready job and the jobs waiting for a retry use the partial indexes on
running and ready jobs, so they read the running or ready jobs, never the
finished ones that pile up (`not_before` is in no index: the ready ones are
tested row by row, as a claim does). The dashboard caches one overview for
a second, whoever asks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from fulltext_jobs.audit import DEFAULT_RESCUE_AFTER, STUCK_CHECKS, AuditCheck
from fulltext_jobs.checks import check_destination
from fulltext_jobs.domain import (
    DestinationControls,
    DestinationStats,
    FullText,
    JobStatus,
    lag_at,
    utc,
)
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.pipeline import Dependency, shown_without_jobs, waiting_on_upstreams
from fulltext_jobs.sql.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine, parse_url
from fulltext_jobs.sql.errors import translated
from fulltext_jobs.sql.items import ItemSource
from fulltext_jobs.sql.migrate import check_schema
from fulltext_jobs.sql.rows import controls_of, dependencies_of, to_job
from fulltext_jobs.sql.schema import ENDED, UTCDateTime, tables_for
from fulltext_jobs.sql.statements import Statements

__all__ = [
    "DestinationOverview",
    "JobRow",
    "Minute",
    "Overview",
    "Rate",
    "RetryWait",
    "delayed_jobs",
    "has_status",
    "list_jobs",
    "next_due",
    "rate_of",
    "read_only_engine",
    "read_overview",
]

#: How many minutes of throughput an overview holds, by default.
DEFAULT_MINUTES: Final = 15

#: How many of the latest failures an overview holds per destination.
DEFAULT_FAILURES: Final = 5

#: The shortest span, in seconds, over which a rate is told: a worker that
#: has just started has not shown one yet.
RATE_MIN_SECONDS: Final = 10.0


def _retryable(ft: sa.Table) -> sa.ColumnElement[bool]:
    """The condition of the index of failed and skipped jobs, as it spells
    it: put beside `status = 'failed'`, so that SQLite's planner, which does
    not see that the one implies the other, reads that index, not every
    job."""
    return ft.c.status.in_([sa.literal_column(f"'{s}'") for s in ("failed", "skipped")])


#: The statuses a job ends a run in; each stamps `finished`.
_DONE: Final = (JobStatus.FINISHED, JobStatus.SKIPPED)


@dataclasses.dataclass(frozen=True, slots=True)
class JobRow:
    """One job as the dashboard shows it: the job, and its place in the
    enqueue sequence (`seq`), by which pages of jobs are cut."""

    job: FullText
    seq: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Minute:
    """Jobs of one destination that ended in one minute (UTC): `done`
    (finished or skipped) and `failed`."""

    start: datetime
    done: int = 0
    failed: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    """Jobs of one destination ended (done or failed) per minute lately.

    `per_minute` is counted over the span from `since` to when the overview
    was taken, and is None when that tells nothing yet (see `rate_of`);
    `ended` is how many jobs ended in the minutes held.
    """

    per_minute: float | None
    since: datetime
    ended: int


@dataclasses.dataclass(frozen=True, slots=True)
class RetryWait:
    """The ready jobs of one destination that wait for a retry: a worker gave
    them back with `not_before` still in the future (a backoff after an
    error), so no claim takes them before then."""

    #: How many there are.
    count: int = 0
    #: The earliest `not_before` among them, if any.
    next_due: datetime | None = None
    #: The latest of them, the latest due first (the ledger records no
    #: release time; a later `not_before` is the nearest sign of a later
    #: release), each with its `last_error` and `attempts`.
    latest: tuple[JobRow, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class DestinationOverview:
    """Where one destination stands."""

    stats: DestinationStats
    #: One entry a minute, oldest first, the last one the current minute.
    minutes: tuple[Minute, ...]
    #: The running job that started first, if any job is running.
    oldest_running: JobRow | None
    #: The ready job that will be claimed next: the oldest enqueued of those
    #: due (no `not_before`, or one that has passed), as a claim picks.
    next_ready: JobRow | None
    #: The latest failed jobs, the latest first.
    failures: tuple[JobRow, ...]
    #: The ready jobs that are not due yet: waiting for a retry.
    waiting_for_retry: RetryWait
    #: Jobs ended per minute lately.
    rate: Rate
    #: The destinations it follows (`Repository.depend`), and how many of
    #: their jobs have not ended (None when it follows none).
    upstreams: tuple[Dependency, ...] = ()
    to_come: int | None = None
    #: Running jobs no rescue returns, by audit check: the two checks of
    #: `Repository.audit` that the running-jobs index serves (the others read
    #: every job, too much for each refresh; run `fulltext-jobs audit`).
    stuck: dict[AuditCheck, int] = dataclasses.field(default_factory=dict)
    #: What operators set for it (a pause), as `Repository.controls` reads it.
    controls: DestinationControls | None = None

    @property
    def destination(self) -> str:
        return self.stats.destination

    def count(self, status: JobStatus) -> int:
        return self.stats.counts.get(status, 0)

    @property
    def total(self) -> int:
        """Jobs plus unqueued items (if counted): all the work the destination
        will see."""
        return self.stats.jobs + (self.stats.unqueued or 0)

    @property
    def done(self) -> int:
        """Jobs finished or skipped: nothing more to do for them."""
        return sum(self.count(status) for status in _DONE)

    @property
    def due(self) -> int:
        """Ready jobs a claim may take now: the ready ones less those waiting
        for a retry."""
        # The two counts are read by separate statements, which on
        # PostgreSQL may see different commits: never show a negative.
        return max(0, self.count(JobStatus.READY) - self.waiting_for_retry.count)

    @property
    def per_minute(self) -> float | None:
        """Jobs ended (done or failed) per minute lately, or None while too
        few have ended to tell (see `rate_of`)."""
        return self.rate.per_minute


def rate_of(ended: int, first_ended: datetime | None, start: datetime, now: datetime) -> Rate:
    """The rate of `ended` jobs that ended from `start` to `now`, the
    first of them at `first_ended`.

    Counted from the first job's end, not from `start`: a worker that
    started 30 s ago and ended 60 jobs does 120 a minute, not 60 over the
    whole window. That first end opens the span, so the rate is the other
    jobs over it; for a worker that ran all along, whose first end is near
    `start`, this is the count over the window. With no job ended it is 0
    over the whole span from `start`; with one job, or a span shorter than
    `RATE_MIN_SECONDS`, it is None: too little to tell a rate from.
    """
    if ended == 0 or first_ended is None:
        return Rate(per_minute=0.0, since=start, ended=0)
    since = max(start, first_ended)
    seconds = (now - since).total_seconds()
    if ended < 2 or seconds < RATE_MIN_SECONDS:
        return Rate(per_minute=None, since=since, ended=ended)
    return Rate(per_minute=60 * (ended - 1) / seconds, since=since, ended=ended)


@dataclasses.dataclass(frozen=True, slots=True)
class Overview:
    """Every destination with jobs, read at `taken`."""

    taken: datetime
    destinations: tuple[DestinationOverview, ...]


def read_only_engine(url: str | URL) -> Engine:
    """An engine for `url` on which the database refuses writes: PostgreSQL
    transactions are `READ ONLY`, SQLite connections `query_only`. SQLite
    transactions begin deferred, so reading never takes the write lock.
    Raises `InvalidInput` for a bad URL."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        try:
            engine = sa.create_engine(parsed)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            msg = f"cannot open {parsed.render_as_string(hide_password=True)!r}: {exc}"
            raise InvalidInput(msg) from exc
        event.listen(engine, "connect", _sqlite_read_only)
    else:
        engine = create_engine(parsed)
        event.listen(engine, "connect", _postgresql_read_only)
    return engine


def _sqlite_read_only(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only = 1")
    finally:
        cursor.close()


def _postgresql_read_only(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # psycopg 3: every transaction this connection begins is READ ONLY.
    dbapi_connection.read_only = True


def read_overview(
    engine: Engine,
    *,
    now: datetime | None = None,
    minutes: int = DEFAULT_MINUTES,
    failures: int = DEFAULT_FAILURES,
    unqueued: bool = False,
) -> Overview:
    """Where every destination with jobs stands at `now` (default: the
    current time): see `DestinationOverview`. `minutes` is how many minutes
    of throughput to count, the current one included; `failures` how many
    of the latest failures to list; `unqueued` whether to count each
    destination's unqueued items, which reads every item (seconds on a
    ledger of millions: see docs/scaling.md), so by default they are not
    counted and `stats.unqueued` is None.

    Raises `SchemaNotMigrated` or `SchemaTooNew` for a database the library
    cannot use, and `StoreError` if the database cannot be read.
    """
    taken = utc(now)
    first = taken.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    tables = tables_for(engine.dialect.name)
    sql = Statements(tables, ItemSource(tables.items), engine.dialect.name)
    with translated("read the overview"), engine.connect() as connection:
        # Every time: the database may be migrated under a long-lived dashboard.
        check_schema(connection, engine.url.render_as_string(hide_password=True))
        counts: dict[str, dict[str, int]] = {}
        for name, status, count in connection.execute(sql.count_by_status(None)):
            counts.setdefault(name, {})[status] = count
        ended, first_ended = _ended_per_minute(connection, first)
        stuck = _stuck(connection, sql, taken)
        delayed = delayed_jobs(connection, taken)
        controls = {
            found.destination: found
            for found in map(controls_of, connection.execute(sql.list_controls))
        }
        declared = dependencies_of(connection.execute(sql.all_dependencies))
        for name in shown_without_jobs(declared, controls, counts):
            counts[name] = {}
        to_come = waiting_on_upstreams(
            declared, [DestinationStats.of(name, found, None) for name, found in counts.items()]
        )
        rows = []
        for name in sorted(counts):
            held = tuple(
                ended.get((name, first + timedelta(minutes=n)))
                or Minute(first + timedelta(minutes=n))
                for n in range(minutes)
            )
            waiting, retry_due = delayed.get(name, (0, None))
            rows.append(
                DestinationOverview(
                    stats=DestinationStats.of(
                        name,
                        counts[name],
                        connection.execute(sql.count_unqueued(name)).scalar_one()
                        if unqueued
                        else None,
                        lag_at(
                            taken,
                            connection.execute(sql.oldest_ready_at, {"dest": name}).scalar(),
                        ),
                    ),
                    minutes=held,
                    oldest_running=_first(connection, name, JobStatus.RUNNING, "started"),
                    next_ready=next_due(connection, name, taken),
                    failures=tuple(
                        _top(
                            connection,
                            name,
                            JobStatus.FAILED,
                            ("-finished", "-seq"),
                            failures,
                            where=(_retryable(tables.fulltext),),
                        )
                    ),
                    waiting_for_retry=RetryWait(
                        count=waiting,
                        next_due=retry_due,
                        latest=tuple(_latest_delayed(connection, name, taken, failures))
                        if waiting
                        else (),
                    ),
                    rate=rate_of(
                        sum(m.done + m.failed for m in held),
                        first_ended.get(name),
                        first,
                        taken,
                    ),
                    stuck=stuck.get(name, {}),
                    controls=controls.get(name),
                    upstreams=tuple(d for d in declared if d.destination == name),
                    to_come=to_come.get(name),
                )
            )
    return Overview(taken=taken, destinations=tuple(rows))


def _stuck(
    connection: Connection, sql: Statements, now: datetime
) -> dict[str, dict[AuditCheck, int]]:
    """Per destination, the counts of `STUCK_CHECKS` above zero, judged at
    `now` with the audit's default `rescue_after`."""
    conditions = sql.audit_conditions()
    found: dict[str, dict[AuditCheck, int]] = {}
    for check in STUCK_CHECKS:
        query = sql.audit_counts(conditions[check], None)
        binds = {"stale_before": now - DEFAULT_RESCUE_AFTER}
        for name, count, _oldest in connection.execute(query, binds):
            found.setdefault(name, {})[check] = count
    return found


def list_jobs(
    bind: Engine | Connection,
    destination: str,
    status: JobStatus,
    *,
    before: int | None = None,
    limit: int = 50,
) -> list[JobRow]:
    """Up to `limit` jobs of `destination` in `status`, the latest enqueued
    first; with `before`, only those enqueued before the job whose `seq` it
    is (the next page).

    Raises `InvalidInput` for a bad destination or limit, and `StoreError`
    if the database cannot be read.
    """
    check_destination(destination)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        msg = f"limit must be a positive whole number, not {limit!r}"
        raise InvalidInput(msg)
    with translated("list jobs"):
        if isinstance(bind, Engine):
            with bind.connect() as connection:
                return _top(connection, destination, status, ("-seq",), limit, before=before)
        return _top(bind, destination, status, ("-seq",), limit, before=before)


def _job_columns(bind: Engine | Connection) -> Sequence[sa.ColumnElement[Any]]:
    tables = tables_for(bind.dialect.name)
    statements = Statements(tables, ItemSource(tables.items), bind.dialect.name)
    return (*statements.job_columns, tables.fulltext.c.seq)


def _top(  # noqa: PLR0913 - the parts of one query
    connection: Connection,
    destination: str,
    status: JobStatus,
    order: Sequence[str],
    limit: int,
    *,
    before: int | None = None,
    where: Sequence[sa.ColumnElement[bool]] = (),
) -> list[JobRow]:
    """The first `limit` jobs of `destination` in `status` by the columns
    named in `order` (`-name`: descending); with `before`, only those whose
    `seq` is below it; with `where`, only those that meet each condition."""
    ft = tables_for(connection.dialect.name).fulltext
    query = (
        sa.select(*_job_columns(connection))
        .where(ft.c.destination == destination, has_status(ft, status), *where)
        .order_by(*(ft.c[key[1:]].desc() if key.startswith("-") else ft.c[key] for key in order))
        .limit(limit)
    )
    if before is not None:
        query = query.where(ft.c.seq < before)
    return [JobRow(job=to_job(row), seq=row.seq) for row in connection.execute(query)]


def has_status(ft: sa.Table, status: JobStatus) -> sa.ColumnElement[bool]:
    """`status = 'value'` with the value written into the SQL: a bound
    parameter would keep the partial indexes (`WHERE status = 'ready'`,
    `'running'`) from serving the query in SQLite's plans and in
    PostgreSQL's generic plans of a prepared statement."""
    return ft.c.status == sa.literal_column(f"'{status.value}'")


def _first(connection: Connection, destination: str, status: JobStatus, by: str) -> JobRow | None:
    """The job of `destination` in `status` that comes first by column `by`
    (served by the partial index on running or ready jobs)."""
    found = _top(connection, destination, status, (by, "seq"), 1)
    return found[0] if found else None


def next_due(connection: Connection, destination: str, now: datetime) -> JobRow | None:
    """The ready job of `destination` a claim at `now` would take: the
    first by `seq` that is due. Read along the ready index in `seq` order,
    as the claim does: each job waiting for a retry ahead of it costs a row."""
    ft = tables_for(connection.dialect.name).fulltext
    due = sa.or_(ft.c.not_before.is_(None), ft.c.not_before <= now)
    found = _top(connection, destination, JobStatus.READY, ("seq",), 1, where=(due,))
    return found[0] if found else None


def delayed_jobs(connection: Connection, now: datetime) -> dict[str, tuple[int, datetime]]:
    """Per destination with any, how many ready jobs are not due at `now`
    (waiting for a retry) and the earliest `not_before` among them. Reads
    the ready jobs only, along their partial index."""
    if connection.dialect.name == "sqlite":
        return {
            name: (count, due)
            for name, count, due in connection.execute(_SQLITE_DELAYED, {"now": now})
        }
    ft = tables_for(connection.dialect.name).fulltext
    query = (
        sa.select(ft.c.destination, sa.func.count(), sa.func.min(ft.c.not_before))
        .where(has_status(ft, JobStatus.READY), ft.c.not_before > now)
        .group_by(ft.c.destination)
    )
    return {name: (count, due) for name, count, due in connection.execute(query)}


# SQLite's planner reads every ready job along `fulltext_ready_at_idx`,
# which yields the destinations in order, rather than the delayed ones
# along their own index, which does too: named, as SQLAlchemy cannot.
_SQLITE_DELAYED: Final = (
    sa.text(
        "SELECT destination, count(*), min(not_before) "
        "FROM fulltext INDEXED BY fulltext_delayed_idx "
        "WHERE status = 'ready' AND not_before > :now GROUP BY destination"
    )
    .bindparams(sa.bindparam("now", type_=UTCDateTime()))
    .columns(
        sa.column("destination", sa.Text),
        sa.column("count", sa.Integer),
        sa.column("due", UTCDateTime()),
    )
)


def _latest_delayed(
    connection: Connection, destination: str, now: datetime, limit: int
) -> list[JobRow]:
    """Up to `limit` of `destination`'s ready jobs not due at `now`, the
    latest due first."""
    ft = tables_for(connection.dialect.name).fulltext
    return _top(
        connection,
        destination,
        JobStatus.READY,
        ("-not_before", "-seq"),
        limit,
        where=(ft.c.not_before > now,),
    )


def _ended_per_minute(
    connection: Connection, first: datetime
) -> tuple[dict[tuple[str, datetime], Minute], dict[str, datetime]]:
    """The jobs that ended (finished, skipped or failed) from `first` on,
    per destination and minute; and per destination when the first of them
    ended."""
    ft = tables_for(connection.dialect.name).fulltext
    minute = sa.type_coerce(_minute_of(connection, ft.c.finished), UTCDateTime())
    query = (
        sa.select(
            ft.c.destination,
            minute.label("minute"),
            ft.c.status,
            sa.func.count(),
            sa.func.min(ft.c.finished),
        )
        .where(
            ft.c.finished >= first,
            # The index of ended jobs' own condition, as it spells it: the
            # window's entries are read, and no other job.
            sa.text(ENDED),
        )
        .group_by(ft.c.destination, minute, ft.c.status)
    )
    found: dict[tuple[str, datetime], Minute] = {}
    earliest: dict[str, datetime] = {}
    for destination, start, status, count, ended in connection.execute(query):
        if destination not in earliest or ended < earliest[destination]:
            earliest[destination] = ended
        key = (destination, start)
        before = found.get(key) or Minute(start)
        if JobStatus(status) is JobStatus.FAILED:
            found[key] = dataclasses.replace(before, failed=before.failed + count)
        else:
            found[key] = dataclasses.replace(before, done=before.done + count)
    return found, earliest


def _minute_of(connection: Connection, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """`column` (a UTC timestamp) truncated to its minute."""
    if connection.dialect.name == "postgresql":
        # Truncated in UTC whatever the session's time zone.
        return sa.func.date_trunc("minute", sa.func.timezone("UTC", column)).op("AT TIME ZONE")(
            sa.literal("UTC")
        )
    # SQLite keeps UTC wall times as text: cut it at the minute.
    return sa.func.strftime("%Y-%m-%d %H:%M:00", column)
