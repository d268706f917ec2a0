"""The live lines `work` draws on a terminal: what the worker has done, how
fast, and (on a second line, while it has nothing to do) what it is
waiting for.

It only reads the worker (`Worker.stats` and `Worker.waiting`, both cheap
snapshots taken under the worker's lock) a few times a second, from rich's
refresh thread: nothing here touches the database or slows a job. Off a
terminal nothing is drawn; the worker's own log lines (`-v`) say the same
things once each.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Self

from rich.console import Console
from rich.live import Live
from rich.text import Text

from fulltext_jobs.worker import Waiting, WaitReason, Worker, WorkerStats

#: How often the line is redrawn, per second.
REFRESHES: Final = 2

#: The span, in seconds, over which the rate is measured once the worker
#: has run that long; before, the rate is over the whole run so far.
RATE_WINDOW: Final = 10.0


def done(stats: WorkerStats) -> int:
    """Jobs whose handler ran to an outcome the ledger recorded."""
    return stats.finished + stats.failed + stats.skipped + stats.retried


class Rate:
    """Jobs a second over the last `RATE_WINDOW` seconds, or since the start
    for a worker that has run less than that, so that a worker that has just
    started shows its real pace rather than an average diluted by time it
    did not run. None until there is something to measure."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._points: deque[tuple[float, int]] = deque()
        self._points.append((clock(), 0))

    def add(self, count: int) -> float | None:
        """Record the running total `count` now; return the rate."""
        now = self._clock()
        points = self._points
        points.append((now, count))
        while len(points) > 2 and now - points[1][0] >= RATE_WINDOW:
            points.popleft()
        start, first = points[0]
        if now - start <= 0 or count == first:
            return None if count == 0 else 0.0
        return (count - first) / (now - start)


def describe_wait(waiting: Waiting | None, now: datetime) -> str:
    """What the worker waits for, in words ("" when it is working)."""
    if waiting is None:
        return ""
    if waiting.reason is WaitReason.RETRY and waiting.due is not None:
        seconds = max(0, round((waiting.due - now).total_seconds()))
        return f"waiting: jobs wait for a retry; the next is due in {_span(seconds)}"
    return f"waiting: {waiting.reason.value}"


def _span(seconds: int) -> str:
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class WorkProgress:
    """A context manager that draws `worker`'s live line on `console` while
    the block runs, if `console` is a terminal; otherwise it does nothing.
    The line is left out of the terminal's scrollback when the block ends
    (the result table follows)."""

    def __init__(self, worker: Worker, destination: str, console: Console) -> None:
        self._worker = worker
        self._destination = destination
        self._rate = Rate()
        self._live = (
            Live(
                get_renderable=self.render,
                console=console,
                refresh_per_second=REFRESHES,
                transient=True,
            )
            if console.is_terminal
            else None
        )

    def render(self) -> Text:
        """The line as it stands now."""
        stats = self._worker.stats
        rate = self._rate.add(done(stats))
        parts = [
            f"{self._destination}: claimed {stats.claimed:,}",
            f"finished {stats.finished:,}",
            f"failed {stats.failed:,}",
            f"retrying {stats.retried:,}",
            f"skipped {stats.skipped:,}",
        ]
        line = ", ".join(parts)
        if rate is not None:
            line += f" | {rate:,.1f} jobs/s"
        # What it waits for on a line of its own: the counts fill a narrow
        # terminal's line, and the wait is what a person looks for.
        wait = describe_wait(self._worker.waiting, datetime.now(UTC))
        return Text(f"{line}\n{wait}" if wait else line)

    def __enter__(self) -> Self:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._live is not None:
            self._live.stop()
