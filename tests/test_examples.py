"""The examples run end to end on SQLite and PostgreSQL.

The app with its own item model: only eligible items get jobs, each is
handled once, and an item that becomes eligible later is picked up by the
next run. The pipeline (examples/pipeline.py, run as a user runs it): each
destination's jobs come after the one before, and quotations only for the
items the app found English."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from fulltext_jobs import DATABASE_URL_ENV, JobStatus, SqlAlchemyRepository

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


app = load_example("collection_app")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def url(request: pytest.FixtureRequest) -> str:
    fixture = "tmp_sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    return str(request.getfixturevalue(fixture))


def test_the_collection_app_handles_each_eligible_item_once(url: str):
    guesses = app.run(url)
    assert guesses == {
        "item-001": "en",
        "item-002": "fr",
        "item-003": "de",
        "item-005": "en",
    }
    engine = sa.create_engine(url)
    try:
        repo = app.repository(engine)
        (stats,) = repo.stats(app.DESTINATION)
        assert stats.counts[JobStatus.FINISHED] == 4
        assert stats.unqueued == 0  # item-004 has no metadata: not eligible
        # The crawler fetches item-004's metadata; the next run handles it.
        with Session(engine) as session:
            session.get(app.Item, "item-004").api = {"full_text": "La carte des routes"}
            session.commit()
        assert repo.count_unqueued(app.DESTINATION) == 1
    finally:
        engine.dispose()
    # The report, through the read model: item-004 has no job yet.
    assert app.report(url)[0] == ("Map", "no job", "-")
    guesses = app.run(url)
    assert guesses["item-004"] == "fr"
    assert len(guesses) == 5
    assert app.report(url) == [
        ("Letter", "finished", "en"),
        ("Lettre", "finished", "fr"),
        ("Brief", "finished", "de"),
        ("Map", "finished", "fr"),
        ("Diary", "finished", "en"),
    ]


def test_the_collection_app_reports_a_bad_url_in_one_line(capsys: pytest.CaptureFixture[str]):
    assert app.main(["--database-url", "mysql://nowhere/db"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1


# --- examples/pipeline.py: fetch -> language -> quotations for English texts ---

PIPELINE = EXAMPLES / "pipeline.py"


def pipeline_example(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run examples/pipeline.py as a user would, whatever it returns."""
    env = {key: value for key, value in os.environ.items() if key != DATABASE_URL_ENV}
    return subprocess.run(
        [sys.executable, str(PIPELINE), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_pipeline_example(cwd: Path, *args: str) -> list[str]:
    """Run examples/pipeline.py as a user would; its output's lines."""
    done = pipeline_example(cwd, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


@pytest.mark.slow
def test_the_pipeline_example_runs_quotations_for_english_texts_only(url: str, tmp_path: Path):
    out = run_pipeline_example(tmp_path, "--database-url", url, "--items", "24")
    assert "quotations follows language (finished)" in out
    assert "language follows fetch (finished)" in out
    assert "fetch: 24 jobs (24 finished)" in out
    assert "language: 24 jobs (24 finished)" in out
    assert "quotations: 8 jobs (8 finished)" in out
    assert "quotations jobs: 8 of 8 English items, 0 of 16 others" in out
    engine = sa.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)
        jobs = {
            destination: {job.item_id: job for job in repo.list_jobs(destination, limit=1000)}
            for destination in ("fetch", "language", "quotations")
        }
        with engine.connect() as connection:
            item_ids = set(connection.scalars(sa.text("SELECT id FROM items")))
            found = dict(
                connection.execute(sa.text("SELECT item_id, language FROM languages")).all()
            )
        assert len(item_ids) == 24
        # Every item fetched and its language detected.
        for destination in ("fetch", "language"):
            assert set(jobs[destination]) == item_ids, destination
            assert {job.status for job in jobs[destination].values()} == {JobStatus.FINISHED}
        assert set(found) == item_ids
        # Quotations jobs for exactly the English items, each started only
        # after its item's language job had finished, and language's after
        # fetch's.
        english = {item for item, language in found.items() if language == "en"}
        assert 0 < len(english) < len(item_ids)
        assert set(jobs["quotations"]) == english
        for downstream, upstream in (("language", "fetch"), ("quotations", "language")):
            for item_id, job in jobs[downstream].items():
                before = jobs[upstream][item_id]
                assert job.started is not None
                assert before.finished is not None
                assert job.started >= before.finished, (downstream, item_id)
    finally:
        engine.dispose()
    # Again on the same database: nothing new to do, the same counts.
    again = run_pipeline_example(tmp_path, "--database-url", url, "--items", "24")
    assert "quotations worker: queued 0, finished 0, failed 0" in again
    assert again[4:] == out[4:]  # the report, after the workers' lines


@pytest.mark.slow
def test_the_pipeline_example_defaults_to_a_temporary_sqlite_file(tmp_path: Path):
    out = run_pipeline_example(tmp_path)
    assert out[0].startswith("database: sqlite:///")
    assert "quotations jobs: 4 of 4 English items, 0 of 8 others" in out
    assert list(tmp_path.iterdir()) == []  # nothing left behind


@pytest.mark.slow
def test_the_pipeline_example_refuses_a_database_with_an_items_table_of_its_own(tmp_path: Path):
    database = tmp_path / "app.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO items VALUES (1, 'the app''s')")
    done = pipeline_example(tmp_path, "--database-url", f"sqlite:///{database}")
    assert done.returncode == 1
    assert done.stderr.startswith("error: the database has a table 'items' of its own"), done.stderr
    assert "Traceback" not in done.stderr
    with sqlite3.connect(database) as connection:  # nothing written: no ledger, no rows
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == [("items",)]
        assert connection.execute("SELECT * FROM items").fetchall() == [(1, "the app's")]
