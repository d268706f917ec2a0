"""The worker: claim the jobs of one destination, run a handler on each, and
save what came of it (see `fulltext_jobs.worker.core`)."""

from fulltext_jobs.worker.core import (
    MAX_CONCURRENCY,
    MAX_SECONDS,
    FailJob,
    Handler,
    SkipJob,
    Worker,
    WorkerStats,
)

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_SECONDS",
    "FailJob",
    "Handler",
    "SkipJob",
    "Worker",
    "WorkerStats",
]
