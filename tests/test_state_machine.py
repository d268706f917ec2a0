"""The three adapters against one model, in lockstep.

A Hypothesis rule-based state machine, after Hypothesis's own
`tests/nocover/test_database_agreement.py`: every rule is applied to a plain
Python model and to the memory, SQLite and PostgreSQL adapters, and what
they return, raise and hold must agree. Each rule gathers every adapter's
outcome into one dict before comparing, so a failure shows which adapters
disagreed and how.

All adapters share one controllable clock (`self.now`, advanced by a random
amount by the rules that stamp times), so claims stamp the same `started`
everywhere and timestamps can be compared to the microsecond.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from harness import Backend, SqliteTemplate, memory_backend, reset_database, sql_backend
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import fulltext_jobs
from fulltext_jobs import (
    Action,
    AllQueued,
    DuplicateJob,
    FullText,
    InvalidTransition,
    JobNotFound,
    JobStatus,
    NoJobs,
    Repository,
)

S = JobStatus

ITEMS = ("a", "b", "c", "d", "e", "f")
#: Destinations of the default item source (`Backend.repo`).
DESTINATIONS = ("lang", "quote")
#: Destinations of the app's item source (`Backend.app_repo`). Kept apart
#: from DESTINATIONS on purpose: the harness's two SQL repositories share
#: one jobs table and one watermark table (they are one database), while
#: its two in-memory repositories are separate ledgers. With disjoint
#: destinations the difference cannot be observed, and each job is only
#: ever reached through the repository of its destination.
APP_DESTINATIONS = ("app-lang", "app-quote")

#: The model's own copy of the legal moves (from the design, not from
#: `ACTIONS`): sources, target, and what happens to (started, finished).
KEEP, NOW, CLEAR = "keep", "now", "clear"
MOVES: dict[Action, tuple[frozenset[JobStatus], JobStatus, str, str]] = {
    Action.START: (frozenset({S.READY}), S.RUNNING, NOW, KEEP),
    Action.FINISH: (frozenset({S.RUNNING}), S.FINISHED, KEEP, NOW),
    Action.FAIL: (frozenset({S.RUNNING}), S.FAILED, KEEP, NOW),
    Action.SKIP: (frozenset({S.READY, S.RUNNING}), S.SKIPPED, KEEP, NOW),
    Action.RELEASE: (frozenset({S.RUNNING}), S.READY, CLEAR, KEEP),
    Action.RETRY: (frozenset({S.FAILED, S.SKIPPED}), S.READY, CLEAR, CLEAR),
}

T0 = datetime(2026, 1, 1, tzinfo=UTC)

items = st.sampled_from(ITEMS)
destinations = st.sampled_from(DESTINATIONS + APP_DESTINATIONS)
deltas = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=2))
# The zone a caller happens to pass `now` in; stores must keep UTC.
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=45))]
)
apis = st.none() | st.dictionaries(
    st.sampled_from(["title", "language"]),
    st.integers(0, 9) | st.text("xyz", max_size=3),
    max_size=2,
)

Key = tuple[str, str]


@dataclass
class ModelJob:
    status: JobStatus
    seq: int  # enqueue order: given when the job is first stored, kept on saves
    started: datetime | None = None
    finished: datetime | None = None


def stamp(moment: datetime | None) -> tuple[str, timedelta | None] | None:
    """A timestamp as (wall time to the microsecond, UTC offset): equal only
    if both the instant and the zone (UTC) agree."""
    if moment is None:
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds"), moment.utcoffset()


def view(job: FullText) -> tuple[Any, ...]:
    return (
        job.id,
        job.item_id,
        job.destination,
        JobStatus(job.status),
        stamp(job.started),
        stamp(job.finished),
    )


def attempt(call: Callable[[], Any]) -> Any:
    """The call's result, or the name of the fulltext-jobs error it raised."""
    try:
        return call()
    except fulltext_jobs.JobsError as exc:
        return type(exc).__name__


class AdaptersAgree(RuleBasedStateMachine):
    """The model and the three adapters; the test binds the fixtures."""

    #: Set by the test from its fixtures.
    postgres_engine: sa.Engine
    sqlite_template: SqliteTemplate

    jobs = Bundle("jobs")  # (item_id, destination) pairs that have a job

    def __init__(self) -> None:
        super().__init__()
        self.now = T0

        def clock() -> datetime:
            return self.now

        # Fresh stores for every example.
        reset_database(self.postgres_engine)
        self.sqlite_engine = fulltext_jobs.create_engine(self.sqlite_template.fresh_url())
        self.backends: list[Backend] = [
            memory_backend(clock=clock),
            sql_backend(self.sqlite_engine, clock=clock),
            sql_backend(self.postgres_engine, clock=clock),
        ]
        self.names = [backend.name for backend in self.backends]
        # The model.
        self.items: set[str] = set()  # eligible in the default source
        self.app_items: set[str] = set()  # eligible (api set) in the app's source
        self.ledger: dict[Key, ModelJob] = {}
        self.watermark: dict[str, str] = {}
        self.seq = itertools.count(1)
        # Job ids differ per adapter (each makes its own uuid4).
        self.ids: dict[str, dict[Key, uuid.UUID]] = {name: {} for name in self.names}

    def teardown(self) -> None:
        self.sqlite_engine.dispose()

    # --- helpers -------------------------------------------------------

    @staticmethod
    def repo(backend: Backend, destination: str) -> Repository:
        return backend.app_repo if destination in APP_DESTINATIONS else backend.repo

    def eligible(self, destination: str) -> set[str]:
        return self.app_items if destination in APP_DESTINATIONS else self.items

    def expected_view(self, name: str, key: Key) -> tuple[Any, ...]:
        job = self.ledger[key]
        return (
            self.ids[name][key],
            *key,
            job.status,
            stamp(job.started),
            stamp(job.finished),
        )

    def everywhere(self, expected: Any) -> dict[str, Any]:
        return dict.fromkeys(self.names, expected)

    # --- rules ---------------------------------------------------------

    @initialize(
        start=st.datetimes(
            min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - bounds; the zone is given
            max_value=datetime(2100, 1, 1),  # noqa: DTZ001
            timezones=st.just(UTC),
        )
    )
    def start_the_clock(self, start: datetime) -> None:
        self.now = start

    @rule(item_ids=st.lists(items, max_size=3))
    def add_items(self, item_ids: list[str]) -> None:
        for backend in self.backends:
            backend.add_items(item_ids)
        self.items.update(item_ids)

    @rule(item=items, api=apis)
    def set_api(self, item: str, api: object) -> None:
        # In the app's source an item becomes eligible when its metadata
        # (`api`) arrives and, in the domain, never goes back: the memory
        # harness cannot make an item ineligible again, while the SQL one
        # would. So api=None is only applied to items never made eligible
        # (where it adds a not-yet-eligible row in SQL and nothing in
        # memory); for the others the step does nothing, and the model
        # keeps "once eligible, always eligible".
        if api is None and item in self.app_items:
            return
        for backend in self.backends:
            backend.set_api(item, api)
        if api is not None:
            self.app_items.add(item)

    @rule(target=jobs, destination=destinations)
    def create_job_for_unqueued(self, destination: str) -> Any:
        # The port's documented order: the smallest unqueued eligible id
        # above the destination's watermark (the largest id handed out
        # so far), else the smallest unqueued eligible id of all.
        unqueued = sorted(
            item for item in self.eligible(destination) if (item, destination) not in self.ledger
        )
        watermark = self.watermark.get(destination, "")
        above = [item for item in unqueued if item > watermark]
        pick = (above or unqueued or [None])[0]

        outcomes = {
            backend.name: attempt(
                lambda backend=backend: self.repo(backend, destination).create_job_for_unqueued(
                    destination
                )
            )
            for backend in self.backends
        }
        if pick is None:
            assert outcomes == self.everywhere(AllQueued.__name__)
            return multiple()
        key = (pick, destination)
        got = {
            name: job if isinstance(job, str) else view(replace(job, id=None))
            for name, job in outcomes.items()
        }
        assert got == self.everywhere((None, pick, destination, S.READY, None, None))
        for name, job in outcomes.items():
            assert job.id not in self.ids[name].values()
            self.ids[name][key] = job.id
        self.ledger[key] = ModelJob(S.READY, next(self.seq))
        self.watermark[destination] = max(watermark, pick)
        return key

    def learn_ids(self, claimed: dict[str, list[tuple[Any, ...]]], keys: list[Key]) -> list[Key]:
        """Record the ids of jobs made by enqueue_unqueued (which returns a
        count, not jobs) when a claim first shows them; return their keys."""
        learnt = [key for key in keys if key not in self.ids[self.names[0]]]
        for name, views in claimed.items():
            if not isinstance(views, list) or len(views) != len(keys):
                return []  # the comparison that follows reports the mismatch
            for key, seen in zip(keys, views, strict=True):
                if key in learnt:
                    assert seen[0] not in self.ids[name].values()
                    self.ids[name][key] = seen[0]
        return learnt

    @rule(target=jobs, destination=destinations, delta=deltas)
    def get_ready_job(self, destination: str, delta: timedelta) -> Any:
        self.now += delta
        ready = sorted(
            (job.seq, key)
            for key, job in self.ledger.items()
            if key[1] == destination and job.status is S.READY
        )
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: view(
                    self.repo(backend, destination).get_ready_job(destination)
                )
            )
            for backend in self.backends
        }
        if not ready:
            assert outcomes == self.everywhere(NoJobs.__name__)
            return multiple()
        key = ready[0][1]
        job = self.ledger[key]
        job.status, job.started = S.RUNNING, self.now
        learnt = self.learn_ids(
            {name: [seen] if isinstance(seen, tuple) else seen for name, seen in outcomes.items()},
            [key],
        )
        assert outcomes == {name: self.expected_view(name, key) for name in self.names}
        return multiple(*learnt)

    @rule(target=jobs, destination=destinations, n=st.integers(1, 3), delta=deltas)
    def claim_ready(self, destination: str, n: int, delta: timedelta) -> Any:
        # get_ready_job's batch form: the n oldest ready jobs, oldest first.
        self.now += delta
        ready = sorted(
            (job.seq, key)
            for key, job in self.ledger.items()
            if key[1] == destination and job.status is S.READY
        )[:n]
        outcomes = {
            backend.name: [
                view(job) for job in self.repo(backend, destination).claim_ready(destination, n)
            ]
            for backend in self.backends
        }
        for _, key in ready:
            job = self.ledger[key]
            job.status, job.started = S.RUNNING, self.now
        learnt = self.learn_ids(outcomes, [key for _, key in ready])
        assert outcomes == {
            name: [self.expected_view(name, key) for _, key in ready] for name in self.names
        }
        return multiple(*learnt)

    @rule(destination=destinations, limit=st.none() | st.integers(1, 3))
    def enqueue_unqueued(self, destination: str, limit: int | None) -> None:
        # The unqueued eligible items, smallest ids first, queued in id order;
        # the watermark of create_job_for_unqueued is left alone.
        unqueued = sorted(
            item for item in self.eligible(destination) if (item, destination) not in self.ledger
        )
        picked = unqueued if limit is None else unqueued[:limit]
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: self.repo(backend, destination).enqueue_unqueued(
                    destination, limit=limit
                )
            )
            for backend in self.backends
        }
        assert outcomes == self.everywhere(len(picked))
        for item in picked:
            self.ledger[item, destination] = ModelJob(S.READY, next(self.seq))

    @rule(
        target=jobs,
        keys=st.lists(jobs, unique=True, max_size=3),
        action=st.sampled_from(Action),
        new_items=st.lists(items, unique=True, max_size=2),
        destination=destinations,
        delta=deltas,
    )
    def save_many(
        self,
        keys: list[Key],
        action: Action,
        new_items: list[str],
        destination: str,
        delta: timedelta,
    ) -> Any:
        # Known jobs, each moved by `action` where legal, and brand-new ones,
        # saved in one call: all or nothing.
        self.now += delta
        app = destination in APP_DESTINATIONS
        keys = [key for key in keys if (key[1] in APP_DESTINATIONS) == app]
        new_jobs = [FullText.new(item, destination) for item in new_items]
        outcomes = {}
        for backend in self.backends:
            repo = self.repo(backend, destination)
            batch = [repo.get_fulltext(self.ids[backend.name][key]) for key in keys]
            for job in batch:
                if job.can(action):
                    job.apply(action, self.now)
            batch += [replace(job) for job in new_jobs]
            outcomes[backend.name] = attempt(lambda repo=repo, batch=batch: repo.save_many(batch))

        new_keys = [(item, destination) for item in new_items]
        if set(new_keys) & set(keys):
            assert outcomes == self.everywhere(fulltext_jobs.InvalidInput.__name__)
            return multiple()
        if any(key in self.ledger for key in new_keys):
            assert outcomes == self.everywhere(DuplicateJob.__name__)
            return multiple()
        assert outcomes == self.everywhere(None)
        for key in keys:
            self.move(key, action)
        for key, job in zip(new_keys, new_jobs, strict=True):
            self.ledger[key] = ModelJob(job.status, next(self.seq))
            for name in self.names:
                self.ids[name][key] = job.id
        return multiple(*new_keys)

    @rule(key=jobs, action=st.sampled_from(Action), delta=deltas, zone=zones)
    def apply_action(self, key: Key, action: Action, delta: timedelta, zone: timezone) -> None:
        self.now += delta
        now = self.now.astimezone(zone)
        outcomes = {}
        for backend in self.backends:
            repo = self.repo(backend, key[1])
            job = repo.get_fulltext(self.ids[backend.name][key])
            before = replace(job)
            try:
                job.apply(action, now)
            except InvalidTransition:
                outcomes[backend.name] = (
                    "InvalidTransition",
                    "unchanged" if job == before else job,
                )
                continue
            repo.save_fulltext(job)
            outcomes[backend.name] = view(job)

        if not self.move(key, action):
            # Nothing saved: the invariant checks the stores still hold
            # the model's (unchanged) job.
            assert outcomes == self.everywhere(("InvalidTransition", "unchanged"))
            return
        assert outcomes == {name: self.expected_view(name, key) for name in self.names}

    def move(self, key: Key, action: Action) -> bool:
        """Apply `action` to the model's job at `key` if legal; say if it was."""
        model = self.ledger[key]
        sources, target, started, finished = MOVES[action]
        if model.status not in sources:
            return False
        model.status = target
        if started != KEEP:
            model.started = self.now if started == NOW else None
        if finished != KEEP:
            model.finished = self.now if finished == NOW else None
        return True

    @rule(
        target=jobs,
        item=items,
        destination=destinations,
        path=st.lists(st.sampled_from(Action), max_size=3),
        delta=deltas,
    )
    def save_new_job(
        self, item: str, destination: str, path: list[Action], delta: timedelta
    ) -> Any:
        # A brand-new job (the same uuid everywhere), perhaps moved on
        # before it is first stored; its item need not be eligible.
        self.now += delta
        job = FullText.new(item, destination)
        for action in path:
            if job.can(action):
                job.apply(action, self.now)
        key = (item, destination)

        def save(backend: Backend) -> Any:
            repo = self.repo(backend, destination)
            saved = attempt(lambda: repo.save_fulltext(replace(job)))
            return saved, attempt(lambda: view(repo.get_fulltext(job.id)))

        outcomes = {backend.name: save(backend) for backend in self.backends}
        if key in self.ledger:
            assert outcomes == self.everywhere((DuplicateJob.__name__, JobNotFound.__name__))
            return multiple()
        assert outcomes == self.everywhere((None, view(job)))
        self.ledger[key] = ModelJob(job.status, next(self.seq), job.started, job.finished)
        for name in self.names:
            self.ids[name][key] = job.id
        return key

    @rule(job_id=st.uuids())
    def get_unknown_job(self, job_id: uuid.UUID) -> None:
        if any(job_id in ids.values() for ids in self.ids.values()):
            return  # not unknown after all (never happens with uuid4s)
        outcomes = {
            (backend.name, which): attempt(lambda repo=repo: repo.get_fulltext(job_id))
            for backend in self.backends
            for which, repo in (("repo", backend.repo), ("app_repo", backend.app_repo))
        }
        assert set(outcomes.values()) == {JobNotFound.__name__}

    # --- what every store holds ----------------------------------------

    @invariant()
    def stores_hold_the_models_jobs(self) -> None:
        # Jobs made by enqueue_unqueued are checked once a claim has shown
        # their ids; until then stats_agree counts them.
        known = [key for key in self.ledger if key in self.ids[self.names[0]]]
        actual = {
            backend.name: {
                key: view(self.repo(backend, key[1]).get_fulltext(self.ids[backend.name][key]))
                for key in known
            }
            for backend in self.backends
        }
        expected = {
            name: {key: self.expected_view(name, key) for key in known} for name in self.names
        }
        assert actual == expected

    @invariant()
    def stats_agree(self) -> None:
        actual = {
            backend.name: {
                destination: [
                    (stats.destination, dict(stats.counts), stats.unqueued)
                    for stats in self.repo(backend, destination).stats(destination)
                ]
                for destination in DESTINATIONS + APP_DESTINATIONS
            }
            for backend in self.backends
        }
        expected = {}
        for destination in DESTINATIONS + APP_DESTINATIONS:
            counts = dict.fromkeys(JobStatus, 0)
            for (_, job_destination), job in self.ledger.items():
                if job_destination == destination:
                    counts[job.status] += 1
            unqueued = sum(
                (item, destination) not in self.ledger for item in self.eligible(destination)
            )
            expected[destination] = [(destination, counts, unqueued)]
        assert actual == self.everywhere(expected)

    @invariant()
    def unqueued_counts_agree(self) -> None:
        actual = {
            backend.name: {
                destination: self.repo(backend, destination).count_unqueued(destination)
                for destination in DESTINATIONS + APP_DESTINATIONS
            }
            for backend in self.backends
        }
        expected = {
            destination: sum(
                (item, destination) not in self.ledger for item in self.eligible(destination)
            )
            for destination in DESTINATIONS + APP_DESTINATIONS
        }
        assert actual == self.everywhere(expected)


def test_adapters_agree_with_the_model(
    postgres_engine: sa.Engine, sqlite_template: SqliteTemplate
) -> None:
    # A machine class per test run, bound to this run's fixtures; each
    # example builds fresh stores in the machine's __init__.
    class WithFixtures(AdaptersAgree):
        pass

    WithFixtures.postgres_engine = postgres_engine
    WithFixtures.sqlite_template = sqlite_template

    run_state_machine_as_test(
        WithFixtures,
        settings=settings(
            max_examples=100,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
