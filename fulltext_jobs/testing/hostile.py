"""The contract: hostile arguments are refused with `InvalidInput` and change nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from fulltext_jobs import (
    FullText,
    InvalidInput,
)
from fulltext_jobs.domain import MAX_LEASE
from fulltext_jobs.testing._fixtures import ContractFixtures, Hostile, build_like, item_adder
from fulltext_jobs.testing.backend import ContractBackend, FakeClock

# --- hostile input ------------------------------------------------------------

SURROGATE = "a\ud800b"  # a lone surrogate: a str that UTF-8 cannot encode
HUGE = (2**31, 2**63, 10**30)
NOT_WHOLE = (0, -1, True, 1.5, "3", None)
#: Priorities no adapter takes: a bool, not whole, not a number, out of
#: range at either end (the smallint's lowest value included: its negation
#: would not fit).
BAD_PRIORITIES = {
    "bool": True,
    "float": 1.5,
    "str": "3",
    "above": 2**15,
    "below": -(2**15),
}
#: A moment that is in range in its own zone and past year 9999 in UTC.
PAST_9999_IN_UTC = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))


def with_fields(**fields: Hostile) -> Callable[[FullText], FullText]:
    def change(job: FullText) -> FullText:
        return replace(job, **fields)

    return change


@dataclass
class Scene:
    """A repository, its jobs by what they are (`ready`, `running`,
    `failed`), and the backend they come from."""

    repo: Any
    jobs: dict[str, FullText]
    backend: ContractBackend

    def add_items(self, item_ids: Hostile) -> int:
        """The repository's own `add_items`; the test is skipped if it has
        none (`Capabilities.repository_adds_items`)."""
        return item_adder(self.backend).add_items(item_ids)


#: Each hostile call, made through the port in a scene; every one must raise
#: InvalidInput and write nothing.
HOSTILE_CALLS: dict[str, Callable[..., object]] = {
    **{
        f"{method}-destination-{name}": (
            lambda scene, method=method, bad=bad: getattr(scene.repo, method)(bad)
        )
        for method in ("create_job_for_unqueued", "get_ready_job", "count_unqueued", "stats")
        for name, bad in {"surrogate": SURROGATE, "bytes": b"lang", "int": 7}.items()
    },
    "claim_ready-destination-surrogate": lambda scene: scene.repo.claim_ready(SURROGATE, 1),
    "enqueue-destination-surrogate": lambda scene: scene.repo.enqueue_unqueued(SURROGATE),
    "rescue-destination-surrogate": lambda scene: scene.repo.rescue_expired(SURROGATE),
    "retry-destination-surrogate": lambda scene: scene.repo.retry(SURROGATE),
    **{
        f"claim_ready-n-{n!r}": lambda scene, n=n: scene.repo.claim_ready("lang", n)
        for n in (*HUGE, *NOT_WHOLE, 10_001)
    },
    **{
        f"enqueue-limit-{limit!r}": lambda scene, limit=limit: scene.repo.enqueue_unqueued(
            "lang", limit=limit
        )
        for limit in (*HUGE, *(n for n in NOT_WHOLE if n is not None))
    },
    "enqueue-progress-not-callable": lambda scene: scene.repo.enqueue_unqueued(
        "lang", progress="print"
    ),
    **{
        f"rescue-max_attempts-{n!r}": lambda scene, n=n: scene.repo.rescue_expired(max_attempts=n)
        for n in (*HUGE, *NOT_WHOLE)
    },
    "retry-item_ids-str": lambda scene: scene.repo.retry("lang", item_ids="ab"),
    "retry-item_ids-bytes": lambda scene: scene.repo.retry("lang", item_ids=b"ab"),
    "retry-item_ids-ints": lambda scene: scene.repo.retry("lang", item_ids=[1, 2]),
    "retry-item_ids-surrogate": lambda scene: scene.repo.retry("lang", item_ids=[SURROGATE]),
    "retry-statuses-str": lambda scene: scene.repo.retry("lang", statuses="failed"),
    "retry-statuses-unhashable": lambda scene: scene.repo.retry("lang", statuses=[["failed"]]),
    "cancel-destination-surrogate": lambda scene: scene.repo.cancel(SURROGATE, all_ready=True),
    "cancel-destination-bytes": lambda scene: scene.repo.cancel(b"lang", all_ready=True),
    "cancel-neither": lambda scene: scene.repo.cancel("lang"),
    "cancel-both": lambda scene: scene.repo.cancel("lang", item_ids=["r"], all_ready=True),
    "cancel-item_ids-str": lambda scene: scene.repo.cancel("lang", item_ids="rs"),
    "cancel-item_ids-bytes": lambda scene: scene.repo.cancel("lang", item_ids=b"rs"),
    "cancel-item_ids-ints": lambda scene: scene.repo.cancel("lang", item_ids=[1, 2]),
    "cancel-item_ids-surrogate": lambda scene: scene.repo.cancel("lang", item_ids=["r", SURROGATE]),
    "cancel-item_ids-empty-id": lambda scene: scene.repo.cancel("lang", item_ids=["r", ""]),
    "cancel-item_ids-none-inside": lambda scene: scene.repo.cancel("lang", item_ids=["r", None]),
    "cancel-all_ready-int": lambda scene: scene.repo.cancel("lang", all_ready=1),
    "cancel-all_ready-str": lambda scene: scene.repo.cancel("lang", all_ready="yes"),
    "cancel-reason-int": lambda scene: scene.repo.cancel("lang", all_ready=True, reason=42),
    "cancel-reason-bytes": lambda scene: scene.repo.cancel("lang", item_ids=["s"], reason=b"x"),
    "take_cancel_requests-one-job": lambda scene: scene.repo.take_cancel_requests(
        scene.jobs["running"]
    ),
    "take_cancel_requests-str": lambda scene: scene.repo.take_cancel_requests("abc"),
    "take_cancel_requests-none": lambda scene: scene.repo.take_cancel_requests(None),
    "take_cancel_requests-not-a-job": lambda scene: scene.repo.take_cancel_requests(
        [scene.jobs["running"], "x"]
    ),
    "take_cancel_requests-id-str": lambda scene: scene.repo.take_cancel_requests(
        [replace(scene.jobs["running"], id=str(scene.jobs["running"].id))]
    ),
    "take_cancel_requests-token-str": lambda scene: scene.repo.take_cancel_requests(
        [replace(scene.jobs["running"], claim_token=str(scene.jobs["running"].claim_token))]
    ),
    "add_items-str": lambda scene: scene.add_items("abc"),
    "add_items-bytes": lambda scene: scene.add_items(b"abc"),
    "add_items-none": lambda scene: scene.add_items(None),
    "add_items-surrogate": lambda scene: scene.add_items(["ok", SURROGATE]),
    "get_fulltext-bytes": lambda scene: scene.repo.get_fulltext(scene.jobs["ready"].id.bytes),
    "get_fulltext-surrogate": lambda scene: scene.repo.get_fulltext(SURROGATE),
    "heartbeat-str": lambda scene: scene.repo.heartbeat("str"),
    "heartbeat-none": lambda scene: scene.repo.heartbeat(None),
    "heartbeat-id-str": lambda scene: scene.repo.heartbeat(
        replace(scene.jobs["running"], id=str(scene.jobs["running"].id))
    ),
    "heartbeat-token-str": lambda scene: scene.repo.heartbeat(
        replace(
            scene.jobs["running"],
            claim_token=str(scene.jobs["running"].claim_token),
        )
    ),
    "save_many-one-job": lambda scene: scene.repo.save_many(scene.jobs["ready"]),
    "save_many-str": lambda scene: scene.repo.save_many("abc"),
    "save_many-none": lambda scene: scene.repo.save_many(None),
    "save_many-not-a-job": lambda scene: scene.repo.save_many([FullText.new("x", "lang"), "x"]),
    "save_many-atomic-none": lambda scene: scene.repo.save_many(
        [FullText.new("x", "lang")], atomic=None
    ),
    "save_many-atomic-int": lambda scene: scene.repo.save_many(
        [FullText.new("x", "lang")], atomic=0
    ),
    "save_many-each-not-a-job": lambda scene: scene.repo.save_many(
        [FullText.new("x", "lang"), "x"], atomic=False
    ),
    "save_many-each-repeats": lambda scene: scene.repo.save_many(
        [scene.jobs["failed"], replace(scene.jobs["failed"])], atomic=False
    ),
    **{
        f"prioritize-priority-{name}": lambda scene, bad=bad: scene.repo.prioritize(
            "lang", item_ids=["r"], priority=bad
        )
        for name, bad in BAD_PRIORITIES.items()
    },
    "prioritize-item_ids-str": lambda scene: scene.repo.prioritize(
        "lang", item_ids="r", priority=1
    ),
    "prioritize-item_ids-surrogate": lambda scene: scene.repo.prioritize(
        "lang", item_ids=["r", SURROGATE], priority=1
    ),
    # One bad priority each: the same check (`check_priority`) as above.
    "create_job_for_unqueued-priority-bool": lambda scene: scene.repo.create_job_for_unqueued(
        "lang", priority=True
    ),
    "enqueue_unqueued-priority-above": lambda scene: scene.repo.enqueue_unqueued(
        "lang", priority=2**15
    ),
    "enqueue_new-priority-str": lambda scene: scene.repo.enqueue_new("lang", priority="1"),
    **{
        f"pause-until-{name}": lambda scene, until=until: scene.repo.pause("lang", until=until)
        for name, until in {
            "naive": datetime(2999, 1, 1),  # noqa: DTZ001 - the point
            "str": "2999-01-01T00:00:00Z",
            "epoch-seconds": 32_000_000_000,
            "past-9999-in-utc": PAST_9999_IN_UTC,
            "year-1": datetime(1, 1, 1, tzinfo=UTC),
            "timedelta": timedelta(hours=1),
        }.items()
    },
    "pause-reason-int": lambda scene: scene.repo.pause("lang", reason=42),
    "pause-reason-bytes": lambda scene: scene.repo.pause("lang", reason=b"why"),
    "pause-at-least-str": lambda scene: scene.repo.pause(
        "lang", until=datetime(2999, 1, 1, tzinfo=UTC), at_least="yes"
    ),
    "pause-at-least-none": lambda scene: scene.repo.pause(
        "lang", until=datetime(2999, 1, 1, tzinfo=UTC), at_least=None
    ),
    "pause-destination-surrogate": lambda scene: scene.repo.pause(SURROGATE),
    "resume-destination-surrogate": lambda scene: scene.repo.resume(SURROGATE),
    "controls-destination-bytes": lambda scene: scene.repo.controls(b"lang"),
    # The upstreams a destination follows: names as hostile as the
    # destinations', or not names at all.
    **{
        f"{method}-on-{name}": (
            lambda scene, method=method, bad=bad: getattr(scene.repo, method)("lang", on=bad)
        )
        for method in ("depend", "undepend")
        for name, bad in {
            "nul": "fetch\x00",
            "surrogate": SURROGATE,
            "huge": "u" * 1_000_000,
            "too-many": [f"u{n}" for n in range(1_000)],
            "int": 7,
            "bytes": b"fetch",
            "none-inside": ["fetch", None],
            "nul-inside": ["fetch", "\x00"],
        }.items()
    },
    "depend-destination-nul": lambda scene: scene.repo.depend("lang\x00", on="fetch"),
    "depend-statuses-running": lambda scene: scene.repo.depend(
        "lang", on="fetch", statuses=["running"]
    ),
    "dependencies-destination-surrogate": lambda scene: scene.repo.dependencies(SURROGATE),
    **{
        f"save-{name}": (
            lambda scene, change=change: scene.repo.save_fulltext(change(scene.jobs["failed"]))
        )
        for name, change in {
            "attempts-huge": with_fields(attempts=2**31),
            "attempts-negative": with_fields(attempts=-1),
            "attempts-bool": with_fields(attempts=True),
            "version-huge": with_fields(version=2**31 - 1),
            "version-negative": with_fields(version=-1),
            "version-str": with_fields(version="2"),
            "item_id-surrogate": with_fields(item_id=SURROGATE),
            "destination-surrogate": with_fields(destination=SURROGATE),
            "started-past-9999-in-utc": with_fields(started=PAST_9999_IN_UTC),
            "finished-year-1": with_fields(finished=datetime(1, 1, 1, tzinfo=UTC)),
            "last_error-int": with_fields(last_error=42),
            "status-unhashable": with_fields(status=["failed"]),
            "token-str": with_fields(claim_token="not-a-uuid"),  # noqa: S106 - not a secret
            "priority-bool": with_fields(priority=False),
            "priority-below": with_fields(priority=-(2**15)),
        }.items()
    },
}

#: What a repository's clock may return that is not a time to write.
HOSTILE_CLOCK_READINGS = {
    "none": None,
    "naive": datetime(2026, 1, 1),  # noqa: DTZ001 - the point
    "str": "2026-01-01T00:00:00Z",
    "year-1": datetime(1, 1, 1, tzinfo=UTC),
    "max": datetime.max.replace(tzinfo=UTC),
    "past-9999-in-utc": PAST_9999_IN_UTC,
    "no-room-for-the-lease": datetime(9999, 12, 29, 23, 59, 30, tzinfo=UTC),
}

#: What a repository may not be built with.
HOSTILE_SETTINGS = {
    "lease-zero": {"lease": timedelta(0)},
    "lease-negative": {"lease": timedelta(seconds=-1)},
    "lease-8000-years": {"lease": timedelta(days=8000 * 365)},
    "lease-max": {"lease": timedelta.max},
    "lease-str": {"lease": "5m"},
    "lease-seconds": {"lease": 300},
    "clock-not-callable": {"clock": "now"},
}


class HostileInputContract(ContractFixtures):
    """Any argument gets a typed answer, the same on every adapter, and a
    call that fails writes nothing."""

    @staticmethod
    def scene(backend: ContractBackend) -> dict[str, FullText]:
        """A ready, a running (claimed) and a failed job of `lang`, one
        unqueued item, and a destination that follows `lang`."""
        made = [FullText.new(item, "lang") for item in ("r", "s", "t")]
        backend.repo.save_many(made)
        running, failed = backend.repo.claim_ready("lang", 2)
        failed.fail(error="boom")
        backend.repo.save_fulltext(failed)
        backend.add_items(["unqueued"])
        if backend.capabilities.keeps_dependencies:
            backend.repo.depend("index", on="lang")
        ready = backend.repo.get_fulltext(made[2].id)
        return {"ready": ready, "running": running, "failed": failed}

    @staticmethod
    def snapshot(backend: ContractBackend, jobs: dict[str, FullText]) -> object:
        repo = backend.repo
        return (
            [repo.get_fulltext(job.id) for job in jobs.values()],
            repo.stats(),
            repo.count_unqueued("lang"),
            repo.list_controls(),
            repo.dependencies() if backend.capabilities.keeps_dependencies else None,
            # No cancel request was made (taking one would find it).
            repo.take_cancel_requests([jobs["running"]]),
        )

    @pytest.mark.parametrize("call", HOSTILE_CALLS.values(), ids=HOSTILE_CALLS.keys())
    def test_a_hostile_argument_is_invalid_input_and_writes_nothing(
        self, clocked: ContractBackend, call: Callable[[Scene], object]
    ) -> None:
        jobs = self.scene(clocked)
        before = self.snapshot(clocked, jobs)
        with pytest.raises(InvalidInput):
            call(Scene(clocked.repo, jobs, clocked))
        assert self.snapshot(clocked, jobs) == before

    @pytest.mark.parametrize(
        "reading", HOSTILE_CLOCK_READINGS.values(), ids=HOSTILE_CLOCK_READINGS.keys()
    )
    def test_a_clock_reading_out_of_range_is_refused_before_anything_is_written(
        self,
        clocked: ContractBackend,
        clock: FakeClock,
        reading: Hostile,
    ) -> None:
        jobs = self.scene(clocked)
        before = self.snapshot(clocked, jobs)
        good = clock.now
        clock.now = reading
        calls: list[Callable[[], object]] = [
            lambda: clocked.repo.get_ready_job("lang"),
            lambda: clocked.repo.claim_ready("lang", 5),
            clocked.repo.rescue_expired,
            lambda: clocked.repo.heartbeat(jobs["running"]),
        ]
        if clocked.capabilities.keeps_controls:
            calls.append(lambda: clocked.repo.pause("lang"))
        for call in calls:
            with pytest.raises(InvalidInput, match="clock"):
                call()
        clock.now = good
        assert self.snapshot(clocked, jobs) == before

    @pytest.mark.parametrize("settings", HOSTILE_SETTINGS.values(), ids=HOSTILE_SETTINGS.keys())
    def test_a_hostile_lease_or_clock_is_refused_when_the_repository_is_built(
        self, clocked: ContractBackend, settings: dict[str, object]
    ) -> None:
        with pytest.raises(InvalidInput):
            build_like(clocked, **settings)

    def test_the_longest_lease_is_accepted(self, clocked: ContractBackend) -> None:
        build_like(clocked, lease=MAX_LEASE)

    def test_error_text_that_utf8_cannot_encode_is_kept_escaped(
        self, clocked: ContractBackend
    ) -> None:
        clocked.repo.save_fulltext(FullText.new("item", "lang"))
        job = clocked.repo.get_ready_job("lang")
        job.fail(error=f"bad {SURROGATE}")
        assert job.last_error == "bad a\\ud800b"
        clocked.repo.save_fulltext(job)
        assert clocked.repo.get_fulltext(job.id).last_error == "bad a\\ud800b"

    @pytest.mark.parametrize("kind", [list, tuple, iter, dict.fromkeys])
    def test_iterables_of_ids_are_still_taken(
        self, clocked: ContractBackend, kind: Callable[[list[str]], Iterable[str]]
    ) -> None:
        assert item_adder(clocked).add_items(kind(["a", "b"])) == 2
        assert clocked.repo.enqueue_unqueued("lang") == 2
        (job,) = clocked.repo.claim_ready("lang", 1)
        job.fail()
        clocked.repo.save_fulltext(job)
        assert clocked.repo.retry("lang", item_ids=iter(["a"])) == 1
