"""What a worker does besides claiming: fill the queue and rescue expired
jobs (`Producer`, with `produce=True`)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from fulltext_jobs.errors import StoreError
from fulltext_jobs.repository import Repository
from fulltext_jobs.worker.inflight import Run

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")


class Producer:
    """Queues the new items of `destination` in `repository` when a claim
    finds nothing, sweeping every item every `sweep` (`make_work`), and
    rescues its expired jobs every `rescue_interval` seconds (`loop`),
    failing those that have had `max_attempts` attempts."""

    def __init__(
        self,
        repository: Repository,
        destination: str,
        *,
        sweep: timedelta,
        rescue_interval: float,
        max_attempts: int,
    ) -> None:
        self._repository = repository
        self._destination = destination
        self._sweep = sweep
        self._rescue_interval = rescue_interval
        self._max_attempts = max_attempts

    def make_work(self, run: Run, *, idle_since: float) -> bool | None:
        """Queue the destination's new items, or all its unqueued items when
        a sweep is due (and, with `until_idle`,
        rescue expired jobs); return whether that made any job ready, or
        None if a retryable error left that unknown.

        One thread produces at a time; a thread that finds that another
        produced after its own claim came back empty takes that result."""
        with run.produce_lock:
            ended, made = run.last_production
            if ended > idle_since:
                return made > 0
            try:
                made = self._repository.enqueue_new(self._destination, sweep_interval=self._sweep)
                run.count("enqueued", made)
                if run.until_idle:
                    # Before reporting idle: jobs whose worker died come back.
                    made += self.rescue(run)
            except StoreError as exc:
                if not exc.retryable:
                    raise
                run.retryable("enqueue", exc)
                return None
            if made:
                _log.info("%s: queued or rescued %d job(s)", self._destination, made)
            run.last_production = (time.monotonic(), made)
            return made > 0

    def rescue(self, run: Run) -> int:
        """Return the destination's expired jobs to `ready`; how many."""
        rescued = self._repository.rescue_expired(
            self._destination, max_attempts=self._max_attempts
        )
        run.count("rescued", rescued)
        if rescued:
            _log.warning(
                "%s: rescued %d job(s) whose lease ran out or whose holder died",
                self._destination,
                rescued,
            )
        return rescued

    def loop(self, run: Run) -> None:
        """Rescue expired jobs now and every `rescue_interval` seconds."""
        while True:
            try:
                self.rescue(run)
            except StoreError as exc:
                if not exc.retryable:
                    raise
                run.retryable("rescue_expired", exc)
            if run.halt.wait(self._rescue_interval):
                return
