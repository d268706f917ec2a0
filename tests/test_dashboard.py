"""The dashboard: its reads (`fulltext_jobs.sql.overview`) on SQLite and
PostgreSQL, the application served by uvicorn in a thread (the page, the
jobs pages, `/metrics` parsed by prometheus_client's own parser), and
`fulltext-jobs dashboard` as a process on a demo database.

The page in a real browser is `test_dashboard_browser.py`.
"""

from __future__ import annotations

import html
import re
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import ENTRY_POINT, Page, dashboard_process, fetch, served
from prometheus_client.parser import text_string_to_metric_families

import fulltext_jobs
from fulltext_jobs import AuditCheck, JobStatus, SqlAlchemyRepository
from fulltext_jobs.dashboard import Snapshots, create_app
from fulltext_jobs.errors import InvalidInput, SchemaNotMigrated
from fulltext_jobs.sql.overview import (
    RATE_MIN_SECONDS,
    Rate,
    RetryWait,
    list_jobs,
    rate_of,
    read_only_engine,
    read_overview,
)
from fulltext_jobs.sql.schema import tables_for

NOW = datetime(2026, 11, 28, 12, 30, 20, tzinfo=UTC)
CLAIMED = NOW - timedelta(minutes=5)
DEST = "language-detection"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_template").fresh_url())
    engine: sa.Engine = request.getfixturevalue("clean_postgres_engine")
    return engine.url.render_as_string(hide_password=False)


class Ledger:
    """A ledger at `NOW`: for `DEST`, three jobs finished (20 min, 2 min and
    10 s ago), one failed 5 s ago, one running since 5 min ago, one ready,
    and one item unqueued; and one finished job of `other`."""

    def __init__(self, url: str) -> None:
        self.engine = fulltext_jobs.create_engine(url)
        self.repo = SqlAlchemyRepository(self.engine, clock=lambda: CLAIMED)
        self.repo.add_items([f"item-{n}" for n in range(1, 7)])
        self.repo.enqueue_unqueued(DEST)
        self.finished = [self.end(ago) for ago in (1200, 120, 10)]
        self.failed = self.end(5, error="RuntimeError: boom <b>")
        self.running = self.repo.get_ready_job(DEST)
        self.repo.add_items(["item-7"])
        other = self.repo.create_job_for_unqueued("other")
        other.start(CLAIMED)
        other.finish(NOW)
        self.repo.save_fulltext(other)

    def end(self, seconds_ago: int, error: str | None = None) -> fulltext_jobs.FullText:
        job = self.repo.get_ready_job(DEST)
        if error is None:
            job.finish(NOW - timedelta(seconds=seconds_ago))
        else:
            job.fail(NOW - timedelta(seconds=seconds_ago), error=error)
        self.repo.save_fulltext(job)
        return job


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    made = Ledger(url)
    yield made
    made.engine.dispose()


@pytest.fixture
def reader(url: str, ledger: Ledger) -> Iterator[sa.Engine]:  # noqa: ARG001 - filled first
    engine = read_only_engine(url)
    yield engine
    engine.dispose()


def test_the_overview_reads_each_destination(ledger: Ledger, reader: sa.Engine):
    overview = read_overview(reader, now=NOW, minutes=15, failures=5, unqueued=True)
    assert overview.taken == NOW
    assert [row.destination for row in overview.destinations] == [DEST, "other"]
    row = overview.destinations[0]
    assert dict(row.stats.counts) == {
        JobStatus.READY: 1,
        JobStatus.RUNNING: 1,
        JobStatus.FINISHED: 3,
        JobStatus.FAILED: 1,
        JobStatus.SKIPPED: 0,
    }
    assert row.stats.unqueued == 1
    assert (row.done, row.total) == (3, 7)
    # 15 minutes ending with the current one; the job of 20 minutes ago is out.
    assert [m.start for m in row.minutes] == [
        datetime(2026, 11, 28, 12, 16, tzinfo=UTC) + timedelta(minutes=n) for n in range(15)
    ]
    busy = {m.start.minute: (m.done, m.failed) for m in row.minutes if m.done or m.failed}
    assert busy == {28: (1, 0), 30: (1, 1)}
    # The first job to end in the window (2 min ago) opens the span: the two
    # after it make one a minute.
    assert row.rate == Rate(
        per_minute=pytest.approx(1.0), since=NOW - timedelta(minutes=2), ended=3
    )
    assert row.per_minute == pytest.approx(1.0)
    assert row.waiting_for_retry == RetryWait()
    assert row.due == 1
    assert row.oldest_running is not None
    assert row.oldest_running.job.id == ledger.running.id
    assert row.oldest_running.job.started == CLAIMED
    assert row.next_ready is not None
    assert row.next_ready.job.status is JobStatus.READY
    assert [failure.job.id for failure in row.failures] == [ledger.failed.id]
    assert row.failures[0].job.last_error == "RuntimeError: boom <b>"
    assert overview.destinations[1].minutes[-1].done == 1


def test_the_overview_counts_no_unqueued_items_unless_asked(reader: sa.Engine):
    # Counting them reads every item: a dashboard refreshing every second
    # must not do that on a ledger of millions by default.
    row = read_overview(reader, now=NOW).destinations[0]
    assert row.stats.unqueued is None
    assert row.stats.jobs == 6
    assert row.total == 6
    page = create_app(Snapshots(reader, clock=lambda: NOW), refresh=2)
    with served(page) as base:
        client = Client(base)
        assert 'data-status="unqueued"><span title="not counted' in client.get("/").text
        values = metric_values(client.get("/metrics").text)
    assert ("fulltext_jobs_unqueued", (("destination", DEST),)) not in values
    assert values[("fulltext_jobs_jobs", (("destination", DEST), ("status", "ready")))] == 1


def test_jobs_are_listed_by_status_a_page_at_a_time(ledger: Ledger, reader: sa.Engine):
    first = list_jobs(reader, DEST, JobStatus.FINISHED, limit=2)
    assert [row.job.id for row in first] == [job.id for job in reversed(ledger.finished)][:2]
    assert first[-1].seq is not None
    rest = list_jobs(reader, DEST, JobStatus.FINISHED, before=first[-1].seq, limit=2)
    assert [row.job.id for row in rest] == [ledger.finished[0].id]
    assert list_jobs(reader, "nobody", JobStatus.FAILED) == []
    with pytest.raises(InvalidInput):
        list_jobs(reader, DEST, JobStatus.FAILED, limit=0)


def test_the_read_only_engine_refuses_writes(ledger: Ledger, reader: sa.Engine):  # noqa: ARG001
    fulltext = tables_for(reader.dialect.name).fulltext
    with reader.connect() as connection, pytest.raises(sa.exc.DBAPIError):
        connection.execute(sa.delete(fulltext))
    assert read_overview(reader).destinations[0].stats.jobs == 6


def test_an_unmigrated_database_is_named(tmp_path: Path):
    engine = read_only_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with pytest.raises(SchemaNotMigrated, match="no fulltext-jobs schema"):
        read_overview(engine)
    engine.dispose()


@pytest.fixture
def client(ledger: Ledger, reader: sa.Engine) -> Iterator[Client]:  # noqa: ARG001
    snapshots = Snapshots(reader, clock=lambda: NOW, unqueued=True)
    with served(create_app(snapshots, refresh=2, title="the ledger")) as base:
        yield Client(base)


class Client:
    """GET requests to the served app."""

    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, params: dict[str, str] | None = None) -> Page:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return fetch(self.base + path.lstrip("/") + query)


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_page_shows_every_destination(client: Client, ledger: Ledger):
    response = client.get("/")
    assert response.status == 200
    page = response.text
    assert '<section class="destination" data-destination="language-detection">' in page
    assert 'data-destination="other"' in page
    assert 'data-refresh="2"' in page
    assert "the ledger" in page
    assert ledger.running.item_id in page
    # The failure's error, escaped.
    assert "RuntimeError: boom &lt;b&gt;" in page
    assert "boom <b>" not in page
    assert 'href="jobs?destination=language-detection&amp;status=failed"' in page
    # No external asset: nothing is loaded from anywhere but here.
    assert "http://" not in page
    assert "https://" not in page


def test_the_page_and_metrics_show_a_paused_and_capped_destination(
    ledger: Ledger, reader: sa.Engine
):
    until = NOW + timedelta(hours=1)
    ledger.repo.pause(DEST, until=until, reason="<b>upgrade</b>")
    ledger.repo.limit(DEST, max_running=8, rate=2.5)
    snapshots = Snapshots(reader, clock=lambda: NOW)
    with served(create_app(snapshots, refresh=2, title="the ledger")) as base:
        client = Client(base)
        page = client.get("/").text
        values = metric_values(client.get("/metrics").text)
    assert "Paused until 2026-11-28 13:30:20 UTC: &lt;b&gt;upgrade&lt;/b&gt;" in page
    assert "At most 8 running at once." in page
    assert "At most 2.5 starts a second." in page
    assert values[("fulltext_jobs_max_running", (("destination", DEST),))] == 8
    assert values[("fulltext_jobs_rate_limit", (("destination", DEST),))] == 2.5
    assert ("fulltext_jobs_rate_limit", (("destination", "other"),)) not in values
    assert ("fulltext_jobs_max_running", (("destination", "other"),)) not in values
    assert page.count('class="paused"') == 1  # not "other"
    assert values[("fulltext_jobs_paused", (("destination", DEST),))] == 1
    assert values[("fulltext_jobs_paused", (("destination", "other"),))] == 0
    assert (
        values[("fulltext_jobs_paused_until_timestamp_seconds", (("destination", DEST),))]
        == until.timestamp()
    )
    assert ("fulltext_jobs_paused_until_timestamp_seconds", (("destination", "other"),)) not in (
        values
    )


def test_the_overview_fragment_is_the_pages_changing_part(client: Client):
    response = client.get("/overview")
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    assert "<html" not in response.text
    assert 'data-destination="language-detection"' in response.text


def test_the_jobs_page_lists_a_status(client: Client, ledger: Ledger):
    response = client.get("/jobs", params={"destination": DEST, "status": "failed"})
    assert response.status == 200
    assert ledger.failed.item_id in response.text
    assert ledger.finished[0].item_id not in response.text
    assert client.get("/jobs", params={"destination": DEST, "status": "nope"}).status == 400
    assert client.get("/jobs", params={"destination": "", "status": "ready"}).status == 400


def test_metrics_parse_with_prometheus_clients_parser(client: Client):
    response = client.get("/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = metric_values(response.text)
    assert values[("fulltext_jobs_ledger_up", ())] == 1
    jobs = (("destination", DEST), ("status", "finished"))
    assert values[("fulltext_jobs_jobs", jobs)] == 3
    assert values[("fulltext_jobs_jobs", (("destination", DEST), ("status", "ready")))] == 1
    assert values[("fulltext_jobs_unqueued", (("destination", DEST),))] == 1
    assert values[("fulltext_jobs_oldest_running_seconds", (("destination", DEST),))] == 300
    # Its ready job was enqueued 5 minutes before NOW.
    assert values[("fulltext_jobs_oldest_ready_seconds", (("destination", DEST),))] == 300
    assert values[("fulltext_jobs_oldest_running_seconds", (("destination", "other"),))] == 0


def test_the_lag_counts_from_when_the_oldest_due_job_became_ready(
    ledger: Ledger, reader: sa.Engine
):
    now = [NOW]
    snapshots = Snapshots(reader, clock=lambda: now[0], max_age=0)
    # Enqueued at CLAIMED, 5 minutes before NOW: exact, however long the
    # dashboard has been up.
    assert snapshots.read().ready_waiting == {DEST: 300.0}
    now[0] += timedelta(seconds=30, microseconds=250)
    assert snapshots.read().ready_waiting == {DEST: 330.00025}
    # Claimed: nothing waits any more.
    ledger.repo.get_ready_job(DEST)
    now[0] += timedelta(seconds=30)
    assert snapshots.read().ready_waiting == {}


def test_an_unreadable_ledger_is_reported_not_raised(tmp_path: Path):
    engine = read_only_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with served(create_app(Snapshots(engine), refresh=1)) as base:
        test_client = Client(base)
        page = test_client.get("/")
        assert page.status == 503
        assert "Cannot read the ledger" in page.text
        assert "no fulltext-jobs schema" in page.text
        values = metric_values(test_client.get("/metrics").text)
        assert values == {("fulltext_jobs_ledger_up", ()): 0}
    engine.dispose()


def test_a_bad_refresh_is_refused(reader: sa.Engine):
    with pytest.raises(InvalidInput):
        create_app(Snapshots(reader), refresh=0)


@pytest.mark.slow
def test_the_command_serves_the_demo_database(tmp_path: Path):
    """After `fulltext-jobs demo` in a folder, `fulltext-jobs dashboard
    --port P --database-url <the demo's file>` there serves the page naming both
    destinations, and `/metrics` has the demo's finished count."""
    done = subprocess.run(
        [str(ENTRY_POINT), "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    demo_database = "sqlite:///fulltext-jobs-demo.sqlite3"
    with dashboard_process(tmp_path, "--database-url", demo_database) as (process, base):
        with urllib.request.urlopen(base, timeout=10) as response:  # noqa: S310 - our own server
            page = response.read().decode()
        assert 'data-destination="demo-word-count"' in page
        assert 'data-destination="demo-language-detection"' in page
        with urllib.request.urlopen(base + "metrics", timeout=10) as response:  # noqa: S310
            metrics = response.read().decode()
        assert 'fulltext_jobs_jobs{destination="demo-word-count",status="finished"} 192' in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


@pytest.mark.slow
def test_the_command_refuses_a_missing_database(tmp_path: Path):
    done = subprocess.run(
        [str(ENTRY_POINT), "dashboard", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: no database at fulltext-jobs.sqlite3")
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "fulltext-jobs.sqlite3").exists()


@pytest.mark.slow
def test_a_port_in_use_is_one_error_line(sqlite_template):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        done = subprocess.run(
            [
                *(str(ENTRY_POINT), "--database-url", sqlite_template.fresh_url()),
                *("dashboard", "--port", str(port)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        taken.close()
    assert done.returncode == 1
    assert done.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_failed_jobs_page_by_enqueue_order_and_the_overview_shows_the_latest(url: str):
    """The jobs pages are cut by `seq`, whatever the status; the overview's
    latest failures are by time of failure."""
    engine = fulltext_jobs.create_engine(url)
    repo = SqlAlchemyRepository(engine, clock=lambda: CLAIMED)
    repo.add_items(["a", "b", "c"])
    repo.enqueue_unqueued(DEST)
    jobs = [repo.get_ready_job(DEST) for _ in range(3)]
    # Enqueued a, b, c; failed in the order b, c, a.
    for job, seconds_ago in zip(jobs, (10, 30, 20), strict=True):
        job.fail(NOW - timedelta(seconds=seconds_ago), error="boom")
        repo.save_fulltext(job)
    reader = read_only_engine(url)
    try:
        pages = [list_jobs(reader, DEST, JobStatus.FAILED, limit=2)]
        pages.append(list_jobs(reader, DEST, JobStatus.FAILED, before=pages[0][-1].seq, limit=2))
        assert [[row.job.item_id for row in page] for page in pages] == [["c", "b"], ["a"]]
        [row] = read_overview(reader, now=NOW).destinations
        assert [failure.job.item_id for failure in row.failures] == ["a", "c", "b"]
    finally:
        reader.dispose()
        engine.dispose()


def test_the_overview_counts_stuck_running_jobs(ledger: Ledger, reader: sa.Engine):
    """The audit's two cheap checks: none on a healthy ledger; then the
    running job as the Go original leaves it (no lease), and another whose
    lease ran out long ago, each counted, on the page too."""
    row = read_overview(reader, now=NOW).destinations[0]
    assert row.stuck == {}
    fulltext = tables_for(ledger.engine.dialect.name).fulltext
    with ledger.engine.begin() as connection:
        connection.execute(
            sa.update(fulltext)
            .where(fulltext.c.id == ledger.running.id)
            .values(claim_token=None, lease_expires=None)
        )
    stale = ledger.repo.get_ready_job(DEST)
    with ledger.engine.begin() as connection:
        connection.execute(
            sa.update(fulltext)
            .where(fulltext.c.id == stale.id)
            .values(lease_expires=NOW - timedelta(hours=1))
        )
    row = read_overview(reader, now=NOW).destinations[0]
    assert row.stuck == {
        AuditCheck.RUNNING_WITHOUT_LEASE: 1,
        AuditCheck.LEASE_EXPIRED_UNRESCUED: 1,
    }
    assert read_overview(reader, now=NOW).destinations[1].stuck == {}
    snapshots = Snapshots(reader, clock=lambda: NOW)
    with served(create_app(snapshots, refresh=2, title="the ledger")) as base:
        page = Client(base).get("/").text
        metrics = Client(base).get("/metrics").text
    assert '<span data-check="running_without_lease">1 running without a lease</span>' in page
    assert 'data-check="lease_expired_unrescued"' in page
    families = text_string_to_metric_families(metrics)
    stuck = {
        (sample.labels["destination"], sample.labels["check"]): sample.value
        for family in families
        if family.name == "fulltext_jobs_stuck"
        for sample in family.samples
    }
    assert stuck == {
        (DEST, "running_without_lease"): 1,
        (DEST, "lease_expired_unrescued"): 1,
        ("other", "running_without_lease"): 0,
        ("other", "lease_expired_unrescued"): 0,
    }


def visible(page: str) -> str:
    """The page's text without its tags, as a reader sees it, near enough:
    the cells of a table, a list or a heading apart."""
    spaced = re.sub(r"</(dt|dd|td|th|h\d|p|tr|div)>", " ", page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", spaced)).split())


class Retries:
    """A ledger at `NOW` whose five ready jobs of `DEST` are: r1, given back
    to retry in 42 s after one attempt; r2, in 5 minutes after two; r3,
    given back to retry 20 s ago (due again); r4 and r5 never claimed."""

    def __init__(self, url: str) -> None:
        self.engine = fulltext_jobs.create_engine(url)
        self.repo = SqlAlchemyRepository(self.engine, clock=lambda: CLAIMED)
        self.repo.add_items([f"r{n}" for n in range(1, 6)])
        self.repo.enqueue_unqueued(DEST)
        self.release(NOW + timedelta(seconds=42), "TimeoutError: r1 took too long")
        self.release(None, "HTTPError: 503 from r2's server")
        self.release(NOW + timedelta(minutes=5), "HTTPError: 503 from r2's server <again>")
        self.release(NOW - timedelta(seconds=20), "ConnectionError: r3")

    def release(self, due: datetime | None, error: str) -> None:
        job = self.repo.get_ready_job(DEST)
        job.release(CLAIMED, not_before=due, error=error)
        self.repo.save_fulltext(job)


@pytest.fixture
def retries(url: str) -> Iterator[Retries]:
    made = Retries(url)
    yield made
    made.engine.dispose()


def test_jobs_waiting_for_a_retry_are_told_apart_from_due_ones(url: str, retries: Retries):  # noqa: ARG001 - filled first
    reader = read_only_engine(url)
    try:
        [row] = read_overview(reader, now=NOW, failures=5).destinations
        assert row.count(JobStatus.READY) == 5
        assert row.due == 3
        retry = row.waiting_for_retry
        assert retry.count == 2
        assert retry.next_due == NOW + timedelta(seconds=42)
        # The latest due first, each with its error and attempts.
        assert [(r.job.item_id, r.job.attempts, r.job.last_error) for r in retry.latest] == [
            ("r2", 2, "HTTPError: 503 from r2's server <again>"),
            ("r1", 1, "TimeoutError: r1 took too long"),
        ]
        # r1 and r2 come first by seq but are not due: r3, due since 20 s
        # ago, is the one a claim would take.
        assert row.next_ready is not None
        assert row.next_ready.job.item_id == "r3"
        assert row.failures == ()

        # A minute later r1 is due again, and next to be claimed.
        [later] = read_overview(reader, now=NOW + timedelta(minutes=1)).destinations
        assert later.waiting_for_retry.count == 1
        assert later.waiting_for_retry.next_due == NOW + timedelta(minutes=5)
        assert [r.job.item_id for r in later.waiting_for_retry.latest] == ["r2"]
        assert later.due == 4
        assert later.next_ready is not None
        assert later.next_ready.job.item_id == "r1"

        # A limit of one lists the latest only.
        [one] = read_overview(reader, now=NOW, failures=1).destinations
        assert [r.job.item_id for r in one.waiting_for_retry.latest] == ["r2"]
    finally:
        reader.dispose()


def test_the_page_and_metrics_show_the_jobs_waiting_for_a_retry(url: str, retries: Retries):  # noqa: ARG001 - filled first
    reader = read_only_engine(url)
    try:
        snapshots = Snapshots(reader, clock=lambda: NOW)
        with served(create_app(snapshots, refresh=2)) as base:
            client = Client(base)
            page = client.get("/").text
            values = metric_values(client.get("/metrics").text)
    finally:
        reader.dispose()
    text = visible(page)
    assert "ready 5 (3 due, 2 waiting for retry, next in 42s)" in text
    # r3 is next by enqueue order; r4, never claimed, has waited longest.
    assert "next due r3 lag 5m 0s (the oldest due job's wait)" in text
    assert "Waiting for retry (2, next in 42s; all ready jobs)" in text
    assert "in 5m 0s r2 2 HTTPError: 503 from r2's server <again>" in text
    assert "in 42s r1 1 TimeoutError: r1 took too long" in text
    assert "<again>" not in page  # escaped
    assert "Latest failures None." in text
    retry_metric = ("fulltext_jobs_waiting_for_retry", (("destination", DEST),))
    assert values[retry_metric] == 2
    assert values[("fulltext_jobs_oldest_ready_seconds", (("destination", DEST),))] == 300
    assert values[("fulltext_jobs_jobs", (("destination", DEST), ("status", "ready")))] == 5


def test_a_ledger_with_nothing_waiting_for_a_retry_says_so(client: Client):
    text = visible(client.get("/").text)
    assert "ready 1 (all due)" in text
    assert "Waiting for retry None." in text
    values = metric_values(client.get("/metrics").text)
    assert values[("fulltext_jobs_waiting_for_retry", (("destination", DEST),))] == 0


def test_the_rate_of_a_worker_that_just_started_is_over_the_time_it_has_run(url: str):
    """A worker that started 30 s ago and has ended 60 jobs, one every half
    second, does 120 a minute: not 60 over the 15 minutes of the window."""
    engine = fulltext_jobs.create_engine(url)
    repo = SqlAlchemyRepository(engine, clock=lambda: NOW - timedelta(seconds=30))
    repo.add_items([f"job-{n:02}" for n in range(60)])
    repo.enqueue_unqueued(DEST)
    for n in range(1, 61):
        job = repo.get_ready_job(DEST)
        job.finish(NOW - timedelta(seconds=30) + timedelta(seconds=0.5 * n))
        repo.save_fulltext(job)
    reader = read_only_engine(url)
    try:
        [row] = read_overview(reader, now=NOW, minutes=15).destinations
        assert row.rate.ended == 60
        assert row.rate.since == NOW - timedelta(seconds=29.5)
        assert row.per_minute == pytest.approx(120)
        with served(create_app(Snapshots(reader, clock=lambda: NOW), refresh=2)) as base:
            text = visible(Client(base).get("/").text)
        assert "120.0 jobs/min over the last 29s" in text
    finally:
        reader.dispose()
        engine.dispose()


START = NOW.replace(second=0) - timedelta(minutes=14)


@pytest.mark.parametrize(
    ("ended", "first_ended", "now", "expected"),
    [
        # Nothing ended all window: a rate of 0 over the window.
        (0, None, NOW, Rate(0.0, START, 0)),
        # One end is no interval: no rate.
        (1, NOW - timedelta(minutes=7), NOW, Rate(None, NOW - timedelta(minutes=7), 1)),
        # A worker a few seconds old: no rate yet, however many it ended.
        (
            30,
            NOW - timedelta(seconds=RATE_MIN_SECONDS - 1),
            NOW,
            Rate(None, NOW - timedelta(seconds=RATE_MIN_SECONDS - 1), 30),
        ),
        # The worker just started: 60 jobs over the 30 s since the first.
        (61, NOW - timedelta(seconds=30), NOW, Rate(120.0, NOW - timedelta(seconds=30), 61)),
        # A worker that ran all window: about the count over the window.
        (151, START, START + timedelta(minutes=15), Rate(10.0, START, 151)),
    ],
)
def test_the_rate_is_counted_from_the_first_end_and_never_guessed(
    ended: int, first_ended: datetime | None, now: datetime, expected: Rate
):
    assert rate_of(ended, first_ended, START, now) == expected


def test_the_page_and_metrics_show_a_followers_upstreams(ledger: Ledger, reader: sa.Engine):
    # DEST has one ready job and one running: two to come for its follower,
    # which has no job yet and is shown all the same.
    ledger.repo.depend("summaries", on=DEST, statuses=["finished", "skipped"])
    snapshots = Snapshots(reader, clock=lambda: NOW)
    with served(create_app(snapshots, refresh=2, title="the ledger")) as base:
        client = Client(base)
        page = client.get("/").text
        values = metric_values(client.get("/metrics").text)
    assert 'data-destination="summaries"' in page
    assert f"Follows {DEST} (finished/skipped): 2 to come." in page
    assert values[("fulltext_jobs_upstream_to_come", (("destination", "summaries"),))] == 2
    assert ("fulltext_jobs_upstream_to_come", (("destination", DEST),)) not in values
