"""`items add` and `enqueue`: what jobs are made for, and making them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.progress import (
    TextColumn,
)

from fulltext_jobs.cli._base import (
    CommandError,
    DestinationArgument,
    JsonOption,
    UrlOption,
    boundary,
)
from fulltext_jobs.cli._output import print_result, progress_bar, stderr_console
from fulltext_jobs.domain import (
    MAX_BATCH_SIZE,
    check_item_id,
)
from fulltext_jobs.errors import InvalidInput


@contextmanager
def _open_source(file: str) -> Iterator[tuple[BinaryIO, int | None, str]]:
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
    with boundary(ctx, database_url) as state:
        repo = state.repository()
        added = seen = 0
        with (
            _open_source(file) as (stream, size, name),
            progress_bar(stderr_console(), TextColumn("{task.fields[ids]} ids")) as progress,
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
        print_result(
            {"added": added, "ids": seen},
            f"added {added} new items ({seen} ids read)",
            as_json=as_json,
        )


def enqueue(
    ctx: typer.Context,
    destination: DestinationArgument,
    limit: Annotated[int | None, typer.Option(min=1, help="Queue at most this many items.")] = None,
    as_json: JsonOption = False,
    database_url: UrlOption = None,
) -> None:
    """Create a ready job of DESTINATION for every item that has none (or for
    up to --limit of them, smallest ids first); print how many."""
    with boundary(ctx, database_url) as state:
        repo = state.repository()
        console = stderr_console()
        with progress_bar(console) as progress:
            total = None
            if console.is_terminal:  # counting costs a scan: only for the bar
                total = repo.count_unqueued(destination)
                total = total if limit is None else min(total, limit)
            task = progress.add_task(f"enqueue {destination}", total=total)
            created = repo.enqueue_unqueued(
                destination, limit=limit, progress=lambda n: progress.advance(task, n)
            )
        print_result(
            {"destination": destination, "created": created},
            f"created {created} jobs for {destination!r}",
            as_json=as_json,
        )
