"""A third-party adapter, as far as the contract suite knows: a `Repository`
of its own that keeps its jobs in an `InMemoryRepository` it delegates to.
The port checks each argument before a protected method is called, so each
method here only hands it on. tests/test_toy_adapter.py runs the shipped
suite on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from fulltext_jobs import InMemoryRepository, Repository
from fulltext_jobs.domain import DEFAULT_LEASE


class ToyRepository(Repository):
    def __init__(
        self, *, clock: Callable[[], datetime] | None = None, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self._store = InMemoryRepository(clock=clock, lease=lease)

    def add_items(self, item_ids: Iterable[str], *, batch_size: int = 10_000) -> int:
        return self._store.add_items(item_ids, batch_size=batch_size)

    def _get_fulltext(self, job_id):
        return self._store._get_fulltext(job_id)

    def _save_fulltext(self, job):
        self._store._save_fulltext(job)

    def _create_job_for_unqueued(self, destination, priority):
        return self._store._create_job_for_unqueued(destination, priority)

    def _get_ready_job(self, destination):
        return self._store._get_ready_job(destination)

    def _enqueue_unqueued(self, destination, *, limit, progress, priority):
        return self._store._enqueue_unqueued(
            destination, limit=limit, progress=progress, priority=priority
        )

    def _claim_ready(self, destination, n):
        return self._store._claim_ready(destination, n)

    def _save_many(self, jobs):
        self._store._save_many(jobs)

    def _save_each(self, jobs):
        return self._store._save_each(jobs)

    def _hold_ready(self, destination, n):
        return self._store._hold_ready(destination, n)

    def _enqueue_new(self, destination, sweep_interval, priority):
        return self._store._enqueue_new(destination, sweep_interval, priority)

    def _has_destination(self, destination):
        return self._store._has_destination(destination)

    def _count_unqueued(self, destination):
        return self._store._count_unqueued(destination)

    def _lag(self, destination):
        return self._store._lag(destination)

    def _stats(self, destination, unqueued):
        return self._store._stats(destination, unqueued)

    def _heartbeat(self, job):
        return self._store._heartbeat(job)

    def _rescue_expired(self, destination, max_attempts):
        return self._store._rescue_expired(destination, max_attempts)

    def _retry(self, destination, statuses, item_ids):
        return self._store._retry(destination, statuses, item_ids)

    def _list_jobs(self, destination, statuses, limit, after):
        return self._store._list_jobs(destination, statuses, limit, after)

    def _next_due(self, destination):
        return self._store._next_due(destination)

    def _take_rate_tokens(self, destination, rate, n, burst):
        return self._store._take_rate_tokens(destination, rate, n, burst)

    def _audit(self, destination, settings):
        return self._store._audit(destination, settings)

    def _release_unleased(self, older_than, destination):
        return self._store._release_unleased(older_than, destination)

    def _controls(self, destination):
        return self._store._controls(destination)

    def _list_controls(self):
        return self._store._list_controls()

    def _pause(self, destination, until, reason, *, at_least):
        return self._store._pause(destination, until, reason, at_least=at_least)

    def _resume(self, destination):
        return self._store._resume(destination)

    def _limit(self, destination, limits):
        return self._store._limit(destination, limits)

    def _cancel(self, destination, item_ids, error):
        return self._store._cancel(destination, item_ids, error)

    def _prioritize(self, destination, item_ids, priority):
        return self._store._prioritize(destination, item_ids, priority)

    def _take_cancel_requests(self, claims):
        return self._store._take_cancel_requests(claims)

    def _listen_for_cancels(self, destination):
        return self._store._listen_for_cancels(destination)
