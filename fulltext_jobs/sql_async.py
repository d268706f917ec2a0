"""An import path kept for code written against 0.1.0: the asyncio adapter,
whose home is `fulltext_jobs.sql.repository_async`."""

from fulltext_jobs.sql.repository_async import (
    AsyncSqlAlchemyRepository,
)

__all__ = ["AsyncSqlAlchemyRepository"]
