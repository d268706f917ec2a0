"""The contract: a job backed off at its handler's word (`FullText.back_off`,
which a worker applies for `RetryAfter`) is stored on every save path with
its attempt given back and its back-off counted; a retry gives a fresh
budget of back-offs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from fulltext_jobs import FullText, InvalidInput, JobStatus, NoJobs
from fulltext_jobs.domain import MAX_BACKOFFS, stored_form
from fulltext_jobs.testing._fixtures import ContractFixtures, Hostile
from fulltext_jobs.testing.backend import ContractBackend, FakeClock

#: The error a backed-off job records (what `RetryAfter.error` makes).
BACKED_OFF = "backed off: 30 s; 429 from the language service"


class BackOffContract(ContractFixtures):
    """`back_off` outcomes as every save path stores them."""

    @staticmethod
    def queued(backend: ContractBackend, item_ids: str = "abc") -> list[FullText]:
        jobs = [FullText.new(item_id, "lang") for item_id in item_ids]
        backend.repo.save_many(jobs)
        return jobs

    def test_a_backed_off_job_keeps_its_attempts_and_waits_its_time(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        (job,) = self.queued(clocked, "a")
        claimed = repo.get_ready_job("lang")
        assert claimed.attempts == 1
        due = clock.now + timedelta(seconds=30)
        claimed.back_off(clock.now, not_before=due, error=BACKED_OFF)
        repo.save_fulltext(claimed)
        stored = repo.get_fulltext(job.id)
        assert stored == stored_form(claimed)
        assert (stored.status, stored.attempts, stored.backoffs) == (JobStatus.READY, 0, 1)
        assert (stored.not_before, stored.last_error, stored.started) == (due, BACKED_OFF, None)
        clock.advance(seconds=29)
        with pytest.raises(NoJobs):
            repo.get_ready_job("lang")
        clock.advance(seconds=1)
        again = repo.get_ready_job("lang")
        assert (again.id, again.attempts, again.backoffs) == (job.id, 1, 1)
        again.finish(clock.now)
        repo.save_fulltext(again)
        assert repo.get_fulltext(job.id).backoffs == 1

    def test_a_batch_save_and_a_hold_store_the_back_off(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        jobs = self.queued(clocked, "abcd")
        due = clock.now + timedelta(minutes=1)
        claimed = repo.claim_ready("lang", 2)
        for job in claimed:
            job.back_off(clock.now, not_before=due, error=BACKED_OFF)
        claimed[1].backoffs = 7  # a count from earlier back-offs travels as any field
        repo.save_many(claimed)
        with repo.hold_ready("lang", 2) as held:
            held[0].back_off(clock.now, not_before=due, error=BACKED_OFF)
            held[1].finish(clock.now)
        stored = {job.item_id: repo.get_fulltext(job.id) for job in jobs}
        assert {item: (job.status, job.attempts, job.backoffs) for item, job in stored.items()} == {
            "a": (JobStatus.READY, 0, 1),
            "b": (JobStatus.READY, 0, 7),
            "c": (JobStatus.READY, 0, 1),
            "d": (JobStatus.FINISHED, 1, 0),
        }
        assert stored["c"].not_before == due
        assert stored["c"] == held[0]

    def test_a_retry_gives_a_fresh_budget_of_back_offs(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        (job,) = self.queued(clocked, "a")
        claimed = repo.get_ready_job("lang")
        claimed.back_off(clock.now, not_before=clock.now + timedelta(seconds=1), error=BACKED_OFF)
        repo.save_fulltext(claimed)
        clock.advance(seconds=1)
        again = repo.get_ready_job("lang")
        again.fail(clock.now, error="gave up")
        repo.save_fulltext(again)
        assert repo.retry("lang") == 1
        stored = repo.get_fulltext(job.id)
        assert (stored.status, stored.attempts, stored.backoffs) == (JobStatus.READY, 0, 0)

    @pytest.mark.parametrize("backoffs", [-1, MAX_BACKOFFS + 1, True, 1.0, "1", None])
    def test_a_copy_with_a_bad_back_off_count_is_refused_and_changes_nothing(
        self, backend: ContractBackend, backoffs: Hostile
    ) -> None:
        repo = backend.repo
        (job,) = self.queued(backend, "a")
        claimed = repo.get_ready_job("lang")
        with pytest.raises(InvalidInput, match="backoffs"):
            repo.save_fulltext(replace(claimed, backoffs=backoffs))
        with pytest.raises(InvalidInput, match="backoffs"):
            repo.save_many([replace(claimed, backoffs=backoffs)])
        assert repo.get_fulltext(job.id) == claimed
