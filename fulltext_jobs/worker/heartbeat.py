"""The heartbeat thread: from the claim of a job until its outcome is
saved, it extends the job's lease every `heartbeat_interval` (by default a
third of the lease the repository granted), so that
long work is not rescued from under a live worker.

A heartbeat that finds a claim lost marks the job (`Held.lost`): its
result will be refused, and the claim thread starts no further handler of
that batch. Leases are on the store's clock; when a heartbeat is due is on
the worker's monotonic `clock`, which a test may replace.

After each round of heartbeats, the jobs of the round are looked at for an
operator's cancel (`cancelling.CancelWatch`), which is how a cancel reaches
a worker whose store does not announce it (SQLite).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

from fulltext_jobs.domain import FullText
from fulltext_jobs.errors import LostClaim, StoreError
from fulltext_jobs.repository import Repository
from fulltext_jobs.worker.cancelling import CancelWatch
from fulltext_jobs.worker.inflight import HELD_STAGES, Held, Run, Stage

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")

#: The heartbeat interval when the claim does not say how long its lease is:
#: often enough for any lease of half a minute or more.
FALLBACK_HEARTBEAT_SECONDS: Final = 10.0


class Heartbeat:
    """Extends, in `repository`, the leases of the jobs a run holds as
    they fall due (`Held.next_beat`, on `clock`)."""

    def __init__(
        self,
        repository: Repository,
        *,
        cancels: CancelWatch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._cancels = cancels
        self._clock = clock

    def hold(self, run: Run, jobs: list[FullText], interval: float | None) -> list[Held]:
        """Register the claimed `jobs`, so that their leases are kept alive
        every `interval` seconds (None: a third of the lease the repository
        granted)."""
        now = self._clock()
        held = []
        first = math.inf  # the first heartbeat due among them
        # The jobs of one claim share their lease: work it out once.
        stamps: tuple[datetime | None, datetime | None] = (None, None)
        every = FALLBACK_HEARTBEAT_SECONDS
        for job in jobs:
            if interval is not None:
                every = interval
            elif (job.started, job.lease_expires) != stamps:
                # The lease the repository granted, on its own clock: the
                # claim stamps `started` and `lease_expires` from one instant.
                stamps = (job.started, job.lease_expires)
                lease = (
                    None
                    if job.started is None or job.lease_expires is None
                    else (job.lease_expires - job.started).total_seconds()
                )
                every = lease / 3 if lease is not None and lease > 0 else FALLBACK_HEARTBEAT_SECONDS
            entry = Held(job, every, now + every)
            first = min(first, entry.next_beat)
            held.append(entry)
        if self._cancels is not None:
            self._cancels.started(run)
        with run.changed:
            run.held.update(held)
            # A heartbeat thread that looks again before these fall due
            # needs no wake-up: one per claim would cost it the lock and the
            # GIL for nothing.
            if first < run.beat_wake:
                run.changed.notify_all()
        return held

    def loop(self, run: Run) -> None:
        """Extend the leases of the held jobs as they fall due, until the run
        is over."""
        while True:
            with run.changed:
                if run.over:
                    return
                now = self._clock()
                due, wake = self.take_due(run, now)
                if not due:
                    # Checked and begun under one hold of the lock, so that
                    # `hold` sees `beat_wake` and notifies if it must.
                    run.beat_wake = wake
                    run.changed.wait(wake - now if math.isfinite(wake) else None)
                    run.beat_wake = -math.inf
                    continue
            self.beat_all(run, due)
            if self._cancels is not None:
                self._cancels.check(run, due)

    def take_due(self, run: Run, now: float) -> tuple[list[Held], float]:
        """The held jobs whose heartbeat is due at `now`, their next one
        set; and, if none is, when the first will be (inf: none will until
        jobs are held). Called under the run's lock."""
        beating = [held for held in run.held if held.stage in HELD_STAGES and not held.lost]
        due = [held for held in beating if held.next_beat <= now]
        for held in due:
            held.next_beat = now + held.interval
        if due:
            return due, now
        upcoming = [h.next_beat for h in beating if math.isfinite(h.next_beat)]
        return due, min(upcoming, default=math.inf)

    def beat_all(self, run: Run, due: list[Held]) -> None:
        """Extend the leases of `due`, one after another."""
        for index, held in enumerate(due):
            if not self.beat(run, held):
                # The store failed (retryably): the other heartbeats due
                # would fail alike, each with a warning. Try them with it.
                self._beat_soon(run, due[index + 1 :])
                break

    def _beat_soon(self, run: Run, held: list[Held]) -> None:
        """Make the next heartbeats of `held` due soon, while their leases
        still run."""
        with run.lock:
            for entry in held:
                entry.next_beat = self._clock() + entry.interval / 4

    def beat(self, run: Run, held: Held) -> bool:
        """Extend the lease of `held`; False after a retryable error."""
        try:
            if held.beat is None:
                # Only this thread touches `beat`; under the lock, since
                # `record` may be ending `held.job` (its id and claim
                # token, all a heartbeat needs, stay as claimed).
                with run.lock:
                    held.beat = held.job.copy()
            self._repository.heartbeat(held.beat)
        except LostClaim:
            with run.lock:
                if held not in run.held or held.stage in {Stage.SAVING, Stage.TAKEN}:
                    # Saved or released meanwhile, which ended the claim; a
                    # save that found it lost reports that itself.
                    return True
                held.lost = True
                run.losses += 1
            _log.warning(
                "job %s (item %s): heartbeat found the claim lost; its result will be refused",
                held.job.id,
                held.job.item_id,
            )
        except StoreError as exc:
            if not exc.retryable:
                raise
            run.retryable("heartbeat", exc)
            self._beat_soon(run, [held])
            return False
        else:
            run.count("heartbeats")
        return True
