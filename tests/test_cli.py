"""The `fulltext-jobs` command line: every command through typer's runner on
SQLite, every expected error as one line on stderr, and, as real processes,
the demo (SQLite in the working directory, and PostgreSQL), a worker stopped
by SIGTERM, and the errors again.

Handlers live in `cli_handlers.py` beside this file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

import fulltext_jobs
from fulltext_jobs import JobStatus, SqlAlchemyRepository
from fulltext_jobs.cli import _demo_app as demo
from fulltext_jobs.cli import app
from fulltext_jobs.domain import utc

TESTS = Path(__file__).resolve().parent
ENTRY_POINT = Path(sys.executable).parent / "fulltext-jobs"

#: How long a process started here may take, at most.
PROCESS_TIMEOUT = 60


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})


@pytest.fixture
def url(sqlite_template) -> str:
    """A migrated SQLite database of this test's own."""
    return sqlite_template.fresh_url()


@pytest.fixture
def repo(url) -> Iterator[SqlAlchemyRepository]:
    engine = fulltext_jobs.create_engine(url)
    yield SqlAlchemyRepository(engine)
    engine.dispose()


def run(runner: CliRunner, url: str, *args: str, stdin: str | bytes | None = None) -> Result:
    """Run the command line in-process on `url`; it must succeed."""
    result = runner.invoke(app, ["--database-url", url, *args], input=stdin)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def run_json(runner: CliRunner, url: str, *args: str, stdin: str | None = None) -> object:
    return json.loads(run(runner, url, *args, "--json", stdin=stdin).stdout)


def assert_one_line_error(code: int, stdout: str, stderr: str, needle: str) -> None:
    """Exit status 1, exactly one line on stderr, `error: ...` naming `needle`,
    and no traceback anywhere."""
    assert code == 1, (stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert needle in lines[0]
    assert "Traceback" not in stdout + stderr


def assert_cli_error(result: Result, needle: str) -> None:
    assert_one_line_error(result.exit_code, result.stdout, result.stderr, needle)


def counts(repo: SqlAlchemyRepository, destination: str) -> dict[str, int]:
    [row] = repo.stats(destination)
    return {status.value: row.counts[status] for status in JobStatus} | {"unqueued": row.unqueued}


# --- every command, in-process ----------------------------------------------


def test_migrate_upgrade_current_downgrade(runner, tmp_sqlite_url):
    head = fulltext_jobs.head_revision()
    out = run(runner, tmp_sqlite_url, "migrate", "upgrade").stdout
    assert f"current: {head}" in out
    assert run_json(runner, tmp_sqlite_url, "migrate", "current") == {"current": head, "head": head}
    # The command's own --database-url works as the global one does.
    result = runner.invoke(app, ["migrate", "downgrade", "base", "--database-url", tmp_sqlite_url])
    assert result.exit_code == 0, result.stderr
    assert fulltext_jobs.current_revision(tmp_sqlite_url) is None
    assert run_json(runner, tmp_sqlite_url, "migrate", "current") == {"current": None, "head": head}
    assert "current: none" in run(runner, tmp_sqlite_url, "migrate", "current").stdout
    assert run_json(runner, tmp_sqlite_url, "migrate", "upgrade", head) == {
        "current": head,
        "head": head,
    }


def test_database_url_from_the_environment(tmp_sqlite_url):
    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: tmp_sqlite_url})
    result = runner.invoke(app, ["migrate", "upgrade"])
    assert result.exit_code == 0, result.stderr
    assert fulltext_jobs.current_revision(tmp_sqlite_url) == fulltext_jobs.head_revision()


def test_items_add_from_a_file_and_from_stdin(runner, url, repo, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("\ufeffitem-1\n\nitem-2\r\nitem-3\n\nitem-2\nitem-4", encoding="utf-8")
    assert run_json(runner, url, "items", "add", str(ids), "--batch-size", "2") == {
        "added": 4,
        "ids": 5,
    }
    assert run_json(runner, url, "items", "add", str(ids)) == {"added": 0, "ids": 5}
    out = run(runner, url, "items", "add", "-", stdin="item-4\nitem-5\n").stdout
    assert "added 1 new items (2 ids read)" in out
    assert run_json(runner, url, "items", "add", stdin="item-6\n\nitem-5\n") == {
        "added": 1,
        "ids": 2,
    }
    assert repo.enqueue_unqueued("d") == 6
    assert sorted(job.item_id for job in repo.claim_ready("d", 10)) == [
        f"item-{n}" for n in range(1, 7)
    ]


def test_items_add_takes_each_line_as_the_python_api_takes_it(runner, url, repo, tmp_path):
    """An id is the line without its ending, white space included; a BOM at
    the start of the file is the encoding's, not the id's."""
    ids = tmp_path / "ids.txt"
    text = "\ufeff item-1\r\n  item-2  \n\n\t\nitem-3"
    ids.write_text(text, encoding="utf-8")
    with ids.open(encoding="utf-8-sig", newline="") as lines:
        as_python_reads_it = [line.removesuffix("\n").removesuffix("\r") for line in lines]
    expected = [line for line in as_python_reads_it if line]
    assert expected == [" item-1", "  item-2  ", "\t", "item-3"]
    assert run_json(runner, url, "items", "add", str(ids)) == {"added": 4, "ids": 4}
    assert repo.add_items(expected) == 0  # the Python API finds exactly the same ids there
    repo.enqueue_unqueued("d")
    assert sorted(job.item_id for job in repo.claim_ready("d", 10)) == sorted(expected)
    help_text = runner.invoke(app, ["items", "add", "--help"]).stdout
    assert "white space included" in " ".join(help_text.replace("│", " ").split())


def test_items_add_stops_at_a_bad_line_and_says_what_was_added(runner, url, repo, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"a\nb\nc\nd\nbad\x00id\ne\n")
    args = ["--database-url", url, "items", "add", str(ids), "--batch-size", "2"]
    result = runner.invoke(app, args)
    assert_cli_error(result, "line 5: item id contains a NUL byte")
    assert "the 4 ids of the batches before it were added (4 new)" in result.stderr
    repo.enqueue_unqueued("d")
    assert sorted(job.item_id for job in repo.claim_ready("d", 10)) == ["a", "b", "c", "d"]
    first = tmp_path / "first.txt"
    first.write_bytes(b"x\n\xff\n")
    result = runner.invoke(app, ["--database-url", url, "items", "add", str(first)])
    assert_cli_error(result, "line 2 is not UTF-8 text; nothing was added")


def test_enqueue_counts(runner, url, repo):
    repo.add_items(f"item-{n}" for n in range(5))
    created = run_json(runner, url, "enqueue", "d", "--limit", "2")
    assert created == {"destination": "d", "created": 2, "priority": 0}
    assert "created 3 jobs for 'd'" in run(runner, url, "enqueue", "d").stdout
    assert run_json(runner, url, "enqueue", "d") == {
        "destination": "d",
        "created": 0,
        "priority": 0,
    }
    assert counts(repo, "d") == counts(repo, "d") | {"ready": 5, "unqueued": 0}


def test_stats_table_and_json(runner, url, repo):
    assert run_json(runner, url, "stats") == []
    repo.add_items(f"item-{n}" for n in range(4))
    repo.enqueue_unqueued("alpha", limit=3)
    repo.enqueue_unqueued("beta")
    job = repo.get_ready_job("alpha")
    job.finish()
    repo.save_fulltext(job)
    repo.get_ready_job("alpha")
    zero = dict.fromkeys(("ready", "running", "finished", "failed", "skipped"), 0) | {
        "max_running": None,
        "rate": None,
        "rate_burst": None,
        "pause": None,
        "upstreams": [],
        "to_come": None,
    }

    def lagging(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        # The lag, on the command's own clock: how long the jobs made just
        # now have waited, a little.
        for row in rows:
            lag = row.pop("lag_seconds")
            assert isinstance(lag, float)
            assert 0 <= lag < 60
        return rows

    assert lagging(run_json(runner, url, "stats", "--unqueued")) == [
        {"destination": "alpha", **zero, "ready": 1, "running": 1, "finished": 1, "unqueued": 1},
        {"destination": "beta", **zero, "ready": 4, "unqueued": 0},
    ]
    assert lagging(run_json(runner, url, "stats", "beta", "--unqueued")) == [
        {"destination": "beta", **zero, "ready": 4, "unqueued": 0}
    ]
    # By default the unqueued items, which cost a read of every item, are not counted.
    assert lagging(run_json(runner, url, "stats", "beta")) == [
        {"destination": "beta", **zero, "ready": 4, "unqueued": None}
    ]
    assert "-" in run(runner, url, "stats", "alpha").stdout.splitlines()[-1]
    table = run(runner, url, "stats", "--unqueued").stdout
    for word in ("destination", "ready", "running", "finished", "failed", "skipped", "unqueued"):
        assert word in table
    assert "lag" in table
    lines = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:] if line.strip()}
    assert {name: cells[:6] for name, cells in lines.items()} == {
        "alpha": ["1", "1", "1", "0", "0", "1"],
        "beta": ["4", "0", "0", "0", "0", "0"],
    }
    assert all(re.fullmatch(r"\d+s", cells[6]) for cells in lines.values()), lines


def test_work_finishes_skips_and_fails_then_retry(runner, url, repo):
    repo.add_items(["ok-1", "ok-2", "ok-3", "skip-1", "fail-1", "fail-2"])
    run(runner, url, "enqueue", "d")
    stats = run_json(
        runner, url, "work", "d", "--handler", "cli_handlers:by_item", "--until-idle",
        "--concurrency", "2", "--batch-size", "2", "--max-attempts", "1",
    )  # fmt: skip
    assert isinstance(stats, dict)
    assert stats["destination"] == "d"
    assert (stats["claimed"], stats["finished"], stats["skipped"], stats["failed"]) == (6, 3, 1, 2)
    assert counts(repo, "d") == counts(repo, "d") | {"finished": 3, "skipped": 1, "failed": 2}

    assert run_json(runner, url, "retry", "d", "--status", "failed") == {
        "destination": "d",
        "retried": 2,
    }
    assert counts(repo, "d")["ready"] == 2
    out = run(runner, url, "retry", "d", "--item", "skip-1", "--item", "ok-1").stdout
    assert "returned 1 jobs of 'd' to ready" in out
    # A table this time, and a handler found by a dotted path: all finish.
    table = run(runner, url, "work", "d", "--handler", "cli_handlers:Nested.handle", "--until-idle")
    assert "worker: d" in table.stdout
    assert "finished" in table.stdout
    assert counts(repo, "d") == counts(repo, "d") | {"ready": 0, "finished": 6}


def test_work_in_transaction_writes_each_job_once(runner, url, repo):
    repo.add_items(["ok-1", "ok-2", "ok-3", "skip-1", "fail-1"])
    run(runner, url, "enqueue", "d")
    stats = run_json(
        runner, url, "work", "d", "--handler", "cli_handlers:by_item", "--until-idle",
        "--in-transaction", "--concurrency", "2", "--batch-size", "2", "--max-attempts", "1",
    )  # fmt: skip
    assert isinstance(stats, dict)
    assert (stats["claimed"], stats["finished"], stats["skipped"], stats["failed"]) == (5, 3, 1, 1)
    assert stats["heartbeats"] == 0
    jobs = repo.list_jobs("d")
    # Inserted, then written once at the end of its batch: no claim write.
    assert {(job.attempts, job.version) for job in jobs} == {(1, 2)}


def test_work_produce_queues_a_new_destination(runner, url, repo):
    repo.add_items(["ok-1", "ok-2"])
    stats = run_json(
        runner, url, "work", "fresh", "--handler", "cli_handlers:by_item", "--produce",
        "--until-idle",
    )  # fmt: skip
    assert isinstance(stats, dict)
    assert (stats["enqueued"], stats["finished"]) == (2, 2)


def test_rescue(runner, url, repo):
    repo.add_items(["item-1", "item-2", "item-3"])
    repo.enqueue_unqueued("d")
    repo.get_ready_job("d")  # a live claim: its lease runs for minutes
    assert run_json(runner, url, "rescue", "d") == {"destination": "d", "rescued": 0}
    # A claim made an hour ago, whose worker died: its lease has run out.
    past = utc() - timedelta(hours=1)
    SqlAlchemyRepository(repo._ops.engine, clock=lambda: past).get_ready_job("d")
    assert counts(repo, "d")["running"] == 2
    assert "rescued 1 expired jobs" in run(runner, url, "rescue", "--max-attempts", "3").stdout
    assert counts(repo, "d") == counts(repo, "d") | {"running": 1, "ready": 2}


def test_demo_twice_is_idempotent(runner, tmp_sqlite_url):
    first = run_json(runner, tmp_sqlite_url, "demo")
    second = run_json(runner, tmp_sqlite_url, "demo")
    assert isinstance(first, dict)
    assert isinstance(second, dict)
    assert first["items_added"] == 200
    assert first["jobs_created"] == {"demo-word-count": 200, "demo-language-detection": 200}
    assert second["items_added"] == 0
    assert second["jobs_created"] == {"demo-word-count": 0, "demo-language-detection": 0}
    assert first["stats"] == second["stats"]
    for row in first["stats"]:
        assert (row["finished"], row["skipped"], row["ready"], row["running"]) == (192, 8, 0, 0)
    languages = [sample["language"] for sample in first["samples"]]
    assert languages == ["en", "fr", "de", "es", "it", None]
    engine = sa.create_engine(tmp_sqlite_url)
    with engine.connect() as connection:
        results = connection.exec_driver_sql("SELECT count(*) FROM demo_results").scalar_one()
    engine.dispose()
    assert results == 2 * 192  # one row per finished job, however often it ran
    text = run(runner, tmp_sqlite_url, "demo").stdout
    assert "demo-word-count" in text
    assert "sample results" in text


def test_demo_stops_at_a_signal_and_finishes_when_run_again(tmp_sqlite_url):
    engine = fulltext_jobs.create_engine(tmp_sqlite_url)
    signalled: list[str] = []

    def on_job(destination: str) -> None:
        # In a worker thread, while the worker's own SIGINT handler is installed.
        if not signalled:
            signalled.append(destination)
            os.kill(os.getpid(), signal.SIGINT)

    try:
        stopped = demo.run(engine, on_job=on_job)
        assert stopped.interrupted
        word_count, language = stopped.stats
        assert word_count.counts[JobStatus.READY] > 0
        assert word_count.counts[JobStatus.RUNNING] == 0
        assert language.counts[JobStatus.READY] == 200  # never started
        again = demo.run(engine)
    finally:
        engine.dispose()
    assert not again.interrupted
    assert [row.counts[JobStatus.FINISHED] for row in again.stats] == [192, 192]


# --- errors, in-process --------------------------------------------------------


@pytest.mark.parametrize(
    ("database_url", "needle"),
    [
        ("mysql://x", "unsupported database 'mysql'"),
        ("not a url", "not a database URL"),
        ("postgresql://postgres@127.0.0.1:1/none", "Connection refused"),
    ],
)
def test_a_bad_database_url_is_one_line(runner, database_url, needle):
    assert_cli_error(runner.invoke(app, ["--database-url", database_url, "stats"]), needle)
    work = ["work", "d", "--handler", "cli_handlers:by_item", "--produce"]
    assert_cli_error(runner.invoke(app, ["--database-url", database_url, *work]), needle)


@pytest.mark.postgresql
@pytest.mark.parametrize(
    ("who", "needle"),
    [
        ("nosuchrole@127.0.0.1:5432/test", 'role "nosuchrole" does not exist'),
        ("postgres@127.0.0.1:5432/no_such_database_here", "does not exist"),
    ],
)
def test_an_unknown_role_or_database_is_not_called_retryable(runner, who, needle):
    result = runner.invoke(app, ["--database-url", f"postgresql://{who}", "stats"])
    assert_cli_error(result, needle)
    assert "retryable" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["stats"],
        ["items", "add", "-"],
        ["enqueue", "d"],
        ["rescue"],
        ["retry", "d"],
        ["work", "d", "--handler", "cli_handlers:by_item", "--produce", "--until-idle"],
    ],
)
def test_an_unmigrated_database_says_what_to_run(runner, tmp_sqlite_url, args):
    path = Path(sa.make_url(tmp_sqlite_url).database or "")
    result = runner.invoke(app, ["--database-url", tmp_sqlite_url, *args], input="x\n")
    assert_cli_error(result, f"no database at {path}: `fulltext-jobs migrate upgrade` creates it")
    assert not path.exists()  # never an empty file left behind
    sa.create_engine(tmp_sqlite_url).dispose()
    with sqlite3.connect(path) as connection:  # an empty SQLite file
        connection.execute("CREATE TABLE unrelated (x)")
    result = runner.invoke(app, ["--database-url", tmp_sqlite_url, *args], input="x\n")
    assert_cli_error(result, "run `fulltext-jobs migrate upgrade` against it")


@pytest.mark.parametrize(
    "args", [["stats"], ["migrate", "current"], ["migrate", "downgrade", "base"]]
)
def test_only_migrate_upgrade_and_demo_create_a_database(runner, tmp_path, args):
    path = tmp_path / "typo.sqlite3"
    result = runner.invoke(app, ["--database-url", f"sqlite:///{path}", *args])
    assert_cli_error(result, f"no database at {path}")
    assert not path.exists()
    assert run(runner, f"sqlite:///{path}", "migrate", "upgrade")
    assert path.is_file()


@pytest.mark.parametrize("args", [["stats"], ["migrate", "upgrade"], ["demo"]])
def test_a_missing_folder_is_named(runner, tmp_path, args):
    path = tmp_path / "no-such-folder" / "ledger.sqlite3"
    result = runner.invoke(app, ["--database-url", f"sqlite:///{path}", *args])
    assert_cli_error(result, f"the folder {path.parent} does not exist")
    assert not path.parent.exists()


def test_verbose_is_a_repeated_flag_as_its_help_says(runner, url):
    help_text = " ".join(runner.invoke(app, ["--help"]).stdout.replace("│", " ").split())
    assert "-v logs INFO, -vv (or -v -v) DEBUG" in help_text
    assert "<int>" not in help_text.split("--verbose")[1].split("--help")[0]
    for flags in (["-v"], ["-vv"], ["-v", "-v"], ["--verbose", "--verbose"]):
        assert run(runner, url, *flags, "stats")


@pytest.mark.slow
def test_log_lines_are_one_line_each_when_stderr_is_not_a_terminal(url, repo):
    repo.add_items([f"fail-{'x' * 120}-{n}" for n in range(3)])
    repo.enqueue_unqueued("d")
    done = run_process(
        "--database-url", url, "work", "d", "--handler", "cli_handlers:by_item", "--until-idle",
        "--max-attempts", "1", cwd=TESTS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    one_record = re.compile(
        r"\d{4}-\d\d-\d\dT[\d:]+\S* WARNING fulltext_jobs\.worker: "
        r"job \S+ \(item (\S+)\) failed \(RuntimeError: cannot handle \1\)"
    )
    for line in lines:
        assert one_record.fullmatch(line), line


@pytest.mark.parametrize(
    ("option", "needle"),
    [
        (["--lease", "1e300"], "a lease of 1e+300 seconds is too long"),
        (["--lease", "1e12"], "at most 3650 days"),
        (["--concurrency", "100000000000"], "concurrency must be a positive whole number"),
        (["--shutdown-timeout", "1e300"], "shutdown_timeout must be a number of seconds"),
        (["--poll-interval", "1e300"], "poll_interval must be a positive number of seconds"),
        (["--batch-size", "99999999"], "batch_size must be a positive whole number, at most"),
        (["--max-attempts", "99999999999"], "max_attempts must be a positive whole number"),
        (["--retry-delay", "1e15"], "is too long"),
        (["--retry-delay", "1e9"], "base_delay must be a timedelta"),
    ],
)
def test_hostile_worker_settings_are_one_line(runner, url, repo, option, needle):
    repo.add_items(["a"])
    repo.enqueue_unqueued("d")
    args = ["--database-url", url, "work", "d", "--handler", "cli_handlers:by_item", *option]
    assert_cli_error(runner.invoke(app, [*args, "--until-idle"]), needle)
    assert counts(repo, "d")["ready"] == 1  # nothing claimed


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "d\udcff"],  # how Python decodes a non-UTF-8 argument
        ["stats", "d\udcff"],
        ["retry", "d", "--item", "a\udcffb"],
        ["enqueue", "d", "--limit", "99999999999999999999"],
        ["rescue", "--max-attempts", "99999999999"],
    ],
)
def test_hostile_arguments_are_one_line_and_change_nothing(runner, url, repo, args):
    repo.add_items(["a"])
    repo.enqueue_unqueued("d")
    before = counts(repo, "d")
    result = runner.invoke(app, ["--database-url", url, *args])
    assert_cli_error(result, "")
    assert counts(repo, "d") == before


def test_work_takes_the_lease_and_max_attempts(runner, url, repo, monkeypatch):
    help_text = " ".join(runner.invoke(app, ["work", "--help"]).stdout.replace("│", " ").split())
    assert "--lease" in help_text
    assert "--max-attempts" in help_text
    made: list[dict[str, object]] = []
    real_worker = fulltext_jobs.Worker

    def worker(*args, **kwargs):
        made.append(kwargs)
        return real_worker(*args, **kwargs)

    monkeypatch.setattr(fulltext_jobs, "Worker", worker)
    repo.add_items(["a", "b"])
    repo.enqueue_unqueued("d")
    args = ["work", "d", "--handler", "cli_handlers:lease_of_7s", "--lease", "7", "--until-idle"]
    assert (
        run_json(runner, url, *args, "--max-attempts", "4", "--retry-delay", "2.5")["finished"] == 2
    )
    assert made[0]["retry"] == fulltext_jobs.RetryPolicy(
        max_attempts=4, base_delay=timedelta(seconds=2.5)
    )
    assert "--retry-delay" in help_text
    assert counts(repo, "d")["finished"] == 2


@pytest.mark.parametrize(
    ("handler", "needle"),
    [
        ("cli_handlers", "not of the form module:function"),
        ("cli_handlers:", "not of the form module:function"),
        (":by_item", "not of the form module:function"),
        ("no_such_module_here:run", "No module named 'no_such_module_here'"),
        ("cli_handlers:no_such", "has no attribute 'no_such'"),
        ("cli_handlers:Nested.no_such", "has no attribute 'Nested.no_such'"),
        ("cli_handlers:NOT_CALLABLE", "is not callable"),
    ],
)
def test_an_unknown_handler_is_one_line(runner, url, repo, handler, needle):
    repo.add_items(["ok-1"])
    repo.enqueue_unqueued("d")
    result = runner.invoke(app, ["--database-url", url, "work", "d", "--handler", handler])
    assert_cli_error(result, needle)
    assert counts(repo, "d")["ready"] == 1


@pytest.mark.parametrize(
    "args",
    [
        ["work", "nope", "--handler", "cli_handlers:by_item"],
        ["retry", "nope"],
        ["rescue", "nope"],
        ["stats", "nope"],
    ],
)
def test_an_unknown_destination_names_the_known_ones(runner, url, repo, args):
    repo.add_items(["ok-1"])
    repo.enqueue_unqueued("beta")
    repo.enqueue_unqueued("alpha")
    result = runner.invoke(app, ["--database-url", url, *args])
    assert_cli_error(result, "no jobs for destination 'nope'; known destinations: alpha, beta")


def test_an_unknown_destination_in_an_empty_ledger_says_how_to_make_one(runner, url):
    result = runner.invoke(app, ["--database-url", url, "stats", "nope"])
    assert_cli_error(result, "`fulltext-jobs enqueue nope` creates them")


@pytest.mark.parametrize("command", ["stats", "enqueue", "retry", "rescue", "work"])
@pytest.mark.parametrize(("destination", "needle"), [("", "empty"), ("a\x00b", "NUL")])
def test_an_invalid_destination_is_one_line(runner, url, command, destination, needle):
    extra = ["--handler", "cli_handlers:by_item"] if command == "work" else []
    result = runner.invoke(app, ["--database-url", url, command, destination, *extra])
    assert_cli_error(result, needle)


def test_an_unreadable_file_is_one_line(runner, url, tmp_path, monkeypatch):
    def assert_unreadable(path: Path, needle: str) -> None:
        result = runner.invoke(app, ["--database-url", url, "items", "add", str(path)])
        assert_cli_error(result, needle)

    assert_unreadable(tmp_path / "missing.txt", "No such file or directory")
    assert_unreadable(tmp_path, "Is a directory")
    not_utf8 = tmp_path / "latin1.txt"
    not_utf8.write_bytes(b"item-1\nCaf\xe9\n")
    assert_unreadable(not_utf8, "line 2 is not UTF-8")
    too_long = tmp_path / "long.txt"
    too_long.write_text("item-1\n\n" + "x" * 501 + "\n")
    assert_unreadable(too_long, "long.txt line 3: item id is 501 characters long")
    # Root reads any file, so the permission check is simulated.
    locked = tmp_path / "locked.txt"
    locked.write_text("item-1\n")
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", refuse)
    assert_unreadable(locked, "Permission denied")


def test_usage_errors_keep_typers_status(runner, url):
    result = runner.invoke(app, ["--database-url", url, "work", "d"])  # no --handler
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# --- as processes -----------------------------------------------------------------


def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != fulltext_jobs.DATABASE_URL_ENV}
    env["COLUMNS"] = "100"
    return env


def run_process(*args: str, cwd: Path, command: tuple[str, ...] | None = None):
    command = command or (sys.executable, "-m", "fulltext_jobs")
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


@pytest.mark.slow
def test_demo_process_on_sqlite_in_the_working_directory(tmp_path):
    first = run_process("demo", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "fulltext-jobs-demo.sqlite3").is_file()
    assert not (tmp_path / "fulltext-jobs.sqlite3").exists()
    second = run_process("demo", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""  # no progress bars where stderr is not a terminal
    report = json.loads(first.stdout)
    assert report["database"] == "sqlite:///fulltext-jobs-demo.sqlite3"
    assert report["items_added"] == 200
    lines = {line.split()[0]: line.split()[1:] for line in second.stdout.splitlines() if line}
    assert lines["items"] == ["added:", "0"]
    # Nothing is ready, so no lag.
    assert lines["demo-word-count"] == ["0", "0", "192", "0", "8", "0", "-"]
    assert lines["demo-language-detection"] == ["0", "0", "192", "0", "8", "0", "-"]


@pytest.mark.slow
@pytest.mark.postgresql
def test_demo_process_on_postgresql(tmp_path, fresh_postgres_url):
    result = run_process("demo", "--database-url", fresh_postgres_url, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["items_added"] == 200
    assert [(row["finished"], row["skipped"]) for row in report["stats"]] == [(192, 8), (192, 8)]
    assert not (tmp_path / "fulltext-jobs.sqlite3").exists()
    stats = run_process(
        "--database-url", fresh_postgres_url, "stats", "--unqueued", "--json", cwd=tmp_path
    )
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout) == sorted(report["stats"], key=lambda row: row["destination"])


@pytest.mark.slow
def test_sigterm_stops_a_worker_gracefully(url, repo):
    repo.add_items(f"slow-{n:03}" for n in range(100))
    repo.enqueue_unqueued("slow")
    # The entry point, from this folder: cli_handlers is found in the
    # working directory, which a console script does not put on sys.path.
    command = [str(ENTRY_POINT), "--database-url", url, "work", "slow"]
    command += ["--handler", "cli_handlers:slow", "--concurrency", "2"]
    command += ["--shutdown-timeout", "3", "--json"]
    process = subprocess.Popen(
        command,
        cwd=TESTS,
        env=process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while counts(repo, "slow")["finished"] < 4:
            assert process.poll() is None, process.communicate(timeout=5)
            assert time.monotonic() < deadline, "the worker finished no job in time"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert time.monotonic() - started < 3 + 5
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    stats = json.loads(out)
    after = counts(repo, "slow")
    assert after["running"] == 0
    assert after["finished"] == stats["finished"] >= 4
    assert after["ready"] == 100 - after["finished"]
    assert stats["lost_claims"] == 0


@pytest.mark.slow
def test_errors_as_processes(tmp_path, url):
    unmigrated = run_process("stats", cwd=tmp_path)
    assert_one_line_error(
        unmigrated.returncode, unmigrated.stdout, unmigrated.stderr, "fulltext-jobs migrate upgrade"
    )
    bad_handler = run_process(
        "--database-url", url, "work", "d", "--handler", "nowhere:run",
        cwd=tmp_path, command=(str(ENTRY_POINT),),
    )  # fmt: skip
    assert_one_line_error(
        bad_handler.returncode, bad_handler.stdout, bad_handler.stderr, "No module named 'nowhere'"
    )


def test_jobs_lists_failed_jobs_with_their_errors_and_feeds_retry(runner, url, repo):
    repo.add_items(["ok-1", "fail-1", "fail-2", "skip-1"])
    run(runner, url, "enqueue", "d")
    run(runner, url, "work", "d", "--handler", "cli_handlers:by_item", "--until-idle",
        "--max-attempts", "1")  # fmt: skip
    failed = run_json(runner, url, "jobs", "d", "--status", "failed")
    assert isinstance(failed, list)
    assert [(job["item_id"], job["status"], job["attempts"]) for job in failed] == [
        ("fail-1", "failed", 1),
        ("fail-2", "failed", 1),
    ]
    assert failed[0]["last_error"] == "RuntimeError: cannot handle fail-1"
    assert failed[0]["finished"] is not None
    page = run_json(runner, url, "jobs", "d", "--limit", "2", "--after", "fail-1")
    assert [job["item_id"] for job in page] == ["fail-2", "ok-1"]
    table = run(runner, url, "jobs", "d", "--status", "failed", "--status", "skipped").stdout
    assert "fail-2" in table
    assert "skip-1" in table
    assert "ok-1" not in table
    # Off a terminal a row stays one line, whole: its id, its item, and its
    # times to the second, in UTC.
    [row] = [line for line in table.splitlines() if failed[0]["id"] in line]
    assert "fail-1" in row
    assert failed[0]["finished"][:19].replace("T", " ") in row
    items = [arg for job in failed for arg in ("--item", job["item_id"])]
    retried = run_json(runner, url, "retry", "d", *items)
    assert retried == {"destination": "d", "retried": 2}


STORES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


@pytest.mark.parametrize("store", STORES)
def test_recovery_by_retry_gives_retries_again_and_a_clean_audit(runner, request, store):
    # Jobs fail after their attempts; `retry --status failed` returns them
    # with a fresh budget, so `work` gives each its retries with backoff
    # again, and `audit` (same max attempts) finds nothing to report.
    url = request.getfixturevalue("url" if store == "sqlite" else "fresh_postgres_url")
    if store == "postgresql":
        run(runner, url, "migrate", "upgrade")
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)
        repo.add_items(["fail-1", "fail-2", "ok-1"])
        run(runner, url, "enqueue", "d")
        policy = ["--max-attempts", "2", "--retry-delay", "0.05", "--until-idle"]
        first = run_json(runner, url, "work", "d", "--handler", "cli_handlers:by_item", *policy)
        assert isinstance(first, dict)
        assert (first["claimed"], first["retried"], first["failed"]) == (5, 2, 2)
        failed = repo.list_jobs("d", statuses=["failed"])
        assert [(job.item_id, job.attempts) for job in failed] == [("fail-1", 2), ("fail-2", 2)]
        report = run_json(runner, url, "audit", "d", "--max-attempts", "2")  # exit status 0
        assert isinstance(report, dict)
        assert (report["clean"], report["problems"]) == (True, [])

        assert run_json(runner, url, "retry", "d", "--status", "failed") == {
            "destination": "d",
            "retried": 2,
        }
        retried = repo.list_jobs("d", statuses=["ready"])
        assert [(job.attempts, job.last_error) for job in retried] == [
            (0, "RuntimeError: cannot handle fail-1"),
            (0, "RuntimeError: cannot handle fail-2"),
        ]
        # Each fails its first attempt again, is released for a backoff,
        # and its second attempt (of two) finishes.
        args = ["work", "d", "--handler", "cli_handlers:fixed_on_second_attempt", *policy]
        second = run_json(runner, url, *args)
        assert isinstance(second, dict)
        assert (second["claimed"], second["retried"], second["finished"]) == (4, 2, 2)
        done = [repo.get_fulltext(job.id) for job in failed]
        assert [(job.status, job.attempts) for job in done] == [(JobStatus.FINISHED, 2)] * 2
        assert [job.last_error for job in done] == [
            "RuntimeError: attempt 1 of fail-1 still fails",
            "RuntimeError: attempt 1 of fail-2 still fails",
        ]
        report = run_json(runner, url, "audit", "d", "--max-attempts", "2")  # exit status 0
        assert isinstance(report, dict)
        assert (report["clean"], report["problems"]) == (True, [])
        # The default limit, as an operator first runs it, agrees.
        run(runner, url, "audit")
    finally:
        engine.dispose()


def test_enqueue_at_a_priority_prioritize_and_see_it_in_jobs(runner, url, repo, tmp_path):
    repo.add_items(["a", "b", "c"])
    assert run_json(runner, url, "enqueue", "lang", "--limit", "2") == {
        "destination": "lang",
        "created": 2,
        "priority": 0,
    }
    assert "at priority 4" in run(runner, url, "enqueue", "lang", "--priority", "4").stdout
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nmissing\n")
    changed = run_json(runner, url, "prioritize", "lang", "--items", str(ids), "--priority", "9")
    assert changed == {"destination": "lang", "priority": 9, "changed": 1}
    listed = run_json(runner, url, "jobs", "lang")
    assert {job["item_id"]: job["priority"] for job in listed} == {"a": 9, "b": 0, "c": 4}
    assert "priority" in run(runner, url, "jobs", "lang").stdout
    assert [repo.get_ready_job("lang").item_id for _ in range(3)] == ["a", "c", "b"]
    # A bad priority is the port's refusal, and changes nothing.
    refused = runner.invoke(
        app, ["--database-url", url, "prioritize", "lang", "--item", "b", "--priority", "40000"]
    )
    assert_one_line_error(refused.exit_code, refused.stdout, refused.stderr, "priority")
    assert repo.get_fulltext(repo.list_jobs("lang")[1].id).priority == 0


def test_depend_shows_refuses_and_undepend_drops_upstreams(runner, url, repo):
    repo.add_items(["a", "b", "c"])
    assert run(runner, url, "depend", "lang", "--on", "fetch").stdout == (
        "'lang' follows fetch (finished)\n"
    )
    declared = run_json(
        runner, url, "depend", "quotes", "--on", "lang", "--on-status", "finished,skipped"
    )
    assert declared == {
        "destination": "quotes",
        "upstreams": [{"upstream": "lang", "statuses": ["finished", "skipped"]}],
    }
    # Refusals are one line each, and change nothing: a cycle, a bad status.
    for args, needle in (
        (["depend", "fetch", "--on", "quotes"], "fetch -> quotes -> lang -> fetch"),
        (["depend", "lang", "--on", "other", "--on-status", "running"], "running"),
        (["depend", "lang", "--on", "lang"], "itself"),
        (["depend", "lang", "--on", "x", "--on-status", "FINISHED"], "finished, failed or skipped"),
        (["depend", "lang", "--on-status", "skipped"], "give --on too"),
    ):
        refused = runner.invoke(app, ["--database-url", url, *args])
        assert_one_line_error(refused.exit_code, refused.stdout, refused.stderr, needle)
    assert run_json(runner, url, "depend", "lang") == {
        "destination": "lang",
        "upstreams": [{"upstream": "fetch", "statuses": ["finished"]}],
    }
    assert [d.destination for d in repo.dependencies()] == ["lang", "quotes"]
    # --on-status repeated adds up, as a comma-separated list does.
    again = run_json(
        runner,
        url,
        "depend",
        "quotes",
        "--on",
        "lang",
        "--on-status",
        "finished",
        "--on-status",
        "skipped",
    )
    assert again["upstreams"] == [{"upstream": "lang", "statuses": ["finished", "skipped"]}]
    # stats shows each follower, with no job yet, and what is to come.
    repo.enqueue_unqueued("fetch")
    job = repo.get_ready_job("fetch")
    job.finish()
    repo.save_fulltext(job)
    rows = {row["destination"]: row for row in run_json(runner, url, "stats")}
    assert rows["lang"]["to_come"] == 2
    assert rows["lang"]["upstreams"] == [{"upstream": "fetch", "statuses": ["finished"]}]
    assert rows["fetch"]["to_come"] is None
    assert "fetch (finished); 2 to come" in run(runner, url, "stats").stdout
    # `enqueue` is the backlog: the item done upstream, and only it.
    assert run_json(runner, url, "enqueue", "lang")["created"] == 1
    assert run_json(runner, url, "undepend", "quotes") == {
        "destination": "quotes",
        "upstreams": [],
    }
    assert "follows no destination" in run(runner, url, "depend", "quotes").stdout


def test_undepend_warns_of_an_upstream_not_followed_and_enqueue_checks_first(
    runner, url, repo, caplog
):
    repo.add_items(["a"])
    repo.enqueue_unqueued("fetch")
    run(runner, url, "depend", "lang", "--on", "fetch")
    with caplog.at_level(logging.WARNING, logger="fulltext_jobs.cli"):
        run(runner, url, "undepend", "lang", "--on", "fecth")
    assert "'lang' did not follow 'fecth': nothing dropped for it" in caplog.text
    assert [d.upstream for d in repo.dependencies("lang")] == ["fetch"]
    # A bad priority is refused before any question or warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fulltext_jobs.cli"):
        refused = runner.invoke(
            app, ["--database-url", url, "enqueue", "brand-new", "--priority", "32768"]
        )
    assert_one_line_error(refused.exit_code, refused.stdout, refused.stderr, "priority")
    assert "new destination" not in caplog.text


def test_a_declared_destination_with_no_jobs_yet_is_known_to_every_command(runner, url, repo):
    repo.add_items(["a"])
    repo.enqueue_unqueued("fetch")
    run(runner, url, "depend", "quotes", "--on", "lang")
    run(runner, url, "depend", "lang", "--on", "fetch")
    # Steered before its first job: paused, shown alone, its (empty) jobs listed.
    run(runner, url, "pause", "quotes", "--reason", "not yet")
    shown = run_json(runner, url, "stats", "quotes")
    assert [(row["destination"], row["ready"], row["to_come"]) for row in shown] == [
        ("quotes", 0, 0)
    ]
    assert shown[0]["pause"]["pause_reason"] == "not yet"
    assert run_json(runner, url, "stats", "lang")[0]["to_come"] == 1
    assert run_json(runner, url, "jobs", "lang") == []
    # --unqueued counts a follower's items done upstream, before its first job.
    job = repo.get_ready_job("fetch")
    job.finish()
    repo.save_fulltext(job)
    counted = {
        row["destination"]: row["unqueued"] for row in run_json(runner, url, "stats", "--unqueued")
    }
    assert counted == {"fetch": 0, "lang": 1, "quotes": 0}
    assert run_json(runner, url, "stats", "lang")[0]["unqueued"] is None
    # A name no job and no declaration knows is still refused, naming both kinds.
    assert_cli_error(
        runner.invoke(app, ["--database-url", url, "stats", "qoutes"]),
        "no jobs for destination 'qoutes'; known destinations: fetch, lang, quotes",
    )


def test_a_steered_destination_stays_known_once_its_dependency_is_dropped(runner, url, repo):
    repo.add_items(["a"])
    repo.enqueue_unqueued("fetch")
    run(runner, url, "depend", "pz", "--on", "fetch")
    run(runner, url, "pause", "pz", "--for", "1h", "--reason", "test")
    run(runner, url, "limit", "pz", "--max-running", "2")
    run(runner, url, "undepend", "pz")
    # What was set stays in sight, and can be undone.
    (shown,) = run_json(runner, url, "stats", "pz")
    assert (shown["pause"]["pause_reason"], shown["max_running"]) == ("test", 2)
    assert "pz" in {row["destination"] for row in run_json(runner, url, "stats")}
    run(runner, url, "resume", "pz")
    run(runner, url, "limit", "pz", "--max-running", "none")
    assert repo.controls("pz").max_running is None


def test_depend_warns_of_a_misspelt_upstream_before_any_job_exists(runner, url, caplog):
    with caplog.at_level(logging.WARNING, logger="fulltext_jobs.cli"):
        run(runner, url, "depend", "language", "--on", "fetch")  # nothing to mistake it for
        assert caplog.text == ""
        run(runner, url, "depend", "quotes", "--on", "fecth")
    assert "'fecth' is a new destination" in caplog.text
    assert "did you mean 'fetch'?" in caplog.text


def test_depend_warns_of_an_upstream_with_no_jobs_naming_the_closest(runner, url, repo, caplog):
    repo.add_items(["a"])
    repo.enqueue_unqueued("language")
    with caplog.at_level(logging.WARNING, logger="fulltext_jobs.cli"):
        run(runner, url, "depend", "summaries", "--on", "langauge")
    assert "'langauge' is a new destination" in caplog.text
    assert "did you mean 'language'?" in caplog.text
    # Declared all the same: a chain may be declared before its jobs exist.
    assert [d.upstream for d in repo.dependencies("summaries")] == ["langauge"]
    # A destination declared already is no typo: following it, or queuing
    # its backlog, warns of nothing.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fulltext_jobs.cli"):
        run(runner, url, "depend", "digest", "--on", "summaries")
        run(runner, url, "enqueue", "summaries")
        # Nor is one something is set on.
        run(runner, url, "pause", "digest")
        run(runner, url, "undepend", "digest")
        run(runner, url, "depend", "index", "--on", "digest")
    assert "new destination" not in caplog.text
