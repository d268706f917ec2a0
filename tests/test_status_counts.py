"""The jobs' counts by destination and status that the database keeps
(migration 0019): exactly what `count(*)` says, on SQLite and PostgreSQL,
whoever wrote the jobs and however: the library's every path, the Go
original's positional insert and upsert, raw updates and deletes, writers
in several processes, a ledger upgraded with jobs in it, and a downgrade
and upgrade again. `stats`, the dashboard and `/metrics` read them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import Backend, FakeClock, jobs_table_role, sql_backend

import fulltext_jobs
from fulltext_jobs import JobStatus
from fulltext_jobs.sql.overview import read_only_engine, read_overview

REPO_ROOT = Path(__file__).resolve().parent.parent

LEASE = timedelta(seconds=60)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> Backend:
    """A SQL backend on `clock`, empty."""
    fixture = "sqlite_engine" if request.param == "sqlite" else "clean_postgres_engine"
    engine: sa.Engine = request.getfixturevalue(fixture)
    return sql_backend(engine, clock=clock, lease=LEASE)


def table_name(engine: sa.Engine) -> str:
    return "jobs.fulltext" if engine.dialect.name == "postgresql" else "fulltext"


def counted(engine: sa.Engine) -> dict[tuple[str, str], int]:
    """The jobs per (destination, status), counted from the jobs themselves."""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f"SELECT destination, CAST(status AS TEXT), count(*) FROM {table_name(engine)} "  # noqa: S608 - a constant
            "GROUP BY destination, status"
        )
        return {(d, s): n for d, s, n in rows}


def kept(repo: fulltext_jobs.Repository) -> dict[tuple[str, str], int]:
    """The same, as `stats` reads it from the counts the database keeps."""
    return {
        (found.destination, str(status)): n
        for found in repo.stats()
        for status, n in found.counts.items()
        if n
    }


def overview_counts(url: str) -> dict[tuple[str, str], int]:
    """The same, as the dashboard reads it, read-only (it cannot fold)."""
    engine = read_only_engine(url)
    try:
        return {
            (row.destination, str(status)): n
            for row in read_overview(engine).destinations
            for status, n in row.stats.counts.items()
            if n
        }
    finally:
        engine.dispose()


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def assert_exact(backend: Backend) -> None:
    assert backend.engine is not None
    expected = counted(backend.engine)
    assert overview_counts(url_of(backend.engine)) == expected
    assert kept(backend.repo) == expected
    for destination in {d for d, _s in expected}:
        [one] = backend.repo.stats(destination)
        assert {(destination, str(s)): n for s, n in one.counts.items() if n} == {
            key: n for key, n in expected.items() if key[0] == destination
        }


def test_every_path_of_the_library_and_raw_sql_keeps_the_counts_exact(
    store: Backend, clock: FakeClock
):
    repo, engine = store.repo, store.engine
    assert engine is not None
    store.add_items(f"item-{n}" for n in range(40))
    assert repo.enqueue_new("d1") == 40
    assert repo.enqueue_new("d2") == 40
    assert_exact(store)

    claimed = repo.claim_ready("d1", 12)
    single = repo.get_ready_job("d2")
    assert_exact(store)
    for job in claimed[:4]:
        job.finish()
    for job in claimed[4:7]:
        job.fail(error="boom")
    claimed[7].skip(error="nothing to do")
    claimed[8].release()
    repo.save_many(claimed[:9])
    single.finish()
    repo.save_fulltext(single)
    assert_exact(store)

    assert repo.retry("d1", statuses=[JobStatus.FAILED]) == 3
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert repo.rescue_expired() == 3
    assert_exact(store)

    repo.cancel("d2", all_ready=True)
    with repo.hold_ready("d1", 5) as held:
        for job in held:
            job.finish()
    assert_exact(store)

    table = table_name(engine)
    with engine.begin() as connection:
        # An app's own SQL: a raw update of statuses, a move of a job to
        # another destination, deletes, and an insert.
        connection.exec_driver_sql(
            f"UPDATE {table} SET status = 'failed' WHERE destination = 'd2' AND status = 'skipped' "  # noqa: S608 - a constant
            "AND item_id IN ('item-1', 'item-2', 'item-3')"
        )
        connection.exec_driver_sql(
            f"UPDATE {table} SET destination = 'd3' WHERE item_id = 'item-5' AND destination = 'd1'"  # noqa: S608 - a constant
        )
        connection.exec_driver_sql(
            f"DELETE FROM {table} WHERE destination = 'd2' AND item_id IN ('item-7', 'item-8')"  # noqa: S608 - a constant
        )
        connection.exec_driver_sql(
            f"UPDATE {table} SET last_error = 'noted' WHERE destination = 'd1'"  # noqa: S608 - a constant
        )
    assert_exact(store)

    if engine.dialect.name == "postgresql":
        # The Go original: its positional insert and its upsert, as it ran
        # them (psycopg's raw cursor, $n placeholders).
        import psycopg  # noqa: PLC0415

        upsert = (
            "INSERT INTO jobs.fulltext VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (id) DO UPDATE SET item_id = $2, destination = $3, "
            "started = $4, finished = $5, status = $6"
        )
        libpq = sa.make_url(url_of(engine)).set(drivername="postgresql")
        job_id = uuid.uuid4()
        with psycopg.connect(
            libpq.render_as_string(hide_password=False),
            cursor_factory=psycopg.RawCursor,
            autocommit=True,
        ) as conn:
            conn.execute(
                "INSERT INTO jobs.fulltext VALUES ($1, $2, $3, $4, $5, $6)",
                (uuid.uuid4(), "go-1", "go", None, None, "ready"),
            )
            conn.execute(upsert, (job_id, "go-2", "go", None, None, "ready"))
            conn.execute(upsert, (job_id, "go-2", "go", clock.now, None, "running"))
            conn.execute(upsert, (job_id, "go-2", "go", clock.now, clock.now, "finished"))
        assert_exact(store)
        with engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE jobs.fulltext")
        assert counted(engine) == {}
        assert_exact(store)


@pytest.mark.postgresql
def test_postgresql_folds_the_deltas_and_never_where_it_would_wait(
    clean_postgres_engine: sa.Engine,
):
    """`stats` folds the deltas into the sum; a read-only transaction, one
    above read committed, or one while another fold holds the lock folds
    nothing; a writer folds when it appends the 1,024th delta."""
    engine = clean_postgres_engine
    backend = sql_backend(engine)
    backend.add_items(f"item-{n}" for n in range(20))
    backend.repo.enqueue_new("d")
    backend.repo.claim_ready("d", 5)

    def deltas() -> int:
        with engine.connect() as connection:
            return connection.exec_driver_sql(
                "SELECT count(*) FROM jobs.fulltext_status_deltas"
            ).scalar_one()

    assert deltas() > 0
    with engine.connect() as connection:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        assert connection.exec_driver_sql("SELECT jobs.fulltext_status_fold()").scalar() is False
    with engine.connect() as connection:
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert connection.exec_driver_sql("SELECT jobs.fulltext_status_fold()").scalar() is False
    with engine.connect() as holder, engine.connect() as other:
        assert holder.exec_driver_sql("SELECT jobs.fulltext_status_fold()").scalar() is True
        assert other.exec_driver_sql("SELECT jobs.fulltext_status_fold()").scalar() is False
        holder.rollback()
    assert deltas() > 0
    assert kept(backend.repo) == counted(engine)
    assert deltas() == 0

    with engine.begin() as connection:
        connection.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('jobs.fulltext_status_deltas', 'id'), 1022)"
        )
    backend.repo.claim_ready("d", 1)  # appends ids 1023 and 1024: the writer folds
    assert deltas() == 0
    assert kept(backend.repo) == counted(engine)


JOBS_AT_0017 = {
    "sqlite": (
        "INSERT INTO fulltext (id, item_id, destination, status) VALUES "
        "('{id}', 'item-{n}', 'dest-{d}', '{status}')"
    ),
    "postgresql": (
        "INSERT INTO jobs.fulltext (id, item_id, destination, status) VALUES "
        "('{id}', 'item-{n}', 'dest-{d}', '{status}')"
    ),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_sqlite_url: str) -> str:
    if request.param == "sqlite":
        return tmp_sqlite_url
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


def add_raw_jobs(url: str, start: int, n: int) -> None:
    engine = sa.create_engine(url)
    statuses = ("ready", "running", "finished", "failed", "skipped")
    try:
        with engine.begin() as connection:
            for k in range(start, start + n):
                connection.exec_driver_sql(
                    JOBS_AT_0017[engine.dialect.name].format(
                        id=uuid.uuid4()
                        if engine.dialect.name == "postgresql"
                        else uuid.uuid4().hex,
                        n=k,
                        d=k % 3,
                        status=statuses[k % len(statuses)],
                    )
                )
    finally:
        engine.dispose()


def test_an_upgraded_ledger_starts_from_its_jobs_and_a_downgrade_round_stays_exact(fresh: str):
    fulltext_jobs.upgrade(fresh, "0017")
    add_raw_jobs(fresh, 0, 50)
    fulltext_jobs.upgrade(fresh)
    engine = fulltext_jobs.create_engine(fresh)
    try:
        repo = fulltext_jobs.SqlAlchemyRepository(engine)
        assert sum(counted(engine).values()) == 50
        assert kept(repo) == counted(engine)
        add_raw_jobs(fresh, 50, 7)
        assert kept(repo) == counted(engine)
        engine.dispose()
        fulltext_jobs.downgrade(fresh, "0017")
        # Written while nothing counts: the upgrade counts them again.
        add_raw_jobs(fresh, 100, 11)
        fulltext_jobs.upgrade(fresh)
        assert sum(counted(engine).values()) == 68
        assert kept(repo) == counted(engine)
        assert overview_counts(fresh) == counted(engine)
    finally:
        engine.dispose()


WRITER = textwrap.dedent(
    """
    import sys
    import fulltext_jobs
    from fulltext_jobs import SqlAlchemyRepository

    url, destination, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = fulltext_jobs.create_engine(url)
    repo = SqlAlchemyRepository(engine)
    for n in range(rounds):
        jobs = repo.claim_ready(destination, 4)
        for k, job in enumerate(jobs):
            (job.finish, job.fail, job.skip, job.release)[(n + k) % 4]()
        repo.save_many(jobs, atomic=False)
        if n % 5 == 0:
            repo.retry(destination)
            repo.stats()
    engine.dispose()
    """
)


def test_writers_in_several_processes_keep_the_counts_exact(store: Backend):
    engine = store.engine
    assert engine is not None
    store.add_items(f"item-{n}" for n in range(200))
    for destination in ("a", "b"):
        store.repo.enqueue_new(destination)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url_of(engine), destination, "25"],
            env={"PYTHONPATH": str(REPO_ROOT)},
        )
        for destination in ("a", "b", "a")
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    assert sum(counted(engine).values()) == 400
    assert_exact(store)


@pytest.mark.postgresql
def test_a_writer_allowed_only_the_jobs_table_is_counted(clean_postgres_engine: sa.Engine):
    """The Go original's role, or an app's, may write the jobs table and
    nothing else of ours: the triggers run as the role that migrated, so
    its writes succeed and are counted, a fold included."""
    engine = clean_postgres_engine
    with jobs_table_role(engine, "ftj_writer") as role:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('jobs.fulltext_status_deltas', 'id'), 1020)"
            )
            connection.exec_driver_sql(f"SET LOCAL ROLE {role}")
            for n in range(6):
                connection.execute(
                    sa.text(
                        "INSERT INTO jobs.fulltext (id, item_id, destination, status) "
                        "VALUES (gen_random_uuid(), :item, 'go', 'ready')"
                    ),
                    {"item": f"item-{n}"},
                )
            connection.exec_driver_sql(
                "UPDATE jobs.fulltext SET status = 'running' WHERE item_id IN ('item-1', 'item-2')"
            )
            connection.exec_driver_sql("DELETE FROM jobs.fulltext WHERE item_id = 'item-3'")
        with engine.connect() as connection:
            folded = connection.exec_driver_sql(
                "SELECT count(*) FROM jobs.fulltext_status_counts"
            ).scalar_one()
        assert folded == 1  # the writer of the delta with id 1024 folded
        assert (
            kept(sql_backend(engine).repo)
            == counted(engine)
            == {
                ("go", "ready"): 3,
                ("go", "running"): 2,
            }
        )


@pytest.mark.postgresql
def test_the_baseline_run_again_puts_right_the_writes_no_trigger_counted(
    clean_postgres_engine: sa.Engine,
):
    engine = clean_postgres_engine
    path = REPO_ROOT / "migrations" / "versions" / "0019_status_counts.py"
    spec = importlib.util.spec_from_file_location("_revision_0019", path)
    assert spec is not None
    assert spec.loader is not None
    revision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision)
    add = (
        "INSERT INTO jobs.fulltext (id, item_id, destination, status) "
        "SELECT gen_random_uuid(), 'item-' || g, 'd', 'ready' FROM generate_series(1, 5) g"
    )
    with engine.begin() as connection:
        connection.exec_driver_sql(add.replace("'item-'", "'counted-'"))
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        connection.exec_driver_sql(add)
    repo = sql_backend(engine).repo
    assert kept(repo) == {("d", "ready"): 5} != counted(engine)
    for _ in range(2):
        with engine.begin() as connection:
            connection.exec_driver_sql(revision.POSTGRESQL_BASELINE)
        assert kept(repo) == counted(engine) == {("d", "ready"): 10}
