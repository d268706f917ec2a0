"""The dashboard behind `fulltext-jobs dashboard`: a read-only web page of
where each destination stands, and `/metrics` for Prometheus.

Routes (all relative, so the page works under a proxy's path prefix):

- `/`: the page. A queue health panel (`fulltext_jobs.health`: what holds
  vacuum back, the jobs table's rows and vacuums, delayed jobs ahead of
  due ones, and `audit`'s warnings at its defaults). Per destination:
  counts by status (each linking to the jobs in it), unqueued items, a
  progress bar, jobs ended per minute over the last minutes as a small
  chart and the rate they make, the oldest running job, the ready jobs
  split into those due and those waiting for a retry (and when the next is
  due), the next due job and how long it has been waiting, the latest jobs
  waiting for a retry and the latest failures, each with its `last_error`.
- `/overview`: the page's changing part alone, which the page fetches every
  `refresh` seconds to replace its own (a dozen lines of inline script; with
  scripts off, the page reloads itself instead).
- `/jobs?destination=D&status=S[&before=SEQ]`: a page of jobs by status,
  the latest enqueued first.
- `/metrics`: the ledger's gauges in Prometheus' text format (see
  `fulltext_jobs.metrics.LedgerCollector`).

Decisions:

- **Starlette and uvicorn** (the `dashboard` extra): a well-kept ASGI
  toolkit and server. Routing, query parsing and a test client come with
  Starlette; uvicorn parses HTTP robustly and stops gracefully on SIGINT and
  SIGTERM. The standard library's `http.server` says of itself that it is
  not for production. The endpoints are plain functions, which Starlette
  runs in its thread pool, because the reads are synchronous SQLAlchemy.
- **HTML written here**, escaped by `html.escape`; no template engine, no
  build step, no JavaScript framework, no external asset: the machines
  that run it often have no internet. The chart is inline SVG.
- **One read per second at most** (`Snapshots`): every viewer and every
  Prometheus scrape share the latest overview, so ten open tabs do not
  scan the ledger ten times.
- **A replica's figures are labelled**: each overview also asks the server
  whether it is a replica (`fulltext_jobs.replica`); on one, the page says
  so above every figure, with its replay lag, and `/metrics` has gauges of
  it (`dashboard --read-url` points the dashboard at a replica).
- **Read-only**: the engine refuses writes (`overview.read_only_engine`),
  and binds to 127.0.0.1 unless told otherwise; docs/dashboard.md says how
  to put it behind a proxy that authenticates.
"""

from __future__ import annotations

import html
import importlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

from sqlalchemy.engine import Engine

from fulltext_jobs._defaults import DEFAULT_REFRESH
from fulltext_jobs.audit import AuditCheck
from fulltext_jobs.domain import JobStatus, utc
from fulltext_jobs.errors import InvalidInput, JobsError, MissingDependency
from fulltext_jobs.health import HolderKind, QueueHealth, span_text
from fulltext_jobs.metrics import LedgerCollector, LedgerReading
from fulltext_jobs.sql.health import read_health
from fulltext_jobs.sql.overview import (
    DEFAULT_FAILURES,
    DEFAULT_MINUTES,
    DestinationOverview,
    JobRow,
    Minute,
    Rate,
    RetryWait,
    list_jobs,
    read_overview,
)
from fulltext_jobs.sql.replica import read_source

if TYPE_CHECKING:
    # Only for annotations: Starlette comes with the `dashboard` extra.
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "DASHBOARD_EXTRA_ADVICE",
    "Snapshots",
    "create_app",
    "require_dashboard",
    "serve",
]

_log = logging.getLogger(__name__)

#: What the dashboard needs beyond a plain install, and how to install it.
DASHBOARD_NEEDS: Final = "starlette, uvicorn and prometheus_client"
DASHBOARD_EXTRA_ADVICE: Final = "pip install 'fulltext-jobs[dashboard]'"

#: How long one overview serves every viewer and scrape, in seconds.
MAX_AGE: Final = 1.0

#: Jobs on one page of `/jobs`.
JOBS_PAGE: Final = 100

#: Characters of a `last_error` shown in the overview (the whole on hover).
ERROR_PREVIEW: Final = 160

#: The status columns, in the order of a job's life, and the progress bar's.
STATUSES: Final = (
    JobStatus.FINISHED,
    JobStatus.SKIPPED,
    JobStatus.FAILED,
    JobStatus.RUNNING,
    JobStatus.READY,
)


def require_dashboard() -> tuple[ModuleType, ModuleType]:
    """The `starlette.applications` and `uvicorn` modules; raises
    `MissingDependency` naming the extra if any of the dashboard's
    dependencies is missing."""
    try:
        importlib.import_module("prometheus_client")
        return (
            importlib.import_module("starlette.applications"),
            importlib.import_module("uvicorn"),
        )
    except ImportError as exc:
        msg = f"the dashboard needs {DASHBOARD_NEEDS}: {DASHBOARD_EXTRA_ADVICE}"
        raise MissingDependency(msg) from exc


# --- the shared overview ---------------------------------------------------------


class Snapshots:
    """The latest overview of the ledger behind `engine`, read again when
    older than `max_age` seconds, whoever asks (one read at a time), and
    each destination's lag: how long its oldest due ready job has waited,
    from the `ready_at` the ledger records (see `Repository.lag`)."""

    def __init__(  # noqa: PLR0913 - each is a setting of the dashboard
        self,
        engine: Engine,
        *,
        minutes: int = DEFAULT_MINUTES,
        failures: int = DEFAULT_FAILURES,
        max_age: float = MAX_AGE,
        clock: Callable[[], datetime] = utc,
        unqueued: bool = False,
    ) -> None:
        self.engine = engine
        self._unqueued = unqueued
        self._minutes = minutes
        self._failures = failures
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._reading = LedgerReading(overview=None, ready_waiting={})
        self._error: str | None = None

    def read(self) -> LedgerReading:
        """The latest reading; its `overview` is None if the ledger could not
        be read (then `error` says why)."""
        with self._lock:
            if time.monotonic() - self._read_at < self._max_age:
                return self._reading
            try:
                overview = read_overview(
                    self.engine,
                    now=self._clock(),
                    minutes=self._minutes,
                    failures=self._failures,
                    unqueued=self._unqueued,
                )
                health = read_health(self.engine, overview)
                source = read_source(self.engine)
            except JobsError as exc:
                self._error = " ".join(str(exc).split())
                _log.warning("dashboard: cannot read the ledger: %s", self._error)
                self._reading = LedgerReading(overview=None, ready_waiting={})
            else:
                self._error = None
                self._reading = LedgerReading(
                    overview=overview,
                    ready_waiting={
                        row.destination: row.stats.lag.total_seconds()
                        for row in overview.destinations
                        if row.stats.lag is not None
                    },
                    health=health,
                    source=source,
                )
            self._read_at = time.monotonic()
            return self._reading

    @property
    def error(self) -> str | None:
        """Why the latest read failed, or None."""
        return self._error


# --- the application ----------------------------------------------------------------


def create_app(
    snapshots: Snapshots, *, refresh: float = DEFAULT_REFRESH, title: str = ""
) -> Starlette:
    """The dashboard as an ASGI application, reading through `snapshots`;
    the page refreshes every `refresh` seconds and names `title` (the
    database, say). Raises `MissingDependency` without the `dashboard`
    extra, and `InvalidInput` for a `refresh` that is not positive."""
    if isinstance(refresh, bool) or not isinstance(refresh, int | float) or not refresh > 0:
        msg = f"refresh must be a positive number of seconds, not {refresh!r}"
        raise InvalidInput(msg)
    applications, _uvicorn = require_dashboard()
    prometheus = importlib.import_module("prometheus_client")
    from starlette.responses import HTMLResponse, Response  # noqa: PLC0415 - an extra's
    from starlette.routing import Route  # noqa: PLC0415 - an extra's

    registry = prometheus.CollectorRegistry()
    registry.register(LedgerCollector(snapshots.read))

    def page(_request: Request) -> Response:
        body, status = _overview_or_error(snapshots)
        return HTMLResponse(_page(body, refresh=refresh, title=title), status_code=status)

    def overview(_request: Request) -> Response:
        body, status = _overview_or_error(snapshots)
        return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    def jobs(request: Request) -> Response:
        destination = request.query_params.get("destination", "")
        try:
            status = JobStatus(request.query_params.get("status", JobStatus.FAILED.value))
            before_text = request.query_params.get("before")
            before = None if before_text is None else int(before_text)
            rows = list_jobs(snapshots.engine, destination, status, before=before, limit=JOBS_PAGE)
        except (ValueError, InvalidInput) as exc:
            return HTMLResponse(_error_page(f"bad request: {exc}", title), status_code=400)
        except JobsError as exc:
            return HTMLResponse(_error_page(str(exc), title), status_code=503)
        return HTMLResponse(_jobs_page(destination, status, rows, title))

    def metrics(_request: Request) -> Response:
        return Response(
            prometheus.generate_latest(registry), media_type=prometheus.CONTENT_TYPE_LATEST
        )

    app: Starlette = applications.Starlette(
        routes=[
            Route("/", page),
            Route("/overview", overview),
            Route("/jobs", jobs),
            Route("/metrics", metrics),
        ]
    )
    return app


def serve(app: Starlette, sockets: list[object]) -> None:
    """Serve `app` with uvicorn on already bound `sockets` until SIGINT or
    SIGTERM, then return. Logging is left to the caller's configuration."""
    _applications, uvicorn = require_dashboard()
    config = uvicorn.Config(app, log_config=None, access_log=True, lifespan="off")
    # Once stopped gracefully, uvicorn raises the signal again for the handler
    # that was there before it; this one takes it, so that a stop is a normal
    # return (exit status 0, as `work` does) rather than a death by signal.
    previous: dict[signal.Signals, object] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _stopped)
    try:
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _stopped(signum: int, _frame: FrameType | None) -> None:
    _log.info("dashboard stopped by %s", signal.Signals(signum).name)


def _overview_or_error(snapshots: Snapshots) -> tuple[str, int]:
    reading = snapshots.read()
    if reading.overview is None:
        return _error_block(snapshots.error or "the ledger could not be read"), 503
    return _overview(reading), 200


# --- HTML ------------------------------------------------------------------------------

_e = html.escape

_STYLE: Final = """
:root { --finished:#2e7d32; --skipped:#9e9d24; --failed:#c62828; --running:#1565c0;
  --ready:#ef8f00; --unqueued:#e0e0e0; --ink:#1f2328; --muted:#656d76; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); margin: 0; background: #f6f8fa; }
header { display: flex; gap: 1em; align-items: baseline; padding: .8em 1.5em;
  background: #24292f; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
header .title { color: #c9d1d9; font-family: ui-monospace, monospace; font-size: .9em; }
main { padding: 1em 1.5em; display: grid; gap: 1em;
  grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); }
.stamp { grid-column: 1 / -1; color: var(--muted); margin: 0; }
.stamp.replica { color: var(--ink); background: #fff8c5; padding: .3em .6em; }
#stale { display: none; margin: 1em 1.5em 0; padding: .5em 1em; background: #fff1e5;
  border: 1px solid var(--ready); }
body.stale #stale { display: block; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 1em; }
.paused { margin: 0 0 .5em; padding: .25em .5em; background: #fff8c5; border-radius: 4px; }
.cap, .upstreams { margin: 0 0 .5em; color: var(--muted); }
section.health { grid-column: 1 / -1; }
section.health[data-health="warn"] { border-color: var(--failed); }
h2 { margin: 0 0 .5em; font-size: 1.15em; display: flex; justify-content: space-between; }
h2 .pct { color: var(--muted); font-weight: normal; }
h3 { font-size: 1em; margin: 1em 0 .3em; }
.bar { display: flex; height: 14px; border-radius: 3px; overflow: hidden;
  background: var(--unqueued); }
.bar span { display: block; height: 100%; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .2em .5em .2em 0; vertical-align: top; }
th { color: var(--muted); font-weight: normal; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.counts { margin-top: .6em; }
table.counts td { font-size: 1.3em; }
.key { display: inline-block; width: .7em; height: .7em; border-radius: 2px; margin-right: .3em; }
.finished { background: var(--finished); } .skipped { background: var(--skipped); }
.failed { background: var(--failed); } .running { background: var(--running); }
.ready { background: var(--ready); } .unqueued { background: var(--unqueued); }
.rate { display: flex; gap: 1em; align-items: flex-end; margin-top: .6em; }
.rate svg { background: #f6f8fa; border-bottom: 1px solid var(--line); }
.rate rect.done { fill: var(--finished); } .rate rect.failed { fill: var(--failed); }
.retrying { color: var(--ready); font-weight: 600; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; margin: .8em 0 0; }
dt { color: var(--muted); } dd { margin: 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .92em; }
td.mono, td:first-child { white-space: nowrap; }
.error { color: var(--failed); word-break: break-word; }
.muted { color: var(--muted); }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
nav a { margin-right: 1em; } nav a.current { font-weight: bold; color: var(--ink); }
"""

_SCRIPT: Final = """
(() => {
  const main = document.getElementById("overview");
  const every = Math.max(0.2, Number(main.dataset.refresh)) * 1000;
  const tick = async () => {
    try {
      const response = await fetch("overview", {cache: "no-store"});
      const text = await response.text();
      if (!response.ok) throw new Error(text.replace(/<[^>]*>/g, "").trim());
      main.innerHTML = text;
      document.body.classList.remove("stale");
    } catch (error) {
      document.getElementById("stale").textContent = "Not refreshed: " + error.message;
      document.body.classList.add("stale");
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
})();
"""


def _document(title: str, body: str, *, head: str = "") -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>{head}<style>{_STYLE}</style></head>\n<body>{body}</body></html>\n"
    )


def _header(title: str) -> str:
    return (
        '<header><h1><a href="./" style="color:inherit">fulltext-jobs</a></h1>'
        f'<span class="title">{_e(title)}</span></header>'
    )


def _page(body: str, *, refresh: float, title: str) -> str:
    return _document(
        f"fulltext-jobs: {title}" if title else "fulltext-jobs",
        f'{_header(title)}<p id="stale" role="status"></p>'
        f'<main id="overview" data-refresh="{refresh:g}">{body}</main>'
        f"<script>{_SCRIPT}</script>",
        head=f'<noscript><meta http-equiv="refresh" content="{refresh:g}"></noscript>',
    )


def _error_block(message: str) -> str:
    return f'<p class="stamp error" role="alert">Cannot read the ledger: {_e(message)}</p>'


def _error_page(message: str, title: str) -> str:
    return _document("fulltext-jobs", f"{_header(title)}<main>{_error_block(message)}</main>")


def _clock(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


_duration: Final = span_text


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return '<span class="muted">never</span>'
    return f'<span title="{_clock(moment)}">{_duration((now - moment).total_seconds())} ago</span>'


def _jobs_link(destination: str, status: JobStatus, text: str) -> str:
    query = urlencode({"destination": destination, "status": status.value})
    return f'<a href="jobs?{_e(query)}">{text}</a>'


def _overview(reading: LedgerReading) -> str:
    overview = reading.overview
    if overview is None:  # pragma: no cover - the caller checks
        return ""
    parts = [
        (
            f'<p class="stamp">Updated <time datetime="{overview.taken.isoformat()}">'
            f"{_clock(overview.taken)}</time>.</p>"
        )
    ]
    if reading.source is not None and reading.source.replica:
        # A replica's figures lag: said above them all, on every refresh.
        parts.append(
            f'<p class="stamp replica" data-source="replica" role="status">'
            f"{_e(reading.source.label())}.</p>"
        )
    if reading.health is not None:
        parts.append(_health(reading.health))
    if not overview.destinations:
        parts.append(
            '<p class="stamp">No jobs yet: <code>fulltext-jobs enqueue DESTINATION</code> '
            "creates them.</p>"
        )
    parts.extend(
        _destination(row, overview.taken, reading.ready_waiting.get(row.destination))
        for row in overview.destinations
    )
    return "\n".join(parts)


def _health(health: QueueHealth) -> str:
    """The queue health panel: what holds vacuum back, the jobs table's rows
    and (auto)vacuums, the delayed jobs ahead of due ones, and the warnings
    `fulltext-jobs audit` would give at its default thresholds."""
    warnings = health.warnings()
    oldest = health.oldest_transaction
    if health.horizon is None:
        transaction = '<dd class="muted" data-health="transaction">not applicable</dd>'
    elif oldest is None or oldest.age is None:
        transaction = '<dd data-health="transaction">none open</dd>'
    else:
        state = f", {_e(oldest.state)}" if oldest.state else ""
        transaction = (
            f'<dd data-health="transaction">{_duration(oldest.age.total_seconds())} '
            f'<span class="muted">({_e(oldest.name)}{state})</span></dd>'
        )
    others = [h for h in health.horizon or () if h.kind is not HolderKind.TRANSACTION]
    holders = "".join(
        f'<dd data-health="holder">{h.kind.value} <span class="mono">{_e(h.name)}</span>'
        f"{'' if h.xmin_age is None else f', xmin {h.xmin_age:,} transactions old'}</dd>"
        for h in others
    )
    table = health.table
    if table is None or table.dead_rows is None:
        live = "" if table is None or table.live_rows is None else f"{table.live_rows:,} live; "
        rows = f'<dd class="muted" data-health="table">{live}dead rows, vacuum: n/a</dd>'
    else:
        rows = (
            f'<dd data-health="table">{table.live_rows or 0:,} live, '
            f'<span data-health="dead">{table.dead_rows:,}</span> dead rows; '
            f"autovacuum {_when(table.last_autovacuum)}, vacuum {_when(table.last_vacuum)}, "
            f"autoanalyze {_when(table.last_autoanalyze)}</dd>"
        )
    ahead = ", ".join(
        f'<span data-delayed-ahead="{_e(row.destination)}">{_e(row.destination)}: '
        f"{row.ahead:,}{'+' if row.capped else ''}</span>"
        for row in health.delayed
        if row.ahead
    )
    flagged = "".join(f'<li data-warning="{w.check.value}">{_e(w.message)}</li>' for w in warnings)
    state = "warn" if warnings else "ok"
    flagged = f'<ul class="error">{flagged}</ul>' if flagged else ""
    holders = f"<dt>also holding vacuum</dt>{holders}" if holders else ""
    return (
        f'<section class="health" data-health="{state}"><h2><span>Queue health</span>'
        f'<span class="pct">{len(warnings)} warnings</span></h2>{flagged}'
        f"<dl><dt>oldest transaction</dt>{transaction}{holders}"
        f"<dt>jobs table</dt>{rows}"
        f'<dt>delayed ahead of due</dt><dd data-health="ahead">{ahead or "none"}</dd></dl>'
        "</section>"
    )


def _when(moment: datetime | None) -> str:
    """When `moment` was, to a person: its UTC time, or `never`."""
    return "never" if moment is None else _clock(moment)


def _destination(row: DestinationOverview, now: datetime, waiting: float | None) -> str:
    name = row.destination
    total = row.total or 1
    percent = 100 * row.done / total
    bar = "".join(
        f'<span class="{status.value}" style="width:{100 * row.count(status) / total:.3f}%" '
        f'title="{status.value}: {row.count(status)}"></span>'
        for status in STATUSES
        if row.count(status)
    )
    heads = "".join(
        f'<th class="n"><span class="key {status.value}"></span>{status.value}</th>'
        for status in STATUSES
    )
    cells = "".join(
        f'<td class="n" data-status="{status.value}">'
        f"{_jobs_link(name, status, str(row.count(status)))}</td>"
        for status in STATUSES
    )
    return (
        f'<section class="destination" data-destination="{_e(name)}">'
        f'<h2><span>{_e(name)}</span><span class="pct">{percent:.1f}% done</span></h2>'
        f"{_paused(row, now)}{_upstreams(row)}"
        f'<div class="bar" role="img" aria-label="{row.done} of {row.total} done">{bar}</div>'
        f'<table class="counts"><tr>{heads}'
        '<th class="n"><span class="key unqueued"></span>unqueued</th></tr>'
        f'<tr>{cells}<td class="n" data-status="unqueued">{_unqueued(row)}</td></tr></table>'
        f"{_rate(row.minutes, row.rate, now)}"
        f"<dl>{_oldest_running(row.oldest_running, now)}{_ready(row, now)}"
        f"{_next_ready(row.next_ready, waiting)}{_stuck(row)}</dl>"
        f"{_waiting_for_retry(name, row.waiting_for_retry, now)}"
        f"{_failures(name, row.failures, now)}"
        "</section>"
    )


def _upstreams(row: DestinationOverview) -> str:
    """The destinations it follows, with their statuses, and how many of
    their jobs have not ended: the items still to come."""
    if not row.upstreams:
        return ""
    named = ", ".join(
        f"{_e(d.upstream)} ({'/'.join(sorted(s.value for s in d.statuses))})" for d in row.upstreams
    )
    return f'<p class="upstreams">Follows {named}: {row.to_come or 0} to come.</p>'


def _paused(row: DestinationOverview, now: datetime) -> str:
    """A pause in force on the destination (until when, and why), its cap
    on running jobs and its start rate."""
    controls = row.controls
    if controls is None:
        return ""
    cap = (
        ""
        if controls.max_running is None
        else f'<p class="cap">At most {controls.max_running} running at once.</p>'
    )
    if controls.rate is not None:
        burst = "" if controls.rate_burst is None else f", {controls.rate_burst} at once"
        cap += f'<p class="rate">At most {controls.rate:g} starts a second{burst}.</p>'
    if not controls.paused(now):
        return cap
    until = (
        "until resumed"
        if controls.paused_until is None
        else f"until {_clock(controls.paused_until)}"
    )
    why = "" if controls.pause_reason is None else f": {_e(controls.pause_reason)}"
    return f'<p class="paused" role="status">Paused {until}{why}. No job of it starts.</p>{cap}'


def _unqueued(row: DestinationOverview) -> str:
    """The unqueued count, or a dash with a hint when it was not counted."""
    if row.stats.unqueued is None:
        return '<span title="not counted: start the dashboard with --unqueued">&ndash;</span>'
    return str(row.stats.unqueued)


def _rate(minutes: tuple[Minute, ...], rate: Rate, now: datetime) -> str:
    width, height, gap = 240, 48, 2
    step = width / max(1, len(minutes))
    top = max((m.done + m.failed for m in minutes), default=0) or 1
    bars = []
    for n, minute in enumerate(minutes):
        x = n * step
        done_h = height * minute.done / top
        failed_h = height * minute.failed / top
        label = f"{minute.start:%H:%M} UTC: {minute.done} done, {minute.failed} failed"
        bars.append(
            f"<g><title>{label}</title>"
            f'<rect class="done" x="{x:.1f}" y="{height - done_h:.1f}" '
            f'width="{step - gap:.1f}" height="{done_h:.1f}"></rect>'
            f'<rect class="failed" x="{x:.1f}" y="{height - done_h - failed_h:.1f}" '
            f'width="{step - gap:.1f}" height="{failed_h:.1f}"></rect></g>'
        )
    last = minutes[-1] if minutes else None
    now_rate = 0 if last is None else last.done + last.failed
    span = _duration((now - rate.since).total_seconds())
    if rate.per_minute is None:
        figure = (
            '<strong data-rate="per-minute">&ndash;</strong> jobs/min '
            f'<span class="muted">(too few jobs ended to tell: {rate.ended} in {span})</span>'
        )
    else:
        figure = (
            f'<strong data-rate="per-minute">{rate.per_minute:.1f}</strong> jobs/min '
            f"over the last {span}"
        )
    return (
        '<div class="rate">'
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="jobs ended per minute">{"".join(bars)}</svg>'
        f'<div>{figure}<br><span class="muted">this minute so far: {now_rate}</span></div>'
        "</div>"
    )


def _oldest_running(row: JobRow | None, now: datetime) -> str:
    if row is None:
        return '<dt>oldest running</dt><dd class="muted">none running</dd>'
    job = row.job
    lease = "" if job.lease_expires is None else f", lease {_lease(job.lease_expires, now)}"
    return (
        f'<dt>oldest running</dt><dd><span class="mono">{_e(job.item_id)}</span>, '
        f"started {_ago(job.started, now)}, attempt {job.attempts}{lease}</dd>"
    )


def _stuck(row: DestinationOverview) -> str:
    """The audit's counts of running jobs that no rescue returns."""
    if not row.stuck:
        return '<dt>stuck</dt><dd class="muted" data-stuck="none">none</dd>'
    parts = ", ".join(
        f'<span data-check="{check.value}">{count} {_STUCK_LABELS[check]}</span>'
        for check, count in row.stuck.items()
    )
    return (
        f'<dt>stuck</dt><dd class="error">{parts} '
        '<span class="muted">(see <span class="mono">fulltext-jobs audit</span>)</span></dd>'
    )


_STUCK_LABELS: Final = {
    AuditCheck.RUNNING_WITHOUT_LEASE: "running without a lease",
    AuditCheck.LEASE_EXPIRED_UNRESCUED: "with a lease long expired, not rescued",
}


def _lease(expires: datetime, now: datetime) -> str:
    left = (expires - now).total_seconds()
    if left < 0:
        return f'<span class="error">expired {_duration(-left)} ago</span>'
    return f"ends in {_duration(left)}"


def _ready(row: DestinationOverview, now: datetime) -> str:
    """The ready count, split into the jobs due and those waiting for a
    retry, with when the next of those is due."""
    ready = row.count(JobStatus.READY)
    retry = row.waiting_for_retry
    if not ready and not retry.count:
        return '<dt>ready</dt><dd class="muted" data-ready="none">none ready</dd>'
    if not retry.count:
        return f'<dt>ready</dt><dd data-ready="due">{ready} (all due)</dd>'
    return (
        f'<dt>ready</dt><dd data-ready="split">{ready} ({row.due} due, '
        f'<span class="retrying">{retry.count} waiting for retry</span>'
        f"{_next_retry(retry.next_due, now)})</dd>"
    )


def _next_retry(due: datetime | None, now: datetime) -> str:
    if due is None:  # pragma: no cover - read with the count
        return ""
    return f', next in <span title="{_clock(due)}">{_duration((due - now).total_seconds())}</span>'


def _next_ready(row: JobRow | None, waiting: float | None) -> str:
    if row is None:
        return '<dt>next due</dt><dd class="muted">none due</dd>'
    lag = (
        ""
        if waiting is None
        else f'<dt>lag</dt><dd data-lag="{waiting:.6f}">{_duration(waiting)} '
        '<span class="muted">(the oldest due job\'s wait)</span></dd>'
    )
    return f'<dt>next due</dt><dd><span class="mono">{_e(row.job.item_id)}</span></dd>{lag}'


def _waiting_for_retry(destination: str, retry: RetryWait, now: datetime) -> str:
    """The latest jobs waiting for a retry, each with when it is due, its
    attempts so far and the error that sent it back."""
    if not retry.count:
        return '<h3>Waiting for retry</h3><p class="muted" data-retry="none">None.</p>'
    table = "".join(
        f'<tr><td><span title="{_clock(job.not_before)}">'
        f"in {_duration((job.not_before - now).total_seconds())}</span></td>"
        f'<td class="mono">{_e(job.item_id)}</td><td class="n">{job.attempts}</td>'
        f'<td class="error" title="{_e(job.last_error or "")}">'
        f"{_e(_preview(job.last_error))}</td></tr>"
        for job in (row.job for row in retry.latest)
        if job.not_before is not None
    )
    more = _jobs_link(destination, JobStatus.READY, "all ready jobs")
    return (
        f"<h3>Waiting for retry <small>({retry.count}{_next_retry(retry.next_due, now)}; "
        f"{more})</small></h3>"
        '<table class="retries"><tr><th>due</th><th>item</th><th class="n">attempts</th>'
        f"<th>last error</th></tr>{table}</table>"
    )


def _failures(destination: str, rows: tuple[JobRow, ...], now: datetime) -> str:
    jobs = [row.job for row in rows]
    if not jobs:
        return '<h3>Latest failures</h3><p class="muted">None.</p>'
    table = "".join(
        f"<tr><td>{_ago(job.finished, now)}</td>"
        f'<td class="mono">{_e(job.item_id)}</td><td class="n">{job.attempts}</td>'
        f'<td class="error" title="{_e(job.last_error or "")}">'
        f"{_e(_preview(job.last_error))}</td></tr>"
        for job in jobs
    )
    more = _jobs_link(destination, JobStatus.FAILED, "all failed jobs")
    return (
        f"<h3>Latest failures <small>({more})</small></h3>"
        '<table class="failures"><tr><th>when</th><th>item</th><th class="n">attempts</th>'
        f"<th>last error</th></tr>{table}</table>"
    )


def _preview(text: str | None) -> str:
    if not text:
        return ""
    return text if len(text) <= ERROR_PREVIEW else text[: ERROR_PREVIEW - 1] + "…"


def _jobs_page(destination: str, status: JobStatus, jobs: Iterable[JobRow], title: str) -> str:
    now = utc()
    rows = list(jobs)
    nav = "".join(
        _jobs_link(destination, other, other.value).replace(
            "<a ", '<a class="current" ' if other is status else "<a ", 1
        )
        for other in JobStatus
    )
    body = "".join(
        f'<tr><td class="n">{"" if row.seq is None else row.seq}</td>'
        f'<td class="mono">{_e(row.job.item_id)}</td><td class="mono">{row.job.id}</td>'
        f'<td class="n">{row.job.priority}</td>'
        f"<td>{_ago(row.job.started, now)}</td><td>{_ago(row.job.finished, now)}</td>"
        f'<td class="n">{row.job.attempts}</td>'
        f'<td class="error">{_e(row.job.last_error or "")}</td></tr>'
        for row in rows
    )
    older = ""
    if len(rows) == JOBS_PAGE and rows[-1].seq is not None:
        query = urlencode(
            {"destination": destination, "status": status.value, "before": rows[-1].seq}
        )
        older = f'<p><a href="jobs?{_e(query)}">older jobs</a></p>'
    table = (
        '<table class="jobs"><tr><th class="n">seq</th><th>item</th><th>job</th>'
        '<th class="n">priority</th><th>started</th><th>finished</th><th class="n">attempts</th>'
        "<th>last error</th></tr>"
        f"{body}</table>{older}"
        if rows
        else f'<p class="muted">No {status.value} jobs.</p>'
    )
    content = (
        f"<section><h2><span>{_e(destination)}: {status.value} jobs</span>"
        f'<a href="./">overview</a></h2><nav>{nav}</nav>{table}</section>'
    )
    return _document(
        f"fulltext-jobs: {destination} {status.value}",
        f'{_header(title)}<main style="display:block">{content}</main>',
    )
