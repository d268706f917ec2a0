"""Destinations that follow one another: `depend` declares (or shows) a
destination's upstreams, `undepend` drops them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from fulltext_jobs.cli._base import (
    CommandError,
    DestinationArgument,
    JsonOption,
    UrlOption,
    boundary,
)
from fulltext_jobs.cli._items import new_destination
from fulltext_jobs.cli._output import dependencies_json, dependencies_text, print_result
from fulltext_jobs.pipeline import (
    DEFAULT_ON_STATUSES,
    Dependency,
    check_on_statuses,
    known_without_jobs,
)

#: `--on-status`'s default: what a dependency names when nothing is named.
DEFAULT_ON_STATUS = ",".join(sorted(s.value for s in DEFAULT_ON_STATUSES))

if TYPE_CHECKING:
    from fulltext_jobs.sql.repository import SqlAlchemyRepository

OnOption = Annotated[
    list[str] | None,
    typer.Option(
        "--on",
        help="An upstream destination (repeatable: every one must be done).",
        show_default=False,
    ),
]
UndependOnOption = Annotated[
    list[str] | None,
    typer.Option(
        "--on",
        help="An upstream to drop (repeatable). Default: all of them.",
        show_default=False,
    ),
]


def depend(
    ctx: typer.Context,
    destination: DestinationArgument,
    on: OnOption = None,
    on_status: Annotated[
        list[str] | None,
        typer.Option(
            "--on-status",
            help="The statuses an upstream job must end in: finished, failed, skipped "
            f"(comma-separated, or repeated). Default: {DEFAULT_ON_STATUS}.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Make DESTINATION follow each --on destination: an item gets a job
    for it only once its job of every upstream has ended in one of
    --on-status (finished by default). Without --on, print its upstreams.

    Stored in the ledger, so every producer agrees; a declaration that
    would make a cycle is refused. From then on, an upstream job's end
    records its item, and DESTINATION's producer (`work --produce`) queues
    it. Items done upstream before the declaration are queued by
    `enqueue DESTINATION`. Give --on again to change an upstream's
    statuses; `undepend` drops it."""
    with boundary(ctx, database_url, writes=on is not None) as state:
        if on is None and on_status:
            msg = "--on-status names what the --on upstreams must reach: give --on too"
            raise CommandError(msg)
        repo = state.repository()
        if on is None:
            found = repo.dependencies(destination)
        else:
            given = on_status or [DEFAULT_ON_STATUS]
            named = [part.strip() for value in given for part in value.split(",")]
            found = repo.depend(destination, on=on, statuses=check_on_statuses(named))
            _warn_of_new_upstreams(repo, destination, on)
        _print(destination, found, as_json=as_json)


def undepend(
    ctx: typer.Context,
    destination: DestinationArgument,
    on: UndependOnOption = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Drop DESTINATION's dependencies on each --on destination (all of
    them without --on), and print those left: its items no longer wait
    for those upstreams. An --on it did not follow draws a warning (a
    misspelt name would otherwise look like a success)."""
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository()
        followed = {d.upstream for d in repo.dependencies(destination)}
        left = repo.undepend(destination, on=on or None)
        for upstream in sorted(set(on or ()) - followed):
            logging.getLogger("fulltext_jobs.cli").warning(
                "%r did not follow %r: nothing dropped for it", destination, upstream
            )
        _print(destination, left, as_json=as_json)


def _warn_of_new_upstreams(
    repo: SqlAlchemyRepository, destination: str, upstreams: Sequence[str]
) -> None:
    """Warn of each upstream of `destination` that has no jobs, that no
    other declaration names and that nothing is set on, naming the closest
    known one: a misspelt upstream would hold its follower's items back
    for ever."""
    declared = repo.dependencies()
    steered = [found.destination for found in repo.list_controls()]
    for upstream in sorted(set(upstreams)):
        others = [d for d in declared if (d.destination, d.upstream) != (destination, upstream)]
        text = new_destination(repo, upstream, known_without_jobs(others, steered))
        if text is not None:
            logging.getLogger("fulltext_jobs.cli").warning(
                "an upstream with no jobs, whose follower's items wait until it has some: %s", text
            )


def _print(destination: str, found: Sequence[Dependency], *, as_json: bool) -> None:
    print_result(
        dependencies_json(destination, found),
        dependencies_text(destination, found),
        as_json=as_json,
    )
