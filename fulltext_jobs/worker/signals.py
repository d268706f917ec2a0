"""SIGINT and SIGTERM while a run lasts: the first stops it gracefully (the
jobs in flight may finish, for up to `shutdown_timeout`), the second stops
it at once (what it holds is released now, not at the timeout).

The handlers only count (`Run.signals`): a handler runs in the main thread
between two bytecodes, possibly while that thread holds the very lock
`Event.set` or a log handler takes, which would deadlock. The run's main
thread acts on the count (`Worker._await_end`, `Worker._shut_down`) and
says what it does, at WARNING, so that a person who pressed Ctrl-C sees at
once that it was heard and how long the stop may take.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from fulltext_jobs.worker.inflight import Run

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")

SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

#: The signals that stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install(run: Run) -> dict[signal.Signals, SignalHandler]:
    """Count SIGINT and SIGTERM in `run.signals`, if called in the main
    thread; return the handlers they replaced (for `restore`)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        run.signals += 1

    return {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}


def restore(previous: dict[signal.Signals, SignalHandler]) -> None:
    """Put back the handlers `install` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def say_stopping(run: Run, timeout: float, *, counted: bool) -> None:
    """The first signal: the run stops claiming and waits for its jobs in
    flight (`counted`: whether `run.held` holds them, as in the leased
    mode; a transaction's batch is not counted there)."""
    with run.lock:
        held = len(run.held)
    if counted and not held:
        _log.warning("stopping %s: no job in flight", run.destination)
        return
    jobs = _jobs(held) if counted else "the jobs"
    _log.warning(
        "stopping %s: waiting up to %gs for %s in flight; Ctrl-C (or SIGTERM) again stops at once",
        run.destination,
        timeout,
        jobs,
    )


def say_stopping_at_once(run: Run, *, counted: bool) -> None:
    """A further signal: the run releases what it holds without waiting."""
    with run.lock:
        held = len(run.held)
    if counted:
        _log.warning("stopping %s at once: releasing %s in flight", run.destination, _jobs(held))
    else:
        _log.warning("stopping %s at once: its batch in flight is rolled back", run.destination)
