"""Steering the fleet: `pause` and `resume` a destination, and `limit` its
jobs running at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from fulltext_jobs.checks import MAX_RUNNING
from fulltext_jobs.cli._base import DestinationArgument, JsonOption, UrlOption, boundary
from fulltext_jobs.cli._ledger import parse_duration
from fulltext_jobs.cli._output import controls_json, controls_text, print_result

if TYPE_CHECKING:
    from datetime import timedelta


def parse_moment(text: str) -> datetime:
    """`text` as an aware moment: ISO 8601 with a zone (`2026-12-06T08:00Z`,
    `2026-12-06 09:00+01:00`). Raises `typer.BadParameter` otherwise: a
    time without a zone would be a guess."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"{text!r} is not a time such as 2026-12-06T08:00Z"
        raise typer.BadParameter(msg) from None
    if moment.tzinfo is None:
        msg = f"{text!r} has no time zone: add Z for UTC, or an offset such as +01:00"
        raise typer.BadParameter(msg)
    return moment


def pause(
    ctx: typer.Context,
    destination: DestinationArgument,
    for_: Annotated[
        str | None,
        typer.Option(
            "--for",
            help="End the pause after this long (90s, 15m, 1h, 2d). Default: until resumed.",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="End the pause at this time, ISO 8601 with a zone (2026-12-06T08:00Z).",
            show_default=False,
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why, for the workers' logs, stats and the dashboard."),
    ] = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Pause DESTINATION: no worker of the fleet starts a job of it until the
    pause ends (--for, --until) or `resume`; jobs already running finish."""
    if for_ is not None and until is not None:
        msg = "give --for or --until, not both"
        raise typer.BadParameter(msg)
    duration: timedelta | None = None if for_ is None else parse_duration(for_)
    end = None if until is None else parse_moment(until)
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository(known=destination)
        if duration is not None:
            end = datetime.now(UTC) + duration
        controls = repo.pause(destination, until=end, reason=reason)
        print_result(controls_json(controls), controls_text(controls), as_json=as_json)


def resume(
    ctx: typer.Context,
    destination: DestinationArgument,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """End DESTINATION's pause: its workers start jobs again (at once on
    PostgreSQL, at their next poll on SQLite)."""
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository(known=destination)
        controls = repo.resume(destination)
        print_result(controls_json(controls), controls_text(controls), as_json=as_json)


def parse_max_running(text: str) -> int | None:
    """`text` as a cap on running jobs: a whole number from 1, or `none` (no
    cap). Raises `typer.BadParameter` otherwise."""
    value = text.strip().lower()
    if value == "none":
        return None
    if not value.isdecimal() or int(value) < 1 or int(value) > MAX_RUNNING:
        msg = f"{text!r} is not a whole number from 1 to {MAX_RUNNING}, nor none"
        raise typer.BadParameter(msg)
    return int(value)


def limit(
    ctx: typer.Context,
    destination: DestinationArgument,
    max_running: Annotated[
        str,
        typer.Option(
            "--max-running",
            help="At most this many of DESTINATION's jobs running at once, across the fleet; "
            "none removes the cap.",
            show_default=False,
        ),
    ],
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Cap DESTINATION's jobs running at once, across every worker on every
    machine (--max-running N), or remove the cap (--max-running none).
    Jobs already running are not stopped."""
    cap = parse_max_running(max_running)
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository(known=destination)
        controls = repo.limit(destination, max_running=cap)
        print_result(controls_json(controls), controls_text(controls), as_json=as_json)
