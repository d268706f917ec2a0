"""The in-memory adapter's part that keeps dependencies between
destinations (`depend`, `undepend`, `dependencies`), records the items an
upstream job lets follow, and decides which items may get a job, as the
SQL adapter's tables and trigger do. Kept apart from `InMemoryRepository`,
which mixes it in; everything here runs on the state the adapter keeps,
under its lock."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import datetime

from fulltext_jobs.domain import FullText, JobStatus
from fulltext_jobs.pipeline import Dependency, check_acyclic

__all__ = ["MemoryPipeline"]


class MemoryPipeline:
    """The dependencies of `InMemoryRepository` (which sets the attributes
    it reads, and calls `_unblock` wherever a job's status changes)."""

    _lock: threading.Lock
    _jobs: dict[uuid.UUID, FullText]
    _by_pair: dict[tuple[str, str], uuid.UUID]
    _item_set: set[str]
    # (destination, upstream) -> the dependency, as fulltext_dependencies.
    _follows: dict[tuple[str, str], Dependency]
    # (destination, item id, upstream): an upstream job of the item reached
    # a status its dependency names, as fulltext_unblocked.
    _unblocked: set[tuple[str, str, str]]
    _swept_at: dict[str, datetime]

    # --- declarations ---------------------------------------------------

    def _depend(
        self, destination: str, upstreams: list[str], statuses: frozenset[JobStatus]
    ) -> list[Dependency]:
        with self._lock:
            check_acyclic(self._follows.values(), destination, upstreams)
            for upstream in upstreams:
                self._follows[destination, upstream] = Dependency(destination, upstream, statuses)
            return self._declared(destination)

    def _undepend(self, destination: str, upstreams: list[str] | None) -> list[Dependency]:
        with self._lock:
            for key in list(self._follows):
                if key[0] == destination and (upstreams is None or key[1] in upstreams):
                    del self._follows[key]
            self._unblocked = {
                key
                for key in self._unblocked
                if key[0] != destination or (upstreams is not None and key[2] not in upstreams)
            }
            # The producer sweeps at its next call (see `Upkeep.undepend`).
            self._swept_at.pop(destination, None)
            return self._declared(destination)

    def _dependencies(self, destination: str | None) -> list[Dependency]:
        with self._lock:
            return self._declared(destination)

    def _declared(self, destination: str | None) -> list[Dependency]:
        return sorted(d for d in self._follows.values() if destination in (None, d.destination))

    # --- which items follow -----------------------------------------------

    def _unblock(self, job: FullText) -> None:
        """`job` has just reached its status: record its item for every
        destination whose dependency on the job's destination names it
        (the SQL adapter's trigger)."""
        for dependency in self._follows.values():
            if dependency.upstream == job.destination and dependency.met_by(job.status):
                self._unblocked.add((dependency.destination, job.item_id, job.destination))

    def _unqueued(self, item_id: str, destination: str) -> bool:
        """Whether the item may get a job for `destination` now: it has
        none, and its job of every upstream has a status named."""
        if (item_id, destination) in self._by_pair:
            return False
        for (follower, upstream), dependency in self._follows.items():
            if follower != destination:
                continue
            upstream_job = self._by_pair.get((item_id, upstream))
            if upstream_job is None or not dependency.met_by(self._jobs[upstream_job].status):
                return False
        return True

    def _queue_unblocked(self, destination: str, make: Callable[[str], None]) -> int:
        """Take the items recorded for `destination` and `make` a job for
        each that is eligible and may follow (`_unqueued`), in id order;
        return how many. Items that may not follow yet are dropped: the
        upstream job they wait for records them again when it ends."""
        taken = sorted(key for key in self._unblocked if key[0] == destination)
        self._unblocked.difference_update(taken)
        made = 0
        for item_id in sorted({key[1] for key in taken}):
            if item_id in self._item_set and self._unqueued(item_id, destination):
                make(item_id)
                made += 1
        return made
