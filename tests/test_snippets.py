"""Every Python snippet in README.md and docs/*.md runs as written.

Each runs in a process of its own, in an empty folder. A snippet that uses
names of the reader's app declares them in its first line
(`# assumes: engine, Item`), and `snippet_names.py` supplies exactly those.
Snippets that need a server read `FULLTEXT_JOBS_DATABASE_URL`, as an app
would; the test points it at a fresh PostgreSQL database for the snippet.
Functions named `test_*` that a snippet defines (the unit-test guide's) are
called afterwards, as pytest would. A snippet that runs a `Worker` until it
is signalled gets SIGTERM once its jobs are done, and must exit 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import check_postgres_reachable, postgres_database
from snippet_names import DESTINATION, SUPPLIED

from fulltext_jobs.sql.engine import DATABASE_URL_ENV

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

ASSUMES = re.compile(r"# assumes: ([\w, ]+)")

RUNNER = """
import os, sys
sys.path.insert(0, sys.argv[1])
import snippet_names

path, names = sys.argv[2], sys.argv[3:]
if os.environ.get("FULLTEXT_JOBS_DATABASE_URL"):
    snippet_names.make_engine()
namespace = {"__name__": "__main__", "__file__": path}
for name in names:
    namespace[name] = snippet_names.supply(name)
with open(path, encoding="utf-8") as source:
    exec(compile(source.read(), path, "exec"), namespace)
for name, value in list(namespace.items()):
    if name.startswith("test_") and callable(value):
        value()
print("snippet ran")
"""


@dataclass(frozen=True)
class Snippet:
    document: Path
    line: int
    code: str

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def assumes(self) -> list[str]:
        first = self.code.splitlines()[0] if self.code else ""
        found = ASSUMES.match(first)
        return [] if found is None else [n.strip() for n in found.group(1).split(",") if n.strip()]

    @property
    def needs_database(self) -> bool:
        return DATABASE_URL_ENV in self.code or bool(
            {"engine", "repo", "Item", "LanguageGuess"} & set(self.assumes)
        )

    @property
    def runs_until_signalled(self) -> bool:
        return ".run()" in self.code


def snippets() -> list[Snippet]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
            line = text.count("\n", 0, match.start()) + 2
            found.append(Snippet(document, line, match.group(1)))
    return found


SNIPPETS = snippets()


def test_there_are_snippets_and_each_assumes_only_what_is_supplied():
    assert len(SNIPPETS) >= 10
    for snippet in SNIPPETS:
        for name in snippet.assumes:
            assert name in SUPPLIED, (snippet.name, name)


def ready_jobs(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    sa.text(
                        "SELECT count(*) FROM jobs.fulltext "
                        "WHERE destination = :d AND status = 'ready'"
                    ),
                    {"d": DESTINATION},
                ).scalar_one()
            )
    except sa.exc.ProgrammingError:
        return -1  # not migrated yet
    finally:
        engine.dispose()


def run_snippet(snippet: Snippet, folder: Path, url: str | None) -> None:
    path = folder / f"snippet_{snippet.document.stem}_{snippet.line}.py"
    path.write_text(snippet.code, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != DATABASE_URL_ENV}
    if url is not None:
        env[DATABASE_URL_ENV] = url
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(TESTS), str(path), *snippet.assumes],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if snippet.runs_until_signalled:
            assert url is not None, "a worker snippet needs the database"
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                if ready_jobs(url) == 0:
                    break
                time.sleep(0.2)
            assert process.poll() is None, "the worker returned before it was signalled"
            time.sleep(0.5)  # past the claim of the last job
            process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, f"{snippet.name}\n{snippet.code}\n{stderr}"
    assert stdout.splitlines()[-1:] == ["snippet ran"], stdout + stderr


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: snippet.name)
def test_the_snippet_runs_as_written(snippet: Snippet, tmp_path: Path):
    if not snippet.needs_database:
        run_snippet(snippet, tmp_path, None)
        return
    check_postgres_reachable()
    with postgres_database("ftj_snippet") as url:
        run_snippet(snippet, tmp_path, url)
        if snippet.runs_until_signalled:
            assert ready_jobs(url) == 0
