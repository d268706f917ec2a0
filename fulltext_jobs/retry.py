"""How a worker retries a job whose handler raised: exponential backoff with
jitter, up to a number of attempts.

Standard library only, like the domain. The policy computes delays; the
worker applies them (`FullText.release(not_before=...)`), and the ledger
keeps the job from being claimed before it is due.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from typing import Final

from fulltext_jobs.checks import MAX_INT32, as_real, check_count, check_duration, check_max_attempts
from fulltext_jobs.errors import InvalidInput

__all__ = ["DEFAULT_MAX_ATTEMPTS", "DEFAULT_MAX_BACKOFFS", "DEFAULT_RETRY", "RetryPolicy"]

#: How many attempts a job gets by default, wherever attempts are bounded:
#: the retry policy, `rescue_expired`, the audit and the command line.
DEFAULT_MAX_ATTEMPTS: Final = 5

#: How many times a job may back off (`RetryAfter`) by default.
DEFAULT_MAX_BACKOFFS: Final = 20


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry a failed job with exponential backoff and jitter.

    A job whose handler raised (anything but `SkipJob` and `FailJob`) goes
    back to `ready`, not to be claimed for `delay(attempts)`, until it has had
    `max_attempts` attempts (claims, counting the first); then it is
    `failed`. Expired leases count as attempts too, against the same bound.

    The delay after the n-th attempt is `base_delay * 2**(n - 1)`, capped at
    `max_delay`, plus a random part of up to `jitter` times that (0: none),
    so that jobs that failed together (an upstream outage) do not all come
    back at once. A delay is never below the capped backoff.

    The defaults suit a pipeline that fetches text from remote APIs, whose
    transient errors (timeouts, 429s and 5xxs) pass within minutes: 5
    attempts, 30 s doubling to at most 30 minutes, and up to half again as
    jitter (retries after about 30 s, 1, 2 and 4 minutes: some 8 minutes in
    all before a job fails).

    A handler that raises `RetryAfter` backs its job off instead: the job
    goes back for the seconds asked without the attempt counted, at most
    `max_backoffs` times in the job's life (until an operator retries it);
    past that a `RetryAfter` counts as an attempt like any other exception.
    20 by default: a service that asks for time twenty times for one item
    is not coming back soon. 0 counts every `RetryAfter` as an attempt.

    Raises `InvalidInput` for a `max_attempts` that is not a whole number
    from 1 to 2**31 - 1, a `max_backoffs` not from 0 to 2**31 - 1, delays
    that are not timedeltas from 0 to `MAX_LEASE` (with `max_delay` not
    below `base_delay`), or a `jitter` that is not a number from 0 to 1.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(minutes=30)
    jitter: float = 0.5
    max_backoffs: int = DEFAULT_MAX_BACKOFFS

    def __post_init__(self) -> None:
        check_max_attempts(self.max_attempts)
        check_count(self.max_backoffs, "max_backoffs", MAX_INT32, minimum=0)
        for name in ("base_delay", "max_delay"):
            check_duration(getattr(self, name), name, zero=True)
        if self.max_delay < self.base_delay:
            msg = f"max_delay ({self.max_delay}) must not be below base_delay ({self.base_delay})"
            raise InvalidInput(msg)
        jitter = as_real(self.jitter)
        if jitter is None or not 0 <= jitter <= 1:
            msg = f"jitter must be a number from 0 to 1, not {self.jitter!r}"
            raise InvalidInput(msg)

    def backs_off(self, backoffs: int) -> bool:
        """Whether a job that has backed off `backoffs` times may back off
        once more (else its `RetryAfter` counts as an attempt)."""
        return backoffs < self.max_backoffs

    def gives_up(self, attempts: int) -> bool:
        """Whether a job that has had `attempts` attempts fails for good.

        Raises `InvalidInput` unless `attempts` is a whole number from 0 to
        2**31 - 1 (what a job's `attempts` holds), as `backoff` and `delay`
        do."""
        return _attempts(attempts) >= self.max_attempts

    def backoff(self, attempts: int) -> timedelta:
        """The delay after the `attempts`-th attempt, without jitter."""
        attempts = _attempts(attempts)
        # Past 2**40 microseconds every backoff has reached its cap, and the
        # product could overflow a timedelta.
        exponent = min(max(attempts, 1) - 1, 40)
        try:
            return min(self.base_delay * (1 << exponent), self.max_delay)
        except OverflowError:
            return self.max_delay

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """The delay after the `attempts`-th attempt: the backoff plus up to
        `jitter` times it, at random (`rng`, or the module's generator)."""
        backoff = self.backoff(attempts)
        if not self.jitter:
            return backoff
        draw = (rng or random).random()
        return backoff + backoff * (self.jitter * draw)


def _attempts(attempts: object) -> int:
    return check_count(attempts, "attempts", MAX_INT32, minimum=0)


#: The policy a `Worker` uses when given none.
DEFAULT_RETRY: Final = RetryPolicy()
