"""The contract: making jobs for unqueued items, and listing jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fulltext_jobs import (
    FullText,
    InvalidInput,
    JobStatus,
)
from fulltext_jobs.testing._fixtures import BAD_DESTINATIONS, T0, ContractFixtures, Hostile, job_in
from fulltext_jobs.testing.backend import ContractBackend, FakeClock


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
