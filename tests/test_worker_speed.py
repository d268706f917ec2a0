"""The leased worker's lean batch loop keeps its promises: what it no longer
does for every job (wake the heartbeat thread, copy each job for the
heartbeat, enter `log_context`, keep the outcome apart from the claimed job)
must not cost a heartbeat, a log field or an outcome.

Behaviour only: no assertion is on speed (benchmarks/run.py measures that).
Every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

import pytest

from fulltext_jobs import FullText, InMemoryRepository, JobStatus, RetryPolicy
from fulltext_jobs.logs import JsonFormatter, context_fields, log_context
from fulltext_jobs.worker import FailJob, SkipJob, Worker

DEST = "language-detection"

#: The longest any test waits for something to happen.
BOUND_SECONDS = 20.0


def queued_repo(n: int, repo_class: type[InMemoryRepository] = InMemoryRepository, **kwargs):
    repo = repo_class(items=[f"item-{k:04}" for k in range(n)], **kwargs)
    assert repo.enqueue_unqueued(DEST) == n
    return repo


def statuses(repo: InMemoryRepository) -> dict[str, JobStatus]:
    return {job.item_id: job.status for job in repo.list_jobs(DEST)}


def test_a_slow_job_claimed_after_quick_ones_still_gets_its_heartbeats():
    # One job a claim. The quick jobs' claims set the heartbeat thread's next
    # look a third of the lease away; the slow job, claimed just after, falls
    # due later than that, so no claim wakes the thread: its next look must
    # find the slow job and keep its lease alive. The producer rescues
    # expired jobs every 50 ms meanwhile.
    repo = queued_repo(3, lease=timedelta(seconds=1))

    def handler(job: FullText) -> None:
        if job.item_id == "item-0002":
            time.sleep(2)  # twice the lease

    stats = Worker(
        repo,
        DEST,
        handler,
        max_attempts=1,
        poll_interval=0.01,
        max_poll_interval=0.05,
        produce=True,
        rescue_interval=0.05,
    ).run(until_idle=True, install_signal_handlers=False)

    assert (stats.finished, stats.rescued, stats.lost_claims) == (3, 0, 0)
    assert stats.heartbeats >= 2
    assert set(statuses(repo).values()) == {JobStatus.FINISHED}


class SlowSave(InMemoryRepository):
    """Holds its first `save_many` until the worker has sent a heartbeat:
    the first heartbeat of those jobs comes after their handlers ended."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beats = threading.Event()
        self.saves = 0

    def heartbeat(self, job: FullText):
        extended = super().heartbeat(job)
        self.beats.set()
        return extended

    def save_many(self, jobs: Iterable[FullText], *, atomic: bool = True) -> None:
        self.saves += 1
        if self.saves == 1:
            assert self.beats.wait(BOUND_SECONDS), "no heartbeat during the save"
        super().save_many(jobs, atomic=atomic)


def test_a_heartbeat_of_jobs_already_handled_keeps_their_claims():
    # The heartbeat's copy of a job is made at its first heartbeat, here
    # from a job its handler has ended (finished, failed, skipped, retried):
    # it still carries the claim, so the lease is extended and the outcomes
    # saved.
    repo = queued_repo(4, SlowSave)

    def handler(job: FullText) -> None:
        if job.item_id == "item-0001":
            raise SkipJob
        if job.item_id == "item-0002":
            raise FailJob("bad text")
        if job.item_id == "item-0003":
            raise RuntimeError("try again")

    stats = Worker(
        repo,
        DEST,
        handler,
        batch_size=4,
        # The retried job comes back at once, and fails for good then.
        retry=RetryPolicy(max_attempts=2, base_delay=timedelta(0), max_delay=timedelta(0)),
        heartbeat_interval=0.02,
        poll_interval=0.01,
        max_poll_interval=0.05,
    ).run(until_idle=True, install_signal_handlers=False)

    assert stats.heartbeats >= 1
    assert stats.lost_claims == 0
    assert (stats.finished, stats.skipped, stats.failed, stats.retried) == (1, 1, 2, 1)
    assert set(statuses(repo).values()) == {
        JobStatus.FINISHED,
        JobStatus.SKIPPED,
        JobStatus.FAILED,
    }


@pytest.mark.parametrize("in_transaction", [False, True])
def test_the_log_context_inside_a_handler_is_its_job_and_is_gone_after_it(in_transaction):
    repo = queued_repo(3)
    inside: list[tuple[str, dict[str, str]]] = []

    def handler(job: FullText) -> None:
        inside.append((str(job.id), dict(context_fields())))

    worker = Worker(
        repo,
        DEST,
        handler,
        batch_size=2,
        in_transaction=in_transaction,
        poll_interval=0.01,
        max_poll_interval=0.05,
    )
    stats = worker.run(until_idle=True, install_signal_handlers=False)

    assert stats.finished == 3
    assert [fields for _, fields in inside] == [
        {"destination": DEST, "job_id": job_id} for job_id, _ in inside
    ]
    assert len({job_id for job_id, _ in inside}) == 3
    assert dict(context_fields()) == {}


def test_a_handlers_json_records_carry_its_job_and_nest_with_its_own_context():
    repo = queued_repo(2)
    lines: list[dict[str, str]] = []
    formatter = JsonFormatter()

    def handler(job: FullText) -> None:
        record = logging.LogRecord("an-app", logging.INFO, __file__, 1, "hello", None, None)
        lines.append({"id": str(job.id), **json.loads(formatter.format(record))})
        with log_context(destination="elsewhere"):
            lines.append({"id": str(job.id), **json.loads(formatter.format(record))})

    stats = Worker(
        repo, DEST, handler, batch_size=2, poll_interval=0.01, max_poll_interval=0.05
    ).run(until_idle=True, install_signal_handlers=False)

    assert stats.finished == 2
    assert [(line["destination"], line["job_id"]) for line in lines] == [
        (DEST, lines[0]["id"]),
        ("elsewhere", lines[0]["id"]),
        (DEST, lines[2]["id"]),
        ("elsewhere", lines[2]["id"]),
    ]
    assert lines[0]["id"] != lines[2]["id"]


def test_a_handler_that_changes_its_job_changes_nothing_that_is_saved():
    # The outcome is settled on the claimed job itself, after the handler
    # ended: the handler's own copy, whatever it did to it, is not saved.
    repo = queued_repo(2)

    def handler(job: FullText) -> None:
        job.release()
        job.claim_token = None
        job.last_error = "scribbled"

    stats = Worker(
        repo, DEST, handler, batch_size=2, poll_interval=0.01, max_poll_interval=0.05
    ).run(until_idle=True, install_signal_handlers=False)

    assert (stats.finished, stats.lost_claims) == (2, 0)
    for job in repo.list_jobs(DEST):
        assert (job.status, job.last_error, job.claim_token) == (JobStatus.FINISHED, None, None)


class ReadyBeforeListening(InMemoryRepository):
    """Makes its jobs ready after the claim that found nothing and before
    the listener listens: the notification of them reaches no one."""

    def listen(self, destination: str):
        assert self.enqueue_unqueued(DEST) == 1
        return super().listen(destination)


def test_jobs_made_ready_before_the_listener_listens_are_claimed_without_waiting_a_poll():
    # The listener starts only when a claim finds nothing; once it listens,
    # it wakes the claim threads, which claim again rather than sleep out
    # their five-minute poll.
    repo = ReadyBeforeListening(items=["a"])
    handled = threading.Event()
    worker = Worker(
        repo,
        DEST,
        lambda _job: handled.set(),
        poll_interval=300,
        max_poll_interval=300,
        shutdown_timeout=5,
    )
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    try:
        assert handled.wait(BOUND_SECONDS), "the worker slept through the jobs"
    finally:
        worker.stop()
        thread.join(BOUND_SECONDS)
    assert not thread.is_alive()
    assert worker.stats.finished == 1
