"""Server unavailability reaches callers only as the port's errors: which
driver and SQLAlchemy errors are retryable, `listen()` against a server that
is away or refuses us, a pool with no connection to spare, a joined Session
whose connection died, the lease rule on SQLite, a worker stopped by an error
that will not pass, and logs free of the noise of a lost connection.

The restarts themselves are in test_server_restart.py (a private server);
here the faults are a closed port, an unknown database or role, a held pool
and `pg_terminate_backend` of this test's own connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from test_session import Base as AppBase
from test_session import Result

import fulltext_jobs
from fulltext_jobs import (
    AsyncSqlAlchemyRepository,
    FullText,
    InMemoryRepository,
    JobStatus,
    ReadyListener,
    SchemaNotMigrated,
    SqlAlchemyRepository,
    StoreError,
    Worker,
)
from fulltext_jobs.sql.errors import is_retryable, store_error

DEST = "outages"

#: The longest a test waits for its worker.
BOUND_SECONDS = 20.0


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refused_url(postgres_url: str, refusal: str) -> str:
    """The test database's URL with an unknown database or role."""
    url = sa.make_url(postgres_url)
    url = (
        url.set(database="ftj_no_such_database")
        if refusal == "database"
        else url.set(username="ftj_no_such_role")
    )
    return url.render_as_string(hide_password=False)


# --- The rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "retryable"),
    [
        ('connection to server at "127.0.0.1", port 1 failed: Connection refused', True),
        ("consuming input failed: server closed the connection unexpectedly", True),
        ("connection failed: FATAL:  the database system is starting up", True),
        ("connection failed: FATAL:  the database system is shutting down", True),
        ("connection failed: FATAL:  the database system is in recovery mode", True),
        ("connection failed: FATAL:  sorry, too many clients already", True),
        # Not a refusal it knows (here, a server speaking German): retried.
        ("connection failed: FATAL:  das Datenbanksystem fährt herunter", True),
        ('connection failed: FATAL:  database "gone" does not exist', False),
        ('connection failed: FATAL:  role "nobody" does not exist', False),
        ('connection failed: FATAL:  password authentication failed for user "app"', False),
        ('connection failed: FATAL:  no pg_hba.conf entry for host "10.0.0.9"', False),
        ("connection failed: fe_sendauth: no password supplied", False),
        ('connection failed: FATAL:  role "batch" is not permitted to log in', False),
    ],
)
def test_a_failed_connection_is_retryable_unless_the_server_refuses_for_good(
    message: str, retryable: bool
):
    # psycopg gives a failed connection attempt no SQLSTATE: the message decides.
    driver = psycopg.OperationalError(message)
    wrapped = sa.exc.OperationalError("connect", {}, driver)
    assert is_retryable(driver) is retryable
    assert is_retryable(wrapped) is retryable
    error = store_error(driver, "claim")
    assert isinstance(error, StoreError)
    assert error.retryable is retryable
    assert str(error).startswith(f"claim failed: {message}")


def test_a_pool_with_no_connection_to_spare_is_retryable():
    assert is_retryable(sa.exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached"))
    assert store_error(sa.exc.TimeoutError("pool"), "claim").retryable


def test_bad_sql_and_other_programming_errors_are_not_retryable():
    assert not is_retryable(sa.exc.ArgumentError("bad"))
    assert not is_retryable(psycopg.errors.UndefinedTable("relation does not exist"))
    assert not is_retryable(psycopg.errors.UniqueViolation("duplicate key"))


# --- listen() -------------------------------------------------------------------


def test_listen_against_a_server_that_is_away_raises_a_retryable_store_error():
    engine = fulltext_jobs.create_engine(f"postgresql://postgres@127.0.0.1:{closed_port()}/x")
    try:
        with pytest.raises(StoreError) as caught:
            SqlAlchemyRepository(engine).listen(DEST)
    finally:
        engine.dispose()
    assert caught.value.retryable
    assert "Connection refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


#: Every public call that reaches the database, on a repository.
REPOSITORY_CALLS = {
    "get_fulltext": lambda repo: repo.get_fulltext(uuid.uuid4()),
    "save_fulltext": lambda repo: repo.save_fulltext(FullText.new("a", DEST)),
    "save_many": lambda repo: repo.save_many([FullText.new("a", DEST)]),
    "create_job_for_unqueued": lambda repo: repo.create_job_for_unqueued(DEST),
    "get_ready_job": lambda repo: repo.get_ready_job(DEST),
    "claim_ready": lambda repo: repo.claim_ready(DEST, 5),
    "enqueue_unqueued": lambda repo: repo.enqueue_unqueued(DEST),
    "heartbeat": lambda repo: repo.heartbeat(FullText.new("a", DEST)),
    "rescue_expired": lambda repo: repo.rescue_expired(DEST),
    "retry": lambda repo: repo.retry(DEST),
    "count_unqueued": lambda repo: repo.count_unqueued(DEST),
    "stats": lambda repo: repo.stats(DEST),
    "add_items": lambda repo: repo.add_items(["a"]),
    "listen": lambda repo: repo.listen(DEST),
}


@pytest.mark.parametrize("call", sorted(REPOSITORY_CALLS))
def test_every_repository_call_against_a_server_that_is_away_raises_a_retryable_store_error(
    call: str,
):
    engine = fulltext_jobs.create_engine(f"postgresql://postgres@127.0.0.1:{closed_port()}/x")
    try:
        with pytest.raises(StoreError) as caught:
            REPOSITORY_CALLS[call](SqlAlchemyRepository(engine))
    finally:
        engine.dispose()
    assert caught.value.retryable


@pytest.mark.parametrize("call", ["upgrade", "downgrade", "current_revision", "adopt"])
def test_the_migration_functions_against_a_server_that_is_away_raise_a_retryable_store_error(
    call: str,
):
    with pytest.raises(StoreError) as caught:
        getattr(fulltext_jobs, call)(f"postgresql://postgres@127.0.0.1:{closed_port()}/x")
    assert caught.value.retryable


def test_the_async_repository_against_a_server_that_is_away_raises_a_retryable_store_error():
    async def claim() -> None:
        engine = fulltext_jobs.create_async_engine(
            f"postgresql://postgres@127.0.0.1:{closed_port()}/x"
        )
        try:
            await AsyncSqlAlchemyRepository(engine).get_ready_job(DEST)
        finally:
            await engine.dispose()

    with pytest.raises(StoreError) as caught:
        asyncio.run(claim())
    assert caught.value.retryable


@pytest.mark.postgresql
@pytest.mark.parametrize("refusal", ["database", "role"])
def test_listen_refused_for_good_raises_a_store_error_that_is_not_retryable(
    postgres_url: str, refusal: str
):
    engine = fulltext_jobs.create_engine(refused_url(postgres_url, refusal))
    try:
        with pytest.raises(StoreError) as caught:
            SqlAlchemyRepository(engine).listen(DEST)
    finally:
        engine.dispose()
    assert not caught.value.retryable
    assert "does not exist" in str(caught.value)


# --- The pool ----------------------------------------------------------------------


def test_a_call_that_finds_the_pool_exhausted_raises_a_retryable_store_error(
    sqlite_template,
):
    engine = fulltext_jobs.create_engine(
        sqlite_template.fresh_url(), pool_size=1, max_overflow=0, pool_timeout=0.1
    )
    try:
        repo = SqlAlchemyRepository(engine)
        repo.stats(DEST)  # the schema is checked; the one connection is back
        with engine.connect(), pytest.raises(StoreError) as caught:
            repo.get_fulltext(uuid.uuid4())
        assert caught.value.retryable
        assert isinstance(caught.value.__cause__, sa.exc.TimeoutError)
    finally:
        engine.dispose()


# --- A joined Session whose connection died ------------------------------------------


APP_NAME = "ftj-outage-session"


@pytest.fixture
def app_engine(postgres_url: str, clean_postgres_engine: sa.Engine) -> Iterator[sa.Engine]:
    """An engine of this test's own (its connections named, to be found and
    ended), on a database with two ready jobs and the app's table."""
    engine = fulltext_jobs.create_engine(postgres_url, connect_args={"application_name": APP_NAME})
    AppBase.metadata.drop_all(clean_postgres_engine)
    AppBase.metadata.create_all(clean_postgres_engine)
    repo = SqlAlchemyRepository(clean_postgres_engine)
    repo.add_items(["item-1", "item-2"])
    assert repo.enqueue_unqueued(DEST) == 2
    yield engine
    engine.dispose()
    AppBase.metadata.drop_all(clean_postgres_engine)


def end_app_connections(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %(name)s AND datname = current_database()",
                {"name": APP_NAME},
            ).scalar_one()
        )


@pytest.mark.postgresql
def test_a_joined_call_whose_flush_meets_a_dead_connection_raises_a_retryable_store_error(
    app_engine: sa.Engine, clean_postgres_engine: sa.Engine
):
    repo = SqlAlchemyRepository(app_engine)
    with Session(app_engine) as session:
        joined = repo.in_session(session)
        job = joined.get_ready_job(DEST)
        session.add(Result(item_id=job.item_id, language="fr"))  # pending: flushed first
        assert end_app_connections(clean_postgres_engine) == 1
        job.finish()
        with pytest.raises(StoreError) as caught:
            joined.save_fulltext(job)
        assert caught.value.retryable
        assert "flushing the session" in str(caught.value)
        session.rollback()

        # The loop the web-app guide shows: the unit of work again, from the claim.
        again = joined.get_ready_job(DEST)
        assert again.id == job.id  # the lost transaction's claim never happened
        session.add(Result(item_id=again.item_id, language="fr"))
        again.finish()
        joined.save_fulltext(again)
        session.commit()
    assert repo.get_fulltext(job.id).status is JobStatus.FINISHED


@pytest.mark.postgresql
def test_the_apps_own_integrity_error_from_the_flush_stays_the_apps(app_engine: sa.Engine):
    repo = SqlAlchemyRepository(app_engine)
    with Session(app_engine) as session:
        session.add(Result(item_id="item-1", language="fr"))
        session.commit()
        joined = repo.in_session(session)
        job = joined.get_ready_job(DEST)
        session.add(Result(item_id="item-1", language="de"))  # the app's own duplicate
        job.finish()
        with pytest.raises(sa.exc.IntegrityError):
            joined.save_fulltext(job)


# --- SQLite's lease rule ---------------------------------------------------------------


@pytest.mark.parametrize(("lease_seconds", "warned"), [(60, True), (120, False), (300, False)])
def test_a_sqlite_lease_shorter_than_twice_the_busy_timeout_is_warned_about(
    sqlite_engine: sa.Engine, caplog: pytest.LogCaptureFixture, lease_seconds: int, warned: bool
):
    caplog.set_level(logging.WARNING, logger="fulltext_jobs.sql.transactions")
    repo = SqlAlchemyRepository(sqlite_engine, lease=timedelta(seconds=lease_seconds))
    repo.stats(DEST)
    repo.stats(DEST)  # once per repository, at its first call
    messages = [
        r.getMessage() for r in caplog.records if r.name == "fulltext_jobs.sql.transactions"
    ]
    if warned:
        assert len(messages) == 1
        assert "busy timeout is 60 s" in messages[0]
        assert "lease of 120 s or more" in messages[0]
    else:
        assert messages == []


def test_the_lease_rule_follows_a_busy_timeout_the_app_set(
    sqlite_engine: sa.Engine, caplog: pytest.LogCaptureFixture
):
    @sa.event.listens_for(sqlite_engine, "connect")
    def short_busy_timeout(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 2000")

    sqlite_engine.dispose()
    caplog.set_level(logging.WARNING, logger="fulltext_jobs.sql.transactions")
    SqlAlchemyRepository(sqlite_engine, lease=timedelta(seconds=5)).stats(DEST)
    assert not [r for r in caplog.records if r.name == "fulltext_jobs.sql.transactions"]


# --- The worker -------------------------------------------------------------------------


def test_a_worker_stopped_by_an_error_that_will_not_pass_says_so_in_one_line(
    tmp_sqlite_url: str, caplog: pytest.LogCaptureFixture
):
    engine = fulltext_jobs.create_engine(tmp_sqlite_url)  # never migrated
    try:
        worker = Worker(SqlAlchemyRepository(engine), DEST, lambda _job: None)
        with pytest.raises(SchemaNotMigrated):
            worker.run(install_signal_handlers=False)
    finally:
        engine.dispose()
    stopped = [r for r in caplog.records if "stopped" in r.getMessage()]
    assert len(stopped) == 1
    assert stopped[0].exc_info is None
    assert "alembic upgrade head" in stopped[0].getMessage()


@pytest.mark.postgresql
def test_a_worker_whose_login_is_refused_for_good_stops_with_a_store_error(
    postgres_url: str, caplog: pytest.LogCaptureFixture
):
    engine = fulltext_jobs.create_engine(refused_url(postgres_url, "database"))
    worker = Worker(SqlAlchemyRepository(engine), DEST, lambda _job: None, shutdown_timeout=1)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(install_signal_handlers=False)
        except BaseException as exc:  # noqa: BLE001 - what the test checks
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(BOUND_SECONDS)
    stopped_by_itself = not thread.is_alive()
    worker.stop()  # if it kept retrying, end it: the test has failed
    thread.join(BOUND_SECONDS)
    engine.dispose()

    assert stopped_by_itself, "the worker kept retrying a refusal that will not pass"
    (error,) = raised
    assert isinstance(error, StoreError)
    assert not error.retryable
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # one clear line
    assert "stopped" in errors[0].getMessage()
    assert "does not exist" in errors[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


def test_a_listener_that_breaks_leaves_the_worker_polling():
    class Broken(InMemoryRepository):
        def listen(self, destination: str) -> ReadyListener:  # noqa: ARG002 - the port's signature
            msg = "a bug in a listener"
            raise RuntimeError(msg)

    repo = Broken(items=["a", "b"])
    repo.enqueue_unqueued(DEST)
    worker = Worker(repo, DEST, lambda _job: None, poll_interval=0.01, max_poll_interval=0.02)
    stats = worker.run(until_idle=True, install_signal_handlers=False)
    assert stats.finished == 2


def test_a_claim_thread_backing_off_after_an_error_claims_as_soon_as_the_listener_wakes_it():
    """A wake-up from the listener (after an outage: its first, once it
    listens again) ends a claim thread's backoff: it does not sleep out its
    delay, here a minute."""
    failed = threading.Event()
    handled = threading.Event()

    class Away(InMemoryRepository):
        def get_ready_job(self, destination: str) -> FullText:
            if not failed.is_set():
                failed.set()
                raise StoreError("server away", retryable=True)
            return super().get_ready_job(destination)

    repo = Away(items=["a"])
    worker = Worker(
        repo,
        DEST,
        lambda _job: handled.set(),
        poll_interval=60,
        max_poll_interval=60,
        shutdown_timeout=1,
    )
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    try:
        assert failed.wait(BOUND_SECONDS)
        time.sleep(0.2)  # the claim thread is in its backoff now
        repo.save_fulltext(FullText.new("a", DEST))  # the listener hears of it
        assert handled.wait(BOUND_SECONDS), "the claim thread slept out its backoff"
    finally:
        worker.stop()
        thread.join(BOUND_SECONDS)
    assert worker.stats.retryable_errors == 1


# --- Quiet logs ---------------------------------------------------------------------------


def test_looking_at_the_revision_logs_nothing_at_info(
    sqlite_engine: sa.Engine, caplog: pytest.LogCaptureFixture
):
    # What a worker or `fulltext-jobs work` does at every start.
    caplog.set_level(logging.INFO)
    assert fulltext_jobs.current_revision(sqlite_engine) is not None
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []


def test_a_migration_still_logs_its_revisions(
    tmp_sqlite_url: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    fulltext_jobs.upgrade(tmp_sqlite_url)
    assert any("Running upgrade" in r.getMessage() for r in caplog.records)


def test_importing_the_package_logs_nothing_at_info():
    # A worker script that sets up logging before its imports.
    code = (
        "import logging; logging.basicConfig(level=logging.INFO);"
        "import fulltext_jobs; print('imported')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported\n"
    assert done.stderr == ""
