"""The contract: holding jobs in an open transaction (`hold_ready`)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from fulltext_jobs import (
    FullText,
    InvalidInput,
    JobStatus,
)
from fulltext_jobs.domain import ATTEMPTS_EXHAUSTED_ERROR, MAX_ATTEMPTS
from fulltext_jobs.testing._fixtures import BAD_DESTINATIONS, ContractFixtures, Hostile
from fulltext_jobs.testing.backend import ContractBackend, FakeClock


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

    def test_delayed_jobs_that_came_due_are_held_in_their_place_among_due_ones(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        delays = {"a": None, "b": 20, "c": None, "d": 10, "e": None, "f": 3600}
        jobs = []
        for item_id, delay in delays.items():
            job = FullText.new(item_id, "lang")
            job.not_before = None if delay is None else clock.now + timedelta(seconds=delay)
            jobs.append(job)
        clocked.repo.save_many(jobs)
        clock.advance(seconds=15)
        with clocked.repo.hold_ready("lang", 3) as held:
            assert [job.item_id for job in held] == ["a", "c", "d"]
            for job in held:
                job.finish(clock.now)
        clock.advance(seconds=45)
        with clocked.repo.hold_ready("lang", 10) as held:
            # f is not due for an hour.
            assert [job.item_id for job in held] == ["b", "e"]

    def test_a_job_at_the_bound_is_failed_and_the_next_one_held(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        jobs = self.queued(clocked, "pab")
        poison = replace(jobs[0], attempts=MAX_ATTEMPTS, version=1)
        clocked.repo.save_fulltext(poison)
        with clocked.repo.hold_ready("lang", 1) as held:
            assert [(job.item_id, job.attempts) for job in held] == [("a", 1)]
            held[0].finish(clock.now)
        stored = clocked.repo.get_fulltext(poison.id)
        assert (stored.status, stored.attempts, stored.finished) == (
            JobStatus.FAILED,
            MAX_ATTEMPTS,
            clock.now,
        )
        assert stored.last_error == ATTEMPTS_EXHAUSTED_ERROR
        assert clocked.repo.get_fulltext(jobs[1].id).status is JobStatus.FINISHED
        with clocked.repo.hold_ready("lang", 5) as held:
            assert [job.item_id for job in held] == ["b"]

    def test_a_block_that_raises_rolls_back_the_failing_of_a_job_at_the_bound_too(
        self, clocked: ContractBackend
    ) -> None:
        jobs = self.queued(clocked, "pa")
        poison = replace(jobs[0], attempts=MAX_ATTEMPTS, version=1)
        clocked.repo.save_fulltext(poison)

        def broken_block() -> None:
            with clocked.repo.hold_ready("lang", 2) as held:
                assert [job.item_id for job in held] == ["a"]
                raise RuntimeError("the handler broke")

        with pytest.raises(RuntimeError):
            broken_block()
        assert clocked.repo.get_fulltext(poison.id) == poison
        assert [job.item_id for job in clocked.repo.claim_ready("lang", 2)] == ["a"]
        assert clocked.repo.get_fulltext(poison.id).last_error == ATTEMPTS_EXHAUSTED_ERROR

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
