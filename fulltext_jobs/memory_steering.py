"""The in-memory adapter's part that steers the fleet (pausing, resuming
and capping a destination, cancelling jobs, changing their priority), and the announcements its
listeners wait on: kept apart from `InMemoryRepository`, which mixes it in,
so that the adapter's class stays within a reader's reach. Everything here
runs on the state the adapter keeps, under its lock."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from fulltext_jobs.checks import (
    check_pause_ends_after,
    read_clock,
)
from fulltext_jobs.domain import (
    Cancellation,
    DestinationControls,
    FullText,
    JobStatus,
    Limits,
)
from fulltext_jobs.port import ReadyListener

__all__ = ["MemorySteering"]


class _Announcements:
    """How many times jobs of each destination have become ready, and a
    condition to wait for the next time. Shares the repository's lock."""

    def __init__(self, lock: threading.Lock) -> None:
        self._changed = threading.Condition(lock)
        self._counts: Counter[str] = Counter()

    def announce(self, destination: str) -> None:
        """Jobs of `destination` became ready. The caller holds the lock."""
        self._counts[destination] += 1
        self._changed.notify_all()

    def count(self, destination: str) -> int:
        with self._changed:
            return self._counts[destination]

    def wait_past(self, destination: str, seen: int, timeout: float) -> int:
        """Wait up to `timeout` seconds for the count of `destination` to
        pass `seen`; return the count."""
        with self._changed:
            self._changed.wait_for(lambda: self._counts[destination] != seen, max(0.0, timeout))
            return self._counts[destination]


class _MemoryReadyListener(ReadyListener):
    def __init__(self, announcements: _Announcements, destination: str) -> None:
        self._announcements = announcements
        self._destination = destination
        self._seen = announcements.count(destination)
        self._closed = False

    def wait(self, timeout: float) -> bool:
        if self._closed:
            return False
        count = self._announcements.wait_past(self._destination, self._seen, timeout)
        woken, self._seen = count != self._seen, count
        return woken

    def close(self) -> None:
        self._closed = True


class MemorySteering:
    """The steering of `InMemoryRepository` (which sets the attributes it
    reads)."""

    _lock: threading.Lock
    _announcements: _Announcements
    _clock: Callable[[], datetime]
    _lease: timedelta
    _jobs: dict[uuid.UUID, FullText]
    _controls_of: dict[str, DestinationControls]
    _by_pair: dict[tuple[str, str], uuid.UUID]
    _held: set[uuid.UUID]
    _cancels: dict[uuid.UUID, tuple[uuid.UUID, str]]
    _cancel_announcements: _Announcements
    _hold_ended: threading.Condition
    _unblock: Callable[[FullText], None]

    # --- steering the fleet -------------------------------------------

    def _controls(self, destination: str) -> DestinationControls:
        with self._lock:
            return self._controls_of.get(destination) or DestinationControls(destination)

    def _list_controls(self) -> list[DestinationControls]:
        with self._lock:
            return [self._controls_of[name] for name in sorted(self._controls_of)]

    def _pause(
        self, destination: str, until: datetime | None, reason: str | None, *, at_least: bool
    ) -> DestinationControls:
        now = read_clock(self._clock, self._lease)
        check_pause_ends_after(until, now)
        with self._lock:
            earlier = self._controls_of.get(destination) or DestinationControls(destination)
            if at_least and earlier.outlasts(until, now):
                return earlier
            began = earlier.paused_at if earlier.paused(now) else now
            controls = replace(earlier, paused_at=began, paused_until=until, pause_reason=reason)
            self._controls_of[destination] = controls
            return controls

    def _limit(self, destination: str, limits: Limits) -> DestinationControls:
        with self._lock:
            earlier = self._controls_of.get(destination) or DestinationControls(destination)
            controls = limits.applied_to(earlier)
            self._controls_of[destination] = controls
            # A cap raised or removed makes room: idle workers wake.
            self._announcements.announce(destination)
            return controls

    def _resume(self, destination: str) -> DestinationControls:
        with self._lock:
            earlier = self._controls_of.get(destination)
            controls = replace(
                earlier or DestinationControls(destination),
                paused_at=None,
                paused_until=None,
                pause_reason=None,
            )
            if earlier is not None:
                self._controls_of[destination] = controls
                # Idle workers wake and claim, as PostgreSQL's notification
                # wakes them.
                self._announcements.announce(destination)
            return controls

    # --- cancelling -------------------------------------------------------

    def _cancel(self, destination: str, item_ids: list[str] | None, error: str) -> Cancellation:
        now = read_clock(self._clock, self._lease)
        with self._lock:
            chosen = self._cancel_targets(destination, item_ids)
            # A held job is the hold's until its block ends (see __init__).
            self._hold_ended.wait_for(lambda: self._held.isdisjoint(chosen))
            skipped: list[uuid.UUID] = []
            requested: list[uuid.UUID] = []
            for job_id in chosen:
                job = self._jobs[job_id]
                if job.status is JobStatus.READY:
                    job.skip(now, error=error)
                    job.version += 1
                    self._unblock(job)
                    skipped.append(job_id)
                elif job.status is JobStatus.RUNNING and job.claim_token is not None:
                    self._cancels[job_id] = (job.claim_token, error)
                    requested.append(job_id)
            self._forget_stale_cancels()
            if requested:
                self._cancel_announcements.announce(destination)
            return Cancellation(sorted(skipped), sorted(requested))

    def _prioritize(self, destination: str, item_ids: list[str], priority: int) -> int:
        with self._lock:
            pairs = ((item_id, destination) for item_id in item_ids)
            chosen = [self._by_pair[pair] for pair in pairs if pair in self._by_pair]
            # A held job is the hold's until its block ends (see __init__).
            self._hold_ended.wait_for(lambda: self._held.isdisjoint(chosen))
            changed = 0
            for job_id in chosen:
                job = self._jobs[job_id]
                if job.status is JobStatus.READY:
                    job.priority = priority
                    job.version += 1
                    changed += 1
            return changed

    def _cancel_targets(self, destination: str, item_ids: list[str] | None) -> list[uuid.UUID]:
        """The jobs a cancel looks at: those of `item_ids`, or every ready
        one. Called under the lock."""
        if item_ids is None:
            return [
                job.id
                for job in self._jobs.values()
                if job.destination == destination and job.status is JobStatus.READY
            ]
        pairs = ((item_id, destination) for item_id in item_ids)
        return [self._by_pair[pair] for pair in pairs if pair in self._by_pair]

    def _forget_stale_cancels(self) -> None:
        """Drop the requests whose claim has ended; called under the lock."""
        for job_id, (token, _) in list(self._cancels.items()):
            job = self._jobs.get(job_id)
            if job is None or job.status is not JobStatus.RUNNING or job.claim_token != token:
                del self._cancels[job_id]

    def _take_cancel_requests(
        self, claims: list[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, str]:
        with self._lock:
            taken = {}
            for job_id, token in claims:
                request = self._cancels.pop(job_id, None)
                if request is not None and request[0] == token:
                    taken[job_id] = request[1]
            return taken

    def _listen_for_cancels(self, destination: str) -> ReadyListener:
        """A listener woken, in this process, whenever a cancel request is
        made for a running job of `destination`."""
        return _MemoryReadyListener(self._cancel_announcements, destination)
