"""OpenTelemetry (`Worker(telemetry=Telemetry(...))`, the `otel` extra): a
span per handler run with its claim and its save, errors recorded on it,
the worker's counters and handler durations as metrics, and the queue's
lag as a gauge; read back through the SDK's in-memory exporter and
reader."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from harness import FakeClock, memory_backend, sql_backend
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fulltext_jobs import (
    FailJob,
    FullText,
    InvalidInput,
    Repository,
    RetryAfter,
    RetryPolicy,
    SkipJob,
    Worker,
)
from fulltext_jobs.metrics import WORKER_COUNTERS
from fulltext_jobs.telemetry import Telemetry, observe_ledger

TESTS = Path(__file__).resolve().parent
DEST = "word-count"
#: Two attempts, 10 ms apart: a job whose handler raises is retried once.
RETRY = RetryPolicy(
    max_attempts=2,
    base_delay=timedelta(milliseconds=10),
    max_delay=timedelta(milliseconds=10),
    jitter=0,
)


class Collected:
    """A tracer provider and a meter provider that keep what they get."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(self.tracer_provider, self.meter_provider)

    def spans(self, operation: str) -> list[ReadableSpan]:
        return [
            span
            for span in self.exporter.get_finished_spans()
            if span.name == f"{operation} {DEST}"
        ]

    def metrics(self) -> dict[str, dict[str, float]]:
        """Each metric's points by destination: a sum's value, a
        histogram's count."""
        found: dict[str, dict[str, float]] = {}
        data = self.reader.get_metrics_data()
        for resource in () if data is None else data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        value = point.count if value is None else value  # type: ignore[attr-defined]
                        destination = str(point.attributes["messaging.destination.name"])
                        found.setdefault(metric.name, {})[destination] = value
        return found

    def shut_down(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def collected() -> Iterator[Collected]:
    found = Collected()
    yield found
    found.shut_down()


def enqueue(repo: Repository, *items: str) -> dict[str, str]:
    """Ready jobs for `items`; their ids by item."""
    ids = {}
    for item in items:
        job = FullText.new(item, DEST)
        repo.save_fulltext(job)
        ids[item] = str(job.id)
    return ids


def handler(job: FullText) -> None:
    if "skip" in job.item_id:
        raise SkipJob("no text")
    if "fail" in job.item_id:
        raise RuntimeError("boom")
    if "give-up" in job.item_id:
        raise FailJob("not found")


def run(repo: Repository, telemetry: Telemetry, **settings: object) -> None:
    worker = Worker(
        repo, DEST, handler, telemetry=telemetry, retry=RETRY, poll_interval=0.01, **settings
    )
    worker.run(until_idle=True, install_signal_handlers=False)


def children(collected: Collected, parent: ReadableSpan) -> list[str]:
    assert parent.context is not None
    return sorted(
        span.name
        for span in collected.exporter.get_finished_spans()
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    )


def by_item(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {str(span.attributes["fulltext_jobs.item.id"]): span for span in spans}  # type: ignore[index]


def by_attempt(spans: list[ReadableSpan], attempt: int) -> dict[str, ReadableSpan]:
    return by_item(
        [s for s in spans if s.attributes and s.attributes["fulltext_jobs.job.attempt"] == attempt]
    )


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest) -> Repository:
    if request.param == "memory":
        return memory_backend().repo
    fixture = "sqlite_engine" if request.param == "sqlite" else "clean_postgres_engine"
    return sql_backend(request.getfixturevalue(fixture)).repo


def test_one_span_per_handler_run_with_its_claim_and_save(repo: Repository, collected: Collected):
    ids = enqueue(repo, "a", "b-skip", "c-fail", "d-give-up")
    run(repo, collected.telemetry)
    spans = collected.spans("process")
    assert len(spans) == 5  # c-fail ran twice
    retried, runs = by_attempt(spans, 1), by_attempt(spans, 2)
    assert sorted(retried) == ["a", "b-skip", "c-fail", "d-give-up"]
    assert sorted(runs) == ["c-fail"]
    outcomes = {
        item: span.attributes["fulltext_jobs.job.outcome"] for item, span in retried.items()
    }
    assert outcomes == {
        "a": "finished",
        "b-skip": "skipped",
        "c-fail": "retry",
        "d-give-up": "failed",
    }
    assert runs["c-fail"].attributes["fulltext_jobs.job.outcome"] == "failed"
    runs = {**retried, "c-fail (2)": runs["c-fail"]}
    for item, span in runs.items():
        assert span.kind is SpanKind.INTERNAL
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "fulltext_jobs"
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["messaging.destination.name"] == DEST
        assert span.attributes["messaging.message.id"] == ids[item.removesuffix(" (2)")]
        # A claim of one job and its save are the run's own.
        assert children(collected, span) == [f"receive {DEST}", f"settle {DEST}"]
    for item in ("a", "b-skip"):
        assert runs[item].status.status_code is StatusCode.UNSET
        assert runs[item].events == ()
    for item, kind in (
        ("c-fail", "RuntimeError"),
        ("c-fail (2)", "RuntimeError"),
        ("d-give-up", "FailJob"),
    ):
        span = runs[item]
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["error.type"] == kind
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.type"].endswith(kind)  # type: ignore[union-attr]
    # The claim started the run, and its save ended it.
    receive = {s.parent.span_id: s for s in collected.spans("receive") if s.parent}
    for span in runs.values():
        assert span.context is not None
        claim = receive[span.context.span_id]
        assert claim.kind is SpanKind.CONSUMER
        assert span.start_time == claim.start_time
    metrics = collected.metrics()
    counts = {name: metrics[f"fulltext_jobs.worker.{name}"][DEST] for name in WORKER_COUNTERS}
    assert counts["claimed"] == 5
    assert (counts["finished"], counts["skipped"], counts["retried"], counts["failed"]) == (
        1,
        1,
        1,
        2,
    )
    assert metrics["messaging.process.duration"][DEST] == 5


def test_a_back_off_is_its_own_outcome_and_not_an_error(collected: Collected):
    repo = memory_backend().repo
    enqueue(repo, "busy")

    def backs_off_once(job: FullText) -> None:
        if not job.backoffs:
            raise RetryAfter(0.01, reason="429")

    worker = Worker(repo, DEST, backs_off_once, telemetry=collected.telemetry, poll_interval=0.01)
    worker.run(until_idle=True, install_signal_handlers=False)
    spans = collected.spans("process")
    assert [span.attributes["fulltext_jobs.job.outcome"] for span in spans] == [  # type: ignore[index]
        "backed_off",
        "finished",
    ]
    assert spans[0].status.status_code is not StatusCode.ERROR


def test_a_batch_claim_is_one_span_that_each_run_links_to(collected: Collected):
    repo = memory_backend().repo
    enqueue(repo, *(f"item-{n}" for n in range(5)))
    run(repo, collected.telemetry, batch_size=3)
    claims = collected.spans("receive")
    assert sorted(s.attributes["messaging.batch.message_count"] for s in claims) == [2, 3]  # type: ignore[index]
    runs = collected.spans("process")
    assert len(runs) == 5
    claim_ids = {s.context.span_id for s in claims if s.context}
    for span in runs:
        (link,) = span.links
        assert link.context.span_id in claim_ids
        assert children(collected, span) == []
    saves = collected.spans("settle")
    assert sorted(len(s.links) for s in saves) == [2, 3]
    linked = {link.context.span_id for s in saves for link in s.links}
    assert linked == {s.context.span_id for s in runs if s.context}


@pytest.mark.parametrize("name", ["memory", "sqlite"])
@pytest.mark.parametrize("batch_size", [1, 2])
def test_the_transaction_mode_traces_its_hold_as_the_claim_and_the_save(
    name: str, batch_size: int, collected: Collected, request: pytest.FixtureRequest
):
    repo = (
        memory_backend().repo
        if name == "memory"
        else sql_backend(request.getfixturevalue("sqlite_engine")).repo
    )
    enqueue(repo, "a", "b-give-up")
    run(repo, collected.telemetry, in_transaction=True, batch_size=batch_size)
    runs = by_item(collected.spans("process"))
    assert {item: s.attributes["fulltext_jobs.job.outcome"] for item, s in runs.items()} == {  # type: ignore[index]
        "a": "finished",
        "b-give-up": "failed",
    }
    assert runs["b-give-up"].status.status_code is StatusCode.ERROR
    expected = [f"receive {DEST}", f"settle {DEST}"] if batch_size == 1 else []
    for span in runs.values():
        assert children(collected, span) == expected
    assert len(collected.spans("settle")) == 3 - batch_size


def test_an_async_handlers_own_spans_are_children_of_its_run(collected: Collected):
    repo = memory_backend().repo
    enqueue(repo, "a", "b-give-up")
    tracer = collected.tracer_provider.get_tracer("app")

    async def fetch(job: FullText) -> None:
        with tracer.start_as_current_span("fetch text"):
            await asyncio.sleep(0)
            if "give-up" in job.item_id:
                raise FailJob("not found")

    worker = Worker(repo, DEST, fetch, telemetry=collected.telemetry, poll_interval=0.01)
    worker.run(until_idle=True, install_signal_handlers=False)
    runs = by_item(collected.spans("process"))
    for span in runs.values():
        assert children(collected, span) == ["fetch text", f"receive {DEST}", f"settle {DEST}"]
    assert runs["b-give-up"].status.status_code is StatusCode.ERROR
    assert runs["b-give-up"].events[0].attributes["exception.type"].endswith("FailJob")  # type: ignore[index,union-attr]


def test_a_timeout_is_recorded_on_the_run(collected: Collected):
    repo = memory_backend().repo
    enqueue(repo, "slow")

    def slow(_job: FullText) -> None:
        time.sleep(0.3)

    worker = Worker(
        repo,
        DEST,
        slow,
        telemetry=collected.telemetry,
        timeout=0.05,
        poll_interval=0.01,
        max_attempts=1,
    )
    worker.run(until_idle=True, install_signal_handlers=False)
    (span,) = collected.spans("process")
    assert span.attributes is not None
    assert span.attributes["fulltext_jobs.job.outcome"] == "failed"
    assert span.attributes["error.type"] == "TimeoutError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "TimeoutError: the handler timed out after 0.05 s"
    (event,) = span.events
    assert event.attributes == {
        "exception.type": "TimeoutError",
        "exception.message": "the handler timed out after 0.05 s",
    }


def test_traces_or_metrics_alone(collected: Collected):
    repo = memory_backend().repo
    enqueue(repo, "a")
    run(repo, Telemetry(collected.tracer_provider, collected.meter_provider, metrics=False))
    assert len(collected.spans("process")) == 1
    assert collected.metrics() == {}
    enqueue(repo, "b")
    run(repo, Telemetry(collected.tracer_provider, collected.meter_provider, traces=False))
    assert len(collected.spans("process")) == 1
    assert collected.metrics()["fulltext_jobs.worker.finished"][DEST] == 1


def test_bad_providers_are_refused():
    with pytest.raises(InvalidInput, match="tracer_provider"):
        Telemetry(tracer_provider=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="meter_provider"):
        Telemetry(meter_provider=object())  # type: ignore[arg-type]


def test_the_queue_lag_is_a_gauge(sqlite_engine, collected: Collected, clock: FakeClock):
    from fulltext_jobs.dashboard import Snapshots  # noqa: PLC0415 - its module needs the SQL adapter

    repo = sql_backend(sqlite_engine, clock=clock).repo
    repo.save_fulltext(FullText.new("a", DEST, now=clock.now))  # ready from the clock's now
    snapshots = Snapshots(sqlite_engine, max_age=0, clock=clock)
    observe_ledger(snapshots.read, collected.meter_provider)
    assert collected.metrics()["fulltext_jobs.queue.oldest_ready"] == {DEST: 0.0}
    clock.advance(seconds=42)
    assert collected.metrics()["fulltext_jobs.queue.oldest_ready"] == {DEST: 42.0}


WITHOUT_OPENTELEMETRY = """
import sys
sys.modules["opentelemetry"] = None
from fulltext_jobs import FullText, InMemoryRepository, MissingDependency, Worker
from fulltext_jobs.telemetry import Telemetry
repo = InMemoryRepository()
repo.save_fulltext(FullText.new("a", "d"))
stats = Worker(repo, "d", lambda job: None).run(until_idle=True)
assert stats.finished == 1, stats
try:
    Telemetry()
except MissingDependency as exc:
    print(exc)
assert not [name for name in sys.modules if name.startswith("opentelemetry.")]
"""


def test_a_worker_runs_without_opentelemetry():
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", WITHOUT_OPENTELEMETRY],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=TESTS.parent,
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout == "OpenTelemetry needs opentelemetry-api: pip install 'fulltext-jobs[otel]'\n"
    )


def test_the_global_providers_are_the_default():
    # Until an app sets its own, the API's global providers stand in: the
    # worker makes its spans and metrics, and they go nowhere.
    repo = memory_backend().repo
    enqueue(repo, "a")
    stats = Worker(repo, DEST, handler, telemetry=Telemetry()).run(
        until_idle=True, install_signal_handlers=False
    )
    assert stats.finished == 1


WORK_WITH_OTEL = """
import os, sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fulltext_jobs
from fulltext_jobs.cli import app

exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
url = sys.argv[1]
fulltext_jobs.upgrade(url)
repo = fulltext_jobs.SqlAlchemyRepository(fulltext_jobs.create_engine(url))
for item in ("a", "b"):
    repo.save_fulltext(fulltext_jobs.FullText.new(item, "word-count"))
try:
    app(["--database-url", url, "work", "word-count", "--handler", "builtins:repr",
         "--until-idle", *sys.argv[2:]], prog_name="fulltext-jobs")
except SystemExit as exit:
    assert not exit.code, exit.code
names = sorted({span.name for span in exporter.get_finished_spans()})
data = reader.get_metrics_data()
finished = [
    point.value
    for resource in (data.resource_metrics if data else ())
    for scope in resource.scope_metrics
    for metric in scope.metrics
    if metric.name == "fulltext_jobs.worker.finished"
    for point in metric.data.data_points
]
print(names, finished, file=sys.stderr)
"""


@pytest.mark.parametrize("how", ["--otel", "FULLTEXT_JOBS_OTEL=1", "off"])
def test_work_sends_through_the_global_providers_when_asked(tmp_path: Path, how: str):
    env = {key: value for key, value in os.environ.items() if key != "FULLTEXT_JOBS_OTEL"}
    args = ["--otel"] if how == "--otel" else []
    if how.startswith("FULLTEXT_JOBS_OTEL"):
        env["FULLTEXT_JOBS_OTEL"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", WORK_WITH_OTEL, f"sqlite:///{tmp_path / 'jobs.db'}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(TESTS.parent)},
    )
    assert done.returncode == 0, done.stderr
    expected = (
        "[] []"
        if how == "off"
        else "['process word-count', 'receive word-count', 'settle word-count'] [2]"
    )
    assert done.stderr.splitlines()[-1] == expected, done.stderr
