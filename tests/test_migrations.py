"""The migrations: one head that is the declared schema's revision, a clean
round trip up and down on both backends, a migrated schema that matches the
declared tables, the alembic command line from a checkout, the programmatic
entry points, the original's layout on PostgreSQL, and a wheel that carries
the migrations and can run them without a checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import fulltext_jobs
from fulltext_jobs import InvalidInput, JobStatus, SqlAlchemyRepository, StaleJob, StoreError
from fulltext_jobs.sql.engine import DATABASE_URL_ENV
from fulltext_jobs.sql.migrate import migrations_dir
from fulltext_jobs.sql.schema import (
    JOBS_SCHEMA,
    SCHEMA_REVISION,
    STATUS_VALUES,
    VERSION_TABLE,
    WINDOW_TABLE,
    tables_for,
)
from fulltext_jobs.sql.schema_audit import schema_problems

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The ledger's tables at each revision (in `jobs` on PostgreSQL).
TABLES_AT = {
    "0001": {"fulltext", "items"},
    "0002": {"fulltext", "items", "enqueue_cursor"},
    "0003": {"fulltext", "items", "enqueue_cursor"},
    "0004": {"fulltext", "items", "enqueue_cursor"},
    "0005": {"fulltext", "items", "enqueue_cursor", WINDOW_TABLE},
    "0006": {"fulltext", "fulltext_items", "enqueue_cursor", WINDOW_TABLE},
    "0007": {"fulltext", "fulltext_items", "enqueue_cursor", WINDOW_TABLE},
    "0008": {"fulltext", "fulltext_items", "enqueue_cursor", WINDOW_TABLE},
    "0009": {"fulltext", "fulltext_items", "enqueue_cursor", "fulltext_rate_limit", WINDOW_TABLE},
    "0010": {
        "fulltext",
        "fulltext_items",
        "enqueue_cursor",
        "fulltext_rate_limit",
        WINDOW_TABLE,
    },
}
TABLES_AT["0011"] = TABLES_AT["0010"]
TABLES_AT["0012"] = TABLES_AT["0011"] | {"fulltext_holds"}
TABLES_AT["0013"] = TABLES_AT["0012"] | {"fulltext_controls"}
TABLES_AT["0014"] = TABLES_AT["0013"] | {"fulltext_cancels"}
TABLES_AT["0015"] = TABLES_AT["0014"]
TABLES_AT["0016"] = TABLES_AT["0015"]
TABLES_AT["0017"] = TABLES_AT["0016"]
TABLES_AT["0018"] = TABLES_AT["0017"] | {"fulltext_dependencies", "fulltext_unblocked"}
TABLES_AT["0019"] = TABLES_AT["0018"] | {"fulltext_status_counts", "fulltext_status_deltas"}

#: The tables PostgreSQL alone has (the transaction mode's hold records,
#: the deltas of the jobs' counts).
POSTGRESQL_ONLY = frozenset({"fulltext_holds", "fulltext_status_deltas"})

VERSION_ROWS = sa.table(VERSION_TABLE, sa.column("version_num"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def fresh_url(request: pytest.FixtureRequest) -> str:
    """A URL of an empty, unmigrated database of each dialect in turn."""
    fixture = "tmp_sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    return str(request.getfixturevalue(fixture))


@contextmanager
def opened(url: str) -> Iterator[sa.Engine]:
    engine = fulltext_jobs.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def ledger_tables(engine: sa.Engine) -> set[str]:
    """The tables fulltext-jobs owns, bar its version table: those in `jobs`
    on PostgreSQL, and the window table beside the version table."""
    inspector = sa.inspect(engine)
    if engine.dialect.name == "postgresql":
        window = {WINDOW_TABLE} & set(inspector.get_table_names())
        if JOBS_SCHEMA not in inspector.get_schema_names():
            return window
        return set(inspector.get_table_names(schema=JOBS_SCHEMA)) | window
    return set(inspector.get_table_names()) - {VERSION_TABLE}


def version_rows(engine: sa.Engine) -> list[str] | None:
    """The rows of our version table, or None if there is no such table."""
    if not sa.inspect(engine).has_table(VERSION_TABLE):
        return None
    with engine.connect() as connection:
        return list(connection.execute(sa.select(VERSION_ROWS.c.version_num)).scalars())


def leftovers(engine: sa.Engine) -> set[tuple[str, str]]:
    """Every object in the database but the version table and its key:
    (kind, name) pairs."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(
                sa.text("SELECT type, name FROM sqlite_master WHERE tbl_name <> :version"),
                {"version": VERSION_TABLE},
            )
            return {(kind, name) for kind, name in rows}
        relations = connection.execute(
            sa.text(
                "SELECT 'relation', n.nspname || '.' || c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg\\_%' "
                "AND c.relname NOT IN (:version, :version_key)"
            ),
            {"version": VERSION_TABLE, "version_key": f"{VERSION_TABLE}_pkc"},
        )
        types = connection.execute(
            sa.text(
                "SELECT 'type', n.nspname || '.' || t.typname FROM pg_type t "
                "JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg\\_%' "
                "AND t.typtype IN ('e', 'd', 'r', 'm')"
            )
        )
        schemas = connection.execute(
            sa.text(
                "SELECT 'schema', n.nspname FROM pg_namespace n "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') "
                "AND n.nspname NOT LIKE 'pg\\_%'"
            )
        )
        return {(kind, name) for kind, name in [*relations, *types, *schemas]}


def enum_types(engine: sa.Engine) -> list[str]:
    """The names of the types named job_statuses, with their schemas."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT n.nspname || '.' || t.typname FROM pg_type t "
                    "JOIN pg_namespace n ON n.oid = t.typnamespace "
                    "WHERE t.typname = 'job_statuses'"
                )
            ).scalars()
        )


def assert_at(url: str, revision: str) -> None:
    """The database at `url` is migrated to `revision`, with its tables."""
    assert fulltext_jobs.current_revision(url) == revision
    with opened(url) as engine:
        expected = TABLES_AT[revision]
        if engine.dialect.name != "postgresql":
            expected = expected - POSTGRESQL_ONLY
        assert ledger_tables(engine) == expected
        assert version_rows(engine) == [revision]
        indexes = {
            index["name"]
            for index in sa.inspect(engine).get_indexes(
                "fulltext", schema=JOBS_SCHEMA if engine.dialect.name == "postgresql" else None
            )
        }
        assert "fulltext_ready_idx" in indexes
        if engine.dialect.name == "postgresql":
            assert enum_types(engine) == ["public.job_statuses"]
        else:
            assert ("trigger", "fulltext_seq") in leftovers(engine)


def assert_at_base(url: str) -> None:
    """Nothing fulltext-jobs created is left at `url` but an empty version
    table."""
    assert fulltext_jobs.current_revision(url) is None
    with opened(url) as engine:
        assert ledger_tables(engine) == set()
        assert version_rows(engine) in (None, [])
        assert leftovers(engine) == set()
        if engine.dialect.name == "postgresql":
            assert JOBS_SCHEMA not in sa.inspect(engine).get_schema_names()
            assert enum_types(engine) == []


# --- 1. One head -----------------------------------------------------------


def script_directory() -> ScriptDirectory:
    return ScriptDirectory(str(migrations_dir()))


def test_a_single_head_that_is_the_declared_schemas_revision():
    script = script_directory()
    assert script.get_heads() == [SCHEMA_REVISION]
    assert script.get_bases() == ["0001"]
    assert fulltext_jobs.head_revision() == SCHEMA_REVISION


def test_revision_files_are_numbered_in_order():
    script = script_directory()
    chain = list(reversed(list(script.walk_revisions("base", "heads"))))
    files = sorted(path.name for path in (migrations_dir() / "versions").glob("*.py"))
    assert [Path(str(revision.path)).name for revision in chain] == files
    for number, (revision, name) in enumerate(zip(chain, files, strict=True), start=1):
        assert re.fullmatch(rf"{number:04d}_[a-z0-9_]+\.py", name), name
        assert revision.revision == f"{number:04d}"
        assert revision.down_revision == (None if number == 1 else f"{number - 1:04d}")
    assert chain[-1].revision == SCHEMA_REVISION


def test_the_checkouts_alembic_ini_runs_the_same_migrations():
    config = Config(str(REPO_ROOT / "alembic.ini"))
    location = config.get_main_option("script_location")
    assert location is not None
    assert Path(location).resolve() == migrations_dir().resolve()


# --- 2. Up, down to base, up again ----------------------------------------


def test_upgrade_downgrade_to_base_and_upgrade_again(fresh_url: str):
    assert fulltext_jobs.current_revision(fresh_url) is None

    fulltext_jobs.upgrade(fresh_url)
    assert_at(fresh_url, SCHEMA_REVISION)

    fulltext_jobs.downgrade(fresh_url, "base")
    assert_at_base(fresh_url)

    fulltext_jobs.upgrade(fresh_url)
    assert_at(fresh_url, SCHEMA_REVISION)

    # And the default of downgrade is base.
    fulltext_jobs.downgrade(fresh_url)
    assert_at_base(fresh_url)


CLAIM_COLUMNS = {"attempts", "claim_token", "lease_expires", "last_error"}


def test_each_revision_up_and_down_one_at_a_time(fresh_url: str):
    revisions = sorted(TABLES_AT)
    for revision in revisions:
        fulltext_jobs.upgrade(fresh_url, revision)
        assert_at(fresh_url, revision)
        assert_claim_columns(fresh_url, present=revision >= "0003")
    for revision in reversed(revisions[:-1]):
        fulltext_jobs.downgrade(fresh_url, revision)
        assert_at(fresh_url, revision)
        assert_claim_columns(fresh_url, present=revision >= "0003")
    fulltext_jobs.downgrade(fresh_url, "base")
    assert_at_base(fresh_url)


def assert_claim_columns(url: str, *, present: bool) -> None:
    with opened(url) as engine:
        schema = "jobs" if engine.dialect.name == "postgresql" else None
        columns = {column["name"] for column in sa.inspect(engine).get_columns("fulltext", schema)}
    assert (columns >= CLAIM_COLUMNS) is present
    assert present or not (CLAIM_COLUMNS & columns)


def test_a_repository_reads_its_revision_without_importing_alembic(fresh_url: str):
    # A worker's start: the revision is one SELECT; alembic (with mako and
    # pygments, a tenth of a second) is imported only to migrate.
    fulltext_jobs.upgrade(fresh_url)
    script = (
        "import sys, fulltext_jobs\n"
        "engine = fulltext_jobs.create_engine(sys.argv[1])\n"
        "repo = fulltext_jobs.SqlAlchemyRepository(engine)\n"
        "assert repo.stats() == []\n"
        "assert fulltext_jobs.current_revision(engine) == sys.argv[2]\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in {'alembic', 'mako'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, fresh_url, SCHEMA_REVISION],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_a_version_table_of_several_revisions_is_named_not_guessed(fresh_url: str):
    fulltext_jobs.upgrade(fresh_url)
    with opened(fresh_url) as engine, engine.begin() as connection:
        version_table = sa.table(VERSION_TABLE, sa.column("version_num"))
        connection.execute(sa.insert(version_table).values(version_num="elsewhere"))
    with pytest.raises(fulltext_jobs.SchemaNotMigrated, match="2 revisions"):
        fulltext_jobs.current_revision(fresh_url)


def test_upgrading_twice_changes_nothing(fresh_url: str):
    fulltext_jobs.upgrade(fresh_url)
    fulltext_jobs.upgrade(fresh_url)
    assert_at(fresh_url, SCHEMA_REVISION)


# --- 3. The migrated schema is the declared one ---------------------------


def _names_version_table(part: object) -> bool:
    if isinstance(part, str):
        return part == VERSION_TABLE
    if isinstance(part, sa.Table):
        return part.name == VERSION_TABLE
    table = getattr(part, "table", None)
    return isinstance(table, sa.Table) and table.name == VERSION_TABLE


def _about_version_table(diff: Any) -> bool:
    if isinstance(diff, list):
        return all(_about_version_table(item) for item in diff)
    return any(_names_version_table(part) for part in diff)


def test_migrated_schema_matches_the_declared_tables(fresh_url: str):
    fulltext_jobs.upgrade(fresh_url)
    with opened(fresh_url) as engine, engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "version_table": VERSION_TABLE,
                "include_schemas": True,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        diffs = compare_metadata(context, tables_for(engine.dialect.name).metadata)
    assert [diff for diff in diffs if not _about_version_table(diff)] == []


# --- 4. The alembic command line from a checkout --------------------------


def run_alembic(*args: str, url_env: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {DATABASE_URL_ENV, "ALEMBIC_CONFIG"}
    }
    if url_env is not None:
        env[DATABASE_URL_ENV] = url_env
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_alembic_command_line_upgrades_and_downgrades(fresh_url: str):
    done = run_alembic("upgrade", "head", url_env=fresh_url)
    assert done.returncode == 0, done.stderr
    assert fulltext_jobs.current_revision(fresh_url) == SCHEMA_REVISION

    done = run_alembic("-x", f"url={fresh_url}", "current")
    assert done.returncode == 0, done.stderr
    assert f"{SCHEMA_REVISION} (head)" in done.stdout

    done = run_alembic("downgrade", "base", url_env=fresh_url)
    assert done.returncode == 0, done.stderr
    assert_at_base(fresh_url)

    # -x url=... comes before the environment variable, which here would fail.
    done = run_alembic("-x", f"url={fresh_url}", "upgrade", "head", url_env="mysql://nowhere/db")
    assert done.returncode == 0, done.stderr
    assert_at(fresh_url, SCHEMA_REVISION)

    done = run_alembic("-x", f"url={fresh_url}", "downgrade", "base")
    assert done.returncode == 0, done.stderr
    assert_at_base(fresh_url)


def test_alembic_command_line_without_a_url_names_the_variable():
    done = run_alembic("upgrade", "head")
    assert done.returncode != 0
    assert DATABASE_URL_ENV in done.stderr
    assert "-x url=" in done.stderr


def test_alembic_command_line_writes_the_sql_offline():
    # Offline mode only parses the URL: no server behind it is needed.
    done = run_alembic("-x", "url=postgresql://nobody@127.0.0.1:1/none", "upgrade", "head", "--sql")
    assert done.returncode == 0, done.stderr
    for statement in (
        f"CREATE TABLE {VERSION_TABLE}",
        "CREATE SCHEMA IF NOT EXISTS jobs",
        "CREATE TYPE job_statuses AS ENUM ('ready', 'running', 'skipped', 'failed', 'finished')",
        "CREATE TABLE jobs.fulltext",
        "CREATE TABLE jobs.enqueue_cursor",
        "CREATE INDEX fulltext_ready_idx ON jobs.fulltext",
        # 0011's, outside the transaction, after committing the revisions before it.
        "COMMIT;\n\nCREATE INDEX CONCURRENTLY IF NOT EXISTS fulltext_due_idx ON jobs.fulltext",
        "ALTER TABLE jobs.fulltext SET (autovacuum_vacuum_scale_factor = 0.02",
    ):
        assert statement in done.stdout


def test_alembic_ini_loads_without_deprecation_warnings():
    # The suite makes warnings errors; the checkout's alembic.ini must not
    # raise any under the installed alembic either.
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-m", "alembic", "heads"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{SCHEMA_REVISION} (head)" in done.stdout


# --- 5. Programmatic upgrade ----------------------------------------------


@pytest.mark.parametrize(
    "kind", ["str", "URL", "Engine", "Connection", "Connection in a transaction"]
)
def test_upgrade_accepts_a_url_an_engine_or_a_connection(fresh_url: str, kind: str):
    with opened(fresh_url) as engine:
        if kind == "str":
            fulltext_jobs.upgrade(fresh_url)
        elif kind == "URL":
            fulltext_jobs.upgrade(sa.make_url(fresh_url))
        elif kind == "Engine":
            fulltext_jobs.upgrade(engine)
            # The caller's engine is still the caller's, and works.
            assert fulltext_jobs.current_revision(engine) == SCHEMA_REVISION
        elif kind == "Connection":
            with engine.connect() as connection:
                fulltext_jobs.upgrade(connection)
                assert not connection.closed
                assert fulltext_jobs.current_revision(connection) == SCHEMA_REVISION
        else:
            with engine.begin() as connection:
                fulltext_jobs.upgrade(connection)
                assert connection.in_transaction()
    assert_at(fresh_url, SCHEMA_REVISION)


def test_upgrade_on_a_connection_joins_the_callers_transaction(fresh_url: str):
    with opened(fresh_url) as engine, engine.connect() as connection:
        connection.begin()
        fulltext_jobs.upgrade(connection)
        assert fulltext_jobs.current_revision(connection) == SCHEMA_REVISION
        connection.rollback()
    assert fulltext_jobs.current_revision(fresh_url) is None
    with opened(fresh_url) as engine:
        assert ledger_tables(engine) == set()
        assert version_rows(engine) is None


@pytest.mark.parametrize("revision", ["9999", "0999", "nonsense"])
@pytest.mark.parametrize("migrate", [fulltext_jobs.upgrade, fulltext_jobs.downgrade])
def test_an_unknown_revision_is_invalid_input(fresh_url: str, migrate: Any, revision: str):
    with pytest.raises(InvalidInput, match=re.escape(repr(revision))):
        migrate(fresh_url, revision)
    assert fulltext_jobs.current_revision(fresh_url) is None


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "mysql://user@localhost/db",
        "postgresql+nosuchdriver://postgres@127.0.0.1/db",
        "sqlite+nosuchdriver:///x.sqlite3",
    ],
)
@pytest.mark.parametrize(
    "migrate", [fulltext_jobs.upgrade, fulltext_jobs.downgrade, fulltext_jobs.current_revision]
)
def test_a_bad_url_is_invalid_input(migrate: Any, url: str):
    with pytest.raises(InvalidInput):
        migrate(url)


# --- 6. The original's layout on PostgreSQL -------------------------------

#: The original Go code's upsert of a job, as it ran it: positional, six
#: values, the status a string that PostgreSQL casts to job_statuses.
ORIGINAL_UPSERT = (
    "INSERT INTO jobs.fulltext VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (id) DO UPDATE SET item_id = $2, destination = $3, "
    "started = $4, finished = $5, status = $6"
)

ORIGINAL_SELECT = (
    "SELECT id, item_id, destination, started, finished, status FROM jobs.fulltext WHERE id = $1"
)


def libpq_url(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.mark.postgresql
def test_the_originals_positional_upsert_works(fresh_postgres_url: str):
    fulltext_jobs.upgrade(fresh_postgres_url)
    job_id = uuid.uuid4()
    started = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    finished = started + timedelta(minutes=3)
    with psycopg.connect(libpq_url(fresh_postgres_url), cursor_factory=psycopg.RawCursor) as conn:
        conn.execute(ORIGINAL_UPSERT, (job_id, "item", "lang", None, None, "ready"))
        row = conn.execute(ORIGINAL_SELECT, (job_id,)).fetchone()
        assert row == (job_id, "item", "lang", None, None, "ready")
        # The same statement again takes the ON CONFLICT branch.
        conn.execute(ORIGINAL_UPSERT, (job_id, "item", "lang", started, finished, "finished"))
        row = conn.execute(ORIGINAL_SELECT, (job_id,)).fetchone()
        assert row == (job_id, "item", "lang", started, finished, "finished")
        seq = conn.execute("SELECT seq FROM jobs.fulltext WHERE id = $1", (job_id,)).fetchone()
        assert seq is not None
        assert seq[0] is not None
        count = conn.execute("SELECT count(*) FROM jobs.fulltext").fetchone()
        assert count == (1,)
    # And the library reads what the original wrote.
    with opened(fresh_postgres_url) as engine:
        job = SqlAlchemyRepository(engine).get_fulltext(job_id)
    assert (job.id, job.item_id, job.destination) == (job_id, "item", "lang")
    assert (job.started, job.finished, job.status) == (started, finished, JobStatus.FINISHED)


@pytest.mark.postgresql
def test_the_originals_writes_move_the_version_on_and_ours_never_call_the_trigger(
    fresh_postgres_url: str,
):
    """Revision 0007: a write the Go original makes (its upsert, its claim)
    bumps `version` through the trigger, so a copy we read before it is
    stale; our own statements set the version themselves, so the trigger's
    WHEN clause is false for them and its function is never called (the hot
    path pays nothing), and a heartbeat leaves the version alone."""
    fulltext_jobs.upgrade(fresh_postgres_url)
    job_id = uuid.uuid4()
    started = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    select_version = "SELECT version FROM jobs.fulltext WHERE id = $1"
    with opened(fresh_postgres_url) as engine:
        repo = SqlAlchemyRepository(engine)
        with psycopg.connect(
            libpq_url(fresh_postgres_url), cursor_factory=psycopg.RawCursor, autocommit=True
        ) as conn:
            conn.execute(ORIGINAL_UPSERT, (job_id, "item", "lang", None, None, "ready"))
            assert conn.execute(select_version, (job_id,)).fetchone() == (1,)
            ours = repo.get_fulltext(job_id)
            assert ours.version == 1
            conn.execute(ORIGINAL_UPSERT, (job_id, "item", "lang", started, None, "running"))
            assert conn.execute(select_version, (job_id,)).fetchone() == (2,)
            ours.skip()
            with pytest.raises(StaleJob):
                repo.save_fulltext(ours)
            conn.execute(ORIGINAL_UPSERT, (job_id, "item", "lang", None, None, "ready"))
            assert conn.execute(select_version, (job_id,)).fetchone() == (3,)

        # Our statements, in one transaction that counts function calls.
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL track_functions = 'pl'")
            joined = repo.in_session(sa.orm.Session(bind=connection))
            claimed = joined.get_ready_job("lang")
            joined.heartbeat(claimed)
            assert joined.get_fulltext(job_id).version == claimed.version == 4
            claimed.finish()
            joined.save_fulltext(claimed)
            assert joined.get_fulltext(job_id).version == 5
            calls = connection.exec_driver_sql(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
                "WHERE funcname = 'fulltext_count_write'"
            ).scalar_one()
            assert calls == 0
            connection.exec_driver_sql(
                "UPDATE jobs.fulltext SET finished = finished WHERE id = %(id)s", {"id": job_id}
            )
            calls = connection.exec_driver_sql(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
                "WHERE funcname = 'fulltext_count_write'"
            ).scalar_one()
            assert calls == 1
        assert repo.get_fulltext(job_id).version == 6


def test_sqlite_counts_other_writers_updates_too(tmp_sqlite_url: str):
    fulltext_jobs.upgrade(tmp_sqlite_url)
    with opened(tmp_sqlite_url) as engine:
        repo = SqlAlchemyRepository(engine)
        job = fulltext_jobs.FullText.new("item", "lang")
        repo.save_fulltext(job)
        copy = repo.get_fulltext(job.id)
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE fulltext SET status = 'skipped' WHERE id = ?", (job.id.hex,)
            )
            connection.exec_driver_sql(
                "UPDATE fulltext SET lease_expires = NULL WHERE id = ?", (job.id.hex,)
            )
        assert repo.get_fulltext(job.id).version == 2
        copy.skip()
        with pytest.raises(StaleJob):
            repo.save_fulltext(copy)


@pytest.mark.postgresql
def test_the_originals_layout_on_postgresql(fresh_postgres_url: str):
    fulltext_jobs.upgrade(fresh_postgres_url)
    with opened(fresh_postgres_url) as engine:
        with engine.connect() as connection:
            columns = connection.execute(
                sa.text(
                    "SELECT column_name, udt_name FROM information_schema.columns "
                    "WHERE table_schema = 'jobs' AND table_name = 'fulltext' "
                    "ORDER BY ordinal_position"
                )
            ).all()
            labels = connection.execute(
                sa.text(
                    "SELECT e.enumlabel FROM pg_enum e "
                    "JOIN pg_type t ON t.oid = e.enumtypid "
                    "WHERE t.typname = 'job_statuses' ORDER BY e.enumsortorder"
                )
            ).scalars()
            assert tuple(labels) == STATUS_VALUES
        assert STATUS_VALUES == ("ready", "running", "skipped", "failed", "finished")
        inspector = sa.inspect(engine)
        uniques = inspector.get_unique_constraints("fulltext", schema=JOBS_SCHEMA)
        primary_key = inspector.get_pk_constraint("fulltext", schema=JOBS_SCHEMA)
        assert enum_types(engine) == ["public.job_statuses"]
    assert [tuple(column) for column in columns[:6]] == [
        ("id", "uuid"),
        ("item_id", "text"),
        ("destination", "text"),
        ("started", "timestamptz"),
        ("finished", "timestamptz"),
        ("status", "job_statuses"),
    ]
    assert [unique["name"] for unique in uniques] == ["jobs_fulltext_unique"]
    assert uniques[0]["column_names"] == ["item_id", "destination"]
    assert primary_key["constrained_columns"] == ["id"]


# --- 7. The wheel ----------------------------------------------------------

INSTALLED_CHECK = """
import sys
from pathlib import Path

import fulltext_jobs
from fulltext_jobs.sql.migrate import migrations_dir
from fulltext_jobs.sql.schema_audit import schema_problems

site = Path(sys.argv[1]).resolve()
assert Path(fulltext_jobs.__file__).resolve().is_relative_to(site), fulltext_jobs.__file__
assert migrations_dir().resolve() == site / "fulltext_jobs" / "_migrations", migrations_dir()
print(fulltext_jobs.head_revision())
fulltext_jobs.upgrade(sys.argv[2])
print(fulltext_jobs.current_revision(sys.argv[2]))
"""


@pytest.mark.slow
def test_the_wheel_carries_the_migrations_and_migrates_without_a_checkout(
    tmp_path: Path, wheel: Path
):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    revisions = {
        f"fulltext_jobs/_migrations/versions/{path.name}"
        for path in (REPO_ROOT / "migrations" / "versions").glob("*.py")
    }
    required = {
        "fulltext_jobs/_migrations/env.py",
        "fulltext_jobs/_migrations/versions/0001_initial.py",
        "fulltext_jobs/_migrations/script.py.mako",
        "fulltext_jobs/py.typed",
        *revisions,
    }
    assert required <= names, sorted(required - names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]

    site = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    database = tmp_path / "w.sqlite3"
    env = {key: value for key, value in os.environ.items() if key != DATABASE_URL_ENV}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            INSTALLED_CHECK,
            str(site),
            f"sqlite:///{database}",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [SCHEMA_REVISION, SCHEMA_REVISION]
    assert database.is_file()
    assert fulltext_jobs.current_revision(f"sqlite:///{database}") == SCHEMA_REVISION


def test_the_items_table_is_renamed_with_its_rows_and_an_apps_items_can_live_beside_it(
    fresh_url: str,
):
    fulltext_jobs.upgrade(fresh_url, "0005")
    postgresql = fresh_url.startswith("postgresql")
    old, new = ("jobs.items", "jobs.fulltext_items") if postgresql else ("items", "fulltext_items")
    with opened(fresh_url) as engine:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"INSERT INTO {old} (id) VALUES ('a'), ('b')")  # noqa: S608 - constants
        fulltext_jobs.upgrade(engine, "0006")
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(f"SELECT id FROM {new} ORDER BY id").scalars()  # noqa: S608
            assert list(rows) == ["a", "b"]
        # The app's own `items` in the same database (SQLite's one namespace).
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE items (id text PRIMARY KEY, title text)")
            connection.exec_driver_sql("INSERT INTO items VALUES ('x', 'the app''s')")
        fulltext_jobs.upgrade(engine)
        repo = SqlAlchemyRepository(engine)
        assert repo.add_items(["c"]) == 1
        assert repo.enqueue_unqueued("d") == 3  # a, b and c: never the app's x
        if not postgresql:
            # Going back would collide with the app's table: refused whole.
            with pytest.raises(StoreError, match="already another table"):
                fulltext_jobs.downgrade(engine, "0005")
            assert fulltext_jobs.current_revision(engine) == SCHEMA_REVISION
            with engine.begin() as connection:
                connection.exec_driver_sql("DROP TABLE items")
        fulltext_jobs.downgrade(engine, "0005")
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(f"SELECT id FROM {old} ORDER BY id").scalars()  # noqa: S608
            assert list(rows) == ["a", "b", "c"]


@pytest.mark.postgresql
def test_0010_rewrites_no_table_and_the_items_already_there_are_swept(fresh_postgres_url: str):
    fulltext_jobs.upgrade(fresh_postgres_url, "0009")
    node = "SELECT pg_relation_filenode('jobs.fulltext_items')"
    with opened(fresh_postgres_url) as engine:
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO jobs.fulltext_items (id) VALUES ('m'), ('n')")
            before = connection.exec_driver_sql(node).scalar_one()
        fulltext_jobs.upgrade(engine)
        seqs = "SELECT id, seq FROM jobs.fulltext_items ORDER BY id"
        with engine.connect() as connection:
            # An identity column filled for every row would have rewritten
            # the table (a new file) under an exclusive lock.
            assert connection.exec_driver_sql(node).scalar_one() == before
            assert list(connection.exec_driver_sql(seqs)) == [("m", None), ("n", None)]
        repo = SqlAlchemyRepository(engine)
        assert repo.enqueue_new("d") == 2  # the first call sweeps
        assert repo.add_items(["a"]) == 1  # sorts below m and n
        assert repo.enqueue_new("d") == 1  # past the watermark, within the hour
        with engine.connect() as connection:
            rows = dict(connection.exec_driver_sql(seqs).all())
            assert rows["a"] is not None
        fulltext_jobs.downgrade(engine, "0009")
        with engine.connect() as connection:
            sequence = "SELECT to_regclass('jobs.fulltext_items_seq_seq')"
            assert connection.exec_driver_sql(sequence).scalar_one() is None


AUTOVACUUM_OPTIONS = "SELECT reloptions FROM pg_class WHERE oid = 'jobs.fulltext'::regclass"
INDEX_VALID = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%(name)s)"


@pytest.mark.postgresql
def test_0011_builds_its_indexes_outside_the_transaction_and_rebuilds_an_invalid_one(
    fresh_postgres_url: str,
):
    fulltext_jobs.upgrade(fresh_postgres_url, "0010")
    dsn = libpq_url(fresh_postgres_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs.fulltext (id, item_id, destination, status) VALUES "
            "(gen_random_uuid(), 'a', 'd', 'ready'), (gen_random_uuid(), 'b', 'd', 'ready')"
        )
        # An interrupted concurrent build leaves an invalid index of the name.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY fulltext_due_idx ON jobs.fulltext (destination)"
            )
        assert conn.execute(INDEX_VALID, {"name": "jobs.fulltext_due_idx"}).fetchone() == (False,)
    fulltext_jobs.upgrade(fresh_postgres_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in ("fulltext_due_idx", "fulltext_delayed_idx", "fulltext_ready_idx"):
            assert conn.execute(INDEX_VALID, {"name": f"jobs.{name}"}).fetchone() == (True,)
        (options,) = conn.execute(AUTOVACUUM_OPTIONS).fetchone() or (None,)
        assert "autovacuum_vacuum_scale_factor=0.02" in options
        assert "fillfactor=90" in options
    with opened(fresh_postgres_url) as engine:
        with engine.connect() as connection:
            assert schema_problems(connection) == []
        fulltext_jobs.downgrade(engine, "0010")
        with engine.connect() as connection:
            assert connection.exec_driver_sql(AUTOVACUUM_OPTIONS).scalar_one() is None
            for name in ("fulltext_due_idx", "fulltext_delayed_idx"):
                found = connection.exec_driver_sql(f"SELECT to_regclass('jobs.{name}')")
                assert found.scalar_one() is None


def test_0017_on_sqlite_makes_the_jobs_ready_then_ready_from_the_upgrade(tmp_sqlite_url: str):
    fulltext_jobs.upgrade(tmp_sqlite_url, "0014")
    before = datetime.now(UTC).replace(tzinfo=None)
    with opened(tmp_sqlite_url) as engine:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO fulltext (id, item_id, destination, status) VALUES "
                "('00000000000000000000000000000001', 'a', 'lang', 'ready'), "
                "('00000000000000000000000000000002', 'b', 'lang', 'finished')"
            )
        fulltext_jobs.upgrade(engine)
        with engine.connect() as connection:
            query = "SELECT item_id, ready_at FROM fulltext"
            rows: dict[str, str | None] = dict(connection.exec_driver_sql(query).all())
    assert rows["b"] is None  # unknown, and read by nothing
    moment = rows["a"]
    assert moment is not None
    assert before <= datetime.fromisoformat(moment) <= datetime.now(UTC).replace(tzinfo=None)


@pytest.mark.postgresql
def test_0017_rewrites_no_table_and_the_originals_inserts_record_their_moment(
    fresh_postgres_url: str,
):
    fulltext_jobs.upgrade(fresh_postgres_url, "0014")
    node = "SELECT pg_relation_filenode('jobs.fulltext')"
    ready_at = "SELECT ready_at FROM jobs.fulltext WHERE id = %s"
    before_id, after_id = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(libpq_url(fresh_postgres_url), cursor_factory=psycopg.RawCursor) as conn:
        conn.execute(ORIGINAL_UPSERT, (before_id, "old", "lang", None, None, "ready"))
        conn.commit()
        before = conn.execute(node).fetchone()
        conn.commit()
        fulltext_jobs.upgrade(fresh_postgres_url)
        # A volatile default would have rewritten the table (a new file).
        assert conn.execute(node).fetchone() == before
        [[upgraded_at]] = conn.execute(ready_at.replace("%s", "$1"), (before_id,)).fetchall()
        conn.commit()
        assert upgraded_at is not None  # the upgrade's moment, a lower bound
        conn.execute(ORIGINAL_UPSERT, (after_id, "new", "lang", None, None, "ready"))
        conn.commit()
        [[inserted_at]] = conn.execute(ready_at.replace("%s", "$1"), (after_id,)).fetchall()
        assert inserted_at > upgraded_at
    with opened(fresh_postgres_url) as engine:
        repo = SqlAlchemyRepository(engine)
        assert repo.get_fulltext(after_id).ready_at == inserted_at
        lag = repo.lag("lang")
        assert lag is not None
        assert lag >= datetime.now(UTC) - upgraded_at - timedelta(seconds=1)
