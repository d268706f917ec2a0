"""Logging set-up of the command line: where records go and how one looks."""

from __future__ import annotations

import enum
import logging
import sys
import traceback
from typing import Final

from fulltext_jobs.cli._output import stderr_console


class LogFormat(enum.StrEnum):
    """How log records are written to stderr."""

    PLAIN = "plain"
    JSON = "json"


class LineFormatter(logging.Formatter):
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
        last = " ".join("".join(traceback.format_exception_only(exception)).split())
        plain = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        plain.msg, plain.args = f"{record.getMessage()} ({last})", None
        return super().format(plain)


_LOG_HANDLER_NAME: Final = "fulltext-jobs-cli"


def configure_logging(verbose: int, log_format: LogFormat = LogFormat.PLAIN) -> None:
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
    console = stderr_console()
    handler: logging.Handler
    if log_format is LogFormat.JSON:
        from fulltext_jobs.logs import JsonFormatter  # noqa: PLC0415 - only for JSON logs

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(tracebacks=verbose > 0))
    elif console.is_terminal:
        # Imported here: off a terminal (a pipe, a service) rich's log
        # handler, and the traceback module it imports, go unused.
        from rich.logging import RichHandler  # noqa: PLC0415

        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(LineFormatter("%(message)s", tracebacks=verbose > 0))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            LineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", tracebacks=verbose > 0)
        )
    handler.set_name(_LOG_HANDLER_NAME)  # to replace it, not add another, next time
    root.addHandler(handler)
    root.setLevel(level)
