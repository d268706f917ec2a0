"""What a worker does besides claiming: fill the queue and rescue expired
jobs (`Producer`, with `produce=True`), and wait for start tokens under a
rate limit (`TokenWaiter`)."""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta
from typing import Final

from fulltext_jobs.errors import StoreError
from fulltext_jobs.repository import Repository
from fulltext_jobs.worker.inflight import Run
from fulltext_jobs.worker.settings import Wait
from fulltext_jobs.worker.waiting import WaitReason

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")

#: The shortest wait, in seconds, for a start token the bucket said was
#: due: a wait of a few microseconds would only spin.
_MIN_TOKEN_WAIT: Final = 0.001

#: After a lost race for a start token, a waiter waits up to this many more
#: tokens' time, at random (see `TokenWaiter.take`).
_MAX_TOKEN_SPREAD: Final = 8


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


class TokenWaiter:
    """Takes start tokens for `destination` from its bucket in `repository`
    (at most `rate` starts a second, `burst` at once), for claims of up to
    `batch_size` jobs, pausing by `wait`."""

    def __init__(  # noqa: PLR0913 - the bucket's settings and the worker's claim size
        self,
        repository: Repository,
        destination: str,
        *,
        rate: float,
        burst: int,
        batch_size: int,
        wait: Wait,
    ) -> None:
        self._repository = repository
        self._destination = destination
        self._rate = rate
        self._burst = burst
        self._batch_size = batch_size
        self._wait = wait

    def take(self, run: Run) -> int:
        """Start tokens for the next claim (1 to `batch_size`), waiting as
        long as the bucket says when it has none; 0 if the run halts first.

        Tokens a claim then leaves unused (it found fewer jobs) are lost,
        not given back: handing them back exactly would need the take and
        the claim in one transaction, holding the bucket's row lock across
        the claim. The loss is at most `batch_size - 1` tokens a claim,
        and only when the queue runs short, where the rate is not what
        holds the work back; an idle worker's polls use up tokens nobody
        needed, and the first job to come after waits at most one token's
        time (1 / rate)."""
        rate = self._rate
        refused = 0
        while not run.halt.is_set():
            tokens = self._repository.take_rate_tokens(
                self._destination, rate, self._batch_size, burst=self._burst
            )
            if tokens.granted:
                return tokens.granted
            # Every thread and process waiting for the bucket wakes when its
            # next token is due, and all but one lose the race for it. A
            # loser then waits up to a few tokens' time more, at random, so
            # that a crowd of waiters does not write the bucket's row all at
            # once every token. The first wait has no such spread: a lone
            # worker keeps to the rate exactly. Halting cuts a wait short.
            spread = min(refused, _MAX_TOKEN_SPREAD) / rate * random.random()  # noqa: S311 - jitter
            refused += 1
            run.waits.wait(WaitReason.RATE_LIMIT)
            self._wait(run.halt, max(tokens.wait, _MIN_TOKEN_WAIT) + spread)
        return 0
