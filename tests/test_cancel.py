"""Cancelling jobs: a running job's cancel reaching its `Worker` (sync and
async handlers, in memory; from another process on PostgreSQL and SQLite),
and the command line's `cancel`. What every adapter promises of `cancel`
itself is the contract's (`fulltext_jobs.testing.cancel`)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from cancel_workers import DESTINATION, run_one_long_job
from harness import SqliteTemplate, reset_database
from test_batch_path import join_or_kill, queued
from typer.testing import CliRunner, Result

import fulltext_jobs
from fulltext_jobs import (
    FullText,
    InMemoryRepository,
    JobStatus,
    SqlAlchemyRepository,
    Worker,
    cancel_requested,
)
from fulltext_jobs.cli import app
from fulltext_jobs.worker import WorkerStats

#: How long a test waits for anything a worker should do.
PATIENCE_SECONDS = 30


def wait_for(condition: Callable[[], object], what: str) -> float:
    """Poll `condition` until true; return the seconds it took."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < PATIENCE_SECONDS, f"waited too long for {what}"
        time.sleep(0.005)
    return time.monotonic() - began


def in_thread(worker: Worker) -> tuple[threading.Thread, list[WorkerStats]]:
    """`worker.run(until_idle=True)` in a thread of its own."""
    stats: list[WorkerStats] = []
    thread = threading.Thread(
        target=lambda: stats.append(worker.run(until_idle=True, install_signal_handlers=False))
    )
    thread.start()
    return thread, stats


def ended(thread: threading.Thread, worker: Worker) -> None:
    """Join the worker's thread; fail (after stopping it) if it hangs."""
    thread.join(PATIENCE_SECONDS)
    if thread.is_alive():
        worker.stop()
        thread.join(PATIENCE_SECONDS)
        pytest.fail("the worker did not end")


# --- the Worker, in memory ------------------------------------------------------


def test_a_sync_handler_polls_the_flag_and_its_job_is_skipped_not_retried():
    repo = InMemoryRepository()
    repo.save_many([FullText.new(item, DESTINATION) for item in ("a", "b")])
    started, seen = threading.Event(), []

    def handler(job: FullText) -> None:
        if job.item_id == "b":
            return
        started.set()
        wait_for(cancel_requested, "the cancel")
        seen.append(time.monotonic())
        # However it ends after the cancel (here an error a retry would
        # follow), the job is skipped with the reason.
        raise RuntimeError("stopped")

    worker = Worker(repo, DESTINATION, handler)
    thread, stats = in_thread(worker)
    assert started.wait(PATIENCE_SECONDS)
    asked = time.monotonic()
    got = repo.cancel(DESTINATION, item_ids=["a"], reason="wrong language")
    ended(thread, worker)
    (job,) = repo.list_jobs(DESTINATION, statuses=["skipped"])
    assert got.requested == [job.id]
    assert (job.item_id, job.last_error) == ("a", "cancelled: wrong language")
    assert job.claim_token is None
    # Heard through the in-memory adapter's announcement, not a heartbeat.
    assert seen[0] - asked < 1.0
    assert stats[0].skipped == 1
    assert stats[0].finished == 1
    assert not cancel_requested()  # outside a handler


def test_an_async_handler_is_cancelled_and_its_job_skipped():
    repo = InMemoryRepository()
    (job,) = [FullText.new("a", DESTINATION)]
    repo.save_fulltext(job)
    started, cancelled = threading.Event(), threading.Event()

    async def handler(job: FullText) -> None:  # noqa: ARG001 - the handler's signature
        started.set()
        try:
            await asyncio.sleep(PATIENCE_SECONDS)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = Worker(repo, DESTINATION, handler, timeout=PATIENCE_SECONDS * 2)
    thread, stats = in_thread(worker)
    assert started.wait(PATIENCE_SECONDS)
    repo.cancel(DESTINATION, item_ids=["a"])
    assert cancelled.wait(PATIENCE_SECONDS)
    ended(thread, worker)
    stored = repo.get_fulltext(job.id)
    assert (stored.status, stored.last_error) == (JobStatus.SKIPPED, "cancelled: by an operator")
    assert stats[0].skipped == 1


def test_without_a_listener_the_heartbeat_hears_and_a_batch_s_unstarted_job_never_runs():
    repo = InMemoryRepository()
    repo.save_many([FullText.new(item, DESTINATION) for item in ("a", "b", "c")])
    started, handled = threading.Event(), []

    def handler(job: FullText) -> None:
        handled.append(job.item_id)
        started.set()
        wait_for(lambda: job.item_id != "a" or cancel_requested(), "the cancel")

    worker = Worker(repo, DESTINATION, handler, batch_size=3, listen=False, heartbeat_interval=0.05)
    thread, stats = in_thread(worker)
    assert started.wait(PATIENCE_SECONDS)
    repo.cancel(DESTINATION, item_ids=["a", "b"], reason="enough")
    ended(thread, worker)
    assert handled == ["a", "c"]
    jobs = {job.item_id: job for job in repo.list_jobs(DESTINATION)}
    assert {item: job.status for item, job in jobs.items()} == {
        "a": JobStatus.SKIPPED,
        "b": JobStatus.SKIPPED,
        "c": JobStatus.FINISHED,
    }
    assert jobs["b"].last_error == "cancelled: enough"
    assert stats[0].skipped == 2


# --- from another process ---------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param(("postgresql", "sync"), marks=pytest.mark.postgresql, id="postgresql-sync"),
        pytest.param(("postgresql", "async"), marks=pytest.mark.postgresql, id="postgresql-async"),
        pytest.param(("sqlite", "sync"), id="sqlite-sync"),
    ]
)
def one_job(
    request: pytest.FixtureRequest, sqlite_template: SqliteTemplate
) -> Iterator[tuple[str, sa.Engine, str]]:
    """A database with one ready job: its URL, an engine, and the handler's kind."""
    dialect, kind = request.param
    if dialect == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
        engine: sa.Engine = request.getfixturevalue("postgres_engine")
        reset_database(engine)
    else:
        url = sqlite_template.fresh_url()
        engine = fulltext_jobs.create_engine(url)
    queued(engine, 1)
    yield url, engine, kind
    if dialect == "sqlite":
        engine.dispose()


def test_a_cancel_from_another_process_reaches_the_worker_in_time(
    one_job: tuple[str, sa.Engine, str],
):
    url, engine, kind = one_job
    repo = SqlAlchemyRepository(engine)
    postgresql = engine.dialect.name == "postgresql"
    # SQLite cannot announce a cancel: the job's heartbeat hears it.
    settings = {} if postgresql else {"heartbeat_interval": 0.5}
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=run_one_long_job, args=(url, kind, settings, results))
    process.start()
    try:
        wait_for(
            lambda: repo.stats(DESTINATION, unqueued=False)[0].counts[JobStatus.RUNNING], "a start"
        )
        asked = time.time()
        got = repo.cancel(DESTINATION, item_ids=["item-00000"], reason="from afar")
        assert len(got.requested) == 1
        report = results.get(timeout=PATIENCE_SECONDS)
    finally:
        join_or_kill([process])
    assert report["error"] is None, report["error"]
    took = report["heard_at"] - asked
    assert took < (1.0 if postgresql else 0.5 + 1.0), took
    (job,) = repo.list_jobs(DESTINATION)
    assert (job.status, job.last_error) == (JobStatus.SKIPPED, "cancelled: from afar")
    assert report["stats"].skipped == 1


# --- the command line -------------------------------------------------------------


def cli(url: str, *args: str, stdin: str | None = None) -> Result:
    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})
    return runner.invoke(app, ["--database-url", url, *args], input=stdin)


@pytest.fixture
def cli_url(sqlite_template: SqliteTemplate) -> str:
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    queued(engine, 5)
    SqlAlchemyRepository(engine).get_ready_job(DESTINATION)  # item-00000 runs
    engine.dispose()
    return url


def statuses(url: str) -> dict[str, Any]:
    engine = fulltext_jobs.create_engine(url)
    try:
        return {
            job.item_id: job.status for job in SqlAlchemyRepository(engine).list_jobs(DESTINATION)
        }
    finally:
        engine.dispose()


def test_cancel_from_the_command_line_by_item_by_file_and_every_ready_job(
    cli_url: str, tmp_path: Any
):
    result = cli(cli_url, "cancel", DESTINATION, "--item", "item-00000", "--item", "item-00001")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (
        f"cancelled jobs of {DESTINATION!r}: 1 ready skipped, 1 running asked to stop"
    )
    listed = tmp_path / "ids.txt"
    listed.write_text("item-00002\n\nnot-a-job\n")
    result = cli(
        cli_url, "cancel", DESTINATION, "--items", str(listed), "--reason", "dup", "--json"
    )
    assert json.loads(result.stdout) == {"destination": DESTINATION, "skipped": 1, "requested": 0}
    result = cli(cli_url, "cancel", DESTINATION, "--status", "ready", "--json")
    assert json.loads(result.stdout)["skipped"] == 2
    assert statuses(cli_url) == {
        "item-00000": JobStatus.RUNNING,  # asked to stop: its worker saves it
        **{f"item-0000{n}": JobStatus.SKIPPED for n in range(1, 5)},
    }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "give one of --item, --items and --status"),
        (("--item", "item-00001", "--status", "ready"), "give one of"),
        (("--status", "running"), "'running' is not"),
        (("--items", "/no/such/file"), "cannot read /no/such/file"),
        (("--item", ""), "item id"),
    ],
)
def test_a_bad_cancel_is_one_error_line_and_cancels_nothing(
    cli_url: str, args: tuple[str, ...], needle: str
):
    result = cli(cli_url, "cancel", DESTINATION, *args)
    assert result.exit_code != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert list(statuses(cli_url).values()).count(JobStatus.READY) == 4
