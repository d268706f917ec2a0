"""The contract: storing jobs, reading them back, statuses and stats."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fulltext_jobs import (
    ACTIONS,
    MAX_DESTINATION_LENGTH,
    MAX_ITEM_ID_LENGTH,
    Action,
    AllQueued,
    DuplicateJob,
    FullText,
    InvalidInput,
    InvalidTransition,
    JobNotFound,
    JobStatus,
    NoJobs,
)
from fulltext_jobs.testing._fixtures import (
    BAD_DESTINATIONS,
    BAD_ITEM_IDS,
    T0,
    ContractFixtures,
    Hostile,
    item_adder,
    job_in,
)
from fulltext_jobs.testing.backend import ContractBackend


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
        with pytest.raises(DuplicateJob, match=r"'item'.*'lang'"):  # it names the pair
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
        with pytest.raises(DuplicateJob, match=r"'a'.*'lang'"):
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
