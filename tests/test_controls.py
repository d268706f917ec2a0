"""Pausing and resuming a destination, beyond the contract suite (which
holds every adapter's claims to a pause): what a `Worker` does while its
destination is paused, and, with real processes on PostgreSQL and SQLite,
a pause in the middle of a drain."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from batch_workers import DESTINATION, drain_backing_off, drain_counting, drain_until_stopped
from harness import FakeClock, SqliteTemplate, reset_database
from test_batch_path import join_or_kill, queued
from typer.testing import CliRunner, Result

import fulltext_jobs
from fulltext_jobs import FullText, InMemoryRepository, JobStatus, SqlAlchemyRepository, Worker
from fulltext_jobs.cli import app
from fulltext_jobs.sql.schema import tables_for
from fulltext_jobs.worker import Waiting, WaitReason, WorkerStats

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def memory_queue(n: int, clock: FakeClock | None = None) -> InMemoryRepository:
    repo = InMemoryRepository(clock=clock)
    repo.save_many([FullText.new(f"item-{i:03}", DESTINATION) for i in range(n)])
    return repo


# --- the Worker, in memory ------------------------------------------------------


def run_bounded(worker: Worker, seconds: float = 30) -> WorkerStats:
    """`worker.run(until_idle=True)`, stopped (and the test failed) if it
    is still running after `seconds`: a worker that does not see a pause
    would otherwise poll it for ever."""
    stats: list[WorkerStats] = []
    thread = threading.Thread(
        target=lambda: stats.append(worker.run(until_idle=True, install_signal_handlers=False))
    )
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        worker.stop()
        thread.join(seconds)
        pytest.fail(f"the run did not end within {seconds} s")
    return stats[0]


def test_a_run_until_idle_ends_at_once_on_a_destination_paused_until_resumed(
    caplog: pytest.LogCaptureFixture,
):
    repo = memory_queue(3)
    repo.pause(DESTINATION, reason="model v2 is broken")
    handled: list[FullText] = []
    worker = Worker(repo, DESTINATION, handled.append, listen=False)
    with caplog.at_level(logging.WARNING, logger="fulltext_jobs.worker"):
        stats = run_bounded(worker)
    assert (stats.claimed, handled) == (0, [])
    assert f"{DESTINATION} is paused until resumed (model v2 is broken)" in caplog.text
    assert {job.status for job in repo.list_jobs(DESTINATION)} == {JobStatus.READY}


def test_a_worker_waits_out_a_timed_pause_and_then_drains():
    clock = FakeClock(T0)
    repo = memory_queue(3, clock)
    until = T0 + timedelta(seconds=45)
    repo.pause(DESTINATION, until=until, reason="quota")
    waits: list[tuple[float, Waiting | None]] = []
    worker: Worker

    def wait(event: threading.Event, seconds: float) -> bool:
        # Time passes only while the worker waits.
        waits.append((seconds, worker.waiting))
        clock.advance(seconds=seconds)
        return event.is_set()

    worker = Worker(
        repo, DESTINATION, print, listen=False, clock=clock, wait=wait, max_poll_interval=30
    )
    stats = worker.run(until_idle=True, install_signal_handlers=False)
    assert stats.finished == 3
    # Backing off as an idle worker does, never past the pause's end.
    assert [seconds for seconds, _ in waits] == [1, 2, 4, 8, 16, 14]
    waiting = waits[0][1]
    assert waiting is not None
    assert (waiting.reason, waiting.due, waiting.note) == (WaitReason.PAUSED, until, "quota")
    assert {job.started for job in repo.list_jobs(DESTINATION)} == {until}


def test_a_resume_wakes_a_waiting_worker_at_once():
    repo = memory_queue(2)
    repo.pause(DESTINATION)
    handled: list[FullText] = []
    worker = Worker(repo, DESTINATION, handled.append, poll_interval=30, max_poll_interval=30)
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while (worker.waiting is None or worker.waiting.reason is not WaitReason.PAUSED) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert worker.waiting is not None
        assert worker.waiting.reason is WaitReason.PAUSED
        resumed = time.monotonic()
        repo.resume(DESTINATION)
        while len(handled) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Woken by the resume, not by its 30-second poll.
        assert len(handled) == 2
        assert time.monotonic() - resumed < 5
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()


# --- a pause in the middle of a drain, in processes --------------------------------

#: Jobs of the drain, and how long each handler call takes.
JOBS, JOB_SECONDS = 400, 0.02
PROCESSES = 4
#: How long the test waits for anything the workers should do.
PATIENCE_SECONDS = 60


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgresql), "sqlite"])
def drain(
    request: pytest.FixtureRequest, sqlite_template: SqliteTemplate
) -> Iterator[tuple[str, sa.Engine, dict[str, float]]]:
    """A database with `JOBS` ready jobs: its URL, an engine, and settings
    for the workers (on SQLite, which cannot announce a resume, a poll of
    at most 2 s instead of the default 30 s, so that a resume is seen
    within the test's time)."""
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
        engine: sa.Engine = request.getfixturevalue("postgres_engine")
        reset_database(engine)
        settings: dict[str, float] = {}
    else:
        url = sqlite_template.fresh_url()
        engine = fulltext_jobs.create_engine(url)
        settings = {"max_poll_interval": 2.0}
    queued(engine, JOBS)
    yield url, engine, settings
    if request.param == "sqlite":
        engine.dispose()


def started_after(engine: sa.Engine, moment: datetime) -> list[datetime]:
    """When each job that started after `moment` started, earliest first."""
    ft = tables_for(engine.dialect.name).fulltext
    with engine.connect() as connection:
        return sorted(
            connection.execute(sa.select(ft.c.started).where(ft.c.started > moment)).scalars()
        )


def status_counts(engine: sa.Engine) -> dict[str, int]:
    ft = tables_for(engine.dialect.name).fulltext
    with engine.connect() as connection:
        rows = connection.execute(sa.select(ft.c.status, sa.func.count()).group_by(ft.c.status))
        return {str(status): count for status, count in rows}


def wait_for(condition: Any, what: str) -> float:
    """Poll `condition` until true; return the seconds it took."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < PATIENCE_SECONDS, f"waited too long for {what}"
        time.sleep(0.02)
    return time.monotonic() - began


def now() -> datetime:
    return datetime.now(UTC)


#: How the worker processes are started: afresh, not forked from pytest.
SPAWN = multiprocessing.get_context("spawn")


@contextlib.contextmanager
def fleet(
    target: Callable[..., None], *args: Any, settings: dict[str, Any]
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """`PROCESSES` processes, each running `target(*args, ready, stop,
    results, settings)` (see tests/batch_workers.py), entered once every
    one of them runs. Yields the call that stops them and returns their
    reports, after checking that none ended in an error; leaving the block
    stops them in any case and joins them, killing any that hangs."""
    ready, stop, results = SPAWN.Queue(), SPAWN.Event(), SPAWN.Queue()
    processes = [
        SPAWN.Process(target=target, args=(*args, ready, stop, results, settings))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()

    def reports() -> list[dict[str, Any]]:
        stop.set()
        got = [results.get(timeout=PATIENCE_SECONDS) for _ in processes]
        assert [report["error"] for report in got] == [None] * PROCESSES
        return got

    try:
        for _ in processes:
            ready.get(timeout=PATIENCE_SECONDS)
        yield reports
    finally:
        stop.set()
        join_or_kill(processes)


@pytest.mark.slow
def test_a_pause_mid_drain_stops_every_start_until_resumed_and_a_timed_one_ends_by_itself(
    drain: tuple[str, sa.Engine, dict[str, float]],
):
    url, engine, settings = drain
    repo = SqlAlchemyRepository(engine)
    with fleet(drain_until_stopped, url, JOB_SECONDS, settings=settings) as stopped:
        wait_for(lambda: status_counts(engine).get("finished", 0) >= JOBS // 4, "a quarter done")

        # Paused: once pause() has returned, no job starts; running ones finish.
        repo.pause(DESTINATION, reason="upstream maintenance")
        paused = now()
        wait_for(lambda: status_counts(engine).get("running", 0) == 0, "running jobs to finish")
        time.sleep(1.0)
        assert started_after(engine, paused) == []
        left = status_counts(engine)["ready"]
        assert left > 0

        # Resumed: every worker claims again (on PostgreSQL, woken by the
        # resume's notification, within a second).
        resumed = now()
        repo.resume(DESTINATION)
        wait_for(lambda: started_after(engine, resumed), "a start after the resume")
        first_start = (started_after(engine, resumed)[0] - resumed).total_seconds()
        if engine.dialect.name == "postgresql":
            assert first_start < 1.0, first_start
        else:
            assert first_start < settings["max_poll_interval"] + 1.0, first_start

        # A timed pause ends by itself.
        wait_for(lambda: status_counts(engine).get("ready", 0) < left - JOBS // 8, "progress")
        until = now() + timedelta(seconds=1.5)
        repo.pause(DESTINATION, until=until)
        paused = now()
        wait_for(lambda: started_after(engine, until), "a start after the pause's end")
        starts = started_after(engine, paused)
        assert starts[0] >= until, (starts[0], until)
        wait_for(lambda: status_counts(engine) == {"finished": JOBS}, "the drain to finish")
        reports = stopped()
    handled = [job_id for report in reports for job_id, _ in report["handled"]]
    assert len(handled) == len(set(handled)) == JOBS  # each once
    # Every worker took part after the resume: none was left asleep.
    for report in reports:
        assert max(at for _, at in report["handled"]) > resumed.timestamp()


@pytest.mark.slow
def test_a_handler_backing_off_with_a_pause_stops_every_worker_for_that_long(
    drain: tuple[str, sa.Engine, dict[str, float]],
):
    """The done-when of the back-off: one handler's `RetryAfter(2,
    pause=True)` pauses the destination, no worker of the four starts a
    job until the pause ends, and its job runs again afterwards with its
    attempts as they were."""
    url, engine, settings = drain
    repo = SqlAlchemyRepository(engine)
    upstream = "item-00100"  # about a quarter of the way through the queue
    with fleet(drain_backing_off, url, JOB_SECONDS, (upstream, 2.0), settings=settings) as stopped:
        wait_for(lambda: repo.controls(DESTINATION).paused_at is not None, "the pause")
        seen = now()  # the pause had committed by then
        controls = repo.controls(DESTINATION)
        assert controls.paused_until is not None
        assert controls.pause_reason is not None
        assert controls.pause_reason.startswith("backed off: 2 s; 503 from upstream (job ")
        wait_for(lambda: status_counts(engine) == {"finished": JOBS}, "the drain to finish")
        reports = stopped()
    # No job started (claimed) from the moment the pause was seen until it ended.
    starts = started_after(engine, seen)
    assert starts, "nothing ran after the pause"
    assert starts[0] >= controls.paused_until, (starts[0], controls.paused_until)
    # The job that backed off ran again afterwards, its attempts unchanged.
    (job,) = repo.list_jobs(DESTINATION, limit=1, after="item-00099")
    assert job.item_id == upstream
    assert (job.status, job.attempts, job.backoffs) == (JobStatus.FINISHED, 1, 1)
    assert job.started is not None
    assert job.started >= controls.paused_until
    calls = sorted(
        (at, attempts, backoffs)
        for report in reports
        for job_id, at, attempts, backoffs in report["handled"]
        if job_id == str(job.id)
    )
    assert [(attempts, backoffs) for _, attempts, backoffs in calls] == [(1, 0), (1, 1)]
    # Every worker came back after the pause, and each job ran once but that one.
    resumed = controls.paused_until.timestamp()
    for report in reports:
        assert max(at for _, at, _, _ in report["handled"]) > resumed
    handled = [job_id for report in reports for job_id, _, _, _ in report["handled"]]
    assert len(handled) == JOBS + 1
    assert len(set(handled)) == JOBS
    backed_off = sum(report["stats"].backed_off for report in reports)
    assert backed_off == 1


# --- the command line -------------------------------------------------------------


@pytest.fixture
def cli_url(sqlite_template: SqliteTemplate) -> str:
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    queued(engine, 3)
    engine.dispose()
    return url


def cli(url: str, *args: str) -> Result:
    runner = CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})
    return runner.invoke(app, ["--database-url", url, *args])


def test_pause_and_resume_from_the_command_line_and_what_stats_and_jobs_show(cli_url: str):
    result = cli(cli_url, "pause", DESTINATION, "--for", "1h", "--reason", "quota spent")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"'{DESTINATION}' is paused until 20")
    assert result.stdout.rstrip().endswith(
        ": quota spent; no cap on its running jobs; no start rate"
    )

    (row,) = json.loads(cli(cli_url, "stats", "--json").stdout)
    pause = row["pause"]
    assert pause["pause_reason"] == "quota spent"
    until = datetime.fromisoformat(pause["paused_until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    table = cli(cli_url, "stats").stdout
    assert "paused" in table
    assert "quota spent" in table
    assert "(paused until" in cli(cli_url, "jobs", DESTINATION).stdout

    resumed = json.loads(cli(cli_url, "resume", DESTINATION, "--json").stdout)
    assert resumed == {
        "destination": DESTINATION,
        "paused": False,
        "paused_at": None,
        "paused_until": None,
        "pause_reason": None,
        "max_running": None,
        "rate": None,
        "rate_burst": None,
    }
    (row,) = json.loads(cli(cli_url, "stats", "--json").stdout)
    assert row["pause"] is None
    assert "paused" not in cli(cli_url, "stats").stdout

    result = cli(cli_url, "pause", DESTINATION, "--until", "2999-01-01T00:00Z", "--json")
    assert json.loads(result.stdout)["paused_until"] == "2999-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--for", "1h", "--until", "2999-01-01T00:00Z"), "not both"),
        (("--until", "2999-01-01T00:00"), "no time zone"),
        (("--until", "tomorrow"), "not a time"),
        (("--until", "2000-01-01T00:00Z"), "not after now"),
        (("--for", "soon"), "not a duration"),
    ],
)
def test_a_bad_pause_is_one_error_line_and_pauses_nothing(
    cli_url: str, args: tuple[str, ...], needle: str
):
    result = cli(cli_url, "pause", DESTINATION, *args)
    assert result.exit_code != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    (row,) = json.loads(cli(cli_url, "stats", "--json").stdout)
    assert row["pause"] is None


def test_limit_from_the_command_line_and_what_stats_shows(cli_url: str):
    result = cli(cli_url, "limit", DESTINATION, "--max-running", "8")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (
        f"'{DESTINATION}' is not paused; at most 8 of its jobs running at once; no start rate"
    )
    (row,) = json.loads(cli(cli_url, "stats", "--json").stdout)
    assert (row["max_running"], row["pause"]) == (8, None)
    # One command the fleet obeys: the rate beside the cap, each kept unless given.
    both = json.loads(
        cli(cli_url, "limit", DESTINATION, "--rate", "20", "--burst", "5", "--json").stdout
    )
    assert (both["max_running"], both["rate"], both["rate_burst"]) == (8, 20.0, 5)
    (row,) = json.loads(cli(cli_url, "stats", "--json").stdout)
    assert (row["max_running"], row["rate"], row["rate_burst"]) == (8, 20.0, 5)
    assert "20 starts/s, 5 at once" in cli(cli_url, "stats").stdout
    for bad in ("0", "-1", "fast", "nan", "inf", "1e9"):
        result = cli(cli_url, "limit", DESTINATION, f"--rate={bad}")
        assert result.exit_code != 0
        assert "is not a number of job starts a second" in result.stderr, result.stderr
    for bad in ("0", "2.5", "10001"):
        result = cli(cli_url, "limit", DESTINATION, f"--burst={bad}")
        assert result.exit_code != 0
        assert "is not a whole number from 1 to" in result.stderr, result.stderr
    (row,) = json.loads(cli(cli_url, "stats", "--json").stdout)
    assert (row["rate"], row["rate_burst"]) == (20.0, 5)  # a refused one set nothing
    cleared = cli(cli_url, "limit", DESTINATION, "--rate", "none", "--burst", "none", "--json")
    assert (json.loads(cleared.stdout)["rate"], json.loads(cleared.stdout)["rate_burst"]) == (
        None,
        None,
    )
    assert "max running" in cli(cli_url, "stats").stdout
    removed = json.loads(
        cli(cli_url, "limit", DESTINATION, "--max-running", "none", "--json").stdout
    )
    assert removed["max_running"] is None
    (row,) = json.loads(cli(cli_url, "stats", "--json").stdout)
    assert row["max_running"] is None
    for bad in ("0", "-1", "2.5", "many", "2147483648"):
        result = cli(cli_url, "limit", DESTINATION, f"--max-running={bad}")
        assert result.exit_code != 0
        assert "is not a whole number from 1 to" in result.stderr, result.stderr
    nothing = cli(cli_url, "limit", DESTINATION)
    assert nothing.exit_code != 0
    assert "give --max-running, --rate or --burst" in nothing.stderr


def test_pausing_an_unknown_destination_names_the_known_ones(cli_url: str):
    result = cli(cli_url, "pause", "langauge-detection")
    assert result.exit_code == 1
    assert f"known destinations: {DESTINATION}" in result.stderr


# --- a cap on running jobs, in processes -----------------------------------------

CAP, CAPPED_JOBS, CAPPED_JOB_SECONDS = 3, 60, 0.1


@pytest.mark.slow
def test_four_processes_of_four_threads_never_run_more_than_the_cap(
    drain: tuple[str, sa.Engine, dict[str, float]],
):
    url, engine, settings = drain
    repo = SqlAlchemyRepository(engine)
    ids = {job.id for job in repo.list_jobs(DESTINATION, limit=CAPPED_JOBS)}
    # Only CAPPED_JOBS of the fixture's queue: the rest are cancelled out of
    # the way as skipped (by hand: this test is about the cap).
    ft = tables_for(engine.dialect.name).fulltext
    with engine.begin() as connection:
        connection.execute(
            sa.update(ft).where(ft.c.id.not_in(ids)).values(status="skipped", finished=now())
        )
    repo.limit(DESTINATION, max_running=CAP)
    in_flight, most = SPAWN.Value("i", 0), SPAWN.Value("i", 0)
    # A short poll: at the cap a worker looks again every poll_interval.
    worker_settings = {**settings, "concurrency": 4, "poll_interval": 0.05}
    sampled: list[int] = []
    args = (url, CAPPED_JOB_SECONDS, in_flight, most)
    with fleet(drain_counting, *args, settings=worker_settings) as stopped:
        began = time.monotonic()
        while True:
            counts = status_counts(engine)
            sampled.append(counts.get("running", 0))
            if counts.get("finished", 0) == CAPPED_JOBS:
                break
            assert time.monotonic() - began < PATIENCE_SECONDS, counts
            time.sleep(0.005)
        reports = stopped()
    assert sum(report["stats"].finished for report in reports) == CAPPED_JOBS
    # Never above the cap, seen from the database and by the handlers; and
    # the cap was reached (the test would pass on a fleet that ran one job).
    assert max(sampled) <= CAP, max(sampled)
    assert most.value == CAP


def test_a_worker_at_the_cap_waits_a_poll_at_a_time_and_says_why():
    repo = memory_queue(3)
    repo.limit(DESTINATION, max_running=1)
    release = threading.Event()
    waits: list[tuple[float, WaitReason | None]] = []
    worker: Worker

    def handler(job: FullText) -> None:
        del job
        release.wait(30)

    def wait(event: threading.Event, seconds: float) -> bool:
        waiting = worker.waiting
        waits.append((seconds, None if waiting is None else waiting.reason))
        if len(waits) >= 3:
            release.set()  # the running job ends: room under the cap
        return event.wait(0.01)

    worker = Worker(
        repo, DESTINATION, handler, concurrency=2, poll_interval=0.5, listen=False, wait=wait
    )
    stats = run_bounded(worker)
    assert stats.finished == 3
    at_cap = [seconds for seconds, reason in waits if reason is WaitReason.CAPPED]
    # A poll at a time: no backing off while the cap holds the jobs back.
    assert at_cap
    assert set(at_cap) == {0.5}
