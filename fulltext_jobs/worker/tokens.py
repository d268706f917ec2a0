"""Start tokens under a rate limit (`TokenWaiter`): a claim thread takes
them from its destination's bucket in the store before each claim, at the
worker's own rate (`Worker(rate_limit=)`) if it has one, else at the rate
an operator set for the destination (`Repository.limit(rate=)`), read
from the store at most every `CONTROLS_TTL` seconds."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import Final

from fulltext_jobs.errors import StoreError
from fulltext_jobs.repository import Repository
from fulltext_jobs.worker.inflight import Run
from fulltext_jobs.worker.settings import Wait
from fulltext_jobs.worker.waiting import WaitReason

#: The shortest wait, in seconds, for a start token the bucket said was
#: due: a wait of a few microseconds would only spin.
_MIN_TOKEN_WAIT: Final = 0.001

#: After a lost race for a start token, a waiter waits up to this many more
#: tokens' time, at random (see `TokenWaiter.take`).
_MAX_TOKEN_SPREAD: Final = 8

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")


#: How long, in seconds, a worker keeps to the destination's rate as it
#: last read it: a change reaches every worker within this time, for one
#: read of the controls a second per worker.
CONTROLS_TTL: Final = 1.0


class TokenWaiter:
    """Takes start tokens for `destination` from its bucket in `repository`
    for claims of up to `batch_size` jobs, pausing by `wait`: at most
    `rate` starts a second, `burst` at once, if `rate` is given (the
    worker's own); else at the destination's rate and burst (its
    `DestinationControls`; a burst not set is `batch_size`), and none
    while it has none."""

    def __init__(  # noqa: PLR0913 - the bucket's settings and the worker's claim size
        self,
        repository: Repository,
        destination: str,
        *,
        rate: float | None,
        burst: int,
        batch_size: int,
        wait: Wait,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._destination = destination
        self._own = None if rate is None else (rate, burst)
        self._batch_size = batch_size
        self._wait = wait
        self._monotonic = monotonic
        # The destination's rate and burst as last read, and when.
        self._set: tuple[float, int] | None = None
        self._read_at = -math.inf

    def _in_force(self, run: Run) -> tuple[float, int] | None:
        """The rate and burst to keep to now: the worker's own, or the
        destination's as read within `CONTROLS_TTL` seconds (as last read,
        if the read fails with a retryable error); None for no limit."""
        if self._own is not None:
            return self._own
        now = self._monotonic()
        if now - self._read_at < CONTROLS_TTL:
            return self._set
        self._read_at = now
        try:
            controls = self._repository.controls(self._destination)
        except StoreError as exc:
            if not exc.retryable:
                raise
            run.retryable("controls", exc)
            return self._set
        found = (
            None
            if controls.rate is None
            else (controls.rate, controls.rate_burst or self._batch_size)
        )
        if found != self._set:
            _log.info(
                "%s: keeping to its rate of %s",
                self._destination,
                "none" if found is None else f"{found[0]:g} starts/s, {found[1]} at once",
            )
        self._set = found
        return found

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
        time (1 / rate). With no rate in force, `batch_size` at once."""
        refused = 0
        while not run.halt.is_set():
            in_force = self._in_force(run)
            if in_force is None:
                return self._batch_size
            rate, burst = in_force
            tokens = self._repository.take_rate_tokens(
                self._destination, rate, self._batch_size, burst=burst
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
