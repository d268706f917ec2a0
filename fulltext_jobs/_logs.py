"""Keeping other libraries' routine INFO lines out of the logs, for one
thread and one stretch of code, without touching the app's logging set-up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_info"]


class _ThisThreadsInfo(logging.Filter):
    """Drops the records below WARNING logged by one thread."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.thread != self.thread


@contextmanager
def quiet_info(*names: str) -> Iterator[None]:
    """Drop what the loggers `names` log below WARNING from this thread,
    while the block runs. Warnings and errors still get through, and other
    threads' records too. (A logger's filters apply to the records logged on
    it, not on its children: name each logger.)"""
    quiet = _ThisThreadsInfo()
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
