"""How results are printed: consoles, JSON, progress bars, and the tables and
JSON objects of each command's result."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from fulltext_jobs.domain import (
    DestinationControls,
    DestinationStats,
    FullText,
    JobStatus,
)
from fulltext_jobs.health import span_text
from fulltext_jobs.pipeline import Dependency

if TYPE_CHECKING:
    # Imported where used: `--help` and the commands without a progress bar
    # or a worker need none of them (schema_audit imports SQLAlchemy).
    from rich.progress import Progress, ProgressColumn

    from fulltext_jobs.audit import AuditProblem
    from fulltext_jobs.health import HealthWarning, QueueHealth
    from fulltext_jobs.sql.schema_audit import SchemaProblem
    from fulltext_jobs.worker import WorkerStats

#: The columns of the stats table, in order, after the destination.
STATS_COLUMNS: Final = (
    JobStatus.READY,
    JobStatus.RUNNING,
    JobStatus.FINISHED,
    JobStatus.FAILED,
    JobStatus.SKIPPED,
)

#: How every table is drawn: a rule under the header, no frame, so that the
#: stats table fits 80 columns.
TABLE_STYLE: Final[dict[str, Any]] = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False}


# --- consoles and JSON -----------------------------------------------------------


#: The width of tables written off a terminal (a pipe, a file) when
#: COLUMNS does not say: wide enough that a row stays one line, for grep.
PIPED_WIDTH: Final = 200


#: How every console prints: data as it is. Item ids, destinations and
#: errors are the ledger's data, and rich would otherwise read `[/x]` in one
#: as markup (and fail on it) and `:smile:` as an emoji code.
PLAIN: Final[dict[str, Any]] = {"highlight": False, "markup": False, "emoji": False}


def stdout_console() -> Console:
    console = Console(**PLAIN)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        return Console(**PLAIN, width=PIPED_WIDTH)
    return console


def stderr_console() -> Console:
    return Console(stderr=True, **PLAIN)


def emit_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2))


def print_result(data: dict[str, object], text: str, *, as_json: bool) -> None:
    """Print a command's result: `data` as JSON, or `text`."""
    if as_json:
        emit_json(data)
    else:
        typer.echo(text)


def progress_bar(console: Console, *extra: ProgressColumn, transient: bool = True) -> Progress:
    """A progress bar on `console`, drawn only if it is a terminal."""
    from rich.progress import (  # noqa: PLC0415 - not at start-up
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        # The description names a file or a destination: plain text, as in
        # `PLAIN`, not markup.
        TextColumn("{task.description}", style="progress.description", markup=False),
        BarColumn(),
        *(extra or (MofNCompleteColumn(), TaskProgressColumn())),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )


def stats_table(
    rows: Iterable[DestinationStats],
    title: str | None = None,
    controls: Mapping[str, DestinationControls] | None = None,
    upstreams: Mapping[str, Upstreams] | None = None,
) -> Table:
    """The stats of each destination as a table: jobs per status, the
    eligible items that have no job yet ("-" where not counted), and the
    lag (how long the oldest due job has waited; "-" when none is due); with
    `controls` (what is set per destination, by name), a column with the
    cap on running jobs if any destination has one, one with the start
    rate if any has one, and one saying which are paused, until when and
    why, if any is; with `upstreams` (by follower), a column naming each
    one's upstreams and how many of their jobs have not ended."""
    rows = list(rows)
    table = Table(title=title, **TABLE_STYLE)
    table.add_column("destination", no_wrap=True)
    for status in STATS_COLUMNS:
        table.add_column(status.value, justify="right")
    table.add_column("unqueued", justify="right")
    table.add_column("lag", justify="right")
    optional = _optional_columns(controls or {}, upstreams or {})
    for header, _ in optional:
        words = header in {"paused", "upstreams"}
        table.add_column(header, justify="left" if words else "right", overflow="fold")
    for row in rows:
        table.add_row(
            row.destination,
            *(str(row.counts.get(status, 0)) for status in STATS_COLUMNS),
            "-" if row.unqueued is None else str(row.unqueued),
            "-" if row.lag is None else span_text(row.lag.total_seconds()),
            *(cells.get(row.destination, "") for _, cells in optional),
        )
    return table


def _optional_columns(
    controls: Mapping[str, DestinationControls], upstreams: Mapping[str, Upstreams]
) -> list[tuple[str, dict[str, str]]]:
    """The stats table's columns shown only if some destination has a
    value: each header with its cells by destination."""
    now = datetime.now(UTC)
    columns = [
        ("max running", {n: str(c.max_running) for n, c in controls.items() if c.max_running}),
        ("rate", {n: rate_cell(c) for n, c in controls.items() if c.rate is not None}),
        ("paused", {n: _pause_cell(c) for n, c in controls.items() if c.paused(now)}),
        ("upstreams", {n: _upstreams_cell(u) for n, u in upstreams.items()}),
    ]
    return [(header, cells) for header, cells in columns if cells]


def _pause_cell(controls: DestinationControls) -> str:
    """A pause in force, in a table's cell: until when, and why."""
    until = (
        "until resumed"
        if controls.paused_until is None
        else f"until {controls.paused_until.strftime('%Y-%m-%d %H:%M:%S UTC')}"
    )
    return until if controls.pause_reason is None else f"{until}: {controls.pause_reason}"


def stats_json(
    rows: Iterable[DestinationStats],
    controls: Mapping[str, DestinationControls] | None = None,
    upstreams: Mapping[str, Upstreams] | None = None,
) -> list[dict[str, object]]:
    """The stats of each destination as JSON objects, one per destination:
    `destination`, a count per status, `unqueued` (null where not
    counted), `lag_seconds` (how long the oldest due job has waited, exact
    to the microsecond; null when none is due), `max_running` (its cap,
    null if none), `rate` and `rate_burst` (its start rate and burst, null
    if none), `pause`: null, or
    the pause in force (`paused_at`, `paused_until`, null until resumed,
    and `pause_reason`), `upstreams` (each with its `statuses`; empty if
    none) and `to_come` (how many of the upstreams' jobs have not ended;
    null without upstreams)."""
    now = datetime.now(UTC)
    found = controls or {}

    def pause(destination: str) -> dict[str, object] | None:
        one = found.get(destination)
        if one is None or not one.paused(now):
            return None
        return {
            "paused_at": _iso(one.paused_at),
            "paused_until": _iso(one.paused_until),
            "pause_reason": one.pause_reason,
        }

    def limits(destination: str) -> dict[str, object]:
        one = found.get(destination) or DestinationControls(destination)
        return {"max_running": one.max_running, "rate": one.rate, "rate_burst": one.rate_burst}

    return [
        {
            "destination": row.destination,
            **{status.value: row.counts.get(status, 0) for status in STATS_COLUMNS},
            "unqueued": row.unqueued,
            "lag_seconds": None if row.lag is None else row.lag.total_seconds(),
            **limits(row.destination),
            "pause": pause(row.destination),
            **_upstreams_json((upstreams or {}).get(row.destination)),
        }
        for row in rows
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class Upstreams:
    """A follower's upstreams, and how many of their jobs have not ended
    (ready or running): the items still to come from them."""

    dependencies: Sequence[Dependency]
    to_come: int


def _upstreams_cell(found: Upstreams) -> str:
    return f"{_named(found.dependencies)}; {found.to_come} to come"


def _upstreams_json(found: Upstreams | None) -> dict[str, object]:
    if found is None:
        return {"upstreams": [], "to_come": None}
    return {
        "upstreams": [_dependency_json(d) for d in found.dependencies],
        "to_come": found.to_come,
    }


def _named(dependencies: Iterable[Dependency]) -> str:
    """Upstreams as text: "fetch (finished), language (finished/skipped)"."""
    return ", ".join(
        f"{d.upstream} ({'/'.join(sorted(s.value for s in d.statuses))})" for d in dependencies
    )


def _dependency_json(dependency: Dependency) -> dict[str, object]:
    return {
        "upstream": dependency.upstream,
        "statuses": sorted(s.value for s in dependency.statuses),
    }


def dependencies_text(destination: str, found: Sequence[Dependency]) -> str:
    """A destination's upstreams as a sentence."""
    if not found:
        return f"{destination!r} follows no destination"
    return f"{destination!r} follows {_named(found)}"


def dependencies_json(destination: str, found: Sequence[Dependency]) -> dict[str, object]:
    """A destination's upstreams as JSON: `destination`, and `upstreams`
    (each `upstream` and its `statuses`)."""
    return {"destination": destination, "upstreams": [_dependency_json(d) for d in found]}


def controls_text(controls: DestinationControls, now: datetime | None = None) -> str:
    """What is set for a destination, as a sentence: "'lang' is paused until
    2026-12-06 08:00:00 UTC: reason; at most 8 of its jobs running at
    once", or "'lang' is not paused; no cap on its running jobs"."""
    moment = now or datetime.now(UTC)
    name = repr(controls.destination)
    paused = f"is paused {_pause_cell(controls)}" if controls.paused(moment) else "is not paused"
    capped = (
        "no cap on its running jobs"
        if controls.max_running is None
        else f"at most {controls.max_running} of its jobs running at once"
    )
    rated = "no start rate" if controls.rate is None else f"at most {rate_cell(controls)}"
    return f"{name} {paused}; {capped}; {rated}"


def rate_cell(controls: DestinationControls) -> str:
    """A destination's start rate, in a table's cell ("" if none): "20
    starts/s", with ", 5 at once" if its burst is set."""
    if controls.rate is None:
        return ""
    burst = "" if controls.rate_burst is None else f", {controls.rate_burst} at once"
    return f"{controls.rate:g} starts/s{burst}"


def controls_json(controls: DestinationControls, now: datetime | None = None) -> dict[str, object]:
    """What is set for a destination, as JSON: `destination`, `paused`
    (whether a pause is in force now), `paused_at`, `paused_until` and
    `pause_reason` (ISO 8601 times, null where not set), `max_running`
    (null: no cap), `rate` and `rate_burst` (null: none set)."""
    moment = now or datetime.now(UTC)
    return {
        "destination": controls.destination,
        "paused": controls.paused(moment),
        "paused_at": _iso(controls.paused_at),
        "paused_until": _iso(controls.paused_until),
        "pause_reason": controls.pause_reason,
        "max_running": controls.max_running,
        "rate": controls.rate,
        "rate_burst": controls.rate_burst,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def worker_table(destination: str, stats: WorkerStats) -> Table:
    """What a worker run did, one row a counter."""
    from fulltext_jobs.worker import WorkerStats  # noqa: PLC0415 - not at start-up

    table = Table(title=f"worker: {destination}", **TABLE_STYLE)
    table.add_column("jobs")
    table.add_column("count", justify="right")
    for field in dataclasses.fields(WorkerStats):
        table.add_row(field.name.replace("_", " "), str(getattr(stats, field.name)))
    return table


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _to_the_second(moment: datetime | None) -> str:
    """`moment` in UTC to the second, as a table shows it ("" for None);
    the JSON keeps the full ISO form."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def job_json(job: FullText) -> dict[str, object]:
    """A job as a JSON object: what `jobs` shows of it."""
    return {
        "id": str(job.id),
        "item_id": job.item_id,
        "destination": job.destination,
        "status": job.status.value,
        "priority": job.priority,
        "attempts": job.attempts,
        "last_error": job.last_error,
        "started": _when(job.started),
        "finished": _when(job.finished),
        "not_before": _when(job.not_before),
    }


def jobs_table(
    destination: str, jobs: Iterable[FullText], controls: DestinationControls | None = None
) -> Table:
    """A page of jobs as a table, one row a job; the title says if the
    destination is paused (`controls`)."""
    title = f"jobs: {destination}"
    if controls is not None and controls.paused(datetime.now(UTC)):
        title += f" (paused {_pause_cell(controls)})"
    table = Table(title=title, **TABLE_STYLE)
    table.add_column("id", no_wrap=True)
    table.add_column("item", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("priority", justify="right")
    table.add_column("attempts", justify="right")
    table.add_column("last error", overflow="fold")
    for name in ("started", "finished", "not before"):
        table.add_column(f"{name} (UTC)", no_wrap=True)
    for job in jobs:
        table.add_row(
            str(job.id),
            job.item_id,
            job.status.value,
            str(job.priority),
            str(job.attempts),
            job.last_error or "",
            _to_the_second(job.started),
            _to_the_second(job.finished),
            _to_the_second(job.not_before),
        )
    return table


def audit_json(
    problems: list[AuditProblem],
    fixed: dict[str, object] | None,
    schema: list[SchemaProblem] | None = None,
    health: QueueHealth | None = None,
    warnings: Sequence[HealthWarning] = (),
) -> dict[str, object]:
    """The stable JSON of `fulltext-jobs audit` (documented in docs/cli.md)."""
    schema = schema or []
    return {
        "clean": not problems and not schema and not warnings,
        "problems": [
            {
                "destination": problem.destination,
                "check": problem.check.value,
                "count": problem.count,
                "examples": [str(job_id) for job_id in problem.examples],
                "oldest_started": (
                    None if problem.oldest_started is None else problem.oldest_started.isoformat()
                ),
            }
            for problem in problems
        ],
        "schema": [dataclasses.asdict(problem) for problem in schema],
        "fixed": fixed,
        "warnings": [
            {
                "check": warning.check.value,
                "destination": warning.destination,
                "value": warning.value,
                "threshold": warning.threshold,
                "message": warning.message,
            }
            for warning in warnings
        ],
        "health": None if health is None else health_json(health),
    }


def health_json(health: QueueHealth) -> dict[str, object]:
    """A queue health reading as `audit --json` gives it (docs/cli.md):
    spans in seconds, times in ISO 8601, None where not applicable."""
    oldest = health.oldest_transaction
    table = health.table
    return {
        "store": health.store,
        "oldest_transaction_seconds": _seconds(None if oldest is None else oldest.age),
        "horizon": None
        if health.horizon is None
        else [
            {
                "kind": holder.kind.value,
                "name": holder.name,
                "age_seconds": _seconds(holder.age),
                "xmin_age": holder.xmin_age,
                "state": holder.state,
                "application": holder.application,
            }
            for holder in health.horizon
        ],
        "unseen_sessions": health.unseen_sessions,
        "table": None
        if table is None
        else {
            "live_rows": table.live_rows,
            "dead_rows": table.dead_rows,
            "last_vacuum": _when(table.last_vacuum),
            "last_autovacuum": _when(table.last_autovacuum),
            "last_analyze": _when(table.last_analyze),
            "last_autoanalyze": _when(table.last_autoanalyze),
            "since_vacuum_seconds": _seconds(table.since_vacuum),
            "autovacuum_trigger": table.autovacuum_trigger,
        },
        "delayed": [
            {
                "destination": row.destination,
                "delayed": row.delayed,
                "ahead": row.ahead,
                "capped": row.capped,
            }
            for row in health.delayed
        ],
        "notes": list(health.notes),
    }


def health_line(health: QueueHealth) -> str:
    """The queue health reading in one line of `audit`'s text: the oldest
    transaction, the jobs table's rows and last autovacuum, and the delayed
    jobs ahead of due ones; `n/a` where not applicable."""
    if health.horizon is None:
        transaction = "n/a"
    else:
        oldest = health.oldest_transaction
        transaction = (
            "none open"
            if oldest is None or oldest.age is None
            else f"{span_text(oldest.age.total_seconds())} ({oldest.name})"
        )
    table = health.table
    if table is None:
        rows = "n/a"
    elif table.dead_rows is None:
        rows = f"{table.live_rows:,} live, dead n/a"
    else:
        vacuumed = table.last_autovacuum
        rows = f"{table.live_rows or 0:,} live, {table.dead_rows:,} dead, last autovacuum " + (
            "never" if vacuumed is None else f"{_to_the_second(vacuumed)} UTC"
        )
    ahead = ", ".join(
        f"{row.destination} {row.ahead:,}{'+' if row.capped else ''}"
        for row in health.delayed
        if row.ahead
    )
    return (
        f"health: oldest transaction {transaction}; jobs table {rows}; "
        f"delayed ahead of due {ahead or 'none'}"
    )


def _seconds(span: timedelta | None) -> float | None:
    return None if span is None else span.total_seconds()


def audit_lines(problems: list[AuditProblem]) -> list[str]:
    """The audit's findings, one line each (a cron mail, a grep): the
    destination, the check, how many jobs, example ids, and the oldest start
    of lease-less running jobs."""
    lines = []
    for problem in problems:
        line = f"{problem.destination}: {problem.check.value}: {problem.count} jobs"
        if problem.oldest_started is not None:
            line += f", oldest started {problem.oldest_started.isoformat()}"
        examples = " ".join(str(job_id) for job_id in problem.examples)
        lines.append(f"{line} (e.g. {examples})")
    return lines
