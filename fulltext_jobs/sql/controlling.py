"""What operators set per destination, in SQL: `controls`, `list_controls`,
`pause`, `resume` and `limit` of the SQLAlchemy adapter, on checked
arguments.

`ControlOperations` is a part of `SqlOperations` (which it is mixed into).
The claims read the same table through the guard of every claim statement
(`Statements._claim_allowed`), and the capped claims through their lock
(`fulltext_jobs.sql.claiming`), not through these.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from fulltext_jobs.checks import check_pause_ends_after, read_clock
from fulltext_jobs.domain import KEEP, DestinationControls, Limits
from fulltext_jobs.sql.rows import controls_of
from fulltext_jobs.sql.statements import Statements
from fulltext_jobs.sql.statements.controls import LIMITED
from fulltext_jobs.sql.transactions import Transactions

__all__ = ["ControlOperations"]


class ControlOperations:
    """The controls of `SqlOperations`, which sets the attributes below."""

    _tx: Transactions
    _sql: Statements
    _clock: Callable[[], datetime]
    _lease: timedelta

    def controls(self, destination: str) -> DestinationControls:
        with self._tx.connection("controls", single_statement=True) as connection:
            row = connection.execute(self._sql.read_controls, {"dest": destination}).one_or_none()
        return DestinationControls(destination) if row is None else controls_of(row)

    def list_controls(self) -> list[DestinationControls]:
        with self._tx.connection("list_controls", single_statement=True) as connection:
            return [controls_of(row) for row in connection.execute(self._sql.list_controls)]

    def pause(
        self, destination: str, until: datetime | None, reason: str | None, *, at_least: bool
    ) -> DestinationControls:
        now = read_clock(self._clock, self._lease)
        check_pause_ends_after(until, now)
        params = {
            "dest": destination,
            "now": now,
            "until": until,
            "reason": reason,
            "at_least": at_least,
        }
        with self._tx.connection("pause") as connection:
            row = connection.execute(self._sql.pause, params).one_or_none()
            if row is None:  # `at_least`, and a pause in force outlasts it
                row = connection.execute(self._sql.read_controls, {"dest": destination}).one()
        return controls_of(row)

    def limit(self, destination: str, limits: Limits) -> DestinationControls:
        params: dict[str, object] = {"dest": destination}
        for name in LIMITED:
            value = getattr(limits, name)
            params[name] = None if value is KEEP else value
            params[f"keep_{name}"] = value is KEEP
        with self._tx.connection("limit") as connection:
            row = connection.execute(self._sql.limit, params).one()
            if connection.dialect.name == "postgresql":
                # A cap raised or removed makes room: waiting workers claim.
                connection.execute(self._sql.announce_ready, {"dest": destination})
        return controls_of(row)

    def resume(self, destination: str) -> DestinationControls:
        with self._tx.connection("resume") as connection:
            row = connection.execute(self._sql.resume, {"dest": destination}).one_or_none()
            if row is None:
                return DestinationControls(destination)
            if connection.dialect.name == "postgresql":
                connection.execute(self._sql.announce_ready, {"dest": destination})
        return controls_of(row)
