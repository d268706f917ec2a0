"""The contract: when a job became ready (`FullText.ready_at`) on every
path that makes one ready, and the lag read from it (`Repository.lag`,
`stats`), exact on the repository's clock."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from fulltext_jobs import FullText, InvalidInput, JobStatus
from fulltext_jobs.testing._fixtures import BAD_DESTINATIONS, ContractFixtures, Hostile
from fulltext_jobs.testing.backend import ContractBackend, FakeClock


def ready_times(backend: ContractBackend, destination: str = "lang") -> dict[str, datetime | None]:
    """Each stored job of `destination`, by item id: its `ready_at`."""
    return {job.item_id: job.ready_at for job in backend.repo.list_jobs(destination)}


class ReadyTimeContract(ContractFixtures):
    """`ready_at` is stamped with the repository's clock on every move to
    ready, a claim hands it out, and the lag is the oldest due job's wait."""

    def test_each_way_of_making_jobs_records_when_they_became_ready(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        clocked.add_items(["a", "b", "c"])
        start = clock.now
        assert repo.create_job_for_unqueued("lang").ready_at == start
        clock.advance(seconds=5)
        assert repo.enqueue_unqueued("lang", limit=1) == 1
        clock.advance(seconds=5)
        assert repo.enqueue_new("lang") == 1
        assert ready_times(clocked) == {
            "a": start,
            "b": start + timedelta(seconds=5),
            "c": start + timedelta(seconds=10),
        }
        # A job the caller made is stored with the ready time it was made with.
        made = FullText.new("d", "lang", now=start - timedelta(hours=1))
        repo.save_fulltext(made)
        repo.save_many([FullText.new("e", "lang", now=start)])
        assert repo.get_fulltext(made.id).ready_at == start - timedelta(hours=1)
        assert ready_times(clocked)["e"] == start

    def test_a_claim_hands_out_the_ready_time_and_so_the_wait(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        start = clock.now
        repo.save_many([FullText.new(item, "lang", now=start) for item in "abc"])
        clock.advance(seconds=7, microseconds=5)
        one = repo.get_ready_job("lang")
        assert (one.ready_at, one.started) == (start, clock.now)
        assert one.waited() == timedelta(seconds=7, microseconds=5)
        clock.advance(seconds=1)
        [two] = repo.claim_ready("lang", 1)
        assert two.waited() == timedelta(seconds=8, microseconds=5)
        with repo.hold_ready("lang", 1) as held:
            assert [job.ready_at for job in held] == [start]
            held[0].finish(clock.now)
        # The ready time stays through the run, so the wait can be read later.
        assert repo.get_fulltext(held[0].id).ready_at == start

    def test_a_release_is_ready_from_then_or_from_its_not_before(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        repo.save_many([FullText.new(item, "lang", now=clock.now) for item in "abcd"])
        now_then, later, past, held = repo.claim_ready("lang", 4)
        clock.advance(seconds=3)
        now_then.release(clock.now)
        later.release(clock.now, not_before=clock.now + timedelta(seconds=30))
        past.release(clock.now, not_before=clock.now - timedelta(seconds=30))
        repo.save_many([now_then, later, past])
        assert ready_times(clocked) == {
            "a": clock.now,
            "b": clock.now + timedelta(seconds=30),
            "c": clock.now,
            "d": held.ready_at,
        }
        # Given back in a hold (the transaction mode) as well.
        clock.advance(seconds=40)
        with repo.hold_ready("lang", 1) as jobs:
            jobs[0].release(clock.now, not_before=clock.now + timedelta(seconds=9))
        assert repo.get_fulltext(jobs[0].id).ready_at == clock.now + timedelta(seconds=9)

    def test_a_retry_and_a_rescue_are_ready_from_when_they_happen(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        repo.save_many([FullText.new(item, "lang", now=clock.now) for item in "ab"])
        failed, expired = repo.claim_ready("lang", 2)
        failed.fail(clock.now, error="boom")
        repo.save_fulltext(failed)
        clock.advance(seconds=61)  # past the lease
        assert repo.retry("lang") == 1
        assert repo.rescue_expired() == 1
        rescued = repo.get_fulltext(expired.id)
        assert (rescued.status, rescued.ready_at) == (JobStatus.READY, clock.now)
        assert repo.get_fulltext(failed.id).ready_at == clock.now

    def test_a_claim_without_a_lease_released_is_ready_from_its_release(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        # What the Go original's claims leave: running, with no lease.
        job = FullText.new("a", "lang", now=clock.now - timedelta(hours=2))
        job.start(clock.now - timedelta(hours=1))
        clocked.repo.save_fulltext(job)
        assert clocked.repo.release_unleased(timedelta(minutes=30)) == [job.id]
        assert clocked.repo.get_fulltext(job.id).ready_at == clock.now

    def test_the_lag_is_the_oldest_due_jobs_wait_exactly(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        assert repo.lag("lang") is None
        start = clock.now
        repo.save_many(
            [
                FullText.new("a", "lang", now=start),
                FullText.new("b", "lang", now=start + timedelta(seconds=1)),
                FullText.new("z", "other", now=start + timedelta(seconds=2)),
            ]
        )
        clock.advance(seconds=90, microseconds=250)
        assert repo.lag("lang") == timedelta(seconds=90, microseconds=250)
        assert repo.lag("other") == timedelta(seconds=88, microseconds=250)
        assert {s.destination: s.lag for s in repo.stats(unqueued=False)} == {
            "lang": timedelta(seconds=90, microseconds=250),
            "other": timedelta(seconds=88, microseconds=250),
        }
        # A job given back for later counts from its not_before, once due.
        first = repo.get_ready_job("lang")
        assert repo.lag("lang") == timedelta(seconds=89, microseconds=250)
        first.release(clock.now, not_before=clock.now + timedelta(seconds=20))
        repo.save_fulltext(first)
        second = repo.get_ready_job("lang")
        assert repo.lag("lang") is None  # only a job not due yet is ready
        clock.advance(seconds=25)
        assert repo.lag("lang") == timedelta(seconds=5)
        second.finish(clock.now)
        repo.save_fulltext(second)
        repo.get_ready_job("lang")
        assert repo.lag("lang") is None
        assert repo.stats("lang", unqueued=False)[0].lag is None

    def test_the_lag_is_never_below_zero_nor_of_a_job_not_ready(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        # A job made on a clock ahead of the repository's (another machine).
        repo.save_fulltext(FullText.new("a", "lang", now=clock.now + timedelta(seconds=5)))
        assert repo.lag("lang") is None
        clock.advance(seconds=6)
        assert repo.lag("lang") == timedelta(seconds=1)

    @pytest.mark.parametrize("name", sorted(BAD_DESTINATIONS))
    def test_lag_rejects_a_bad_destination(self, backend: ContractBackend, name: str) -> None:
        bad: Hostile = BAD_DESTINATIONS[name]
        with pytest.raises(InvalidInput):
            backend.repo.lag(bad)

    @pytest.mark.parametrize(
        "ready_at",
        [datetime(2026, 1, 1), "2026-01-01T00:00:00+00:00", 0],  # noqa: DTZ001 - naive on purpose
        ids=["naive", "text", "number"],
    )
    def test_a_bad_ready_time_is_refused_before_anything_is_written(
        self, backend: ContractBackend, ready_at: Hostile
    ) -> None:
        job = FullText.new("a", "lang")
        job.ready_at = ready_at
        with pytest.raises(InvalidInput):
            backend.repo.save_fulltext(job)
        with pytest.raises(InvalidInput):
            backend.repo.save_many([job])
        with pytest.raises(InvalidInput):
            FullText.new("a", "lang", now=ready_at)
        assert backend.repo.list_jobs("lang") == []
