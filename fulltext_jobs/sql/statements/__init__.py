"""The SQL that matters, in one place: every statement the SQLAlchemy
adapter runs, each with a comment on why it is correct under concurrency
and what keeps its cost flat.

`Statements` binds the declared tables, the item source and the dialect, so
each statement reads as SQL with no plumbing around it. The statements of a
fixed shape are built once, with named parameters (`:dest`, `:now`,
...), because building a statement costs more Python time than running a
claim costs the server.
"""

from __future__ import annotations

from fulltext_jobs.sql.statements.base import ORIGINAL_CREATOR_LOCK
from fulltext_jobs.sql.statements.cancels import CancelStatements
from fulltext_jobs.sql.statements.claims import ClaimStatements
from fulltext_jobs.sql.statements.dependencies import DependencyStatements
from fulltext_jobs.sql.statements.enqueue import EnqueueStatements
from fulltext_jobs.sql.statements.holds import HoldStatements
from fulltext_jobs.sql.statements.jobs import JobStatements
from fulltext_jobs.sql.statements.priorities import PriorityStatements
from fulltext_jobs.sql.statements.reads import ReadStatements

__all__ = ["ORIGINAL_CREATOR_LOCK", "Statements"]


class Statements(
    JobStatements,
    EnqueueStatements,
    ClaimStatements,
    HoldStatements,
    ReadStatements,
    CancelStatements,
    PriorityStatements,
    DependencyStatements,
):
    """The adapter's statements for one set of tables, item source and
    dialect: every part's, in one object (the adapter asks it for each
    statement by name)."""
