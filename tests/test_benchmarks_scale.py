"""The scale benchmark must keep working: run it at its smallest sizes.

Only that it runs and prints every measure is tested here, never the
figures (speed belongs to the benchmark itself, on a quiet machine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCALE = Path(__file__).resolve().parent.parent / "benchmarks" / "scale.py"


@pytest.mark.slow
def test_the_scale_benchmark_runs_at_small_sizes(tmp_path: Path, postgres_url: str):
    del postgres_url  # only to require the server, as the benchmark does
    markdown = tmp_path / "scale.md"
    done = subprocess.run(
        [sys.executable, str(SCALE), "--quick", "--markdown", str(markdown)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = markdown.read_text()
    assert "### h. Costs at scale: 2,000 / 20,000 items" in text
    for measure in (
        "`stats bench`",
        "`retry bench`",
        "`work bench --produce --until-idle`",
        "destination check, in process",
        "idle producer cycle (`enqueue_new`)",
        "jobs table + indexes (MB)",
    ):
        assert f"| {measure}" in text, measure
    assert "Traceback" not in done.stderr
