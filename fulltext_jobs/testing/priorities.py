"""The contract: job priorities. Every claim path (`get_ready_job`,
`claim_ready`, `hold_ready`, under a cap too) takes the highest priority
first, then the oldest; every enqueue sets it; `prioritize` changes it for
ready jobs; nothing else in a job's life does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fulltext_jobs import FullText
from fulltext_jobs.domain import MAX_PRIORITY, MIN_PRIORITY
from fulltext_jobs.testing._fixtures import ContractFixtures
from fulltext_jobs.testing.backend import ContractBackend, FakeClock

#: Jobs by item id, with their priorities, in enqueue order: the claim
#: order is `CLAIM_ORDER`.
MIXED = {"a": 0, "b": 5, "c": -1, "d": 5, "e": MAX_PRIORITY, "f": 0, "g": MIN_PRIORITY, "h": 2}
CLAIM_ORDER = "ebdhafcg"

_MINUTE = timedelta(minutes=1)


def prioritizing(backend: ContractBackend) -> ContractBackend:
    """`backend`, if its adapter changes priorities; else the test is skipped."""
    if not backend.capabilities.prioritizes:
        pytest.skip("the adapter cannot change priorities (Capabilities.prioritizes)")
    return backend


def enqueue_mixed(backend: ContractBackend, destination: str = "lang") -> list[FullText]:
    """`MIXED`'s jobs of `destination`, saved one by one in its order."""
    jobs = [FullText.new(item, destination, priority=p) for item, p in MIXED.items()]
    for job in jobs:
        backend.repo.save_fulltext(job)
    return jobs


def items(jobs: list[FullText]) -> str:
    return "".join(job.item_id for job in jobs)


class PriorityContract(ContractFixtures):
    """Claims in priority order, then enqueue order, on every path."""

    def test_one_claim_at_a_time_takes_the_highest_priority_then_the_oldest(
        self, backend: ContractBackend
    ) -> None:
        enqueue_mixed(backend)
        claimed = [backend.repo.get_ready_job("lang") for _ in MIXED]
        assert items(claimed) == CLAIM_ORDER
        assert [job.priority for job in claimed] == [MIXED[job.item_id] for job in claimed]

    def test_batch_claims_and_holds_return_the_same_order(self, backend: ContractBackend) -> None:
        repo = backend.repo
        enqueue_mixed(backend)
        enqueue_mixed(backend, "other")
        first = repo.claim_ready("lang", 3)
        assert items(first) == CLAIM_ORDER[:3]
        assert items(repo.claim_ready("lang", 10)) == CLAIM_ORDER[3:]
        with repo.hold_ready("other", 5) as held:
            assert items(held) == CLAIM_ORDER[:5]
            for job in held:
                job.finish()
        assert items(repo.claim_ready("other", 10)) == CLAIM_ORDER[5:]

    def test_a_delayed_job_keeps_its_priority_and_comes_due_in_its_place(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = clocked.repo
        enqueue_mixed(clocked)
        top = repo.get_ready_job("lang")  # e, the highest priority
        top.release(clock.now, not_before=clock.now + _MINUTE)
        repo.save_fulltext(top)
        stored = repo.get_fulltext(top.id)
        assert (stored.priority, stored.not_before) == (MAX_PRIORITY, clock.now + _MINUTE)
        # Not yet due: the next ones go first.
        assert items(repo.claim_ready("lang", 2)) == "bd"
        clock.advance(seconds=61)
        # Due: first again, ahead of every lower priority.
        assert items(repo.claim_ready("lang", 2)) == "eh"
        with repo.hold_ready("lang", 10) as held:
            assert items(held) == "afcg"

    def test_under_a_cap_the_claims_take_the_highest_priorities(
        self, backend: ContractBackend
    ) -> None:
        repo = backend.repo
        if not backend.capabilities.keeps_controls:
            pytest.skip("the adapter keeps no controls (Capabilities.keeps_controls)")
        enqueue_mixed(backend)
        repo.limit("lang", max_running=3)
        assert items(repo.claim_ready("lang", 10)) == CLAIM_ORDER[:3]
        repo.limit("lang", max_running=5)
        assert items([repo.get_ready_job("lang")]) == CLAIM_ORDER[3]
        with repo.hold_ready("lang", 10) as held:
            assert items(held) == CLAIM_ORDER[4]

    def test_every_enqueue_sets_the_priority_and_claims_follow_it(
        self, backend: ContractBackend
    ) -> None:
        repo = backend.repo
        backend.add_items(["i1", "i2", "i3", "i4"])
        assert repo.create_job_for_unqueued("lang", priority=-3).item_id == "i1"
        assert repo.enqueue_unqueued("lang", limit=1, priority=7) == 1  # i2
        assert repo.enqueue_new("lang", priority=2) == 2  # i3, i4
        assert repo.create_job_for_unqueued("other").priority == 0  # the default
        listed = {job.item_id: job.priority for job in repo.list_jobs("lang")}
        assert listed == {"i1": -3, "i2": 7, "i3": 2, "i4": 2}
        assert items(repo.claim_ready("lang", 4)) == "i2i3i4i1"

    def test_prioritize_changes_ready_jobs_only_and_retries_keep_the_priority(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = prioritizing(clocked).repo
        jobs = {job.item_id: job for job in enqueue_mixed(clocked)}
        running = repo.get_ready_job("lang")  # e
        delayed = repo.get_ready_job("lang")  # b
        delayed.release(clock.now, not_before=clock.now + _MINUTE)
        repo.save_fulltext(delayed)
        before = {job.item_id: repo.get_fulltext(job.id) for job in jobs.values()}

        changed = repo.prioritize("lang", item_ids=["a", "b", "e", "g", "zz"], priority=9)
        assert changed == 3  # a, b (ready, delayed) and g; e runs; zz has no job
        after = {job.item_id: repo.get_fulltext(job.id) for job in jobs.values()}
        for item in "abg":
            assert after[item].priority == 9
            assert after[item].version == before[item].version + 1
        assert after["b"].not_before == before["b"].not_before  # the delay stays
        for item in "cdefh":
            assert after[item] == before[item]
        assert items(repo.claim_ready("lang", 3)) == "agd"  # b is not due yet

        running.fail(error="boom")
        repo.save_fulltext(running)
        assert repo.retry("lang", item_ids=["e"]) == 1
        assert repo.get_fulltext(running.id).priority == MAX_PRIORITY
        assert repo.get_ready_job("lang").item_id == "e"
