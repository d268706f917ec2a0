"""Destinations that follow one another, in SQL: declaring dependencies
(`depend`, `undepend`, `dependencies`) and queuing the items the upstreams'
ends let follow (`enqueue_unblocked`, the first step of `enqueue_new`).

`DependencyOperations` is a part of `SqlOperations` (which it is mixed
into); the statements are `sql/statements/dependencies.py`'s, the triggers
that record the items are migration 0018's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from fulltext_jobs.checks import read_clock
from fulltext_jobs.domain import JobStatus
from fulltext_jobs.pipeline import Dependency, check_acyclic
from fulltext_jobs.sql.rows import dependencies_of
from fulltext_jobs.sql.statements import Statements
from fulltext_jobs.sql.transactions import Transactions

__all__ = ["DependencyOperations"]


class DependencyOperations:
    """The dependencies of `SqlOperations`, which sets the attributes
    below."""

    _tx: Transactions
    _sql: Statements
    _clock: Callable[[], datetime]
    _lease: timedelta
    _enqueue_batch_size: int
    _enqueued: Callable[[str, int], None]

    def depend(
        self, destination: str, upstreams: list[str], statuses: frozenset[JobStatus]
    ) -> list[Dependency]:
        with self._tx.connection("depend") as connection:
            if self._sql.postgresql:
                connection.execute(self._sql.lock_dependencies)
            existing = dependencies_of(connection.execute(self._sql.all_dependencies))
            check_acyclic(existing, destination, upstreams)
            connection.execute(
                self._sql.delete_dependencies, {"dest": destination, "upstreams": upstreams}
            )
            connection.execute(
                self._sql.insert_dependency,
                [
                    {"dest": destination, "upstream": upstream, "status": status.value}
                    for upstream in upstreams
                    for status in sorted(statuses)
                ],
            )
            return _of(dependencies_of(connection.execute(self._sql.all_dependencies)), destination)

    def undepend(self, destination: str, upstreams: list[str] | None) -> list[Dependency]:
        with self._tx.connection("undepend") as connection:
            if upstreams is None:
                connection.execute(self._sql.delete_all_dependencies, {"dest": destination})
                connection.execute(self._sql.drop_all_unblocked, {"dest": destination})
            else:
                params = {"dest": destination, "upstreams": upstreams}
                connection.execute(self._sql.delete_dependencies, params)
                connection.execute(self._sql.drop_unblocked_of, params)
            connection.execute(self._sql.sweep_next, {"dest": destination})
            return _of(dependencies_of(connection.execute(self._sql.all_dependencies)), destination)

    def dependencies(self, destination: str | None) -> list[Dependency]:
        with self._tx.connection("dependencies", single_statement=True) as connection:
            return _of(dependencies_of(connection.execute(self._sql.all_dependencies)), destination)

    def enqueue_unblocked(self, destination: str, priority: int) -> int:
        """Queue the items recorded for `destination` by its upstreams'
        ends, each that is eligible and done upstream, as jobs of
        `priority`; return how many. Each batch's jobs are ready from the
        clock read once its rows are taken, not before: an upstream job
        stamps its end before the commit that records the item, so a
        follower's `ready_at` is never earlier than the end it follows (a
        time read at the start of the call could be). In batches of
        `enqueue_batch_size`, each a transaction that takes its rows,
        queues their items and deletes exactly those rows, so a crash
        between batches loses nothing and a row recorded meanwhile waits
        for the next call. Items that may not follow yet (another upstream
        not done) are dropped: that upstream's end records them again."""
        created = 0
        size = self._enqueue_batch_size
        while True:
            with self._tx.connection("enqueue_new (followers)") as connection:
                rows = connection.execute(
                    self._sql.take_unblocked, {"dest": destination, "n": size}
                ).all()
                if not rows:
                    break
                now = read_clock(self._clock, self._lease)
                pairs = [(row.item_id, row.upstream) for row in rows]
                batch = connection.execute(
                    self._sql.enqueue_batch(
                        destination,
                        None,
                        None,
                        None,
                        skip_queued=True,
                        priority=priority,
                        among=True,
                    ),
                    {"now": now, "item_ids": sorted({item for item, _ in pairs})},
                ).rowcount
                connection.execute(self._sql.drop_unblocked, {"dest": destination, "pairs": pairs})
            if batch:
                self._enqueued(destination, priority)
            created += batch
            if len(rows) < size:
                break
        return created


def _of(dependencies: list[Dependency], destination: str | None) -> list[Dependency]:
    return [d for d in dependencies if destination in (None, d.destination)]
