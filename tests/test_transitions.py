"""Property tests of the transition table and of `FullText`'s moves.

The table is written out here a second time, by hand, from the design
(docs/go-original.md, "Transitions are checked"), so a change to `ACTIONS` that alters
the legal moves fails a test instead of silently redefining them.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fulltext_jobs import (
    ACTIONS,
    MAX_ATTEMPTS,
    TRANSITIONS,
    Action,
    FullText,
    InvalidInput,
    InvalidTransition,
    JobStatus,
)
from fulltext_jobs.checks import MAX_INT32

S = JobStatus

#: The design's table, written independently of `ACTIONS`.
DESIGN_TRANSITIONS = {
    S.READY: frozenset({S.RUNNING, S.SKIPPED}),
    S.RUNNING: frozenset({S.FINISHED, S.FAILED, S.SKIPPED, S.READY}),
    S.FAILED: frozenset({S.READY}),
    S.SKIPPED: frozenset({S.READY}),
    S.FINISHED: frozenset(),  # terminal
}

#: Which actions set `started`, set `finished`, or clear them.
SETS_STARTED = {Action.START}
SETS_FINISHED = {Action.FINISH, Action.FAIL, Action.SKIP}

# --- strategies --------------------------------------------------------------

# Fixed offsets (whole minutes, as real zones have) plus UTC itself: no
# dependency on the system's zone database.
zones = st.just(UTC) | st.builds(
    timezone,
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
        lambda minutes: timedelta(minutes=minutes)
    ),
)
aware_moments = st.datetimes(
    min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - bounds of a strategy, given a zone below
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=zones,
)
naive_moments = st.datetimes(
    min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - naive on purpose
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
)
utc_moments = aware_moments.map(lambda moment: moment.astimezone(UTC))
ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20)
statuses = st.sampled_from(JobStatus)
actions = st.sampled_from(Action)

# A job in any status with any timestamps: the table must hold whatever the
# job's history was (a job read from a store may carry anything).
jobs = st.builds(
    FullText,
    id=st.uuids(),
    item_id=ids,
    destination=ids,
    started=st.none() | utc_moments,
    finished=st.none() | utc_moments,
    status=statuses,
)


def job_in(status: JobStatus) -> FullText:
    """A job with fixed timestamps in `status`."""
    t = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    return FullText(
        id=uuid.uuid4(),
        item_id="item",
        destination="lang",
        started=t,
        finished=t + timedelta(seconds=1),
        status=status,
    )


# --- (b) the table -------------------------------------------------------------


def test_transitions_equal_the_design_table():
    assert dict(TRANSITIONS) == DESIGN_TRANSITIONS


def test_every_status_has_a_row_and_every_action_a_target():
    assert set(TRANSITIONS) == set(JobStatus)
    assert set(ACTIONS) == set(Action)
    for sources, target in ACTIONS.values():
        assert sources
        assert target not in sources  # no action is a self-loop


def test_transitions_are_exactly_what_some_action_does():
    for status in JobStatus:
        reachable = {target for sources, target in ACTIONS.values() if status in sources}
        assert reachable == TRANSITIONS[status]


def test_finished_is_the_only_terminal_status():
    assert [status for status in JobStatus if not TRANSITIONS[status]] == [S.FINISHED]


# --- (a) every action from every status ----------------------------------------


@given(job=jobs, action=actions, now=aware_moments)
def test_an_action_moves_by_the_table_or_changes_nothing(job, action, now):
    before = replace(job)
    sources, target = ACTIONS[action]
    assert job.can(action) == (before.status in sources)
    try:
        job.apply(action, now)
    except InvalidTransition:
        assert not before.can(action)
        assert job == before
    else:
        assert before.can(action)
        assert job.status is target
        assert target in TRANSITIONS[before.status]
        assert (job.id, job.item_id, job.destination) == (
            before.id,
            before.item_id,
            before.destination,
        )


@given(job=jobs, action=actions, now=aware_moments)
def test_the_named_method_and_apply_agree(job, action, now):
    by_name, by_method = replace(job), replace(job)
    outcomes = []
    for copy, call in (
        (by_name, lambda j: j.apply(action, now)),
        (by_method, lambda j: getattr(j, action.value)(now)),
    ):
        try:
            call(copy)
            outcomes.append(None)
        except InvalidTransition:
            outcomes.append(InvalidTransition)
    assert outcomes[0] == outcomes[1]
    assert by_name == by_method


# --- (c) timestamps ------------------------------------------------------------


@given(job=jobs, action=actions, now=aware_moments)
def test_legal_actions_set_and_clear_timestamps(job, action, now):
    if not job.can(action):
        return
    before = replace(job)
    job.apply(action, now)
    now_utc = now.astimezone(UTC)
    if action in SETS_STARTED:
        expected = (now_utc, before.finished)
    elif action in SETS_FINISHED:
        expected = (before.started, now_utc)
    elif action is Action.RELEASE:
        expected = (None, before.finished)
    else:
        assert action is Action.RETRY
        expected = (None, None)
    assert (job.started, job.finished) == expected
    if action in SETS_STARTED | SETS_FINISHED:
        stamp = job.started if action in SETS_STARTED else job.finished
        # Converted to UTC, the same instant to the microsecond.
        assert stamp is not None
        assert stamp.tzinfo == UTC
        assert stamp.replace(tzinfo=None) == now.astimezone(UTC).replace(tzinfo=None)


@pytest.mark.parametrize("action", sorted(SETS_STARTED | SETS_FINISHED))
@given(now=naive_moments, status=statuses)
def test_a_naive_now_is_rejected_and_changes_nothing(action, now, status):
    job = job_in(status)
    before = replace(job)
    # An illegal move may report either mistake; a legal one the naive time.
    expected = InvalidInput if job.can(action) else (InvalidInput, InvalidTransition)
    with pytest.raises(expected):
        job.apply(action, now)
    assert job == before


@pytest.mark.parametrize("action", [Action.RELEASE, Action.RETRY])
@given(now=naive_moments)
def test_a_naive_now_is_rejected_by_the_clearing_actions_too(action, now):
    # release and retry stamp nothing, but they take `now` like the others;
    # a naive one is a caller's mistake all the same and must not pass
    # silently on some moves and fail on others.
    job = job_in(min(ACTIONS[action][0]))
    before = replace(job)
    with pytest.raises(InvalidInput):
        job.apply(action, now)
    assert job == before


# --- (d) sequences of actions from a new job ----------------------------------


def reachable_from(start: JobStatus) -> set[JobStatus]:
    seen, todo = {start}, [start]
    while todo:
        for target in DESIGN_TRANSITIONS[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@given(
    steps=st.lists(st.tuples(actions, aware_moments), max_size=40),
    item_id=ids,
    destination=ids,
)
def test_a_job_only_moves_along_the_table_and_finished_is_absorbing(steps, item_id, destination):
    job = FullText.new(item_id, destination)
    assert job.status is S.READY
    assert (job.started, job.finished) == (None, None)
    allowed = reachable_from(S.READY)
    visited = [job.status]
    for action, now in steps:
        before = replace(job)
        try:
            job.apply(action, now)
        except InvalidTransition:
            assert job == before
        else:
            assert job.status in DESIGN_TRANSITIONS[before.status]
            assert before.status is not S.FINISHED
        assert job.status in allowed
        if before.status is S.FINISHED:
            assert job == before
        visited.append(job.status)
    # Once finished, always finished.
    if S.FINISHED in visited:
        first = visited.index(S.FINISHED)
        assert set(visited[first:]) == {S.FINISHED}
    # A job is never running without a start time, nor done without an end.
    if job.status is S.RUNNING:
        assert job.started is not None
    if job.status in {S.FINISHED, S.FAILED, S.SKIPPED}:
        assert job.finished is not None
    if job.status in {S.READY, S.RUNNING}:
        assert job.finished is None
    if job.status is S.READY:
        assert job.started is None


# --- (e) attempts and reasons --------------------------------------------------


@given(
    job=jobs,
    attempts=st.integers(0, 2**31 - 1),
    error=st.none() | st.text(max_size=20),
    now=aware_moments,
)
def test_a_retry_starts_the_attempts_again_and_keeps_the_reason(job, attempts, error, now):
    job.attempts, job.last_error = attempts, error
    if not job.can(Action.RETRY):
        return
    job.retry(now)
    assert (job.status, job.attempts, job.last_error) == (S.READY, 0, error)
    assert (job.started, job.finished, job.not_before) == (None, None, None)


@given(job=jobs, attempts=st.integers(0, 1000), now=aware_moments)
def test_only_a_retry_changes_the_attempts(job, attempts, now):
    # A claim counts them (the store's business, not the entity's).
    job.attempts = attempts
    for action in Action:
        copy = replace(job)
        if copy.can(action):
            copy.apply(action, now)
            assert copy.attempts == (0 if action is Action.RETRY else attempts)


@given(job=jobs, attempts=st.integers(0, 1000) | st.integers(MAX_ATTEMPTS - 3, MAX_ATTEMPTS))
def test_an_attempt_counts_one_up_to_the_bound_and_never_past_it(job, attempts):
    job.attempts = attempts
    before = replace(job)
    if attempts < MAX_ATTEMPTS:
        job.attempt()
        assert job == replace(before, attempts=attempts + 1)
        return
    with pytest.raises(InvalidTransition, match=str(MAX_ATTEMPTS)):
        job.attempt()
    assert job == before


def test_the_bound_on_attempts_is_the_stores_32_bit_column():
    # One more attempt than the bound could not be stored.
    assert MAX_ATTEMPTS == MAX_INT32 == 2**31 - 1


@pytest.mark.parametrize("status", [S.READY, S.RUNNING])
def test_a_skip_records_its_reason_cut_and_escaped_as_a_failure_does(status):
    job = job_in(status)
    job.skip(error="no full text")
    assert (job.status, job.last_error) == (S.SKIPPED, "no full text")
    long = job_in(status)
    long.skip(error="nul\x00" + "x" * 5000)
    failed = job_in(S.RUNNING)
    failed.fail(error="nul\x00" + "x" * 5000)
    assert long.last_error == failed.last_error
    assert long.last_error is not None
    assert long.last_error.startswith("nul\\x00x")


def test_a_skip_without_a_reason_keeps_the_last_one():
    job = job_in(S.RUNNING)
    job.last_error = "HTTPError: 503"
    job.skip()
    assert job.last_error == "HTTPError: 503"


def test_an_illegal_skip_with_a_reason_changes_nothing():
    job = job_in(S.FINISHED)
    before = replace(job)
    with pytest.raises(InvalidTransition):
        job.skip(error="no full text")
    assert job == before
