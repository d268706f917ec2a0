"""`migrate ...`: bring the database's schema to a revision, or adopt the Go original's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

import fulltext_jobs
from fulltext_jobs._defaults import ORIGINAL_ELIGIBLE, ORIGINAL_ITEMS_TABLE
from fulltext_jobs.cli._base import JsonOption, UrlOption, boundary
from fulltext_jobs.cli._output import print_result

if TYPE_CHECKING:
    # Only for annotations: `--help` must not pay for SQLAlchemy.
    from sqlalchemy.engine import Engine


def _report_revision(engine: Engine, *, as_json: bool) -> None:
    current = fulltext_jobs.current_revision(engine)
    head = fulltext_jobs.head_revision()
    print_result(
        {"current": current, "head": head},
        f"current: {current or 'none'}\nhead: {head}",
        as_json=as_json,
    )


def migrate_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="The revision to migrate to.")] = "head",
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Migrate the database up to REVISION (default: the newest); creates a
    SQLite file that does not exist yet."""
    with boundary(ctx, database_url, creates=True, writes=True) as state:
        fulltext_jobs.upgrade(state.engine(), revision)
        _report_revision(state.engine(), as_json=as_json)


def migrate_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="The revision to go back to; base: none.")],
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Migrate the database down to REVISION; `base` removes everything
    fulltext-jobs created, jobs included."""
    with boundary(ctx, database_url, writes=True) as state:
        fulltext_jobs.downgrade(state.engine(), revision)
        _report_revision(state.engine(), as_json=as_json)


def migrate_adopt(
    ctx: typer.Context,
    items_table: Annotated[
        str,
        typer.Option(help="The original's items table: jobs are made for its `id`s."),
    ] = ORIGINAL_ITEMS_TABLE,
    eligible: Annotated[
        str,
        typer.Option(help="An SQL condition on that table: which items are eligible for jobs."),
    ] = ORIGINAL_ELIGIBLE,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Bring a PostgreSQL database made by the Go original under fulltext-jobs'
    migrations, keeping every row, and upgrade it to the newest revision.
    From then on every command reads the items from --items-table where
    --eligible holds, with no flag, and creators take the original's lock so
    that Go creators running beside them meet no duplicate-key errors.
    Harmless on a database fulltext-jobs already manages."""
    with boundary(ctx, database_url, creates=True, writes=True) as state:
        fulltext_jobs.adopt(state.engine(), items_table=items_table, eligible=eligible)
        _report_revision(state.engine(), as_json=as_json)


def migrate_current(
    ctx: typer.Context, as_json: JsonOption = False, database_url: UrlOption = None
) -> None:
    """Print the database's revision and the newest one this version ships."""
    with boundary(ctx, database_url) as state:
        _report_revision(state.engine(), as_json=as_json)
