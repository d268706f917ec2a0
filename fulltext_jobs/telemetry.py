"""OpenTelemetry, through the official `opentelemetry-api`: a worker's spans
(one per handler run, see `fulltext_jobs.worker.tracing`) and its counters
and handler-duration histogram as OpenTelemetry metrics
(`Worker(telemetry=Telemetry())`, `fulltext-jobs work --otel`); and the
queue's lag as an observable gauge (`observe_ledger`).

`opentelemetry-api` comes with the `otel` extra, not with a plain install:
it is imported only when a `Telemetry` is made, and its absence raises
`MissingDependency` naming the extra. A worker made without `telemetry`
never imports it and pays nothing.

Where the signals go is the app's choice, as OpenTelemetry intends: a
`Telemetry` takes a tracer provider and a meter provider, and by default
the global ones (`opentelemetry.trace.set_tracer_provider`, or
`opentelemetry-instrument`'s set-up from `OTEL_*` variables). With only the
API installed and no SDK set up, the global providers do nothing.

Names. Spans and their attributes follow OpenTelemetry's semantic
conventions for messaging (see `fulltext_jobs.worker.tracing`). Metrics:
each `WorkerStats` counter is `fulltext_jobs.worker.<counter>` (the
Prometheus names of `fulltext_jobs.metrics`, once an exporter adds
`_total`), the handler's duration is the conventions'
`messaging.process.duration` (seconds), and the queue's lag is
`fulltext_jobs.queue.oldest_ready` (seconds); each with the attribute
`messaging.destination.name`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from fulltext_jobs._defaults import OTEL_ENV
from fulltext_jobs.errors import InvalidInput, MissingDependency
from fulltext_jobs.metrics import WORKER_COUNTERS, LedgerReading

if TYPE_CHECKING:
    # Only for annotations: opentelemetry comes with an extra.
    from opentelemetry.metrics import Meter, MeterProvider, ObservableGauge
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = [
    "INSTRUMENTATION_NAME",
    "OTEL_ENV",
    "OTEL_EXTRA_ADVICE",
    "Telemetry",
    "TelemetryMetrics",
    "observe_ledger",
    "queue_lag",
    "require_opentelemetry",
]

#: What to install for OpenTelemetry.
OTEL_EXTRA_ADVICE: Final = "pip install 'fulltext-jobs[otel]'"

#: The instrumentation scope every tracer and meter is got under.
INSTRUMENTATION_NAME: Final = "fulltext_jobs"

#: `messaging.system`: the conventions' name for the system a span is of.
MESSAGING_SYSTEM: Final = "fulltext_jobs"

#: The attribute every metric is recorded with.
DESTINATION: Final = "messaging.destination.name"

#: The unit of each counter, in the conventions' annotation form.
_UNITS: Final[Mapping[str, str]] = {
    "retryable_errors": "{error}",
    "heartbeats": "{heartbeat}",
}


def require_opentelemetry() -> ModuleType:
    """The `opentelemetry.trace` module; raises `MissingDependency` naming
    the extra if opentelemetry-api is not installed."""
    try:
        return importlib.import_module("opentelemetry.trace")
    except ImportError as exc:
        msg = f"OpenTelemetry needs opentelemetry-api: {OTEL_EXTRA_ADVICE}"
        raise MissingDependency(msg) from exc


def _version() -> str | None:
    """This package's version, for the instrumentation scope (None when
    run from a checkout that is not installed)."""
    try:
        return metadata.version("fulltext-jobs")
    except metadata.PackageNotFoundError:
        return None


class TelemetryMetrics:
    """A worker's counters and handler-duration histogram as OpenTelemetry
    instruments of `meter`: the `WorkerObserver` a `Telemetry` hands the
    worker (beside any `metrics=` it has)."""

    def __init__(self, meter: Meter) -> None:
        self._counters = {
            name: meter.create_counter(
                f"fulltext_jobs.worker.{name}", unit=_UNITS.get(name, "{job}"), description=text
            )
            for name, text in WORKER_COUNTERS.items()
        }
        self._process = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="How long the handler took on a job, whatever came of it.",
        )
        self._attributes: dict[str, dict[str, str]] = {}

    def _of(self, destination: str) -> dict[str, str]:
        """The attributes of `destination`'s series, made once."""
        found = self._attributes.get(destination)
        if found is None:
            found = self._attributes[destination] = {
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.name": "process",
                DESTINATION: destination,
            }
        return found

    def declare(self, destination: str) -> None:
        """Make `destination`'s counters exist (at zero) before anything
        happens, so an exporter sees them from the start."""
        attributes = self._of(destination)
        for counter in self._counters.values():
            counter.add(0, attributes)

    def count(self, destination: str, name: str, n: int = 1) -> None:
        """Add `n` to the counter `name` (a `WorkerStats` field); other
        names are ignored."""
        counter = self._counters.get(name)
        if counter is not None and n:
            counter.add(n, self._of(destination))

    def observe_handler(self, destination: str, seconds: float) -> None:
        """Record one handler call that took `seconds`."""
        self._process.record(seconds, self._of(destination))


class Telemetry:
    """A worker's OpenTelemetry set-up: `Worker(..., telemetry=Telemetry())`.

    `tracer_provider` and `meter_provider` are where the spans and the
    metrics go; None (the default) takes OpenTelemetry's global providers
    when the worker is made. `traces=False` or `metrics=False` leaves one
    of the two out. One `Telemetry` may serve every worker of a process:
    each span and series names its destination.

    Raises `MissingDependency` without opentelemetry-api (the `otel` extra),
    and `InvalidInput` for a provider that has no `get_tracer` or
    `get_meter`.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        traces: bool = True,
        metrics: bool = True,
    ) -> None:
        trace = require_opentelemetry()
        version = _version()
        self.tracer: Tracer | None = None
        self.metrics: TelemetryMetrics | None = None
        if traces:
            if tracer_provider is not None and not hasattr(tracer_provider, "get_tracer"):
                msg = (
                    "tracer_provider must be an OpenTelemetry TracerProvider, "
                    f"not {tracer_provider!r}"
                )
                raise InvalidInput(msg)
            self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, version, tracer_provider)
        if metrics:
            self.metrics = TelemetryMetrics(_meter(meter_provider, version))


def _meter(meter_provider: MeterProvider | None, version: str | None) -> Meter:
    """The package's meter from `meter_provider` (None: the global one)."""
    if meter_provider is not None and not hasattr(meter_provider, "get_meter"):
        msg = f"meter_provider must be an OpenTelemetry MeterProvider, not {meter_provider!r}"
        raise InvalidInput(msg)
    metrics = importlib.import_module("opentelemetry.metrics")
    meter: Meter = metrics.get_meter(INSTRUMENTATION_NAME, version, meter_provider)
    return meter


# --- the queue's lag ------------------------------------------------------------------


def queue_lag(reading: LedgerReading) -> Mapping[str, float]:
    """Per destination, how long its oldest due ready job has waited, in
    seconds, as `reading` tells: the one figure every exporter of the lag
    reads, exact from the jobs' recorded ready time (`Repository.lag`; the
    dashboard's `LedgerReading.ready_waiting`, also served as Prometheus'
    `fulltext_jobs_oldest_ready_seconds`)."""
    return reading.ready_waiting


def observe_ledger(
    read: Callable[[], LedgerReading], meter_provider: MeterProvider | None = None
) -> ObservableGauge:
    """Report the queue's lag (`queue_lag`) as the observable gauge
    `fulltext_jobs.queue.oldest_ready` of `meter_provider` (None: the
    global one), read through `read` (for example
    `fulltext_jobs.dashboard.Snapshots(engine).read`, which caches its
    reading) each time the metrics are collected; return the gauge.

    Raises `MissingDependency` without opentelemetry-api.
    """
    require_opentelemetry()
    metrics = importlib.import_module("opentelemetry.metrics")
    meter = _meter(meter_provider, _version())

    def observe(_options: Any) -> Iterable[Any]:  # noqa: ANN401 - the SDK's CallbackOptions
        return [
            metrics.Observation(seconds, {DESTINATION: destination})
            for destination, seconds in sorted(queue_lag(read()).items())
        ]

    gauge: ObservableGauge = meter.create_observable_gauge(
        "fulltext_jobs.queue.oldest_ready",
        callbacks=[observe],
        unit="s",
        description="Seconds the oldest due ready job of the destination has waited.",
    )
    return gauge
