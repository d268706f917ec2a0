"""What a claim thread does when its claim came back empty: wait for work.

`Idler` decides how long, and says why (`WaitLog`): while the destination
is paused, until the pause ends or a resume wakes it; at its cap, a
`poll_interval` at a time (nothing announces a job ending); with a producer, not
at all if producing made jobs ready; otherwise backing off from
`poll_interval` to `max_poll_interval`, but no longer than until the
destination's next delayed job (a retry) is due (`Repository.next_due`).
Any wait ends at once when the ready listener (`listener`) announces that a
job of the destination became ready (`run.wakeup`), which on PostgreSQL a
resume announces too. With `until_idle` it says when the run is over.
"""

from __future__ import annotations

import math
import time
from typing import Final

from fulltext_jobs.domain import DestinationControls, utc
from fulltext_jobs.errors import StoreError
from fulltext_jobs.repository import Repository
from fulltext_jobs.worker.inflight import Run
from fulltext_jobs.worker.listener import start_listener
from fulltext_jobs.worker.producer import Producer
from fulltext_jobs.worker.settings import WorkerSettings
from fulltext_jobs.worker.waiting import WaitReason

__all__ = ["Idler"]

#: The shortest wait, in seconds, for a ready job that was not claimable.
SOON: Final = 0.01


class Idler:
    """The waits of the claim threads of one worker on `destination`."""

    def __init__(
        self,
        repository: Repository,
        destination: str,
        settings: WorkerSettings,
        producer: Producer | None,
    ) -> None:
        self._repository = repository
        self._destination = destination
        self._settings = settings
        self._producer = producer

    def after_empty(self, run: Run, delay: float) -> float | None:
        """A claim found nothing after a wait of `delay`: wait for work as
        the module's docstring says, and return the next delay; None when a
        run `until_idle` is over (nothing ready, nothing coming but a
        resume)."""
        start_listener(run)
        controls = self._controls(run)
        paused_for = None if controls is None else self._paused_for(run, controls)
        if paused_for is not None:
            if run.until_idle and paused_for == math.inf:
                return None  # nothing is claimable until an operator resumes
            return self.idle(run, delay, paused_for)
        made = (
            False
            if self._producer is None
            else self._producer.make_work(run, idle_since=time.monotonic())
        )
        if made:
            return self._settings.poll_interval
        # With `until_idle`, jobs that wait for their retry (or for room under
        # a cap) keep the run going: it ends once none is ready.
        ending = run.until_idle and made is not None
        if controls is not None and controls.max_running is not None:
            return self._at_cap(run, delay, ending=ending)
        due_in = self._next_due(run, soon=SOON if ending else delay)
        if ending and due_in is None:
            return None
        # A delayed job (a retry) is claimed when it is due, not at the next
        # poll: its release woke no one.
        return self.idle(run, delay, due_in)

    def _at_cap(self, run: Run, delay: float, *, ending: bool) -> float | None:
        """A capped destination whose claim found nothing. With jobs due the
        cap is reached (or another claimer took them), and room is made by
        jobs ending anywhere in the fleet, which nothing announces: look
        again every `poll_interval`, without backing off. With none due,
        wait as for an uncapped destination (None: the run is `ending`)."""
        poll = self._settings.poll_interval
        due_in = self._next_due(run, soon=0.0)
        if due_in is None:
            return None if ending else self.idle(run, delay)
        if due_in == 0.0:
            run.waits.wait(WaitReason.CAPPED)
            due_in = None
        self.idle(run, poll, due_in)
        return poll

    def idle(self, run: Run, delay: float, due_in: float | None = None) -> float:
        """Wait for work: `delay` seconds, or `due_in` if that is sooner, or
        until woken (`run.wakeup`: a job became ready, the destination was
        resumed, or the run halts); return the next delay, doubled up to
        `max_poll_interval`."""
        self._settings.wait(run.wakeup, delay if due_in is None else min(delay, due_in))
        return min(delay * 2, self._settings.max_poll_interval)

    def _controls(self, run: Run) -> DestinationControls | None:
        """What is set for the destination; None if a retryable error left it
        unknown (the next claim asks again)."""
        try:
            return self._repository.controls(self._destination)
        except StoreError as exc:
            if not exc.retryable:
                raise
            run.retryable("controls", exc)
            return None

    def _paused_for(self, run: Run, controls: DestinationControls) -> float | None:
        """None unless the destination is paused, else the seconds until its
        pause ends (`math.inf`: until resumed)."""
        now = utc(self._settings.clock())
        if not controls.paused(now):
            return None
        left = (
            math.inf
            if controls.paused_until is None
            else (controls.paused_until - now).total_seconds()
        )
        run.waits.wait(WaitReason.PAUSED, None if left == math.inf else left, controls.pause_reason)
        return left

    def _next_due(self, run: Run, soon: float = SOON) -> float | None:
        """None if no job of the destination is `ready`, else about how many
        seconds until one is due (a delayed retry), or `soon` for one due
        already (another claimer was taking it, or holds it in an
        uncommitted claim). A retryable error counts as "not known yet":
        `soon`."""
        try:
            due = self._repository.next_due(self._destination)
        except StoreError as exc:
            if not exc.retryable:
                raise
            run.retryable("next_due", exc)
            return soon
        if due is None:
            run.waits.wait(WaitReason.EMPTY)
            return None
        due_in = (due - utc(self._settings.clock())).total_seconds()
        if due_in <= 0:
            return soon
        run.waits.wait(WaitReason.RETRY, due_in)
        return due_in
