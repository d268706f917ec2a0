"""The benchmark command must keep working: run it at its smallest sizes.

Only that it runs and checks its targets is tested here, never the figures
(speed belongs to the benchmark itself, on a quiet machine)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from private_server import missing_binaries

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
    titles += ("o. Claims among 10 priority levels",)
    later = (
        "f. Wake-up",
        "j. Batch throughput",
        "l. Claims behind delayed",
        "m. Draining",
        "p. The lag at scale",
        "q. Tracing",
        "r. What the counts cost the writers",
        "s. Dependencies",
    )
    for title in (*titles, *later):
        assert f"### {title}" in text
    # Table o.'s counted work, beside its timings.
    assert "claim_ready(100), pages written, 10 levels mixed" in text
    assert "Traceback" not in done.stderr


SOAK = RUN.with_name("soak.py")


@pytest.mark.slow
def test_the_soak_runs_on_a_private_server_reports_each_interval_and_removes_it(
    tmp_path: Path,
):
    missing = missing_binaries()
    if missing is not None:
        pytest.fail(missing)
    markdown = tmp_path / "soak.md"
    # Two intervals of 10 s and a little more: the one soak test (a private server covers the
    # shared-server run's path too, and more).
    options = ("--minutes", "0.34", "--quick", "--private-server", "--markdown", str(markdown))
    done = subprocess.run(
        [sys.executable, str(SOAK), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    found = re.search(r"private server: (\S+) on port (\d+)", done.stdout)
    assert found is not None, done.stdout
    base, port = Path(found[1]), int(found[2])
    # The title says which server, its autovacuum, and the table's settings.
    text = markdown.read_text()
    assert "on a private server" in text
    assert "(autovacuum: on; jobs.fulltext: " in text
    assert "autovacuum_vacuum_scale_factor=0.02" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    # An interval a row, the last as the run ends (20.4 s: a third, short).
    assert [row.split(" | ")[0] for row in rows[2:]][:2] == ["| 10", "| 20"]
    # Every whole interval saw claims, and the workers kept up with the feeder.
    for row in rows[2:4]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert int(cells[1].replace(",", "")) > 0, row
    # The server is gone: its folder, its processes, its port.
    assert not base.exists()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # a process that ended meanwhile
        assert str(base) not in command, f"left running: {command}"
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
