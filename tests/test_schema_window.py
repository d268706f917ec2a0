"""The compatibility window: a library accepts a database at its own
revision, or at a newer one whose window (written by the migrations into
the database) admits its code; it tells "upgrade the database" from
"upgrade the library"; and it checks each engine's database once, not per
repository, session or request."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from types import ModuleType

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import fulltext_jobs
from fulltext_jobs import AllQueued, SchemaNotMigrated, SchemaTooNew, SqlAlchemyRepository
from fulltext_jobs.sql.migrate import migrations_dir
from fulltext_jobs.sql.schema import SCHEMA_REVISION, VERSION_TABLE, WINDOW_TABLE, tables_for


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def migrated(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a migrated database of each dialect in turn."""
    fixture = "tmp_sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    url = str(request.getfixturevalue(fixture))
    fulltext_jobs.upgrade(url)
    return url


def pretend_newer(url: str, revision: str, oldest_code: str | None) -> None:
    """Put the database at `revision`, a revision this package does not ship,
    as a newer migration would, with `oldest_code` as its window (None: no
    row, as a migration that predates the window table would leave)."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.update(VERSION_ROWS).values(version_num=revision))
        if oldest_code is not None:
            connection.execute(
                sa.insert(window_table(engine)).values(
                    revision=revision, oldest_code=oldest_code, expand_only=oldest_code != revision
                )
            )
    engine.dispose()


VERSION_ROWS = sa.table(VERSION_TABLE, sa.column("version_num"))


def window_table(engine: sa.Engine) -> sa.Table:
    return tables_for(engine.dialect.name).schema_window


@pytest.mark.parametrize("oldest_code", [SCHEMA_REVISION, "0003"])
def test_a_newer_expand_only_revision_inside_the_window_is_used(migrated: str, oldest_code):
    pretend_newer(migrated, "9001", oldest_code)
    engine = fulltext_jobs.create_engine(migrated)
    try:
        with pytest.raises(AllQueued):
            SqlAlchemyRepository(engine).create_job_for_unqueued("lang")
    finally:
        engine.dispose()


@pytest.mark.parametrize("oldest_code", ["9001", "9000", None])
def test_a_newer_revision_outside_the_window_says_to_upgrade_the_library(
    migrated: str, oldest_code
):
    pretend_newer(migrated, "9001", oldest_code)
    engine = fulltext_jobs.create_engine(migrated)
    try:
        with pytest.raises(SchemaTooNew) as refused:
            SqlAlchemyRepository(engine).stats()
    finally:
        engine.dispose()
    message = str(refused.value)
    assert "is at revision 9001" in message
    assert f"built for revision {SCHEMA_REVISION}" in message
    assert "upgrade fulltext-jobs (`pip install -U fulltext-jobs`), not the database" in message
    assert not isinstance(refused.value, SchemaNotMigrated)


def test_the_command_line_names_the_side_to_upgrade(migrated: str):
    from typer.testing import CliRunner  # noqa: PLC0415 - only here

    from fulltext_jobs.cli import app  # noqa: PLC0415

    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})
    pretend_newer(migrated, "9001", "9001")
    done = runner.invoke(app, ["--database-url", migrated, "stats"])
    assert done.exit_code == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ")
    assert "pip install -U fulltext-jobs" in line


def migration_modules() -> list[ModuleType]:
    modules = []
    for path in sorted((migrations_dir() / "versions").glob("[0-9]*.py")):
        spec = importlib.util.spec_from_file_location(f"_revision_{path.stem}", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def test_every_revision_since_the_window_declares_it_and_writes_it(migrated: str):
    engine = sa.create_engine(migrated)
    with engine.connect() as connection:
        rows = {
            revision: (oldest, bool(expand))
            for revision, oldest, expand in connection.execute(sa.select(window_table(engine)))
        }
    engine.dispose()
    modules = migration_modules()
    assert set(rows) == {module.revision for module in modules}
    known = [module.revision for module in modules]
    for module in modules:
        oldest, expand = rows[module.revision]
        # A contract revision admits only its own code; an expand-only one
        # admits older code too.
        assert expand == (oldest != module.revision), module.revision
        assert oldest in known[: known.index(module.revision) + 1], module.revision
        if known.index(module.revision) >= known.index("0005"):
            assert (module.oldest_code, module.expand_only) == (oldest, expand), module.revision


def count_statements(engine: sa.Engine) -> list[str]:
    seen: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(_conn, _cursor, statement, _params, _context, _many):
        seen.append(statement)

    return seen


def test_the_schema_is_checked_once_per_engine_not_per_request(migrated: str):
    engine = fulltext_jobs.create_engine(migrated)
    repo = SqlAlchemyRepository(engine)
    seen = count_statements(engine)
    try:
        for request in range(3):
            before = len(seen)
            with Session(engine) as session:
                with pytest.raises(AllQueued):
                    repo.in_session(session).create_job_for_unqueued("lang")
                session.commit()
            checks = [s for s in seen[before:] if VERSION_TABLE in s or WINDOW_TABLE in s]
            assert (len(checks) > 0) == (request == 0), (request, seen[before:])
        before = len(seen)
        with pytest.raises(AllQueued):
            SqlAlchemyRepository(engine).create_job_for_unqueued("lang")  # a new repository
        assert not [s for s in seen[before:] if VERSION_TABLE in s]
    finally:
        engine.dispose()
