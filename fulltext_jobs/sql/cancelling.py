"""Cancelling jobs, in SQL: `cancel`, `take_cancel_requests` and
`listen_for_cancels` of the SQLAlchemy adapter, on checked arguments.

`CancelOperations` is a part of `SqlOperations` (which it is mixed into);
the statements are `sql/statements/cancels.py`'s.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.engine import Engine

from fulltext_jobs.checks import read_clock
from fulltext_jobs.domain import Cancellation
from fulltext_jobs.port import ReadyListener
from fulltext_jobs.sql.notifications import PostgresReadyListener
from fulltext_jobs.sql.statements import Statements
from fulltext_jobs.sql.statements.cancels import CANCEL_CHANNEL
from fulltext_jobs.sql.transactions import Transactions

__all__ = ["CancelOperations"]

#: How many item ids (or job ids) one statement names: a long list is cut
#: into statements of this many, each with a short IN list (SQLite allows
#: 32,766 parameters; PostgreSQL plans a long list slowly).
CANCEL_BATCH: Final = 500


class CancelOperations:
    """The cancels of `SqlOperations`, which sets the attributes below."""

    _tx: Transactions
    _sql: Statements
    _clock: Callable[[], datetime]
    _lease: timedelta
    _engine: Engine

    def cancel(self, destination: str, item_ids: list[str] | None, error: str) -> Cancellation:
        now = read_clock(self._clock, self._lease)
        params: dict[str, object] = {"dest": destination, "now": now, "error": error}
        skipped: list[uuid.UUID] = []
        requested: list[uuid.UUID] = []
        with self._tx.connection("cancel", single_statement=True) as connection:
            connection.execute(self._sql.forget_stale_cancels)
        if item_ids is None:
            with self._tx.connection("cancel", single_statement=True) as connection:
                skipped += connection.execute(self._sql.cancel_all_ready, params).scalars()
            return Cancellation(sorted(skipped), [])
        for start in range(0, len(item_ids), CANCEL_BATCH):
            batch = {**params, "item_ids": item_ids[start : start + CANCEL_BATCH]}
            # One transaction a batch: the skips and the requests of the
            # batch, and the notification, which is sent when it commits.
            with self._tx.connection("cancel") as connection:
                skipped += connection.execute(self._sql.cancel_ready, batch).scalars()
                asked = list(connection.execute(self._sql.request_cancels, batch).scalars())
                if asked and connection.dialect.name == "postgresql":
                    connection.execute(self._sql.announce_cancel, {"dest": destination})
            requested += asked
        return Cancellation(sorted(skipped), sorted(requested))

    def take_cancel_requests(
        self, claims: list[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, str]:
        taken: dict[uuid.UUID, str] = {}
        if not claims:
            return taken
        held = dict(claims)
        for start in range(0, len(claims), CANCEL_BATCH):
            job_ids = [job_id for job_id, _ in claims[start : start + CANCEL_BATCH]]
            with self._tx.connection("take_cancel_requests", single_statement=True) as connection:
                rows = connection.execute(self._sql.take_cancel_requests, {"job_ids": job_ids})
                taken.update(
                    (row.job_id, row.error)
                    for row in rows
                    if held.get(row.job_id) == row.claim_token
                )
        return taken

    def listen_for_cancels(self, destination: str) -> ReadyListener | None:
        """On PostgreSQL, a listener on a connection of its own (see
        `sql/notifications.py`); None elsewhere."""
        if self._engine.dialect.name != "postgresql":
            return None
        return PostgresReadyListener(self._engine, destination, channel=CANCEL_CHANNEL)
