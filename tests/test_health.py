"""Queue health: the warning rules at and around each threshold (pure, no
database); the reading on every adapter (delayed jobs ahead of due ones;
what does not apply said so); on PostgreSQL, a real second connection's
open `REPEATABLE READ` transaction, dead rows after updates and a vacuum,
seen by `Repository.queue_health`, `fulltext-jobs audit`, `/metrics` and the
dashboard's page."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from harness import Backend, fetch, prepare_database, served
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

import fulltext_jobs
from fulltext_jobs.cli import app
from fulltext_jobs.dashboard import Snapshots, create_app
from fulltext_jobs.domain import utc
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.health import (
    DEAD_ROWS_FRACTION,
    DEAD_ROWS_WARNING,
    DELAYED_AHEAD_COUNTED,
    DELAYED_AHEAD_WARNING,
    TRANSACTION_AGE_WARNING,
    VACUUM_AGE_WARNING,
    XMIN_AGE_WARNING,
    DelayedAhead,
    HealthCheck,
    HealthThresholds,
    HolderKind,
    HorizonHolder,
    QueueHealth,
    TableHealth,
    delayed_ahead_of,
    health_warnings,
)
from fulltext_jobs.sql.health import autovacuum_trigger
from fulltext_jobs.sql.overview import read_only_engine

DEST = "language-detection"
TICK = timedelta(microseconds=1)


def reading(
    *,
    holders: tuple[HorizonHolder, ...] = (),
    table: TableHealth | None = None,
    delayed: tuple[DelayedAhead, ...] = (),
) -> QueueHealth:
    return QueueHealth(store="postgresql", horizon=holders, table=table, delayed=delayed)


def checks(health: QueueHealth, thresholds: HealthThresholds | None = None) -> list[HealthCheck]:
    return [w.check for w in health_warnings(health, thresholds or HealthThresholds())]


def session(age: timedelta | None, xmin_age: int | None = 10) -> HorizonHolder:
    return HorizonHolder(HolderKind.TRANSACTION, "pid 7", age, xmin_age, "idle in transaction")


# --- the rules ----------------------------------------------------------------------


def test_the_defaults_are_the_documented_constants():
    assert HealthThresholds() == HealthThresholds.checked()
    assert (
        timedelta(minutes=5),
        timedelta(hours=1),
    ) == (TRANSACTION_AGE_WARNING, VACUUM_AGE_WARNING)
    assert (XMIN_AGE_WARNING, DEAD_ROWS_WARNING, DEAD_ROWS_FRACTION) == (1_000_000, 100_000, 0.2)
    assert (DELAYED_AHEAD_WARNING, DELAYED_AHEAD_COUNTED) == (10_000, 100_000)


def test_a_transaction_is_warned_of_only_past_its_age():
    at = TRANSACTION_AGE_WARNING
    assert checks(reading(holders=(session(at),))) == []
    assert checks(reading(holders=(session(at - TICK),))) == []
    [warning] = health_warnings(reading(holders=(session(at + TICK),)), HealthThresholds())
    assert warning.check is HealthCheck.LONG_TRANSACTION
    assert warning.destination is None
    assert warning.value == (at + TICK).total_seconds()
    assert warning.threshold == at.total_seconds()
    assert "pid 7 (idle in transaction) has been open for 5m 0s, holding back vacuum" in (
        warning.message
    )
    # One that holds no snapshot yet is still an open transaction.
    [quiet] = health_warnings(reading(holders=(session(at * 2, None),)), HealthThresholds())
    assert "holding back" not in quiet.message
    # A prepared transaction is judged alike; its xmin age does not matter.
    prepared = HorizonHolder(HolderKind.PREPARED_TRANSACTION, "gid-1", at + TICK, 10**9)
    assert checks(reading(holders=(prepared,))) == [HealthCheck.LONG_TRANSACTION]


def test_a_holder_of_unknown_age_is_judged_by_its_xmin():
    def slot(xmin_age: int | None) -> HorizonHolder:
        return HorizonHolder(HolderKind.REPLICATION_SLOT, "standby_1", None, xmin_age, "inactive")

    at = XMIN_AGE_WARNING
    assert checks(reading(holders=(slot(at),))) == []
    assert checks(reading(holders=(slot(at + 1),))) == [HealthCheck.OLD_XMIN]
    assert checks(reading(holders=(slot(None),))) == []
    assert checks(reading(holders=(slot(5),)), HealthThresholds(xmin_age=4)) == [
        HealthCheck.OLD_XMIN
    ]


def test_dead_rows_are_warned_of_past_both_the_count_and_the_fraction():
    vacuumed = timedelta(minutes=1)

    def table(dead: int, live: int) -> QueueHealth:
        return reading(table=TableHealth(live, dead, since_vacuum=vacuumed))

    at = DEAD_ROWS_WARNING
    assert checks(table(at, 0)) == []
    assert checks(table(at + 1, 0)) == [HealthCheck.DEAD_ROWS]
    # Above the count, but not above a fifth of the live rows.
    assert checks(table(at + 1, 5 * (at + 1))) == []
    assert checks(table(at + 2, 5 * (at + 1))) == [HealthCheck.DEAD_ROWS]
    small = HealthThresholds(dead_rows=10, dead_fraction=0.5)
    assert checks(table(11, 22), small) == []
    assert checks(table(11, 21), small) == [HealthCheck.DEAD_ROWS]


def test_vacuum_is_overdue_past_autovacuums_trigger_and_the_age():
    lots = DEAD_ROWS_WARNING * 10
    fresh = HealthThresholds(dead_fraction=1000)  # the dead-rows rule out of the way

    def table(dead: int, since: timedelta | None, trigger: int | None = 50) -> QueueHealth:
        return reading(
            table=TableHealth(10**9, dead, since_vacuum=since, autovacuum_trigger=trigger)
        )

    at = VACUUM_AGE_WARNING
    assert checks(table(lots, at), fresh) == []
    assert checks(table(lots, at + TICK), fresh) == [HealthCheck.VACUUM_OVERDUE]
    [never] = health_warnings(table(lots, None), fresh)
    assert (never.check, never.value) == (HealthCheck.VACUUM_OVERDUE, None)
    assert "last vacuumed never" in never.message
    # Below autovacuum's own trigger, an old vacuum is only a quiet table.
    assert checks(table(lots, at * 5, trigger=lots), fresh) == []
    assert checks(table(lots + 1, at * 5, trigger=lots), fresh) == [HealthCheck.VACUUM_OVERDUE]
    # And never below the dead-rows count.
    assert checks(table(DEAD_ROWS_WARNING, None), fresh) == []
    [off] = health_warnings(table(lots, None, trigger=None), fresh)
    assert "autovacuum is off for it" in off.message


def test_delayed_jobs_ahead_are_warned_of_past_their_count():
    at = DELAYED_AHEAD_WARNING
    assert checks(reading(delayed=(DelayedAhead(DEST, at * 2, at),))) == []
    [warning] = health_warnings(
        reading(delayed=(DelayedAhead(DEST, at * 2, at + 1),)), HealthThresholds()
    )
    assert (warning.check, warning.destination, warning.value) == (
        HealthCheck.DELAYED_AHEAD,
        DEST,
        at + 1,
    )
    capped = DelayedAhead(DEST, 10**6, DELAYED_AHEAD_COUNTED)
    assert capped.capped
    [many] = health_warnings(reading(delayed=(capped,)), HealthThresholds())
    assert many.message.startswith("100,000+ delayed jobs")


def test_what_a_store_does_not_keep_is_never_warned_of():
    zero = HealthThresholds(
        xmin_age=0, dead_rows=0, dead_fraction=0, delayed_ahead=0, transaction_age=TICK
    )
    sqlite = QueueHealth("sqlite", horizon=None, table=TableHealth(live_rows=10**9))
    memory = QueueHealth("memory", horizon=None, table=None)
    assert checks(sqlite, zero) == checks(memory, zero) == []
    assert sqlite.oldest_transaction is None


def test_the_oldest_transaction_is_the_one_that_began_first():
    old = session(timedelta(minutes=9))
    slot = HorizonHolder(HolderKind.REPLICATION_SLOT, "s", None, 10**8)
    health = reading(holders=(session(timedelta(minutes=1)), slot, old))
    assert health.oldest_transaction is old


def test_delayed_ahead_counts_the_jobs_before_the_first_due_one():
    assert delayed_ahead_of([]) == 0
    assert delayed_ahead_of([True, False]) == 0
    assert delayed_ahead_of([False, False, True, False]) == 2
    assert delayed_ahead_of([False, False]) == 0  # none due: none is ahead of one
    assert delayed_ahead_of(iter([False] * (DELAYED_AHEAD_COUNTED + 5) + [True])) == (
        DELAYED_AHEAD_COUNTED
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"transaction_age": timedelta(0)},
        {"transaction_age": 300},
        {"vacuum_age": timedelta(days=4000)},
        {"xmin_age": -1},
        {"xmin_age": 1.5},
        {"dead_rows": True},
        {"dead_fraction": -0.1},
        {"dead_fraction": float("nan")},
        {"dead_fraction": "0.2"},
        {"dead_fraction": 1000.5},
        {"delayed_ahead": DELAYED_AHEAD_COUNTED},
    ],
)
def test_thresholds_out_of_range_are_refused(settings: dict[str, Any]):
    with pytest.raises(InvalidInput):
        HealthThresholds.checked(**settings)


def test_thresholds_at_their_bounds_are_taken():
    taken = HealthThresholds.checked(
        transaction_age=TICK,
        xmin_age=0,
        dead_rows=0,
        dead_fraction=1000,
        vacuum_age=timedelta(days=3650),
        delayed_ahead=DELAYED_AHEAD_COUNTED - 1,
    )
    assert taken.dead_fraction == 1000.0


def test_autovacuums_trigger_as_postgresql_computes_it():
    server = {"enabled": "on", "threshold": "50", "scale": "0.2"}
    assert autovacuum_trigger([], rows=1000, **server) == 250
    assert autovacuum_trigger([], rows=-1, **server) == 50  # never counted
    tuned = ["autovacuum_vacuum_scale_factor=0.01", "autovacuum_vacuum_threshold=1000"]
    assert autovacuum_trigger(tuned, rows=1_000_000, **server) == 11_000
    assert autovacuum_trigger(["autovacuum_enabled=false"], rows=10, **server) is None
    assert autovacuum_trigger([], rows=10, **{**server, "enabled": "off"}) is None


# --- the reading on every adapter ----------------------------------------------------


def test_delayed_jobs_ahead_of_due_ones_on_every_adapter(backend: Backend):
    repo = backend.repo
    backend.add_items([f"a{n}" for n in range(1, 6)])
    repo.enqueue_unqueued(DEST)
    assert repo.queue_health().delayed == ()
    later = utc() + timedelta(days=1)
    for job in repo.claim_ready(DEST, 2):  # a1 and a2, the first enqueued
        job.release(not_before=later, error="TimeoutError")
        repo.save_fulltext(job)
    health = repo.queue_health()
    assert health.delayed == (DelayedAhead(DEST, delayed=2, ahead=2),)
    assert repo.queue_health(DEST).delayed == health.delayed
    assert repo.queue_health("other").delayed == ()
    assert checks(health, HealthThresholds(delayed_ahead=1)) == [HealthCheck.DELAYED_AHEAD]
    # With nothing due, nothing is ahead of a due job.
    assert len(repo.claim_ready(DEST, 3)) == 3
    assert repo.queue_health().delayed == (DelayedAhead(DEST, delayed=2, ahead=0),)
    with pytest.raises(InvalidInput):
        repo.queue_health("")


def test_what_does_not_apply_is_said_so(backend: Backend):
    health = backend.repo.queue_health()
    assert health.store == backend.name.removesuffix("-async")
    if health.store == "postgresql":
        assert health.horizon is not None
        assert health.table is not None
        assert health.table.dead_rows is not None
        assert health.unseen_sessions == 0  # the tests run as a superuser
        return
    assert health.horizon is None
    assert health.unseen_sessions is None
    assert health.notes
    assert "not applicable" in health.notes[0]
    if health.store == "sqlite":
        assert health.table == TableHealth(live_rows=0)
    else:
        assert health.table is None


def test_the_base_port_reports_nothing():
    class Bare(fulltext_jobs.InMemoryRepository):
        _queue_health = fulltext_jobs.Repository._queue_health

    health = Bare().queue_health()
    assert (health.horizon, health.table, health.delayed) == (None, None, ())
    assert health.notes == ("Bare reports no queue health",)


# --- PostgreSQL: a real second connection -------------------------------------------


@pytest.fixture
def open_transaction(clean_postgres_engine: sa.Engine) -> Iterator[int]:
    """A second connection in a `REPEATABLE READ` transaction that has read
    (so it holds its snapshot); yields its backend's pid."""
    autocommit = clean_postgres_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with autocommit as other:  # the driver begins nothing: this BEGIN is the transaction
        other.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
        other.exec_driver_sql("SELECT 1")
        pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        try:
            yield pid
        finally:
            other.exec_driver_sql("ROLLBACK")


def wait_for(read: Callable[[], QueueHealth], done: Callable[[QueueHealth], bool]) -> QueueHealth:
    """`read()` again until `done` holds of it, for at most 15 s (the
    statistics PostgreSQL keeps are flushed asynchronously)."""
    deadline = time.monotonic() + 15
    while True:
        health = read()
        if done(health) or time.monotonic() > deadline:
            return health
        time.sleep(0.1)


@pytest.mark.postgresql
def test_an_open_transaction_is_reported_and_warned_of(
    clean_postgres_engine: sa.Engine, open_transaction: int
):
    repo = fulltext_jobs.SqlAlchemyRepository(clean_postgres_engine)
    time.sleep(0.3)
    health = repo.queue_health()
    assert health.horizon is not None
    [mine] = [h for h in health.horizon if h.name == f"pid {open_transaction}"]
    assert mine.kind is HolderKind.TRANSACTION
    assert mine.state == "idle in transaction"
    assert mine.age is not None
    assert mine.age >= timedelta(seconds=0.3)
    assert mine.xmin_age is not None  # it read: it holds its snapshot
    assert health.oldest_transaction == mine
    # It is the only one: the reading's own session, in its transaction, is not among them.
    assert [h.name for h in health.horizon] == [f"pid {open_transaction}"]
    small = HealthThresholds(transaction_age=timedelta(milliseconds=200))
    warned = [w for w in health.warnings(small) if w.check is HealthCheck.LONG_TRANSACTION]
    assert any(f"pid {open_transaction}" in w.message for w in warned)
    assert not [w for w in health.warnings() if w.check is HealthCheck.LONG_TRANSACTION]


@pytest.mark.postgresql
def test_the_audit_command_warns_of_it_and_exits_1(
    clean_postgres_engine: sa.Engine, open_transaction: int
):
    url = clean_postgres_engine.url.render_as_string(hide_password=False)
    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})
    relaxed = runner.invoke(app, ["--database-url", url, "audit", "--json"])
    assert relaxed.exit_code == 0, (relaxed.stdout, relaxed.stderr)
    time.sleep(1.2)
    result = runner.invoke(
        app, ["--database-url", url, "audit", "--json", "--transaction-age", "1s"]
    )
    assert result.exit_code == 1, (result.stdout, result.stderr)
    body = json.loads(result.stdout)
    assert (body["clean"], body["problems"], body["schema"]) == (False, [], [])
    [warning] = [w for w in body["warnings"] if w["check"] == "long_transaction"]
    assert warning["destination"] is None
    assert warning["threshold"] == 1.0
    assert warning["value"] > 1.0
    assert f"pid {open_transaction}" in warning["message"]
    health = body["health"]
    assert health["store"] == "postgresql"
    assert health["oldest_transaction_seconds"] > 1.0
    [holder] = [h for h in health["horizon"] if h["name"] == f"pid {open_transaction}"]
    assert holder["kind"] == "transaction"
    assert holder["state"] == "idle in transaction"
    assert isinstance(holder["xmin_age"], int)
    assert set(health["table"]) >= {"live_rows", "dead_rows", "last_autovacuum"}

    text = runner.invoke(app, ["--database-url", url, "audit", "--transaction-age", "1s"])
    assert text.exit_code == 1, (text.stdout, text.stderr)
    assert f"warning: long_transaction: transaction pid {open_transaction}" in text.stdout
    assert re.search(
        r"^health: oldest transaction \d+s \(pid \d+\); jobs table ", text.stdout, re.MULTILINE
    )


@pytest.mark.postgresql
def test_dead_rows_and_a_vacuum_show(fresh_postgres_url: str):
    """On a database of its own, whose counters start at zero: 200 jobs
    inserted, then each updated once, make 200 live and 200 dead rows; a
    vacuum removes the dead ones and is dated."""
    engine = prepare_database(fresh_postgres_url)
    try:
        with engine.begin() as connection:
            # Where autovacuum runs, it must not vacuum them first.
            connection.exec_driver_sql("ALTER TABLE jobs.fulltext SET (autovacuum_enabled = false)")
        repo = fulltext_jobs.SqlAlchemyRepository(engine)
        repo.add_items([f"d{n}" for n in range(200)])
        repo.enqueue_unqueued(DEST)
        with engine.connect() as connection:
            connection.exec_driver_sql(
                "UPDATE jobs.fulltext SET last_error = 'x' WHERE destination = %(d)s", {"d": DEST}
            )
            connection.commit()
            # This backend's counters reach the shared statistics when it is next idle.
            connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
            connection.commit()
        health = wait_for(
            repo.queue_health,
            lambda h: h.table is not None and (h.table.dead_rows, h.table.live_rows) == (200, 200),
        )
        assert health.table is not None
        assert health.table.dead_rows == 200
        assert health.table.live_rows == 200
        assert health.table.last_vacuum is None
        assert health.table.since_vacuum is None
        assert health.table.autovacuum_trigger is None  # off for this table
        warned = checks(health, HealthThresholds(dead_rows=199, dead_fraction=0.99))
        assert HealthCheck.DEAD_ROWS in warned
        assert HealthCheck.DEAD_ROWS not in checks(health, HealthThresholds(dead_rows=200))

        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM jobs.fulltext")
            connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        vacuumed = wait_for(
            repo.queue_health, lambda h: h.table is not None and h.table.last_vacuum is not None
        )
        assert vacuumed.table is not None
        assert vacuumed.table.last_vacuum is not None
        assert vacuumed.table.last_vacuum > utc() - timedelta(minutes=1)
        assert vacuumed.table.since_vacuum is not None
        assert vacuumed.table.since_vacuum < timedelta(minutes=1)
        assert vacuumed.table.dead_rows == 0  # nothing held them
    finally:
        engine.dispose()


@pytest.mark.postgresql
def test_the_async_adapter_reads_the_same(clean_postgres_engine: sa.Engine, open_transaction: int):
    url = clean_postgres_engine.url.render_as_string(hide_password=False)

    async def read() -> QueueHealth:
        engine = fulltext_jobs.create_async_engine(url)
        try:
            return await fulltext_jobs.AsyncSqlAlchemyRepository(engine).queue_health()
        finally:
            await engine.dispose()

    import asyncio  # noqa: PLC0415 - this test's alone

    health = asyncio.run(read())
    assert health.store == "postgresql"
    assert health.horizon is not None
    assert f"pid {open_transaction}" in {h.name for h in health.horizon}


# --- /metrics and the page -------------------------------------------------------------


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delayed_ledger(url: str) -> None:
    """Three jobs of `DEST`: the first given back to retry tomorrow, two due."""
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = fulltext_jobs.SqlAlchemyRepository(engine)
        repo.add_items(["m1", "m2", "m3"])
        repo.enqueue_unqueued(DEST)
        job = repo.get_ready_job(DEST)
        job.release(not_before=utc() + timedelta(days=1), error="HTTPError: 503")
        repo.save_fulltext(job)
    finally:
        engine.dispose()


def served_page_and_metrics(url: str) -> tuple[str, dict[Any, float]]:
    reader = read_only_engine(url)
    try:
        with served(create_app(Snapshots(reader), refresh=2)) as base:
            page = fetch(base).text
            values = metric_values(fetch(base + "metrics").text)
    finally:
        reader.dispose()
    return page, values


@pytest.mark.postgresql
def test_metrics_and_the_page_show_the_queue_health_on_postgresql(
    clean_postgres_engine: sa.Engine, open_transaction: int
):
    url = clean_postgres_engine.url.render_as_string(hide_password=False)
    delayed_ledger(url)
    time.sleep(0.2)
    page, values = served_page_and_metrics(url)
    assert values[("fulltext_jobs_oldest_transaction_seconds", ())] >= 0.2
    assert values[("fulltext_jobs_horizon_xmin_age", ())] >= 0
    for name in (
        "fulltext_jobs_table_live_rows",
        "fulltext_jobs_table_dead_rows",
        "fulltext_jobs_table_last_vacuum_timestamp_seconds",
        "fulltext_jobs_table_last_autovacuum_timestamp_seconds",
        "fulltext_jobs_table_last_autoanalyze_timestamp_seconds",
    ):
        assert (name, ()) in values, name
    assert values[("fulltext_jobs_delayed_ahead", (("destination", DEST),))] == 1
    for check in HealthCheck:
        assert ("fulltext_jobs_health_warnings", (("check", check.value),)) in values
    assert '<section class="health" data-health="ok">' in page
    assert re.search(
        rf'<dd data-health="transaction">\d+s <span class="muted">\(pid {open_transaction}, '
        r"idle in transaction\)</span></dd>",
        page,
    )
    assert 'data-health="dead"' in page
    assert f'<span data-delayed-ahead="{DEST}">{DEST}: 1</span>' in page


def test_metrics_and_the_page_say_what_does_not_apply_on_sqlite(sqlite_template: Any):
    url = str(sqlite_template.fresh_url())
    delayed_ledger(url)
    page, values = served_page_and_metrics(url)
    assert values[("fulltext_jobs_table_live_rows", ())] == 3
    assert values[("fulltext_jobs_delayed_ahead", (("destination", DEST),))] == 1
    assert ("fulltext_jobs_oldest_transaction_seconds", ()) not in values
    assert ("fulltext_jobs_table_dead_rows", ()) not in values
    assert '<dd class="muted" data-health="transaction">not applicable</dd>' in page
    assert "3 live; dead rows, vacuum: n/a" in page


def test_the_audit_command_on_sqlite_reports_health_not_applicable(sqlite_template: Any):
    url = str(sqlite_template.fresh_url())
    delayed_ledger(url)
    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})
    result = runner.invoke(app, ["--database-url", url, "audit", "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    body = json.loads(result.stdout)
    assert (body["clean"], body["warnings"]) == (True, [])
    health = body["health"]
    assert (health["store"], health["horizon"], health["oldest_transaction_seconds"]) == (
        "sqlite",
        None,
        None,
    )
    assert health["table"]["live_rows"] == 3
    assert health["table"]["dead_rows"] is None
    assert health["delayed"] == [{"destination": DEST, "delayed": 1, "ahead": 1, "capped": False}]
    assert "SQLite: not applicable" in health["notes"][0]
    warned = runner.invoke(app, ["--database-url", url, "audit", "--delayed-ahead", "0"])
    assert warned.exit_code == 1, (warned.stdout, warned.stderr)
    assert (
        "warning: delayed_ahead: 1 delayed jobs of 'language-detection' come before its "
        "first due job" in warned.stdout
    )
    assert "health: oldest transaction n/a; jobs table 3 live, dead n/a; " in warned.stdout
    assert "delayed ahead of due language-detection 1" in warned.stdout


def test_a_fixed_time_is_never_mixed_with_the_databases_clock():
    """The warning rules take spans, never two clocks' readings: a table
    vacuumed "in the future" of a test's fixed clock is not overdue."""
    table = TableHealth(
        live_rows=0,
        dead_rows=DEAD_ROWS_WARNING * 10,
        last_vacuum=datetime(2030, 1, 1, tzinfo=UTC),
        since_vacuum=timedelta(seconds=1),
        autovacuum_trigger=50,
    )
    assert HealthCheck.VACUUM_OVERDUE not in checks(reading(table=table))
