"""Prometheus metrics, through the official `prometheus_client`: the
ledger's gauges, which the dashboard serves at `/metrics`, and a worker's
counters and handler-duration histogram (`Worker(metrics=WorkerMetrics())`,
`fulltext-jobs work --metrics-port`).

`prometheus_client` comes with the `metrics` extra (and the `dashboard`
extra, which includes it), not with a plain install: it is imported only
when metrics are made, and its absence raises `MissingDependency` naming
the extra.

Names. Worker counters are `fulltext_jobs_worker_<counter>_total`, one per
field of `WorkerStats` (so `/metrics` and the worker's closing table count
the same things), labelled with the destination; the handler's duration is
the histogram `fulltext_jobs_worker_handler_seconds`, and the wait of each
job it claimed, from ready to start, `fulltext_jobs_worker_wait_seconds`.
The ledger's gauges are listed in `LedgerCollector`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Final

from fulltext_jobs.audit import STUCK_CHECKS
from fulltext_jobs.domain import JobStatus
from fulltext_jobs.errors import InvalidInput, MissingDependency
from fulltext_jobs.health import HealthCheck, QueueHealth
from fulltext_jobs.replica import ReadSource

if TYPE_CHECKING:
    # Only for annotations: prometheus_client comes with an extra.
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from fulltext_jobs.sql.overview import Overview

__all__ = [
    "METRICS_EXTRA_ADVICE",
    "WORKER_COUNTERS",
    "LedgerCollector",
    "LedgerReading",
    "WorkerMetrics",
    "require_prometheus",
]

#: What to install for metrics.
METRICS_EXTRA_ADVICE: Final = "pip install 'fulltext-jobs[metrics]'"

#: The worker's counters: each `WorkerStats` field, and its help text.
WORKER_COUNTERS: Final[Mapping[str, str]] = {
    "claimed": "Jobs the worker claimed.",
    "finished": "Jobs the worker saved as finished.",
    "failed": "Jobs the worker saved as failed (the handler raised, with no retry left).",
    "skipped": "Jobs the worker saved as skipped (the handler raised SkipJob).",
    "released": "Jobs the worker gave back to ready (at shutdown).",
    "lost_claims": "Saves refused because the claim had ended (the lease ran out).",
    "retryable_errors": "Retryable store errors, each followed by a backoff or a retry.",
    "heartbeats": "Leases the worker extended.",
    "enqueued": "Jobs the worker's producer created (produce=True).",
    "rescued": "Expired jobs the worker's producer gave back (produce=True).",
    "dropped": "Claimed jobs not started: a heartbeat found their batch's claim lost.",
    "retried": "Jobs the worker gave back to ready to retry after a backoff (the handler raised).",
    "backed_off": (
        "Jobs the worker put back for later without counting the attempt "
        "(the handler raised RetryAfter)."
    ),
}

#: The handler-duration histogram's buckets, in seconds: from a quick
#: lookup to a long download or model run.
HANDLER_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

#: The buckets of the wait from ready to start, in seconds: from a claim
#: that found its job at once to a backlog of a day.
WAIT_BUCKETS: Final = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400)


def require_prometheus() -> ModuleType:
    """The `prometheus_client` module; raises `MissingDependency` naming
    the extra if it is not installed."""
    try:
        return importlib.import_module("prometheus_client")
    except ImportError as exc:
        msg = f"metrics need prometheus_client: {METRICS_EXTRA_ADVICE}"
        raise MissingDependency(msg) from exc


class WorkerMetrics:
    """A worker's Prometheus counters and handler-duration histogram, in
    `registry` (default: prometheus_client's global registry, which
    `prometheus_client.start_http_server` and the app's own `/metrics`
    serve).

    Make one per registry and pass it to every `Worker` of the process:
    each series is labelled with its worker's destination. `serving(port)`
    serves the registry over HTTP. Raises `MissingDependency` without
    prometheus_client, and `InvalidInput` for a `registry` that is not a
    `CollectorRegistry`.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        prometheus = require_prometheus()
        if registry is not None and not isinstance(registry, prometheus.CollectorRegistry):
            msg = f"registry must be a prometheus_client CollectorRegistry, not {registry!r}"
            raise InvalidInput(msg)
        self.registry: CollectorRegistry = prometheus.REGISTRY if registry is None else registry
        self._counters = {
            name: prometheus.Counter(
                f"fulltext_jobs_worker_{name}",
                text,
                ["destination"],
                registry=self.registry,
            )
            for name, text in WORKER_COUNTERS.items()
        }
        self._handler_seconds = prometheus.Histogram(
            "fulltext_jobs_worker_handler_seconds",
            "How long the handler took on a job, whatever came of it.",
            ["destination"],
            buckets=HANDLER_BUCKETS,
            registry=self.registry,
        )
        self._wait_seconds = prometheus.Histogram(
            "fulltext_jobs_worker_wait_seconds",
            "How long each job the worker claimed had waited since it became ready.",
            ["destination"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )

    def declare(self, destination: str) -> None:
        """Make `destination`'s series exist (at zero) before anything
        happens, so a scrape sees them from the start."""
        for counter in self._counters.values():
            counter.labels(destination)
        self._handler_seconds.labels(destination)
        self._wait_seconds.labels(destination)

    def count(self, destination: str, name: str, n: int = 1) -> None:
        """Add `n` to the counter `name` (a `WorkerStats` field); other
        names are ignored."""
        counter = self._counters.get(name)
        if counter is not None and n:
            counter.labels(destination).inc(n)

    def observe_handler(self, destination: str, seconds: float) -> None:
        """Record one handler call that took `seconds`."""
        self._handler_seconds.labels(destination).observe(seconds)

    def observe_wait(self, destination: str, seconds: float) -> None:
        """Record one job claimed `seconds` after it became ready."""
        self._wait_seconds.labels(destination).observe(seconds)

    @contextmanager
    def serving(self, port: int, host: str = "127.0.0.1") -> Iterator[int]:
        """Serve the registry in Prometheus' text format on `host`:`port`
        (0: any free port) from a thread, until the block ends; yields the
        port. Raises `OSError` if the address cannot be bound."""
        prometheus = require_prometheus()
        server, thread = prometheus.start_http_server(port, addr=host, registry=self.registry)
        try:
            yield int(server.server_port)
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


@dataclasses.dataclass(frozen=True, slots=True)
class LedgerReading:
    """What the ledger's gauges report: an overview (None if it could not
    be read), per destination how long its oldest due ready job has waited
    (its lag, in seconds; none where no job is due), and the
    queue's health read with it (None with no overview), and whether the
    server read is a replica (None with no overview)."""

    overview: Overview | None
    ready_waiting: Mapping[str, float]
    health: QueueHealth | None = None
    source: ReadSource | None = None


class LedgerCollector:
    """The ledger's gauges, read when Prometheus scrapes (through `read`,
    which the dashboard caches):

    - `fulltext_jobs_jobs{destination,status}`: jobs per status;
    - `fulltext_jobs_unqueued{destination}`: eligible items with no job yet;
    - `fulltext_jobs_oldest_ready_seconds{destination}`: the lag, exact: how
      long the oldest due ready job has waited since it became ready (its
      `ready_at`, which for a job given back for later is its `not_before`;
      0 when none is due). One index probe per destination. A queue nobody
      works grows it;
    - `fulltext_jobs_waiting_for_retry{destination}`: ready jobs not due yet
      (`not_before` in the future: a worker gave them back to retry after a
      backoff). They are among the `ready` of `fulltext_jobs_jobs`;
    - `fulltext_jobs_oldest_running_seconds{destination}`: since the oldest
      running job started (0 when none runs);
    - `fulltext_jobs_stuck{destination,check}`: running jobs no rescue
      returns, by audit check (`running_without_lease`,
      `lease_expired_unrescued`; 0 when none);
    - `fulltext_jobs_paused{destination}`: 1 while an operator's pause is
      in force on the destination (no job of it starts), else 0;
    - `fulltext_jobs_paused_until_timestamp_seconds{destination}`: when that
      pause ends, in Unix time (0: until resumed); only while paused;
    - `fulltext_jobs_max_running{destination}`: its cap on jobs running at
      once (`fulltext-jobs limit`); only where one is set;
    - `fulltext_jobs_rate_limit{destination}`: its start rate, in jobs a
      second (`fulltext-jobs limit --rate`); only where one is set;
    - `fulltext_jobs_ledger_up`: 1 if the ledger could be read, else 0 (and
      no other gauge).

    The queue's health (`fulltext_jobs.health`), each only where it applies
    to the database (absent on SQLite unless said):

    - `fulltext_jobs_oldest_transaction_seconds`: since the oldest open or
      prepared transaction of the database began (0 when none is open);
    - `fulltext_jobs_horizon_xmin_age`: transactions since the oldest `xmin`
      anything holds (sessions, prepared transactions, slots, standbys'
      feedback; 0 when nothing holds one);
    - `fulltext_jobs_table_live_rows`, `fulltext_jobs_table_dead_rows`: the
      jobs table's rows by the database's statistics (live rows on SQLite
      too);
    - `fulltext_jobs_table_last_vacuum_timestamp_seconds`,
      `fulltext_jobs_table_last_autovacuum_timestamp_seconds`,
      `fulltext_jobs_table_last_autoanalyze_timestamp_seconds`: when each
      last ran on the jobs table, in Unix time (0: never);
    - `fulltext_jobs_delayed_ahead{destination}`: jobs waiting for a retry
      ahead of the destination's first due job (every backend);
    - `fulltext_jobs_health_warnings{check}`: how many warnings of each
      `HealthCheck` `fulltext-jobs audit` would give at its default
      thresholds (every backend).

    Where the figures were read (`fulltext_jobs.replica`):

    - `fulltext_jobs_ledger_replica`: 1 if the server read is a replica (in
      recovery: every figure above lags its primary), else 0;
    - on a replica, where the server tells:
      `fulltext_jobs_ledger_replica_last_replay_age_seconds` (since the
      last transaction it replayed was committed on the primary: grows on a
      caught-up replica while the primary is idle),
      `fulltext_jobs_ledger_replica_replay_pending_bytes` (WAL received and
      not replayed yet) and `fulltext_jobs_ledger_replica_receiving` (1 while
      it streams from a primary).
    """

    def __init__(self, read: Callable[[], LedgerReading]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        core = require_prometheus().metrics_core
        reading = self._read()
        overview = reading.overview
        up = core.GaugeMetricFamily("fulltext_jobs_ledger_up", "1 if the ledger could be read.")
        up.add_metric([], 0 if overview is None else 1)
        yield up
        if overview is None:
            return
        jobs = core.GaugeMetricFamily(
            "fulltext_jobs_jobs",
            "Jobs per destination and status.",
            labels=["destination", "status"],
        )
        unqueued = core.GaugeMetricFamily(
            "fulltext_jobs_unqueued", "Eligible items with no job yet.", labels=["destination"]
        )
        ready = core.GaugeMetricFamily(
            "fulltext_jobs_oldest_ready_seconds",
            "Seconds the oldest due ready job has waited since it became ready (the lag).",
            labels=["destination"],
        )
        running = core.GaugeMetricFamily(
            "fulltext_jobs_oldest_running_seconds",
            "Seconds since the oldest running job started.",
            labels=["destination"],
        )
        retry = core.GaugeMetricFamily(
            "fulltext_jobs_waiting_for_retry",
            "Ready jobs not due yet: given back to be retried after a backoff.",
            labels=["destination"],
        )
        stuck = core.GaugeMetricFamily(
            "fulltext_jobs_stuck",
            "Running jobs no rescue returns, by audit check.",
            labels=["destination", "check"],
        )
        for row in overview.destinations:
            for check in STUCK_CHECKS:
                stuck.add_metric([row.destination, check.value], row.stuck.get(check, 0))
            for status in JobStatus:
                jobs.add_metric([row.destination, status.value], row.count(status))
            if row.stats.unqueued is not None:  # counted only on request
                unqueued.add_metric([row.destination], row.stats.unqueued)
            ready.add_metric([row.destination], reading.ready_waiting.get(row.destination, 0.0))
            retry.add_metric([row.destination], row.waiting_for_retry.count)
            started = None if row.oldest_running is None else row.oldest_running.job.started
            running.add_metric(
                [row.destination],
                0.0 if started is None else max(0.0, (overview.taken - started).total_seconds()),
            )
        yield from (jobs, unqueued, ready, retry, running, stuck)
        yield from _control_gauges(core, overview)
        if reading.health is not None:
            yield from _health_gauges(core, reading.health, overview)
        if reading.source is not None:
            yield from _source_gauges(core, reading.source)


def _control_gauges(core: ModuleType, overview: Overview) -> Iterator[Metric]:
    """What operators set per destination: its pause, cap and rate, and
    how many jobs its upstreams have still to end."""
    paused = core.GaugeMetricFamily(
        "fulltext_jobs_paused",
        "1 while a pause is in force on the destination: no job of it starts.",
        labels=["destination"],
    )
    paused_until = core.GaugeMetricFamily(
        "fulltext_jobs_paused_until_timestamp_seconds",
        "When the destination's pause ends, in Unix time (0: until resumed).",
        labels=["destination"],
    )
    cap = core.GaugeMetricFamily(
        "fulltext_jobs_max_running",
        "The destination's cap on jobs running at once, where one is set.",
        labels=["destination"],
    )
    rate = core.GaugeMetricFamily(
        "fulltext_jobs_rate_limit",
        "The destination's start rate, in jobs a second, where one is set.",
        labels=["destination"],
    )
    to_come = core.GaugeMetricFamily(
        "fulltext_jobs_upstream_to_come",
        "Jobs of the destinations it follows that have not ended (ready or running).",
        labels=["destination"],
    )
    for row in overview.destinations:
        if row.to_come is not None:
            to_come.add_metric([row.destination], row.to_come)
        controls = row.controls
        if controls is not None and controls.max_running is not None:
            cap.add_metric([row.destination], controls.max_running)
        if controls is not None and controls.rate is not None:
            rate.add_metric([row.destination], controls.rate)
        in_force = controls is not None and controls.paused(overview.taken)
        paused.add_metric([row.destination], 1 if in_force else 0)
        if controls is not None and in_force:
            until = controls.paused_until
            paused_until.add_metric([row.destination], 0 if until is None else until.timestamp())
    yield from (paused, paused_until, cap, rate, to_come)


def _source_gauges(core: ModuleType, source: ReadSource) -> Iterator[Metric]:
    """Where the figures were read (see `LedgerCollector`)."""
    yield _gauge(
        core,
        "fulltext_jobs_ledger_replica",
        "1 if the ledger was read on a replica (its figures lag the primary).",
        1 if source.replica else 0,
    )
    if source.last_replay_age is not None:
        yield _gauge(
            core,
            "fulltext_jobs_ledger_replica_last_replay_age_seconds",
            "Seconds since the last transaction the replica replayed was committed.",
            source.last_replay_age.total_seconds(),
        )
    if source.replay_pending is not None:
        yield _gauge(
            core,
            "fulltext_jobs_ledger_replica_replay_pending_bytes",
            "WAL the replica received and has not replayed yet, in bytes.",
            source.replay_pending,
        )
    if source.receiving is not None:
        yield _gauge(
            core,
            "fulltext_jobs_ledger_replica_receiving",
            "1 while the replica streams WAL from a primary.",
            1 if source.receiving else 0,
        )


def _health_gauges(core: ModuleType, health: QueueHealth, overview: Overview) -> Iterator[Metric]:
    """The queue health's gauges (see `LedgerCollector`)."""
    if health.horizon is not None:
        oldest = health.oldest_transaction
        yield _gauge(
            core,
            "fulltext_jobs_oldest_transaction_seconds",
            "Seconds since the oldest open or prepared transaction of the database began.",
            0.0 if oldest is None or oldest.age is None else oldest.age.total_seconds(),
        )
        yield _gauge(
            core,
            "fulltext_jobs_horizon_xmin_age",
            "Transactions since the oldest xmin held back by a session, a prepared"
            " transaction, a replication slot or a standby.",
            max((h.xmin_age for h in health.horizon if h.xmin_age is not None), default=0),
        )
    table = health.table
    if table is not None and table.live_rows is not None:
        yield _gauge(
            core, "fulltext_jobs_table_live_rows", "Live rows of the jobs table.", table.live_rows
        )
    if table is not None and table.dead_rows is not None:
        yield _gauge(
            core, "fulltext_jobs_table_dead_rows", "Dead rows of the jobs table.", table.dead_rows
        )
        for name, moment in (
            ("vacuum", table.last_vacuum),
            ("autovacuum", table.last_autovacuum),
            ("autoanalyze", table.last_autoanalyze),
        ):
            yield _gauge(
                core,
                f"fulltext_jobs_table_last_{name}_timestamp_seconds",
                f"When the last {name} of the jobs table ran, in Unix time (0: never).",
                0.0 if moment is None else moment.timestamp(),
            )
    ahead = core.GaugeMetricFamily(
        "fulltext_jobs_delayed_ahead",
        "Jobs waiting for a retry ahead of the destination's first due job.",
        labels=["destination"],
    )
    counted = {row.destination: row.ahead for row in health.delayed}
    for row in overview.destinations:
        ahead.add_metric([row.destination], counted.get(row.destination, 0))
    yield ahead
    warnings = core.GaugeMetricFamily(
        "fulltext_jobs_health_warnings",
        "Queue health warnings at fulltext-jobs audit's default thresholds, by check.",
        labels=["check"],
    )
    found = Counter(warning.check for warning in health.warnings())
    for check in HealthCheck:
        warnings.add_metric([check.value], found[check])
    yield warnings


def _gauge(core: ModuleType, name: str, text: str, value: float) -> Metric:
    gauge = core.GaugeMetricFamily(name, text)
    gauge.add_metric([], value)
    made: Metric = gauge
    return made
