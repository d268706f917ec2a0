"""`python -m fulltext_jobs`: the same command line as `fulltext-jobs`."""

from __future__ import annotations

from fulltext_jobs.cli import main

if __name__ == "__main__":
    main()
