"""A worker of the *next* release, for the rolling-upgrade test: this
package's code, told that it is built for the test's expand-only revision.

The real next release does not exist yet, and the real previous one (before
the compatibility window) checked for its exact revision; so the test's old
workers are this package as released, and its new workers are this package
believing it is one revision ahead. Everything else is the public command
line: `python rolling_new_worker.py REVISION <fulltext-jobs arguments>`.
"""

from __future__ import annotations

import sys

from fulltext_jobs import cli
from fulltext_jobs.sql import migrate

if __name__ == "__main__":
    migrate.SCHEMA_REVISION = sys.argv[1]
    migrate._older_revisions.cache_clear()  # the pretence above changes what is older
    sys.argv = ["fulltext-jobs", *sys.argv[2:]]
    cli.main()
