"""The no-op handler of the peer benchmark's command-line run:
`fulltext-jobs work bench --handler noop_handler:run`, from this folder."""

from __future__ import annotations

from fulltext_jobs import FullText


def run(job: FullText) -> None:
    """Do nothing: the benchmark measures the worker, not the work."""
    del job
