"""An app's alembic beside the ledger's (`examples/app_alembic`): its
autogenerate proposes the app's tables and nothing of the library's, its
upgrade runs both streams, and afterwards autogenerate finds nothing to do,
on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import fulltext_jobs

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "app_alembic"

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def url(request: pytest.FixtureRequest) -> str:
    fixture = "tmp_sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    return str(request.getfixturevalue(fixture))


def alembic(folder: Path, url: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != fulltext_jobs.DATABASE_URL_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={url}", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def generated(folder: Path, message: str) -> tuple[str, str]:
    """The upgrade and downgrade bodies of the revision written for `message`."""
    [path] = [p for p in (folder / "versions").glob("*.py") if message in p.name]
    text = path.read_text(encoding="utf-8")
    upgrade, downgrade = text.split("def upgrade() -> None:")[1].split("def downgrade() -> None:")
    return upgrade, downgrade


def test_the_apps_autogenerate_sees_only_the_apps_tables(url: str, tmp_path: Path):
    folder = tmp_path / "app"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    # The ledger is there before the app's first migration is written.
    fulltext_jobs.upgrade(url)
    alembic(folder, url, "revision", "--autogenerate", "-m", "books")
    upgrade, downgrade = generated(folder, "books")
    app_tables = {"books", "language_guesses"}
    assert set(re.findall(r"op\.create_table\(\s*'(\w+)'", upgrade)) == app_tables
    assert set(re.findall(r"op\.drop_table\('(\w+)'", downgrade)) == app_tables
    assert "drop_" not in upgrade
    assert "fulltext" not in upgrade + downgrade

    alembic(folder, url, "upgrade", "head")
    engine = sa.create_engine(url)
    try:
        assert {"books", "language_guesses"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert fulltext_jobs.current_revision(url) == fulltext_jobs.head_revision()

    alembic(folder, url, "revision", "--autogenerate", "-m", "nothing")
    upgrade, downgrade = generated(folder, "nothing")
    for body in (upgrade, downgrade):
        code = [line.strip() for line in body.splitlines() if line.strip()[:1] not in {"", "#"}]
        assert code == ["pass"], body
