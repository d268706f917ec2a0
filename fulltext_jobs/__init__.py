"""fulltext-jobs: a ledger that has each item's full text processed exactly
once per destination, by many workers sharing one database.

A Python port of the Go package `jobs` of the Library of Congress
"Computing Cultural Heritage in the Cloud" project.
"""

from __future__ import annotations

from fulltext_jobs.audit import AuditCheck, AuditProblem
from fulltext_jobs.domain import (
    ACTIONS,
    DEFAULT_LEASE,
    DEFAULT_SWEEP_INTERVAL,
    MAX_DESTINATION_LENGTH,
    MAX_ERROR_LENGTH,
    MAX_ITEM_ID_LENGTH,
    TRANSITIONS,
    Action,
    DestinationStats,
    FullText,
    JobStatus,
)
from fulltext_jobs.engine import (
    DATABASE_URL_ENV,
    DEFAULT_DATABASE_URL,
    configure_sqlite,
    create_async_engine,
    create_engine,
)
from fulltext_jobs.errors import (
    AllQueued,
    DemoRefused,
    DuplicateJob,
    InvalidInput,
    InvalidTransition,
    JobNotFound,
    JobsError,
    LostClaim,
    MissingDependency,
    NoJobs,
    NotSupported,
    SchemaNotMigrated,
    SchemaTooNew,
    StaleJob,
    StaleJobs,
    StoreError,
)
from fulltext_jobs.memory import InMemoryRepository
from fulltext_jobs.metrics import WorkerMetrics
from fulltext_jobs.migrate import adopt, current_revision, downgrade, head_revision, upgrade
from fulltext_jobs.rate_limit import RateTokens
from fulltext_jobs.repository import AsyncRepository, ReadyListener, Repository
from fulltext_jobs.retry import RetryPolicy
from fulltext_jobs.sql import ItemSource, SqlAlchemyRepository
from fulltext_jobs.sql_async import AsyncSqlAlchemyRepository
from fulltext_jobs.worker import FailJob, Handler, SkipJob, Worker, WorkerStats

__all__ = [
    "ACTIONS",
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_LEASE",
    "DEFAULT_SWEEP_INTERVAL",
    "MAX_DESTINATION_LENGTH",
    "MAX_ERROR_LENGTH",
    "MAX_ITEM_ID_LENGTH",
    "TRANSITIONS",
    "Action",
    "AllQueued",
    "AsyncRepository",
    "AsyncSqlAlchemyRepository",
    "AuditCheck",
    "AuditProblem",
    "DemoRefused",
    "DestinationStats",
    "DuplicateJob",
    "FailJob",
    "FullText",
    "Handler",
    "InMemoryRepository",
    "InvalidInput",
    "InvalidTransition",
    "ItemSource",
    "JobNotFound",
    "JobStatus",
    "JobsError",
    "LostClaim",
    "MissingDependency",
    "NoJobs",
    "NotSupported",
    "RateTokens",
    "ReadyListener",
    "Repository",
    "RetryPolicy",
    "SchemaNotMigrated",
    "SchemaTooNew",
    "SkipJob",
    "SqlAlchemyRepository",
    "StaleJob",
    "StaleJobs",
    "StoreError",
    "Worker",
    "WorkerMetrics",
    "WorkerStats",
    "adopt",
    "configure_sqlite",
    "create_async_engine",
    "create_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]
