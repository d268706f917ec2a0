"""The contract: claims, leases, rescues, retries, and saves as compare-and-swap."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import ClassVar

import pytest

from fulltext_jobs import (
    MAX_ERROR_LENGTH,
    Action,
    DuplicateJob,
    FullText,
    InvalidInput,
    JobNotFound,
    JobStatus,
    LostClaim,
    NoJobs,
    StaleJob,
    StaleJobs,
)
from fulltext_jobs.domain import ATTEMPTS_EXHAUSTED_ERROR, MAX_ATTEMPTS, RESCUED_ERROR
from fulltext_jobs.testing._fixtures import ContractFixtures, Hostile, job_in
from fulltext_jobs.testing.backend import ContractBackend, FakeClock


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

    @staticmethod
    def queued_with_delays(
        backend: ContractBackend, clock: FakeClock, delays: dict[str, timedelta | None]
    ) -> None:
        """Store a ready job per item of `delays`, in its order, each
        delayed from the clock's moment by its value (None: due)."""
        jobs = []
        for item_id, delay in delays.items():
            job = FullText.new(item_id, "lang")
            job.not_before = None if delay is None else clock.now + delay
            jobs.append(job)
        backend.repo.save_many(jobs)

    #: Due jobs (a, c, e, g) and delayed ones that come due out of their
    #: enqueue order (b after d) or not at all (f) within a minute.
    INTERLEAVED: ClassVar[dict[str, timedelta | None]] = {
        "a": None,
        "b": timedelta(seconds=20),
        "c": None,
        "d": timedelta(seconds=10),
        "e": None,
        "f": timedelta(hours=1),
        "g": None,
    }

    def test_delayed_jobs_that_came_due_keep_their_place_among_due_ones(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        self.queued_with_delays(clocked, clock, self.INTERLEAVED)
        clock.advance(seconds=15)
        # d is due, b not yet.
        assert [clocked.repo.get_ready_job("lang").item_id for _ in range(3)] == ["a", "c", "d"]
        clock.advance(seconds=45)
        assert [job.item_id for job in clocked.repo.claim_ready("lang", 2)] == ["b", "e"]
        assert [job.item_id for job in clocked.repo.claim_ready("lang", 5)] == ["g"]
        # f is not due for an hour: never handed out before.
        assert clocked.repo.claim_ready("lang", 5) == []
        with pytest.raises(NoJobs):
            clocked.repo.get_ready_job("lang")
        assert clocked.repo.next_due("lang") == clock.now + timedelta(minutes=59)

    def test_one_batch_claim_interleaves_due_and_delayed_jobs_by_enqueue_order(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        self.queued_with_delays(clocked, clock, self.INTERLEAVED)
        clock.advance(minutes=1)
        claimed = clocked.repo.claim_ready("lang", 10)
        assert [job.item_id for job in claimed] == list("abcdeg")
        assert {job.not_before for job in claimed} == {None}

    @pytest.mark.parametrize("spread", [0, 1], ids=["due-together", "due-in-order"])
    def test_many_delayed_jobs_that_came_due_are_all_claimed_in_enqueue_order(
        self, clocked: ContractBackend, clock: FakeClock, spread: int
    ) -> None:
        # More of them than a store may look ahead at in one claim (the SQL
        # adapter's look-ahead is 100), behind them due jobs and one that
        # stays delayed.
        delays: dict[str, timedelta | None] = {
            f"d{n:03}": timedelta(seconds=1 + n * spread) for n in range(250)
        }
        delays |= {"later": timedelta(days=1), "x": None, "y": None}
        self.queued_with_delays(clocked, clock, delays)
        assert [job.item_id for job in clocked.repo.claim_ready("lang", 5)] == ["x", "y"]
        clock.advance(minutes=5)
        order = [clocked.repo.get_ready_job("lang").item_id for _ in range(3)]
        while batch := clocked.repo.claim_ready("lang", 7):
            order += [job.item_id for job in batch]
        assert order == [f"d{n:03}" for n in range(250)]
        assert clocked.repo.next_due("lang") == clock.now + timedelta(days=1) - timedelta(minutes=5)

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


class AttemptsBoundContract(ContractFixtures):
    """A job at `MAX_ATTEMPTS`, whose next attempt no store could count, is
    failed by the claim that finds it, which hands out the next job."""

    @staticmethod
    def poisoned(backend: ContractBackend, items: str = "pab", poison: str = "p") -> None:
        jobs = [FullText.new(item_id, "lang") for item_id in items]
        for job in jobs:
            if job.item_id in poison:
                job.attempts = MAX_ATTEMPTS
        backend.repo.save_many(jobs)

    @staticmethod
    def assert_failed_by_the_claim(
        backend: ContractBackend, item_id: str, clock: FakeClock
    ) -> None:
        (stored,) = [job for job in backend.repo.list_jobs("lang") if job.item_id == item_id]
        assert (stored.status, stored.attempts, stored.finished) == (
            JobStatus.FAILED,
            MAX_ATTEMPTS,
            clock.now,
        )
        assert stored.last_error == ATTEMPTS_EXHAUSTED_ERROR
        assert (stored.claim_token, stored.lease_expires, stored.not_before) == (None, None, None)

    def test_get_ready_job_fails_a_job_at_the_bound_and_hands_out_the_next(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        self.poisoned(clocked)
        job = clocked.repo.get_ready_job("lang")
        assert (job.item_id, job.attempts, job.status) == ("a", 1, JobStatus.RUNNING)
        self.assert_failed_by_the_claim(clocked, "p", clock)
        assert clocked.repo.get_ready_job("lang").item_id == "b"

    def test_get_ready_job_with_only_jobs_at_the_bound_fails_them_all(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        self.poisoned(clocked, "pq", poison="pq")
        with pytest.raises(NoJobs):
            clocked.repo.get_ready_job("lang")
        for item_id in "pq":
            self.assert_failed_by_the_claim(clocked, item_id, clock)

    @pytest.mark.parametrize("n", [1, 2, 5])
    def test_claim_ready_fails_jobs_at_the_bound_and_hands_out_the_next(
        self, clocked: ContractBackend, clock: FakeClock, n: int
    ) -> None:
        self.poisoned(clocked, "paqbc", poison="pq")
        claimed = clocked.repo.claim_ready("lang", n)
        assert [job.item_id for job in claimed] == list("abc")[:n]
        assert {job.status for job in claimed} == {JobStatus.RUNNING}
        # Each job at the bound ahead of the last one handed out is failed.
        for item_id in "pq"[:n]:
            self.assert_failed_by_the_claim(clocked, item_id, clock)

    def test_a_job_one_below_the_bound_is_claimed_once_more_then_failed(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        job = FullText.new("p", "lang")
        job.attempts = MAX_ATTEMPTS - 1
        clocked.repo.save_fulltext(job)
        last = clocked.repo.get_ready_job("lang")
        assert last.attempts == MAX_ATTEMPTS
        last.release(clock.now)
        clocked.repo.save_fulltext(last)
        assert clocked.repo.claim_ready("lang", 3) == []
        self.assert_failed_by_the_claim(clocked, "p", clock)

    def test_a_job_past_the_bound_is_refused(self, backend: ContractBackend) -> None:
        job = FullText.new("p", "lang")
        job.attempts = MAX_ATTEMPTS + 1
        with pytest.raises(InvalidInput):
            backend.repo.save_fulltext(job)
        with pytest.raises(JobNotFound):
            backend.repo.get_fulltext(job.id)


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
