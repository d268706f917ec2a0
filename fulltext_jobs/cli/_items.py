"""`items add` and `enqueue`: what jobs are made for, and making them."""

from __future__ import annotations

import difflib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from fulltext_jobs.checks import MAX_BATCH_SIZE, check_item_id
from fulltext_jobs.cli._base import (
    CommandError,
    DestinationArgument,
    JsonOption,
    UrlOption,
    boundary,
    known_anyway,
)
from fulltext_jobs.cli._output import print_result, progress_bar, stderr_console
from fulltext_jobs.domain import check_priority
from fulltext_jobs.errors import InvalidInput

if TYPE_CHECKING:
    from fulltext_jobs.sql.repository import SqlAlchemyRepository


@contextmanager
def open_source(file: str) -> Iterator[tuple[BinaryIO, int | None, str]]:
    """The stream of `file` (`-`: stdin), its size if known, and its name.
    Raises `CommandError` for a file that cannot be opened."""
    if file == "-":
        yield sys.stdin.buffer, None, "<stdin>"
        return
    try:
        stream = Path(file).open("rb")  # noqa: SIM115 - closed below, after the caller is done
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte, which no file name holds
        raise CommandError(f"cannot read {file!r}: a file name has no NUL byte") from None
    try:
        size = os.fstat(stream.fileno()).st_size
        yield stream, size or None, file
    finally:
        stream.close()


class _BadLineError(CommandError):
    """A line of an item file that is not UTF-8 or not an acceptable id."""


def item_ids(stream: BinaryIO, name: str, on_line: Callable[[int], None]) -> Iterator[str]:
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


def batches(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(ids)
    while batch := list(islice(iterator, size)):
        yield batch


def items_add(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Argument(help="A file of item ids, one a line; - (default): stdin.")
    ] = "-",
    batch_size: Annotated[
        int, typer.Option(min=1, max=MAX_BATCH_SIZE, help="Ids per transaction.")
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
    from rich.progress import TextColumn  # noqa: PLC0415 - not at start-up, as in progress_bar

    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository()
        added = seen = 0
        with (
            open_source(file) as (stream, size, name),
            progress_bar(stderr_console(), TextColumn("{task.fields[ids]} ids")) as progress,
        ):
            task = progress.add_task(f"adding {name}", total=size, ids=0)
            lines = item_ids(stream, name, lambda n: progress.advance(task, n))
            try:
                for batch in batches(lines, batch_size):
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
        print_result(
            {"added": added, "ids": seen},
            f"added {added} new items ({seen} ids read)",
            as_json=as_json,
        )


def enqueue(
    ctx: typer.Context,
    destination: DestinationArgument,
    limit: Annotated[int | None, typer.Option(min=1, help="Queue at most this many items.")] = None,
    priority: Annotated[
        int,
        typer.Option(
            help="The jobs' priority, from -32767 to 32767: claims take the highest first, "
            "then the oldest."
        ),
    ] = 0,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Create a new destination without asking (on a terminal)."
        ),
    ] = False,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Create a ready job of DESTINATION for every item that has none (or for
    up to --limit of them, smallest ids first), of --priority; print how
    many.

    A destination that follows others (`depend`) gets jobs only for the
    items done upstream. A destination exists once it has jobs or a
    dependency names it. Naming one that does not exist yet, beside others
    that do, asks first on a terminal (a typo would otherwise start a new
    destination); elsewhere it is created with a warning naming the known
    ones."""
    with boundary(ctx, database_url, writes=True) as state:
        repo = state.repository()
        check_priority(priority)  # refused before anything is asked or warned of
        _confirm_new_destination(repo, destination, ask=not yes)
        console = stderr_console()
        with progress_bar(console) as progress:
            total = None
            if console.is_terminal:  # counting costs a scan: only for the bar
                total = repo.count_unqueued(destination)
                total = total if limit is None else min(total, limit)
            task = progress.add_task(f"enqueue {destination}", total=total)
            created = repo.enqueue_unqueued(
                destination,
                limit=limit,
                progress=lambda n: progress.advance(task, n),
                priority=priority,
            )
        print_result(
            {"destination": destination, "created": created, "priority": priority},
            f"created {created} jobs for {destination!r}"
            + (f" at priority {priority}" if priority else ""),
            as_json=as_json,
        )


def new_destination(
    repo: SqlAlchemyRepository, destination: str, declared: Iterable[str] | None = None
) -> str | None:
    """None if `destination` has jobs, if it is known without (of
    `declared`; by default `known_anyway`: named by a dependency, or
    steered), or if no destination is known at all: nothing to mistake it
    for. Otherwise a sentence saying it is new, naming the known
    destinations and the closest one."""
    if repo.has_destination(destination):
        return None
    named = known_anyway(repo) if declared is None else set(declared)
    known = {row.destination for row in repo.stats(unqueued=False)} | named
    if destination in named or not known:
        return None  # declared on purpose, or the ledger's first destination
    others = sorted(known - {destination})
    close = difflib.get_close_matches(destination, others, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{destination!r} is a new destination (known: {', '.join(others)}){hint}"


def _confirm_new_destination(repo: SqlAlchemyRepository, destination: str, *, ask: bool) -> None:
    """Check that queuing for `destination` is meant when it has no jobs but
    other destinations do. On a terminal (and `ask`), ask; a "no" is a
    `CommandError` and nothing is queued. Off a terminal nobody can answer
    (scripts start destinations on purpose), so it goes ahead with a
    warning that names the known destinations and the closest one."""
    text = new_destination(repo, destination)
    if text is None:
        return
    if ask and sys.stdin.isatty() and stderr_console().is_terminal:
        if not typer.confirm(f"{text} Create it", default=False, err=True):
            msg = f"nothing queued: {destination!r} has no jobs and was not created"
            raise CommandError(msg)
        return
    logging.getLogger("fulltext_jobs.cli").warning("%s", text)
