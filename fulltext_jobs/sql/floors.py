"""Where each destination's claims start reading its queue, on PostgreSQL.

PostgreSQL keeps every row version that a transaction still open could
see. While one stays open (an analytics query, a forgotten `BEGIN`, a
replica's feedback), vacuum cannot remove the old versions of the jobs
claimed since, and an index scan cannot mark their entries dead: a claim
that read the ready jobs from the oldest would visit every one of them,
more with each batch, for as long as that transaction lives.

So a claim starts at a floor instead: the place in the claim order just
past the last job the last claim of this process took for the destination.
The claim order, and so a floor, is a key `(-priority, seq)`: the highest
priority first, then the oldest (migration 0016 indexes the due jobs so).
Every ready job before that key was then either taken or locked by another
claim, so the floor passes over only the entries of jobs already claimed. The
floor is a hint, kept in memory per engine (`floors_of`): every repository
of the process on that engine, and their sessions and threads, share it.
Nothing is written for it, and a floor that is too low only costs reading.

A job can become ready behind the floor: a rescued or retried job keeps
its `seq`, a holder in the transaction mode that stops or dies leaves its
jobs ready, a batch of new jobs can commit after a later one was claimed,
a new job can have a higher priority than the floor's, and an operator can
raise a ready job's priority. When this process does it, it drops the floor
(`forget`, or `enqueued` for new jobs of a priority above the floor's), so
its next claim reads from the start and the order is what it would be
without floors. When another process does, the jobs are found by a *look-back*: a
claim that reads from the start of the queue, at least every
`LOOKBACK_SECONDS`, and no more often than keeps look-backs under
`LOOKBACK_SHARE` of the time they take. So such a job waits about a second
on a healthy database; while vacuum is held back it waits longer, as
look-backs grow dearer, and the claims in between stay cheap. Jobs delayed
for a retry are read in order of when they come due, not from the floor.

This module imports only the standard library.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Final

__all__ = [
    "FROM_START",
    "LOOKBACK_SECONDS",
    "LOOKBACK_SHARE",
    "PAST_END",
    "ClaimFloors",
    "ClaimKey",
    "floors_of",
    "range_params",
]

#: A place in the claim order: (-priority, seq), smallest first.
ClaimKey = tuple[int, int]

#: The floor of a claim that reads the whole queue: before every key (the
#: negated priority is at least -32,767, `seq` a bigint).
FROM_START: Final[ClaimKey] = (-(2**15), -(2**63))

#: The end of a claim's range that reads to the end of the queue: after
#: every key.
PAST_END: Final[ClaimKey] = (2**15 - 1, 2**63 - 1)

#: The longest a claim goes without reading the queue from its start
#: (while look-backs are cheap).
LOOKBACK_SECONDS: Final = 1.0

#: The most of the time that look-backs may take: after one that took
#: `t` seconds, the next waits at least `t / LOOKBACK_SHARE`.
LOOKBACK_SHARE: Final = 0.02


def range_params(start: ClaimKey, end: ClaimKey) -> dict[str, int]:
    """The parameters of a claim that reads the due queue from the key
    `start` up to, not including, `end` (see `ClaimStatements._from_floor`)."""
    return {
        "from_rank": start[0],
        "from_seq": start[1],
        "below_rank": end[0],
        "below_seq": end[1],
    }


class ClaimFloors:
    """Each destination's claim floor, and when its next look-back is due.

    `start` says where a claim begins; `claimed` records what it took.
    Safe to share between threads: each update is one assignment, and a
    floor written by a slower thread is still a valid hint.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._floors: dict[str, ClaimKey] = {}
        self._lookback_at: dict[str, float] = {}

    def start(self, destination: str) -> ClaimKey:
        """The key the next claim of `destination` reads from:
        `FROM_START` for its first claim and when a look-back is due."""
        floor = self._floors.get(destination)
        if floor is None or self._monotonic() >= self._lookback_at.get(destination, 0.0):
            return FROM_START
        return floor

    def claimed(
        self, destination: str, start: ClaimKey, last: ClaimKey | None, began: float
    ) -> None:
        """Record a claim of `destination` that read from `start` and took
        jobs up to the key `last` (None: none), having begun at `began` on
        this object's clock (`now`).

        The floor moves to just past `last`, but never below `start`: the
        jobs below `start` that a claim from a floor takes are delayed jobs
        that came due (read through their own index, whatever the floor),
        which say nothing of the due jobs there; following them down would
        make every claim of a retry backlog walk again what the floor had
        passed."""
        if last is not None:
            self._floors[destination] = max(start, (last[0], last[1] + 1))
        if start == FROM_START:
            now = self._monotonic()
            wait = max(LOOKBACK_SECONDS, (now - began) / LOOKBACK_SHARE)
            self._lookback_at[destination] = now + wait

    def forget(self, destination: str | None) -> None:
        """Drop `destination`'s floor (every destination's, for None): this
        process has just made jobs ready behind it (saved a claimed job
        back to ready, rescued, retried, or rolled a hold back), and its
        next claim reads from the start, so that they keep their place."""
        if destination is None:
            self._floors.clear()
        else:
            self._floors.pop(destination, None)

    def enqueued(self, destination: str, priority: int) -> None:
        """Drop `destination`'s floor if this process has just made new
        jobs of `priority` for it and that priority is above the floor's:
        the new jobs sit behind the floor. (New jobs of the floor's priority
        or below are after it: their `seq` is past every claimed one.)"""
        floor = self._floors.get(destination)
        if floor is not None and -priority < floor[0]:
            self._floors.pop(destination, None)

    def now(self) -> float:
        """This object's clock, for `claimed`'s `began`."""
        return self._monotonic()


_BY_ENGINE: weakref.WeakKeyDictionary[object, ClaimFloors] = weakref.WeakKeyDictionary()
_BY_ENGINE_LOCK = threading.Lock()


def floors_of(engine: object) -> ClaimFloors:
    """The claim floors of `engine` in this process, made on first use:
    shared by every repository on it, so that a write through one (a job
    returned to ready) drops the floor the others claim from."""
    with _BY_ENGINE_LOCK:
        floors = _BY_ENGINE.get(engine)
        if floors is None:
            floors = _BY_ENGINE[engine] = ClaimFloors()
        return floors
