"""Steering the fleet: `pause` and `resume` a destination, `limit` its jobs
running at once, `cancel` jobs."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Final

import typer

from fulltext_jobs.checks import MAX_RUNNING
from fulltext_jobs.cli._base import DestinationArgument, JsonOption, UrlOption, boundary
from fulltext_jobs.cli._items import batches, item_ids, open_source
from fulltext_jobs.cli._ledger import parse_duration
from fulltext_jobs.cli._output import controls_json, controls_text, print_result
from fulltext_jobs.domain import KEEP, JobStatus
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.rate_limit import MAX_BURST, check_rate

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


def parse_rate(text: str) -> float | None:
    """`text` as job starts a second: a number from one a week to
    100,000, or `none` (no rate). Raises `typer.BadParameter` otherwise."""
    value = text.strip().lower()
    if value == "none":
        return None
    try:
        return check_rate(float(value), "--rate")
    except (ValueError, InvalidInput):
        msg = f"{text!r} is not a number of job starts a second from one a week to 100000, nor none"
        raise typer.BadParameter(msg) from None


def parse_burst(text: str) -> int | None:
    """`text` as the most starts at once: a whole number from 1 to
    10,000, or `none` (a claim's worth). Raises `typer.BadParameter`
    otherwise."""
    value = text.strip().lower()
    if value == "none":
        return None
    if not value.isdecimal() or not 1 <= int(value) <= MAX_BURST:
        msg = f"{text!r} is not a whole number from 1 to {MAX_BURST}, nor none"
        raise typer.BadParameter(msg)
    return int(value)


def limit(
    ctx: typer.Context,
    destination: DestinationArgument,
    max_running: Annotated[
        str | None,
        typer.Option(
            "--max-running",
            help="At most this many of DESTINATION's jobs running at once, across the fleet; "
            "none removes the cap.",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate",
            help="At most this many job starts a second, across the fleet (a worker's own "
            "--rate-limit overrides it); none removes it.",
            show_default=False,
        ),
    ] = None,
    burst: Annotated[
        str | None,
        typer.Option(
            "--burst",
            help="At most this many starts at once under --rate; none: a claim's worth "
            "(each worker's --batch-size).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Set DESTINATION's limits, which every worker on every machine obeys:
    a cap on its jobs running at once (--max-running N) and a start rate
    (--rate R, at most --burst B at once); `none` removes one. A limit not
    given is left as it is. Jobs already running are not stopped; workers
    keep to a new rate within a second."""
    if max_running is None and rate is None and burst is None:
        msg = "give --max-running, --rate or --burst"
        raise typer.BadParameter(msg)
    limits = {
        "max_running": KEEP if max_running is None else parse_max_running(max_running),
        "rate": KEEP if rate is None else parse_rate(rate),
        "burst": KEEP if burst is None else parse_burst(burst),
    }
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository(known=destination)
        controls = repo.limit(destination, **limits)  # type: ignore[arg-type]
        print_result(controls_json(controls), controls_text(controls), as_json=as_json)


class CancelStatus(enum.StrEnum):
    """The statuses `cancel --status` cancels every job of."""

    READY = JobStatus.READY.value


#: How many ids of an item file one `Repository.cancel` call is given: a
#: file of millions of ids is never held in memory at once.
CANCEL_FILE_BATCH: Final = 10_000


def cancel(
    ctx: typer.Context,
    destination: DestinationArgument,
    item: Annotated[
        list[str] | None,
        typer.Option("--item", help="Cancel this item's job (repeatable).", show_default=False),
    ] = None,
    items: Annotated[
        str | None,
        typer.Option(
            "--items",
            help="Cancel the jobs of the item ids in this file, one a line (-: stdin).",
            show_default=False,
        ),
    ] = None,
    status: Annotated[
        CancelStatus | None,
        typer.Option("--status", help="Cancel every job in this status.", show_default=False),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why: kept in each job's last error after 'cancelled: '."),
    ] = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Cancel jobs of DESTINATION (--item, --items or --status ready): each
    ends skipped, with the reason, and is not retried; print how many.

    A ready job is skipped at once, with 'cancelled: ' and the reason as its
    last error; a running one is asked to stop, and its worker saves it so
    once it hears (within a second on PostgreSQL, at the job's next
    heartbeat on SQLite). --items is read and cancelled in batches: at a bad line the
    command stops, and the batches before it stay cancelled."""
    if sum(given is not None for given in (item, items, status)) != 1:
        msg = "give one of --item, --items and --status"
        raise typer.BadParameter(msg)
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository(known=destination)
        skipped = requested = 0
        if items is not None:
            with open_source(items) as (stream, _, name):
                for batch in batches(item_ids(stream, name, lambda _: None), CANCEL_FILE_BATCH):
                    done = repo.cancel(destination, item_ids=batch, reason=reason)
                    skipped += len(done.skipped)
                    requested += len(done.requested)
        else:
            done = repo.cancel(
                destination, item_ids=item, all_ready=status is not None, reason=reason
            )
            skipped, requested = len(done.skipped), len(done.requested)
        print_result(
            {"destination": destination, "skipped": skipped, "requested": requested},
            f"cancelled jobs of {destination!r}: {skipped} ready skipped, "
            f"{requested} running asked to stop",
            as_json=as_json,
        )


#: How many ids of an item file one `Repository.prioritize` call is given:
#: a file of millions of ids is never held in memory at once.
PRIORITIZE_FILE_BATCH: Final = 10_000


def prioritize(
    ctx: typer.Context,
    destination: DestinationArgument,
    priority: Annotated[
        int,
        typer.Option(
            "--priority",
            help="The new priority, from -32767 to 32767: claims take the highest first.",
            show_default=False,
        ),
    ],
    item: Annotated[
        list[str] | None,
        typer.Option("--item", help="This item's job (repeatable).", show_default=False),
    ] = None,
    items: Annotated[
        str | None,
        typer.Option(
            "--items",
            help="The jobs of the item ids in this file, one a line (-: stdin).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Give the ready jobs of DESTINATION for --item or --items the priority
    --priority; print how many changed.

    Claims take the highest priority first, then the oldest. Only ready jobs
    change (a delayed one keeps its delay); running and ended ones keep
    theirs, and a retry keeps a job's priority. Workers in other processes
    see a raised priority within about a second on PostgreSQL. --items is
    read and written in batches: at a bad line the command stops, and the
    batches before it stay changed."""
    if (item is None) == (items is None):
        msg = "give one of --item and --items"
        raise typer.BadParameter(msg)
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository(known=destination)
        changed = 0
        if items is not None:
            with open_source(items) as (stream, _, name):
                for batch in batches(item_ids(stream, name, lambda _: None), PRIORITIZE_FILE_BATCH):
                    changed += repo.prioritize(destination, item_ids=batch, priority=priority)
        else:
            changed = repo.prioritize(destination, item_ids=item or [], priority=priority)
        print_result(
            {"destination": destination, "priority": priority, "changed": changed},
            f"gave {changed} ready jobs of {destination!r} priority {priority}",
            as_json=as_json,
        )
