"""The README's first command runs examples/quickstart.py; it must work, on
SQLite and PostgreSQL, and be idempotent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def run_quickstart(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), "--items", "30", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_quickstart_on_the_sqlite_default_is_idempotent(tmp_path: Path):
    first = run_quickstart(tmp_path)
    assert (tmp_path / "fulltext-jobs.sqlite3").is_file()
    assert "items added: 30" in first
    assert "language-detection: 30 jobs created, 30 claimed and finished" in first
    second = run_quickstart(tmp_path)
    assert "items added: 0" in second
    assert "language-detection: 0 jobs created, 0 claimed and finished" in second
    assert first.splitlines()[-3:] == second.splitlines()[-3:]


@pytest.mark.slow
def test_quickstart_on_postgresql(tmp_path: Path, fresh_postgres_url: str):
    out = run_quickstart(tmp_path, "--database-url", fresh_postgres_url)
    assert "quotation-prediction    finished      30" in out
    assert not (tmp_path / "fulltext-jobs.sqlite3").exists()


def test_quickstart_reports_a_bad_url_in_one_line(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), "--database-url", "nonsense://"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ")
    assert len(done.stderr.strip().splitlines()) == 1
