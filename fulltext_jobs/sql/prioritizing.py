"""Changing the priority of ready jobs, in SQL: `prioritize` of the
SQLAlchemy adapter, on checked arguments.

`PriorityOperations` is a part of `SqlOperations` (which it is mixed into);
the statement is `sql/statements/priorities.py`'s.
"""

from __future__ import annotations

from typing import Final

from fulltext_jobs.sql.floors import ClaimFloors
from fulltext_jobs.sql.statements import Statements
from fulltext_jobs.sql.transactions import Transactions

__all__ = ["PriorityOperations"]

#: How many item ids one statement names (as `cancel`'s batches: a short
#: IN list each).
PRIORITIZE_BATCH: Final = 500


class PriorityOperations:
    """The priority changes of `SqlOperations`, which sets the attributes
    below."""

    _tx: Transactions
    _sql: Statements
    _floors: ClaimFloors | None

    def prioritize(self, destination: str, item_ids: list[str], priority: int) -> int:
        changed = 0
        for start in range(0, len(item_ids), PRIORITIZE_BATCH):
            batch = {
                "dest": destination,
                "item_ids": item_ids[start : start + PRIORITIZE_BATCH],
                "priority": priority,
            }
            with self._tx.connection("prioritize", single_statement=True) as connection:
                written = len(connection.execute(self._sql.prioritize, batch).all())
            changed += written
            # A raised priority puts the job behind this process's claim
            # floor, where its next claim would not look.
            if written and self._floors is not None:
                self._floors.forget(destination)
        return changed
