"""The demo touches nothing it did not create.

On SQLite and on PostgreSQL: a database that holds an app's items, jobs or
tables is refused, through `demo.run` and through the command line, with one
`error:` line and every row left as it was; a fresh database is filled and
worked off, and a second run there (a database holding only the demo's own
data) is accepted and changes nothing. Past the check, the demo's writes
still leave an app's rows alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import APP_METADATA, check_postgres_reachable, postgres_database
from typer.testing import CliRunner

import fulltext_jobs
from fulltext_jobs import DemoRefused, JobStatus, SqlAlchemyRepository
from fulltext_jobs.cli import _demo_app as demo
from fulltext_jobs.cli import app
from fulltext_jobs.domain import utc

#: The app's items and jobs: 300 items, 100 of them queued for word-count
#: and 40 for language-detection (the destinations the demo once used).
APP_ITEMS = 300
APP_JOBS = {"word-count": 100, "language-detection": 40}

#: What the refusal says of the app's ledger rows.
APP_FOUND = "300 items and 140 jobs that the demo did not create"

Snapshot = dict[str, list[tuple[object, ...]]]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own: a SQLite file not created yet,
    or a new PostgreSQL database, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.sqlite3'}"
        return
    check_postgres_reachable()
    with postgres_database("ftj_demo") as created:
        yield created


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    engine = fulltext_jobs.create_engine(url)
    yield engine
    engine.dispose()


def fill_app(engine: sa.Engine) -> None:
    """The ledger of an app: its items and jobs, some of them claimed,
    finished, failed and skipped, so that every column has values to keep."""
    fulltext_jobs.upgrade(engine)
    repo = SqlAlchemyRepository(engine)
    repo.add_items(f"loc.gov/item/app-{n:03}" for n in range(APP_ITEMS))
    for destination, jobs in APP_JOBS.items():
        assert repo.enqueue_unqueued(destination, limit=jobs) == jobs
    finished, failed, skipped, _running = repo.claim_ready("word-count", 4)
    finished.finish(utc())
    failed.fail(utc(), error="the app's handler failed")
    skipped.skip(utc())
    for job in (finished, failed, skipped):
        repo.save_fulltext(job)


def snapshot(engine: sa.Engine) -> Snapshot:
    """Every row of every table and view of the database, by name, sorted."""
    inspector = sa.inspect(engine)
    rows: Snapshot = {}
    with engine.connect() as connection:
        for schema in inspector.get_schema_names():
            if schema == "information_schema" or schema.startswith("pg_"):
                continue
            for name in [*inspector.get_table_names(schema), *inspector.get_view_names(schema)]:
                table = sa.table(name, schema=schema)
                result = connection.execute(sa.select(sa.text("*")).select_from(table))
                rows[f"{schema}.{name}"] = sorted((tuple(row) for row in result), key=repr)
    return rows


def ledger_table(engine: sa.Engine, name: str) -> str:
    return f"jobs.{name}" if engine.dialect.name == "postgresql" else f"main.{name}"


def items(engine: sa.Engine) -> list[tuple[object, ...]]:
    """The rows of the default item table, with every column."""
    return snapshot(engine)[ledger_table(engine, "fulltext_items")]


def app_jobs(engine: sa.Engine) -> list[tuple[object, ...]]:
    """The app's jobs, with every column."""
    jobs = snapshot(engine)[ledger_table(engine, "fulltext")]
    return [job for job in jobs if any(name in job for name in APP_JOBS)]


def assert_refusal(message: str, found: str) -> None:
    assert "\n" not in message
    assert found in message
    assert "run the demo on a database of its own" in message
    assert "omit --database-url to use fulltext-jobs-demo.sqlite3" in message
    assert "nothing was changed" in message


def assert_cli_refusal(code: int, stdout: str, stderr: str, found: str) -> None:
    assert code == 1, (stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert_refusal(lines[0], found)
    assert stdout == ""


def cli() -> CliRunner:
    return CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})


def check_done(report: demo.DemoReport) -> None:
    assert not report.interrupted
    assert [row.destination for row in report.stats] == list(demo.DESTINATIONS)
    for row in report.stats:
        assert row.jobs == demo.ITEMS
        assert row.counts[JobStatus.FINISHED] == 192
        assert row.counts[JobStatus.SKIPPED] == 8


# --- an app's database is refused, and left as it was ---------------------------


def test_run_refuses_an_apps_database_and_changes_nothing(engine):
    fill_app(engine)
    before = snapshot(engine)
    with pytest.raises(DemoRefused) as refused:
        demo.run(engine)
    assert_refusal(str(refused.value), APP_FOUND)
    assert snapshot(engine) == before


def test_the_command_refuses_an_apps_database_in_one_line(url, engine):
    fill_app(engine)
    before = snapshot(engine)
    result = cli().invoke(app, ["demo", "--database-url", url])
    assert_cli_refusal(result.exit_code, result.stdout, result.stderr, APP_FOUND)
    assert snapshot(engine) == before


@pytest.mark.slow
def test_the_command_refuses_an_apps_database_as_a_process(url, engine, tmp_path):
    fill_app(engine)
    before = snapshot(engine)
    env = {k: v for k, v in os.environ.items() if k != fulltext_jobs.DATABASE_URL_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "fulltext_jobs", "demo", "--database-url", url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_cli_refusal(done.returncode, done.stdout, done.stderr, APP_FOUND)
    assert snapshot(engine) == before
    assert not list(tmp_path.glob("fulltext-jobs*"))  # no database of its own either


def test_an_apps_tables_alone_are_refused_and_no_ledger_is_created(url, engine):
    APP_METADATA.create_all(engine)
    before = snapshot(engine)
    result = cli().invoke(app, ["demo", "--database-url", url])
    assert_cli_refusal(
        result.exit_code, result.stdout, result.stderr, "1 table (app_items) that the demo"
    )
    assert snapshot(engine) == before


def test_jobs_of_other_destinations_for_the_demos_own_items_are_refused(engine):
    # What the demo of old left behind; the app may have queued those jobs.
    fulltext_jobs.upgrade(engine)
    repo = SqlAlchemyRepository(engine)
    repo.add_items(demo.ITEM_IDS)
    repo.enqueue_unqueued("word-count")
    before = snapshot(engine)
    with pytest.raises(DemoRefused) as refused:
        demo.run(engine)
    assert_refusal(str(refused.value), "the database holds 200 jobs that the demo")
    assert snapshot(engine) == before


def test_counts_stop_at_the_cap(engine, monkeypatch):
    fill_app(engine)
    monkeypatch.setattr(demo, "COUNT_CAP", 200)
    with pytest.raises(DemoRefused) as refused:
        demo.check_database(engine)
    assert "more than 200 items and 140 jobs that" in str(refused.value)


# --- the demo's own database ----------------------------------------------------


def test_a_fresh_database_is_worked_off_and_a_second_run_changes_nothing(url, engine):
    first = cli().invoke(app, ["demo", "--database-url", url])
    assert first.exit_code == 0, (first.stdout, first.stderr)
    assert "items added: 200" in first.stdout
    after_first = snapshot(engine)
    # A database that holds the demo's own data, and nothing else, is accepted.
    demo.check_database(engine)
    again = demo.run(engine)
    check_done(again)
    assert again.items_added == 0
    assert again.jobs_created == dict.fromkeys(demo.DESTINATIONS, 0)
    assert snapshot(engine) == after_first


def test_a_migrated_empty_ledger_is_accepted(engine):
    fulltext_jobs.upgrade(engine)
    report = demo.run(engine)
    check_done(report)
    assert report.items_added == demo.ITEMS
    assert report.jobs_created == dict.fromkeys(demo.DESTINATIONS, demo.ITEMS)


def test_the_demos_database_is_its_own_file():
    parsed = sa.make_url(demo.DEFAULT_DEMO_URL)
    assert parsed.get_backend_name() == "sqlite"
    assert parsed.database == "fulltext-jobs-demo.sqlite3"
    assert demo.DEFAULT_DEMO_URL != fulltext_jobs.DEFAULT_DATABASE_URL


# --- past the check ------------------------------------------------------------------


def test_past_the_check_the_demo_still_leaves_an_apps_rows_alone(engine, monkeypatch):
    """What an app that writes between the check and the demo's writes
    meets: the demo queues and works only its own items, under its own
    destinations."""
    fill_app(engine)
    jobs_before = app_jobs(engine)
    items_before = items(engine)
    monkeypatch.setattr(demo, "check_database", lambda _engine: None)
    report = demo.run(engine)
    check_done(report)
    assert app_jobs(engine) == jobs_before
    items_after = items(engine)
    assert set(items_before) <= set(items_after)
    assert len(items_after) == len(items_before) + demo.ITEMS
    repo = SqlAlchemyRepository(engine)
    for destination in demo.DESTINATIONS:
        queued = [job.item_id for job in repo.list_jobs(destination, limit=1000)]
        assert queued == list(demo.ITEM_IDS)
