"""The command line's frame: the typer apps, the global options, the state of one
invocation, and `boundary`, where every command's expected errors become one line."""

from __future__ import annotations

import dataclasses
import enum
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

import fulltext_jobs
from fulltext_jobs.cli._logging import LogFormat, configure_logging
from fulltext_jobs.domain import (
    JobStatus,
)
from fulltext_jobs.errors import JobNotFound, JobsError, SchemaNotMigrated

if TYPE_CHECKING:
    # Imported where used: `--help` must not pay for SQLAlchemy.
    from sqlalchemy.engine import Engine

    from fulltext_jobs.sql import SqlAlchemyRepository

#: What the command line advises for a database that is not migrated.
CLI_UPGRADE_ADVICE: Final = "run `fulltext-jobs migrate upgrade` against it"

#: ... and for a database made by the Go original.
CLI_ADOPT_ADVICE: Final = "run `fulltext-jobs migrate adopt` against it"

#: The exit status of a demo that a signal stopped (as a shell reports SIGINT).
INTERRUPTED: Final = 130


app = typer.Typer(
    name="fulltext-jobs",
    help="A ledger of full-text jobs per (item, destination).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
migrate_app = typer.Typer(
    help="Migrate the database's fulltext-jobs schema.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
items_app = typer.Typer(
    help="The items that jobs are made for.", no_args_is_help=True, rich_markup_mode="markdown"
)
app.add_typer(migrate_app, name="migrate")
app.add_typer(items_app, name="items")


class CommandError(Exception):
    """A condition the command line reports in one line and exits 1 for: an
    unknown destination or handler, an unreadable file."""


class RetryStatus(enum.StrEnum):
    """The statuses `retry` can return to ready."""

    FAILED = JobStatus.FAILED.value
    SKIPPED = JobStatus.SKIPPED.value


# --- the state of one invocation ---------------------------------------------


@dataclasses.dataclass
class State:
    """The global options, and the engine once a command needs it.

    `creates` is set by the commands that may create a SQLite database
    (`migrate upgrade`, `migrate adopt`, `demo`); any other command refuses a
    SQLite file that does not exist rather than leave an empty one behind.
    """

    url: str
    log_format: LogFormat = LogFormat.PLAIN
    creates: bool = False
    engine_: Engine | None = None

    def engine(self) -> Engine:
        if self.engine_ is None:
            check_sqlite_file(self.url, creates=self.creates)
            self.engine_ = fulltext_jobs.create_engine(self.url)
        return self.engine_

    def repository(
        self,
        *,
        known: str | None = None,
        reachable: bool = False,
        lease: timedelta = fulltext_jobs.DEFAULT_LEASE,
    ) -> SqlAlchemyRepository:
        """A repository on the engine; with `known`, only once that
        destination is found to have jobs (see `known_destination`); with
        `reachable`, only once a first call has found the database up and
        migrated."""
        from fulltext_jobs.sql import SqlAlchemyRepository  # noqa: PLC0415 - not at start-up

        repo = SqlAlchemyRepository(self.engine(), lease=lease)
        if known is not None:
            known_destination(repo, known)
        elif reachable:
            with suppress(JobNotFound):
                repo.get_fulltext(uuid.UUID(int=0))  # the cheapest call there is
        return repo

    def close(self) -> None:
        if self.engine_ is not None:
            self.engine_.dispose()
            self.engine_ = None


def check_sqlite_file(url: str, *, creates: bool) -> None:
    """Refuse a SQLite URL whose folder does not exist, or, unless the
    command `creates` the database, whose file does not: SQLite would create
    an empty file, and the command would then fail on an unmigrated database
    (or, for a typo, leave a stray file). Other URLs pass."""
    from fulltext_jobs.engine import parse_url  # noqa: PLC0415 - not at start-up

    parsed = parse_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if database.startswith("file:"):
        return  # a SQLite URI: its own mode= says what may be created
    path = Path(database)
    if not path.parent.is_dir():
        msg = f"cannot open the database {path}: the folder {path.parent} does not exist"
        raise CommandError(msg)
    if not creates and not path.exists():
        msg = (
            f"no database at {path}: `fulltext-jobs migrate upgrade` creates it "
            "(or pass --database-url)"
        )
        raise CommandError(msg)


@app.callback()
def _root(
    ctx: typer.Context,
    database_url: Annotated[
        str,
        typer.Option(
            "--database-url",
            envvar=fulltext_jobs.DATABASE_URL_ENV,
            help="The database: postgresql+psycopg://... or sqlite:///FILE.",
        ),
    ] = fulltext_jobs.DEFAULT_DATABASE_URL,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            metavar="",
            show_default=False,
            help="Log more; repeat it for more still: -v logs INFO, -vv (or -v -v) DEBUG.",
        ),
    ] = 0,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            case_sensitive=False,
            help="How logs are written to stderr: plain lines, or one JSON object a line.",
        ),
    ] = LogFormat.PLAIN,
) -> None:
    ctx.obj = State(database_url, log_format=log_format)
    configure_logging(verbose, log_format)


def invocation(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    if not isinstance(state, State):  # pragma: no cover - the callback always sets it
        msg = "the command line's state is missing"
        raise TypeError(msg)
    return state


def one_line(exc: BaseException) -> str:
    """The exception's message on one line."""
    if isinstance(exc, SchemaNotMigrated):
        # Imported here: only a database that is not migrated needs them.
        from fulltext_jobs.migrate import ADOPT_ADVICE  # noqa: PLC0415
        from fulltext_jobs.sql import UPGRADE_ADVICE  # noqa: PLC0415

        text = str(exc)
        if ADOPT_ADVICE in text:
            text = text.replace(ADOPT_ADVICE, CLI_ADOPT_ADVICE)
        elif UPGRADE_ADVICE in text:
            text = text.replace(UPGRADE_ADVICE, CLI_UPGRADE_ADVICE)
        else:
            text = f"{text} ({CLI_UPGRADE_ADVICE})"
    elif isinstance(exc, UnicodeDecodeError):
        text = f"not UTF-8 text: {exc}"
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


@contextmanager
def boundary(
    ctx: typer.Context, database_url: str | None, *, creates: bool = False
) -> Iterator[State]:
    """The boundary of every command: yields the invocation's state (with the
    command's own `--database-url`, if given), turns an expected error into
    one line on stderr and exit status 1, and disposes the engine whatever
    happens. Only a command that `creates` the database may open a SQLite
    file that does not exist yet."""
    state = invocation(ctx)
    state.creates = creates
    if database_url is not None:
        state.url = database_url
    try:
        yield state
    except (JobsError, CommandError, OSError, UnicodeDecodeError) as exc:
        if state.log_format is LogFormat.JSON:
            # An expected condition: its one line, without a traceback.
            logging.getLogger("fulltext_jobs.cli").error("%s", one_line(exc))  # noqa: TRY400
        else:
            typer.echo(f"error: {one_line(exc)}", err=True)
        raise typer.Exit(1) from None
    finally:
        state.close()


def known_destination(repo: SqlAlchemyRepository, destination: str) -> None:
    """Raise `CommandError` if `destination` has no jobs at all: a few index
    probes (`Repository.has_destination`). Only then, to name the known
    destinations, are all jobs counted.

    Raises `InvalidInput` for a destination that is not acceptable at all.
    """
    if not repo.has_destination(destination):
        known = ", ".join(row.destination for row in repo.stats(unqueued=False))
        msg = (
            f"no jobs for destination {destination!r}; known destinations: {known}"
            if known
            else f"no jobs for destination {destination!r}; no destination has jobs yet "
            f"(`fulltext-jobs enqueue {destination}` creates them)"
        )
        raise CommandError(msg)


# --- options shared by the commands -----------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="The database, as the global option; given here, it wins.",
        show_default=False,
    ),
]


DestinationArgument = Annotated[str, typer.Argument(help="The destination (the kind of work).")]
SomeDestination = Annotated[
    str | None, typer.Argument(help="One destination (default: every one with jobs).")
]
