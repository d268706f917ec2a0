"""Wake-ups when jobs become ready, through PostgreSQL's LISTEN and NOTIFY.

Triggers on `jobs.fulltext` (migration 0004) send a notification on the
channel `READY_CHANNEL`, with the destination as payload, when a transaction
that made jobs ready commits: inserts, releases, rescues and retries, made by
this library, the Go original or an app's own SQL. A listener holds one
connection of its own, taken from the repository's engine (same URL, same
connect arguments) and detached from its pool, in autocommit, and waits on
it; nothing else runs on that connection.

The same listener waits on `CANCEL_CHANNEL` for cancel requests of running
jobs (`Repository.listen_for_cancels`), which `cancel` notifies itself.

A notification is a hint: if the connection is lost, notifications sent
meanwhile are gone, so the first wait after listening again returns True
and the worker claims to find out.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.engine import Engine

from fulltext_jobs._lazy import IfImported
from fulltext_jobs.port import ReadyListener
from fulltext_jobs.sql.errors import translated

if TYPE_CHECKING:
    import psycopg
else:
    # Only to test objects against: a listener exists only on a PostgreSQL
    # engine, which imported psycopg; the SQLite adapter imports this module.
    psycopg = IfImported("psycopg")

__all__ = ["READY_CHANNEL", "PostgresReadyListener"]

#: The channel the triggers notify on; the payload is the destination.
READY_CHANNEL: Final = "fulltext_jobs_ready"


class PostgresReadyListener(ReadyListener):
    """Waits for the notifications of one destination on `channel` (the
    ready jobs', by default), on a connection of its own. Listening starts
    when it is made: a notification sent after that is never missed while
    the connection lives.

    Raises `StoreError` if the server cannot be reached: retryable while
    it is away or restarting, not retryable if it refuses the connection for
    good (a wrong password, an unknown database or role). `wait` raises
    the same way, after which the next `wait` listens again.
    """

    def __init__(self, engine: Engine, destination: str, *, channel: str = READY_CHANNEL) -> None:
        self._engine = engine
        self._destination = destination
        self._channel = channel
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None
        self._closed = False
        self._connection = self._listen()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._closed:
                return False
            if self._connection is None:
                # Lost earlier: what was notified meanwhile is gone, so say
                # "maybe" at once.
                self._connection = self._listen()
                return True
            connection = self._connection
            with self._translated():
                try:
                    # At least one look, even with no time left: a
                    # notification may already be waiting.
                    while True:
                        left = max(0.0, deadline - time.monotonic())
                        for notification in connection.notifies(timeout=left, stop_after=1):
                            if notification.payload == self._destination:
                                return True
                        if time.monotonic() >= deadline:
                            break
                except psycopg.Error:
                    self._discard()
                    raise
        return False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._discard()

    def _listen(self) -> psycopg.Connection[Any]:
        with self._translated():
            # A new connection that fails raises the driver's own error
            # here (SQLAlchemy wraps only what runs on a Connection).
            fairy = self._engine.raw_connection()
        # Out of the pool for good: it waits in autocommit for as long as
        # the listener lives, and its close really closes it.
        fairy.detach()
        connection = fairy.dbapi_connection
        if not isinstance(connection, psycopg.Connection):  # pragma: no cover - psycopg only
            fairy.close()
            msg = f"expected a psycopg connection, not {type(connection).__name__}"
            raise TypeError(msg)
        with self._translated():
            try:
                connection.rollback()
                connection.autocommit = True
                connection.execute(f"LISTEN {self._channel}")
            except psycopg.Error:
                connection.close()
                raise
        return connection

    def _translated(self) -> translated:
        """Errors as a `StoreError`: retryable (the next wait listens again)
        unless the server refuses this connection for good."""
        return translated(f"listening on {self._channel} for {self._destination!r}")

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
