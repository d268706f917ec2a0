"""The retry policy: exponential backoff with bounded jitter."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fulltext_jobs import InvalidInput, RetryPolicy
from fulltext_jobs.domain import MAX_LEASE


def test_the_default_suits_remote_apis():
    policy = RetryPolicy()
    assert policy == RetryPolicy(5, timedelta(seconds=30), timedelta(minutes=30), 0.5)
    assert [policy.backoff(n).total_seconds() for n in range(1, 6)] == [30, 60, 120, 240, 480]
    assert policy.gives_up(5)
    assert not policy.gives_up(4)


def test_backoff_doubles_up_to_the_cap_and_jitter_can_be_off():
    policy = RetryPolicy(max_attempts=10, base_delay=timedelta(seconds=1),
                         max_delay=timedelta(seconds=5), jitter=0)  # fmt: skip
    assert [policy.delay(n).total_seconds() for n in range(1, 6)] == [1, 2, 4, 5, 5]


@given(
    attempts=st.integers(min_value=0, max_value=2**31 - 1),
    base=st.timedeltas(min_value=timedelta(0), max_value=MAX_LEASE),
    extra=st.timedeltas(min_value=timedelta(0), max_value=MAX_LEASE),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(),
)
def test_a_delay_is_never_below_the_backoff_nor_above_it_plus_jitter(
    attempts, base, extra, jitter, seed
):
    cap = min(base + extra, MAX_LEASE)
    policy = RetryPolicy(max_attempts=3, base_delay=base, max_delay=cap, jitter=jitter)
    backoff = policy.backoff(attempts)
    assert base <= backoff <= cap
    delay = policy.delay(attempts, random.Random(seed))
    assert backoff <= delay <= backoff * (1 + jitter) + timedelta(microseconds=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": True},
        {"base_delay": 3},
        {"base_delay": timedelta(seconds=-1)},
        {"base_delay": timedelta(hours=1), "max_delay": timedelta(minutes=1)},
        {"max_delay": MAX_LEASE + timedelta(days=1)},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"jitter": "some"},
    ],
)
def test_bad_settings_raise_invalid_input(kwargs):
    with pytest.raises(InvalidInput):
        RetryPolicy(**kwargs)
