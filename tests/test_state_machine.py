"""Every adapter against one model, in lockstep.

A Hypothesis rule-based state machine, after Hypothesis's own
`tests/nocover/test_database_agreement.py`: every rule is applied to a plain
Python model and to the memory, SQLite and PostgreSQL adapters (and, in a
second, shorter run, to SQLite and PostgreSQL through the async adapter), and
what they return, raise and hold must agree. Each rule gathers every adapter's
outcome into one dict before comparing, so a failure shows which adapters
disagreed and how.

All adapters share one controllable clock (`self.now`, advanced by a random
amount by the rules that stamp times) and one lease, so claims stamp the same
`started` and `lease_expires` everywhere and timestamps can be compared to
the microsecond.

Dependencies between destinations are modelled: `depend` (refused,
with InvalidInput everywhere, exactly when the model sees a cycle) and
`undepend` change which items every way of making jobs may queue, and an
upstream job's end records its item for `enqueue_new` of the followers.

Claims are modelled too: each claim gets a number in the model and a token
per adapter (learnt from what the claim returns, as job ids are), and the
stores must hold exactly the model's attempts, token, lease and last error.
Workers' copies of claimed jobs are kept as handles (`handles`) and saved or
heart-beaten later, when their claim may have ended (the job saved out of
`running`, rescued, or claimed again): they must then be refused with
`LostClaim` everywhere, changing nothing.

Every job has a version in the model (1 on insert, one more for each save,
claim, rescue or retry; none for a heartbeat), and every store must hold
it. Copies read at any moment (`copies`, besides the claims' handles) are
saved later, moved or not: after any write to the job since, `StaleJob`
everywhere and nothing written, the new jobs of the same batch included.

Hostile values are drawn too (lone surrogates, text too long or not text,
whole numbers out of every bound or not whole numbers, naive and extreme
datetimes, a str where many ids are expected, a job with one hostile field,
a clock that returns something that is no time): each must get
`InvalidInput` from every adapter, and the invariants then find every
store as the model, which did not change.

Delays are modelled: a worker releases a claimed job for later
(`not_before`), the clock moves on by itself, and every claim, in every
adapter, passes over the jobs not yet due: no job is ever claimed before
its `not_before`. `next_due` and each destination's rate-limit bucket
(`take_rate_tokens`, against the arithmetic of `fulltext_jobs.rate_limit`)
must agree with the model too.

The run is bounded: `EXAMPLES` examples of at most `STEPS` steps each.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from harness import (
    Backend,
    SqliteTemplate,
    async_sql_backend,
    memory_backend,
    reset_database,
    sql_backend,
)
from hypothesis import HealthCheck, event, settings
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
    Dependency,
    DuplicateJob,
    FullText,
    InvalidInput,
    InvalidTransition,
    JobNotFound,
    JobStatus,
    LostClaim,
    NoJobs,
    Repository,
    StaleJob,
    StaleJobs,
)
from fulltext_jobs.domain import (
    ATTEMPTS_EXHAUSTED_ERROR,
    MAX_ATTEMPTS,
    MAX_PRIORITY,
    RESCUED_ERROR,
    lease_expired_error,
)
from fulltext_jobs.rate_limit import take as take_tokens

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
#: (destination, upstream) pairs a `depend` may draw: within one source (the
#: SQL stores keep one set of dependencies for both repositories, the memory
#: ones one each), or a destination on itself.
FOLLOWS = (
    ("lang", "quote"),
    ("quote", "lang"),
    ("app-lang", "app-quote"),
    ("app-quote", "app-lang"),
    ("lang", "lang"),
)

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
#: How long a claim lasts without a heartbeat, in every adapter.
LEASE = timedelta(minutes=1)
MICROSECOND = timedelta(microseconds=1)
#: The actions that end a claim: the ones a worker does to a running job.
ENDINGS = (Action.FINISH, Action.FAIL, Action.SKIP, Action.RELEASE)

items = st.sampled_from(ITEMS)
destinations = st.sampled_from(DESTINATIONS + APP_DESTINATIONS)
# Often within a lease, sometimes far past it.
deltas = st.timedeltas(min_value=MICROSECOND, max_value=LEASE / 2) | st.timedeltas(
    min_value=MICROSECOND, max_value=timedelta(days=2)
)
# A retry's backoff: none (due at once), within a lease, or past it.
#: What a dependency names: finished the likeliest.
on_statuses = st.just({S.FINISHED}) | st.sets(
    st.sampled_from([S.FINISHED, S.FAILED, S.SKIPPED]), min_size=1
)
#: Priorities, 0 (the default) the likeliest; the highest there is too.
priorities = st.sampled_from([0, 0, -1, 2, MAX_PRIORITY])
delays = st.just(timedelta(0)) | st.timedeltas(min_value=MICROSECOND, max_value=2 * LEASE)
# Less than a lease: a worker heart-beats in time.
within_lease = st.timedeltas(min_value=timedelta(0), max_value=LEASE - MICROSECOND)
# Up to, just past, or well past a lease.
rescue_advances = st.sampled_from(
    [timedelta(0), LEASE - MICROSECOND, LEASE, LEASE + MICROSECOND]
) | st.timedeltas(min_value=timedelta(0), max_value=3 * LEASE)
# What a worker's `fail`, `skip` or `release` records (NUL bytes included:
# stores escape them).
errors = st.none() | st.text(st.characters(codec="utf-8") | st.just("\x00"), max_size=8)
# The zone a caller happens to pass `now` in; stores must keep UTC.
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=45))]
)
apis = st.none() | st.dictionaries(
    st.sampled_from(["title", "language"]),
    st.integers(0, 9) | st.text("xyz", max_size=3),
    max_size=2,
)

# --- hostile values: each must get InvalidInput everywhere, writing nothing

#: A lone surrogate: a str that UTF-8 cannot encode.
SURROGATES = st.characters(categories=["Cs"])
bad_texts = st.one_of(
    st.just(""),
    st.builds(lambda head, bad: head + bad, st.text(max_size=3), SURROGATES),
    st.builds(lambda head: head + "\x00", st.text(max_size=3)),
    st.text(min_size=501, max_size=510),  # over both length limits
    st.binary(max_size=3),
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
)
# Whole numbers out of every bound, and things that are not whole numbers.
out_of_range = st.integers(max_value=0) | st.integers(min_value=2**31)
not_whole = st.booleans() | st.floats(allow_nan=False) | st.text(max_size=2) | st.none()
bad_counts = out_of_range | not_whole
bad_claim_sizes = bad_counts | st.integers(min_value=10_001, max_value=2**31 - 1)
bad_attempts = st.integers(max_value=-1) | st.integers(min_value=2**31) | not_whole
bad_versions = st.integers(max_value=-1) | st.integers(min_value=2**31 - 1) | not_whole
# Naive, or aware but out of range (in UTC, where stores keep them).
bad_datetimes = st.one_of(
    st.datetimes(),
    st.datetimes(min_value=datetime(9999, 12, 30, 0, 0, 1), timezones=st.just(UTC)),  # noqa: DTZ001 - a bound
    st.just(datetime(1, 1, 1, tzinfo=UTC)),
    st.just(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))),
)
# Many ids given as one str, or as ids that are not good ones.
bad_id_lists = st.text(min_size=1, max_size=3) | st.lists(bad_texts, min_size=1, max_size=2)
# What a repository's clock may return that is no time to write.
bad_readings = st.one_of(
    st.none(),
    st.datetimes(),  # naive
    st.text(max_size=3),
    st.just(datetime.max.replace(tzinfo=UTC)),
    st.just(datetime(1, 1, 1, tzinfo=UTC)),
    st.just(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))),
    st.datetimes(min_value=datetime(9999, 12, 29, 23, 59, 1), timezones=st.just(UTC)),  # noqa: DTZ001 - a bound; no room for a lease
)

#: Calls that need no job, each with a hostile argument drawn.
hostile_calls = st.one_of(
    st.builds(
        lambda method, bad: (f"{method}({bad!r})", lambda repo: getattr(repo, method)(bad)),
        st.sampled_from(
            ["create_job_for_unqueued", "get_ready_job", "count_unqueued", "get_fulltext"]
        ),
        bad_texts,
    ),
    st.builds(
        lambda bad: (f"stats({bad!r})", lambda repo: repo.stats(bad)),
        bad_texts.filter(lambda bad: bad is not None),
    ),
    st.builds(
        lambda n: (f"claim_ready(n={n!r})", lambda repo: repo.claim_ready("lang", n)),
        bad_claim_sizes,
    ),
    st.builds(
        lambda bad: (f"claim_ready({bad!r})", lambda repo: repo.claim_ready(bad, 1)), bad_texts
    ),
    st.builds(
        lambda limit: (
            f"enqueue_unqueued(limit={limit!r})",
            lambda repo: repo.enqueue_unqueued("lang", limit=limit),
        ),
        bad_counts.filter(lambda limit: limit is not None),
    ),
    st.builds(
        lambda n: (
            f"rescue_expired(max_attempts={n!r})",
            lambda repo: repo.rescue_expired(max_attempts=n),
        ),
        bad_counts,
    ),
    st.builds(
        lambda ids: (f"retry(item_ids={ids!r})", lambda repo: repo.retry("lang", item_ids=ids)),
        bad_id_lists,
    ),
    st.builds(
        lambda bad: (f"retry({bad!r})", lambda repo: repo.retry(bad)),
        bad_texts,
    ),
    st.builds(
        lambda bad: (f"heartbeat({bad!r})", lambda repo: repo.heartbeat(bad)),
        bad_texts | st.uuids(),
    ),
    st.builds(
        lambda bad: (f"save_many({bad!r})", lambda repo: repo.save_many(bad)),
        st.text(min_size=1, max_size=3) | st.none() | st.integers(),
    ),
)

#: A field of a job as loaded, and a hostile value for it.
hostile_fields = st.one_of(
    st.tuples(st.just("attempts"), bad_attempts),
    st.tuples(st.just("version"), bad_versions),
    st.tuples(st.sampled_from(["item_id", "destination"]), bad_texts),
    st.tuples(st.sampled_from(["started", "finished", "lease_expires"]), bad_datetimes),
    st.tuples(st.just("status"), bad_texts),
    st.tuples(st.sampled_from(["id", "claim_token"]), st.text(max_size=3) | st.integers()),
    st.tuples(st.just("last_error"), st.integers() | st.binary(max_size=2)),
)

Key = tuple[str, str]

# What a handler does to a job held by `hold_ready`: leave it running,
# finish it (plainly, in any zone), fail, skip or release it, or finish it
# and then change a field by hand: to another valid value, to a hostile
# one, or to another version.
held_outcomes = st.one_of(
    st.tuples(st.just("leave")),
    st.tuples(st.just("finish"), zones),
    st.tuples(st.just("fail"), errors),
    st.tuples(st.just("skip"), errors),
    st.tuples(st.just("release"), delays, errors),
    st.tuples(st.just("edited"), st.just("attempts"), st.integers(0, 1000)),
    st.tuples(st.just("hostile"), hostile_fields),
    st.tuples(st.just("stale"), st.integers(1, 3)),
    st.tuples(
        st.just("edited"),
        st.just("last_error"),
        st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
    ),
)

# What a handler does to each of (up to) three held jobs; often a plain
# finish of them all, the common batch, which a store may write its own way.
held_plans = st.lists(held_outcomes, min_size=3, max_size=3) | st.builds(
    lambda zone: [("finish", zone)] * 3, zones
)


class HandlerError(Exception):
    """A handler's failure that leaves a `hold_ready` block."""


@dataclass
class ModelJob:
    status: JobStatus
    seq: int  # enqueue order: given when the job is first stored, kept on saves
    started: datetime | None = None
    finished: datetime | None = None
    attempts: int = 0
    claim: int | None = None  # the number of the claim holding it, if any
    lease: datetime | None = None
    last_error: str | None = None
    version: int = 1  # the stored row's write count: 1 on insert
    not_before: datetime | None = None  # a ready job is not claimed before it
    priority: int = 0  # claims take the highest first, then the lowest seq


@dataclass
class Handle:
    """A worker's copy of a claimed job, in every adapter: what the claim
    returned (heartbeats through the handle extend its lease). Saved or
    heart-beaten once the claim has ended, it is a stale one."""

    key: Key
    claim: int
    copies: dict[str, FullText]
    lease: datetime  # the lease the copies hold, by the model
    version: int  # the version the copies hold, by the model

    def __repr__(self) -> str:
        return f"Handle({self.key!r}, claim={self.claim})"


@dataclass
class Copy:
    """A job as read (`get_fulltext`) in every adapter, at `version`, with
    the lease it then had: saved later, once the job has been written by
    anyone, it is a stale copy."""

    key: Key
    version: int
    lease: datetime | None
    copies: dict[str, FullText]

    def __repr__(self) -> str:
        return f"Copy({self.key!r}, version={self.version})"


def model_error(error: str) -> str:
    """What a store keeps of a short `fail(error=...)` (or `skip`'s, or
    `release`'s): NUL bytes escaped."""
    return error.replace("\x00", "\\x00")


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
        job.attempts,
        job.claim_token,
        stamp(job.lease_expires),
        job.last_error,
        job.version,
        stamp(job.not_before),
        job.priority,
    )


def attempt(call: Callable[[], Any]) -> Any:
    """The call's result, or the name of the fulltext-jobs error it raised."""
    try:
        return call()
    except fulltext_jobs.JobsError as exc:
        return type(exc).__name__


class AdaptersAgree(RuleBasedStateMachine):
    """The model and the adapters: in memory, SQLite and PostgreSQL (`sync`),
    or SQLite and PostgreSQL through the async adapter (`async`); the test
    binds the fixtures."""

    #: Set by the test from its fixtures: which adapters run (`sync` or
    #: `async`), and the stores.
    kinds: str
    postgres_engine: sa.Engine
    sqlite_template: SqliteTemplate

    jobs = Bundle("jobs")  # (item_id, destination) pairs that have a job
    # Workers' copies of the jobs they claimed (a Handle per claim), kept
    # after the claim may have ended.
    handles = Bundle("handles")
    # Copies of jobs as read at some moment, kept while the jobs move on.
    copies = Bundle("copies")

    def __init__(self) -> None:
        super().__init__()
        self.now = T0

        # A reading the clock gives instead of `now` (hostile_clock), if any.
        self.reading: list[object] = []

        def clock() -> datetime:
            return self.reading[0] if self.reading else self.now

        # Fresh stores for every example.
        reset_database(self.postgres_engine)
        self.sqlite_engine = fulltext_jobs.create_engine(self.sqlite_template.fresh_url())
        self.closing = ExitStack()
        self.backends: list[Backend]
        if self.kinds == "sync":
            self.backends = [
                memory_backend(clock=clock, lease=LEASE),
                sql_backend(self.sqlite_engine, clock=clock, lease=LEASE),
                sql_backend(self.postgres_engine, clock=clock, lease=LEASE),
            ]
        else:
            self.backends = [
                self.closing.enter_context(async_sql_backend(engine, clock=clock, lease=LEASE))
                for engine in (self.sqlite_engine, self.postgres_engine)
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
        # Claims are numbered in the model; their tokens differ per adapter.
        self.claims = itertools.count(1)
        self.tokens: dict[int, dict[str, uuid.UUID]] = {}
        self.ended: dict[int, str] = {}  # how each ended claim ended
        self.buckets: dict[str, float] = {}  # each destination's rate-limit `tat`
        # Dependencies: each destination's upstreams and the statuses named;
        # the (destination, item, upstream) triples recorded by upstream
        # jobs' ends, which its enqueue_new takes; each producer's last sweep, and how
        # many of the default source's arrivals (in insertion order) it has
        # seen.
        self.follows: dict[str, dict[str, frozenset[JobStatus]]] = {}
        self.unblocked: set[tuple[str, str, str]] = set()
        self.swept_at: dict[str, datetime] = {}
        self.arrivals: list[str] = []
        self.produced: dict[str, int] = {}

    def teardown(self) -> None:
        self.closing.close()
        self.sqlite_engine.dispose()

    # --- helpers -------------------------------------------------------

    @staticmethod
    def repo(backend: Backend, destination: str) -> Repository:
        return backend.app_repo if destination in APP_DESTINATIONS else backend.repo

    def eligible(self, destination: str) -> set[str]:
        return self.app_items if destination in APP_DESTINATIONS else self.items

    def may_follow(self, item: str, destination: str) -> bool:
        """Whether the item may get a job for `destination` now: eligible,
        unqueued, and its job of every upstream in a status named."""
        if item not in self.eligible(destination) or (item, destination) in self.ledger:
            return False
        return all(
            (item, upstream) in self.ledger and self.ledger[item, upstream].status in statuses
            for upstream, statuses in self.follows.get(destination, {}).items()
        )

    def unqueued(self, destination: str) -> list[str]:
        """The items that may get a job for `destination` now, in id order."""
        return sorted(
            item for item in self.eligible(destination) if self.may_follow(item, destination)
        )

    def note_waiting(self, destination: str) -> None:
        """An event if eligible items without a job wait for upstreams."""
        if any(
            (item, destination) not in self.ledger and not self.may_follow(item, destination)
            for item in self.eligible(destination)
        ):
            event("an enqueue passes over items that wait for upstreams")

    def ended_job(self, key: Key) -> None:
        """The job at `key` has just reached its status (from another, or
        inserted in it): record its item for every destination whose
        dependency on the job's destination names that status (the SQL
        stores' trigger)."""
        item, upstream = key
        status = self.ledger[key].status
        for destination, upstreams in self.follows.items():
            if status in upstreams.get(upstream, ()):
                self.unblocked.add((destination, item, upstream))

    def token(self, name: str, claim: int | None) -> uuid.UUID | None:
        return None if claim is None else self.tokens.get(claim, {}).get(name)

    def expected_view(self, name: str, key: Key, *, token_of: Any = ...) -> tuple[Any, ...]:
        """The model's job at `key` as adapter `name` should hold it; with
        `token_of`, carrying the token of that claim (None: no token)
        instead, as a caller's copy does after saving."""
        job = self.ledger[key]
        return (
            self.ids[name][key],
            *key,
            job.status,
            stamp(job.started),
            stamp(job.finished),
            job.attempts,
            self.token(name, job.claim if token_of is ... else token_of),
            stamp(job.lease),
            job.last_error,
            job.version,
            stamp(job.not_before),
            job.priority,
        )

    def everywhere(self, expected: Any) -> dict[str, Any]:
        return dict.fromkeys(self.names, expected)

    def lost(self, handle: Handle) -> str | None:
        """How the claim of `handle` ended (and whether the job has been
        claimed again since), or None if it still holds."""
        job = self.ledger[handle.key]
        if job.claim == handle.claim:
            return None
        return self.ended[handle.claim] + (", claimed again" if job.claim is not None else "")

    def stale(self, handle: Handle) -> str | None:
        """Why a save of `handle`'s copies must be refused (the claim is
        lost, or the job was written since the copies were taken), or None."""
        lost = self.lost(handle)
        if lost is None and self.ledger[handle.key].version != handle.version:
            return "written since"
        return lost

    def held(self, key: Key) -> bool:
        """Whether the job at `key` is running under a claim."""
        return self.ledger[key].claim is not None

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

    @initialize(
        target=jobs,
        item_ids=st.lists(items, unique=True, max_size=4),
        destination=destinations,
        levels=st.lists(priorities, min_size=4, max_size=4),
    )
    def seed_ready_jobs(self, item_ids: list[str], destination: str, levels: list[int]) -> Any:
        # A few ready jobs to begin with (the same uuid everywhere), of
        # mixed priorities, so that claims, and what follows them, come
        # early in a run and the model decides their order.
        new_jobs = [
            FullText.new(item, destination, priority=level)
            for item, level in zip(item_ids, levels, strict=False)
        ]
        for backend in self.backends:
            self.repo(backend, destination).save_many([replace(job) for job in new_jobs])
        keys = [(job.item_id, destination) for job in new_jobs]
        for key, job in zip(keys, new_jobs, strict=True):
            self.ledger[key] = ModelJob(S.READY, next(self.seq), priority=job.priority)
            for name in self.names:
                self.ids[name][key] = job.id
        return multiple(*keys)

    @rule(item_ids=st.lists(items, max_size=3))
    def add_items(self, item_ids: list[str]) -> None:
        for backend in self.backends:
            backend.add_items(item_ids)
        for item in item_ids:
            if item not in self.items:
                self.arrivals.append(item)
                self.items.add(item)

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
        unqueued = self.unqueued(destination)
        self.note_waiting(destination)
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
        assert got == self.everywhere(
            (None, pick, destination, S.READY, None, None, 0, None, None, None, 1, None, 0)
        )
        for name, job in outcomes.items():
            assert job.id not in self.ids[name].values()
            self.ids[name][key] = job.id
        self.ledger[key] = ModelJob(S.READY, next(self.seq))
        self.watermark[destination] = max(watermark, pick)
        return key

    def due_ready(self, destination: str, n: int) -> list[Key]:
        """The `n` first ready jobs of `destination` that are due, in claim
        order (the highest priority first, then the oldest): what a claim
        or a hold takes. Jobs released for later are passed over until they
        are due."""
        ready = sorted(
            (-job.priority, job.seq, key)
            for key, job in self.ledger.items()
            if key[1] == destination
            and job.status is S.READY
            and (job.not_before is None or job.not_before <= self.now)
        )
        return [key for _, _, key in ready[:n]]

    def take_due(self, destination: str, n: int) -> list[Key]:
        """`due_ready`, as a claim or a hold takes it: a job at
        `MAX_ATTEMPTS` among them, whose attempt no store can count, is
        failed, and the next one taken in its place."""
        taken: list[Key] = []
        for key in self.due_ready(destination, len(self.ledger)):
            if len(taken) == n:
                break
            job = self.ledger[key]
            if job.attempts < MAX_ATTEMPTS:
                taken.append(key)
                continue
            event("claim: a job at the bound failed")
            job.status, job.finished, job.not_before = S.FAILED, self.now, None
            job.last_error = ATTEMPTS_EXHAUSTED_ERROR
            job.version += 1
            self.ended_job(key)
        return taken

    def claim(self, destination: str, n: int, outcomes: dict[str, Any]) -> list[Handle]:
        """Claim the `n` oldest ready jobs of `destination` in the model, and
        learn from `outcomes` (each adapter's claimed jobs, oldest first)
        their tokens and the ids of jobs made by enqueue_unqueued (which
        returns a count, not jobs). Return the workers' handles, oldest
        first.
        """
        keys = self.take_due(destination, n)
        delayed = sum(
            1
            for key, job in self.ledger.items()
            if key[1] == destination and job.status is S.READY and job.not_before is not None
        )
        if delayed:
            event(f"claim: {'some' if keys else 'none'} due, {min(delayed, 2)}+ delayed")
        learnt = [key for key in keys if key not in self.ids[self.names[0]]]
        claims = {key: next(self.claims) for key in keys}
        copies: dict[Key, dict[str, FullText]] = {key: {} for key in keys}
        for name, claimed in outcomes.items():
            if not isinstance(claimed, list) or len(claimed) != len(keys):
                continue  # the comparison that follows reports the mismatch
            for key, job in zip(keys, claimed, strict=True):
                # Never before its time, in any adapter.
                due = self.ledger[key].not_before
                assert due is None or job.started is None or due <= job.started, (name, key)
                if key in learnt:
                    assert job.id not in self.ids[name].values()
                    self.ids[name][key] = job.id
                # A fresh token: never one this adapter has handed out.
                assert isinstance(job.claim_token, uuid.UUID)
                assert all(job.claim_token != seen.get(name) for seen in self.tokens.values())
                self.tokens.setdefault(claims[key], {})[name] = job.claim_token
                copies[key][name] = replace(job)
        for key in keys:
            job = self.ledger[key]
            job.status, job.started = S.RUNNING, self.now
            job.attempts += 1
            job.claim, job.lease = claims[key], self.now + LEASE
            job.version += 1
            job.not_before = None
            event(f"claim: attempt {min(job.attempts, 3)}{'+' if job.attempts >= 3 else ''}")
        return [
            Handle(key, claims[key], copies[key], self.now + LEASE, self.ledger[key].version)
            for key in keys
        ]

    @rule(target=handles, destination=destinations, delta=deltas)
    def get_ready_job(self, destination: str, delta: timedelta) -> Any:
        self.now += delta
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: self.repo(backend, destination).get_ready_job(destination)
            )
            for backend in self.backends
        }
        handles = self.claim(
            destination,
            1,
            {name: [job] if isinstance(job, FullText) else job for name, job in outcomes.items()},
        )
        if not handles:
            assert outcomes == self.everywhere(NoJobs.__name__)
            return multiple()
        got = {
            name: view(job) if isinstance(job, FullText) else job for name, job in outcomes.items()
        }
        assert got == {name: self.expected_view(name, handles[0].key) for name in self.names}
        return multiple(*handles)

    @rule(target=handles, key=jobs, n=st.integers(1, 3), delta=deltas)
    def claim_ready(self, key: Key, n: int, delta: timedelta) -> Any:
        # get_ready_job's batch form: the n oldest ready jobs, oldest first,
        # of a destination that has jobs (so claims are frequent enough for
        # what follows them: heartbeats, rescues, stale saves, claims again).
        destination = key[1]
        self.now += delta
        outcomes = {
            backend.name: self.repo(backend, destination).claim_ready(destination, n)
            for backend in self.backends
        }
        handles = self.claim(destination, n, outcomes)
        got = {name: [view(job) for job in claimed] for name, claimed in outcomes.items()}
        assert got == {
            name: [self.expected_view(name, handle.key) for handle in handles]
            for name in self.names
        }
        return multiple(*handles)

    @rule(
        key=jobs,
        n=st.integers(1, 3),
        delta=deltas,
        plan=held_plans,
        broken=st.booleans(),
    )
    def hold_ready(
        self, key: Key, n: int, delta: timedelta, plan: list[tuple[Any, ...]], broken: bool
    ) -> None:
        # The transaction mode: the oldest due ready jobs, handed out as
        # running copies with nothing written; on leaving the block each
        # job that left running is written once (plain finishes and every
        # other outcome, hand edits included, alike), or, if the block
        # raised, nothing is.
        destination = key[1]
        self.now += delta
        # Everything as it was, for a block that rolls back: the jobs held,
        # and any the hold failed at the bound.
        before = {key: replace(job) for key, job in self.ledger.items()}
        unblocked = set(self.unblocked)
        keys = self.take_due(destination, n)
        for held in keys:
            # As handed out: started, the attempt counted; nothing stored.
            job = self.ledger[held]
            job.status, job.started, job.not_before = S.RUNNING, self.now, None
            job.attempts += 1
        outcomes = {
            backend.name: self.run_hold(
                self.repo(backend, destination), destination, n, plan, broken
            )
            for backend in self.backends
        }
        self.learn_ids(
            keys, {name: [view[0] for view in got] for name, (got, _, _) in outcomes.items()}
        )
        handed_out = {
            name: [self.expected_view(name, held) for held in keys] for name in self.names
        }
        assert {name: got for name, (got, _, _) in outcomes.items()} == handed_out
        kinds = {outcome[0] for outcome in plan[: len(keys)]}
        # An exception in the block rolls back; a hostile copy is refused
        # before anything is written; a copy at another version is refused
        # alone, the others written.
        raised = (
            "rolled back"
            if broken
            else "InvalidInput"
            if "hostile" in kinds
            else "StaleJobs"
            if "stale" in kinds
            else None
        )
        event(f"hold_ready: {len(keys)} held, {raised or 'written'}")
        assert {name: error for name, (_, _, error) in outcomes.items()} == self.everywhere(raised)
        if raised in {"rolled back", "InvalidInput"}:
            self.ledger.update(before)
            self.unblocked = unblocked
            return
        for held, outcome in zip(keys, plan, strict=False):
            event(f"hold_ready: {outcome[0]}")
            if outcome[0] in {"leave", "stale"}:
                self.ledger[held] = before[held]
                continue
            self.held_outcome(held, outcome)
        for name, (_, after, _) in outcomes.items():
            # Each copy written is the stored job, at its new version; a copy
            # left running is as it was handed out.
            for index, (held, outcome) in enumerate(zip(keys, plan, strict=False)):
                if outcome[0] != "stale":
                    expected = (
                        handed_out[name][index]
                        if outcome[0] == "leave"
                        else self.expected_view(name, held)
                    )
                    assert after[index] == expected, (name, held, outcome)

    def learn_ids(self, keys: list[Key], ids: dict[str, list[uuid.UUID]]) -> None:
        """Learn the ids of the jobs at `keys` that the enqueues made (they
        return counts, not jobs) from each adapter's `ids`, in order."""
        for name, found in ids.items():
            for key, job_id in zip(keys, found, strict=False):
                if key not in self.ids[name]:
                    assert job_id not in self.ids[name].values()
                    self.ids[name][key] = job_id

    def run_hold(
        self, repo: Repository, destination: str, n: int, plan: list[tuple[Any, ...]], broken: bool
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], str | None]:
        """One adapter's `hold_ready` block doing `plan` (and raising if
        `broken`): the views of the copies as handed out and as left, and
        what leaving the block raised, if anything."""
        got: list[tuple[Any, ...]] = []
        copies: list[FullText] = []
        raised = None
        try:
            with repo.hold_ready(destination, n) as held:
                copies.extend(held)
                got.extend(view(job) for job in held)
                for job, outcome in zip(held, plan, strict=False):
                    self.do_held(job, outcome)
                if broken:
                    raise HandlerError  # noqa: TRY301 - the handler's failure, inside the block
        except HandlerError:
            raised = "rolled back"
        except (InvalidInput, StaleJobs) as exc:
            raised = type(exc).__name__
        after = [] if raised in {"rolled back", "InvalidInput"} else [view(job) for job in copies]
        return got, after, raised

    def do_held(self, job: FullText, outcome: tuple[Any, ...]) -> None:
        """What a handler in a `hold_ready` block does to a held copy."""
        kind = outcome[0]
        if kind == "finish":
            job.finish(self.now.astimezone(outcome[1]))
        elif kind == "fail":
            job.fail(self.now, error=outcome[1])
        elif kind == "skip":
            job.skip(self.now, error=outcome[1])
        elif kind == "release":
            job.release(self.now, not_before=self.now + outcome[1], error=outcome[2])
        elif kind == "edited":
            # Finished, then changed by hand, still a valid job.
            job.finish(self.now)
            setattr(job, outcome[1], outcome[2])
        elif kind == "hostile":
            job.finish(self.now)
            setattr(job, *outcome[1])
        elif kind == "stale":
            # Finished, but at a version the row does not have.
            job.finish(self.now)
            job.version += outcome[1]

    def held_outcome(self, key: Key, outcome: tuple[Any, ...]) -> None:
        """The model's job at `key`, held as running, after `outcome`: the
        one write of its hold."""
        kind = outcome[0]
        model = self.ledger[key]
        if kind == "release":
            self.move(key, Action.RELEASE, not_before=self.now + outcome[1])
            if outcome[2] is not None:
                model.last_error = model_error(outcome[2])
        else:
            action = {"fail": Action.FAIL, "skip": Action.SKIP}.get(kind, Action.FINISH)
            self.move(key, action, outcome[1] if kind in {"fail", "skip"} else None)
        if kind == "edited":
            setattr(model, outcome[1], outcome[2])
        model.version += 1

    @rule(destination=destinations, limit=st.none() | st.integers(1, 3))
    def enqueue_unqueued(self, destination: str, limit: int | None) -> None:
        # The unqueued eligible items, smallest ids first, queued in id order;
        # the watermark of create_job_for_unqueued is left alone.
        unqueued = self.unqueued(destination)
        picked = unqueued if limit is None else unqueued[:limit]
        self.note_waiting(destination)
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

    @rule(destination=destinations, sweep=st.booleans())
    def enqueue_new(self, destination: str, sweep: bool) -> None:
        # First the items recorded for the destination (an upstream job of
        # theirs ended in a status its dependency names) that may follow,
        # then those a sweep finds (every unqueued eligible item that may
        # follow), or between sweeps those new to the destination's
        # producer (the default source's arrivals since its last call,
        # its insertion-order watermark), each group in id order. An app's
        # source between sweeps is left out: the SQL stores' watermark there
        # is over the id, which passes over late arrivals that the memory
        # store finds.
        if destination in APP_DESTINATIONS and not sweep:
            return
        interval = timedelta(0) if sweep else timedelta(hours=1)
        taken = {key for key in self.unblocked if key[0] == destination}
        self.unblocked -= taken
        recorded = sorted({item for _, item, _ in taken})
        unqueued = [item for item in recorded if self.may_follow(item, destination)]
        swept_at = self.swept_at.get(destination)
        if swept_at is None or swept_at + interval <= self.now:
            self.swept_at[destination] = self.now
            new = self.eligible(destination)
        else:
            new = set(self.arrivals[self.produced.get(destination, 0) :])
        self.produced[destination] = len(self.arrivals)
        if recorded:
            event(f"enqueue_new: {min(len(unqueued), 2)}{'+' * (len(unqueued) >= 2)} recorded")
        unqueued += sorted(
            item for item in new if item not in unqueued and self.may_follow(item, destination)
        )
        self.note_waiting(destination)
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: self.repo(backend, destination).enqueue_new(
                    destination, sweep_interval=interval
                )
            )
            for backend in self.backends
        }
        assert outcomes == self.everywhere(len(unqueued))
        for item in unqueued:
            self.ledger[item, destination] = ModelJob(S.READY, next(self.seq))

    @rule(
        target=jobs,
        keys=st.lists(jobs, unique=True, max_size=3),
        action=st.sampled_from(Action),
        new_items=st.lists(items, unique=True, max_size=2),
        destination=destinations,
        delta=deltas,
        atomic=st.booleans(),
    )
    def save_many(  # noqa: PLR0917 - one argument a drawn value
        self,
        keys: list[Key],
        action: Action,
        new_items: list[str],
        destination: str,
        delta: timedelta,
        atomic: bool,
    ) -> Any:
        # Known jobs (as loaded, so with their current claims), each moved
        # by `action` where legal, and brand-new ones, saved in one call:
        # all or nothing, or each on its own (`atomic=False`), which for
        # copies that are none of them stale comes to the same.
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
            outcomes[backend.name] = attempt(
                lambda repo=repo, batch=batch: repo.save_many(batch, atomic=atomic)
            )

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
            self.ledger[key].version += 1  # saved, moved or not
        for key, job in zip(new_keys, new_jobs, strict=True):
            self.ledger[key] = ModelJob(job.status, next(self.seq))
            for name in self.names:
                self.ids[name][key] = job.id
        return multiple(*new_keys)

    @staticmethod
    def act(job: FullText, action: Action, now: datetime, error: str | None) -> None:
        """Do `action` to `job`, a `fail` or `skip` recording `error` if there
        is one."""
        if action is Action.FAIL and error is not None:
            job.fail(now, error=error)
        elif action is Action.SKIP and error is not None:
            job.skip(now, error=error)
        else:
            job.apply(action, now)

    @rule(key=jobs, action=st.sampled_from(Action), delta=deltas, zone=zones, error=errors)
    def apply_action(
        self, key: Key, action: Action, delta: timedelta, zone: timezone, error: str | None
    ) -> None:
        # A job as loaded carries its current claim (if any), so the save
        # is never refused.
        self.now += delta
        now = self.now.astimezone(zone)
        outcomes = {}
        for backend in self.backends:
            repo = self.repo(backend, key[1])
            job = repo.get_fulltext(self.ids[backend.name][key])
            before = replace(job)
            try:
                self.act(job, action, now, error)
            except InvalidTransition:
                outcomes[backend.name] = (
                    "InvalidTransition",
                    "unchanged" if job == before else job,
                )
                continue
            outcomes[backend.name] = (attempt(lambda repo=repo, job=job: repo.save_fulltext(job)),)
            outcomes[backend.name] += (view(job),)

        claim = self.ledger[key].claim
        if not self.move(key, action, error):
            # Nothing saved: the invariant checks the stores still hold
            # the model's (unchanged) job.
            assert outcomes == self.everywhere(("InvalidTransition", "unchanged"))
            return
        self.ledger[key].version += 1
        # The caller's copy keeps the token it was loaded with, and has the
        # new version.
        assert outcomes == {
            name: (None, self.expected_view(name, key, token_of=claim)) for name in self.names
        }

    def move(
        self,
        key: Key,
        action: Action,
        error: str | None = None,
        not_before: datetime | None = None,
    ) -> bool:
        """Apply `action` to the model's job at `key` if legal (a release
        delayed to `not_before`); say if it was."""
        model = self.ledger[key]
        sources, target, started, finished = MOVES[action]
        if model.status not in sources:
            return False
        model.status = target
        if action in {Action.START, Action.RETRY, Action.RELEASE}:
            # A start or a retry clears the delay; a release sets its own.
            model.not_before = not_before
        if started != KEEP:
            model.started = self.now if started == NOW else None
        if finished != KEEP:
            model.finished = self.now if finished == NOW else None
        if action in {Action.FAIL, Action.SKIP} and error is not None:
            model.last_error = model_error(error)
        if action is Action.RETRY:
            # A fresh budget of attempts; the last error stays.
            model.attempts = 0
        if target is not S.RUNNING:
            # Out of running: the claim ends, with its lease.
            if model.claim is not None:
                self.ended[model.claim] = f"ended by {action}"
            model.claim = model.lease = None
        if target in {S.FINISHED, S.FAILED, S.SKIPPED}:
            self.ended_job(key)
        return True

    # --- delays and rate limits ------------------------------

    @rule(key=jobs, priority=priorities)
    def prioritize(self, key: Key, priority: int) -> None:
        # An operator's change of a job's priority: ready jobs only (a
        # delayed one keeps its delay); its version moves on.
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: self.repo(backend, key[1]).prioritize(
                    key[1], item_ids=[key[0]], priority=priority
                )
            )
            for backend in self.backends
        }
        model = self.ledger[key]
        if model.status is not S.READY:
            assert outcomes == self.everywhere(0)
            return
        model.priority = priority
        model.version += 1
        assert outcomes == self.everywhere(1)

    @initialize(
        pair=st.none() | st.sampled_from(FOLLOWS[:2]),
        statuses=on_statuses,
        item_ids=st.lists(items, unique=True, max_size=4),
    )
    def follow_from_the_start(
        self, pair: Key | None, statuses: set[JobStatus], item_ids: list[str]
    ) -> None:
        # Often a pipeline from the first step: items in the default source,
        # and one of its destinations following the other, so that the
        # jobs' ends that follow are recorded, and producers find them.
        self.add_items(item_ids)
        if pair is not None:
            self.depend(pair, statuses)

    @rule(pair=st.sampled_from(FOLLOWS), statuses=on_statuses)
    def depend(self, pair: Key, statuses: set[JobStatus]) -> None:
        # One destination follows another of its source (or itself, which
        # is refused): accepted unless the model sees a cycle.
        destination, upstream = pair
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: self.repo(backend, destination).depend(
                    destination, on=[upstream], statuses=statuses
                )
            )
            for backend in self.backends
        }
        if self.reaches(upstream, destination):
            event("depend: a cycle")
            assert outcomes == self.everywhere(InvalidInput.__name__)
            return
        self.follows.setdefault(destination, {})[upstream] = frozenset(statuses)
        assert outcomes == self.everywhere(self.dependencies(destination))

    @rule(
        which=st.integers(0, 3),
        action=st.sampled_from([Action.FINISH, Action.FAIL, Action.SKIP]),
        delta=deltas,
        sweep=st.booleans(),
    )
    def end_then_follow(self, which: int, action: Action, delta: timedelta, sweep: bool) -> None:
        # A pipeline's step, on one of the dependencies declared: a worker
        # claims a job of the upstream and ends it, and the follower's
        # producer runs.
        declared = sorted((down, up) for down, ups in self.follows.items() for up in ups)
        if not declared:
            return
        destination, upstream = declared[which % len(declared)]
        for handle in self.get_ready_job(upstream, delta).values:
            self.save_old_copy(handle, action, None, timedelta(seconds=1), None)
        self.enqueue_new(destination, sweep)

    @rule(destination=destinations, all_of_them=st.booleans())
    def undepend(self, destination: str, all_of_them: bool) -> None:
        # Its dependencies on the other destination of its source, or all.
        other = next(up for down, up in FOLLOWS if down == destination and up != destination)
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: self.repo(backend, destination).undepend(
                    destination, on=None if all_of_them else other
                )
            )
            for backend in self.backends
        }
        self.follows.get(destination, {}).pop(other, None)
        # The dropped upstreams' records are forgotten, and the producer's
        # next call sweeps.
        self.unblocked = {key for key in self.unblocked if key[0] != destination or key[2] != other}
        self.swept_at.pop(destination, None)
        assert outcomes == self.everywhere(self.dependencies(destination))

    def reaches(self, start: str, goal: str) -> bool:
        """Whether `goal` is `start` or one of its upstreams, transitively."""
        seen, stack = set(), [start]
        while stack:
            destination = stack.pop()
            if destination == goal:
                return True
            if destination not in seen:
                seen.add(destination)
                stack.extend(self.follows.get(destination, {}))
        return False

    def dependencies(self, destination: str) -> list[Dependency]:
        return sorted(
            Dependency(destination, upstream, statuses)
            for upstream, statuses in self.follows.get(destination, {}).items()
        )

    @rule(key=jobs, delay=delays, error=errors)
    def release_for_later(self, key: Key, delay: timedelta, error: str | None) -> None:
        # A worker's retry after a backoff: its running job back to ready
        # with the error, not to be claimed before now + delay (claims
        # pass over it until then; see `claim`).
        due = self.now + delay
        outcomes = {}
        for backend in self.backends:
            repo = self.repo(backend, key[1])
            job = repo.get_fulltext(self.ids[backend.name][key])
            try:
                job.release(self.now, not_before=due, error=error)
            except InvalidTransition:
                outcomes[backend.name] = InvalidTransition.__name__
                continue
            outcomes[backend.name] = attempt(lambda repo=repo, job=job: repo.save_fulltext(job))
        if not self.move(key, Action.RELEASE, not_before=due):
            assert outcomes == self.everywhere(InvalidTransition.__name__)
            return
        event(f"release_for_later: {'now' if not delay else 'later'}")
        model = self.ledger[key]
        if error is not None:
            model.last_error = model_error(error)
        model.version += 1
        assert outcomes == self.everywhere(None)

    @rule(delta=deltas)
    def advance_clock(self, delta: timedelta) -> None:
        # Time passes: delayed jobs fall due, leases run out, buckets refill.
        self.now += delta

    @rule(destination=destinations)
    def next_due(self, destination: str) -> None:
        # The earliest moment a ready job may be claimed: its `not_before`,
        # or now for one not delayed; None without ready jobs.
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: stamp(self.repo(backend, destination).next_due(destination))
            )
            for backend in self.backends
        }
        due = [
            job.not_before or self.now
            for key, job in self.ledger.items()
            if key[1] == destination and job.status is S.READY
        ]
        assert outcomes == self.everywhere(stamp(min(due)) if due else None)

    @rule(
        destination=destinations,
        rate=st.sampled_from([0.5, 3.0, 20.0]),
        n=st.integers(1, 4),
        burst=st.integers(1, 3),
        delta=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(seconds=2)),
    )
    def take_rate_tokens(
        self, destination: str, rate: float, n: int, burst: int, delta: timedelta | None
    ) -> None:
        # Each destination's bucket, against the arithmetic of
        # `fulltext_jobs.rate_limit.take` kept in the model.
        if delta is not None:
            self.now += delta
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: (
                    self.repo(backend, destination)
                    .take_rate_tokens(destination, rate, n, burst=burst)
                    .granted
                )
            )
            for backend in self.backends
        }
        self.buckets[destination], granted = take_tokens(
            self.buckets.get(destination), self.now.timestamp(), rate, burst, n
        )
        event(f"take_rate_tokens: {'granted' if granted else 'refused'}")
        assert outcomes == self.everywhere(granted)

    @rule(
        target=jobs,
        item=items,
        destination=destinations,
        path=st.lists(st.sampled_from(Action), max_size=3),
        delta=deltas,
        attempts=st.just(0) | st.integers(MAX_ATTEMPTS - 2, MAX_ATTEMPTS),
    )
    def save_new_job(
        self, item: str, destination: str, path: list[Action], delta: timedelta, attempts: int
    ) -> Any:
        # A brand-new job (the same uuid everywhere), perhaps moved on
        # before it is first stored; its item need not be eligible. Started
        # this way, it runs without a claim (as the original's workers did).
        # Its attempts may be near the bound (a job imported or edited by
        # hand), which the claims must not overflow.
        self.now += delta
        job = FullText.new(item, destination)
        job.attempts = attempts
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
        assert outcomes == self.everywhere((None, view(replace(job, version=1))))
        self.ledger[key] = ModelJob(
            job.status, next(self.seq), job.started, job.finished, attempts=job.attempts
        )
        self.ended_job(key)
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

    # --- claims, leases, rescue and retry ------------------------------

    @rule(target=jobs, handle=handles)
    def job_of(self, handle: Handle) -> Key:
        # Claimed jobs join `jobs` this way (jobs made by enqueue_unqueued
        # have their ids learnt when first claimed), so that the other
        # rules may load and change them.
        return handle.key

    @rule(
        target=jobs,
        handle=handles,
        action=st.sampled_from((None, *ENDINGS)),
        error=errors,
        delta=deltas,
        along=st.none() | st.lists(items, max_size=1),
    )
    def save_old_copy(
        self,
        handle: Handle,
        action: Action | None,
        error: str | None,
        delta: timedelta,
        along: list[str] | None,
    ) -> Any:
        # A worker saves its copy, as claimed, after `action` (None: as it
        # is, still running): alone with save_fulltext, or with save_many
        # along with new jobs for the items `along`. Only the current claim
        # may write; a stale one is refused everywhere, and nothing (not
        # even the new jobs) is saved.
        self.now += delta
        destination = handle.key[1]
        new_jobs = [FullText.new(item, destination) for item in along or ()]
        outcomes = {}
        saved = {}
        for backend in self.backends:
            repo = self.repo(backend, destination)
            job = saved[backend.name] = replace(handle.copies[backend.name])
            if action is not None:
                self.act(job, action, self.now, error)
            batch = [job, *(replace(new) for new in new_jobs)]
            outcomes[backend.name] = attempt(
                lambda repo=repo, job=job, batch=batch: (
                    repo.save_fulltext(job) if along is None else repo.save_many(batch)
                )
            )
        new_keys = [(job.item_id, destination) for job in new_jobs]
        stale = self.stale(handle)
        event(f"save_old_copy: {stale or 'current'}, {len(new_jobs)} new")
        if handle.key in new_keys:
            assert outcomes == self.everywhere(fulltext_jobs.InvalidInput.__name__)
            return multiple()
        # A duplicate pair wins over a stale claim (the port's order).
        if any(key in self.ledger for key in new_keys):
            assert outcomes == self.everywhere(DuplicateJob.__name__)
            return multiple()
        if stale:
            assert outcomes == self.everywhere(StaleJob.__name__)
            return multiple()
        assert outcomes == self.everywhere(None)
        # The store now holds the copy: the model's job, with the copy's
        # lease (older than the job's if heartbeats went through another
        # copy), moved by `action`.
        if action is None and handle.lease != self.ledger[handle.key].lease:
            event("save_old_copy: current, the copy's lease behind")
        self.ledger[handle.key].lease = handle.lease
        if action is not None:
            assert self.move(handle.key, action, error)
        self.saved_copies(handle, action, saved)
        for key, job in zip(new_keys, new_jobs, strict=True):
            self.ledger[key] = ModelJob(S.READY, next(self.seq))
            for name in self.names:
                self.ids[name][key] = job.id
        return multiple(*new_keys)

    def saved_copies(
        self, handle: Handle, action: Action | None, saved: dict[str, FullText]
    ) -> None:
        """The copies of `handle`, moved by `action`, were saved: the stored
        job has a new version."""
        self.ledger[handle.key].version += 1
        if action is None:
            # Still running: the worker's copies are the stored job again
            # (the save moved their version on). After an action they are
            # kept as claimed, and the ended claim makes them stale.
            handle.version = self.ledger[handle.key].version
            handle.copies = saved

    @rule(handle=handles, delta=within_lease, loaded=st.booleans())
    def heartbeat_claimed(self, handle: Handle, delta: timedelta, loaded: bool) -> None:
        # Within the lease, a worker extends it through its copy: the
        # claim's holder succeeds (and its copy gets the new lease); a stale
        # copy is refused everywhere, and neither it nor the store changes.
        # `loaded`: through the job as loaded instead, whatever claim it is
        # under now, which leaves the copy's lease behind.
        self.now += delta
        if loaded:
            self.heartbeat_loaded(handle.key)
            return
        outcomes = {}
        for backend in self.backends:
            job = handle.copies[backend.name]
            repo = self.repo(backend, handle.key[1])
            outcomes[backend.name] = (
                attempt(lambda repo=repo, job=job: stamp(repo.heartbeat(job))),
                stamp(job.lease_expires),
            )
        stale = self.lost(handle)  # a heartbeat checks the claim, not the version
        event(f"heartbeat_claimed: {stale or 'current'}")
        if stale:
            assert outcomes == self.everywhere((LostClaim.__name__, stamp(handle.lease)))
            return
        lease = self.now + LEASE
        assert outcomes == self.everywhere((stamp(lease), stamp(lease)))
        handle.lease = self.ledger[handle.key].lease = lease

    @rule(key=jobs, delta=within_lease)
    def heartbeat(self, key: Key, delta: timedelta) -> None:
        self.now += delta
        self.heartbeat_loaded(key)

    def heartbeat_loaded(self, key: Key) -> None:
        """A heartbeat on the job at `key` as loaded: it holds the current
        token, so it is refused only if the job is not running under a claim
        (not running, or running without one, as the original's code saved
        them)."""
        outcomes = {}
        for backend in self.backends:
            repo = self.repo(backend, key[1])
            job = repo.get_fulltext(self.ids[backend.name][key])
            outcomes[backend.name] = (
                attempt(lambda repo=repo, job=job: stamp(repo.heartbeat(job))),
                stamp(job.lease_expires),
            )
        model = self.ledger[key]
        event(f"heartbeat as loaded: {'held' if self.held(key) else 'not held'}")
        if not self.held(key):
            assert outcomes == self.everywhere((LostClaim.__name__, stamp(model.lease)))
            return
        model.lease = self.now + LEASE
        assert outcomes == self.everywhere((stamp(model.lease), stamp(model.lease)))

    @rule(
        destination=st.none() | destinations,
        max_attempts=st.integers(1, 3),
        advance=rescue_advances,
    )
    def rescue_expired(
        self, destination: str | None, max_attempts: int, advance: timedelta
    ) -> None:
        # Running jobs whose lease ended before now go back to ready or,
        # with max_attempts used up, to failed; their claims end.
        self.now += advance

        def rescue(backend: Backend) -> Any:
            # Without a destination, through both repositories: the SQL ones
            # share a table (the first rescues all), the memory ones do not.
            repos = (
                [backend.repo, backend.app_repo]
                if destination is None
                else [self.repo(backend, destination)]
            )
            counts = [
                attempt(
                    lambda repo=repo: repo.rescue_expired(destination, max_attempts=max_attempts)
                )
                for repo in repos
            ]
            return sum(counts) if all(isinstance(count, int) for count in counts) else counts

        outcomes = {backend.name: rescue(backend) for backend in self.backends}
        rescued = 0
        for key, job in self.ledger.items():
            if (
                job.status is S.RUNNING
                and destination in (None, key[1])
                and job.lease is not None
                and job.lease < self.now
            ):
                rescued += 1
                event("rescue_expired: " + ("failed" if job.attempts >= max_attempts else "ready"))
                if job.attempts >= max_attempts:
                    job.status, job.finished = S.FAILED, self.now
                    job.last_error = lease_expired_error(job.attempts)
                    self.ended_job(key)
                else:
                    job.status, job.started = S.READY, None
                    job.last_error = RESCUED_ERROR
                self.ended[job.claim] = "ended by rescue"
                job.claim = job.lease = None
                job.version += 1
        assert outcomes == self.everywhere(rescued)

    @rule(
        key=jobs,
        statuses=st.lists(
            st.sampled_from([S.FAILED, S.SKIPPED, "failed", "skipped"]), min_size=1, max_size=2
        ),
        item_ids=st.none() | st.lists(items, max_size=3),
        with_key=st.booleans(),
    )
    def retry(
        self, key: Key, statuses: list[Any], item_ids: list[str] | None, with_key: bool
    ) -> None:
        # Failed or skipped jobs of a destination (one that has a job) back
        # to ready in place, with their attempts back to 0, keeping their
        # last error and place in the queue; all of them, or those of
        # `item_ids` (and, `with_key`, the job's own item). The model's
        # `move` is the entity's retry, as the stores' must be.
        destination = key[1]
        if item_ids is not None and with_key:
            item_ids = [*item_ids, key[0]]
        outcomes = {
            backend.name: attempt(
                lambda backend=backend: self.repo(backend, destination).retry(
                    destination, statuses=statuses, item_ids=item_ids
                )
            )
            for backend in self.backends
        }
        chosen = {JobStatus(status) for status in statuses}
        retried = 0
        for (item, job_destination), job in self.ledger.items():
            if (
                job_destination == destination
                and job.status in chosen
                and (item_ids is None or item in item_ids)
            ):
                retried += 1
                event("retry: a job" + (" that had attempts" if job.attempts else ""))
                self.move((item, job_destination), Action.RETRY)
                job.version += 1
        assert outcomes == self.everywhere(retried)

    # --- stale copies ---------------------------------------------------

    @rule(target=copies, key=jobs)
    def read_copy(self, key: Key) -> Copy:
        # Any reader's copy (an admin screen, a report), of a job in any
        # status, claimed or not.
        copies = {
            backend.name: self.repo(backend, key[1]).get_fulltext(self.ids[backend.name][key])
            for backend in self.backends
        }
        model = self.ledger[key]
        assert {name: view(job) for name, job in copies.items()} == {
            name: self.expected_view(name, key) for name in self.names
        }
        return Copy(key, model.version, model.lease, copies)

    @rule(
        target=jobs,
        copy=copies,
        action=st.sampled_from(Action),
        delta=deltas,
        along=st.none() | st.lists(items, max_size=1),
    )
    def save_copy(
        self, copy: Copy, action: Action, delta: timedelta, along: list[str] | None
    ) -> Any:
        # The copy, moved by `action` where that is legal from the status it
        # was read in (else as read), is saved alone or with new jobs. It is
        # written only if the job is still at the copy's version; after any
        # write (a save, claim, rescue or retry, by anyone), StaleJob
        # everywhere, and nothing, not even the new jobs, is saved.
        self.now += delta
        destination = copy.key[1]
        new_jobs = [FullText.new(item, destination) for item in along or ()]
        moved = copy.copies[self.names[0]].can(action)
        outcomes = {}
        for backend in self.backends:
            repo = self.repo(backend, destination)
            job = replace(copy.copies[backend.name])
            if moved:
                job.apply(action, self.now)
            batch = [job, *(replace(new) for new in new_jobs)]
            outcomes[backend.name] = attempt(
                lambda repo=repo, job=job, batch=batch: (
                    repo.save_fulltext(job) if along is None else repo.save_many(batch)
                )
            )
        new_keys = [(job.item_id, destination) for job in new_jobs]
        current = self.ledger[copy.key].version == copy.version
        event(f"save_copy: {'current' if current else 'stale'}, {len(new_jobs)} new")
        if copy.key in new_keys:
            assert outcomes == self.everywhere(fulltext_jobs.InvalidInput.__name__)
            return multiple()
        if any(key in self.ledger for key in new_keys):
            assert outcomes == self.everywhere(DuplicateJob.__name__)
            return multiple()
        if not current:
            assert outcomes == self.everywhere(StaleJob.__name__)
            return multiple()
        assert outcomes == self.everywhere(None)
        # The store holds the copy (its lease too, which heartbeats since
        # may have moved on), moved by `action`.
        model = self.ledger[copy.key]
        model.lease = copy.lease
        if moved:
            assert self.move(copy.key, action)
        model.version += 1
        for key, job in zip(new_keys, new_jobs, strict=True):
            self.ledger[key] = ModelJob(S.READY, next(self.seq))
            for name in self.names:
                self.ids[name][key] = job.id
        return multiple(*new_keys)

    # --- hostile values -------------------------------------------------

    def refused_everywhere(self, calls: dict[str, Callable[[], Any]]) -> None:
        """Each adapter's call raises InvalidInput; the invariants then find
        every store unchanged (the model is)."""
        outcomes = {name: attempt(call) for name, call in calls.items()}
        assert outcomes == self.everywhere(fulltext_jobs.InvalidInput.__name__)

    @rule(call=hostile_calls, destination=destinations)
    def hostile_argument(
        self, call: tuple[str, Callable[[Repository], Any]], destination: str
    ) -> None:
        label, make = call
        event(f"hostile_argument: {label.split('(')[0]}")
        self.refused_everywhere(
            {
                backend.name: lambda backend=backend: make(self.repo(backend, destination))
                for backend in self.backends
            }
        )

    @rule(key=jobs, field=hostile_fields, through=st.sampled_from(["save", "many", "heartbeat"]))
    def hostile_job(self, key: Key, field: tuple[str, object], through: str) -> None:
        # The job as loaded, with one field made hostile, saved (alone or
        # in a batch) or heart-beaten.
        name_of_field, bad = field
        if through == "heartbeat" and name_of_field not in {"id", "claim_token"}:
            return  # heartbeat reads only the id and the token
        event(f"hostile_job: {name_of_field} through {through}")

        def call(backend: Backend) -> Any:
            repo = self.repo(backend, key[1])
            job = replace(repo.get_fulltext(self.ids[backend.name][key]), **{name_of_field: bad})
            if through == "heartbeat":
                return repo.heartbeat(job)
            return repo.save_fulltext(job) if through == "save" else repo.save_many([job])

        self.refused_everywhere(
            {backend.name: lambda backend=backend: call(backend) for backend in self.backends}
        )

    @rule(
        reading=bad_readings,
        destination=destinations,
        method=st.sampled_from(
            [
                "get_ready_job",
                "claim_ready",
                "rescue_expired",
                "heartbeat",
                "next_due",
                "take_rate_tokens",
            ]
        ),
    )
    def hostile_clock(self, reading: object, destination: str, method: str) -> None:
        # The repositories' clock returns something that is no time to
        # write: every call that reads it is refused before it writes.
        event(f"hostile_clock: {method}")
        held = [key for key in self.ledger if key[1] == destination and self.held(key)]

        def call(backend: Backend) -> Any:
            repo = self.repo(backend, destination)
            if method == "heartbeat":
                if not held:
                    return repo.heartbeat(FullText.new("item", destination))
                return repo.heartbeat(repo.get_fulltext(self.ids[backend.name][held[0]]))
            calls: dict[str, Callable[[], Any]] = {
                "claim_ready": lambda: repo.claim_ready(destination, 3),
                "rescue_expired": lambda: repo.rescue_expired(destination),
                "next_due": lambda: repo.next_due(destination),
                "take_rate_tokens": lambda: repo.take_rate_tokens(destination, 3, 2, burst=2),
            }
            return calls.get(method, lambda: repo.get_ready_job(destination))()

        self.reading.append(reading)
        try:
            self.refused_everywhere(
                {backend.name: lambda backend=backend: call(backend) for backend in self.backends}
            )
        finally:
            self.reading.clear()

    # --- what every store holds ----------------------------------------

    @invariant()
    def stores_hold_the_models_jobs(self) -> None:
        # Every field, the claim token included. Jobs made by
        # enqueue_unqueued are checked once a claim has shown their ids;
        # until then stats_agree counts them.
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
            expected[destination] = [(destination, counts, len(self.unqueued(destination)))]
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
            destination: len(self.unqueued(destination))
            for destination in DESTINATIONS + APP_DESTINATIONS
        }
        assert actual == self.everywhere(expected)


# The async adapter's calls cost more (a hop to the event loop, and
# aiosqlite's to its thread), so it gets fewer examples of the same machine.
# The counts fit CI's 20 minutes on two cores (about 110 s for both);
# FULLTEXT_JOBS_STATE_MACHINE_SCALE multiplies them for a deeper run
# (docs/development.md).
SCALE = float(os.environ.get("FULLTEXT_JOBS_STATE_MACHINE_SCALE", "1"))
EXAMPLES = {"sync": max(1, round(35 * SCALE)), "async": max(1, round(6 * SCALE))}
#: Steps of each example.
STEPS = 70


@pytest.mark.parametrize("kinds", ["sync", "async"])
def test_adapters_agree_with_the_model(
    postgres_engine: sa.Engine, sqlite_template: SqliteTemplate, kinds: str
) -> None:
    # A machine class per test run, bound to this run's fixtures; each
    # example builds fresh stores in the machine's __init__.
    class WithFixtures(AdaptersAgree):
        pass

    WithFixtures.kinds = kinds
    WithFixtures.postgres_engine = postgres_engine
    WithFixtures.sqlite_template = sqlite_template

    run_state_machine_as_test(
        WithFixtures,
        settings=settings(
            max_examples=EXAMPLES[kinds],
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
