"""Defaults that the command line's help shows, in a module that imports
nothing: `fulltext-jobs --help` builds every command's options, and would
otherwise import SQLAlchemy (through `engine`, `migrate` and `dashboard`,
which use these and re-export them) only to print them."""

from __future__ import annotations

from typing import Final

#: The environment variable that names the database, if no URL is given.
DATABASE_URL_ENV: Final = "FULLTEXT_JOBS_DATABASE_URL"

#: The environment variable that names a replica for the commands that only
#: read (`stats`, `jobs`, `audit` without `--fix`, `dashboard`).
READ_URL_ENV: Final = "FULLTEXT_JOBS_READ_URL"

#: The environment variable that turns OpenTelemetry on for `fulltext-jobs
#: work` (as `--otel` does): 1, true or yes.
OTEL_ENV: Final = "FULLTEXT_JOBS_OTEL"

#: The embedded default: a SQLite file in the working directory.
DEFAULT_DATABASE_URL: Final = "sqlite:///fulltext-jobs.sqlite3"

#: The demo's own SQLite file in the working directory: never the main
#: default, so a real ledger there never holds demo items.
DEFAULT_DEMO_URL: Final = "sqlite:///fulltext-jobs-demo.sqlite3"

#: Where an adopted database's items come from, unless told otherwise: the
#: original's crawler table, eligible once the item's metadata is fetched.
ORIGINAL_ITEMS_TABLE: Final = "items"
ORIGINAL_ELIGIBLE: Final = "api IS NOT NULL"

#: Seconds between the dashboard page's refreshes, by default.
DEFAULT_REFRESH: Final = 5.0
