"""The scale benchmark must keep working: run it at its smallest sizes.

Only that it runs and prints every measure is tested here, never the
figures (speed belongs to the benchmark itself, on a quiet machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.slow
def test_the_scale_benchmark_runs_at_small_sizes(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    del postgres_url  # only to require the server, as the benchmark does
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    scale = __import__("scale")
    markdown = tmp_path / "scale.md"
    assert scale.main(["--quick", "--markdown", str(markdown)]) == 0
    text = markdown.read_text()
    assert "### k. Costs at scale: 2,000 / 20,000 items" in text
    for measure in (
        "`stats bench`",
        "`retry bench`",
        "`work bench --produce --until-idle`",
        "destination check, in process",
        "idle producer cycle (`enqueue_new`)",
        "jobs table + indexes (MB)",
    ):
        assert f"| {measure}" in text, measure
