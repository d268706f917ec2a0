"""The contract every adapter keeps, as pytest test classes.

`RepositoryContract` is the whole suite; `StorageContract`, `BatchContract`,
`ProducerContract`, `ListJobsContract`, `ClaimContract`,
`CompareAndSwapContract`, `HostileInputContract` and `HoldContract` are its
parts. Subclass one in a test module (its name starting with `Test`) and
provide a `contract_backend` fixture that takes the suite's
`contract_settings` and returns a `ContractBackend`:

    @pytest.fixture
    def contract_backend(contract_settings: ContractSettings) -> ContractBackend:
        repo = MyRepository(clock=contract_settings.clock, lease=contract_settings.lease)
        return ContractBackend(repo, repo.add_items)

    class TestMyRepository(RepositoryContract):
        pass

Tests speak only through the port (`Repository`), the backend's hooks and
its `Capabilities`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from fulltext_jobs import (
    ACTIONS,
    MAX_DESTINATION_LENGTH,
    MAX_ERROR_LENGTH,
    MAX_ITEM_ID_LENGTH,
    Action,
    AllQueued,
    DuplicateJob,
    FullText,
    InvalidInput,
    InvalidTransition,
    JobNotFound,
    JobStatus,
    LostClaim,
    NoJobs,
    StaleJob,
    StaleJobs,
)
from fulltext_jobs.domain import DEFAULT_LEASE, MAX_LEASE, RESCUED_ERROR
from fulltext_jobs.testing.backend import ContractBackend, ContractSettings, FakeClock, ItemAdder

#: An argument of the wrong type or value, handed to the port on purpose.
Hostile = Any

#: Where the suite's `FakeClock` starts.
CLOCK_START = datetime(2026, 11, 28, 12, 0, 0, 250_000, tzinfo=UTC)
#: The lease of the tests that move time.
CLOCKED_LEASE = timedelta(seconds=60)


class ContractFixtures:
    """The fixtures every part of the suite uses. Yours is `contract_backend`.

    `clock`: a `FakeClock` at `CLOCK_START`. `contract_settings`: for tests
    that move time (those taking `clocked`), that clock and `CLOCKED_LEASE`;
    for the others, no clock and the default lease. `backend` and `clocked`
    are your `contract_backend`, built with those settings.
    """

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock(CLOCK_START)

    @pytest.fixture
    def contract_settings(
        self, request: pytest.FixtureRequest, clock: FakeClock
    ) -> ContractSettings:
        if "clocked" in request.fixturenames:
            return ContractSettings(clock=clock, lease=CLOCKED_LEASE)
        return ContractSettings(clock=None, lease=DEFAULT_LEASE)

    @pytest.fixture
    def backend(self, contract_backend: ContractBackend) -> ContractBackend:
        return contract_backend

    @pytest.fixture
    def clocked(self, contract_backend: ContractBackend) -> ContractBackend:
        if not contract_backend.capabilities.takes_a_clock:
            pytest.skip("the adapter takes no clock (Capabilities.takes_a_clock)")
        return contract_backend


def item_adder(backend: ContractBackend) -> ItemAdder:
    """The repository, which has an `add_items` of its own; the test is
    skipped if the backend says it has none."""
    if not backend.capabilities.repository_adds_items:
        pytest.skip("the repository has no add_items (Capabilities.repository_adds_items)")
    repo = backend.repo
    assert isinstance(repo, ItemAdder), "Capabilities.repository_adds_items, but no add_items"
    return repo


T0 = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)

BAD_DESTINATIONS = {
    "empty": "",
    "too-long": "d" * (MAX_DESTINATION_LENGTH + 1),
    "nul": "lang\x00uage",
    "not-a-str": 42,
}
BAD_ITEM_IDS = {
    "empty": "",
    "too-long": "i" * (MAX_ITEM_ID_LENGTH + 1),
    "nul": "item\x00",
}


def job_in(status: JobStatus, item_id: str = "item", destination: str = "lang") -> FullText:
    """A job brought to `status` by legal moves."""
    job = FullText.new(item_id, destination)
    path = {
        JobStatus.READY: [],
        JobStatus.RUNNING: [Action.START],
        JobStatus.FINISHED: [Action.START, Action.FINISH],
        JobStatus.FAILED: [Action.START, Action.FAIL],
        JobStatus.SKIPPED: [Action.SKIP],
    }[status]
    for step, action in enumerate(path):
        job.apply(action, T0 + timedelta(seconds=step))
    return job


class StorageContract(ContractFixtures):
    """Reads and writes of single jobs, every move from every status,
    `create_job_for_unqueued`, `add_items`, `get_ready_job`, and the checks
    of ids, destinations, statuses and timestamps."""

    # --- get_fulltext / save_fulltext -------------------------------------

    def test_saved_job_reads_back_equal(self, backend: ContractBackend) -> None:
        job = job_in(JobStatus.FINISHED)
        backend.repo.save_fulltext(job)
        assert backend.repo.get_fulltext(job.id) == job

    def test_get_accepts_the_string_form_of_the_id(self, backend: ContractBackend) -> None:
        job = FullText.new("item", "lang")
        backend.repo.save_fulltext(job)
        assert backend.repo.get_fulltext(str(job.id)) == job

    def test_get_unknown_id_raises_job_not_found(self, backend: ContractBackend) -> None:
        with pytest.raises(JobNotFound):
            backend.repo.get_fulltext(uuid.uuid4())

    @pytest.mark.parametrize("bad_id", ["not-a-uuid", "", 17, None])
    def test_get_non_uuid_raises_invalid_input(
        self, backend: ContractBackend, bad_id: Hostile
    ) -> None:
        with pytest.raises(InvalidInput):
            backend.repo.get_fulltext(bad_id)

    def test_save_replaces_the_job_with_the_same_id(self, backend: ContractBackend) -> None:
        job = FullText.new("item", "lang")
        backend.repo.save_fulltext(job)
        job.start(T0)
        backend.repo.save_fulltext(job)
        assert backend.repo.get_fulltext(job.id) == job

    def test_stored_jobs_are_copies(self, backend: ContractBackend) -> None:
        job = FullText.new("item", "lang")
        backend.repo.save_fulltext(job)
        job.start(T0)  # changed after saving, never saved again
        loaded = backend.repo.get_fulltext(job.id)
        assert loaded.status is JobStatus.READY
        loaded.skip(T0)  # changing what was read changes nothing stored
        assert backend.repo.get_fulltext(job.id).status is JobStatus.READY

    def test_second_job_for_the_same_pair_raises_duplicate_and_writes_nothing(
        self, backend: ContractBackend
    ) -> None:
        first = FullText.new("item", "lang")
        backend.repo.save_fulltext(first)
        second = FullText.new("item", "lang")
        with pytest.raises(DuplicateJob):
            backend.repo.save_fulltext(second)
        with pytest.raises(JobNotFound):
            backend.repo.get_fulltext(second.id)
        assert backend.repo.get_fulltext(first.id) == first

    def test_moving_a_job_onto_a_taken_pair_raises_duplicate(
        self, backend: ContractBackend
    ) -> None:
        taken = FullText.new("a", "lang")
        mover = FullText.new("b", "lang")
        backend.repo.save_fulltext(taken)
        backend.repo.save_fulltext(mover)
        with pytest.raises(DuplicateJob):
            backend.repo.save_fulltext(replace(mover, item_id="a"))
        assert backend.repo.get_fulltext(mover.id) == mover

    def test_the_same_item_may_have_one_job_per_destination(self, backend: ContractBackend) -> None:
        jobs = [FullText.new("item", destination) for destination in ("lang", "quote")]
        for job in jobs:
            backend.repo.save_fulltext(job)
        assert [backend.repo.get_fulltext(job.id) for job in jobs] == jobs

    @pytest.mark.parametrize(
        "moment",
        [
            T0,
            datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(2026, 3, 29, 1, 30, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
            datetime(
                2038, 1, 19, 3, 14, 8, 654321, tzinfo=timezone(timedelta(hours=9, minutes=30))
            ),
        ],
        ids=["utc", "end-of-1999", "minus-five", "plus-nine-thirty"],
    )
    def test_timestamps_round_trip_to_the_microsecond_in_utc(
        self, backend: ContractBackend, moment: datetime
    ) -> None:
        job = FullText.new("item", "lang")
        job.start(moment)
        job.finish(moment + timedelta(microseconds=1))
        backend.repo.save_fulltext(job)
        loaded = backend.repo.get_fulltext(job.id)
        assert loaded.started == moment
        assert loaded.finished == moment + timedelta(microseconds=1)
        assert loaded.started.tzinfo is UTC
        assert loaded.finished.tzinfo is UTC
        assert loaded.started.utcoffset() == timedelta(0)

    # --- every move, legal and illegal, through the store ------------------

    @pytest.mark.parametrize("action", list(Action))
    @pytest.mark.parametrize("status", list(JobStatus))
    def test_every_move_from_every_status(
        self, backend: ContractBackend, status: JobStatus, action: Action
    ) -> None:
        stored = job_in(status)
        backend.repo.save_fulltext(stored)
        job = backend.repo.get_fulltext(stored.id)
        before = replace(job)
        sources, target = ACTIONS[action]
        moment = T0 + timedelta(hours=1)
        if status in sources:
            job.apply(action, moment)
            backend.repo.save_fulltext(job)
            loaded = backend.repo.get_fulltext(job.id)
            assert loaded.status is target
            assert loaded == job
        else:
            with pytest.raises(InvalidTransition):
                job.apply(action, moment)
            assert job == before
            assert backend.repo.get_fulltext(job.id) == before

    # --- create_job_for_unqueued ------------------------------------------

    def test_create_makes_a_ready_job_for_an_unqueued_item(self, backend: ContractBackend) -> None:
        backend.add_items(["item-1"])
        job = backend.repo.create_job_for_unqueued("lang")
        assert (job.item_id, job.destination, job.status) == ("item-1", "lang", JobStatus.READY)
        assert (job.started, job.finished) == (None, None)
        assert isinstance(job.id, uuid.UUID)
        assert backend.repo.get_fulltext(job.id) == job

    def test_create_gives_each_item_one_job_then_all_queued(self, backend: ContractBackend) -> None:
        items = ["c", "a", "b"]
        backend.add_items(items)
        created = [backend.repo.create_job_for_unqueued("lang").item_id for _ in items]
        assert sorted(created) == sorted(items)
        with pytest.raises(AllQueued):
            backend.repo.create_job_for_unqueued("lang")

    def test_create_takes_items_in_id_order(self, backend: ContractBackend) -> None:
        backend.add_items(["c", "a", "b"])
        created = [backend.repo.create_job_for_unqueued("lang").item_id for _ in range(3)]
        assert created == ["a", "b", "c"]

    def test_create_with_no_items_raises_all_queued(self, backend: ContractBackend) -> None:
        with pytest.raises(AllQueued):
            backend.repo.create_job_for_unqueued("lang")

    def test_create_is_per_destination(self, backend: ContractBackend) -> None:
        backend.add_items(["item"])
        assert backend.repo.create_job_for_unqueued("lang").item_id == "item"
        assert backend.repo.create_job_for_unqueued("quote").item_id == "item"
        for destination in ("lang", "quote"):
            with pytest.raises(AllQueued):
                backend.repo.create_job_for_unqueued(destination)

    def test_create_skips_items_queued_by_save(self, backend: ContractBackend) -> None:
        backend.add_items(["a", "b"])
        backend.repo.save_fulltext(FullText.new("a", "lang"))
        assert backend.repo.create_job_for_unqueued("lang").item_id == "b"
        with pytest.raises(AllQueued):
            backend.repo.create_job_for_unqueued("lang")

    def test_create_finds_items_that_arrive_later(self, backend: ContractBackend) -> None:
        backend.add_items(["m"])
        backend.repo.create_job_for_unqueued("lang")
        backend.add_items(["a", "z"])
        later = {backend.repo.create_job_for_unqueued("lang").item_id for _ in range(2)}
        assert later == {"a", "z"}

    def test_create_goes_on_above_the_watermark_before_looking_below(
        self, backend: ContractBackend
    ) -> None:
        backend.add_items(["m"])
        assert backend.repo.create_job_for_unqueued("lang").item_id == "m"
        backend.add_items(["a", "b", "x", "z"])
        created = [backend.repo.create_job_for_unqueued("lang").item_id for _ in range(4)]
        assert created == ["x", "z", "a", "b"]
        with pytest.raises(AllQueued):
            backend.repo.create_job_for_unqueued("lang")

    def test_the_watermark_is_per_destination(self, backend: ContractBackend) -> None:
        backend.add_items(["b", "c"])
        assert backend.repo.create_job_for_unqueued("lang").item_id == "b"
        assert backend.repo.create_job_for_unqueued("lang").item_id == "c"
        backend.add_items(["a"])
        assert backend.repo.create_job_for_unqueued("quote").item_id == "a"
        assert backend.repo.create_job_for_unqueued("lang").item_id == "a"

    def test_create_passes_over_items_queued_in_bulk_meanwhile(
        self, backend: ContractBackend
    ) -> None:
        backend.add_items(["a", "b", "c"])
        assert backend.repo.create_job_for_unqueued("lang").item_id == "a"
        assert backend.repo.enqueue_unqueued("lang", limit=1) == 1  # queues "b"
        assert backend.repo.create_job_for_unqueued("lang").item_id == "c"
        with pytest.raises(AllQueued):
            backend.repo.create_job_for_unqueued("lang")

    def test_create_ignores_ineligible_items_until_they_become_eligible(
        self, backend: ContractBackend
    ) -> None:
        backend.set_api("fetched", {"title": "A letter"})
        backend.set_api("pending", None)
        assert backend.app_repo.create_job_for_unqueued("lang").item_id == "fetched"
        with pytest.raises(AllQueued):
            backend.app_repo.create_job_for_unqueued("lang")
        backend.set_api("pending", {"title": "A diary"})
        assert backend.app_repo.create_job_for_unqueued("lang").item_id == "pending"
        with pytest.raises(AllQueued):
            backend.app_repo.create_job_for_unqueued("lang")

    def test_create_with_only_ineligible_items_raises_all_queued(
        self, backend: ContractBackend
    ) -> None:
        backend.set_api("pending", None)
        with pytest.raises(AllQueued):
            backend.app_repo.create_job_for_unqueued("lang")

    def test_add_items_counts_new_ids_and_ignores_known_ones(
        self, backend: ContractBackend
    ) -> None:
        repo, adder = backend.repo, item_adder(backend)
        assert adder.add_items(["a", "b"]) == 2
        assert adder.add_items(["b", "c", "c"]) == 1
        created = {repo.create_job_for_unqueued("lang").item_id for _ in range(3)}
        assert created == {"a", "b", "c"}

    @pytest.mark.parametrize("bad", BAD_ITEM_IDS.values(), ids=BAD_ITEM_IDS.keys())
    def test_add_items_with_a_bad_id_adds_nothing(
        self, backend: ContractBackend, bad: Hostile
    ) -> None:
        repo, adder = backend.repo, item_adder(backend)
        with pytest.raises(InvalidInput):
            adder.add_items(["good", bad])
        with pytest.raises(AllQueued):
            repo.create_job_for_unqueued("lang")

    # --- get_ready_job ----------------------------------------------------

    def test_claim_with_no_jobs_raises_no_jobs(self, backend: ContractBackend) -> None:
        with pytest.raises(NoJobs):
            backend.repo.get_ready_job("lang")

    def test_claim_marks_the_job_running_and_stamps_started(self, backend: ContractBackend) -> None:
        backend.add_items(["item"])
        created = backend.repo.create_job_for_unqueued("lang")
        before = datetime.now(UTC)
        claimed = backend.repo.get_ready_job("lang")
        assert claimed.id == created.id
        assert claimed.status is JobStatus.RUNNING
        assert claimed.started is not None
        assert claimed.started.tzinfo is UTC
        assert before - timedelta(seconds=5) <= claimed.started <= datetime.now(UTC)
        assert backend.repo.get_fulltext(claimed.id) == claimed

    def test_claim_hands_out_each_job_once_then_no_jobs(self, backend: ContractBackend) -> None:
        backend.add_items(["a", "b", "c"])
        created = {backend.repo.create_job_for_unqueued("lang").id for _ in range(3)}
        claimed = [backend.repo.get_ready_job("lang").id for _ in range(3)]
        assert sorted(claimed) == sorted(created)
        with pytest.raises(NoJobs):
            backend.repo.get_ready_job("lang")

    def test_claim_takes_the_oldest_job_first(self, backend: ContractBackend) -> None:
        jobs = [FullText.new(item_id, "lang") for item_id in ("z", "a", "m")]
        for job in jobs:
            backend.repo.save_fulltext(job)
        claimed = [backend.repo.get_ready_job("lang").id for _ in jobs]
        assert claimed == [job.id for job in jobs]

    def test_claim_is_per_destination(self, backend: ContractBackend) -> None:
        backend.repo.save_fulltext(FullText.new("item", "quote"))
        with pytest.raises(NoJobs):
            backend.repo.get_ready_job("lang")
        assert backend.repo.get_ready_job("quote").destination == "quote"

    def test_claim_passes_over_jobs_that_are_not_ready(self, backend: ContractBackend) -> None:
        for status in (JobStatus.RUNNING, JobStatus.FINISHED, JobStatus.FAILED, JobStatus.SKIPPED):
            backend.repo.save_fulltext(job_in(status, item_id=status.value))
        with pytest.raises(NoJobs):
            backend.repo.get_ready_job("lang")

    def test_a_released_job_is_claimed_again_before_newer_ones(
        self, backend: ContractBackend
    ) -> None:
        backend.add_items(["a", "b"])
        backend.repo.create_job_for_unqueued("lang")
        backend.repo.create_job_for_unqueued("lang")
        first = backend.repo.get_ready_job("lang")
        first.release()
        backend.repo.save_fulltext(first)
        again = backend.repo.get_ready_job("lang")
        assert (again.id, again.status) == (first.id, JobStatus.RUNNING)

    def test_a_retried_job_can_be_claimed(self, backend: ContractBackend) -> None:
        job = job_in(JobStatus.FAILED)
        backend.repo.save_fulltext(job)
        job.retry()
        backend.repo.save_fulltext(job)
        assert backend.repo.get_ready_job("lang").id == job.id

    # --- bad input: a typed error, nothing written -------------------------

    @pytest.mark.parametrize("bad", BAD_DESTINATIONS.values(), ids=BAD_DESTINATIONS.keys())
    def test_bad_destination_is_rejected_everywhere(
        self, backend: ContractBackend, bad: Hostile
    ) -> None:
        backend.add_items(["item"])
        with pytest.raises(InvalidInput):
            backend.repo.create_job_for_unqueued(bad)
        with pytest.raises(InvalidInput):
            backend.repo.get_ready_job(bad)
        job = FullText.new("item", "lang")
        job.destination = bad
        with pytest.raises(InvalidInput):
            backend.repo.save_fulltext(job)
        with pytest.raises(JobNotFound):
            backend.repo.get_fulltext(job.id)
        # Nothing was queued by the failed calls: the item is still unqueued.
        assert backend.repo.create_job_for_unqueued("lang").item_id == "item"

    @pytest.mark.parametrize("bad", BAD_ITEM_IDS.values(), ids=BAD_ITEM_IDS.keys())
    def test_bad_item_id_is_rejected(self, backend: ContractBackend, bad: Hostile) -> None:
        with pytest.raises(InvalidInput):
            FullText.new(bad, "lang")
        job = FullText.new("item", "lang")
        job.item_id = bad
        with pytest.raises(InvalidInput):
            backend.repo.save_fulltext(job)
        with pytest.raises(JobNotFound):
            backend.repo.get_fulltext(job.id)

    def test_limits_are_inclusive(self, backend: ContractBackend) -> None:
        job = FullText.new("i" * MAX_ITEM_ID_LENGTH, "d" * MAX_DESTINATION_LENGTH)
        backend.repo.save_fulltext(job)
        assert backend.repo.get_fulltext(job.id) == job

    def test_non_ascii_ids_round_trip(self, backend: ContractBackend) -> None:
        job = FullText.new(
            "\U0001f4dc" * MAX_ITEM_ID_LENGTH, "d\u00e9" * (MAX_DESTINATION_LENGTH // 2)
        )
        backend.repo.save_fulltext(job)
        assert backend.repo.get_fulltext(job.id) == job

    @pytest.mark.parametrize("bad_status", ["done", "", None, 3])
    def test_unknown_status_is_rejected_and_changes_nothing(
        self, backend: ContractBackend, bad_status: Hostile
    ) -> None:
        job = FullText.new("item", "lang")
        backend.repo.save_fulltext(job)
        broken = replace(job, status=bad_status)
        with pytest.raises(InvalidInput):
            backend.repo.save_fulltext(broken)
        assert backend.repo.get_fulltext(job.id) == job

    def test_naive_timestamp_is_rejected_and_changes_nothing(
        self, backend: ContractBackend
    ) -> None:
        job = FullText.new("item", "lang")
        backend.repo.save_fulltext(job)
        broken = replace(job, status=JobStatus.RUNNING, started=datetime(2026, 1, 1))  # noqa: DTZ001 - the point
        with pytest.raises(InvalidInput):
            backend.repo.save_fulltext(broken)
        assert backend.repo.get_fulltext(job.id) == job

    def test_non_uuid_job_id_is_rejected_on_save(self, backend: ContractBackend) -> None:
        job = replace(FullText.new("item", "lang"), id="not-a-uuid")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            backend.repo.save_fulltext(job)

    def test_something_other_than_a_job_is_rejected_on_save(self, backend: ContractBackend) -> None:
        with pytest.raises(InvalidInput):
            backend.repo.save_fulltext({"id": uuid.uuid4()})  # type: ignore[arg-type]


class BatchContract(ContractFixtures):
    """enqueue_unqueued, claim_ready, save_many, count_unqueued and stats."""

    def test_enqueue_queues_every_unqueued_item_once(self, backend: ContractBackend) -> None:
        backend.add_items(["c", "a", "b", "d"])
        backend.repo.save_fulltext(FullText.new("b", "lang"))
        assert backend.repo.enqueue_unqueued("lang") == 3
        assert backend.repo.enqueue_unqueued("lang") == 0
        claimed = backend.repo.claim_ready("lang", 10)
        assert [job.item_id for job in claimed] == ["b", "a", "c", "d"]
        with pytest.raises(AllQueued):
            backend.repo.create_job_for_unqueued("lang")

    def test_enqueue_with_a_limit_takes_the_smallest_ids(self, backend: ContractBackend) -> None:
        backend.add_items(["e", "d", "c", "b", "a"])
        assert backend.repo.enqueue_unqueued("lang", limit=2) == 2
        assert [job.item_id for job in backend.repo.claim_ready("lang", 10)] == ["a", "b"]
        assert backend.repo.enqueue_unqueued("lang", limit=10) == 3
        assert backend.repo.count_unqueued("lang") == 0

    def test_enqueue_is_per_destination_and_respects_eligibility(
        self, backend: ContractBackend
    ) -> None:
        for item_id, api in (("a", {"k": 1}), ("b", None), ("c", {"k": 2})):
            backend.set_api(item_id, api)
        assert backend.app_repo.enqueue_unqueued("lang") == 2
        assert backend.app_repo.enqueue_unqueued("quote") == 2
        assert backend.app_repo.count_unqueued("lang") == 0
        backend.set_api("b", {"k": 3})
        assert backend.app_repo.count_unqueued("lang") == 1
        assert backend.app_repo.enqueue_unqueued("lang") == 1

    def test_enqueue_with_no_items_creates_nothing(self, backend: ContractBackend) -> None:
        assert backend.repo.enqueue_unqueued("lang") == 0

    def test_enqueue_reports_its_progress_batch_by_batch(self, backend: ContractBackend) -> None:
        backend.add_items([f"item-{n}" for n in range(7)])
        reported: list[int] = []
        assert backend.repo.enqueue_unqueued("lang", limit=5, progress=reported.append) == 5
        assert sum(reported) == 5
        assert all(count >= 0 for count in reported)
        reported.clear()
        assert backend.repo.enqueue_unqueued("lang", progress=reported.append) == 2
        assert sum(reported) == 2

    @pytest.mark.parametrize("bad_limit", [0, -1, 1.5, "3", True])
    def test_enqueue_rejects_a_bad_limit(
        self, backend: ContractBackend, bad_limit: Hostile
    ) -> None:
        backend.add_items(["a"])
        with pytest.raises(InvalidInput):
            backend.repo.enqueue_unqueued("lang", limit=bad_limit)
        assert backend.repo.count_unqueued("lang") == 1

    def test_claim_ready_takes_up_to_n_oldest_first(self, backend: ContractBackend) -> None:
        jobs = [FullText.new(item_id, "lang") for item_id in ("z", "y", "x")]
        backend.repo.save_many(jobs)
        first = backend.repo.claim_ready("lang", 2)
        assert [job.id for job in first] == [jobs[0].id, jobs[1].id]
        assert all(job.status is JobStatus.RUNNING and job.started for job in first)
        assert [backend.repo.get_fulltext(job.id) for job in first] == first
        assert [job.id for job in backend.repo.claim_ready("lang", 5)] == [jobs[2].id]
        assert backend.repo.claim_ready("lang", 5) == []

    @pytest.mark.parametrize("bad_n", [0, -3, None, 2.0])
    def test_claim_ready_rejects_a_bad_n(self, backend: ContractBackend, bad_n: Hostile) -> None:
        backend.repo.save_fulltext(FullText.new("a", "lang"))
        with pytest.raises(InvalidInput):
            backend.repo.claim_ready("lang", bad_n)
        assert backend.repo.get_ready_job("lang").item_id == "a"

    def test_save_many_round_trips(self, backend: ContractBackend) -> None:
        jobs = [job_in(status, item_id=status.value) for status in JobStatus]
        backend.repo.save_many(jobs)
        assert [backend.repo.get_fulltext(job.id) for job in jobs] == jobs
        for job in jobs:
            if job.can(Action.RETRY):
                job.retry()
        backend.repo.save_many(jobs)
        assert [backend.repo.get_fulltext(job.id) for job in jobs] == jobs

    def test_save_many_of_nothing_does_nothing(self, backend: ContractBackend) -> None:
        backend.repo.save_many([])

    def test_save_many_is_all_or_nothing_on_a_duplicate(self, backend: ContractBackend) -> None:
        existing = FullText.new("taken", "lang")
        backend.repo.save_fulltext(existing)
        fresh = FullText.new("free", "lang")
        clash = FullText.new("taken", "lang")
        with pytest.raises(DuplicateJob):
            backend.repo.save_many([fresh, clash])
        with pytest.raises(JobNotFound):
            backend.repo.get_fulltext(fresh.id)
        assert backend.repo.get_fulltext(existing.id) == existing

    def test_save_many_rejects_a_batch_that_repeats_itself(self, backend: ContractBackend) -> None:
        job = FullText.new("a", "lang")
        with pytest.raises(InvalidInput):
            backend.repo.save_many([job, replace(job)])
        with pytest.raises(InvalidInput):
            backend.repo.save_many([job, FullText.new("a", "lang")])
        with pytest.raises(InvalidInput):
            backend.repo.save_many([job, replace(FullText.new("b", "lang"), status="bogus")])  # type: ignore[arg-type]
        with pytest.raises(JobNotFound):
            backend.repo.get_fulltext(job.id)

    def test_count_unqueued_follows_the_ledger(self, backend: ContractBackend) -> None:
        assert backend.repo.count_unqueued("lang") == 0
        backend.add_items(["a", "b", "c"])
        assert backend.repo.count_unqueued("lang") == 3
        backend.repo.create_job_for_unqueued("lang")
        assert backend.repo.count_unqueued("lang") == 2
        assert backend.repo.count_unqueued("quote") == 3

    def test_stats_counts_every_status_and_the_unqueued(self, backend: ContractBackend) -> None:
        backend.add_items(["a", "b", "c", "d"])
        backend.repo.save_many(
            [
                job_in(JobStatus.FINISHED, item_id="a"),
                job_in(JobStatus.FAILED, item_id="b"),
                job_in(JobStatus.READY, item_id="c"),
                job_in(JobStatus.RUNNING, item_id="a", destination="quote"),
            ]
        )
        lang, quote = backend.repo.stats()
        assert lang.destination == "lang"
        assert dict(lang.counts) == {
            JobStatus.READY: 1,
            JobStatus.RUNNING: 0,
            JobStatus.FINISHED: 1,
            JobStatus.FAILED: 1,
            JobStatus.SKIPPED: 0,
        }
        assert (lang.jobs, lang.unqueued) == (3, 1)
        assert (quote.destination, quote.counts[JobStatus.RUNNING], quote.unqueued) == (
            "quote",
            1,
            3,
        )
        assert backend.repo.stats("quote") == [quote]

    def test_stats_of_a_destination_without_jobs(self, backend: ContractBackend) -> None:
        backend.add_items(["a"])
        (empty,) = backend.repo.stats("nothing-yet")
        assert (empty.jobs, empty.unqueued) == (0, 1)
        assert backend.repo.stats() == []

    @pytest.mark.parametrize("bad", BAD_DESTINATIONS.values(), ids=BAD_DESTINATIONS.keys())
    def test_batch_operations_reject_a_bad_destination(
        self, backend: ContractBackend, bad: Hostile
    ) -> None:
        backend.add_items(["a"])
        for call in (
            lambda: backend.repo.enqueue_unqueued(bad),
            lambda: backend.repo.claim_ready(bad, 1),
            lambda: backend.repo.count_unqueued(bad),
            lambda: backend.repo.stats(bad),
        ):
            with pytest.raises(InvalidInput):
                call()
        assert backend.repo.count_unqueued("lang") == 1


class ProducerContract(ContractFixtures):
    """`enqueue_new`: new items past a watermark, every item at a sweep;
    `has_destination`; and `stats` without the unqueued count."""

    def test_the_first_call_sweeps_and_an_idle_one_creates_nothing(
        self, clocked: ContractBackend
    ) -> None:
        clocked.add_items(["b", "c", "a"])
        assert clocked.repo.enqueue_new("lang") == 3
        assert clocked.repo.enqueue_new("lang") == 0
        assert clocked.repo.count_unqueued("lang") == 0

    def test_a_new_item_is_found_whatever_its_id(self, clocked: ContractBackend) -> None:
        clocked.add_items(["m", "n"])
        clocked.repo.enqueue_new("lang")
        # Ids are text and arrive in any order: "a" sorts below every id
        # queued so far, and is found without waiting for a sweep.
        clocked.add_items(["a", "z"])
        assert clocked.repo.enqueue_new("lang") == 2
        queued = clocked.repo.list_jobs("lang")
        assert [job.item_id for job in queued] == ["a", "m", "n", "z"]
        assert clocked.repo.enqueue_new("lang") == 0

    def test_new_items_of_an_apps_source_are_found(self, clocked: ContractBackend) -> None:
        clocked.set_api("b", {"title": "A letter"})
        assert clocked.app_repo.enqueue_new("lang") == 1
        clocked.set_api("c", {"title": "A diary"})
        assert clocked.app_repo.enqueue_new("lang") == 1
        assert clocked.app_repo.count_unqueued("lang") == 0

    def test_an_item_that_becomes_eligible_late_is_found_at_the_sweep(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        clocked.set_api("b", {"title": "A letter"})
        clocked.set_api("a", None)
        hour = timedelta(hours=1)
        assert clocked.app_repo.enqueue_new("lang", sweep_interval=hour) == 1
        clocked.set_api("a", {"title": "A diary"})
        clock.advance(hours=1)
        # Found by now whichever way the store finds it (the SQL stores,
        # whose watermark passed "a", at this sweep).
        clocked.app_repo.enqueue_new("lang", sweep_interval=hour)
        assert clocked.app_repo.count_unqueued("lang") == 0

    def test_a_zero_interval_sweeps_every_time(self, clocked: ContractBackend) -> None:
        clocked.set_api("b", {"title": "A letter"})
        clocked.set_api("a", None)
        assert clocked.app_repo.enqueue_new("lang", sweep_interval=timedelta(0)) == 1
        clocked.set_api("a", {"title": "A diary"})
        assert clocked.app_repo.enqueue_new("lang", sweep_interval=timedelta(0)) == 1

    def test_the_producer_is_per_destination(self, clocked: ContractBackend) -> None:
        clocked.add_items(["a", "b"])
        assert clocked.repo.enqueue_new("lang") == 2
        clocked.add_items(["c"])
        assert clocked.repo.enqueue_new("quote") == 3
        assert clocked.repo.enqueue_new("lang") == 1

    def test_enqueue_new_passes_over_items_queued_otherwise(self, clocked: ContractBackend) -> None:
        clocked.add_items(["a"])
        clocked.repo.enqueue_new("lang")
        clocked.add_items(["b", "c"])
        clocked.repo.create_job_for_unqueued("lang")
        assert clocked.repo.enqueue_new("lang") == 1
        assert clocked.repo.count_unqueued("lang") == 0

    @pytest.mark.parametrize(
        "bad",
        [timedelta(seconds=-1), timedelta(days=3651), 3600, "1h", None, True],
        ids=["negative", "too-long", "int", "str", "none", "bool"],
    )
    def test_a_bad_sweep_interval_is_refused_and_creates_nothing(
        self, backend: ContractBackend, bad: Hostile
    ) -> None:
        backend.add_items(["a"])
        with pytest.raises(InvalidInput, match="sweep_interval"):
            backend.repo.enqueue_new("lang", sweep_interval=bad)
        assert backend.repo.count_unqueued("lang") == 1

    def test_has_destination_is_true_once_it_has_a_job_of_any_status(
        self, backend: ContractBackend
    ) -> None:
        assert backend.repo.has_destination("lang") is False
        backend.repo.save_fulltext(job_in(JobStatus.FINISHED, item_id="a"))
        assert backend.repo.has_destination("lang") is True
        assert backend.repo.has_destination("quote") is False
        for status in (JobStatus.READY, JobStatus.RUNNING, JobStatus.FAILED):
            backend.repo.save_fulltext(job_in(status, item_id="a", destination=status.value))
            assert backend.repo.has_destination(status.value) is True

    def test_stats_without_the_unqueued_count(self, backend: ContractBackend) -> None:
        backend.add_items(["a", "b"])
        backend.repo.save_fulltext(job_in(JobStatus.FAILED, item_id="a"))
        (counted,) = backend.repo.stats("lang")
        (cheap,) = backend.repo.stats("lang", unqueued=False)
        assert cheap.unqueued is None
        assert counted.unqueued == 1
        assert (cheap.destination, dict(cheap.counts)) == (counted.destination, counted.counts)
        assert [row.unqueued for row in backend.repo.stats(unqueued=False)] == [None]

    @pytest.mark.parametrize("bad", BAD_DESTINATIONS.values(), ids=BAD_DESTINATIONS.keys())
    def test_a_bad_destination_is_refused(self, backend: ContractBackend, bad: Hostile) -> None:
        with pytest.raises(InvalidInput):
            backend.repo.enqueue_new(bad)
        with pytest.raises(InvalidInput):
            backend.repo.has_destination(bad)

    @pytest.mark.parametrize("bad", ["yes", 1, None])
    def test_a_bad_unqueued_flag_is_refused(self, backend: ContractBackend, bad: Hostile) -> None:
        with pytest.raises(InvalidInput, match="unqueued"):
            backend.repo.stats(unqueued=bad)


class ListJobsContract(ContractFixtures):
    """Pages of a destination's jobs, for a look at failures."""

    @staticmethod
    def failed(backend: ContractBackend, item_id: str, error: str) -> FullText:
        backend.repo.save_fulltext(FullText.new(item_id, "lang"))
        job = backend.repo.get_ready_job("lang")
        job.fail(T0, error=error)
        backend.repo.save_fulltext(job)
        return job

    def test_lists_failed_jobs_with_their_errors_in_item_order(
        self, backend: ContractBackend
    ) -> None:
        self.failed(backend, "b", "HTTPError: 404")
        self.failed(backend, "c2", "TimeoutError")
        backend.repo.save_many([FullText.new(item_id, "lang") for item_id in "acd"])
        backend.repo.save_fulltext(FullText.new("a", "other"))
        failed = backend.repo.list_jobs("lang", statuses=["failed"])
        assert [(job.item_id, job.last_error) for job in failed] == [
            ("b", "HTTPError: 404"),
            ("c2", "TimeoutError"),
        ]
        assert failed[0] == backend.repo.get_fulltext(failed[0].id)
        assert [job.item_id for job in backend.repo.list_jobs("lang")] == [
            "a",
            "b",
            "c",
            "c2",
            "d",
        ]
        both = backend.repo.list_jobs("lang", statuses={JobStatus.READY, JobStatus.FAILED})
        assert len(both) == 5
        assert backend.repo.list_jobs("nothing") == []

    def test_keyset_pages_cover_every_job_once(self, backend: ContractBackend) -> None:
        backend.repo.save_many([FullText.new(f"i{n:02}", "lang") for n in range(25)])
        seen: list[str] = []
        after = None
        while page := backend.repo.list_jobs("lang", limit=10, after=after):
            assert len(page) <= 10
            seen += [job.item_id for job in page]
            after = page[-1].item_id
        assert seen == [f"i{n:02}" for n in range(25)]

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"statuses": []},
            {"statuses": "failed"},
            {"statuses": ["broken"]},
            {"limit": 0},
            {"limit": 10_001},
            {"limit": True},
            {"after": ""},
            {"after": "i\x00"},
        ],
    )
    def test_bad_arguments_raise_invalid_input(
        self, backend: ContractBackend, kwargs: dict[str, Hostile]
    ) -> None:
        with pytest.raises(InvalidInput):
            backend.repo.list_jobs("lang", **kwargs)

    @pytest.mark.parametrize("destination", BAD_DESTINATIONS.values(), ids=BAD_DESTINATIONS)
    def test_a_bad_destination_raises_invalid_input(
        self, backend: ContractBackend, destination: Hostile
    ) -> None:
        with pytest.raises(InvalidInput):
            backend.repo.list_jobs(destination)


class ClaimContract(ContractFixtures):
    """Claim tokens, leases, heartbeats, rescue and retry in place."""

    @staticmethod
    def claimed(backend: ContractBackend, item_id: str = "item") -> FullText:
        backend.repo.save_fulltext(FullText.new(item_id, "lang"))
        return backend.repo.get_ready_job("lang")

    def test_a_claim_sets_a_token_a_lease_and_counts_an_attempt(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        job = self.claimed(clocked)
        assert isinstance(job.claim_token, uuid.UUID)
        assert job.lease_expires == clock.now + timedelta(seconds=60)
        assert job.attempts == 1
        assert clocked.repo.get_fulltext(job.id) == job
        job.release()
        clocked.repo.save_fulltext(job)
        again = clocked.repo.get_ready_job("lang")
        assert again.attempts == 2
        assert again.claim_token not in (None, job.claim_token)

    # --- delayed readiness (a retry after a backoff) ---------------------------

    def test_a_job_released_for_later_is_not_claimed_before_it_is_due(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        job = self.claimed(clocked)
        due = clock.now + timedelta(seconds=30)
        job.release(clock.now, not_before=due, error="HTTPError: 503")
        clocked.repo.save_fulltext(job)
        stored = clocked.repo.get_fulltext(job.id)
        assert (stored.status, stored.not_before) == (JobStatus.READY, due)
        assert (stored.attempts, stored.last_error) == (1, "HTTPError: 503")
        with pytest.raises(NoJobs):
            clocked.repo.get_ready_job("lang")
        assert clocked.repo.claim_ready("lang", 5) == []
        clock.advance(seconds=29.999999)
        with pytest.raises(NoJobs):
            clocked.repo.get_ready_job("lang")
        clock.advance(microseconds=1)
        again = clocked.repo.get_ready_job("lang")
        assert (again.id, again.attempts, again.not_before) == (job.id, 2, None)
        assert again.last_error == "HTTPError: 503"
        assert clocked.repo.get_fulltext(job.id) == again

    def test_a_delayed_job_lets_later_due_jobs_pass(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        first = self.claimed(clocked, "a")
        first.release(clock.now, not_before=clock.now + timedelta(minutes=5))
        clocked.repo.save_fulltext(first)
        clocked.repo.save_many([FullText.new(item_id, "lang") for item_id in "bc"])
        assert [job.item_id for job in clocked.repo.claim_ready("lang", 5)] == ["b", "c"]
        clock.advance(minutes=5)
        # Due again, it keeps its place in the queue (oldest first).
        clocked.repo.save_fulltext(FullText.new("d", "lang"))
        assert [job.item_id for job in clocked.repo.claim_ready("lang", 5)] == ["a", "d"]

    def test_retry_clears_a_delay(self, clocked: ContractBackend, clock: FakeClock) -> None:
        job = self.claimed(clocked)
        job.release(clock.now, not_before=clock.now + timedelta(hours=1))
        clocked.repo.save_fulltext(job)
        stored = clocked.repo.get_fulltext(job.id)
        stored.skip(clock.now)
        clocked.repo.save_fulltext(stored)
        assert clocked.repo.retry("lang") == 1
        assert clocked.repo.get_fulltext(job.id).not_before is None
        assert clocked.repo.get_ready_job("lang").id == job.id

    def test_a_naive_not_before_is_refused_and_changes_nothing(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        job = self.claimed(clocked)
        with pytest.raises(InvalidInput):
            job.release(clock.now, not_before=datetime(2026, 11, 28, 13))  # noqa: DTZ001 - naive on purpose
        assert job.status is JobStatus.RUNNING
        assert clocked.repo.get_fulltext(job.id) == job

    def test_batch_claims_give_each_job_its_own_token(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        clocked.repo.save_many([FullText.new(item_id, "lang") for item_id in "abc"])
        jobs = clocked.repo.claim_ready("lang", 3)
        assert len({job.claim_token for job in jobs}) == 3
        assert {job.lease_expires for job in jobs} == {clock.now + timedelta(seconds=60)}
        assert {job.attempts for job in jobs} == {1}

    @pytest.mark.parametrize("action", [Action.FINISH, Action.FAIL, Action.SKIP, Action.RELEASE])
    def test_the_holder_ends_its_claim_by_saving(
        self, clocked: ContractBackend, action: Action
    ) -> None:
        job = self.claimed(clocked)
        job.apply(action)
        clocked.repo.save_fulltext(job)
        stored = clocked.repo.get_fulltext(job.id)
        assert stored == replace(job, claim_token=None)
        assert (stored.claim_token, stored.lease_expires) == (None, None)
        # The claim is over: the same save again is refused.
        with pytest.raises(LostClaim):
            clocked.repo.save_fulltext(job)
        assert clocked.repo.get_fulltext(job.id) == stored

    def test_a_save_with_another_token_is_refused_and_changes_nothing(
        self, clocked: ContractBackend
    ) -> None:
        job = self.claimed(clocked)
        forged = replace(job, claim_token=uuid.uuid4())
        forged.finish()
        with pytest.raises(LostClaim):
            clocked.repo.save_fulltext(forged)
        without = replace(job, claim_token=None)
        without.finish()
        with pytest.raises(LostClaim):
            clocked.repo.save_fulltext(without)
        assert clocked.repo.get_fulltext(job.id) == job

    def test_save_many_with_one_stale_claim_saves_nothing(self, clocked: ContractBackend) -> None:
        first, second = self.claimed(clocked, "a"), self.claimed(clocked, "b")
        first.finish()
        second.finish()
        stale = replace(second, claim_token=uuid.uuid4())
        with pytest.raises(LostClaim):
            clocked.repo.save_many([first, stale])
        assert clocked.repo.get_fulltext(first.id).status is JobStatus.RUNNING
        clocked.repo.save_many([first, second])
        assert clocked.repo.get_fulltext(second.id).status is JobStatus.FINISHED

    def test_save_many_not_atomic_refuses_each_stale_claim_alone(
        self, clocked: ContractBackend
    ) -> None:
        first, second, third = (self.claimed(clocked, item) for item in "abc")
        for job in (first, second, third):
            job.finish()
        stale = replace(second, claim_token=uuid.uuid4())
        versions = (first.version, stale.version, third.version)
        with pytest.raises(StaleJobs) as refused:
            clocked.repo.save_many([first, stale, third], atomic=False)
        assert refused.value.refused == (second.id,)
        assert isinstance(refused.value, LostClaim)
        # The others were saved, and their copies moved on; the refused
        # copy is left as it was.
        assert (first.version, stale.version, third.version) == (
            versions[0] + 1,
            versions[1],
            versions[2] + 1,
        )
        assert clocked.repo.get_fulltext(first.id) == replace(first, claim_token=None)
        assert clocked.repo.get_fulltext(third.id) == replace(third, claim_token=None)
        stored = clocked.repo.get_fulltext(second.id)
        assert stored.status is JobStatus.RUNNING
        assert stored.version == versions[1]
        # The refused copy is still refused; the live one is saved.
        with pytest.raises(StaleJobs):
            clocked.repo.save_many([stale], atomic=False)
        clocked.repo.save_many([second], atomic=False)
        assert clocked.repo.get_fulltext(second.id).status is JobStatus.FINISHED

    def test_save_many_not_atomic_with_every_claim_stale_saves_nothing(
        self, clocked: ContractBackend
    ) -> None:
        jobs = [self.claimed(clocked, item) for item in "ab"]
        taken = [replace(job, claim_token=uuid.uuid4()) for job in jobs]
        for job in taken:
            job.finish()
        with pytest.raises(StaleJobs) as refused:
            clocked.repo.save_many(taken, atomic=False)
        assert refused.value.refused == tuple(job.id for job in jobs)
        assert [clocked.repo.get_fulltext(job.id) for job in jobs] == jobs

    def test_save_many_not_atomic_saves_nothing_on_a_duplicate(
        self, clocked: ContractBackend
    ) -> None:
        job = self.claimed(clocked, "a")
        stale = replace(self.claimed(clocked, "e"), claim_token=uuid.uuid4())
        clash = self.claimed(clocked, "c")
        clocked.repo.save_fulltext(FullText.new("b", "lang"))
        clash.item_id = "b"
        job.finish()
        stale.finish()
        with pytest.raises(DuplicateJob):
            clocked.repo.save_many([job, stale, clash], atomic=False)
        assert clocked.repo.get_fulltext(job.id).status is JobStatus.RUNNING
        assert job.version == clocked.repo.get_fulltext(job.id).version
        with pytest.raises(DuplicateJob):
            clocked.repo.save_many(
                [FullText.new("d", "lang"), FullText.new("b", "lang")], atomic=False
            )
        assert [job.item_id for job in clocked.repo.list_jobs("lang")] == ["a", "b", "c", "e"]

    def test_save_many_not_atomic_inserts_new_jobs_and_refuses_taken_ids(
        self, clocked: ContractBackend
    ) -> None:
        running = self.claimed(clocked, "a")
        running.finish()
        existing = FullText.new("b", "lang")
        clocked.repo.save_fulltext(existing)
        again = replace(existing, version=0)
        fresh = FullText.new("c", "lang")
        with pytest.raises(StaleJobs) as refused:
            clocked.repo.save_many([running, again, fresh], atomic=False)
        assert refused.value.refused == (existing.id,)
        assert (again.version, fresh.version) == (0, 1)
        assert clocked.repo.get_fulltext(fresh.id) == fresh
        assert clocked.repo.get_fulltext(running.id).status is JobStatus.FINISHED
        clocked.repo.save_many([], atomic=False)

    def test_heartbeat_extends_the_lease(self, clocked: ContractBackend, clock: FakeClock) -> None:
        job = self.claimed(clocked)
        clock.advance(seconds=45)
        new_lease = clocked.repo.heartbeat(job)
        assert new_lease == job.lease_expires == clock.now + timedelta(seconds=60)
        assert clocked.repo.get_fulltext(job.id).lease_expires == new_lease
        clock.advance(seconds=45)  # past the first lease, within the second
        assert clocked.repo.rescue_expired() == 0

    def test_heartbeat_without_the_claim_is_refused(self, clocked: ContractBackend) -> None:
        job = self.claimed(clocked)
        with pytest.raises(LostClaim):
            clocked.repo.heartbeat(replace(job, claim_token=uuid.uuid4()))
        job.finish()
        clocked.repo.save_fulltext(job)
        with pytest.raises(LostClaim):
            clocked.repo.heartbeat(job)
        with pytest.raises(LostClaim):
            clocked.repo.heartbeat(FullText.new("never-saved", "lang"))

    def test_rescue_returns_expired_jobs_and_revokes_their_claims(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        job = self.claimed(clocked)
        clock.advance(seconds=59)
        assert clocked.repo.rescue_expired() == 0
        clock.advance(seconds=2)
        assert clocked.repo.rescue_expired() == 1
        rescued = clocked.repo.get_fulltext(job.id)
        assert (rescued.status, rescued.started, rescued.claim_token) == (
            JobStatus.READY,
            None,
            None,
        )
        assert (rescued.attempts, rescued.last_error) == (1, RESCUED_ERROR)
        # The first worker's late finish is refused; the second claim finishes.
        job.finish()
        with pytest.raises(LostClaim):
            clocked.repo.save_fulltext(job)
        second = clocked.repo.get_ready_job("lang")
        assert second.attempts == 2
        second.finish()
        clocked.repo.save_fulltext(second)
        with pytest.raises(LostClaim):
            clocked.repo.save_fulltext(job)
        assert clocked.repo.get_fulltext(job.id).status is JobStatus.FINISHED

    def test_rescue_to_ready_replaces_an_earlier_reason(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        job = self.claimed(clocked)
        job.release(clock.now, error="HTTPError: 503")
        clocked.repo.save_fulltext(job)
        job = clocked.repo.get_ready_job("lang")
        assert job.last_error == "HTTPError: 503"
        clock.advance(seconds=61)
        assert clocked.repo.rescue_expired() == 1
        assert clocked.repo.get_fulltext(job.id).last_error == RESCUED_ERROR
        assert clocked.repo.get_ready_job("lang").last_error == RESCUED_ERROR

    def test_rescue_fails_a_job_that_used_up_its_attempts(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        job = self.claimed(clocked)
        for attempt in (1, 2):
            clock.advance(seconds=61)
            assert clocked.repo.rescue_expired(max_attempts=3) == 1
            job = clocked.repo.get_ready_job("lang")
            assert job.attempts == attempt + 1
            assert job.last_error == RESCUED_ERROR
        clock.advance(seconds=61)
        assert clocked.repo.rescue_expired(max_attempts=3) == 1
        failed = clocked.repo.get_fulltext(job.id)
        assert failed.status is JobStatus.FAILED
        assert failed.finished == clock.now
        assert failed.started == job.started
        assert failed.last_error == "lease expired after 3 attempt(s); max_attempts reached"
        assert (failed.claim_token, failed.lease_expires) == (None, None)

    def test_rescue_leaves_finished_jobs_and_other_destinations(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        done = self.claimed(clocked, "done")
        done.finish()
        clocked.repo.save_fulltext(done)
        clocked.repo.save_fulltext(FullText.new("elsewhere", "quote"))
        other = clocked.repo.get_ready_job("quote")
        self.claimed(clocked, "late")
        clock.advance(minutes=5)
        assert clocked.repo.rescue_expired("lang") == 1
        assert clocked.repo.get_fulltext(done.id).status is JobStatus.FINISHED
        assert clocked.repo.get_fulltext(other.id).status is JobStatus.RUNNING
        assert clocked.repo.rescue_expired() == 1

    def test_rescue_expired_jobs_names_the_jobs_it_rescued(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        first, second = self.claimed(clocked, "a"), self.claimed(clocked, "b")
        clock.advance(minutes=5)
        assert clocked.repo.rescue_expired_jobs("lang") == sorted([first.id, second.id])
        assert clocked.repo.rescue_expired_jobs("lang") == []
        assert clocked.repo.get_fulltext(first.id).status is JobStatus.READY

    def test_rescue_leaves_running_jobs_without_a_lease(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        clocked.repo.save_fulltext(
            job_in(JobStatus.RUNNING)
        )  # as the original's workers leave them
        clock.advance(days=1)
        assert clocked.repo.rescue_expired() == 0

    @pytest.mark.parametrize("bad", [0, -1, 2.5, None])
    def test_rescue_rejects_a_bad_max_attempts(
        self, clocked: ContractBackend, bad: Hostile
    ) -> None:
        with pytest.raises(InvalidInput):
            clocked.repo.rescue_expired(max_attempts=bad)

    def test_fail_records_the_error(self, clocked: ContractBackend) -> None:
        job = self.claimed(clocked)
        job.fail(error="ValueError: no text\x00here" + "!" * 5000)
        clocked.repo.save_fulltext(job)
        stored = clocked.repo.get_fulltext(job.id)
        assert stored.last_error is not None
        assert stored.last_error.startswith("ValueError: no text\\x00here!")
        assert len(stored.last_error) == MAX_ERROR_LENGTH

    @pytest.mark.parametrize("through", ["save_fulltext", "save_many", "save_each"])
    def test_skip_records_its_reason(
        self, clocked: ContractBackend, clock: FakeClock, through: str
    ) -> None:
        running = self.claimed(clocked, "a")
        running.skip(clock.now, error="no full text\x00" + "!" * 5000)
        waiting = clocked.repo.get_fulltext(self.claimed(clocked, "b").id)
        waiting.release(clock.now, error="HTTPError: 503")
        clocked.repo.save_fulltext(waiting)
        waiting = clocked.repo.get_fulltext(waiting.id)  # ready, without a claim
        waiting.skip(clock.now, error="no full text")
        if through == "save_fulltext":
            clocked.repo.save_fulltext(running)
            clocked.repo.save_fulltext(waiting)
        else:
            clocked.repo.save_many([running, waiting], atomic=through == "save_many")
        stored = clocked.repo.get_fulltext(running.id)
        assert stored == replace(running, claim_token=None)  # the copy keeps its token
        assert stored.last_error is not None
        assert stored.last_error.startswith("no full text\\x00!")
        assert len(stored.last_error) == MAX_ERROR_LENGTH
        assert clocked.repo.get_fulltext(waiting.id).last_error == "no full text"

    def test_retry_in_place_starts_the_attempts_again_and_keeps_the_last_error(
        self, clocked: ContractBackend
    ) -> None:
        failing = self.claimed(clocked, "a")
        failing.fail(error="boom")
        clocked.repo.save_fulltext(failing)
        clocked.repo.save_fulltext(job_in(JobStatus.SKIPPED, item_id="b"))
        clocked.repo.save_fulltext(job_in(JobStatus.FINISHED, item_id="c"))
        assert clocked.repo.retry("lang", statuses=["skipped"]) == 1
        assert clocked.repo.retry("lang") == 1
        assert clocked.repo.retry("lang") == 0
        again = clocked.repo.get_fulltext(failing.id)
        assert (again.status, again.started, again.finished) == (JobStatus.READY, None, None)
        assert (again.attempts, again.last_error) == (0, "boom")
        assert clocked.repo.get_ready_job("lang").attempts == 1

    @pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.SKIPPED])
    def test_a_stored_retry_is_the_entitys_retry(
        self, clocked: ContractBackend, clock: FakeClock, status: JobStatus
    ) -> None:
        # The domain's move and the store's statement are one rule: the
        # stored job is the entity's `retry()` of it, one version on.
        job = self.claimed(clocked)
        for _ in range(2):
            job.release(clock.now, not_before=clock.now + timedelta(hours=1), error="503")
            clocked.repo.save_fulltext(job)
            clock.advance(hours=2)
            job = clocked.repo.get_ready_job("lang")
        if status is JobStatus.FAILED:
            job.fail(clock.now, error="HTTPError: 404")
        else:
            job.skip(clock.now, error="no full text")
        clocked.repo.save_fulltext(job)
        stored = clocked.repo.get_fulltext(job.id)
        assert stored.attempts == 3
        expected = replace(stored, version=stored.version + 1)
        expected.retry(clock.now)
        assert clocked.repo.retry("lang", statuses=[status]) == 1
        assert clocked.repo.get_fulltext(job.id) == expected
        assert (expected.attempts, expected.last_error) == (
            0,
            "HTTPError: 404" if status is JobStatus.FAILED else "no full text",
        )

    def test_retry_of_chosen_items_only(self, clocked: ContractBackend) -> None:
        for item_id in "abc":
            clocked.repo.save_fulltext(job_in(JobStatus.FAILED, item_id=item_id))
        assert clocked.repo.retry("lang", item_ids=["a", "c", "zz"]) == 2
        assert clocked.repo.retry("quote") == 0
        assert [job.item_id for job in clocked.repo.claim_ready("lang", 5)] == ["a", "c"]

    @pytest.mark.parametrize(
        "statuses", [[], ["finished"], ["running"], ["bogus"], "failed", [JobStatus.READY]]
    )
    def test_retry_rejects_statuses_it_cannot_start_from(
        self, clocked: ContractBackend, statuses: Hostile
    ) -> None:
        clocked.repo.save_fulltext(job_in(JobStatus.FAILED))
        with pytest.raises(InvalidInput):
            clocked.repo.retry("lang", statuses=statuses)
        assert clocked.repo.claim_ready("lang", 1) == []

    def test_save_many_with_a_stale_claim_and_a_duplicate_raises_duplicate(
        self, clocked: ContractBackend
    ) -> None:
        job = self.claimed(clocked, "a")
        stale = replace(job)
        job.skip()
        clocked.repo.save_fulltext(job)
        stale.finish()
        clocked.repo.save_fulltext(FullText.new("b", "lang"))
        with pytest.raises(DuplicateJob):
            clocked.repo.save_many([stale, FullText.new("b", "lang")])
        assert clocked.repo.get_fulltext(job.id).status is JobStatus.SKIPPED


class CompareAndSwapContract(ContractFixtures):
    """A save is accepted only while the stored job is still the one the copy
    was read from; otherwise `StaleJob` (a `LostClaim`) and nothing changes."""

    def test_a_copy_read_while_ready_cannot_undo_a_finish(self, clocked: ContractBackend) -> None:
        clocked.add_items(["item"])
        job = clocked.repo.create_job_for_unqueued("lang")
        stale = clocked.repo.get_fulltext(job.id)  # an admin screen, a report
        live = clocked.repo.get_ready_job("lang")
        live.finish()
        clocked.repo.save_fulltext(live)
        stale.skip()
        with pytest.raises(StaleJob):
            clocked.repo.save_fulltext(stale)
        stored = clocked.repo.get_fulltext(job.id)
        assert stored.status is JobStatus.FINISHED
        assert stored == replace(live, claim_token=None)

    def test_a_copy_read_while_failed_cannot_run_a_finished_job_again(
        self, clocked: ContractBackend
    ) -> None:
        clocked.add_items(["item"])
        clocked.repo.create_job_for_unqueued("lang")
        claimed = clocked.repo.get_ready_job("lang")
        claimed.fail(error="boom")
        clocked.repo.save_fulltext(claimed)
        stale = clocked.repo.get_fulltext(claimed.id)
        assert clocked.repo.retry("lang") == 1
        live = clocked.repo.get_ready_job("lang")
        live.finish()
        clocked.repo.save_fulltext(live)
        stale.retry()
        with pytest.raises(LostClaim):  # StaleJob is a LostClaim
            clocked.repo.save_fulltext(stale)
        assert clocked.repo.get_fulltext(claimed.id).status is JobStatus.FINISHED
        assert clocked.repo.claim_ready("lang", 1) == []

    def test_a_save_moves_the_copys_version_on(self, clocked: ContractBackend) -> None:
        job = FullText.new("item", "lang")
        assert job.version == 0
        clocked.repo.save_fulltext(job)
        assert job.version == 1
        other = clocked.repo.get_fulltext(job.id)
        assert other == job
        job.skip()
        clocked.repo.save_fulltext(job)
        assert job.version == 2
        assert clocked.repo.get_fulltext(job.id) == job
        other.skip()  # read before the last save
        with pytest.raises(StaleJob):
            clocked.repo.save_fulltext(other)
        assert other.version == 1
        assert clocked.repo.get_fulltext(job.id) == job

    def test_a_new_job_never_replaces_a_stored_one(self, clocked: ContractBackend) -> None:
        stored = job_in(JobStatus.FINISHED)
        clocked.repo.save_fulltext(stored)
        again = replace(job_in(JobStatus.READY), id=stored.id)  # version 0: never stored
        with pytest.raises(StaleJob):
            clocked.repo.save_fulltext(again)
        with pytest.raises(StaleJob):
            clocked.repo.save_many([again])
        assert again.version == 0
        assert clocked.repo.get_fulltext(stored.id) == stored

    def test_a_copy_of_a_job_that_is_not_stored_is_refused(self, clocked: ContractBackend) -> None:
        ghost = replace(FullText.new("item", "lang"), version=4)
        with pytest.raises(StaleJob):
            clocked.repo.save_fulltext(ghost)
        with pytest.raises(JobNotFound):
            clocked.repo.get_fulltext(ghost.id)

    @pytest.mark.parametrize("read", ["claim", "claim_ready", "rescue", "retry"])
    def test_every_write_makes_earlier_copies_stale(
        self, clocked: ContractBackend, clock: FakeClock, read: str
    ) -> None:
        job = FullText.new("item", "lang")
        clocked.repo.save_fulltext(job)
        if read == "retry":
            claimed = clocked.repo.get_ready_job("lang")
            claimed.skip()
            clocked.repo.save_fulltext(claimed)
        before = clocked.repo.get_fulltext(job.id)
        if read == "claim":
            clocked.repo.get_ready_job("lang")
        elif read == "claim_ready":
            clocked.repo.claim_ready("lang", 5)
        elif read == "rescue":
            clocked.repo.get_ready_job("lang")
            before = clocked.repo.get_fulltext(job.id)
            clock.advance(seconds=61)
            assert clocked.repo.rescue_expired() == 1
        else:
            assert clocked.repo.retry("lang") == 1
        after = clocked.repo.get_fulltext(job.id)
        assert after.version == before.version + 1
        with pytest.raises(StaleJob):
            clocked.repo.save_fulltext(before)
        assert clocked.repo.get_fulltext(job.id) == after

    def test_a_heartbeat_leaves_the_workers_other_copies_current(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        clocked.repo.save_fulltext(FullText.new("item", "lang"))
        job = clocked.repo.get_ready_job("lang")
        beat, outcome = replace(job), replace(job)  # as the worker keeps them
        clock.advance(seconds=30)
        clocked.repo.heartbeat(beat)
        assert beat.version == job.version
        outcome.finish()
        clocked.repo.save_fulltext(outcome)
        assert clocked.repo.get_fulltext(job.id).status is JobStatus.FINISHED

    def test_save_many_with_one_stale_copy_saves_nothing(self, clocked: ContractBackend) -> None:
        clocked.repo.save_many([FullText.new(item_id, "lang") for item_id in "ab"])
        first = clocked.repo.claim_ready("lang", 2)[0]
        stale = replace(first)
        first.finish()
        clocked.repo.save_fulltext(first)
        fresh = FullText.new("c", "lang")
        stale.skip()
        with pytest.raises(StaleJob):
            clocked.repo.save_many([fresh, stale])
        assert (fresh.version, stale.version) == (0, first.version - 1)
        with pytest.raises(JobNotFound):
            clocked.repo.get_fulltext(fresh.id)
        assert clocked.repo.get_fulltext(first.id).status is JobStatus.FINISHED
        clocked.repo.save_many([fresh])
        assert fresh.version == 1


# --- hostile input ------------------------------------------------------------

SURROGATE = "a\ud800b"  # a lone surrogate: a str that UTF-8 cannot encode
HUGE = (2**31, 2**63, 10**30)
NOT_WHOLE = (0, -1, True, 1.5, "3", None)
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
        """A ready, a running (claimed) and a failed job of `lang`, and one
        unqueued item."""
        made = [FullText.new(item, "lang") for item in ("r", "s", "t")]
        backend.repo.save_many(made)
        running, failed = backend.repo.claim_ready("lang", 2)
        failed.fail(error="boom")
        backend.repo.save_fulltext(failed)
        backend.add_items(["unqueued"])
        ready = backend.repo.get_fulltext(made[2].id)
        return {"ready": ready, "running": running, "failed": failed}

    @staticmethod
    def snapshot(backend: ContractBackend, jobs: dict[str, FullText]) -> object:
        repo = backend.repo
        return (
            [repo.get_fulltext(job.id) for job in jobs.values()],
            repo.stats(),
            repo.count_unqueued("lang"),
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
        for call in (
            lambda: clocked.repo.get_ready_job("lang"),
            lambda: clocked.repo.claim_ready("lang", 5),
            clocked.repo.rescue_expired,
            lambda: clocked.repo.heartbeat(jobs["running"]),
        ):
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


def build_like(backend: ContractBackend, **settings: object) -> object:
    """A repository of `backend`'s kind, built with `settings`; the test is
    skipped if the backend cannot build one (`ContractBackend.build`)."""
    if backend.build is None:
        pytest.skip("the adapter gives no way to build a repository (ContractBackend.build)")
    return backend.build(**settings)


class HoldContract(ContractFixtures):
    """`hold_ready`: the claim is an open transaction, the job is written once."""

    @staticmethod
    def queued(backend: ContractBackend, item_ids: str = "abc") -> list[FullText]:
        jobs = [FullText.new(item_id, "lang") for item_id in item_ids]
        backend.repo.save_many(jobs)
        return jobs

    def test_a_clean_exit_writes_each_job_once(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        jobs = self.queued(clocked)
        with clocked.repo.hold_ready("lang", 2) as held:
            assert [job.id for job in held] == [jobs[0].id, jobs[1].id]
            assert {(job.status, job.started, job.attempts) for job in held} == {
                (JobStatus.RUNNING, clock.now, 1)
            }
            assert {job.version for job in held} == {1}
            if not clocked.capabilities.holds_write_lock_in_hold_ready:
                assert clocked.repo.get_fulltext(jobs[0].id) == jobs[0]
            for job in held:
                job.finish(clock.now)
        for job in held:
            stored = clocked.repo.get_fulltext(job.id)
            assert (stored.status, stored.attempts, stored.version) == (JobStatus.FINISHED, 1, 2)
            assert (stored.started, stored.finished, stored.claim_token) == (
                clock.now,
                clock.now,
                None,
            )
            assert job.version == 2
        assert clocked.repo.get_fulltext(jobs[2].id) == jobs[2]

    def test_a_retry_finished_in_a_hold_keeps_its_error_and_loses_its_delay(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        (job,) = self.queued(clocked, "a")
        first = clocked.repo.get_ready_job("lang")
        first.release(clock.now, not_before=clock.now + timedelta(seconds=5), error="503")
        clocked.repo.save_fulltext(first)
        clock.advance(seconds=10)
        with clocked.repo.hold_ready("lang", 5) as held:
            held[0].finish(clock.now)
        stored = clocked.repo.get_fulltext(job.id)
        assert stored == held[0]
        assert (stored.status, stored.attempts, stored.last_error, stored.not_before) == (
            JobStatus.FINISHED,
            2,
            "503",
            None,
        )
        assert (stored.started, stored.finished, stored.version) == (clock.now, clock.now, 4)

    def test_mixed_and_hand_edited_outcomes_are_written_as_the_copies_say(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        jobs = self.queued(clocked, "abcd")
        with clocked.repo.hold_ready("lang", 4) as held:
            held[0].finish(clock.now)
            held[1].fail(clock.now, error="bad")
            held[2].skip(clock.now)
            held[3].finish(clock.now)
            held[3].attempts, held[3].last_error = 7, "noted by hand"
        stored = [clocked.repo.get_fulltext(job.id) for job in jobs]
        assert stored == held
        assert [(job.status, job.attempts, job.last_error) for job in stored] == [
            (JobStatus.FINISHED, 1, None),
            (JobStatus.FAILED, 1, "bad"),
            (JobStatus.SKIPPED, 1, None),
            (JobStatus.FINISHED, 7, "noted by hand"),
        ]

    @pytest.mark.parametrize("others", ["finished", "skipped"])
    def test_a_skip_in_a_hold_writes_its_reason(
        self, clocked: ContractBackend, clock: FakeClock, others: str
    ) -> None:
        # Beside plain finishes (the batch a store may write with fewer
        # columns) or other skips: the reason is written either way.
        jobs = self.queued(clocked)
        first = clocked.repo.get_ready_job("lang")
        first.release(clock.now, error="HTTPError: 503")
        clocked.repo.save_fulltext(first)
        with clocked.repo.hold_ready("lang", 3) as held:
            for job in held:
                if job.id == jobs[1].id:
                    job.skip(clock.now, error="no full text")
                elif others == "finished":
                    job.finish(clock.now)
                else:
                    job.skip(clock.now, error=f"nothing in {job.item_id}")
        stored = [clocked.repo.get_fulltext(job.id) for job in jobs]
        assert stored == sorted(held, key=lambda job: job.item_id)
        assert [job.last_error for job in stored] == (
            ["HTTPError: 503", "no full text", None]
            if others == "finished"
            else ["nothing in a", "no full text", "nothing in c"]
        )

    def test_an_equal_but_not_identical_id_is_still_the_held_job(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        (job,) = self.queued(clocked, "a")
        with clocked.repo.hold_ready("lang", 1) as held:
            held[0].finish(clock.now)
            held[0].id = uuid.UUID(str(held[0].id))
        assert clocked.repo.get_fulltext(job.id).status is JobStatus.FINISHED

    def test_a_held_copy_given_another_id_is_refused_and_the_job_held_again(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        (job,) = self.queued(clocked, "a")

        def renaming_block() -> None:
            with clocked.repo.hold_ready("lang", 1) as held:
                held[0].finish(clock.now)
                held[0].id = uuid.uuid4()

        with pytest.raises(InvalidInput, match="hold_ready"):
            renaming_block()
        assert clocked.repo.get_fulltext(job.id) == job
        with clocked.repo.hold_ready("lang", 1) as held:
            assert [copy.id for copy in held] == [job.id]

    def test_an_exception_rolls_everything_back(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        jobs = self.queued(clocked)

        def broken_block() -> None:
            with clocked.repo.hold_ready("lang", 3) as held:
                for job in held:
                    job.finish(clock.now)
                raise RuntimeError("the handler broke")

        with pytest.raises(RuntimeError):
            broken_block()
        assert [clocked.repo.get_fulltext(job.id) for job in jobs] == jobs
        again = clocked.repo.claim_ready("lang", 5)
        assert [(job.id, job.attempts) for job in again] == [(job.id, 1) for job in jobs]

    def test_a_job_left_running_stays_ready_and_a_release_is_written(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        jobs = self.queued(clocked)
        due = clock.now + timedelta(seconds=30)
        with clocked.repo.hold_ready("lang", 3) as held:
            held[0].finish(clock.now)
            held[2].release(clock.now, not_before=due, error="HTTPError: 503")
        assert clocked.repo.get_fulltext(jobs[1].id) == jobs[1]
        released = clocked.repo.get_fulltext(jobs[2].id)
        assert (released.status, released.attempts, released.not_before) == (
            JobStatus.READY,
            1,
            due,
        )
        assert released.last_error == "HTTPError: 503"
        assert [job.id for job in clocked.repo.claim_ready("lang", 5)] == [jobs[1].id]
        clock.advance(seconds=30)
        again = clocked.repo.claim_ready("lang", 5)
        assert [(job.id, job.attempts) for job in again] == [(jobs[2].id, 2)]

    def test_concurrent_holders_and_claimers_never_share_a_job(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        jobs = self.queued(clocked, "abcdef")
        one_writer = clocked.capabilities.holds_write_lock_in_hold_ready
        got: list[list[FullText]] = []
        claimer = threading.Thread(target=lambda: got.append(clocked.repo.claim_ready("lang", 2)))
        with clocked.repo.hold_ready("lang", 3) as first:
            claimer.start()
            if not one_writer:
                # Row locks: the claim passes the held jobs over, at once.
                claimer.join(30)
                assert got, "the claim waited for the hold"
                with clocked.repo.hold_ready("lang", 5) as second:
                    assert [job.id for job in second] == [jobs[5].id]
                    second[0].finish(clock.now)
            # With one writer (SQLite) the claim waits for the block's write lock.
            for job in first:
                job.finish(clock.now)
        claimer.join(30)
        assert [job.id for job in first] == [job.id for job in jobs[:3]]
        assert [job.id for job in got[0]] == [job.id for job in jobs[3:5]]
        stored = [clocked.repo.get_fulltext(job.id) for job in jobs]
        assert [job.status for job in stored] == [JobStatus.FINISHED] * 3 + [
            JobStatus.RUNNING
        ] * 2 + [JobStatus.FINISHED if not one_writer else JobStatus.READY]

    def test_only_due_jobs_are_held(self, clocked: ContractBackend, clock: FakeClock) -> None:
        (later,) = self.queued(clocked, "a")
        first = clocked.repo.get_ready_job("lang")
        first.release(clock.now, not_before=clock.now + timedelta(minutes=5))
        clocked.repo.save_fulltext(first)
        (due,) = self.queued(clocked, "b")
        with clocked.repo.hold_ready("lang", 5) as held:
            assert [job.id for job in held] == [due.id]
        clock.advance(minutes=5)
        with clocked.repo.hold_ready("lang", 5) as held:
            assert [job.id for job in held] == [later.id, due.id]

    @pytest.mark.parametrize("bad_n", [0, -3, None, 2.0, 10_001])
    def test_a_bad_n_is_refused_and_holds_nothing(
        self, backend: ContractBackend, bad_n: Hostile
    ) -> None:
        self.queued(backend, "a")
        with pytest.raises(InvalidInput), backend.repo.hold_ready("lang", bad_n):
            pytest.fail("the block ran")
        assert backend.repo.get_ready_job("lang").item_id == "a"

    @pytest.mark.parametrize("bad", list(BAD_DESTINATIONS.values()), ids=list(BAD_DESTINATIONS))
    def test_a_bad_destination_is_refused_by_the_hold(
        self, backend: ContractBackend, bad: Hostile
    ) -> None:
        with pytest.raises(InvalidInput), backend.repo.hold_ready(bad, 1):
            pytest.fail("the block ran")

    def test_a_copy_broken_in_the_block_writes_nothing(self, backend: ContractBackend) -> None:
        jobs = self.queued(backend, "ab")

        def breaking_block() -> None:
            with backend.repo.hold_ready("lang", 2) as held:
                held[0].finish()
                held[1].finish()
                held[1].item_id = ""

        with pytest.raises(InvalidInput):
            breaking_block()
        assert [backend.repo.get_fulltext(job.id) for job in jobs] == jobs

    def test_a_held_job_moved_to_another_item_writes_nothing(
        self, backend: ContractBackend
    ) -> None:
        jobs = self.queued(backend, "ab")

        def moving_block() -> None:
            with backend.repo.hold_ready("lang", 2) as held:
                for job in held:
                    job.finish()
                held[0].item_id = "elsewhere"

        with pytest.raises(InvalidInput, match="hold_ready"):
            moving_block()
        assert [backend.repo.get_fulltext(job.id) for job in jobs] == jobs


class RepositoryContract(
    StorageContract,
    BatchContract,
    ProducerContract,
    ListJobsContract,
    ClaimContract,
    CompareAndSwapContract,
    HostileInputContract,
    HoldContract,
):
    """The whole contract suite: every part's tests in one class."""
