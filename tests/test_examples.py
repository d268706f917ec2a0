"""The example app with its own item model runs end to end on SQLite and
PostgreSQL: only eligible items get jobs, each is handled once, and an item
that becomes eligible later is picked up by the next run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from fulltext_jobs import JobStatus

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
