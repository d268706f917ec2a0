"""Reading and repairing the ledger: `stats`, `jobs`, `retry`, `rescue` and `audit`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Final

import typer

from fulltext_jobs.checks import MAX_INT32, MAX_LEASE, MAX_LISTED
from fulltext_jobs.cli._base import (
    DestinationArgument,
    JsonOption,
    ReadUrlOption,
    RetryStatus,
    SomeDestination,
    UrlOption,
    boundary,
    tell_source,
)
from fulltext_jobs.cli._output import (
    Upstreams,
    audit_json,
    audit_lines,
    emit_json,
    health_line,
    job_json,
    jobs_table,
    print_result,
    stats_json,
    stats_table,
    stdout_console,
)
from fulltext_jobs.domain import DestinationStats, JobStatus
from fulltext_jobs.health import (
    DEAD_ROWS_FRACTION,
    DEAD_ROWS_WARNING,
    DELAYED_AHEAD_COUNTED,
    DELAYED_AHEAD_WARNING,
    XMIN_AGE_WARNING,
    HealthThresholds,
)
from fulltext_jobs.pipeline import (
    Dependency,
    known_without_jobs,
    shown_without_jobs,
    waiting_on_upstreams,
)
from fulltext_jobs.retry import DEFAULT_RETRY

if TYPE_CHECKING:
    # Imported where used: `--help` must not pay for SQLAlchemy.
    from collections.abc import Callable, Iterable

    from sqlalchemy.engine import Engine

    from fulltext_jobs.audit import AuditProblem
    from fulltext_jobs.health import HealthWarning, QueueHealth
    from fulltext_jobs.replica import ReadSource
    from fulltext_jobs.repository import Repository
    from fulltext_jobs.sql.schema_audit import SchemaProblem


def known_without_jobs_rows(
    declared: list[Dependency],
    steered: Iterable[str],
    rows: list[DestinationStats],
    destination: str | None,
    count_unqueued: Callable[[str], int] | None,
) -> list[DestinationStats]:
    """A row for each destination `rows` lacks (it has no job yet) that
    `stats` shows all the same: every follower and every `steered` one
    (`shown_without_jobs`), or, for one `destination`, that one if a
    declaration names it or it is steered. Nothing counted but, with
    `count_unqueued`, its eligible items: for a follower, those done
    upstream that its producer has yet to queue."""
    present = [row.destination for row in rows]
    if destination is None:
        names = shown_without_jobs(declared, steered, present)
    else:
        known = known_without_jobs(declared, steered) - set(present)
        names = [destination] if destination in known else []
    return [
        DestinationStats.of(name, {}, None if count_unqueued is None else count_unqueued(name))
        for name in names
    ]


def upstreams_of(
    repo: Repository, declared: list[Dependency], rows: list[DestinationStats]
) -> dict[str, Upstreams]:
    """The upstreams (of `declared`) of each destination of `rows` that has
    any, with how many of their jobs have not ended, read from the counts
    of `rows` and, for an upstream not among them, its own."""
    declared = [d for d in declared if d.destination in {r.destination for r in rows}]
    counted = {row.destination: row for row in rows}
    for upstream in sorted({d.upstream for d in declared} - set(counted)):
        counted.update((row.destination, row) for row in repo.stats(upstream, unqueued=False))
    to_come = waiting_on_upstreams(declared, counted.values())
    return {
        name: Upstreams([d for d in declared if d.destination == name], count)
        for name, count in to_come.items()
    }


def stats(
    ctx: typer.Context,
    destination: SomeDestination = None,
    unqueued: Annotated[
        bool,
        typer.Option(
            "--unqueued",
            help="Also count the eligible items with no job yet: reads every item "
            "(seconds at millions of items).",
        ),
    ] = False,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
    read_url: ReadUrlOption = None,
) -> None:
    """Print jobs per status, per destination (and, with --unqueued, the
    items not queued yet), its lag (how long its oldest due job has
    waited), each destination's cap on running jobs, and which are paused,
    until when and why. With --read-url, read from that
    replica and say how far behind it may be."""
    with boundary(ctx, database_url, read_url=read_url) as state:
        repo = state.reader(known=destination)
        rows = repo.stats(destination, unqueued=unqueued)
        controls = {found.destination: found for found in repo.list_controls()}
        declared = repo.dependencies()  # read once, for both below
        counting = repo.count_unqueued if unqueued else None
        rows += known_without_jobs_rows(declared, controls, rows, destination, counting)
        upstreams = upstreams_of(repo, declared, rows)
        if as_json:
            emit_json(stats_json(rows, controls, upstreams))
        else:
            stdout_console().print(stats_table(rows, controls=controls, upstreams=upstreams))
        tell_source(state, as_json=as_json)


# --- jobs: a page of a destination's jobs ------------------------------------------


def jobs(
    ctx: typer.Context,
    destination: DestinationArgument,
    status: Annotated[
        list[JobStatus] | None,
        typer.Option("--status", help="Only jobs in this status (repeatable; default: all)."),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LISTED, help="At most this many jobs.")
    ] = 100,
    after: Annotated[
        str | None,
        typer.Option(
            "--after", help="Only jobs of items after this item id: the last of the previous page."
        ),
    ] = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
    read_url: ReadUrlOption = None,
) -> None:
    """Print a page of DESTINATION's jobs in item id order: id, item, status,
    priority, attempts, last error, started, finished and not-before (a
    retry's backoff). `--status failed` lists failures with their errors; feed their
    items to `retry --item`. With --read-url, read from that replica."""
    with boundary(ctx, database_url, read_url=read_url) as state:
        repo = state.reader(known=destination)
        page = repo.list_jobs(destination, statuses=status or None, limit=limit, after=after)
        if as_json:
            emit_json([job_json(job) for job in page])
        else:
            stdout_console().print(jobs_table(destination, page, repo.controls(destination)))
        tell_source(state, as_json=as_json)


def retry(
    ctx: typer.Context,
    destination: DestinationArgument,
    status: Annotated[
        list[RetryStatus] | None,
        typer.Option("--status", help="Retry jobs in this status (repeatable; default: both)."),
    ] = None,
    item: Annotated[
        list[str] | None, typer.Option("--item", help="Retry only this item's job (repeatable).")
    ] = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Return DESTINATION's failed and skipped jobs to ready, with their
    attempts back to 0 (their retry policy starts again) and their last error
    kept; print how many."""
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository(known=destination)
        statuses = [JobStatus(s.value) for s in status] if status else list(RetryStatus)
        count = repo.retry(destination, statuses=statuses, item_ids=item or None)
        print_result(
            {"destination": destination, "retried": count},
            f"returned {count} jobs of {destination!r} to ready",
            as_json=as_json,
        )


def rescue(
    ctx: typer.Context,
    destination: SomeDestination = None,
    max_attempts: Annotated[
        int, typer.Option(min=1, help="Fail a job instead once it has had this many attempts.")
    ] = DEFAULT_RETRY.max_attempts,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Give back running jobs whose lease ran out (their worker died), saying
    so in their last error, and count the attempts of jobs whose holder in
    the transaction mode died (PostgreSQL); print how many."""
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository(known=destination)
        count = repo.rescue_expired(destination, max_attempts=max_attempts)
        print_result(
            {"destination": destination, "rescued": count},
            f"rescued {count} expired jobs",
            as_json=as_json,
        )


# --- audit: the ledger's invariants ----------------------------------------------------

_DURATION = re.compile(r"(\d{1,9})([smhd])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`text` as a duration: a whole number and a unit, `s`, `m`, `h` or `d`
    (`90s`, `15m`, `1h`, `2d`). Raises `typer.BadParameter` otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        msg = f"{text!r} is not a duration such as 90s, 15m, 1h or 2d"
        raise typer.BadParameter(msg)
    value = timedelta(**{_UNITS[match[2]]: int(match[1])})
    if value > MAX_LEASE:
        msg = f"{text!r} is longer than {MAX_LEASE.days} days"
        raise typer.BadParameter(msg)
    return value


def audit(
    ctx: typer.Context,
    destination: SomeDestination = None,
    max_attempts: Annotated[
        int,
        typer.Option(min=1, help="The largest max_attempts in use; more attempts are reported."),
    ] = DEFAULT_RETRY.max_attempts,
    rescue_after: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="Report running jobs whose lease ran out longer ago than this.",
        ),
    ] = "5m",
    rescue_interval: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION", hidden=True, help="Deprecated: the old name of --rescue-after."
        ),
    ] = None,
    clock_tolerance: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="Report jobs started further in the future than this."
        ),
    ] = "5m",
    examples: Annotated[
        int, typer.Option(min=1, max=1000, help="Example job ids per finding.")
    ] = 5,
    fix: Annotated[
        bool,
        typer.Option("--fix", help="Repair what the options after it name, then audit."),
    ] = False,
    running_without_lease_older_than: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="With --fix: return running jobs with no lease, started longer ago than "
            "this, to ready (counting an attempt).",
        ),
    ] = None,
    rescue_: Annotated[
        bool,
        typer.Option("--rescue", help="With --fix: rescue expired leases, as `rescue` does."),
    ] = False,
    transaction_age: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="Warn of a transaction (or prepared one) open longer than this (PostgreSQL).",
        ),
    ] = "5m",
    xmin_age: Annotated[
        int,
        typer.Option(
            min=0,
            max=MAX_INT32,
            help="Warn of a replication slot, a standby's feedback or an unseen session "
            "holding an xmin older than this many transactions (PostgreSQL).",
        ),
    ] = XMIN_AGE_WARNING,
    dead_rows: Annotated[
        int,
        typer.Option(
            min=0,
            max=MAX_INT32,
            help="Warn of more dead rows in the jobs table than this and than "
            "--dead-fraction of its live rows (PostgreSQL).",
        ),
    ] = DEAD_ROWS_WARNING,
    dead_fraction: Annotated[
        float,
        typer.Option(min=0.0, max=1000.0, help="See --dead-rows."),
    ] = DEAD_ROWS_FRACTION,
    vacuum_age: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="Warn when dead rows are past autovacuum's trigger and the jobs table was "
            "not vacuumed for longer than this (PostgreSQL).",
        ),
    ] = "1h",
    delayed_ahead: Annotated[
        int,
        typer.Option(
            min=0,
            max=DELAYED_AHEAD_COUNTED - 1,
            help="Warn of more jobs waiting for a retry ahead of a destination's first due job.",
        ),
    ] = DELAYED_AHEAD_WARNING,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
    read_url: ReadUrlOption = None,
) -> None:
    """Check the ledger's invariants (of DESTINATION, or of all) and the
    queue's health, and print what is wrong. Exit status: 0 clean, 1
    something reported (a problem or a warning), 2 an error.

    With --fix, first repair what is safe and named: lease-less running jobs
    older than --running-without-lease-older-than, and expired leases with
    --rescue. Everything else is reported only.

    With --read-url (and without --fix) the audit reads that replica and
    says how far behind it may be; with --fix it reads the database it
    repairs, so that the audit after a repair sees it.
    """
    if rescue_interval is not None:
        rescue_after = _old_rescue_interval(ctx, rescue_interval)
    after = parse_duration(rescue_after)
    tolerance = parse_duration(clock_tolerance)
    thresholds = HealthThresholds(
        transaction_age=parse_duration(transaction_age),
        xmin_age=xmin_age,
        dead_rows=dead_rows,
        dead_fraction=dead_fraction,
        vacuum_age=parse_duration(vacuum_age),
        delayed_ahead=delayed_ahead,
    )
    older_than = _repairs(fix, running_without_lease_older_than, rescue_=rescue_)
    problems: list[AuditProblem] = []
    health: QueueHealth | None = None
    warnings: list[HealthWarning] = []
    fixed: dict[str, object] | None = None
    source: ReadSource | None = None
    try:
        with boundary(ctx, database_url, writes=fix, read_url=read_url) as state:
            if fix:
                # The audit after a repair must see it: all on the primary.
                state.read_url = None
            schema = _schema_problems(state.read_engine())
            # Outside the window the repository would refuse the database:
            # then the revision is all there is to report.
            if not any(problem.kind == "revision" for problem in schema):
                # A typo'd destination would otherwise pass as clean.
                repo = state.reader(known=destination)
                if fix:
                    fixed = {}
                    if older_than is not None:
                        released = repo.release_unleased(older_than, destination)
                        fixed["running_without_lease"] = [str(job_id) for job_id in released]
                    if rescue_:
                        rescued = repo.rescue_expired_jobs(destination, max_attempts=max_attempts)
                        fixed["rescued"] = [str(job_id) for job_id in rescued]
                problems = repo.audit(
                    destination,
                    rescue_after=after,
                    clock_tolerance=tolerance,
                    max_attempts=max_attempts,
                    examples=examples,
                )
                health = repo.queue_health(destination)
            warnings = [] if health is None else health.warnings(thresholds)
            source = state.read_source()
            _print_audit(problems, fixed, schema, health, warnings, source, as_json=as_json)
    except typer.Exit as exc:
        # An error, reported by `boundary`; 1 means "something reported" here.
        raise typer.Exit(2) from exc
    if problems or schema or warnings:
        raise typer.Exit(1)


def _repairs(
    fix: bool, running_without_lease_older_than: str | None, *, rescue_: bool
) -> timedelta | None:
    """`--running-without-lease-older-than` as a duration, once the repair
    options are found consistent with `--fix` (`typer.BadParameter` if
    not)."""
    older_than = (
        None
        if running_without_lease_older_than is None
        else parse_duration(running_without_lease_older_than)
    )
    if (older_than is not None or rescue_) and not fix:
        msg = "--running-without-lease-older-than and --rescue repair only with --fix"
        raise typer.BadParameter(msg)
    if fix and older_than is None and not rescue_:
        msg = "--fix needs --running-without-lease-older-than DURATION or --rescue"
        raise typer.BadParameter(msg)
    return older_than


def _old_rescue_interval(ctx: typer.Context, value: str) -> str:
    """`--rescue-interval`, the old name of `--rescue-after` (a worker's
    `--rescue-interval` is how often it rescues): still read, with a
    warning, unless `--rescue-after` is given too."""
    source = ctx.get_parameter_source("rescue_after")
    if getattr(source, "name", None) != "DEFAULT":
        msg = "--rescue-interval is the old name of --rescue-after; give --rescue-after only"
        raise typer.BadParameter(msg)
    typer.echo(
        "warning: --rescue-interval is deprecated; use --rescue-after, which means the same",
        err=True,
    )
    return value


def _schema_problems(engine: Engine) -> list[SchemaProblem]:

    from fulltext_jobs.sql.errors import translated  # noqa: PLC0415
    from fulltext_jobs.sql.schema_audit import schema_problems  # noqa: PLC0415

    with translated("audit"), engine.connect() as connection:
        return schema_problems(connection)


def _print_audit(
    problems: list[AuditProblem],
    fixed: dict[str, object] | None,
    schema: list[SchemaProblem],
    health: QueueHealth | None,
    warnings: list[HealthWarning],
    source: ReadSource | None,
    *,
    as_json: bool,
) -> None:
    if as_json:
        found = audit_json(problems, fixed, schema, health, warnings)
        if source is not None:
            found["source"] = {**source.as_json(), "label": source.label()}
        emit_json(found)
        return
    if fixed is not None:
        _print_fixed(fixed)
    lines = [
        f"schema: {p.kind} {p.name}: {p.problem}" + (f" ({p.found})" if p.found else "")
        for p in schema
    ]
    warned = [f"warning: {w.check.value}: {w.message}" for w in warnings]
    for line in [*lines, *audit_lines(problems), *warned] or ["clean: no problems found"]:
        typer.echo(line)
    if health is not None:
        typer.echo(health_line(health))
    if source is not None:
        typer.echo(source.label())


def _print_fixed(fixed: dict[str, object]) -> None:
    released = fixed.get("running_without_lease")
    if isinstance(released, list):
        typer.echo(f"returned {len(released)} running jobs without a lease to ready")
        for job_id in released:
            typer.echo(f"  {job_id}")
    rescued = fixed.get("rescued")
    if isinstance(rescued, list):
        typer.echo(f"rescued {len(rescued)} expired jobs")
        for job_id in rescued:
            typer.echo(f"  {job_id}")
