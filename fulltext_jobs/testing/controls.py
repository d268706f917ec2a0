"""The contract: what operators set per destination (`pause`, `resume`,
`limit`, `controls`), and that every claim obeys it."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest

from fulltext_jobs import FullText, InvalidInput, JobStatus, NoJobs
from fulltext_jobs.audit import AuditCheck
from fulltext_jobs.domain import KEEP, MAX_ERROR_LENGTH, DestinationControls
from fulltext_jobs.testing._fixtures import BAD_DESTINATIONS, ContractFixtures, Hostile
from fulltext_jobs.testing.backend import ContractBackend, FakeClock


def keeping_controls(backend: ContractBackend) -> ContractBackend:
    """`backend`, if its adapter keeps controls; else the test is skipped."""
    if not backend.capabilities.keeps_controls:
        pytest.skip("the adapter keeps no controls (Capabilities.keeps_controls)")
    return backend


def nothing_claimable(backend: ContractBackend, destination: str = "lang") -> None:
    """Every claim of `destination` hands out nothing."""
    repo = backend.repo
    with pytest.raises(NoJobs):
        repo.get_ready_job(destination)
    assert repo.claim_ready(destination, 10) == []
    with repo.hold_ready(destination, 10) as held:
        assert held == []


class ControlsContract(ContractFixtures):
    """`pause`, `resume` and `controls`: a paused destination hands out no
    job on any claim path; jobs already running finish as usual."""

    @staticmethod
    def queued(backend: ContractBackend, item_ids: str = "abc") -> list[FullText]:
        jobs = [FullText.new(item_id, "lang") for item_id in item_ids]
        backend.repo.save_many(jobs)
        return jobs

    def test_nothing_is_set_until_an_operator_sets_it(self, backend: ContractBackend) -> None:
        repo = keeping_controls(backend).repo
        assert repo.controls("lang") == DestinationControls("lang")
        assert repo.list_controls() == []
        # Resuming what was never paused sets nothing either.
        assert repo.resume("lang") == DestinationControls("lang")
        assert repo.list_controls() == []

    def test_a_paused_destination_hands_out_nothing_until_resumed(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = keeping_controls(clocked).repo
        jobs = self.queued(clocked)
        self.queued_elsewhere(clocked)
        running = repo.get_ready_job("lang")
        paused = repo.pause("lang", reason="the language service is down")
        assert paused == DestinationControls(
            "lang", clock.now, None, "the language service is down"
        )
        assert paused.paused(clock.now + timedelta(days=3650))
        assert repo.controls("lang") == paused
        assert repo.list_controls() == [paused]
        nothing_claimable(clocked)
        # Other destinations go on; the running job finishes as usual.
        assert repo.get_ready_job("other").destination == "other"
        running.finish(clock.now)
        repo.save_fulltext(running)
        assert repo.get_fulltext(jobs[0].id).status is JobStatus.FINISHED

        clock.advance(seconds=5)
        assert repo.resume("lang") == DestinationControls("lang")
        assert repo.controls("lang") == DestinationControls("lang")
        assert [job.id for job in repo.claim_ready("lang", 10)] == [jobs[1].id, jobs[2].id]

    @staticmethod
    def queued_elsewhere(backend: ContractBackend) -> None:
        backend.repo.save_fulltext(FullText.new("a", "other"))

    def test_a_pause_with_an_end_ends_by_itself(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = keeping_controls(clocked).repo
        (job,) = self.queued(clocked, "a")
        until = clock.now + timedelta(seconds=60)
        repo.pause("lang", until=until)
        clock.advance(seconds=59)
        nothing_claimable(clocked)
        clock.advance(seconds=1)
        assert not repo.controls("lang").paused(clock.now)
        assert repo.get_ready_job("lang").id == job.id

    def test_pausing_again_keeps_when_the_pause_began(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = keeping_controls(clocked).repo
        began = clock.now
        repo.pause("lang", until=began + timedelta(hours=1), reason="first")
        clock.advance(minutes=10)
        again = repo.pause("lang", reason="second")
        assert again == DestinationControls("lang", began, None, "second")
        # A pause that had ended starts afresh.
        repo.pause("other", until=clock.now + timedelta(seconds=1))
        clock.advance(seconds=2)
        assert repo.pause("other").paused_at == clock.now

    def test_an_at_least_pause_never_shortens_a_pause_in_force(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = keeping_controls(clocked).repo
        began = clock.now
        soon, later = began + timedelta(seconds=30), began + timedelta(seconds=90)
        # An operator's pause until resumed outlasts any.
        operators = repo.pause("lang", reason="maintenance")
        assert repo.pause("lang", until=soon, reason="429", at_least=True) == operators
        assert repo.controls("lang") == operators
        repo.resume("lang")
        # A timed pause is kept if it lasts as long, lengthened if not.
        repo.pause("lang", until=later, reason="first")
        kept = repo.pause("lang", until=soon, reason="second", at_least=True)
        assert kept == DestinationControls("lang", began, later, "first")
        assert repo.pause("lang", until=later, reason="third", at_least=True) == kept
        clock.advance(seconds=10)
        longer = later + timedelta(seconds=1)
        lengthened = repo.pause("lang", until=longer, reason="fourth", at_least=True)
        assert lengthened == DestinationControls("lang", began, longer, "fourth")
        # Nothing in force: it pauses, as a plain pause; with no end it is one.
        assert repo.pause("other", until=soon, at_least=True).paused_until == soon
        clock.advance(seconds=30)
        assert repo.pause("other", until=later, at_least=True).paused_at == clock.now
        assert repo.pause("other", at_least=True).paused_until is None

    def test_a_pause_must_end_after_now_and_a_refused_one_changes_nothing(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = keeping_controls(clocked).repo
        self.queued(clocked, "a")
        for until in (clock.now, clock.now - timedelta(seconds=1)):
            with pytest.raises(InvalidInput, match="not after now"):
                repo.pause("lang", until=until)
        assert repo.controls("lang") == DestinationControls("lang")
        assert repo.get_ready_job("lang").item_id == "a"

    def test_a_reason_is_kept_as_an_error_is(self, backend: ContractBackend) -> None:
        repo = keeping_controls(backend).repo
        reason = "nul\x00and" + "x" * 20_000
        kept = repo.pause("lang", reason=reason).pause_reason
        assert kept is not None
        assert kept.startswith("nul\\x00and")
        assert len(kept) == MAX_ERROR_LENGTH
        assert repo.controls("lang").pause_reason == kept

    def test_the_audit_reports_a_job_claimed_while_paused(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = keeping_controls(clocked).repo
        early, late = self.queued(clocked, "ab")
        repo.pause("lang")
        # Claimed by code that knows no pause (written as the Go original
        # would: running, no lease), once within the clock tolerance of the
        # pause's start, once well after it.
        for job, minutes in ((early, 1), (late, 10)):
            clock.advance(minutes=minutes)
            claimed = repo.get_fulltext(job.id)
            claimed.start(clock.now)
            repo.save_fulltext(claimed)
        found = [
            (problem.destination, problem.count, problem.examples)
            for problem in repo.audit()
            if problem.check is AuditCheck.CLAIMED_WHILE_PAUSED
        ]
        assert found == [("lang", 1, (late.id,))]
        repo.resume("lang")
        assert AuditCheck.CLAIMED_WHILE_PAUSED not in {p.check for p in repo.audit()}

    def test_a_cap_bounds_every_claim_by_the_jobs_running(self, backend: ContractBackend) -> None:
        repo = keeping_controls(backend).repo
        self.queued(backend, "abcdefg")
        capped = repo.limit("lang", max_running=3)
        assert capped == DestinationControls("lang", max_running=3)
        assert repo.controls("lang") == capped
        assert repo.list_controls() == [capped]
        first = repo.get_ready_job("lang")
        assert len(repo.claim_ready("lang", 10)) == 2  # the cap less the one running
        nothing_claimable(backend)
        first.finish()
        repo.save_fulltext(first)
        assert [job.item_id for job in repo.claim_ready("lang", 10)] == ["d"]
        # Lowered below the jobs running: nothing starts until enough end.
        repo.limit("lang", max_running=1)
        nothing_claimable(backend)
        # Removed: the rest at once.
        assert repo.limit("lang", max_running=None) == DestinationControls("lang")
        assert [job.item_id for job in repo.claim_ready("lang", 10)] == ["e", "f", "g"]

    def test_the_audit_reports_a_destination_over_its_cap(self, backend: ContractBackend) -> None:
        repo = keeping_controls(backend).repo
        self.queued(backend, "abcd")
        running = repo.claim_ready("lang", 3)
        repo.limit("lang", max_running=3)
        assert AuditCheck.OVER_CAP not in {problem.check for problem in repo.audit()}
        repo.limit("lang", max_running=2)  # lowered below the jobs running
        found = [
            (problem.destination, problem.count, problem.examples)
            for problem in repo.audit()
            if problem.check is AuditCheck.OVER_CAP
        ]
        assert found == [("lang", 3, tuple(sorted(job.id for job in running)))]

    def test_held_jobs_count_against_the_cap(self, backend: ContractBackend) -> None:
        repo = keeping_controls(backend).repo
        self.queued(backend, "abcde")
        repo.limit("lang", max_running=3)
        leased = repo.get_ready_job("lang")
        with repo.hold_ready("lang", 10) as held:
            assert [job.item_id for job in held] == ["b", "c"]
            for job in held:
                job.finish()
        leased.finish()
        repo.save_fulltext(leased)
        assert [job.item_id for job in repo.claim_ready("lang", 10)] == ["d", "e"]

    def test_a_pause_and_a_cap_are_kept_apart(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = keeping_controls(clocked).repo
        self.queued(clocked, "abc")
        repo.limit("lang", max_running=2)
        repo.pause("lang", reason="r")
        nothing_claimable(clocked)
        assert repo.controls("lang") == DestinationControls("lang", clock.now, None, "r", 2)
        assert repo.resume("lang") == DestinationControls("lang", max_running=2)
        assert len(repo.claim_ready("lang", 10)) == 2
        assert repo.limit("lang", max_running=None) == DestinationControls("lang")

    @pytest.mark.parametrize("bad", [0, -1, True, 1.5, "3", 2**31, [2]])
    def test_a_bad_cap_raises_invalid_input_and_caps_nothing(
        self, backend: ContractBackend, bad: Hostile
    ) -> None:
        repo = keeping_controls(backend).repo
        with pytest.raises(InvalidInput, match="max_running"):
            repo.limit("lang", max_running=bad)
        assert repo.list_controls() == []

    def test_each_limit_is_set_alone_and_kept_unless_given(self, backend: ContractBackend) -> None:
        repo = keeping_controls(backend).repo
        assert repo.limit("lang", rate=20) == DestinationControls("lang", rate=20.0)
        both = repo.limit("lang", max_running=8, burst=5)
        assert both == DestinationControls("lang", max_running=8, rate=20.0, rate_burst=5)
        assert repo.limit("lang", rate=0.5) == replace(both, rate=0.5)
        assert repo.limit("lang", rate=None) == replace(both, rate=None)
        assert repo.controls("lang") == replace(both, rate=None)
        assert repo.limit("lang", max_running=None, burst=None) == DestinationControls("lang")
        with pytest.raises(InvalidInput, match="nothing to set"):
            repo.limit("lang")

    @pytest.mark.parametrize(
        ("rate", "burst"),
        [
            *((rate, KEEP) for rate in (0, -1, math.nan, math.inf, "20", True)),
            *((KEEP, burst) for burst in (0, 1.5, 10_001, "5")),
            (20, False),
        ],
    )
    def test_a_bad_rate_raises_invalid_input_and_sets_nothing(
        self, backend: ContractBackend, rate: Hostile, burst: Hostile
    ) -> None:
        repo = keeping_controls(backend).repo
        repo.limit("lang", max_running=3)
        with pytest.raises(InvalidInput, match=r"rate|burst"):
            repo.limit("lang", max_running=4, rate=rate, burst=burst)
        assert repo.list_controls() == [DestinationControls("lang", max_running=3)]

    @pytest.mark.parametrize(
        ("until", "reason"),
        [
            ("tomorrow", None),
            (1_800_000_000, None),
            (None, 42),
            (None, b"bytes"),
        ],
    )
    def test_a_bad_pause_raises_invalid_input_and_pauses_nothing(
        self, backend: ContractBackend, until: Hostile, reason: Hostile
    ) -> None:
        repo = keeping_controls(backend).repo
        with pytest.raises(InvalidInput):
            repo.pause("lang", until=until, reason=reason)
        assert repo.list_controls() == []

    @pytest.mark.parametrize("bad", BAD_DESTINATIONS.values(), ids=BAD_DESTINATIONS.keys())
    def test_a_bad_destination_raises_invalid_input(
        self, backend: ContractBackend, bad: Hostile
    ) -> None:
        repo = keeping_controls(backend).repo
        for call in (repo.controls, repo.pause, repo.resume):
            with pytest.raises(InvalidInput):
                call(bad)
        with pytest.raises(InvalidInput):
            repo.limit(bad, max_running=1)
        assert repo.list_controls() == []
