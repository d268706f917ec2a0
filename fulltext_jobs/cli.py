"""The `fulltext-jobs` command line: migrate a database, load items, queue,
work, watch and repair jobs, and run the bundled demo.

It is a thin layer over the public API (`SqlAlchemyRepository`, `Worker`,
`upgrade`...): every command builds its engine when it runs (never at
import time), does one thing through the port, prints the result, and
disposes the engine on the way out.

Decisions:

- **typer** (over argparse or click): options, arguments, their types and
  their help come from one annotated signature per command, which mypy
  checks; subcommand groups (`migrate ...`, `items ...`) and environment
  variables need no code of ours. **rich** draws the tables, the progress
  bars and the log lines; typer already depends on it.
- **Output.** Data goes to stdout; with `--json`, stdout holds one JSON
  document and nothing else. Progress bars and logs go to stderr, and bars
  are drawn only when stderr is a terminal, so a pipe or a log file never
  sees them.
- **Errors.** Every expected failure (`JobsError`, an unreadable file, a
  handler that cannot be imported, an unknown destination) ends the command
  at its boundary, `_command`, with one line `error: <message>` on stderr and
  exit status 1; typer's own usage errors keep status 2. No traceback is
  shown for them (typer's pretty tracebacks are off too, so a real bug
  prints Python's plain one).
- **Unknown destinations.** A destination exists once it has a job. `work`
  (without `--produce`), `retry`, `rescue DEST` and `stats DEST` refuse a
  destination with no jobs at all, naming the known ones: a typo would
  otherwise wait forever or report zeros. The check is
  `Repository.has_destination` (index probes; only a refused destination
  costs a read of every job, to name the known ones). `enqueue` creates
  destinations, and `work --produce` enqueues before it claims, so neither
  checks.
- **`stats` counts jobs by status**, one read of the destination's jobs;
  the unqueued items, which cost a read of every item, only with
  `--unqueued`.
- **Fail fast, then ride it out.** Before a worker starts, `work` makes one
  call, so a database that is down or not migrated is one error line; once
  running, the worker backs off and retries through outages, logging them.
- **Logs** go to stderr: WARNING and up by default (a failed job is one
  line plus its exception's last line), INFO with `-v`, DEBUG with `-vv`;
  tracebacks in log lines from `-v` on. On a terminal rich draws them;
  elsewhere each record is one plain line with a timestamp. With
  `--log-format json` each record is one JSON object a line (see
  `fulltext_jobs.logs.JsonFormatter`), and so is a command's `error:` line,
  so that stderr holds nothing else.
- **The dashboard and metrics** need the `dashboard` (or `metrics`) extra;
  without it the command says which in one `error:` line.
- **Signals.** `work` runs the `Worker` in the main thread, which handles
  SIGINT and SIGTERM itself: a graceful stop, exit status 0. `demo` stops
  with its worker and exits 130; running it again finishes the work.
- **Handlers** are `module:attribute` (the attribute may be dotted, as
  `module:Class.method`); the working directory is put first on `sys.path`
  as `python -m` does, so a handler next to the user is found.
- **Item files** are read as UTF-8, one id per line, surrounding white space
  stripped and blank lines skipped, and added in batches, so a ten-million-
  line file is never held in memory at once.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import logging
import os
import re
import socket
import sys
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Final

import sqlalchemy as sa
import typer
from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.engine import Engine

import fulltext_jobs
from fulltext_jobs import demo as demo_module
from fulltext_jobs.audit import AuditProblem
from fulltext_jobs.dashboard import DEFAULT_REFRESH, Snapshots, create_app, require_dashboard, serve
from fulltext_jobs.domain import (
    MAX_LEASE,
    MAX_LISTED,
    DestinationStats,
    FullText,
    JobStatus,
    check_item_id,
)
from fulltext_jobs.engine import parse_url, store_error
from fulltext_jobs.errors import InvalidInput, JobNotFound, JobsError, SchemaNotMigrated
from fulltext_jobs.logs import JsonFormatter
from fulltext_jobs.metrics import WorkerMetrics, require_prometheus
from fulltext_jobs.migrate import ADOPT_ADVICE, ORIGINAL_ELIGIBLE, ORIGINAL_ITEMS_TABLE
from fulltext_jobs.overview import read_only_engine, read_overview
from fulltext_jobs.retry import DEFAULT_RETRY
from fulltext_jobs.schema_audit import SchemaProblem, schema_problems
from fulltext_jobs.sql import UPGRADE_ADVICE, SqlAlchemyRepository
from fulltext_jobs.worker import Handler, WorkerStats

__all__ = ["CommandError", "app", "load_handler", "main"]

#: What the command line advises for a database that is not migrated.
CLI_UPGRADE_ADVICE: Final = "run `fulltext-jobs migrate upgrade` against it"

#: ... and for a database made by the Go original.
CLI_ADOPT_ADVICE: Final = "run `fulltext-jobs migrate adopt` against it"

#: The exit status of a demo that a signal stopped (as a shell reports SIGINT).
INTERRUPTED: Final = 130

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


class LogFormat(enum.StrEnum):
    """How log records are written to stderr."""

    PLAIN = "plain"
    JSON = "json"


class RetryStatus(enum.StrEnum):
    """The statuses `retry` can return to ready."""

    FAILED = JobStatus.FAILED.value
    SKIPPED = JobStatus.SKIPPED.value


# --- the state of one invocation ---------------------------------------------


@dataclasses.dataclass
class _State:
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
            _check_sqlite_file(self.url, creates=self.creates)
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
        destination is found to have jobs (see `_known_destination`); with
        `reachable`, only once a first call has found the database up and
        migrated."""
        repo = SqlAlchemyRepository(self.engine(), lease=lease)
        if known is not None:
            _known_destination(repo, known)
        elif reachable:
            with suppress(JobNotFound):
                repo.get_fulltext(uuid.UUID(int=0))  # the cheapest call there is
        return repo

    def close(self) -> None:
        if self.engine_ is not None:
            self.engine_.dispose()
            self.engine_ = None


def _check_sqlite_file(url: str, *, creates: bool) -> None:
    """Refuse a SQLite URL whose folder does not exist, or, unless the
    command `creates` the database, whose file does not: SQLite would create
    an empty file, and the command would then fail on an unmigrated database
    (or, for a typo, leave a stray file). Other URLs pass."""
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
    ctx.obj = _State(database_url, log_format=log_format)
    _configure_logging(verbose, log_format)


def _state(ctx: typer.Context) -> _State:
    state = ctx.find_root().obj
    if not isinstance(state, _State):  # pragma: no cover - the callback always sets it
        msg = "the command line's state is missing"
        raise TypeError(msg)
    return state


def _message(exc: BaseException) -> str:
    """The exception's message on one line."""
    if isinstance(exc, SchemaNotMigrated):
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
def _command(
    ctx: typer.Context, database_url: str | None, *, creates: bool = False
) -> Iterator[_State]:
    """The boundary of every command: yields the invocation's state (with the
    command's own `--database-url`, if given), turns an expected error into
    one line on stderr and exit status 1, and disposes the engine whatever
    happens. Only a command that `creates` the database may open a SQLite
    file that does not exist yet."""
    state = _state(ctx)
    state.creates = creates
    if database_url is not None:
        state.url = database_url
    try:
        yield state
    except (JobsError, CommandError, OSError, UnicodeDecodeError) as exc:
        if state.log_format is LogFormat.JSON:
            # An expected condition: its one line, without a traceback.
            logging.getLogger("fulltext_jobs.cli").error("%s", _message(exc))  # noqa: TRY400
        else:
            typer.echo(f"error: {_message(exc)}", err=True)
        raise typer.Exit(1) from None
    finally:
        state.close()


# --- output helpers -------------------------------------------------------------


#: The width of tables written off a terminal (a pipe, a file) when
#: COLUMNS does not say: wide enough that a row stays one line, for grep.
PIPED_WIDTH: Final = 200


def _stdout() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        return Console(highlight=False, width=PIPED_WIDTH)
    return console


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _emit_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2))


def _report(data: dict[str, object], text: str, *, as_json: bool) -> None:
    """Print a command's result: `data` as JSON, or `text`."""
    if as_json:
        _emit_json(data)
    else:
        typer.echo(text)


class _LogFormatter(logging.Formatter):
    """Log records on one line each: an exception's last line
    (`RuntimeError: ...`) is appended to the message in place of its
    traceback, unless `tracebacks` (then the traceback follows, as usual). A
    failing handler costs one line per job, not twenty, and a log collector
    reading a pipe sees one record a line."""

    def __init__(self, fmt: str, *, tracebacks: bool) -> None:
        super().__init__(fmt, datefmt="%Y-%m-%dT%H:%M:%S%z")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks or not record.exc_info or record.exc_info[1] is None:
            return super().format(record)
        exception = record.exc_info[1]
        last = " ".join(
            "".join(traceback.format_exception_only(exception)).split()
        )
        plain = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        plain.msg, plain.args = f"{record.getMessage()} ({last})", None
        return super().format(plain)


_LOG_HANDLER_NAME: Final = "fulltext-jobs-cli"


def _configure_logging(verbose: int, log_format: LogFormat = LogFormat.PLAIN) -> None:
    """Log to stderr: WARNING and up, INFO with -v, DEBUG with -vv.
    Exceptions in log lines get their full traceback from -v on. In the
    JSON format each record is one JSON object a line. In the plain format,
    on a terminal rich draws the lines; otherwise (a pipe, a file, a service
    manager) each record is one plain line with a timestamp, never wrapped."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _LOG_HANDLER_NAME:
            root.removeHandler(old)
    console = _stderr()
    handler: logging.Handler
    if log_format is LogFormat.JSON:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(tracebacks=verbose > 0))
    elif console.is_terminal:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(_LogFormatter("%(message)s", tracebacks=verbose > 0))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            _LogFormatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", tracebacks=verbose > 0
            )
        )
    handler.set_name(_LOG_HANDLER_NAME)  # to replace it, not add another, next time
    root.addHandler(handler)
    root.setLevel(level)


def progress_bar(console: Console, *extra: ProgressColumn, transient: bool = True) -> Progress:
    """A progress bar on `console`, drawn only if it is a terminal."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        *(extra or (MofNCompleteColumn(), TaskProgressColumn())),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )


def stats_table(rows: Iterable[DestinationStats], title: str | None = None) -> Table:
    """The stats of each destination as a table: jobs per status, and the
    eligible items that have no job yet ("-" where not counted)."""
    table = Table(title=title, **TABLE_STYLE)
    table.add_column("destination", no_wrap=True)
    for status in STATS_COLUMNS:
        table.add_column(status.value, justify="right")
    table.add_column("unqueued", justify="right")
    for row in rows:
        table.add_row(
            row.destination,
            *(str(row.counts.get(status, 0)) for status in STATS_COLUMNS),
            "-" if row.unqueued is None else str(row.unqueued),
        )
    return table


def stats_json(rows: Iterable[DestinationStats]) -> list[dict[str, object]]:
    """The stats of each destination as JSON objects, one per destination:
    `destination`, a count per status, `unqueued` (null where not
    counted)."""
    return [
        {
            "destination": row.destination,
            **{status.value: row.counts.get(status, 0) for status in STATS_COLUMNS},
            "unqueued": row.unqueued,
        }
        for row in rows
    ]


def _known_destination(repo: SqlAlchemyRepository, destination: str) -> None:
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


# --- migrate ----------------------------------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="The database, as the global option; given here, it wins.",
        show_default=False,
    ),
]


def _report_revision(engine: Engine, *, as_json: bool) -> None:
    current = fulltext_jobs.current_revision(engine)
    head = fulltext_jobs.head_revision()
    _report(
        {"current": current, "head": head},
        f"current: {current or 'none'}\nhead: {head}",
        as_json=as_json,
    )


@migrate_app.command("upgrade")
def migrate_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="The revision to migrate to.")] = "head",
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Migrate the database up to REVISION (default: the newest); creates a
    SQLite file that does not exist yet."""
    with _command(ctx, database_url, creates=True) as state:
        fulltext_jobs.upgrade(state.engine(), revision)
        _report_revision(state.engine(), as_json=as_json)


@migrate_app.command("downgrade")
def migrate_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="The revision to go back to; base: none.")],
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Migrate the database down to REVISION; `base` removes everything
    fulltext-jobs created, jobs included."""
    with _command(ctx, database_url) as state:
        fulltext_jobs.downgrade(state.engine(), revision)
        _report_revision(state.engine(), as_json=as_json)


@migrate_app.command("adopt")
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
    with _command(ctx, database_url, creates=True) as state:
        fulltext_jobs.adopt(state.engine(), items_table=items_table, eligible=eligible)
        _report_revision(state.engine(), as_json=as_json)


@migrate_app.command("current")
def migrate_current(
    ctx: typer.Context, as_json: JsonOption = False, database_url: UrlOption = None
) -> None:
    """Print the database's revision and the newest one this version ships."""
    with _command(ctx, database_url) as state:
        _report_revision(state.engine(), as_json=as_json)


# --- items ------------------------------------------------------------------------


@contextmanager
def _open_source(file: str) -> Iterator[tuple[BinaryIO, int | None, str]]:
    """The stream of `file` (`-`: stdin), its size if known, and its name."""
    if file == "-":
        yield sys.stdin.buffer, None, "<stdin>"
        return
    try:
        stream = Path(file).open("rb")  # noqa: SIM115 - closed below, after the caller is done
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        size = os.fstat(stream.fileno()).st_size
        yield stream, size or None, file
    finally:
        stream.close()


class _BadLineError(CommandError):
    """A line of an item file that is not UTF-8 or not an acceptable id."""


def _ids(stream: BinaryIO, name: str, on_line: Callable[[int], None]) -> Iterator[str]:
    """The item ids of `stream`, one a line, exactly as written: UTF-8, with
    only the line ending (`\\n` or `\\r\\n`) and a byte-order mark at the very
    start dropped, as Python's `utf-8-sig` codec drops it; empty lines are
    skipped. White space is part of an id, as it is for `add_items`, which
    receives each id unchanged. `on_line` gets each line's length in bytes.
    A line that is not UTF-8 or not an acceptable id raises `_BadLineError`,
    naming it."""
    try:
        for number, raw in enumerate(stream, 1):
            on_line(len(raw))
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                msg = f"cannot read {name}: line {number} is not UTF-8 text"
                raise _BadLineError(msg) from None
            item_id = line.removesuffix("\n").removesuffix("\r")
            if not item_id:
                continue
            try:
                yield check_item_id(item_id)
            except InvalidInput as exc:
                raise _BadLineError(f"{name} line {number}: {exc}") from None
    except OSError as exc:
        raise CommandError(f"cannot read {name}: {exc.strerror or exc}") from None


def _batches(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(ids)
    while batch := list(islice(iterator, size)):
        yield batch


@items_app.command("add")
def items_add(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Argument(help="A file of item ids, one a line; - (default): stdin.")
    ] = "-",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Ids per transaction.")
    ] = 10_000,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Add item ids, one a line, to the ledger's items; print how many were new.

    Each line is one id exactly as written, white space included (as
    `add_items` takes it from Python); only line endings, empty lines and a
    UTF-8 byte-order mark at the start of the file are dropped. Ids already
    there are left alone. Each batch commits on its own: at a bad line the
    command stops, and the batches before it stay added (the error says how
    many ids), so fix the line and run it again.
    """
    with _command(ctx, database_url) as state:
        repo = state.repository()
        added = seen = 0
        with (
            _open_source(file) as (stream, size, name),
            progress_bar(_stderr(), TextColumn("{task.fields[ids]} ids")) as progress,
        ):
            task = progress.add_task(f"adding {name}", total=size, ids=0)
            lines = _ids(stream, name, lambda n: progress.advance(task, n))
            try:
                for batch in _batches(lines, batch_size):
                    added += repo.add_items(batch, batch_size=batch_size)
                    seen += len(batch)
                    progress.update(task, ids=seen)
            except _BadLineError as exc:
                kept = (
                    f"the {seen} ids of the batches before it were added ({added} new); "
                    "the ids of its own batch and after it were not"
                    if seen
                    else "nothing was added"
                )
                raise CommandError(f"{exc}; {kept}") from None
        _report(
            {"added": added, "ids": seen},
            f"added {added} new items ({seen} ids read)",
            as_json=as_json,
        )


# --- enqueue, work --------------------------------------------------------------

DestinationArgument = Annotated[str, typer.Argument(help="The destination (the kind of work).")]
SomeDestination = Annotated[
    str | None, typer.Argument(help="One destination (default: every one with jobs).")
]


@app.command()
def enqueue(
    ctx: typer.Context,
    destination: DestinationArgument,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Queue at most this many items.")
    ] = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Create a ready job of DESTINATION for every item that has none (or for
    up to --limit of them, smallest ids first); print how many."""
    with _command(ctx, database_url) as state:
        repo = state.repository()
        console = _stderr()
        with progress_bar(console) as progress:
            total = None
            if console.is_terminal:  # counting costs a scan: only for the bar
                total = repo.count_unqueued(destination)
                total = total if limit is None else min(total, limit)
            task = progress.add_task(f"enqueue {destination}", total=total)
            created = repo.enqueue_unqueued(
                destination, limit=limit, progress=lambda n: progress.advance(task, n)
            )
        _report(
            {"destination": destination, "created": created},
            f"created {created} jobs for {destination!r}",
            as_json=as_json,
        )


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


def worker_table(destination: str, stats: WorkerStats) -> Table:
    """What a worker run did, one row a counter."""
    table = Table(title=f"worker: {destination}", **TABLE_STYLE)
    table.add_column("jobs")
    table.add_column("count", justify="right")
    for field in dataclasses.fields(WorkerStats):
        table.add_row(field.name.replace("_", " "), str(getattr(stats, field.name)))
    return table


@app.command()
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
            "worker sharing the database (a token bucket kept in it).",
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
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Run the handler on DESTINATION's jobs until SIGINT or SIGTERM (or,
    with --until-idle, until none is ready), then print what was done.

    A signal stops claiming, lets the jobs in flight finish within
    --shutdown-timeout, returns the rest to ready, and exits 0.
    """
    with _command(ctx, database_url) as state:
        run = load_handler(handler)
        metrics = None
        serving: AbstractContextManager[object] = nullcontext()
        if metrics_port is not None:
            metrics = WorkerMetrics(prometheus_registry())
            serving = _serve_metrics(metrics, destination, metrics_host, metrics_port)
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
        )
        with serving:
            stats = worker.run(until_idle=until_idle)
        if as_json:
            _emit_json({"destination": destination, **dataclasses.asdict(stats)})
        else:
            _stdout().print(worker_table(destination, stats))


# --- stats, retry, rescue ---------------------------------------------------------


@app.command()
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
) -> None:
    """Print jobs per status, per destination (and, with --unqueued, the
    items not queued yet)."""
    with _command(ctx, database_url) as state:
        repo = state.repository(known=destination)
        rows = repo.stats(destination, unqueued=unqueued)
        if as_json:
            _emit_json(stats_json(rows))
        else:
            _stdout().print(stats_table(rows))


# --- jobs: a look at a destination's jobs (issue 15) -------------------------------


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
        "attempts": job.attempts,
        "last_error": job.last_error,
        "started": _when(job.started),
        "finished": _when(job.finished),
        "not_before": _when(job.not_before),
    }


def jobs_table(destination: str, jobs: Iterable[FullText]) -> Table:
    """A page of jobs as a table, one row a job."""
    table = Table(title=f"jobs: {destination}", **TABLE_STYLE)
    table.add_column("id", no_wrap=True)
    table.add_column("item", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("last error", overflow="fold")
    for name in ("started", "finished", "not before"):
        table.add_column(f"{name} (UTC)", no_wrap=True)
    for job in jobs:
        table.add_row(
            str(job.id),
            job.item_id,
            job.status.value,
            str(job.attempts),
            job.last_error or "",
            _to_the_second(job.started),
            _to_the_second(job.finished),
            _to_the_second(job.not_before),
        )
    return table


@app.command()
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
) -> None:
    """Print a page of DESTINATION's jobs in item id order: id, item, status,
    attempts, last error, started, finished and not-before (a retry's
    backoff). `--status failed` lists failures with their errors; feed their
    items to `retry --item`."""
    with _command(ctx, database_url) as state:
        repo = state.repository(known=destination)
        page = repo.list_jobs(destination, statuses=status or None, limit=limit, after=after)
        if as_json:
            _emit_json([job_json(job) for job in page])
        else:
            _stdout().print(jobs_table(destination, page))


@app.command()
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
    """Return DESTINATION's failed and skipped jobs to ready; print how many."""
    with _command(ctx, database_url) as state:
        repo = state.repository(known=destination)
        statuses = [JobStatus(s.value) for s in status] if status else list(RetryStatus)
        count = repo.retry(destination, statuses=statuses, item_ids=item or None)
        _report(
            {"destination": destination, "retried": count},
            f"returned {count} jobs of {destination!r} to ready",
            as_json=as_json,
        )


@app.command()
def rescue(
    ctx: typer.Context,
    destination: SomeDestination = None,
    max_attempts: Annotated[
        int, typer.Option(min=1, help="Fail a job instead once it has had this many attempts.")
    ] = DEFAULT_RETRY.max_attempts,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Give back running jobs whose lease ran out (their worker died); print
    how many."""
    with _command(ctx, database_url) as state:
        repo = state.repository(known=destination)
        count = repo.rescue_expired(destination, max_attempts=max_attempts)
        _report(
            {"destination": destination, "rescued": count},
            f"rescued {count} expired jobs",
            as_json=as_json,
        )


# --- audit (issue 18) ------------------------------------------------------------------

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


def audit_json(
    problems: list[AuditProblem],
    fixed: dict[str, object] | None,
    schema: list[SchemaProblem] | None = None,
) -> dict[str, object]:
    """The stable JSON of `fulltext-jobs audit` (documented in docs/cli.md)."""
    schema = schema or []
    return {
        "clean": not problems and not schema,
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
    }


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


@app.command()
def audit(
    ctx: typer.Context,
    destination: SomeDestination = None,
    max_attempts: Annotated[
        int,
        typer.Option(min=1, help="The largest max_attempts in use; more attempts are reported."),
    ] = DEFAULT_RETRY.max_attempts,
    rescue_interval: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="Report running jobs whose lease ran out longer ago than this.",
        ),
    ] = "5m",
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
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Check the ledger's invariants (of DESTINATION, or of all) and print
    what is wrong. Exit status: 0 clean, 1 something reported, 2 an error.

    With --fix, first repair what is safe and named: lease-less running jobs
    older than --running-without-lease-older-than, and expired leases with
    --rescue. Everything else is reported only.
    """
    interval = parse_duration(rescue_interval)
    tolerance = parse_duration(clock_tolerance)
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
    problems: list[AuditProblem] = []
    fixed: dict[str, object] | None = None
    try:
        with _command(ctx, database_url) as state:
            schema = _schema_problems(state.engine())
            # Outside the window the repository would refuse the database:
            # then the revision is all there is to report.
            if not any(problem.kind == "revision" for problem in schema):
                # A typo'd destination would otherwise pass as clean.
                repo = state.repository(known=destination)
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
                    rescue_interval=interval,
                    clock_tolerance=tolerance,
                    max_attempts=max_attempts,
                    examples=examples,
                )
            _print_audit(problems, fixed, schema, as_json=as_json)
    except typer.Exit as exc:
        # An error, reported by `_command`; 1 means "something reported" here.
        raise typer.Exit(2) from exc
    if problems or schema:
        raise typer.Exit(1)


def _schema_problems(engine: Engine) -> list[SchemaProblem]:
    try:
        with engine.connect() as connection:
            return schema_problems(connection)
    except sa.exc.SQLAlchemyError as exc:
        raise store_error(exc, "audit") from exc


def _print_audit(
    problems: list[AuditProblem],
    fixed: dict[str, object] | None,
    schema: list[SchemaProblem],
    *,
    as_json: bool,
) -> None:
    if as_json:
        _emit_json(audit_json(problems, fixed, schema))
        return
    if fixed is not None:
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
    lines = [
        f"schema: {p.kind} {p.name}: {p.problem}" + (f" ({p.found})" if p.found else "")
        for p in schema
    ]
    for line in lines + audit_lines(problems) or ["clean: no problems found"]:
        typer.echo(line)


# --- dashboard ------------------------------------------------------------------------


def prometheus_registry() -> Any:  # noqa: ANN401 - a prometheus_client CollectorRegistry
    """A fresh registry for a worker's metrics (the process's global one
    would add Python's own process metrics, which a job's dashboard does not
    need). Raises `MissingDependency` without prometheus_client."""
    return require_prometheus().CollectorRegistry()


@contextmanager
def _serve_metrics(
    metrics: WorkerMetrics, destination: str, host: str, port: int
) -> Iterator[None]:
    """Serve a worker's metrics while the block runs, saying where; an
    address that cannot be bound is a `CommandError`."""
    with ExitStack() as stack:
        try:
            bound = stack.enter_context(metrics.serving(port, host))
        except OSError as exc:
            where = _host_port(host, port)
            raise CommandError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from None
        # WARNING, so that it shows without -v: where to scrape is not noise.
        logging.getLogger(__name__).warning(
            "metrics of %s on http://%s/metrics", destination, _host_port(host, bound)
        )
        yield


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (0: any free port). Raises
    `CommandError` naming the address if it cannot be bound."""
    sock = None
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        if sock is not None:
            sock.close()
        where = _host_port(host, port)
        raise CommandError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock


@app.command()
def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="The address to listen on; behind a proxy, keep 127.0.0.1.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The port to listen on (0: any free port).")
    ] = 8080,
    refresh: Annotated[
        float, typer.Option(min=0.2, help="Seconds between the page's refreshes.")
    ] = DEFAULT_REFRESH,
    unqueued: Annotated[
        bool,
        typer.Option(
            "--unqueued",
            help="Also count each destination's unqueued items, on every refresh: reads "
            "every item (seconds at millions of items).",
        ),
    ] = False,
    database_url: UrlOption = None,
) -> None:
    """Serve a read-only web page of the ledger, per destination (counts,
    progress, throughput, the oldest running job, the latest failures), and
    its Prometheus metrics at /metrics, until SIGINT or SIGTERM. Needs the
    dashboard extra: pip install 'fulltext-jobs[dashboard]'."""
    with _command(ctx, database_url) as state:
        require_dashboard()
        _check_sqlite_file(state.url, creates=False)
        state.engine_ = engine = read_only_engine(state.url)
        snapshots = Snapshots(engine, unqueued=unqueued)
        # Fail fast on a database that is down or not migrated.
        read_overview(engine)
        title = engine.url.render_as_string(hide_password=True)
        app = create_app(snapshots, refresh=refresh, title=title)
        sock = _bind(host, port)
        where = _host_port(host, sock.getsockname()[1])
        typer.echo(f"dashboard of {title} on http://{where}/ (Ctrl-C stops it)")
        try:
            serve(app, [sock])
        finally:
            sock.close()


# --- demo ---------------------------------------------------------------------------


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
    out = _stdout()
    out.print(f"database: {engine.url.render_as_string(hide_password=True)}")
    out.print(f"items added: {report.items_added}")
    for destination, created in report.jobs_created.items():
        out.print(f"jobs created for {destination}: {created}")
    out.print(stats_table(report.stats, title="jobs"))
    out.print(demo_module.samples_table(report.samples))


@app.command()
def demo(
    ctx: typer.Context, as_json: JsonOption = False, database_url: UrlOption = None
) -> None:
    """Run the main job end to end on a bundled sample: migrate, load 200
    items with short texts, queue them for word-count and language-detection,
    work them off, and print the stats and a few results. Idempotent."""
    with _command(ctx, database_url, creates=True) as state:
        engine = state.engine()
        console = _stderr()
        with progress_bar(console, MofNCompleteColumn(), transient=False) as progress:
            tasks: dict[str, TaskID] = {}

            def start(destination: str, total: int, done: int) -> None:
                tasks[destination] = progress.add_task(destination, total=total, completed=done)

            def advance(destination: str) -> None:
                progress.advance(tasks[destination])

            report = demo_module.run(engine, on_start=start, on_job=advance)
        if as_json:
            _emit_json(_demo_json(engine, report))
        else:
            _print_demo(engine, report)
    if report.interrupted:
        message = "interrupted: run the demo again to finish its jobs"
        if _state(ctx).log_format is LogFormat.JSON:
            logging.getLogger("fulltext_jobs.cli").warning(message)
        else:
            typer.echo(message, err=True)
        raise typer.Exit(INTERRUPTED)


def main() -> None:
    """The `fulltext-jobs` entry point: run the command line and exit."""
    app(prog_name="fulltext-jobs")
