"""Reads from a replica: what the server a read went to says of itself
(`ReadSource`), and the one way every reader tells it beside its figures
(`ReadSource.label`).

A streaming replica (a PostgreSQL hot standby) holds the primary's ledger
as of the last commit it replayed, so a figure read there lags the primary
by the replication delay. The server says whether it is a replica
(`pg_is_in_recovery()`), when the last transaction it replayed was
committed on the primary (`pg_last_xact_replay_timestamp()`), how much WAL
it has received but not replayed yet, and whether it is receiving WAL now
(`pg_stat_wal_receiver`). None of that is the lag itself: the age of the
last replayed commit also grows while the primary commits nothing, when
the replica is fully caught up. So the label shows the three facts, not a
single "lag": the age of the last replayed commit (an upper bound of the
lag while the primary is busy), whether the replica has replayed all it
received, and whether it is still receiving (a replica cut off from its
primary can be any age). The age is the replica's clock against the
primary's: clock skew between the two servers adds to it.

Imports nothing of SQL (the command line, the dashboard and `/metrics`
all use it); the reading itself is `fulltext_jobs.sql.replica`.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from fulltext_jobs.health import span_text

__all__ = ["ReadSource"]


@dataclasses.dataclass(frozen=True, slots=True)
class ReadSource:
    """The server a read went to, as it described itself at the read.

    `replica` is whether it is in recovery (a standby: its figures lag its
    primary). The other fields are None on a primary and where the server
    does not tell (a role without `pg_read_all_stats` may not see the WAL
    receiver's state)."""

    #: The server is in recovery: a standby, whose data lag its primary.
    replica: bool
    #: How long before the read the last transaction the replica replayed
    #: was committed on the primary; None if it has replayed none since it
    #: started. Grows on a caught-up replica while the primary is idle.
    last_replay_age: timedelta | None = None
    #: Bytes of WAL received from the primary and not replayed yet (0: it has
    #: replayed everything it received).
    replay_pending: int | None = None
    #: Whether a WAL receiver is streaming from a primary now.
    receiving: bool | None = None

    def label(self) -> str:
        """One line that says where the figures beside it were read, for a
        person: on a replica, the age of its last replayed commit, what it
        has still to replay and whether it is receiving."""
        if not self.replica:
            return "read from a primary (not in recovery): figures are current"
        parts = [
            "no commit replayed since it started"
            if self.last_replay_age is None
            else f"last replayed commit {_age(self.last_replay_age)} old"
        ]
        if self.replay_pending is not None:
            parts.append(
                "all received WAL replayed"
                if self.replay_pending == 0
                else f"{self.replay_pending:,} bytes of received WAL not replayed yet"
            )
        if self.receiving is not None:
            parts.append(
                "streaming from its primary"
                if self.receiving
                else "NOT receiving from a primary: its figures may be of any age"
            )
        return "read from a replica, figures lag the primary: " + ", ".join(parts)

    def as_json(self) -> dict[str, object]:
        """The reading as a JSON object; the age in seconds."""
        return {
            "replica": self.replica,
            "last_replay_age_seconds": None
            if self.last_replay_age is None
            else self.last_replay_age.total_seconds(),
            "replay_pending_bytes": self.replay_pending,
            "receiving": self.receiving,
        }


def _age(span: timedelta) -> str:
    """A replica's age to a tenth of a second under a minute (lags are
    often below one), as a span beyond."""
    seconds = span.total_seconds()
    return f"{max(0.0, seconds):.1f}s" if seconds < 60 else span_text(seconds)
