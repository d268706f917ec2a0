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
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from typer.core import TyperGroup

import fulltext_jobs
from fulltext_jobs._defaults import READ_URL_ENV
from fulltext_jobs.cli._logging import LogFormat, configure_logging
from fulltext_jobs.cli._output import stderr_console
from fulltext_jobs.domain import (
    JobStatus,
)
from fulltext_jobs.errors import JobNotFound, JobsError, SchemaNotMigrated
from fulltext_jobs.pipeline import known_without_jobs

if TYPE_CHECKING:
    # Imported where used: `--help` must not pay for SQLAlchemy.
    from sqlalchemy.engine import Engine

    from fulltext_jobs.replica import ReadSource
    from fulltext_jobs.sql.repository import SqlAlchemyRepository

#: What the command line advises for a database that is not migrated.
CLI_UPGRADE_ADVICE: Final = "run `fulltext-jobs migrate upgrade` against it"

#: ... and for a database made by the Go original.
CLI_ADOPT_ADVICE: Final = "run `fulltext-jobs migrate adopt` against it"

#: The exit status of a demo that a signal stopped (as a shell reports SIGINT).
INTERRUPTED: Final = 130


#: The help of the options every command accepts, before or after its name.
VERBOSE_HELP: Final = "Log more; repeat it for more still: -v logs INFO, -vv (or -v -v) DEBUG."
LOG_FORMAT_HELP: Final = "How logs are written to stderr: plain lines, or one JSON object a line."


def _more_verbose(ctx: typer.Context, value: int) -> None:
    """`-v`, before or after a command's name: each adds to the others."""
    if value:
        state = invocation(ctx)
        state.verbose += value
        configure_logging(state.verbose, state.log_format)


def _log_format(ctx: typer.Context, value: LogFormat | None) -> None:
    """`--log-format`, before or after a command's name: the last one wins."""
    if value is not None:
        state = invocation(ctx)
        state.log_format = value
        configure_logging(state.verbose, state.log_format)


_shared = typer.Typer(add_completion=False)


@_shared.command()
def _global_options(
    _verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            metavar="",
            show_default=False,
            expose_value=False,
            callback=_more_verbose,
            help=VERBOSE_HELP,
        ),
    ] = 0,
    _log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            case_sensitive=False,
            show_default=False,
            expose_value=False,
            callback=_log_format,
            help=LOG_FORMAT_HELP,
        ),
    ] = None,
) -> None:
    """Only its options are used: see `_Commands`."""


class _Commands(TyperGroup):
    """The root group: it gives itself and every command, nested ones
    included, the global options `-v` and `--log-format`, so that they work
    after the command's name (`fulltext-jobs work ... -v`) as well as before
    it. Typer has no inherited options; this is the one place that builds
    every command object, for `main` and for `typer.testing` alike. The
    options are typer's own, built from `_global_options`'s signature; they
    update the invocation's state as they are parsed and are not passed to
    any function."""

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - the group's own keyword arguments
        super().__init__(**kwargs)
        shared = typer.main.get_command(_shared).params
        self.params.extend(shared)
        _add_options(self, shared)


def _add_options(group: TyperGroup, options: list[Any]) -> None:
    for command in group.commands.values():
        if isinstance(command, TyperGroup):
            _add_options(command, options)
        elif not any(param.name in {"_verbose", "verbose"} for param in command.params):
            command.params.extend(options)


app = typer.Typer(
    cls=_Commands,
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

    `read_url` is a replica for the commands that only read (`--read-url`):
    they read through `reader()`, which uses it when given and the
    database otherwise; everything that writes uses `repository()`, always
    the database (the primary).
    """

    url: str
    log_format: LogFormat = LogFormat.PLAIN
    verbose: int = 0
    #: Whether `url` is the built-in default (no option, no environment
    #: variable): then the database line says so.
    default_url: bool = False
    creates: bool = False
    engine_: Engine | None = None
    read_url: str | None = None
    read_engine_: Engine | None = None

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
        from fulltext_jobs.sql.repository import SqlAlchemyRepository  # noqa: PLC0415 - not at start-up

        repo = SqlAlchemyRepository(self.engine(), lease=lease)
        if known is not None:
            known_destination(repo, known)
        elif reachable:
            with suppress(JobNotFound):
                repo.get_fulltext(uuid.UUID(int=0))  # the cheapest call there is
        return repo

    def read_engine(self) -> Engine:
        """The engine the read commands read through: on `read_url`, on
        which the server refuses writes, if given; else the database's."""
        if self.read_url is None:
            return self.engine()
        if self.read_engine_ is None:
            from fulltext_jobs.sql.overview import read_only_engine  # noqa: PLC0415 - not at start-up

            check_sqlite_file(self.read_url, creates=False)
            self.read_engine_ = read_only_engine(self.read_url)
        return self.read_engine_

    def reader(self, *, known: str | None = None) -> SqlAlchemyRepository:
        """A repository for reading, on `read_engine()`; with `known`, only
        once that destination is found to have jobs there."""
        from fulltext_jobs.sql.repository import SqlAlchemyRepository  # noqa: PLC0415 - not at start-up

        repo = SqlAlchemyRepository(self.read_engine())
        if known is not None:
            known_destination(repo, known)
        return repo

    def read_source(self) -> ReadSource | None:
        """Where the reads went, if that is worth telling beside the figures:
        a read URL was given, or the server read is a replica. None on the
        primary read as the database."""
        from fulltext_jobs.sql.replica import read_source  # noqa: PLC0415 - not at start-up

        source = read_source(self.read_engine())
        return source if source.replica or self.read_url is not None else None

    def close(self) -> None:
        for engine in (self.engine_, self.read_engine_):
            if engine is not None:
                engine.dispose()
        self.engine_ = self.read_engine_ = None


def check_sqlite_file(url: str, *, creates: bool) -> None:
    """Refuse a SQLite URL whose folder does not exist, or, unless the
    command `creates` the database, whose file does not: SQLite would create
    an empty file, and the command would then fail on an unmigrated database
    (or, for a typo, leave a stray file). Other URLs pass."""
    from fulltext_jobs.sql.engine import parse_url  # noqa: PLC0415 - not at start-up

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
    read_url: Annotated[
        str | None,
        typer.Option(
            "--read-url",
            envvar=READ_URL_ENV,
            help="A replica (a hot standby) for the commands that only read: stats, jobs, "
            "audit without --fix, dashboard. Writes always go to --database-url.",
            show_default=False,
        ),
    ] = None,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            expose_value=False,
            callback=_print_version,
            help="Print the version of fulltext-jobs and exit.",
        ),
    ] = False,
) -> None:
    # `-v` and `--log-format` were read into the state as they were parsed.
    state = invocation(ctx)
    state.url = database_url
    state.read_url = read_url
    source = ctx.get_parameter_source("database_url")
    state.default_url = getattr(source, "name", None) == "DEFAULT"
    configure_logging(state.verbose, state.log_format)


def package_version() -> str:
    """The installed distribution's version ("unknown" when run from a
    source tree that was never installed)."""
    # Imported here: importlib.metadata costs a command that never asks
    # for the version a tenth of its start-up.
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("fulltext-jobs")
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fulltext-jobs {package_version()}")
        raise typer.Exit


def invocation(ctx: typer.Context) -> State:
    """The state of this invocation, made by the first option that needs it
    (the global options are read before the root's callback runs)."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = State(fulltext_jobs.DEFAULT_DATABASE_URL, default_url=True)
    state = root.obj
    if not isinstance(state, State):  # pragma: no cover - only this module sets it
        msg = "the command line's state is not its own"
        raise TypeError(msg)
    return state


def one_line(exc: BaseException) -> str:
    """The exception's message on one line."""
    if isinstance(exc, SchemaNotMigrated):
        # Imported here: only a database that is not migrated needs them.
        from fulltext_jobs.sql.migrate import ADOPT_ADVICE, UPGRADE_ADVICE  # noqa: PLC0415

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
    ctx: typer.Context,
    database_url: str | None,
    *,
    creates: bool = False,
    writes: bool = False,
    read_url: str | None = None,
) -> Iterator[State]:
    """The boundary of every command: yields the invocation's state (with the
    command's own `--database-url`, if given), turns an expected error into
    one line on stderr and exit status 1, and disposes the engine whatever
    happens. Only a command that `creates` the database may open a SQLite
    file that does not exist yet. A command that `writes` names the database
    first (see `announce_database`). A command that only reads passes its
    own `--read-url`, if given, which wins over the global one."""
    state = invocation(ctx)
    state.creates = creates
    if database_url is not None:
        state.url = database_url
        state.default_url = False
    if read_url is not None:
        state.read_url = read_url
    try:
        if writes:
            announce_database(state)
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


def announce_database(state: State) -> None:
    """Say which database the command is about to change: on stderr when it
    is a terminal (a person is watching), and in the log at INFO (`-v`)
    whatever it is. The password is masked; the built-in default is called
    so, since forgetting the environment variable is the usual way to fill
    the wrong database. A URL that cannot be parsed is left to the command,
    which reports it."""
    from fulltext_jobs.sql.engine import parse_url  # noqa: PLC0415 - not at start-up

    try:
        shown = parse_url(state.url).render_as_string(hide_password=True)
    except JobsError:
        return
    if state.default_url:
        shown += (
            f" (the default: neither --database-url nor {fulltext_jobs.DATABASE_URL_ENV} is set)"
        )
    logging.getLogger("fulltext_jobs.cli").info("database: %s", shown)
    if stderr_console().is_terminal and state.log_format is LogFormat.PLAIN:
        typer.echo(f"database: {shown}", err=True)


def tell_source(state: State, *, as_json: bool) -> None:
    """Say, after a read command's figures, where they were read (see
    `State.read_source`): a line on stdout under a table; with `--json`,
    whose document keeps its shape, a `note:` line on stderr (a log record
    with `--log-format json`). Nothing on the primary read as the database."""
    source = state.read_source()
    if source is None:
        return
    if not as_json:
        typer.echo(source.label())
    elif state.log_format is LogFormat.JSON:
        logging.getLogger("fulltext_jobs.cli").warning("%s", source.label())
    else:
        typer.echo(f"note: {source.label()}", err=True)


def known_anyway(repo: SqlAlchemyRepository) -> set[str]:
    """The destinations known though they may have no job
    (`fulltext_jobs.pipeline.known_without_jobs`), read from the ledger."""
    return known_without_jobs(repo.dependencies(), (c.destination for c in repo.list_controls()))


def known_destination(repo: SqlAlchemyRepository, destination: str) -> None:
    """Raise `CommandError` if `destination` has no jobs at all and is not
    known otherwise (`known_without_jobs`): a few index probes
    (`Repository.has_destination`), then the declarations and controls.
    Only then, to name the known destinations, are all jobs counted.

    Raises `InvalidInput` for a destination that is not acceptable at all.
    """
    if repo.has_destination(destination):
        return
    without_jobs = known_anyway(repo)
    if destination in without_jobs:
        return
    with_jobs = {row.destination for row in repo.stats(unqueued=False)}
    known = ", ".join(sorted(with_jobs | without_jobs))
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

ReadUrlOption = Annotated[
    str | None,
    typer.Option(
        "--read-url",
        help=f"A replica (a hot standby) to read from, as the global option (or {READ_URL_ENV}); "
        "given here, it wins. The figures are then labelled with its replay lag.",
        show_default=False,
    ),
]


DestinationArgument = Annotated[str, typer.Argument(help="The destination (the kind of work).")]
SomeDestination = Annotated[
    str | None, typer.Argument(help="One destination (default: every one with jobs).")
]
