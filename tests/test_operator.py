"""The command line as an operator meets it, in real processes on SQLite and
PostgreSQL: the database line, options after the command's name, `work`'s
live line and what it waits for (on a pseudo-terminal), the two-stage
Ctrl-C, the hint after an idle stop, a new destination in `enqueue`, and
skip reasons stored.

Handlers live in `cli_handlers.py` beside this file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import reset_database
from terminal import Terminal

import fulltext_jobs
from fulltext_jobs import FullText, JobStatus, SqlAlchemyRepository

TESTS = Path(__file__).resolve().parent
COMMAND = (sys.executable, "-m", "fulltext_jobs")

#: How long a process started here may take, at most.
PROCESS_TIMEOUT = 90

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def url(request: pytest.FixtureRequest, sqlite_template) -> str:
    """A migrated, empty ledger of this test's own, on each backend."""
    if request.param == "sqlite":
        return sqlite_template.fresh_url()
    engine: sa.Engine = request.getfixturevalue("postgres_engine")
    reset_database(engine)
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def repo(url: str) -> Iterator[SqlAlchemyRepository]:
    engine = fulltext_jobs.create_engine(url)
    yield SqlAlchemyRepository(engine)
    engine.dispose()


def env(url: str | None = None) -> dict[str, str]:
    """The environment of a command: this folder on the path (the
    handlers), and the database in the variable, or none at all."""
    out = {k: v for k, v in os.environ.items() if k != fulltext_jobs.DATABASE_URL_ENV}
    out["PYTHONPATH"] = os.pathsep.join([str(TESTS), out.get("PYTHONPATH", "")])
    if url is not None:
        out[fulltext_jobs.DATABASE_URL_ENV] = url
    return out


def run(
    *args: str, url: str | None, cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """A command off a terminal (pipes), to its end."""
    return subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        env=env(url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def queue(repo: SqlAlchemyRepository, destination: str, n: int, prefix: str = "item") -> None:
    repo.add_items(f"{prefix}-{i:03d}" for i in range(n))
    repo.enqueue_unqueued(destination)


def counts(repo: SqlAlchemyRepository, destination: str) -> dict[JobStatus, int]:
    [row] = repo.stats(destination, unqueued=False)
    return dict(row.counts)


# --- what it is, and which database -------------------------------------------


def test_version_is_the_installed_distributions(tmp_path):
    done = run("--version", url=None, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"fulltext-jobs {version('fulltext-jobs')}\n"


def test_a_writing_command_names_its_database_on_a_terminal(tmp_path, url, repo):
    queue(repo, "word-count", 3)
    shown = url
    if url.startswith("postgresql"):
        # Trust authentication ignores the password: it only has to be masked.
        shown = url.replace("postgres@", "postgres:***@")
        url = url.replace("postgres@", "postgres:s3cret@")
    with Terminal([*COMMAND, "retry", "word-count"], cwd=tmp_path, env=env(url)) as term:
        assert term.wait(PROCESS_TIMEOUT) == 0, term.screen
    assert f"database: {shown}\n" in term.screen
    assert "s3cret" not in term.screen
    # Off a terminal (a pipe, a log file) there is no such line.
    done = run("retry", "word-count", url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "database:" not in done.stderr
    # A reading command says nothing of it.
    with Terminal([*COMMAND, "stats"], cwd=tmp_path, env=env(url)) as term:
        assert term.wait(PROCESS_TIMEOUT) == 0, term.screen
    assert "database:" not in term.screen


def test_the_default_database_is_called_so(tmp_path):
    with Terminal([*COMMAND, "migrate", "upgrade"], cwd=tmp_path, env=env()) as term:
        assert term.wait(PROCESS_TIMEOUT) == 0, term.screen
    assert (
        "database: sqlite:///fulltext-jobs.sqlite3 (the default: neither --database-url "
        f"nor {fulltext_jobs.DATABASE_URL_ENV} is set)"
    ) in term.screen


# --- options after the command's name --------------------------------------------


def test_global_options_after_the_command(tmp_path, url, repo):
    queue(repo, "word-count", 2)
    done = run("stats", "nowhere", "--log-format", "json", url=url, cwd=tmp_path)
    assert done.returncode == 1
    record = json.loads(done.stderr)
    assert record["level"] == "ERROR"
    assert "no jobs for destination 'nowhere'" in record["message"]
    done = run(
        "work", "word-count", "--handler", "cli_handlers:by_item", "--until-idle", "-v",
        url=url, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "INFO" in done.stderr
    assert "worker of word-count started" in done.stderr
    assert "worker of word-count stopped" in done.stderr
    # Before and after add up: -v -v is DEBUG.
    done = run("-v", "stats", "-v", url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


# --- enqueue and a new destination -----------------------------------------------


def test_enqueue_asks_before_starting_a_new_destination(tmp_path, url, repo):
    queue(repo, "word-count", 3)
    with Terminal([*COMMAND, "enqueue", "wrod-count"], cwd=tmp_path, env=env(url)) as term:
        term.expect(r"did you mean 'word-count'\? Create it \[y/N\]")
        term.type("n\n")
        assert term.wait(PROCESS_TIMEOUT) == 1, term.screen
    assert "error: nothing queued" in term.screen
    assert not repo.has_destination("wrod-count")
    with Terminal(
        [*COMMAND, "enqueue", "language-detection", "--yes"], cwd=tmp_path, env=env(url)
    ) as term:
        assert term.wait(PROCESS_TIMEOUT) == 0, term.screen
    assert counts(repo, "language-detection")[JobStatus.READY] == 3
    # Off a terminal nobody can answer: it goes ahead, and warns.
    done = run("enqueue", "quotations", url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "'quotations' is a new destination (known: language-detection, word-count)" in (
        done.stderr
    )
    assert counts(repo, "quotations")[JobStatus.READY] == 3


# --- work: the live line, waiting, stopping ------------------------------------------


def test_work_shows_progress_and_what_it_waits_for(tmp_path, url, repo):
    queue(repo, "word-count", 20)
    command = [
        *COMMAND, "work", "word-count", "--handler", "cli_handlers:fail_first",
        "--retry-delay", "4", "--until-idle", "--batch-size", "5",
    ]  # fmt: skip
    with Terminal(command, cwd=tmp_path, env=env(url)) as term:
        term.expect(r"word-count: claimed \d+, finished \d+, failed 0, retrying \d+")
        term.expect(r"waiting: jobs wait for a retry; the next is due in \d+s")
        term.expect(r"jobs/s")
        assert term.wait(PROCESS_TIMEOUT) == 0, term.screen
    assert counts(repo, "word-count")[JobStatus.FINISHED] == 20


def test_until_idle_waiting_for_retries_says_so_off_a_terminal(tmp_path, url, repo):
    queue(repo, "word-count", 3)
    done = run(
        "work", "word-count", "--handler", "cli_handlers:fail_first", "--retry-delay", "2",
        "--until-idle", url=url, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "jobs of word-count wait for a retry; the next is due at" in done.stderr
    assert counts(repo, "word-count")[JobStatus.FINISHED] == 3


def test_the_first_ctrl_c_says_it_is_stopping_and_the_second_stops_at_once(tmp_path, url, repo):
    queue(repo, "word-count", 2)
    command = [
        *COMMAND, "work", "word-count", "--handler", "cli_handlers:sleepy",
        "--shutdown-timeout", "120",
    ]  # fmt: skip
    with Terminal(command, cwd=tmp_path, env=env(url)) as term:
        term.expect(r"word-count: claimed 1")
        term.signal(signal.SIGINT)
        term.expect(
            r"stopping word-count: waiting up to 120s for 1 job in flight; "
            r"Ctrl-C \(or SIGTERM\) again stops at once"
        )
        time.sleep(1)
        assert term.process.poll() is None  # still waiting for its handler
        began = time.monotonic()
        term.signal(signal.SIGINT)
        term.expect(r"stopping word-count at once: releasing 1 job in flight")
        assert term.wait(30) == 0, term.screen
        assert time.monotonic() - began < 30
    # The job in flight went back to ready, none is left running.
    assert counts(repo, "word-count") == {
        JobStatus.READY: 2,
        JobStatus.RUNNING: 0,
        JobStatus.FINISHED: 0,
        JobStatus.FAILED: 0,
        JobStatus.SKIPPED: 0,
    }


def test_an_idle_stop_hints_at_rescue_for_jobs_left_running(tmp_path, url, repo):
    queue(repo, "word-count", 3)
    repo.get_ready_job("word-count")  # held by a worker that then died
    done = run(
        "work", "word-count", "--handler", "cli_handlers:by_item", "--until-idle",
        url=url, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 jobs of word-count are still running" in done.stderr
    assert "fulltext-jobs rescue word-count" in done.stderr


# --- reasons ---------------------------------------------------------------------


def test_a_skip_reason_is_stored(tmp_path, url, repo):
    repo.add_items(["skip-1", "plain-1"])
    repo.enqueue_unqueued("word-count")
    done = run(
        "work", "word-count", "--handler", "cli_handlers:by_item", "--until-idle",
        url=url, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    jobs: dict[str, FullText] = {job.item_id: job for job in repo.list_jobs("word-count")}
    assert jobs["skip-1"].status is JobStatus.SKIPPED
    assert jobs["skip-1"].last_error == "no full text"
    assert jobs["plain-1"].status is JobStatus.FINISHED
    assert jobs["plain-1"].last_error is None


# --- data printed as it is --------------------------------------------------------


def test_ids_and_destinations_that_look_like_markup_print_as_they_are(tmp_path, url, repo):
    """rich reads `[/x]` as markup (and fails on it) and `:smile:` as an
    emoji code unless told not to: the ledger's data must not be read so."""
    ids = ["[/bad]", ":thumbs_up:", "[bold]x"]
    repo.add_items(ids)
    destination = "[/dest]"
    with Terminal([*COMMAND, "enqueue", destination, "--yes"], cwd=tmp_path, env=env(url)) as term:
        assert term.wait(PROCESS_TIMEOUT) == 0, term.screen
    assert f"created 3 jobs for '{destination}'" in term.screen
    for command in (["jobs", destination], ["stats"]):
        done = run(*command, url=url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert destination in done.stdout
        if command[0] == "jobs":
            for item_id in ids:
                assert f" {item_id} " in done.stdout
    with Terminal([*COMMAND, "jobs", destination], cwd=tmp_path, env=env(url)) as term:
        assert term.wait(PROCESS_TIMEOUT) == 0, term.screen
    for item_id in ids:
        assert item_id in term.screen
