"""Wake-ups when jobs become ready: `Repository.listen` on every adapter, the
PostgreSQL triggers behind it (whoever writes the row), a listener that
loses its connection, and a worker that wakes long before its poll.

No assertion is on speed: a worker that polls every five minutes must start
a new job within the bound, which only a wake-up can do.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from conftest import LEASE
from harness import Backend, FakeClock, memory_backend, sql_backend

from fulltext_jobs import (
    FullText,
    InMemoryRepository,
    InvalidInput,
    JobStatus,
    ReadyListener,
    SqlAlchemyRepository,
    StoreError,
    Worker,
)
from fulltext_jobs.sql.notifications import READY_CHANNEL

#: Long enough for a notification that is coming; also the test's bound.
ARRIVES_SECONDS = 10.0

#: How long a listener is watched for a notification that must not come.
QUIET_SECONDS = 0.3


@pytest.fixture(params=["memory", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def notifying(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
    """The adapters that can announce ready jobs, empty, on `clock`."""
    if request.param == "memory":
        return memory_backend(clock=clock, lease=LEASE)
    engine = request.getfixturevalue("clean_postgres_engine")
    return sql_backend(engine, clock=clock, lease=LEASE)


def listening(backend: Backend, destination: str = "lang") -> ReadyListener:
    listener = backend.repo.listen(destination)
    assert listener is not None
    return listener


def assert_woken(listener: ReadyListener) -> None:
    assert listener.wait(ARRIVES_SECONDS), "no wake-up came"


def assert_quiet(listener: ReadyListener) -> None:
    assert not listener.wait(QUIET_SECONDS), "a wake-up came that should not have"


class TestListenContract:
    """What every adapter that can notify promises."""

    def test_a_saved_new_job_wakes_its_destination_only(self, notifying: Backend):
        with listening(notifying) as lang, listening(notifying, "quote") as quote:
            notifying.repo.save_fulltext(FullText.new("a", "lang"))
            assert_woken(lang)
            assert_quiet(lang)  # one wake-up per change, not forever
            assert_quiet(quote)

    def test_creating_and_enqueuing_wake(self, notifying: Backend):
        notifying.add_items(["a", "b", "c"])
        with listening(notifying) as listener:
            notifying.repo.create_job_for_unqueued("lang")
            assert_woken(listener)
            assert notifying.repo.enqueue_unqueued("lang") == 2
            assert_woken(listener)

    def test_claiming_heartbeating_and_finishing_do_not_wake(self, notifying: Backend):
        notifying.repo.save_fulltext(FullText.new("a", "lang"))
        with listening(notifying) as listener:
            job = notifying.repo.get_ready_job("lang")
            notifying.repo.heartbeat(job)
            job.finish()
            notifying.repo.save_fulltext(job)
            assert_quiet(listener)

    def test_releasing_rescuing_and_retrying_wake(self, notifying: Backend, clock: FakeClock):
        notifying.add_items(["a", "b", "c"])
        notifying.repo.enqueue_unqueued("lang")
        released, expired, failed = notifying.repo.claim_ready("lang", 3)
        with listening(notifying) as listener:
            released.release()
            notifying.repo.save_fulltext(released)
            assert_woken(listener)

            failed.fail(error="boom")
            notifying.repo.save_fulltext(failed)
            assert_quiet(listener)
            assert notifying.repo.retry("lang", statuses=[JobStatus.FAILED]) == 1
            assert_woken(listener)

            clock.advance(seconds=LEASE.total_seconds() + 1)
            assert notifying.repo.rescue_expired("lang") == 1
            assert notifying.repo.get_fulltext(expired.id).status is JobStatus.READY
            assert_woken(listener)

    def test_a_wake_up_before_the_wait_is_kept(self, notifying: Backend):
        with listening(notifying) as listener:
            notifying.repo.save_fulltext(FullText.new("a", "lang"))
            time.sleep(QUIET_SECONDS)
            assert listener.wait(0)
            assert_quiet(listener)

    def test_a_closed_listener_wakes_no_more(self, notifying: Backend):
        listener = listening(notifying)
        listener.close()
        listener.close()  # idempotent
        notifying.repo.save_fulltext(FullText.new("a", "lang"))
        assert not listener.wait(QUIET_SECONDS)

    @pytest.mark.parametrize("bad", ["", "x" * 101, "a\x00b", None])
    def test_listen_rejects_a_bad_destination(self, notifying: Backend, bad):
        with pytest.raises(InvalidInput):
            notifying.repo.listen(bad)


def test_sqlite_cannot_notify(sqlite_engine: sa.Engine):
    repo = SqlAlchemyRepository(sqlite_engine)
    assert repo.listen("lang") is None
    with pytest.raises(InvalidInput):
        repo.listen("")


# --- PostgreSQL: the triggers, whoever writes -----------------------------


@pytest.mark.postgresql
def test_the_originals_positional_insert_and_an_apps_update_wake(
    clean_postgres_engine: sa.Engine,
):
    repo = SqlAlchemyRepository(clean_postgres_engine)
    with repo.listen("lang") as listener, clean_postgres_engine.connect() as connection:
        assert listener is not None
        job_id = uuid.uuid4()
        connection.exec_driver_sql(
            "INSERT INTO jobs.fulltext VALUES (%(id)s, 'item-1', 'lang', NULL, NULL, 'finished')",
            {"id": job_id},
        )
        connection.commit()
        assert_quiet(listener)  # finished: nothing to claim
        connection.exec_driver_sql(
            "UPDATE jobs.fulltext SET status = 'ready', finished = NULL WHERE id = %(id)s",
            {"id": job_id},
        )
        connection.commit()
        assert_woken(listener)
        connection.exec_driver_sql(
            "INSERT INTO jobs.fulltext VALUES (%(id)s, 'item-2', 'lang', NULL, NULL, 'ready')",
            {"id": uuid.uuid4()},
        )
        connection.commit()
        assert_woken(listener)


@pytest.mark.postgresql
def test_a_rolled_back_insert_wakes_nobody(clean_postgres_engine: sa.Engine):
    repo = SqlAlchemyRepository(clean_postgres_engine)
    with repo.listen("lang") as listener, clean_postgres_engine.connect() as connection:
        assert listener is not None
        connection.exec_driver_sql(
            "INSERT INTO jobs.fulltext VALUES (%(id)s, 'item-1', 'lang', NULL, NULL, 'ready')",
            {"id": uuid.uuid4()},
        )
        connection.rollback()
        assert_quiet(listener)


@pytest.mark.postgresql
def test_a_bulk_enqueue_sends_one_notification_per_destination(
    clean_postgres_engine: sa.Engine,
):
    repo = SqlAlchemyRepository(clean_postgres_engine, enqueue_batch_size=500)
    repo.add_items(f"item-{n:05}" for n in range(2_000))
    raw = clean_postgres_engine.raw_connection()
    try:
        raw.detach()
        connection = raw.dbapi_connection
        assert connection is not None
        connection.autocommit = True
        connection.execute(f"LISTEN {READY_CHANNEL}")
        assert repo.enqueue_unqueued("lang") == 2_000
        received = [
            notification.payload for notification in connection.notifies(timeout=QUIET_SECONDS * 3)
        ]
    finally:
        raw.close()
    # One per committed batch, folded within each transaction.
    assert received == ["lang"] * 4


@pytest.mark.postgresql
def test_a_listener_whose_connection_is_terminated_listens_again(
    clean_postgres_engine: sa.Engine,
):
    repo = SqlAlchemyRepository(clean_postgres_engine)
    listener = repo.listen("lang")
    assert listener is not None
    with listener, clean_postgres_engine.connect() as admin:
        killed = admin.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE %(listen)s",
            {"listen": f"LISTEN {READY_CHANNEL}%"},
        ).scalar_one()
        assert killed
        with pytest.raises(StoreError) as caught:
            # The loss shows when the wait reads the socket.
            listener.wait(ARRIVES_SECONDS)
        assert caught.value.retryable
        # Listening again: "maybe" at once, since notifications were lost.
        assert listener.wait(0)
        repo.save_fulltext(FullText.new("a", "lang"))
        assert_woken(listener)


# --- The worker wakes ------------------------------------------------------


def run_in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(
        target=worker.run, kwargs={"install_signal_handlers": False}, daemon=True
    )
    thread.start()
    return thread


def started_before_poll(
    notifying: Backend, *, listen: bool, make_ready: Callable[[], object]
) -> bool:
    """Start an idle worker polling every five minutes, let its first poll
    pass, make a job ready, and say whether its handler started within the
    bound."""
    started = threading.Event()
    worker = Worker(
        notifying.repo,
        "lang",
        lambda _job: started.set(),
        poll_interval=300,
        max_poll_interval=300,
        listen=listen,
        shutdown_timeout=5,
    )
    thread = run_in_thread(worker)
    try:
        # Its first claim found nothing; it sleeps for five minutes now.
        time.sleep(QUIET_SECONDS * 2)
        make_ready()
        return started.wait(ARRIVES_SECONDS if listen else QUIET_SECONDS * 3)
    finally:
        worker.stop()
        thread.join(ARRIVES_SECONDS)
        assert not thread.is_alive()


def test_a_waiting_worker_wakes_when_a_job_becomes_ready(notifying: Backend):
    notifying.add_items(["a", "b"])
    assert started_before_poll(
        notifying, listen=True, make_ready=lambda: notifying.repo.create_job_for_unqueued("lang")
    )
    (stats,) = notifying.repo.stats("lang")
    assert stats.counts[JobStatus.FINISHED] == 1


def test_without_listening_the_same_worker_sleeps_through(notifying: Backend):
    notifying.add_items(["a"])
    assert not started_before_poll(
        notifying, listen=False, make_ready=lambda: notifying.repo.create_job_for_unqueued("lang")
    )


@pytest.mark.parametrize("retryable", [True, False])
def test_a_worker_whose_listener_fails_goes_on_polling(retryable: bool):
    class Deaf(InMemoryRepository):
        calls = 0

        def listen(self, destination: str) -> ReadyListener:  # noqa: ARG002 - the port's signature
            Deaf.calls += 1
            raise StoreError("server gone", retryable=retryable)

    repo = Deaf(items=["a", "b"])
    repo.enqueue_unqueued("lang")
    worker = Worker(repo, "lang", lambda _job: None, poll_interval=0.01, max_poll_interval=0.02)
    stats = worker.run(until_idle=True, install_signal_handlers=False)
    assert stats.finished == 2
    assert Deaf.calls >= 1
