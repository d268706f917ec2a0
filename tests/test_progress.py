"""The live line of `work` without a terminal: its rate, and how it says
what the worker waits for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from harness import Monotonic

from fulltext_jobs.cli._progress import RATE_WINDOW, Rate, describe_wait
from fulltext_jobs.worker import Waiting, WaitReason

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_a_worker_that_has_just_started_shows_its_real_rate():
    ticks = Monotonic()
    rate = Rate(ticks)
    assert rate.add(0) is None  # nothing to measure yet
    ticks.now += 2
    assert rate.add(60) == pytest.approx(30.0)  # 60 jobs in its first 2 s


def test_the_rate_is_over_the_last_window_once_the_worker_has_run_that_long():
    ticks = Monotonic()
    rate = Rate(ticks)
    for _ in range(40):  # 20 s at 10 jobs a second
        ticks.now += 0.5
        rate.add(int(ticks.now * 10))
    for _ in range(20):  # then 10 s idle
        ticks.now += 0.5
        last = rate.add(200)
    assert last == 0.0
    ticks.now += RATE_WINDOW / 2
    # Over the last window only: the 50 jobs of its last 5 s, none before.
    assert rate.add(250) == pytest.approx(50 / RATE_WINDOW)


@pytest.mark.parametrize(
    ("waiting", "said"),
    [
        (None, ""),
        (Waiting(WaitReason.EMPTY, NOW), "waiting: no job is ready"),
        (
            Waiting(WaitReason.RETRY, NOW, NOW + timedelta(minutes=4, seconds=12)),
            "waiting: jobs wait for a retry; the next is due in 4m12s",
        ),
        (
            Waiting(WaitReason.RETRY, NOW, NOW + timedelta(hours=2, minutes=3)),
            "waiting: jobs wait for a retry; the next is due in 2h03m",
        ),
        (
            Waiting(WaitReason.RETRY, NOW, NOW - timedelta(seconds=3)),
            "waiting: jobs wait for a retry; the next is due in 0s",
        ),
        (Waiting(WaitReason.RATE_LIMIT, NOW), "waiting: the rate limit has no start token yet"),
    ],
)
def test_the_wait_in_words(waiting, said):
    assert describe_wait(waiting, NOW) == said
