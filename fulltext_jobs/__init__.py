"""fulltext-jobs: a ledger that has each item's full text processed exactly
once per destination, by many workers sharing one database.

A Python port of the Go package `jobs` of the Library of Congress
"Computing Cultural Heritage in the Cloud" project.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    # For mypy and readers; at run time each name is imported when first used
    # (`__getattr__` below).
    from fulltext_jobs._defaults import READ_URL_ENV
    from fulltext_jobs.audit import AuditCheck, AuditProblem
    from fulltext_jobs.domain import (
        ACTIONS,
        DEFAULT_LEASE,
        DEFAULT_SWEEP_INTERVAL,
        MAX_ATTEMPTS,
        MAX_DESTINATION_LENGTH,
        MAX_ERROR_LENGTH,
        MAX_ITEM_ID_LENGTH,
        TRANSITIONS,
        Action,
        Cancellation,
        DestinationStats,
        FullText,
        JobStatus,
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
    from fulltext_jobs.health import HealthCheck, HealthThresholds, QueueHealth
    from fulltext_jobs.memory import InMemoryRepository
    from fulltext_jobs.metrics import WorkerMetrics
    from fulltext_jobs.pipeline import Dependency
    from fulltext_jobs.port import ReadyListener
    from fulltext_jobs.rate_limit import RateTokens
    from fulltext_jobs.replica import ReadSource
    from fulltext_jobs.repository import Repository
    from fulltext_jobs.repository_async import AsyncRepository
    from fulltext_jobs.retry import RetryPolicy
    from fulltext_jobs.sql.engine import (
        DATABASE_URL_ENV,
        DEFAULT_DATABASE_URL,
        configure_sqlite,
        create_async_engine,
        create_engine,
    )
    from fulltext_jobs.sql.items import ItemSource
    from fulltext_jobs.sql.migrate import adopt, current_revision, downgrade, head_revision, upgrade
    from fulltext_jobs.sql.replica import read_source
    from fulltext_jobs.sql.repository import SqlAlchemyRepository
    from fulltext_jobs.sql.repository_async import AsyncSqlAlchemyRepository
    from fulltext_jobs.worker import (
        FailJob,
        Handler,
        RetryAfter,
        SkipJob,
        Worker,
        WorkerStats,
        cancel_requested,
    )

__all__ = [
    "ACTIONS",
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_LEASE",
    "DEFAULT_SWEEP_INTERVAL",
    "MAX_ATTEMPTS",
    "MAX_DESTINATION_LENGTH",
    "MAX_ERROR_LENGTH",
    "MAX_ITEM_ID_LENGTH",
    "READ_URL_ENV",
    "TRANSITIONS",
    "Action",
    "AllQueued",
    "AsyncRepository",
    "AsyncSqlAlchemyRepository",
    "AuditCheck",
    "AuditProblem",
    "Cancellation",
    "DemoRefused",
    "Dependency",
    "DestinationStats",
    "DuplicateJob",
    "FailJob",
    "FullText",
    "Handler",
    "HealthCheck",
    "HealthThresholds",
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
    "QueueHealth",
    "RateTokens",
    "ReadSource",
    "ReadyListener",
    "Repository",
    "RetryAfter",
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
    "cancel_requested",
    "configure_sqlite",
    "create_async_engine",
    "create_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "read_source",
    "upgrade",
]


#: The module that defines each name of `__all__`.
_HOMES: Final = {
    "AuditCheck": "fulltext_jobs.audit",
    "AuditProblem": "fulltext_jobs.audit",
    "ACTIONS": "fulltext_jobs.domain",
    "Action": "fulltext_jobs.domain",
    "DEFAULT_LEASE": "fulltext_jobs.domain",
    "DEFAULT_SWEEP_INTERVAL": "fulltext_jobs.domain",
    "Cancellation": "fulltext_jobs.domain",
    "Dependency": "fulltext_jobs.pipeline",
    "DestinationStats": "fulltext_jobs.domain",
    "FullText": "fulltext_jobs.domain",
    "JobStatus": "fulltext_jobs.domain",
    "MAX_ATTEMPTS": "fulltext_jobs.domain",
    "MAX_DESTINATION_LENGTH": "fulltext_jobs.domain",
    "MAX_ERROR_LENGTH": "fulltext_jobs.domain",
    "MAX_ITEM_ID_LENGTH": "fulltext_jobs.domain",
    "TRANSITIONS": "fulltext_jobs.domain",
    "DATABASE_URL_ENV": "fulltext_jobs._defaults",
    "DEFAULT_DATABASE_URL": "fulltext_jobs._defaults",
    "READ_URL_ENV": "fulltext_jobs._defaults",
    "ReadSource": "fulltext_jobs.replica",
    "read_source": "fulltext_jobs.sql.replica",
    "configure_sqlite": "fulltext_jobs.sql.engine",
    "create_async_engine": "fulltext_jobs.sql.engine",
    "create_engine": "fulltext_jobs.sql.engine",
    "AllQueued": "fulltext_jobs.errors",
    "DemoRefused": "fulltext_jobs.errors",
    "DuplicateJob": "fulltext_jobs.errors",
    "InvalidInput": "fulltext_jobs.errors",
    "InvalidTransition": "fulltext_jobs.errors",
    "JobNotFound": "fulltext_jobs.errors",
    "JobsError": "fulltext_jobs.errors",
    "LostClaim": "fulltext_jobs.errors",
    "MissingDependency": "fulltext_jobs.errors",
    "NoJobs": "fulltext_jobs.errors",
    "NotSupported": "fulltext_jobs.errors",
    "SchemaNotMigrated": "fulltext_jobs.errors",
    "SchemaTooNew": "fulltext_jobs.errors",
    "StaleJob": "fulltext_jobs.errors",
    "StaleJobs": "fulltext_jobs.errors",
    "StoreError": "fulltext_jobs.errors",
    "HealthCheck": "fulltext_jobs.health",
    "HealthThresholds": "fulltext_jobs.health",
    "QueueHealth": "fulltext_jobs.health",
    "InMemoryRepository": "fulltext_jobs.memory",
    "WorkerMetrics": "fulltext_jobs.metrics",
    "adopt": "fulltext_jobs.sql.migrate",
    "current_revision": "fulltext_jobs.sql.migrate",
    "downgrade": "fulltext_jobs.sql.migrate",
    "head_revision": "fulltext_jobs.sql.migrate",
    "upgrade": "fulltext_jobs.sql.migrate",
    "ReadyListener": "fulltext_jobs.port",
    "RateTokens": "fulltext_jobs.rate_limit",
    "Repository": "fulltext_jobs.repository",
    "AsyncRepository": "fulltext_jobs.repository_async",
    "RetryPolicy": "fulltext_jobs.retry",
    "ItemSource": "fulltext_jobs.sql.items",
    "SqlAlchemyRepository": "fulltext_jobs.sql.repository",
    "AsyncSqlAlchemyRepository": "fulltext_jobs.sql.repository_async",
    "FailJob": "fulltext_jobs.worker",
    "Handler": "fulltext_jobs.worker",
    "RetryAfter": "fulltext_jobs.worker",
    "SkipJob": "fulltext_jobs.worker",
    "Worker": "fulltext_jobs.worker",
    "WorkerStats": "fulltext_jobs.worker",
    "cancel_requested": "fulltext_jobs.worker",
}


def __getattr__(name: str) -> object:
    """The public name `name`, imported from its module when first used: a
    command that needs neither PostgreSQL nor the worker does not pay for
    importing them."""
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once; later look-ups are plain
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
