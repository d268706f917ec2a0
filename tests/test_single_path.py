"""The single-job calls' own path on PostgreSQL.

`get_ready_job` and `save_fulltext` run their one statement in autocommit
on a connection of the engine's pool, without a SQLAlchemy Connection
around it. The pool is shared with the calls that run transactions (and
with the app), so each such call must hand its connection back out of
autocommit, whatever happened: success, a refused save, a constraint, a
connection lost after the statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

import fulltext_jobs
from fulltext_jobs import (
    DuplicateJob,
    FullText,
    JobStatus,
    LostClaim,
    SqlAlchemyRepository,
)
from fulltext_jobs.sql.schema import tables_for

pytestmark = pytest.mark.postgresql

DEST = "single-path"


class _LosableConnection(psycopg.Connection[Any]):
    """A driver connection that a test can make refuse to leave
    autocommit, as a connection lost at that moment would; it stays open
    (and in autocommit), so only the caller's handling keeps it from
    going back to the pool as it is."""

    fail_leaving_autocommit = False

    @property
    def autocommit(self) -> bool:
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if not value and self.fail_leaving_autocommit:
            msg = "the connection is lost"
            raise psycopg.OperationalError(msg)
        self._set_autocommit(value)


@pytest.fixture
def opened() -> list[_LosableConnection]:
    """The driver connections `engine` opened, oldest first."""
    return []


@pytest.fixture
def engine(
    postgres_url: str,
    clean_postgres_engine: sa.Engine,  # noqa: ARG001 - for its reset of the database
    opened: list[_LosableConnection],
) -> Iterator[sa.Engine]:
    """An engine with one pooled connection: every call of a test reuses
    the connection the previous one handed back."""
    conninfo = (
        sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )

    def connect() -> _LosableConnection:
        connection = _LosableConnection.connect(conninfo)
        opened.append(connection)
        return connection

    engine = fulltext_jobs.create_engine(
        postgres_url, creator=connect, pool_size=1, max_overflow=0, pool_timeout=5
    )
    yield engine
    engine.dispose()


def ready_jobs(repo: SqlAlchemyRepository, count: int) -> None:
    repo.add_items(f"item-{n}" for n in range(count))
    assert repo.enqueue_unqueued(DEST) == count


def check_transactional(engine: sa.Engine, job_id: uuid.UUID) -> None:
    """The pool's connection is out of autocommit: a write in a
    transaction that rolls back leaves nothing."""
    fulltext = tables_for("postgresql").fulltext
    with engine.connect() as connection:
        driver = connection.connection.dbapi_connection
        assert isinstance(driver, psycopg.Connection)
        assert driver.autocommit is False
        connection.execute(
            fulltext.update().where(fulltext.c.id == job_id).values(last_error="not kept")
        )
        connection.rollback()
    with engine.connect() as connection:
        kept = connection.execute(
            sa.select(fulltext.c.last_error).where(fulltext.c.id == job_id)
        ).scalar_one()
    assert kept is None


def test_each_single_call_hands_its_connection_back_out_of_autocommit(
    engine: sa.Engine, opened: list[_LosableConnection]
):
    repo = SqlAlchemyRepository(engine)
    ready_jobs(repo, 2)
    job = repo.get_ready_job(DEST)
    check_transactional(engine, job.id)
    job.finish()
    repo.save_fulltext(job)
    check_transactional(engine, job.id)
    assert repo.get_fulltext(job.id).status is JobStatus.FINISHED
    # A refused save (the claim ended with the first) and a clash on the
    # pair: the statement ran, changed nothing, and the connection is back
    # as the pool expects it.
    with pytest.raises(LostClaim):
        repo.save_fulltext(job)
    check_transactional(engine, job.id)
    with pytest.raises(DuplicateJob, match="'item-0' and destination 'single-path'"):
        repo.save_fulltext(FullText.new("item-0", DEST))
    check_transactional(engine, job.id)
    # A transaction of the repository's own on the same connection: all or
    # nothing still.
    other = repo.get_ready_job(DEST)
    other.finish()
    stale = repo.get_fulltext(job.id)
    stale.version -= 1
    with pytest.raises(LostClaim):
        repo.save_many([other, stale])
    assert repo.get_fulltext(other.id).status is JobStatus.RUNNING
    assert len(opened) == 1, "every call reused the one pooled connection"


def test_a_connection_that_cannot_leave_autocommit_is_replaced_and_the_call_stands(
    engine: sa.Engine, opened: list[_LosableConnection]
):
    repo = SqlAlchemyRepository(engine)
    ready_jobs(repo, 2)
    (first,) = opened
    first.fail_leaving_autocommit = True
    # The claim committed (autocommit) before the connection failed: the
    # call returns it, and the connection, still in autocommit, is closed
    # rather than handed to the next caller.
    job = repo.get_ready_job(DEST)
    assert first.closed
    stored = repo.get_fulltext(job.id)
    assert (stored.status, stored.claim_token) == (JobStatus.RUNNING, job.claim_token)
    assert len(opened) == 2
    check_transactional(engine, job.id)
    job.finish()
    repo.save_fulltext(job)
    assert repo.get_fulltext(job.id).status is JobStatus.FINISHED
    assert len(opened) == 2


def test_an_autocommit_engine_keeps_its_connections_in_autocommit(
    postgres_url: str,
    clean_postgres_engine: sa.Engine,  # noqa: ARG001 - for its reset of the database
):
    """An app's engine made in autocommit gets its connections back as it
    lent them: the single calls switch a connection only if it needed it."""
    engine = fulltext_jobs.create_engine(
        postgres_url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0
    )
    try:
        repo = SqlAlchemyRepository(engine)
        ready_jobs(repo, 1)
        job = repo.get_ready_job(DEST)
        job.finish()
        repo.save_fulltext(job)
        # (Checked before any other call of the repository: those that run
        # through SQLAlchemy's autocommit engine reset the isolation level
        # to the engine's own on their way back.)
        with engine.connect() as connection:
            driver = connection.connection.dbapi_connection
            assert isinstance(driver, psycopg.Connection)
            assert driver.autocommit is True
        assert repo.get_fulltext(job.id).status is JobStatus.FINISHED
    finally:
        engine.dispose()
