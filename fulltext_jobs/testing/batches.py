"""The contract: claims and saves of many jobs at once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fulltext_jobs import (
    Action,
    AllQueued,
    DuplicateJob,
    FullText,
    InvalidInput,
    JobNotFound,
    JobStatus,
)
from fulltext_jobs.testing._fixtures import BAD_DESTINATIONS, ContractFixtures, Hostile, job_in
from fulltext_jobs.testing.backend import ContractBackend


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
