"""Fixtures: one per backend, and `backend`, parametrised over all three.

PostgreSQL tests never skip: if the server cannot be reached they fail with
a message that says how to start it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import (
    BACKENDS,
    Backend,
    FakeClock,
    SqliteTemplate,
    async_sql_backend,
    check_postgres_reachable,
    memory_backend,
    postgres_database,
    prepare_database,
    reset_database,
    sql_backend,
)

import fulltext_jobs


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session's own on the PostgreSQL server,
    migrated and dropped at the end."""
    check_postgres_reachable()
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = prepare_database(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture
def sqlite_engine(sqlite_template: SqliteTemplate) -> Iterator[sa.Engine]:
    engine = fulltext_jobs.create_engine(sqlite_template.fresh_url())
    yield engine
    engine.dispose()


@pytest.fixture
def clean_postgres_engine(postgres_engine: sa.Engine) -> sa.Engine:
    reset_database(postgres_engine)
    return postgres_engine


def _engine_for(request: pytest.FixtureRequest, name: str) -> sa.Engine:
    fixture = "sqlite_engine" if name.startswith("sqlite") else "clean_postgres_engine"
    engine: sa.Engine = request.getfixturevalue(fixture)
    return engine


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each adapter in turn, empty: in memory, SQLite and PostgreSQL, and the
    last two again through the async adapter."""
    name: str = request.param
    if name == "memory":
        yield memory_backend()
    elif name.endswith("-async"):
        with async_sql_backend(_engine_for(request, name)) as backend:
            yield backend
    else:
        yield sql_backend(_engine_for(request, name))


LEASE = timedelta(seconds=60)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 28, 12, 0, 0, 250_000, tzinfo=UTC))


@pytest.fixture(params=BACKENDS)
def clocked(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Backend]:
    """Each adapter in turn, empty, on `clock`, with a 60-second lease."""
    name: str = request.param
    if name == "memory":
        yield memory_backend(clock=clock, lease=LEASE)
    elif name.endswith("-async"):
        with async_sql_backend(_engine_for(request, name), clock=clock, lease=LEASE) as backend:
            yield backend
    else:
        yield sql_backend(_engine_for(request, name), clock=clock, lease=LEASE)


@pytest.fixture
def tmp_sqlite_url(tmp_path: Path) -> str:
    """A URL of a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new, empty (unmigrated) PostgreSQL database, dropped afterwards."""
    check_postgres_reachable()
    with postgres_database("ftj_fresh") as url:
        yield url


REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per test session from the working
    tree (--no-isolation: hatchling is in the venv, so no download)."""
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [built] = dist.glob("*.whl")
    return built
