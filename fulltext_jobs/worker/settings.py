"""A worker's settings, checked once when it is made: `WorkerSettings`
takes the keyword arguments of `Worker` and raises `InvalidInput` for a bad
one, so that a mistake shows where the worker is built, not when its first
job is claimed."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from fulltext_jobs.checks import (
    MAX_CLAIM,
    as_real,
    check_count,
    check_destination,
    check_flag,
    check_max_attempts,
)
from fulltext_jobs.domain import DEFAULT_SWEEP_INTERVAL, utc
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.rate_limit import check_burst, check_rate
from fulltext_jobs.repository import Repository
from fulltext_jobs.retry import DEFAULT_RETRY, RetryPolicy
from fulltext_jobs.worker.stats import Handler

#: The most claim threads one worker runs: more belong in more processes.
MAX_CONCURRENCY: Final = 1024

#: The longest interval or timeout a worker takes, in seconds (a week): a
#: longer one is a mistake, and past about 292 years Python's own waits fail.
MAX_SECONDS: Final = 7 * 24 * 3600

#: How a worker waits: `seconds`, or until `event` is set; returns whether
#: the event was set. `threading.Event.wait` unless a test injects another.
Wait = Callable[[threading.Event, float], bool]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """The settings of a `Worker`, as its keyword arguments say (see there
    for what each means), checked and made canonical: numbers of seconds
    are floats, `listen` and `produce` are bools, and `rate_limit` is a
    checked rate. Two settings are worked out from others: `policy`, the
    retry policy in force (`retry` and `max_attempts` together), and
    `burst`, the rate limit's burst (`rate_burst`, by default `batch_size`).

    `clock` and `wait` are the worker's own when given; `Worker` passes
    the defaults (`utc`, `threading.Event.wait`) for None.

    Raises `InvalidInput` for a bad setting, as `Worker` lists them (and
    for a `clock` or `wait` that is not callable), naming the first.
    """

    repository: Repository
    destination: str
    handler: Handler
    concurrency: int = 1
    batch_size: int = 1
    in_transaction: bool = False
    poll_interval: float = 1.0
    max_poll_interval: float = 30.0
    heartbeat_interval: float | None = None
    listen: bool = True
    shutdown_timeout: float = 30.0
    produce: bool = False
    rescue_interval: float = 60.0
    sweep_interval: float = DEFAULT_SWEEP_INTERVAL.total_seconds()
    max_attempts: int | None = None
    retry: RetryPolicy | None = None
    rate_limit: float | None = None
    rate_burst: int | None = None
    timeout: float | None = None
    clock: Callable[[], datetime] = utc
    wait: Wait = threading.Event.wait
    # Worked out from the settings above.
    policy: RetryPolicy = dataclasses.field(init=False)
    burst: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.repository, Repository):
            msg = f"repository must be a Repository, not {type(self.repository).__name__}"
            raise InvalidInput(msg)
        if not callable(self.handler):
            msg = f"handler must be callable, not {self.handler!r}"
            raise InvalidInput(msg)
        self._set("destination", check_destination(self.destination))
        self._set("concurrency", check_count(self.concurrency, "concurrency", MAX_CONCURRENCY))
        self._set("batch_size", check_count(self.batch_size, "batch_size", MAX_CLAIM))
        check_flag(self.in_transaction, "in_transaction")
        poll, most = self.poll_interval, self.max_poll_interval
        self._set("poll_interval", _seconds("poll_interval", poll))
        self._set("max_poll_interval", _seconds("max_poll_interval", most))
        if self.max_poll_interval < self.poll_interval:
            msg = f"max_poll_interval ({most!r}) must not be below poll_interval ({poll!r})"
            raise InvalidInput(msg)
        if self.heartbeat_interval is not None:
            beat = _seconds("heartbeat_interval", self.heartbeat_interval, infinite=True)
            self._set("heartbeat_interval", beat)
        self._set(
            "shutdown_timeout", _seconds("shutdown_timeout", self.shutdown_timeout, zero=True)
        )
        self._set("listen", bool(self.listen))
        self._set("produce", bool(self.produce))
        self._set("rescue_interval", _seconds("rescue_interval", self.rescue_interval))
        self._set("sweep_interval", _seconds("sweep_interval", self.sweep_interval, zero=True))
        self._set("policy", _retry_policy(self.retry, self.max_attempts))
        rate, burst = _rate_settings(self.rate_limit, self.rate_burst, self.batch_size)
        self._set("rate_limit", rate)
        self._set("burst", burst)
        if self.timeout is not None:
            self._set("timeout", _seconds("timeout", self.timeout))
        for name, hook in (("clock", self.clock), ("wait", self.wait)):
            if not callable(hook):
                msg = f"{name} must be callable, not {hook!r}"
                raise InvalidInput(msg)

    def _set(self, name: str, value: object) -> None:
        # Frozen to its readers; only the checks above make values canonical.
        object.__setattr__(self, name, value)

    def summary(self) -> str:
        """The settings an operator reads in the worker's start line."""
        return "".join(
            (
                f"{self.concurrency} thread(s), batch {self.batch_size}, ",
                "transaction" if self.in_transaction else "leased",
                " mode",
                f", at most {self.rate_limit:g} starts/s" if self.rate_limit else "",
                ", producing" if self.produce else "",
            )
        )

    @property
    def sweep(self) -> timedelta:
        """`sweep_interval`, as `Repository.enqueue_new` takes it."""
        return timedelta(seconds=self.sweep_interval)


def _retry_policy(retry: object, max_attempts: object) -> RetryPolicy:
    """The worker's policy from its `retry` and `max_attempts` arguments."""
    if retry is not None and not isinstance(retry, RetryPolicy):
        msg = f"retry must be a RetryPolicy, not {retry!r}"
        raise InvalidInput(msg)
    if max_attempts is None:
        return retry or DEFAULT_RETRY
    bound = check_max_attempts(max_attempts)
    if retry is None:
        return dataclasses.replace(DEFAULT_RETRY, max_attempts=bound)
    if retry.max_attempts != bound:
        msg = (
            f"max_attempts ({bound}) and retry.max_attempts ({retry.max_attempts}) differ: "
            "give one of them"
        )
        raise InvalidInput(msg)
    return retry


def _rate_settings(
    rate_limit: object, rate_burst: object, batch_size: int
) -> tuple[float | None, int]:
    """The worker's rate (None: no limit) and burst, from its arguments;
    the burst defaults to one claim's worth, `batch_size`."""
    if rate_limit is None:
        if rate_burst is not None:
            msg = "rate_burst needs a rate_limit"
            raise InvalidInput(msg)
        return None, batch_size
    rate = check_rate(rate_limit, "rate_limit")
    burst = batch_size if rate_burst is None else check_burst(rate_burst, "rate_burst")
    return rate, burst


def _seconds(name: str, value: object, *, zero: bool = False, infinite: bool = False) -> float:
    seconds = as_real(value)
    if (
        seconds is None
        or math.isnan(seconds)
        or seconds < 0
        or (seconds == 0 and not zero)
        or (math.isinf(seconds) and not infinite)
        or (seconds > MAX_SECONDS and not math.isinf(seconds))
    ):
        kind = "a number of seconds, 0 or more" if zero else "a positive number of seconds"
        # A whole number past a float's range is not spelled out in full.
        shown = "a larger number" if seconds is None and isinstance(value, int) else repr(value)
        msg = f"{name} must be {kind}, at most {MAX_SECONDS:,} (a week), not {shown}"
        raise InvalidInput(msg)
    return seconds
