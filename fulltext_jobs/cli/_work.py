"""`work`: run a handler on a destination's jobs."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

import fulltext_jobs
from fulltext_jobs._defaults import OTEL_ENV
from fulltext_jobs.checks import MAX_LEASE
from fulltext_jobs.cli._base import (
    CommandError,
    DestinationArgument,
    JsonOption,
    UrlOption,
    boundary,
)
from fulltext_jobs.cli._logging import LogFormat
from fulltext_jobs.cli._output import emit_json, stderr_console, stdout_console, worker_table
from fulltext_jobs.cli._serve import prometheus_registry, serve_metrics
from fulltext_jobs.domain import JobStatus
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.retry import DEFAULT_RETRY

if TYPE_CHECKING:
    # Only for annotations: the worker and the adapter are imported (through
    # `fulltext_jobs`) when `work` runs, not at start-up.
    from fulltext_jobs.sql.repository import SqlAlchemyRepository
    from fulltext_jobs.worker import Handler


#: The most running jobs the hint after an idle stop counts.
HINT_LIMIT: Final = 1000


def load_handler(spec: str) -> Handler:
    """The callable named by `spec`, `module:attribute` (the attribute may be
    a dotted path), imported with the working directory first on `sys.path`.

    Raises `CommandError` if `spec` has no colon, the module cannot be
    imported (or fails while importing), an attribute is missing, or what it
    names is not callable.
    """
    module_name, colon, path = spec.partition(":")
    if not colon or not module_name or not path:
        msg = f"handler {spec!r} is not of the form module:function"
        raise CommandError(msg)
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the user's to fix, in one line
        msg = f"cannot import handler module {module_name!r}: {type(exc).__name__}: {exc}"
        raise CommandError(msg) from None
    for part in path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            msg = f"handler {spec!r}: {module_name!r} has no attribute {path!r}"
            raise CommandError(msg) from None
    if not callable(target):
        msg = f"handler {spec!r} is not callable (it is a {type(target).__name__})"
        raise CommandError(msg)
    return target


def _lease(seconds: float) -> timedelta:
    """`--lease` as a timedelta; `InvalidInput` for one too long to be one
    (the port bounds it further)."""
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        msg = f"a lease of {seconds:g} seconds is too long: at most {MAX_LEASE.days:,} days"
        raise InvalidInput(msg) from None


def _retry_policy(max_attempts: int, retry_delay: float) -> fulltext_jobs.RetryPolicy:
    """`--max-attempts` and `--retry-delay` as a policy (the default's cap
    and jitter); `InvalidInput` for values out of bounds."""
    try:
        base = timedelta(seconds=retry_delay)
    except OverflowError:
        msg = f"a retry delay of {retry_delay:g} s is too long: at most {MAX_LEASE.days:,} days"
        raise InvalidInput(msg) from None
    return fulltext_jobs.RetryPolicy(
        max_attempts=max_attempts, base_delay=base, max_delay=max(DEFAULT_RETRY.max_delay, base)
    )


def work(
    ctx: typer.Context,
    destination: DestinationArgument,
    handler: Annotated[
        str, typer.Option("--handler", help="The handler to run on each job: module:function.")
    ],
    concurrency: Annotated[int, typer.Option(min=1, help="Worker threads.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Jobs claimed at once.")] = 1,
    in_transaction: Annotated[
        bool,
        typer.Option(
            "--in-transaction",
            help="Transaction mode, for short handlers: hold each batch in an open transaction "
            "(the row locks are the claim, no lease) and write each job once, at the batch's "
            "end. A crash rolls the batch back, uncounted: keep the leased default for "
            "handlers that may crash the process or run long.",
        ),
    ] = False,
    poll_interval: Annotated[
        float, typer.Option(min=0.001, help="Seconds to wait when no job is ready (doubles).")
    ] = 1.0,
    shutdown_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds in-flight jobs get to finish on shutdown.")
    ] = 30.0,
    lease: Annotated[
        float,
        typer.Option(
            min=1,
            help="Seconds a claim lasts without a heartbeat; the worker heartbeats at a third "
            "of it. A job whose worker died returns to ready this long after its last heartbeat.",
        ),
    ] = fulltext_jobs.DEFAULT_LEASE.total_seconds(),
    max_attempts: Annotated[
        int,
        typer.Option(
            min=1,
            help="A job fails for good once it has had this many attempts (claims): a "
            "handler's exception is retried after a backoff until then, and so, with "
            "--produce, is a job whose lease ran out. 1: never retry.",
        ),
    ] = DEFAULT_RETRY.max_attempts,
    retry_delay: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds before the first retry of a job whose handler raised; each "
            "further retry waits twice as long, at most "
            f"{DEFAULT_RETRY.max_delay.total_seconds() / 60:g} minutes (or this delay, if "
            f"longer), plus up to {DEFAULT_RETRY.jitter:.0%} at random.",
        ),
    ] = DEFAULT_RETRY.base_delay.total_seconds(),
    rate_limit: Annotated[
        float | None,
        typer.Option(
            help="At most this many job starts a second for DESTINATION, across every "
            "worker sharing the database (a token bucket kept in it). Overrides the rate an "
            "operator set with `limit DESTINATION --rate`, which the worker keeps to without it.",
        ),
    ] = None,
    rate_burst: Annotated[
        int | None,
        typer.Option(
            help="With --rate-limit: the most job starts at once after an idle spell "
            "(default: --batch-size).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds a handler may take on a job: past it the job fails (and is retried "
            "as any failure), the handler's late result is dropped.",
        ),
    ] = None,
    produce: Annotated[
        bool, typer.Option("--produce", help="Also enqueue unqueued items and rescue expired jobs.")
    ] = False,
    sweep_interval: Annotated[
        float,
        typer.Option(
            min=0,
            help="With --produce: seconds between full sweeps of the items, which find "
            "items that became eligible late; in between, only new items are queued "
            "(cheap). 0: sweep whenever idle.",
        ),
    ] = fulltext_jobs.DEFAULT_SWEEP_INTERVAL.total_seconds(),
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Stop once no job is ready (instead of polling).")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve the worker's Prometheus metrics on this port (0: any free port); "
            "needs the metrics extra.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="The address the metrics are served on.")
    ] = "127.0.0.1",
    otel: Annotated[
        bool,
        typer.Option(
            "--otel",
            envvar=OTEL_ENV,
            help="Send a span per handler run and the worker's counters through "
            "OpenTelemetry's global providers (set up by the app, or by "
            "opentelemetry-instrument from OTEL_* variables); needs the otel extra.",
        ),
    ] = False,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Run the handler on DESTINATION's jobs until SIGINT or SIGTERM (or,
    with --until-idle, until none is ready), then print what was done.

    A signal stops claiming, lets the jobs in flight finish within
    --shutdown-timeout, returns the rest to ready, and exits 0.
    """
    with boundary(ctx, database_url, writes=True) as state:
        run = load_handler(handler)
        metrics = None
        serving: AbstractContextManager[object] = nullcontext()
        if metrics_port is not None:
            from fulltext_jobs.metrics import WorkerMetrics  # noqa: PLC0415 - only with metrics

            metrics = WorkerMetrics(prometheus_registry())
            serving = serve_metrics(metrics, destination, metrics_host, metrics_port)
        telemetry = None
        if otel:
            from fulltext_jobs.telemetry import Telemetry  # noqa: PLC0415 - only with --otel

            telemetry = Telemetry()
        # Fail fast on a database that is down or not migrated; once running,
        # the worker rides out outages (it backs off and tries again).
        repo = state.repository(
            known=None if produce else destination,
            reachable=True,
            lease=_lease(lease),
        )
        worker = fulltext_jobs.Worker(
            repo,
            destination,
            run,
            concurrency=concurrency,
            batch_size=batch_size,
            in_transaction=in_transaction,
            poll_interval=poll_interval,
            max_poll_interval=max(30.0, poll_interval),
            shutdown_timeout=shutdown_timeout,
            produce=produce,
            sweep_interval=sweep_interval,
            retry=_retry_policy(max_attempts, retry_delay),
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            timeout=timeout,
            metrics=metrics,
            telemetry=telemetry,
        )
        from fulltext_jobs.cli._progress import WorkProgress  # noqa: PLC0415 - not at start-up

        console = stderr_console()
        show = console.is_terminal and state.log_format is LogFormat.PLAIN
        with serving, WorkProgress(worker, destination, console) if show else nullcontext():
            stats = worker.run(until_idle=until_idle)
        if as_json:
            emit_json({"destination": destination, **dataclasses.asdict(stats)})
        else:
            stdout_console().print(worker_table(destination, stats))
        if until_idle:
            _hint_running(repo, destination)


def _hint_running(repo: SqlAlchemyRepository, destination: str) -> None:
    """After an idle stop: jobs still `running` are another worker's (this
    one released what it held), alive or dead. Say so, and how a dead
    worker's jobs come back, since an idle stop reads as "all done". The
    look is a page of running jobs (the running-jobs index), not a count of
    every job of the destination."""
    running = len(repo.list_jobs(destination, statuses=[JobStatus.RUNNING], limit=HINT_LIMIT))
    if running:
        logging.getLogger("fulltext_jobs.cli").warning(
            "%s jobs of %s are still running, held by other workers; if a worker died, "
            "`fulltext-jobs rescue %s` returns its jobs once their lease has run out",
            f"{running}" if running < HINT_LIMIT else f"at least {running}",
            destination,
            destination,
        )
