"""Tracing on against off: benchmark `tracing` of benchmarks/run.py (table q.).

    python benchmarks/run.py --only tracing

A worker made with `telemetry=` wraps its claim, each handler call and its
save in OpenTelemetry spans (fulltext_jobs/worker/tracing.py). This times
the claim of a batch (`claim_ready(100)`) and the save of its 100 outcomes
(`save_many(..., atomic=False)`) through the worker's wrappers, tracing on
against off, alternately in the same run, on PostgreSQL and on SQLite: at
batch 100 the claim and the save with tracing on should cost at most
`TARGET` times the same with it off. "On" is the SDK as an app would set
it up: a `TracerProvider` whose `BatchSpanProcessor` hands every span to
an exporter (one that drops them: the network is not what is measured).
Between the claim and the save each job's run goes through the worker's
run wrapper (untimed there), so the save's span links to 100 run spans as
in a worker. The run span's own cost is a row of its own: it is paid once
per handler call, whatever the handler does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from fulltext_jobs import FullText, SqlAlchemyRepository
from fulltext_jobs.domain import utc
from fulltext_jobs.telemetry import Telemetry
from fulltext_jobs.worker.handlers import Ending, Verdict, settle
from fulltext_jobs.worker.tracing import JobSpans

if TYPE_CHECKING:
    from run import Bench, Table

#: The batch a claim takes.
BATCH = 100
#: The most the claim and the save with tracing on may cost, against off.
TARGET = 1.1


class Dropped(SpanExporter):
    """An exporter that takes every span and sends it nowhere."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class Path3:
    """The worker's three calls for one store, traced by `spans` or plain."""

    def __init__(self, repo: SqlAlchemyRepository, spans: JobSpans | None) -> None:
        def judge(_job: FullText, _held: Any) -> Verdict:  # noqa: ANN401 - the worker's Held
            return Ending.FINISH, utc(), None, None

        def save(_run: Any, _held: list[Any]) -> None:  # noqa: ANN401 - the worker's Run
            repo.save_many(self.outcomes, atomic=False)

        self.outcomes: list[FullText] = []
        self.claim: Callable[[str, int], list[FullText]] = repo.claim_ready
        self.judge: Callable[[FullText, Any], Verdict] = judge
        self.save: Callable[[Any, list[Any]], None] = save
        if spans is not None:
            self.claim = spans.claiming(self.claim)
            self.judge = spans.judging(self.judge)
            self.save = spans.saving(self.save)

    def batch(self, destination: str) -> tuple[float, float]:
        """Claim a batch, run and save it: seconds the claim and the save
        took together, and seconds a run took (the mean over the batch)."""
        start = time.perf_counter()
        jobs = self.claim(destination, BATCH)
        claimed = time.perf_counter()
        for job in jobs:
            settle(job, self.judge(job, None))
        ran = time.perf_counter()
        self.outcomes = jobs
        self.save(None, jobs)
        saved = time.perf_counter()
        if len(jobs) != BATCH:
            msg = f"claimed {len(jobs)} jobs, not {BATCH}: the ledger ran dry"
            raise RuntimeError(msg)
        return claimed - start + saved - ran, (ran - claimed) / BATCH


def bench_tracing(bench: Bench, args: argparse.Namespace) -> Table:
    """The claim and the save of a batch with tracing on against off."""
    # run.py is the script that imports this module: import it when called.
    from delayed import on_both_stores  # noqa: PLC0415 - a sibling benchmark's ledgers
    from run import DESTINATION, Table, ms, verdict  # noqa: PLC0415

    runs, calls = args.runs, args.calls
    due = 2 * (runs + 1) * calls * BATCH
    table = Table(f"q. Tracing on against off: the claim and the save of a batch of {BATCH}")
    exporter = Dropped()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = Telemetry(tracer_provider, metrics=False).tracer
    if tracer is None:
        msg = "a Telemetry with traces has a tracer"
        raise RuntimeError(msg)

    def latencies(repo: SqlAlchemyRepository) -> dict[str, tuple[float, float]]:
        """Per case, the median over `runs` runs of the median of `calls`
        batches: the claim and the save, and a run; the cases alternate,
        so that a drift of the machine falls on both."""
        paths = {"off": Path3(repo, None), "on": Path3(repo, JobSpans(tracer, DESTINATION))}
        found: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        for run in range(runs + 1):
            for case, path in paths.items():
                times = [path.batch(DESTINATION) for _ in range(calls)]
                if run:  # the first is a warm-up
                    found[case].append(
                        (
                            statistics.median(t[0] for t in times),
                            statistics.median(t[1] for t in times),
                        )
                    )
        return {
            case: (
                statistics.median(v[0] for v in values),
                statistics.median(v[1] for v in values),
            )
            for case, values in found.items()
        }

    try:
        stores = on_both_stores(bench, due, "tracing", latencies)
        tracer_provider.force_flush()
    finally:
        tracer_provider.shutdown()
    for store, found in stores.items():
        (off, run_off), (on, run_on) = found["off"], found["on"]
        ratio = on / off
        table.add(f"{store}: claim_ready({BATCH}) + save_many, tracing off", ms(off))
        table.add(
            f"{store}: claim_ready({BATCH}) + save_many, tracing on",
            ms(on),
            f"{ratio:.2f} x off",
            f"<= {TARGET}",
            verdict(ratio <= TARGET),
        )
        table.add(
            f"{store}: a run span, per handler call",
            f"{(run_on - run_off) * 1e6:,.0f} µs",
        )
    table.notes.append(
        f"Medians of {runs} runs of {calls} batches each, tracing off and on alternately "
        "after a warm-up run of each. On: the SDK's TracerProvider with a BatchSpanProcessor "
        f"(spans dropped by the exporter: {exporter.spans:,} taken): per batch one claim "
        f"span and one save span linked to the batch's {BATCH} run spans. A run span's "
        "cost is the mean time of the worker's run wrapper around a handler that does "
        "nothing, less the same without tracing: it is paid per handler call."
    )
    return table
