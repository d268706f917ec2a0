"""Logs for machines: `JsonFormatter` writes one JSON object a line, with
the destination and job id of the worker's log context; `fulltext-jobs
--log-format json` writes nothing else to stderr, its `error:` lines
included."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository
from fulltext_jobs.cli import _demo_app as demo
from fulltext_jobs.cli import app
from fulltext_jobs.logs import JsonFormatter, context_fields, log_context

TESTS = Path(__file__).resolve().parent


def record(message: str, *args: object, exc: BaseException | None = None, **extra: object):
    made = logging.LogRecord(
        "fulltext_jobs.worker",
        logging.WARNING,
        __file__,
        1,
        message,
        args,
        None if exc is None else (type(exc), exc, exc.__traceback__),
    )
    made.__dict__.update(extra)
    return made


def failure() -> RuntimeError:
    try:
        raise RuntimeError("cannot handle\nthis item")  # noqa: TRY301 - a real traceback
    except RuntimeError as exc:
        return exc


def test_a_record_is_one_json_line():
    line = JsonFormatter().format(record("job %s failed", 7, exc=failure()))
    assert "\n" not in line
    data = json.loads(line)
    assert list(data) == ["time", "level", "logger", "message", "exception"]
    assert data["time"].endswith("Z")
    assert data["level"] == "WARNING"
    assert data["logger"] == "fulltext_jobs.worker"
    assert data["message"] == "job 7 failed"
    assert data["exception"] == "RuntimeError: cannot handle this item"


def test_tracebacks_come_with_them_on():
    data = json.loads(JsonFormatter(tracebacks=True).format(record("x", exc=failure())))
    assert data["traceback"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: cannot handle" in data["traceback"]


def test_the_log_context_tags_records_and_an_extra_wins():
    formatter = JsonFormatter()
    with log_context(destination="word-count"), log_context(job_id="j-1"):
        data = json.loads(formatter.format(record("x")))
        assert (data["destination"], data["job_id"]) == ("word-count", "j-1")
        data = json.loads(formatter.format(record("x", destination="other")))
        assert data["destination"] == "other"
    assert context_fields() == {}
    assert "destination" not in json.loads(formatter.format(record("x")))


def test_the_context_is_the_threads_own():
    seen: list[object] = []
    with log_context(destination="here"):
        thread = threading.Thread(target=lambda: seen.append(dict(context_fields())))
        thread.start()
        thread.join()
    assert seen == [{}]


def test_an_unknown_context_field_is_refused():
    with pytest.raises(ValueError, match="unknown log context fields"), log_context(color="red"):
        pass


def json_lines(stderr: str) -> list[dict[str, object]]:
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    return [json.loads(line) for line in lines]  # each line must be JSON


@pytest.mark.slow
def test_work_writes_only_json_lines_to_stderr(sqlite_template):
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    repo = SqlAlchemyRepository(engine)
    repo.add_items(["a", "b-skip", "c-fail"])
    repo.enqueue_unqueued("word-count")
    engine.dispose()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "fulltext_jobs", "--log-format", "json", "-v"),
            *("--database-url", url, "work", "word-count"),
            *("--handler", "cli_handlers:by_item", "--until-idle", "--json", "--max-attempts", "1"),
        ],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    records = json_lines(done.stderr)
    # A job's records carry its id; the run's start and stop lines do not.
    jobs = [r for r in records if "job_id" in r]
    [fail] = [r for r in jobs if "failed" in str(r["message"])]
    assert fail["level"] == "WARNING"
    assert fail["destination"] == "word-count"
    assert fail["exception"] == "RuntimeError: cannot handle c-fail"
    assert "c-fail" in str(fail["message"])
    assert str(fail["message"]).split()[1] == fail["job_id"]
    assert "Traceback" in str(fail["traceback"])  # -v
    [skip] = [r for r in jobs if "skipped" in str(r["message"])]
    assert skip["level"] == "INFO"
    assert skip["job_id"] != fail["job_id"]
    assert json.loads(done.stdout)["finished"] == 1


@pytest.mark.slow
def test_an_error_is_a_json_line_too(sqlite_template):
    done = subprocess.run(
        [
            *(sys.executable, "-m", "fulltext_jobs", "--log-format", "json"),
            *("--database-url", sqlite_template.fresh_url(), "stats", "nowhere"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    [error] = json_lines(done.stderr)
    assert error["level"] == "ERROR"
    assert error["logger"] == "fulltext_jobs.cli"
    assert "nowhere" in str(error["message"])


def test_an_interrupted_demo_says_so_in_json(monkeypatch, tmp_path):
    def interrupted(engine, **_callbacks):
        del engine
        return demo.DemoReport(
            items_added=0, jobs_created={}, stats=[], samples=[], interrupted=True
        )

    monkeypatch.setattr(demo, "run", interrupted)
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    result = CliRunner().invoke(app, ["--log-format", "json", "--database-url", url, "demo"])
    assert result.exit_code == 130
    [line] = json_lines(result.stderr)
    assert line["message"] == "interrupted: run the demo again to finish its jobs"
    assert line["level"] == "WARNING"
