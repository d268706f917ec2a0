"""The one exception hierarchy of fulltext-jobs.

Every adapter raises these and only these for conditions the library can name;
driver exceptions are translated at the adapter boundary. Each class's
docstring is its default message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

__all__ = [
    "AllQueued",
    "DemoRefused",
    "DuplicateJob",
    "InvalidInput",
    "InvalidTransition",
    "JobNotFound",
    "JobsError",
    "LostClaim",
    "MissingDependency",
    "NoJobs",
    "SchemaNotMigrated",
    "SchemaTooNew",
    "StaleJob",
    "StaleJobs",
    "StoreError",
]


class JobsError(Exception):
    """A fulltext-jobs error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class AllQueued(JobsError):  # noqa: N818 - the original's name (ErrAllQueued)
    """Every eligible item already has a job for this destination."""


class NoJobs(JobsError):  # noqa: N818 - the original's name (ErrNoJobs)
    """No job is ready for this destination."""


class JobNotFound(JobsError):  # noqa: N818 - reads as a condition, like the original's
    """No job has this id."""


class DuplicateJob(JobsError):  # noqa: N818 - reads as a condition, like the original's
    """Another job already exists for this item and destination."""


class InvalidTransition(JobsError):  # noqa: N818 - reads as a condition
    """The job's status does not allow this change."""


class LostClaim(JobsError):  # noqa: N818 - reads as a condition
    """The caller no longer holds this job's claim: its lease ran out and the
    job was rescued or claimed again, or the claim has already been ended by
    a save. Nothing was changed."""


class StaleJob(LostClaim):
    """The stored job is no longer the one this copy was read from: it was
    saved, claimed, rescued or retried since (or, for a job never stored, a
    job with its id exists already, or, for a stored one, it was deleted).
    The save was refused and nothing was changed; read the job again.

    A subclass of `LostClaim`: a worker whose claim was taken over gets it
    too, since a rescue or a new claim changed the job."""


class StaleJobs(StaleJob):
    """Some jobs of a batch were refused, each for the reason a `StaleJob`
    gives; the others were saved (`save_many(..., atomic=False)`).

    `refused` holds the ids of the refused jobs, in the order given. A
    subclass of `StaleJob`, and so of `LostClaim`: code that catches those
    still catches it, but must know that the rest of the batch was saved."""

    def __init__(self, message: str | None = None, *, refused: Iterable[uuid.UUID] = ()) -> None:
        super().__init__(message)
        self.refused: tuple[uuid.UUID, ...] = tuple(refused)


class DemoRefused(JobsError):  # noqa: N818 - reads as a condition
    """The demo refused the database: it holds data the demo did not create
    (items, jobs or tables of an app). Nothing was changed. Run the demo on
    a database of its own.

    The message says what was found, in one line."""


class InvalidInput(JobsError, ValueError):  # noqa: N818 - reads as a condition
    """An argument is not acceptable (empty, too long, NUL byte, wrong type)."""


class MissingDependency(JobsError, ImportError):  # noqa: N818 - reads as a condition
    """An optional dependency is not installed.

    The message names the extra that brings it, for example
    `pip install 'fulltext-jobs[async]'`.
    """


class NotSupported(JobsError, NotImplementedError):  # noqa: N818 - reads as a condition
    """This repository cannot do what was asked (for example `hold_ready` on
    an adapter that has no transaction to hold); the message says what to
    use instead. Nothing was changed."""


class SchemaNotMigrated(JobsError):  # noqa: N818 - reads as a condition
    """The database schema is missing or not at the latest revision.

    Run `alembic upgrade head` (or `fulltext_jobs.upgrade(url)`) against it.
    """


class SchemaTooNew(JobsError):  # noqa: N818 - reads as a condition
    """The database's schema is newer than this version of fulltext-jobs can
    use: a migration outside this version's compatibility window has run.

    Upgrade the library (`pip install -U fulltext-jobs`), not the database.
    """


class StoreError(JobsError):
    """The database failed to carry out the operation.

    `retryable` is true when the same call may succeed if made again (a lost
    connection, a server restart, a serialization failure, a deadlock). The
    failed call's transaction was rolled back, unless the connection was lost
    while committing, in which case its effect is unknown.
    """

    def __init__(self, message: str | None = None, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
