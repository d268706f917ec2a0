"""Start tokens under a rate limit (`TokenWaiter`): a claim thread takes
them from its destination's bucket in the store before each claim."""

from __future__ import annotations

import random
from typing import Final

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
