"""Rate limits across a fleet: a token bucket per destination, kept in the
store so that every worker sharing it draws from the same bucket.

The bucket is GCRA (the "generic cell rate algorithm"), which holds one
number per destination: its theoretical arrival time `tat`, the moment by
which every token handed out so far would have been earned at `rate`
tokens a second. A take at time `now` may hand out tokens while `tat`
stays within `burst` tokens' worth of time ahead of `now`:

    base      = max(tat, now)
    available = floor((now - base) / interval + burst)   (interval = 1 / rate)
    granted   = min(n, available)
    tat'      = base + granted * interval

So over any span of `t` seconds at most `rate * t + burst` tokens are
handed out, and after an idle spell at most `burst` at once. One number,
updated by one statement, makes a take cheap and leaves nothing to clean
up: a bucket at rest is full whatever its `tat`.

This module is the arithmetic and the checks, in the standard library
only; the SQL adapter runs the same arithmetic inside its `UPDATE ...
RETURNING` (`Statements.take_rate_tokens`), the in-memory adapter calls
`take` under its lock.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

from fulltext_jobs.checks import MAX_CLAIM, as_real
from fulltext_jobs.errors import InvalidInput

__all__ = [
    "MAX_BURST",
    "MAX_RATE",
    "MIN_RATE",
    "TOLERANCE_SECONDS",
    "RateTokens",
    "check_burst",
    "check_rate",
    "take",
    "wait_for_next",
]

#: The slowest rate a bucket takes: one token a week. Slower is a mistake
#: (and far slower would overflow the arithmetic).
MIN_RATE: Final = 1 / (7 * 24 * 3600)

#: The fastest rate a bucket takes, in tokens a second: well above what one
#: ledger can start (some thousands of jobs a second), and within the
#: precision of a `tat` in seconds since 1970 held in a double (about a
#: quarter of a microsecond today).
MAX_RATE: Final = 100_000.0

#: The largest burst: the most jobs one claim takes.
MAX_BURST: Final = MAX_CLAIM

#: How early, in seconds, a token counts as earned: floating-point
#: rounding must not turn "due now" into "due in a femtosecond" (a worker
#: that slept until the token's time would find it not quite there).
TOLERANCE_SECONDS: Final = 1e-6


class RateTokens(NamedTuple):
    """What a take of start tokens got: `granted` tokens (0 to the number
    asked for), and `wait`, the seconds until the bucket has a token again
    (0 if it has one now)."""

    granted: int
    wait: float


def check_rate(rate: object, what: str = "rate") -> float:
    """`rate` as a float if it is a number of tokens a second from
    `MIN_RATE` (one a week) to `MAX_RATE`; raise `InvalidInput` otherwise
    (a bool, NaN, infinity, 0 or less, too small or too large)."""
    value = as_real(rate)
    if value is None or not math.isfinite(value) or not MIN_RATE <= value <= MAX_RATE:
        msg = (
            f"{what} must be a number of job starts a second from one a week "
            f"({MIN_RATE:.3g}) to {MAX_RATE:,.0f}, not {rate!r}"
        )
        raise InvalidInput(msg)
    return value


def check_burst(burst: object, what: str = "burst") -> int:
    """`burst` if it is a whole number of tokens from 1 to `MAX_BURST`;
    raise `InvalidInput` otherwise."""
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_BURST:
        msg = f"{what} must be a whole number of job starts from 1 to {MAX_BURST:,}, not {burst!r}"
        raise InvalidInput(msg)
    return burst


def take(tat: float | None, now: float, rate: float, burst: int, n: int) -> tuple[float, int]:
    """One take of up to `n` tokens from a bucket at `tat` (None: never
    used), at `now` (seconds since 1970): the new `tat` and how many tokens
    were granted. See the module's docstring."""
    interval = 1 / rate
    base = now if tat is None else max(tat, now)
    available = math.floor(max(0.0, (now - base + TOLERANCE_SECONDS) / interval + burst))
    granted = min(n, available)
    return base + granted * interval, granted


def wait_for_next(tat: float, now: float, rate: float, burst: int) -> float:
    """Seconds from `now` until a bucket at `tat` has a token again."""
    return max(0.0, tat - (burst - 1) / rate - now)
