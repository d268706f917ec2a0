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
