"""What a worker is waiting for, when it is not working: no job ready, jobs
that wait for a retry (and when the next is due), the rate limit, or a
pause of its destination (and when it ends).

`WaitLog` keeps the worker's current `Waiting` (read by `Worker.waiting`,
which the command line's live line shows) and says each change in the log:
a worker that stops claiming for minutes must say why, or it reads as a
hang. A run with `until_idle` says that it waits for retries at WARNING,
since its end is what a script waits for; everything else is INFO (`-v`).
The same wait is said again at most every `REPEAT_SECONDS`, so a fleet
whose retries come due one by one does not fill the log.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from fulltext_jobs.domain import utc

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")

#: The least time, in seconds, before the same kind of wait is logged again.
REPEAT_SECONDS: Final = 30.0


class WaitReason(enum.StrEnum):
    """Why a worker is not claiming; each value reads as a sentence's end."""

    EMPTY = "no job is ready"
    RETRY = "jobs wait for a retry"
    RATE_LIMIT = "the rate limit has no start token yet"
    PAUSED = "the destination is paused"
    CAPPED = "the destination's cap on running jobs is reached"


@dataclasses.dataclass(frozen=True, slots=True)
class Waiting:
    """A worker's wait: why, since when, and for a retry, when the next one
    is due, for a pause, when it ends (UTC, by the worker's clock; None:
    until resumed); `note`: the pause's reason, if one was given."""

    reason: WaitReason
    since: datetime
    due: datetime | None = None
    note: str | None = None


class WaitLog:
    """The current wait of one run of a worker on `destination`, set by its
    claim threads (`wait`, `working`) and read by any thread (`current`).

    `clock` is the worker's clock (for `since` and `due`); `monotonic`
    spaces the log lines."""

    def __init__(
        self,
        destination: str,
        *,
        clock: Callable[[], datetime],
        until_idle: bool,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._destination = destination
        self._clock = clock
        self._until_idle = until_idle
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._current: Waiting | None = None
        self._said: dict[WaitReason, float] = {}

    @property
    def current(self) -> Waiting | None:
        """The wait in force, or None while the worker works."""
        return self._current

    def working(self) -> None:
        """A claim found work: the worker is not waiting."""
        self._current = None

    def wait(
        self, reason: WaitReason, due_in: float | None = None, note: str | None = None
    ) -> None:
        """The worker waits for `reason`; for `RETRY`, the next job is due in
        `due_in` seconds; for `PAUSED`, the pause ends in `due_in` seconds
        (None: when resumed), and `note` is its reason. Logged if the reason
        changed, or if it has not been said for `REPEAT_SECONDS`."""
        now = utc(self._clock())
        due = None if due_in is None else now + timedelta(seconds=due_in)
        with self._lock:
            previous = self._current
            same = previous is not None and previous.reason is reason
            since = previous.since if previous is not None and same else now
            self._current = Waiting(reason, since, due, note)
            said = self._said.get(reason)
            moment = self._monotonic()
            if same or (said is not None and moment - said < REPEAT_SECONDS):
                return
            self._said[reason] = moment
        self._say(reason, due, note)

    def _say(self, reason: WaitReason, due: datetime | None, note: str | None) -> None:
        if reason is WaitReason.PAUSED:
            # An operator's act, which every worker of the fleet obeys: said
            # at WARNING, so that a stalled fleet explains itself.
            _log.warning(
                "%s is paused %s%s; no job is claimed until then",
                self._destination,
                "until resumed"
                if due is None
                else f"until {due.strftime('%Y-%m-%d %H:%M:%S UTC')}",
                "" if note is None else f" ({note})",
            )
        elif reason is WaitReason.RETRY and due is not None:
            level = logging.WARNING if self._until_idle else logging.INFO
            _log.log(
                level,
                "jobs of %s wait for a retry; the next is due at %s",
                self._destination,
                due.strftime("%H:%M:%S UTC"),
            )
        elif reason is WaitReason.EMPTY:
            _log.info("no job of %s is ready; waiting for one", self._destination)
        else:
            _log.info("waiting for %s: %s", self._destination, reason.value)
