"""`demo`: the main job end to end on a bundled sample."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import typer

from fulltext_jobs._defaults import DEFAULT_DEMO_URL
from fulltext_jobs.cli._base import INTERRUPTED, JsonOption, UrlOption, boundary, invocation
from fulltext_jobs.cli._logging import LogFormat
from fulltext_jobs.cli._output import (
    emit_json,
    progress_bar,
    stats_json,
    stats_table,
    stderr_console,
    stdout_console,
)

if TYPE_CHECKING:
    # Imported where used: the demo (SQLAlchemy, the worker) is not for
    # `--help` nor the other commands to pay for.
    from rich.progress import TaskID
    from sqlalchemy.engine import Engine

    from fulltext_jobs.cli import _demo_app as demo_module


def _demo_json(engine: Engine, report: demo_module.DemoReport) -> dict[str, object]:
    return {
        "database": engine.url.render_as_string(hide_password=True),
        "items_added": report.items_added,
        "jobs_created": report.jobs_created,
        "stats": stats_json(report.stats),
        "samples": [dataclasses.asdict(sample) for sample in report.samples],
        "interrupted": report.interrupted,
    }


def _print_demo(engine: Engine, report: demo_module.DemoReport) -> None:
    from fulltext_jobs.cli import _demo_app as demo_module  # noqa: PLC0415 - not at start-up

    out = stdout_console()
    out.print(f"database: {engine.url.render_as_string(hide_password=True)}")
    out.print(f"items added: {report.items_added}")
    for destination, created in report.jobs_created.items():
        out.print(f"jobs created for {destination}: {created}")
    out.print(stats_table(report.stats, title="jobs"))
    out.print(demo_module.samples_table(report.samples))


def _demo_url(ctx: typer.Context, database_url: str | None) -> str:
    """The demo's database: the command's own `--database-url`, else the
    global one if it was typed on the command line, else the demo's own
    file. The environment variable and the main default are passed over on
    purpose: they name where an app keeps its jobs."""
    if database_url is not None:
        return database_url
    root = ctx.find_root()
    source = root.get_parameter_source("database_url")
    # typer ships its own click: compare the source by name.
    if getattr(source, "name", None) == "COMMANDLINE":
        return str(root.params["database_url"])
    return DEFAULT_DEMO_URL


def demo(ctx: typer.Context, as_json: JsonOption = False, database_url: UrlOption = None) -> None:
    """Run the main job end to end on a bundled sample: migrate, load 200
    items with short texts, queue them for demo-word-count and
    demo-language-detection, work them off, and print the stats and a few
    results. Idempotent.

    It writes to its own SQLite file, ./fulltext-jobs-demo.sqlite3, unless
    --database-url is given on the command line (FULLTEXT_JOBS_DATABASE_URL,
    which points at an app's database, is ignored), and it refuses, changing
    nothing, a database that holds items, jobs or tables it did not create."""
    from rich.progress import MofNCompleteColumn  # noqa: PLC0415 - not at start-up

    from fulltext_jobs.cli import _demo_app as demo_module  # noqa: PLC0415 - not at start-up

    with boundary(ctx, _demo_url(ctx, database_url), creates=True, writes=True) as state:
        engine = state.engine()
        console = stderr_console()
        with progress_bar(console, MofNCompleteColumn(), transient=False) as progress:
            tasks: dict[str, TaskID] = {}

            def start(destination: str, total: int, done: int) -> None:
                tasks[destination] = progress.add_task(destination, total=total, completed=done)

            def advance(destination: str) -> None:
                progress.advance(tasks[destination])

            report = demo_module.run(engine, on_start=start, on_job=advance)
        if as_json:
            emit_json(_demo_json(engine, report))
        else:
            _print_demo(engine, report)
    if report.interrupted:
        message = "interrupted: run the demo again to finish its jobs"
        if invocation(ctx).log_format is LogFormat.JSON:
            logging.getLogger("fulltext_jobs.cli").warning(message)
        else:
            typer.echo(message, err=True)
        raise typer.Exit(INTERRUPTED)
