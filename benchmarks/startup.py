"""How long the command line takes to start, against a bare interpreter.

    .venv/bin/python benchmarks/startup.py --runs 10

Runs, each `--runs` times in alternation, in fresh processes of this
interpreter:

- `python -c pass`: the baseline, an interpreter that imports nothing;
- `python -m fulltext_jobs --help`;
- `python -m fulltext_jobs stats` on an empty migrated SQLite ledger (made in a
  temporary folder first): a command that does nothing but open the ledger;
- `python -c "import fulltext_jobs"`: the library alone.

For each it prints the minimum over the runs (the machine is shared: the
minimum is the figure least spoiled by others) of the wall time, and of the
imports' time as `python -X importtime` reports it, summed over the top-level
imports (those `-X importtime` prints without indentation). The imports are
timed in their own runs, since `-X importtime` slows them down a little.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The ledger's URL, given to every command of a case.
URL_ENV = "FULLTEXT_JOBS_DATABASE_URL"


def cases() -> dict[str, list[str]]:
    """Each case's arguments to the interpreter."""
    return {
        "python -c pass (baseline)": ["-c", "pass"],
        "fulltext-jobs --help": ["-m", "fulltext_jobs", "--help"],
        "fulltext-jobs stats (empty SQLite ledger)": ["-m", "fulltext_jobs", "stats"],
        "import fulltext_jobs": ["-c", "import fulltext_jobs"],
    }


def wall(args: list[str], env: dict[str, str]) -> float:
    """The wall time of one run, in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def import_time(args: list[str], env: dict[str, str]) -> float:
    """The imports of one run, in seconds: the sum of the cumulative times of
    the top-level imports in `-X importtime`'s report."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    total_us = 0
    for line in done.stderr.splitlines():
        # Each line: "import time:", then self, cumulative (µs) and name, by "|".
        if not line.startswith("import time:"):
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):
            total_us += int(cumulative)
    return total_us / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each case (min is kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, URL_ENV: f"sqlite:///{Path(folder) / 'ledger.sqlite3'}"}
        subprocess.run(
            [sys.executable, "-m", "fulltext_jobs", "migrate", "upgrade"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        walls: dict[str, list[float]] = {name: [] for name in cases()}
        imports: dict[str, list[float]] = {name: [] for name in cases()}
        for _ in range(args.runs):
            for name, case in cases().items():
                walls[name].append(wall(case, env))
                imports[name].append(import_time(case, env))
    print(f"start-up, min of {args.runs} runs ({sys.executable}, Python {sys.version.split()[0]})")
    print()
    print("| case | wall (s) | imports, -X importtime (s) |")
    print("| --- | ---: | ---: |")
    for name in cases():
        print(f"| {name} | {min(walls[name]):.3f} | {min(imports[name]):.3f} |")


if __name__ == "__main__":
    main()
