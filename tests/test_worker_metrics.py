"""A worker's Prometheus metrics: one counter per `WorkerStats` field and a
handler-duration histogram, labelled with the destination; served over
HTTP by `WorkerMetrics.serving` and by `work --metrics-port`."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import fetch
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import fulltext_jobs
from fulltext_jobs import FullText, InMemoryRepository, SkipJob, SqlAlchemyRepository, Worker
from fulltext_jobs.metrics import WORKER_COUNTERS, WorkerMetrics

TESTS = Path(__file__).resolve().parent
DEST = "word-count"


def handler(job: FullText) -> None:
    if "skip" in job.item_id:
        raise SkipJob("no text")
    if "fail" in job.item_id:
        raise RuntimeError("boom")
    time.sleep(0.02)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"destination": DEST, **labels})


def test_every_worker_stat_has_a_counter():
    fields = dataclasses.fields(fulltext_jobs.WorkerStats)
    assert set(WORKER_COUNTERS) == {field.name for field in fields}


def test_the_series_exist_before_any_job():
    registry = CollectorRegistry()
    Worker(InMemoryRepository(), DEST, handler, metrics=WorkerMetrics(registry))
    for name in WORKER_COUNTERS:
        assert value(registry, f"fulltext_jobs_worker_{name}_total") == 0
    assert value(registry, "fulltext_jobs_worker_handler_seconds_count") == 0


def test_a_worker_counts_what_its_stats_count():
    registry = CollectorRegistry()
    repo = InMemoryRepository(items=["a", "b-skip", "c-fail", "d", "e"])
    worker = Worker(
        repo,
        DEST,
        handler,
        metrics=WorkerMetrics(registry),
        concurrency=2,
        poll_interval=0.01,
        produce=True,
        max_attempts=1,
    )
    stats = worker.run(until_idle=True, install_signal_handlers=False)
    assert (stats.claimed, stats.finished, stats.failed, stats.skipped) == (5, 3, 1, 1)
    for name in WORKER_COUNTERS:
        assert value(registry, f"fulltext_jobs_worker_{name}_total") == getattr(stats, name), name
    assert value(registry, "fulltext_jobs_worker_handler_seconds_count") == 5
    total = value(registry, "fulltext_jobs_worker_handler_seconds_sum")
    assert total is not None
    assert total >= 3 * 0.02
    # The three that slept 20 ms fall above the 10 ms bucket.
    fast = value(registry, "fulltext_jobs_worker_handler_seconds_bucket", le="0.01")
    assert fast is not None
    assert fast <= 2


def test_metrics_are_served_in_prometheus_text_format():
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.count(DEST, "claimed", 4)
    metrics.count(DEST, "not-a-counter", 1)
    with metrics.serving(0) as port:
        page = fetch(f"http://127.0.0.1:{port}/metrics")
    assert page.status == 200
    samples = {
        (sample.name, sample.labels.get("destination")): sample.value
        for family in text_string_to_metric_families(page.text)
        for sample in family.samples
    }
    assert samples[("fulltext_jobs_worker_claimed_total", DEST)] == 4


@pytest.mark.slow
def test_work_serves_its_metrics_while_it_runs(sqlite_template):
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    repo = SqlAlchemyRepository(engine)
    repo.add_items([f"item-{n}" for n in range(20)])
    repo.enqueue_unqueued(DEST)
    engine.dispose()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "fulltext_jobs", "--database-url", url, "work", DEST),
            *("--handler", "cli_handlers:slow", "--metrics-port", "0", "--until-idle", "--json"),
        ],
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "metrics of word-count on http://127.0.0.1:" in line, line
        address = line.rsplit(" on ", 1)[1].strip()
        page = fetch(address)
        families = {family.name for family in text_string_to_metric_families(page.text)}
        assert "fulltext_jobs_worker_claimed" in families
        assert "fulltext_jobs_worker_handler_seconds" in families
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert '"finished": 20' in out


@pytest.mark.parametrize("in_transaction", [False, True], ids=["leased", "held"])
def test_the_wait_of_each_claimed_job_is_observed_from_its_ready_time(in_transaction: bool):
    start = datetime(2026, 12, 1, 12, tzinfo=UTC)
    now = [start]
    registry = CollectorRegistry()
    repo = InMemoryRepository(clock=lambda: now[0])
    # Ready 90 s and 0.5 s before the claims (one given back for later: it
    # waits from its not_before).
    repo.save_many(
        [
            FullText.new("a", DEST, now=start - timedelta(seconds=90)),
            FullText.new("b", DEST, now=start - timedelta(seconds=0.5)),
        ]
    )
    worker = Worker(
        repo,
        DEST,
        lambda _job: None,
        metrics=WorkerMetrics(registry),
        in_transaction=in_transaction,
        batch_size=2,
        clock=lambda: now[0],
    )
    assert worker.lag() == timedelta(seconds=90)
    worker.run(until_idle=True, install_signal_handlers=False)
    assert worker.lag() is None
    assert value(registry, "fulltext_jobs_worker_wait_seconds_count") == 2
    assert value(registry, "fulltext_jobs_worker_wait_seconds_sum") == 90.5
    assert value(registry, "fulltext_jobs_worker_wait_seconds_bucket", le="1.0") == 1
    assert value(registry, "fulltext_jobs_worker_wait_seconds_bucket", le="60.0") == 1
    assert value(registry, "fulltext_jobs_worker_wait_seconds_bucket", le="300.0") == 2


def test_an_observer_without_observe_wait_still_serves():
    class Counting:
        def __init__(self) -> None:
            self.counts: dict[str, int] = {}

        def declare(self, destination: str) -> None:
            pass

        def count(self, destination: str, name: str, n: int = 1) -> None:  # noqa: ARG002 - the protocol's
            self.counts[name] = self.counts.get(name, 0) + n

        def observe_handler(self, destination: str, seconds: float) -> None:
            pass

    observer = Counting()
    repo = InMemoryRepository(items=["a"])
    repo.enqueue_unqueued(DEST)
    Worker(repo, DEST, lambda _job: None, metrics=observer).run(
        until_idle=True, install_signal_handlers=False
    )
    assert observer.counts["claimed"] == 1
