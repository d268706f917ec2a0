"""Joining the caller's Session: the job's state and the app's own writes
commit together or not at all, on SQLite and PostgreSQL, including when the
process dies between the write and the commit.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from fulltext_jobs import (
    DuplicateJob,
    FullText,
    InvalidInput,
    JobStatus,
    LostClaim,
    NoJobs,
    SchemaNotMigrated,
    SqlAlchemyRepository,
)

DEST = "language-detection"

#: The longest a test waits for its child process.
BOUND_SECONDS = 60


class Base(DeclarativeBase):
    pass


class Result(Base):
    """The app's own result row, written in the same transaction as the job."""

    __tablename__ = "app_results"
    item_id: Mapped[str] = mapped_column(primary_key=True)
    language: Mapped[str]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """A migrated database of each kind, with the app's results table and
    two ready jobs."""
    fixture = "sqlite_engine" if request.param == "sqlite" else "clean_postgres_engine"
    engine: sa.Engine = request.getfixturevalue(fixture)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    repo = SqlAlchemyRepository(engine)
    repo.add_items(["item-1", "item-2"])
    assert repo.enqueue_unqueued(DEST) == 2
    yield engine
    Base.metadata.drop_all(engine)


def results(engine: sa.Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {r.item_id: r.language for r in session.scalars(sa.select(Result))}


def statuses(engine: sa.Engine) -> dict[str, JobStatus]:
    (stats,) = SqlAlchemyRepository(engine).stats(DEST)
    return {status.value: count for status, count in stats.counts.items() if count}


def test_the_claim_the_apps_write_and_the_finish_commit_together(engine: sa.Engine):
    repo = SqlAlchemyRepository(engine)
    with Session(engine) as session:
        joined = repo.in_session(session)
        job = joined.get_ready_job(DEST)
        session.add(Result(item_id=job.item_id, language="fr"))
        job.finish()
        joined.save_fulltext(job)
        # Nothing is visible outside the transaction before the commit.
        if engine.dialect.name == "postgresql":
            assert results(engine) == {}
            assert statuses(engine) == {"ready": 2}
        session.commit()
    assert results(engine) == {job.item_id: "fr"}
    assert statuses(engine) == {"ready": 1, "finished": 1}
    assert repo.get_fulltext(job.id).status is JobStatus.FINISHED


def test_an_exception_before_the_commit_undoes_both(engine: sa.Engine):
    repo = SqlAlchemyRepository(engine)
    claimed: list[FullText] = []

    def handle_one() -> None:
        with Session(engine) as session:
            joined = repo.in_session(session)
            job = joined.get_ready_job(DEST)
            claimed.append(job)
            session.add(Result(item_id=job.item_id, language="de"))
            job.finish()
            joined.save_fulltext(job)
            raise RuntimeError("the handler broke")

    with pytest.raises(RuntimeError, match="the handler broke"):
        handle_one()
    assert results(engine) == {}
    assert statuses(engine) == {"ready": 2}
    # The job is claimable again, as the oldest it was.
    again = repo.get_ready_job(DEST)
    assert again.id == claimed[0].id
    assert again.attempts == 1  # the rolled-back attempt left no trace


def test_the_constructor_takes_a_session_too(engine: sa.Engine):
    with Session(engine) as session:
        joined = SqlAlchemyRepository(session)
        job = joined.get_ready_job(DEST)
        session.rollback()
    assert SqlAlchemyRepository(engine).get_fulltext(job.id).status is JobStatus.READY


def test_a_sessionmakers_sessions_work_and_the_repository_never_commits(engine: sa.Engine):
    repo = SqlAlchemyRepository(engine)
    make_session = sessionmaker(engine)
    with make_session() as session:
        joined = repo.in_session(session)
        job = joined.get_ready_job(DEST)
        job.finish()
        joined.save_fulltext(job)
        assert session.in_transaction()
        # Closing without a commit rolls back.
    assert statuses(engine) == {"ready": 2}


def test_a_failed_call_leaves_the_callers_transaction_usable(engine: sa.Engine):
    repo = SqlAlchemyRepository(engine)
    with Session(engine) as session:
        joined = repo.in_session(session)
        session.add(Result(item_id="item-1", language="en"))
        with pytest.raises(DuplicateJob):
            joined.save_fulltext(FullText.new("item-1", DEST))
        job = joined.get_ready_job(DEST)
        stale = dataclasses.replace(job, claim_token=uuid.uuid4())
        with pytest.raises(LostClaim):
            joined.save_fulltext(stale)
        job.finish()
        joined.save_fulltext(job)
        session.commit()
    assert results(engine) == {"item-1": "en"}
    assert statuses(engine) == {"ready": 1, "finished": 1}


@pytest.mark.postgresql
def test_other_workers_pass_over_a_claim_held_in_an_open_session(
    clean_postgres_engine: sa.Engine,
):
    repo = SqlAlchemyRepository(clean_postgres_engine)
    repo.add_items(["item-1", "item-2"])
    repo.enqueue_unqueued(DEST)
    with Session(clean_postgres_engine) as session:
        held = repo.in_session(session).get_ready_job(DEST)
        other = repo.get_ready_job(DEST)
        assert other.id != held.id
        with pytest.raises(NoJobs):
            repo.get_ready_job(DEST)
        session.rollback()
    assert repo.get_ready_job(DEST).id == held.id


def test_in_session_rejects_what_is_not_a_bound_session(engine: sa.Engine):
    repo = SqlAlchemyRepository(engine)
    with pytest.raises(InvalidInput):
        repo.in_session(engine)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput), Session() as unbound:
        repo.in_session(unbound)
    with pytest.raises(InvalidInput):
        SqlAlchemyRepository(Session())


def test_an_unmigrated_database_is_reported_in_a_session(tmp_sqlite_url: str):
    engine = sa.create_engine(tmp_sqlite_url)
    try:
        with Session(engine) as session:
            with pytest.raises(SchemaNotMigrated):
                SqlAlchemyRepository(session).get_ready_job(DEST)
            # The savepoint was rolled back; the session goes on.
            session.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


# --- A process killed between its write and its commit ---------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    import sqlalchemy as sa
    from sqlalchemy.orm import Session
    import fulltext_jobs
    from fulltext_jobs import SqlAlchemyRepository

    engine = fulltext_jobs.create_engine(sys.argv[1])
    repo = SqlAlchemyRepository(engine)
    session = Session(engine)
    joined = repo.in_session(session)
    job = joined.get_ready_job(sys.argv[2])
    session.execute(
        sa.text("INSERT INTO app_results (item_id, language) VALUES (:i, 'it')"),
        {"i": job.item_id},
    )
    job.finish()
    joined.save_fulltext(job)
    print(job.id, flush=True)
    time.sleep(600)  # killed here, before the commit
    """
)


@pytest.mark.slow
def test_a_process_killed_before_its_commit_leaves_no_trace(engine: sa.Engine):
    url = engine.url.render_as_string(hide_password=False)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, DEST],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        job_id = child.stdout.readline().strip()
        assert job_id, "the child did not get as far as its save"
        child.kill()
        child.wait(BOUND_SECONDS)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -9
    assert results(engine) == {}
    repo = SqlAlchemyRepository(engine)
    # PostgreSQL notices the dead backend within moments; its lock goes with
    # the rollback, so the claim waits at most that long.
    again = repo.get_ready_job(DEST)
    assert str(again.id) == job_id
    assert again.attempts == 1
