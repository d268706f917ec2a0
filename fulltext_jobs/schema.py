"""An import path kept for code written against 0.1.0: the declared tables,
whose home is `fulltext_jobs.sql.schema`."""

from fulltext_jobs.sql.schema import (
    JOBS_SCHEMA,
    SCHEMA_REVISION,
    STATUS_VALUES,
    VERSION_TABLE,
    WINDOW_TABLE,
    Tables,
    UTCDateTime,
    tables_for,
)

__all__ = [
    "JOBS_SCHEMA",
    "SCHEMA_REVISION",
    "STATUS_VALUES",
    "VERSION_TABLE",
    "WINDOW_TABLE",
    "Tables",
    "UTCDateTime",
    "tables_for",
]
