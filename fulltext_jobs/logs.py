"""Log records for machines: one JSON object a line, and the context that
tags a worker's records with its destination and the job at hand.

The worker runs each of its threads inside `log_context(destination=...)`
and each handler call inside `log_context(job_id=...)`; `JsonFormatter`
adds those fields to every record logged there, the handler's own records
included (an `extra={"destination": ...}` on the call wins). The context
lives in a `contextvars.ContextVar`, so it follows a thread, and the tasks
of an async handler, without being passed along.

Standard library only: a plain install logs JSON.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "context_fields", "log_context"]

#: The fields a log context may carry, in the order a JSON line shows them.
CONTEXT_FIELDS: Final = ("destination", "job_id")

_KNOWN_FIELDS: Final = frozenset(CONTEXT_FIELDS)

_context: ContextVar[Mapping[str, str] | None] = ContextVar("fulltext_jobs_log", default=None)


def log_context(**fields: object) -> AbstractContextManager[None]:
    """Tag the records logged inside the block (in this thread or task) with
    `fields` (of `CONTEXT_FIELDS`), on top of the context already set."""
    if not _KNOWN_FIELDS.issuperset(fields):
        msg = f"unknown log context fields: {sorted(set(fields) - _KNOWN_FIELDS)}"
        raise ValueError(msg)
    return _Tagged({name: str(value) for name, value in fields.items()})


class _Tagged:
    """The block of a `log_context`: a plain class rather than a
    `contextmanager` generator, since the worker enters one for every job."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: Mapping[str, str]) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _context.set({**context_fields(), **self._fields})

    def __exit__(self, *exc_info: object) -> None:
        _context.reset(self._token)


def context_fields() -> Mapping[str, str]:
    """The log context of this thread or task."""
    return _context.get() or {}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `time` (UTC, ISO 8601, milliseconds),
    `level`, `logger`, `message`, then `destination` and `job_id` where the
    record or the log context has them, and for a record with an exception,
    `exception` (its last line, `RuntimeError: ...`) and, with `tracebacks`,
    `traceback` (the whole text). Newlines inside values are escaped, so a
    record is always one line."""

    def __init__(self, *, tracebacks: bool = False) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        data: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = context_fields()
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None) or context.get(field)
            if value is not None:
                data[field] = str(value)
        if record.exc_info and record.exc_info[1] is not None:
            exception = record.exc_info[1]
            data["exception"] = " ".join(
                "".join(traceback.format_exception_only(exception)).split()
            )
            if self.tracebacks:
                data["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)
