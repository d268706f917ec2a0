"""An import path kept for code written against 0.1.0: the engines set up
for the ledger, whose home is `fulltext_jobs.sql.engine`, and the
classification of driver errors, whose home is `fulltext_jobs.sql.errors`."""

from fulltext_jobs.sql.engine import (
    DATABASE_URL_ENV,
    DEFAULT_DATABASE_URL,
    configure_sqlite,
    create_async_engine,
    create_engine,
    parse_url,
    ping_idle_connections,
    quiet_lost_pipelines,
    require_asyncio,
)
from fulltext_jobs.sql.errors import is_retryable, store_error

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "configure_sqlite",
    "create_async_engine",
    "create_engine",
    "is_retryable",
    "parse_url",
    "ping_idle_connections",
    "quiet_lost_pipelines",
    "require_asyncio",
    "store_error",
]
