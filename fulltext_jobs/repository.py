"""The port: what every store of jobs promises.

Adapters (`InMemoryRepository`, `SqlAlchemyRepository`) implement it; the
worker and the command line use nothing else. Every method validates its
arguments before touching the store, so bad input raises `InvalidInput` and
writes nothing.
"""

from __future__ import annotations

import abc
import uuid

from fulltext_jobs.domain import FullText

__all__ = ["Repository"]


class Repository(abc.ABC):
    """A ledger of full-text jobs: at most one job per (item, destination)."""

    @abc.abstractmethod
    def get_fulltext(self, job_id: uuid.UUID | str) -> FullText:
        """Return the job with this id, as a copy the caller may change.

        Raises `JobNotFound` if there is none and `InvalidInput` if `job_id`
        is not a UUID (or its string form).
        """

    @abc.abstractmethod
    def save_fulltext(self, job: FullText) -> None:
        """Store `job`, inserting it or replacing the job with the same id.

        Raises `DuplicateJob` if another job (another id) already exists for
        the same item and destination, and `InvalidInput` if the job has an
        unknown status, a bad item id or destination, or a naive timestamp.
        Either way nothing is written.
        """

    @abc.abstractmethod
    def create_job_for_unqueued(self, destination: str) -> FullText:
        """Create and return a `ready` job for one eligible item that has no
        job for `destination`.

        Safe under any number of concurrent callers: no item gets two jobs,
        and a caller that loses a race to another tries the next item rather
        than failing. Raises `AllQueued` when every eligible item already has
        a job for `destination` (or there are no eligible items), and
        `InvalidInput` for a bad destination.
        """

    @abc.abstractmethod
    def get_ready_job(self, destination: str) -> FullText:
        """Claim the oldest `ready` job for `destination`: mark it `running`,
        set `started`, and return it.

        Safe under any number of concurrent callers: each job is handed to
        exactly one of them. Raises `NoJobs` when no job is ready for
        `destination`, and `InvalidInput` for a bad destination.
        """
