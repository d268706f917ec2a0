"""An import path kept for code written against 0.1.0: the SQL is in
`fulltext_jobs.sql.statements`, the item source in `fulltext_jobs.sql.items`,
the driver-level compiler in `fulltext_jobs.sql.compiled` and the row mappers
in `fulltext_jobs.sql.rows`."""

from fulltext_jobs.sql.compiled import compile_for_driver
from fulltext_jobs.sql.items import ItemSource
from fulltext_jobs.sql.rows import (
    held_arrays,
    held_from_values,
    job_arrays,
    job_from_values,
    job_row,
    to_job,
)
from fulltext_jobs.sql.statements import ORIGINAL_CREATOR_LOCK, Statements

__all__ = [
    "ORIGINAL_CREATOR_LOCK",
    "ItemSource",
    "Statements",
    "compile_for_driver",
    "held_arrays",
    "held_from_values",
    "job_arrays",
    "job_from_values",
    "job_row",
    "to_job",
]
