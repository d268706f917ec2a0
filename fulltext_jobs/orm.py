"""An import path kept for code written against 0.1.0: read-only mapped
classes and alembic hooks for an app's ORM, whose home is
`fulltext_jobs.sql.orm`."""

from fulltext_jobs.sql.orm import (
    FullTextRecord,
    ItemRecord,
    LedgerBase,
    include_name,
    include_object,
)

__all__ = ["FullTextRecord", "ItemRecord", "LedgerBase", "include_name", "include_object"]
