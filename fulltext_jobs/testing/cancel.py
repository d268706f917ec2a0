"""The contract: cancelling jobs (`cancel`): ready jobs skipped at once with
the reason, running ones asked to stop through requests their workers take
(`take_cancel_requests`), each request for one claim."""

from __future__ import annotations

import threading

import pytest

from fulltext_jobs import FullText, JobStatus, StaleJob
from fulltext_jobs.domain import MAX_ERROR_LENGTH, Cancellation
from fulltext_jobs.testing._fixtures import ContractFixtures
from fulltext_jobs.testing.backend import ContractBackend, FakeClock


def cancelling(backend: ContractBackend) -> ContractBackend:
    """`backend`, if its adapter can cancel; else the test is skipped."""
    if not backend.capabilities.cancels:
        pytest.skip("the adapter cannot cancel (Capabilities.cancels)")
    return backend


class CancelContract(ContractFixtures):
    """`cancel` and `take_cancel_requests`: a cancelled job ends `skipped`
    with "cancelled: " and the reason in `last_error`; no other job moves."""

    @staticmethod
    def ready_jobs(backend: ContractBackend, item_ids: str) -> list[FullText]:
        jobs = [FullText.new(item_id, "lang") for item_id in item_ids]
        backend.repo.save_many(jobs)
        return jobs

    @staticmethod
    def ready_elsewhere(backend: ContractBackend) -> FullText:
        job = FullText.new("a", "other")
        backend.repo.save_fulltext(job)
        return job

    def test_ready_jobs_of_the_items_are_skipped_with_the_reason(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = cancelling(clocked).repo
        jobs = self.ready_jobs(clocked, "abcd")
        other = self.ready_elsewhere(clocked)
        done = repo.get_ready_job("lang")  # a
        done.finish(clock.now)
        repo.save_fulltext(done)
        clock.advance(seconds=5)
        got = repo.cancel("lang", item_ids=["a", "b", "c", "nope"], reason="wrong batch")
        assert got == Cancellation(sorted([jobs[1].id, jobs[2].id]), [])
        for job in jobs[1:3]:
            stored = repo.get_fulltext(job.id)
            assert stored.status is JobStatus.SKIPPED
            assert stored.last_error == "cancelled: wrong batch"
            assert stored.finished == clock.now
            assert stored.version == job.version + 1
        # The finished job, the job not named and the other destination's
        # are left as they were.
        assert repo.get_fulltext(jobs[0].id).status is JobStatus.FINISHED
        assert repo.get_fulltext(jobs[3].id).status is JobStatus.READY
        assert repo.get_fulltext(other.id).status is JobStatus.READY
        # A copy of a cancelled job read before is stale: it cannot undo the skip.
        with pytest.raises(StaleJob):
            repo.save_fulltext(jobs[1])
        # Cancelling again finds nothing to do.
        assert repo.cancel("lang", item_ids=["b", "c"]) == Cancellation()

    def test_all_ready_jobs_are_skipped_and_running_ones_left_alone(
        self, clocked: ContractBackend
    ) -> None:
        repo = cancelling(clocked).repo
        jobs = self.ready_jobs(clocked, "abc")
        other = self.ready_elsewhere(clocked)
        running = repo.get_ready_job("lang")
        got = repo.cancel("lang", all_ready=True)
        assert got == Cancellation(sorted([jobs[1].id, jobs[2].id]), [])
        assert repo.get_fulltext(jobs[1].id).last_error == "cancelled: by an operator"
        assert repo.get_fulltext(running.id).status is JobStatus.RUNNING
        assert repo.take_cancel_requests([running]) == {}
        assert repo.get_fulltext(other.id).status is JobStatus.READY

    def test_a_running_job_is_asked_to_stop_under_its_claim_once(
        self, clocked: ContractBackend
    ) -> None:
        repo = cancelling(clocked).repo
        jobs = self.ready_jobs(clocked, "ab")
        running = repo.claim_ready("lang", 2)
        got = repo.cancel("lang", item_ids=["a"], reason="stop it")
        assert got == Cancellation([], [jobs[0].id])
        # The job itself does not move: its worker saves it.
        stored = repo.get_fulltext(jobs[0].id)
        assert (stored.status, stored.version) == (JobStatus.RUNNING, running[0].version)
        assert repo.take_cancel_requests(running) == {jobs[0].id: "cancelled: stop it"}
        # Taken: a request is applied once.
        assert repo.take_cancel_requests(running) == {}
        # The worker saves the job skipped under its claim, as usual.
        running[0].skip(error="cancelled: stop it")
        repo.save_fulltext(running[0])
        assert repo.get_fulltext(jobs[0].id).status is JobStatus.SKIPPED

    def test_a_request_binds_only_the_claim_it_was_made_for(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = cancelling(clocked).repo
        self.ready_jobs(clocked, "a")
        first = repo.get_ready_job("lang")
        repo.cancel("lang", item_ids=["a"])
        # Its claim ends unheard (released for a retry), and a new one begins.
        first.release(clock.now)
        repo.save_fulltext(first)
        second = repo.get_ready_job("lang")
        assert second.claim_token != first.claim_token
        assert repo.take_cancel_requests([second]) == {}
        # Nor can the old claim take it afterwards.
        assert repo.take_cancel_requests([first]) == {}
        # A request found stale is dropped by the next cancel too.
        repo.cancel("lang", item_ids=["a"], reason="again")
        assert repo.take_cancel_requests([second]) == {second.id: "cancelled: again"}

    def test_a_long_list_of_items_is_cancelled_whole(self, clocked: ContractBackend) -> None:
        repo = cancelling(clocked).repo
        names = [f"i{n:05}" for n in range(1_203)]
        jobs = [FullText.new(name, "lang") for name in names[::100]]
        repo.save_many(jobs)
        got = repo.cancel("lang", item_ids=iter(names))
        assert got.skipped == sorted(job.id for job in jobs)
        assert repo.stats("lang", unqueued=False)[0].counts[JobStatus.SKIPPED] == len(jobs)

    def test_a_reason_is_kept_as_an_error_is(self, backend: ContractBackend) -> None:
        repo = cancelling(backend).repo
        (job,) = self.ready_jobs(backend, "a")
        repo.cancel("lang", item_ids=["a"], reason="x\x00" * MAX_ERROR_LENGTH)
        kept = repo.get_fulltext(job.id).last_error
        assert kept is not None
        assert kept.startswith("cancelled: x\\x00")
        assert len(kept) == MAX_ERROR_LENGTH

    def test_a_held_job_is_cancelled_only_as_its_hold_leaves_it(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = cancelling(clocked).repo
        jobs = self.ready_jobs(clocked, "abc")
        got: list[Cancellation] = []
        canceller = threading.Thread(target=lambda: got.append(repo.cancel("lang", all_ready=True)))
        with repo.hold_ready("lang", 2) as held:
            canceller.start()
            # It waits for the hold (its row locks, or SQLite's write lock).
            canceller.join(0.3)
            assert canceller.is_alive(), "the cancel did not wait for the hold"
            held[0].finish(clock.now)
            # held[1] is left running in the block: the hold leaves it ready.
        canceller.join(30)
        assert got == [Cancellation(sorted([jobs[1].id, jobs[2].id]), [])]
        assert repo.get_fulltext(jobs[0].id).status is JobStatus.FINISHED
