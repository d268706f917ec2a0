"""The benchmark command must keep working: run it at its smallest sizes.

Only that it runs and checks its targets is tested here, never the figures
(speed belongs to the benchmark itself, on a quiet machine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.mark.slow
def test_the_benchmarks_run_at_small_sizes(tmp_path: Path, postgres_url: str):
    del postgres_url  # only to require the server, as the benchmark does
    markdown = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--markdown", str(markdown)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = markdown.read_text()
    titles = ("a. Enqueue", "b. create_job", "c. get_ready_job", "d. Claim", "e. Peak RSS")
    later = ("f. Wake-up", "j. Batch throughput", "l. Claims behind delayed", "m. Draining")
    for title in (*titles, *later):
        assert f"### {title}" in text
    assert "Traceback" not in done.stderr


SOAK = RUN.with_name("soak.py")


@pytest.mark.slow
def test_the_soak_runs_briefly_and_reports_each_interval(tmp_path: Path, postgres_url: str):
    del postgres_url  # only to require the server, as the benchmark does
    markdown = tmp_path / "soak.md"
    done = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", "0.5", "--quick", "--markdown", str(markdown)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in markdown.read_text().splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| 10", "| 20", "| 30"]
    # Every interval saw claims, and the workers kept up with the feeder.
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert int(cells[1].replace(",", "")) > 0, row
    assert "Traceback" not in done.stderr
