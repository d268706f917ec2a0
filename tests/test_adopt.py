"""Adopting a database laid out by the Go original: built here with plain
SQL as the original's deployments have it, brought under fulltext-jobs'
migrations without losing a row, and then shared by both: jobs the original
made are claimed and finished by this library, and jobs this library writes
are read, saved and claimed by the original's own statements."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import fulltext_jobs
from fulltext_jobs import (
    AllQueued,
    FullText,
    InvalidInput,
    ItemSource,
    JobStatus,
    NoJobs,
    SchemaNotMigrated,
    SqlAlchemyRepository,
)
from fulltext_jobs.cli import app
from fulltext_jobs.sql.schema import SCHEMA_REVISION
from fulltext_jobs.sql.schema_audit import schema_problems

pytestmark = pytest.mark.postgresql

# The original's layout (DESIGN.md): the crawler's items, with the item's
# metadata in `api`; the jobs, with the enum, the unique pair (under
# PostgreSQL's default name) and the foreign key to items.
ORIGINAL_LAYOUT = (
    "CREATE TABLE items (id text PRIMARY KEY, title text, api jsonb)",
    "CREATE SCHEMA jobs",
    "CREATE TYPE job_statuses AS ENUM ('ready', 'running', 'skipped', 'failed', 'finished')",
    """
    CREATE TABLE jobs.fulltext (
        id uuid PRIMARY KEY,
        item_id text NOT NULL REFERENCES items (id),
        destination text NOT NULL,
        started timestamptz,
        finished timestamptz,
        status job_statuses,
        UNIQUE (item_id, destination)
    )
    """,
)

# The statements the original's Go code ran (common/jobs, repository_pgx.go).
ORIGINAL_GET = (
    "SELECT id, item_id, destination, started, finished, status FROM jobs.fulltext WHERE id = %s"
)
ORIGINAL_SAVE = """
INSERT INTO jobs.fulltext VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE
SET item_id = EXCLUDED.item_id, destination = EXCLUDED.destination,
    started = EXCLUDED.started, finished = EXCLUDED.finished, status = EXCLUDED.status
"""
ORIGINAL_CLAIM_SELECT = """
SELECT id, item_id, destination, started, finished, status
FROM jobs.fulltext
WHERE status = 'ready' AND destination = %s
FOR UPDATE SKIP LOCKED
LIMIT 1
"""
ORIGINAL_CLAIM_UPDATE = "UPDATE jobs.fulltext SET status = 'running', started = %s WHERE id = %s"

T0 = datetime(2021, 6, 1, 12, 0, 0, 123_456, tzinfo=UTC)
T1 = datetime(2021, 6, 1, 12, 5, 0, 654_321, tzinfo=UTC)

# Jobs as the original left them: (item, destination, started, finished, status).
ORIGINAL_JOBS = (
    ("item-1", "language", T0, T1, "finished"),
    ("item-2", "language", T0, None, "running"),  # claimed by a Go worker, no lease
    ("item-3", "language", None, None, "ready"),
    ("item-1", "quotations", T0, T1, "failed"),
    ("item-2", "quotations", None, None, "ready"),
)


@pytest.fixture
def original(fresh_postgres_url: str) -> tuple[str, dict[uuid.UUID, tuple]]:
    """A database in the original's layout with its rows (dropped by
    `fresh_postgres_url`); its URL and the jobs by id."""
    dsn = sa.make_url(fresh_postgres_url).set(drivername="postgresql")
    with psycopg.connect(dsn.render_as_string(hide_password=False), autocommit=True) as conn:
        for statement in ORIGINAL_LAYOUT:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO items VALUES ('item-1', 'A letter', '{\"k\": 1}'), "
            "('item-2', 'A diary', '{\"k\": 2}'), ('item-3', 'A map', '{\"k\": 3}'), "
            "('item-4', 'A song', '{\"k\": 4}'), ('item-5', 'Not fetched', NULL)"
        )
        jobs = {}
        for row in ORIGINAL_JOBS:
            job_id = uuid.uuid4()
            conn.execute(ORIGINAL_SAVE, (job_id, *row))
            jobs[job_id] = row
    return fresh_postgres_url, jobs


@pytest.fixture
def adopted(original) -> Iterator[tuple[str, dict[uuid.UUID, tuple], sa.Engine]]:
    """`original`, adopted: its URL, the original's jobs by id, and an engine."""
    url, jobs = original
    fulltext_jobs.adopt(url)
    engine = fulltext_jobs.create_engine(url)
    yield url, jobs, engine
    engine.dispose()


def psycopg_connect(url: str) -> psycopg.Connection:
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(dsn, autocommit=True)


def original_rows(url: str) -> dict[uuid.UUID, tuple]:
    with psycopg_connect(url) as conn:
        rows = conn.execute(
            "SELECT id, item_id, destination, started, finished, status::text FROM jobs.fulltext"
        ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def app_repository(engine: sa.Engine) -> SqlAlchemyRepository:
    items = sa.table("items", sa.column("id", sa.Text), sa.column("api", sa.JSON))
    return SqlAlchemyRepository(engine, items=ItemSource(items, eligible=items.c.api.is_not(None)))


def test_adopting_keeps_every_row_and_reaches_the_head(original):
    url, jobs = original
    assert fulltext_jobs.current_revision(url) is None
    before = datetime.now(UTC)
    assert fulltext_jobs.adopt(url) is None  # adopted now
    # The original recorded no ready time: its jobs are ready from the
    # adoption (migration 0017's default, kept in the catalogue).
    with psycopg_connect(url) as conn:
        [(earliest, latest)] = conn.execute(
            "SELECT min(ready_at), max(ready_at) FROM jobs.fulltext"
        ).fetchall()
    assert earliest == latest
    assert before - timedelta(seconds=1) <= earliest <= datetime.now(UTC)
    assert fulltext_jobs.current_revision(url) == SCHEMA_REVISION
    assert original_rows(url) == jobs
    # Adopting again only upgrades: harmless.
    assert fulltext_jobs.adopt(url) == SCHEMA_REVISION
    assert original_rows(url) == jobs


def test_after_adoption_the_library_works_the_originals_jobs(adopted):
    _, jobs, engine = adopted
    repo = app_repository(engine)
    by_item = {(row[0], row[1]): job_id for job_id, row in jobs.items()}

    claimed = repo.get_ready_job("language")
    assert claimed.id == by_item["item-3", "language"]
    claimed.finish()
    repo.save_fulltext(claimed)
    assert repo.get_fulltext(claimed.id).status is JobStatus.FINISHED

    # The Go worker's running job has no lease: left alone by rescue,
    # and its worker can still finish it with the original's save.
    assert repo.rescue_expired() == 0
    running = repo.get_fulltext(by_item["item-2", "language"])
    assert running.status is JobStatus.RUNNING
    assert running.lease_expires is None

    # Only eligible items without a job get one; item-5 has no metadata.
    assert repo.count_unqueued("language") == 1
    assert repo.create_job_for_unqueued("language").item_id == "item-4"
    assert repo.enqueue_unqueued("quotations") == 2  # item-3 and item-4
    (language,) = repo.stats("language")
    assert language.counts[JobStatus.FINISHED] == 2
    assert language.unqueued == 0

    # The failed job the original recorded can be retried in place.
    assert repo.retry("quotations") == 1
    assert {job.item_id for job in repo.claim_ready("quotations", 10)} == {
        "item-1",
        "item-2",
        "item-3",
        "item-4",
    }


def test_after_adoption_the_original_reads_saves_and_claims_our_jobs(adopted):
    url, _, engine = adopted
    repo = app_repository(engine)
    ours = repo.create_job_for_unqueued("language")  # item-4, ready

    with psycopg_connect(url) as conn:
        # Its select by id reads our job's six columns.
        row = conn.execute(ORIGINAL_GET, (ours.id,)).fetchone()
        assert row == (ours.id, "item-4", "language", None, None, "ready")

        # Its claim takes our job (the oldest ready one is the Go-made
        # item-3; take that first).
        claimed_ids = []
        for _ in range(2):
            with conn.transaction():
                got = conn.execute(ORIGINAL_CLAIM_SELECT, ("language",)).fetchone()
                assert got is not None
                conn.execute(ORIGINAL_CLAIM_UPDATE, (T1, got[0]))
                claimed_ids.append(got[0])
        assert ours.id in claimed_ids
        with pytest.raises(NoJobs):
            repo.get_ready_job("language")

        # Its positional insert-or-update finishes it.
        conn.execute(ORIGINAL_SAVE, (ours.id, "item-4", "language", T1, T1, "finished"))
        # And makes a new job of its own, which we can claim.
        new_id = uuid.uuid4()
        conn.execute(ORIGINAL_SAVE, (new_id, "item-5", "quotations", None, None, "ready"))

    done = repo.get_fulltext(ours.id)
    assert (done.status, done.started, done.finished) == (JobStatus.FINISHED, T1, T1)
    theirs = repo.get_ready_job("quotations")
    assert theirs.id != new_id  # the Go-made item-2 job is older
    assert repo.get_ready_job("quotations").id == new_id


def test_our_save_of_a_job_for_an_unknown_item_is_refused_by_the_kept_foreign_key(adopted):
    *_, engine = adopted
    with pytest.raises(fulltext_jobs.StoreError, match="foreign key"):
        app_repository(engine).save_fulltext(FullText.new("no-such-item", "language"))


def test_a_database_that_is_not_the_originals_is_refused_unchanged(fresh_postgres_url: str):
    with pytest.raises(InvalidInput, match="nothing to adopt"):
        fulltext_jobs.adopt(fresh_postgres_url)
    assert fulltext_jobs.current_revision(fresh_postgres_url) is None
    with psycopg_connect(fresh_postgres_url) as conn:
        for statement in ORIGINAL_LAYOUT[:3]:
            conn.execute(statement)
        conn.execute(
            "CREATE TABLE jobs.fulltext (id uuid PRIMARY KEY, item_id text, status job_statuses)"
        )
    with pytest.raises(InvalidInput, match="not in the original's layout"):
        fulltext_jobs.adopt(fresh_postgres_url)
    assert fulltext_jobs.current_revision(fresh_postgres_url) is None


def test_jobs_without_a_status_stop_the_adoption_before_any_change(original):
    url, jobs = original
    with psycopg_connect(url) as conn:
        conn.execute(ORIGINAL_SAVE, (uuid.uuid4(), "item-4", "language", None, None, None))
    with pytest.raises(InvalidInput, match="1 job"):
        fulltext_jobs.adopt(url)
    assert fulltext_jobs.current_revision(url) is None
    assert len(original_rows(url)) == len(jobs) + 1
    with psycopg_connect(url) as conn:
        for ours in ("jobs.items", "jobs.fulltext_items"):
            assert conn.execute("SELECT to_regclass(%s)", (ours,)).fetchone() == (None,)


def test_sqlite_cannot_be_adopted(tmp_sqlite_url: str):
    with pytest.raises(InvalidInput, match="only PostgreSQL"):
        fulltext_jobs.adopt(tmp_sqlite_url)


def test_the_command_line_adopts_and_reports_in_one_line(original, tmp_sqlite_url: str):
    url, jobs = original
    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})
    done = runner.invoke(app, ["--database-url", url, "migrate", "adopt", "--json"])
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["current"] == SCHEMA_REVISION
    assert original_rows(url) == jobs
    refused = runner.invoke(app, ["--database-url", tmp_sqlite_url, "migrate", "adopt"])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: only PostgreSQL")
    assert len(refused.stderr.splitlines()) == 1


def test_an_unadopted_original_database_is_advised_to_adopt_not_upgrade(original):
    """`migrate upgrade` would fail on the original's enum; every entry point
    says to adopt instead, and changes nothing."""
    url, jobs = original
    engine = fulltext_jobs.create_engine(url)
    try:
        with pytest.raises(SchemaNotMigrated, match=r"made by the Go original: adopt it"):
            SqlAlchemyRepository(engine).stats()
        with pytest.raises(SchemaNotMigrated, match=r"fulltext_jobs\.adopt\(url\)"):
            fulltext_jobs.upgrade(engine)
    finally:
        engine.dispose()
    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})
    for args in (["stats"], ["migrate", "upgrade"], ["enqueue", "language"]):
        done = runner.invoke(app, ["--database-url", url, *args])
        assert done.exit_code == 1, done.stdout
        [line] = done.stderr.splitlines()
        assert line.startswith("error: ")
        assert "run `fulltext-jobs migrate adopt` against it" in line
        assert "migrate upgrade`" not in line
    assert fulltext_jobs.current_revision(url) is None
    assert original_rows(url) == jobs


def test_the_command_line_sees_the_originals_eligible_items_after_adopting(original):
    """No flag after `migrate adopt`: `jobs.fulltext_items` is a view of the original's
    items where `api IS NOT NULL`."""
    url, _ = original
    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})
    assert runner.invoke(app, ["--database-url", url, "migrate", "adopt"]).exit_code == 0
    done = runner.invoke(
        app, ["--database-url", url, "stats", "quotations", "--unqueued", "--json"]
    )
    assert done.exit_code == 0, done.stderr
    # item-1 and item-2 have quotation jobs; item-3 and item-4 are eligible;
    # item-5 has no metadata.
    assert json.loads(done.stdout)[0]["unqueued"] == 2
    done = runner.invoke(app, ["--database-url", url, "enqueue", "quotations", "--json"])
    assert json.loads(done.stdout)["created"] == 2
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)  # no items=
        assert repo.count_unqueued("language") == 1  # item-4
        with pytest.raises(InvalidInput, match="view of the original's items"):
            repo.add_items(["item-9"])
    finally:
        engine.dispose()


def test_adopt_takes_another_items_table_and_condition(original):
    url, _ = original
    with psycopg_connect(url) as conn:
        conn.execute("CREATE TABLE crawled (id text PRIMARY KEY, fetched boolean NOT NULL)")
        conn.execute("INSERT INTO crawled VALUES ('item-1', true), ('item-7', true), ('x', false)")
    refusals = [
        ({"items_table": "nowhere"}, "no such table or no id column"),
        ({"items_table": "crawled", "eligible": "no_such_column"}, "is not valid"),
    ]
    for options, needle in refusals:
        with pytest.raises(InvalidInput, match=needle):
            fulltext_jobs.adopt(url, **options)
        assert fulltext_jobs.current_revision(url) is None
    fulltext_jobs.adopt(url, items_table="crawled", eligible="fetched")
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)
        # The FK to `items` still holds: item-7 is in `crawled` only.
        assert repo.count_unqueued("language") == 1
    finally:
        engine.dispose()


def original_layout(url: str) -> dict[str, object]:
    with psycopg_connect(url) as conn:
        columns = conn.execute(
            "SELECT attname, attnotnull FROM pg_attribute "
            "WHERE attrelid = 'jobs.fulltext'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'jobs.fulltext'::regclass "
            "ORDER BY conname"
        ).fetchall()
        relations = conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'jobs' AND relkind IN ('r', 'v') ORDER BY relname"
        ).fetchall()
    return {"columns": columns, "constraints": constraints, "relations": relations}


def test_downgrading_an_adopted_database_returns_the_originals_layout(original):
    url, jobs = original
    before = original_layout(url)
    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})
    assert runner.invoke(app, ["--database-url", url, "migrate", "adopt"]).exit_code == 0
    done = runner.invoke(app, ["--database-url", url, "migrate", "downgrade", "base"])
    assert done.exit_code == 0, done.stderr
    assert original_layout(url) == before
    assert original_rows(url) == jobs
    # ... so it can be adopted again.
    fulltext_jobs.adopt(url)
    assert fulltext_jobs.current_revision(url) == SCHEMA_REVISION
    assert original_rows(url) == jobs


# The original's creator (common/jobs, CreateJobForUnqueued): its global
# advisory lock, a NOT EXISTS search from the first item, and its upsert by id.
ORIGINAL_CREATE_SEARCH = """
SELECT i.id FROM items i
WHERE i.api IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM jobs.fulltext f WHERE f.item_id = i.id AND f.destination = %s)
LIMIT 1
"""


def original_creator(url: str, destination: str, errors: list[str]) -> int:
    """Create jobs as the original does until none is left; return how many.
    Each duplicate-key error it meets is recorded in `errors`."""
    created = 0
    with psycopg_connect(url) as conn:
        while True:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(10)")
                    found = conn.execute(ORIGINAL_CREATE_SEARCH, (destination,)).fetchone()
                    if found is None:
                        return created
                    job = (uuid.uuid4(), found[0], destination, None, None, "ready")
                    conn.execute(ORIGINAL_SAVE, job)
                created += 1
            except psycopg.errors.UniqueViolation as exc:
                errors.append(str(exc.sqlstate))


@pytest.mark.slow
def test_in_a_mixed_fleet_the_originals_creators_meet_no_duplicate_key_errors(adopted):
    url, _, engine = adopted
    with psycopg_connect(url) as conn:
        conn.execute(
            "INSERT INTO items SELECT 'bulk-' || lpad(n::text, 5, '0'), 'x', '{}' "
            "FROM generate_series(1, 1000) AS n"
        )
    repo = SqlAlchemyRepository(engine)  # mixed_fleet: on by default once adopted
    errors: list[str] = []
    ours: list[int] = []

    def our_creator() -> None:
        made = 0
        with contextlib.suppress(AllQueued):
            while True:
                repo.create_job_for_unqueued("mixed")
                made += 1
        ours.append(made)

    with ThreadPoolExecutor(max_workers=4) as pool:
        theirs = [pool.submit(original_creator, url, "mixed", errors) for _ in range(2)]
        for future in [pool.submit(our_creator) for _ in range(2)]:
            future.result(timeout=300)
        created_by_them = sum(future.result(timeout=300) for future in theirs)
    assert errors == []
    # Every eligible item (item-1 to item-4 and the bulk) has exactly one job.
    assert sum(ours) + created_by_them == 1004
    assert sum(ours) > 0
    assert created_by_them > 0
    assert repo.count_unqueued("mixed") == 0


def test_an_adopted_database_shows_no_schema_drift(adopted):
    """The audit's expected objects hold on an adopted database too (its
    unique pair renamed, its primary key kept)."""
    *_, engine = adopted
    with engine.connect() as connection:
        assert schema_problems(connection) == []


def test_on_an_adopted_database_the_producer_keeps_its_watermark_over_the_id(adopted):
    """The items there are a view of the original's, with no insertion
    order of ours (migration 0010 gives it none): new items above the
    largest id seen are found at once, others at the sweep."""
    url, _, engine = adopted
    repo = SqlAlchemyRepository(engine)  # the default source: the view
    assert repo.enqueue_new("quotations") == 2  # the first call sweeps: item-3 and item-4
    with psycopg_connect(url) as conn:
        conn.execute(
            "INSERT INTO items VALUES ('item-0', 'A ledger', '{\"k\": 0}'), "
            "('item-9', 'A poster', '{\"k\": 9}')"
        )
    assert repo.enqueue_new("quotations") == 1  # item-9, past the watermark
    assert repo.count_unqueued("quotations") == 1  # item-0 sorts below it
    assert repo.enqueue_new("quotations", sweep_interval=timedelta(0)) == 1
    assert repo.count_unqueued("quotations") == 0
