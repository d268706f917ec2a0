"""The contract: dependencies between destinations (`depend`, `undepend`,
`dependencies`). An item gets a job for a destination only once its job of
every upstream has a status the dependency names; every way of making jobs
obeys that, and an upstream job that reaches a named status (by any path)
lets `enqueue_new` of the destination queue its item."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from fulltext_jobs import (
    MAX_ATTEMPTS,
    AllQueued,
    Dependency,
    DuplicateJob,
    FullText,
    InvalidInput,
    JobStatus,
    NotSupported,
)
from fulltext_jobs.pipeline import MAX_UPSTREAMS
from fulltext_jobs.repository import Repository
from fulltext_jobs.testing._fixtures import BAD_DESTINATIONS, ContractFixtures
from fulltext_jobs.testing.backend import ContractBackend, FakeClock

S = JobStatus
#: The upstreams and the destination that follows them.
UP, OTHER_UP, DOWN = "fetch", "quote", "lang"
FINISHED = frozenset({S.FINISHED})
#: Longer than any sweep the tests let fall due by themselves.
HOUR = timedelta(hours=1)

#: Declarations every adapter refuses with `InvalidInput`, changing nothing.
BAD_DECLARATIONS: dict[str, Callable[..., object]] = {
    **{
        f"destination-{name}": lambda repo, bad=bad: repo.depend(bad, on=UP)
        for name, bad in BAD_DESTINATIONS.items()
    },
    **{
        f"on-{name}": lambda repo, bad=bad: repo.depend(DOWN, on=bad)
        for name, bad in {
            **BAD_DESTINATIONS,
            "none": None,
            "nothing": [],
            "bytes": b"fetch",
            "a-bad-one-among-good": [UP, ""],
            "int-among-good": [UP, 7],
            "itself": DOWN,
            "itself-among-others": [UP, DOWN],
            "too-many": [f"u{n}" for n in range(MAX_UPSTREAMS + 1)],
        }.items()
    },
    **{
        f"statuses-{name}": lambda repo, bad=bad: repo.depend(DOWN, on=UP, statuses=bad)
        for name, bad in {
            "ready": ["ready"],
            "running": [S.RUNNING],
            "among-good": ["finished", "running"],
            "unknown": ["done"],
            "str-unknown": "finished,done",
            "none-inside": [None],
            "nothing": [],
            "empty-str": "",
            "int": 3,
        }.items()
    },
    **{
        f"undepend-on-{name}": lambda repo, bad=bad: repo.undepend(DOWN, on=bad)
        for name, bad in {
            "empty": "",
            "nothing": [],
            "int": 7,
            "nul": "fetch\x00",
            "itself": DOWN,
        }.items()
    },
    "undepend-destination-nul": lambda repo: repo.undepend("lang\x00"),
    "dependencies-destination-int": lambda repo: repo.dependencies(42),
}


def depending(backend: ContractBackend) -> ContractBackend:
    """`backend`, if its adapter keeps dependencies; else the test is skipped."""
    if not backend.capabilities.keeps_dependencies:
        pytest.skip("the adapter keeps no dependencies (Capabilities.keeps_dependencies)")
    return backend


def queue(backend: ContractBackend, destination: str, item_ids: str) -> dict[str, FullText]:
    """Ready jobs of `destination` for the items (one letter each), by item."""
    jobs = [FullText.new(item_id, destination) for item_id in item_ids]
    backend.repo.save_many(jobs)
    return {job.item_id: job for job in jobs}


def end(repo: Repository, job: FullText, status: JobStatus) -> None:
    """The stored job, loaded and moved to `status` (through `running` for a
    finish or a failure), saved."""
    stored = repo.get_fulltext(job.id)
    if status is S.SKIPPED:
        stored.skip(error="nothing to do")
    else:
        stored.start()
        stored.finish() if status is S.FINISHED else stored.fail(error="boom")
    repo.save_fulltext(stored)


def jobs_of(repo: Repository, destination: str) -> str:
    """The items of `destination`'s jobs, in item order."""
    return "".join(job.item_id for job in repo.list_jobs(destination))


class DependencyContract(ContractFixtures):
    """`depend`, `undepend` and `dependencies`, and the jobs they let be
    made."""

    # --- declarations ---------------------------------------------------------

    def test_declarations_round_trip(self, backend: ContractBackend) -> None:
        repo = depending(backend).repo
        assert repo.dependencies() == []
        assert repo.depend(DOWN, on=UP) == [Dependency(DOWN, UP, FINISHED)]
        # A second declaration adds an upstream and replaces the statuses of
        # one already declared; names come once each, from any iterable.
        both = frozenset({S.FINISHED, S.SKIPPED})
        declared = repo.depend(DOWN, on=iter([OTHER_UP, UP, UP]), statuses=["skipped", S.FINISHED])
        assert declared == [Dependency(DOWN, UP, both), Dependency(DOWN, OTHER_UP, both)]
        assert repo.depend("index", on=(DOWN,), statuses="failed, finished") == [
            Dependency("index", DOWN, frozenset({S.FAILED, S.FINISHED}))
        ]
        everything = [*declared, *repo.dependencies("index")]
        assert repo.dependencies() == sorted(everything)
        assert repo.dependencies(DOWN) == declared
        assert repo.dependencies(UP) == []
        # Dropping one upstream, one never declared, then the rest.
        assert repo.undepend(DOWN, on=[OTHER_UP, "never"]) == [Dependency(DOWN, UP, both)]
        assert repo.undepend(DOWN, on="never") == [Dependency(DOWN, UP, both)]
        assert repo.undepend(DOWN) == []
        assert repo.undepend(DOWN) == []
        assert repo.dependencies() == repo.dependencies("index")
        assert len(repo.dependencies()) == 1

    def test_a_bad_declaration_raises_invalid_input_and_changes_nothing(
        self, backend: ContractBackend
    ) -> None:
        repo = depending(backend).repo
        repo.depend(DOWN, on=[UP, OTHER_UP], statuses=["finished", "skipped"])
        before = repo.dependencies()
        accepted = []
        for name, call in BAD_DECLARATIONS.items():
            try:
                call(repo)
            except InvalidInput:
                pass
            else:
                accepted.append(name)
            assert repo.dependencies() == before, name
        assert accepted == []

    def test_a_cycle_is_refused_and_changes_nothing(self, backend: ContractBackend) -> None:
        repo = depending(backend).repo
        repo.depend(DOWN, on=UP)
        repo.depend("index", on=DOWN)
        before = repo.dependencies()
        for destination, on in (
            (UP, DOWN),  # directly
            (UP, "index"),  # through lang
            (UP, ["other", "index"]),  # the whole declaration, not only the bad upstream
        ):
            with pytest.raises(InvalidInput, match="cycle"):
                repo.depend(destination, on=on)
            assert repo.dependencies() == before
        # Declaring an edge again is no cycle; another path to the same
        # upstream is none either.
        repo.depend(DOWN, on=UP, statuses=["skipped"])
        repo.depend("index", on=UP)
        # Once the path is cut, the edge it barred may be declared.
        repo.undepend("index", on=UP)
        repo.undepend(DOWN)
        assert repo.depend(UP, on="index") == [Dependency(UP, "index", FINISHED)]

    def test_an_adapter_that_keeps_none_says_so(self, backend: ContractBackend) -> None:
        repo = backend.repo
        if backend.capabilities.keeps_dependencies:
            assert repo.dependencies() == []
            assert repo.undepend(DOWN) == []
            return
        calls: list[Callable[[], object]] = [
            lambda: repo.depend(DOWN, on=UP),
            lambda: repo.undepend(DOWN),
            repo.dependencies,
        ]
        for call in calls:
            with pytest.raises(NotSupported):
                call()
        # Jobs are made as ever.
        backend.add_items(["a"])
        assert repo.enqueue_new(DOWN) == 1

    # --- which items may get a job --------------------------------------------

    def test_no_way_of_making_jobs_makes_one_before_the_upstream_is_done(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = depending(clocked).repo
        repo.depend(DOWN, on=UP)
        clocked.add_items(["a", "b", "c", "d"])
        # a's upstream job is ready, b's running, c's failed; d has none.
        upstream = queue(clocked, UP, "abc")
        repo.claim_ready(UP, 1)
        end(repo, upstream["c"], S.FAILED)
        with pytest.raises(AllQueued):
            repo.create_job_for_unqueued(DOWN)
        assert repo.enqueue_unqueued(DOWN) == 0
        assert repo.enqueue_new(DOWN) == 0  # the first call sweeps
        clock.advance(hours=2)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0  # a sweep due
        assert repo.count_unqueued(DOWN) == 0
        assert repo.stats(DOWN)[0].unqueued == 0
        assert jobs_of(repo, DOWN) == ""
        # The upstream itself gets its jobs as ever.
        assert repo.enqueue_unqueued(UP) == 1
        assert repo.count_unqueued(UP) == 0

    def test_finishing_an_upstream_job_lets_enqueue_new_queue_that_item(
        self, clocked: ContractBackend
    ) -> None:
        repo = depending(clocked).repo
        clocked.add_items(["a", "b", "c"])
        assert repo.enqueue_unqueued(UP) == 3
        repo.depend(DOWN, on=UP)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        (claimed,) = repo.claim_ready(UP, 1)  # a
        claimed.finish()
        repo.save_fulltext(claimed)
        assert repo.count_unqueued(DOWN) == 1
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR, priority=4) == 1
        (job,) = repo.list_jobs(DOWN)
        assert (job.item_id, job.status, job.priority) == ("a", S.READY, 4)
        # Taken: the next call finds nothing.
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        assert repo.count_unqueued(DOWN) == 0
        assert repo.get_ready_job(DOWN).item_id == "a"

    def test_every_way_an_upstream_job_ends_lets_its_item_follow(
        self, clocked: ContractBackend, clock: FakeClock
    ) -> None:
        repo = depending(clocked).repo
        clocked.add_items(list("abcdefg"))
        upstream = queue(clocked, UP, "abcdef")
        repo.depend(DOWN, on=UP, statuses=["finished", "failed", "skipped"])
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        # a: held and finished in the block; b: claimed, its lease left to
        # run out, and failed by a rescue.
        with repo.hold_ready(UP, 1) as held:
            held[0].finish()
        (lost,) = repo.claim_ready(UP, 1)
        assert lost.item_id == "b"
        # c: saved alone; d and e: in one batch.
        end(repo, upstream["c"], S.FINISHED)
        d, e = (repo.get_fulltext(upstream[item].id) for item in "de")
        d.skip()
        e.start()
        e.fail(error="boom")
        repo.save_many([d, e])
        # f: cancelled while ready (skipped), where the adapter cancels.
        if clocked.capabilities.cancels:
            repo.cancel(UP, item_ids=["f"], reason="not wanted")
        else:
            end(repo, upstream["f"], S.SKIPPED)
        # g: a new job saved already finished.
        finished = FullText.new("g", UP)
        finished.start()
        finished.finish()
        repo.save_fulltext(finished)
        clock.advance(seconds=61)
        assert repo.rescue_expired(UP, max_attempts=1) == 1
        assert repo.get_fulltext(lost.id).status is S.FAILED
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 7
        assert jobs_of(repo, DOWN) == "abcdefg"

    def test_a_job_a_claim_fails_at_the_bound_lets_its_item_follow(
        self, clocked: ContractBackend
    ) -> None:
        repo = depending(clocked).repo
        clocked.add_items(["a", "b", "c"])
        repo.depend(DOWN, on=UP, statuses=["failed"])
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        # Jobs whose attempts no claim can count: each claim path fails
        # them (a hold in its transaction, which an exception rolls back).
        spent = [FullText.new(item_id, UP) for item_id in "abc"]
        for job in spent:
            job.attempts = MAX_ATTEMPTS
        repo.save_many(spent)

        def broken_block() -> None:
            with repo.hold_ready(UP, 1) as held:
                assert held == []
                raise RuntimeError("the handler broke")

        with pytest.raises(RuntimeError):
            broken_block()
        assert repo.get_fulltext(spent[0].id).status is S.READY
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        with repo.hold_ready(UP, 1) as held:
            assert held == []
        assert repo.claim_ready(UP, 1) == []
        assert [repo.get_fulltext(job.id).status for job in spent] == [S.FAILED] * 3
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 3
        assert jobs_of(repo, DOWN) == "abc"

    def test_a_batch_refused_whole_lets_no_item_follow(self, clocked: ContractBackend) -> None:
        repo = depending(clocked).repo
        clocked.add_items(["a", "b"])
        upstream = queue(clocked, UP, "ab")
        repo.depend(DOWN, on=UP)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        # a finished, in a batch that a duplicate job refuses whole.
        finished = repo.get_fulltext(upstream["a"].id)
        finished.start()
        finished.finish()
        with pytest.raises(DuplicateJob):
            repo.save_many([finished, FullText.new("b", UP)])
        assert repo.get_fulltext(upstream["a"].id).status is S.READY
        # Nothing follows: a is not done, whatever was tried.
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        assert repo.count_unqueued(DOWN) == 0

    def test_a_dependency_waits_for_the_statuses_it_names(self, clocked: ContractBackend) -> None:
        repo = depending(clocked).repo
        clocked.add_items(["a", "b", "c", "d"])
        upstream = queue(clocked, UP, "abcd")
        repo.depend(DOWN, on=UP, statuses=["finished", "skipped"])
        repo.depend("index", on=UP)  # finished only
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        assert repo.enqueue_new("index", sweep_interval=HOUR) == 0
        # a: skipped while ready (a cancel, where the adapter cancels).
        if clocked.capabilities.cancels:
            repo.cancel(UP, item_ids=["a"])
        else:
            end(repo, upstream["a"], S.SKIPPED)
        end(repo, upstream["b"], S.SKIPPED)  # by its worker, through running
        end(repo, upstream["c"], S.FAILED)  # named by neither
        end(repo, upstream["d"], S.FINISHED)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 3
        assert jobs_of(repo, DOWN) == "abd"
        assert repo.enqueue_new("index", sweep_interval=HOUR) == 1
        assert jobs_of(repo, "index") == "d"
        assert repo.enqueue_unqueued(DOWN) == repo.enqueue_unqueued("index") == 0

    def test_an_item_follows_only_once_every_upstream_is_done(
        self, clocked: ContractBackend
    ) -> None:
        repo = depending(clocked).repo
        clocked.add_items(["a", "b", "c"])
        first, second = queue(clocked, UP, "abc"), queue(clocked, OTHER_UP, "abc")
        repo.depend(DOWN, on=[UP, OTHER_UP])
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        # a: UP then OTHER_UP, with a producer's call between.
        end(repo, first["a"], S.FINISHED)
        assert repo.count_unqueued(DOWN) == 0
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        end(repo, second["a"], S.FINISHED)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 1
        # b: the other order.
        end(repo, second["b"], S.FINISHED)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        end(repo, first["b"], S.FINISHED)
        # c: both before the producer looks; one job all the same.
        end(repo, first["c"], S.FINISHED)
        end(repo, second["c"], S.FINISHED)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 2
        assert jobs_of(repo, DOWN) == "abc"
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0

    def test_an_item_not_in_the_item_source_is_not_queued(self, clocked: ContractBackend) -> None:
        repo = depending(clocked).repo
        clocked.add_items(["a"])
        upstream = queue(clocked, UP, "ab")  # b is not in the item source yet
        repo.depend(DOWN, on=UP)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        end(repo, upstream["a"], S.FINISHED)
        end(repo, upstream["b"], S.FINISHED)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 1
        assert jobs_of(repo, DOWN) == "a"
        # Once it arrives, done upstream, it is new to the producer.
        clocked.add_items(["b"])
        assert repo.count_unqueued(DOWN) == 1
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 1
        assert jobs_of(repo, DOWN) == "ab"

    def test_items_done_before_the_declaration_are_the_backlog(
        self, clocked: ContractBackend
    ) -> None:
        repo = depending(clocked).repo
        # index's producer has passed over every item once (not done yet).
        repo.depend("index", on=UP)
        clocked.add_items(["a", "b", "c"])
        upstream = queue(clocked, UP, "abc")
        assert repo.enqueue_new("index", sweep_interval=HOUR) == 0
        repo.undepend("index")
        # a and b end while nothing follows UP: nothing is recorded.
        end(repo, upstream["a"], S.FINISHED)
        end(repo, upstream["b"], S.FINISHED)
        repo.depend(DOWN, on=UP)
        repo.depend("index", on=UP)
        assert repo.count_unqueued(DOWN) == repo.count_unqueued("index") == 2
        # The backlog through enqueue_unqueued (and create_job_for_unqueued).
        assert repo.create_job_for_unqueued(DOWN).item_id == "a"
        assert repo.enqueue_unqueued(DOWN) == 1
        assert jobs_of(repo, DOWN) == "ab"
        # Through enqueue_new: its next call sweeps (the undepend above
        # asked for that), so the backlog comes at once.
        assert repo.enqueue_new("index", sweep_interval=HOUR) == 2
        assert jobs_of(repo, "index") == "ab"

    def test_undepend_lets_the_items_through(self, clocked: ContractBackend) -> None:
        repo = depending(clocked).repo
        clocked.add_items(["a", "b"])
        queue(clocked, UP, "a")
        queue(clocked, OTHER_UP, "ab")
        repo.depend(DOWN, on=[UP, OTHER_UP])
        assert repo.enqueue_unqueued(DOWN) == 0
        # Without OTHER_UP, UP still waits; without either, nothing does.
        repo.undepend(DOWN, on=OTHER_UP)
        assert repo.count_unqueued(DOWN) == 0
        repo.undepend(DOWN, on=UP)
        assert repo.dependencies(DOWN) == []
        assert repo.count_unqueued(DOWN) == 2
        assert repo.enqueue_unqueued(DOWN) == 2
        assert jobs_of(repo, DOWN) == "ab"

    def test_a_retried_upstream_job_leaves_the_job_that_followed_it(
        self, clocked: ContractBackend
    ) -> None:
        repo = depending(clocked).repo
        clocked.add_items(["a"])
        upstream = queue(clocked, UP, "a")
        repo.depend(DOWN, on=UP, statuses=["finished", "failed"])
        end(repo, upstream["a"], S.FAILED)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 1
        (followed,) = repo.list_jobs(DOWN)
        assert repo.retry(UP) == 1
        assert repo.get_fulltext(upstream["a"].id).status is S.READY
        assert repo.list_jobs(DOWN) == [followed]
        assert repo.count_unqueued(DOWN) == 0
        # Ended again: its item is queued already.
        end(repo, upstream["a"], S.FINISHED)
        assert repo.enqueue_new(DOWN, sweep_interval=HOUR) == 0
        assert repo.enqueue_unqueued(DOWN) == 0
        assert repo.list_jobs(DOWN) == [followed]
