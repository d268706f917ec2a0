"""Where a driver or SQLAlchemy error becomes one of the port's errors:
the one place that decides what such an error means to a caller.

Every call site that runs SQL does so inside `translated(action)`, which
turns an error of SQLAlchemy or of psycopg (some paths let the driver's own
through: a new connection refused, a listener's connection lost, the hot
path's cursor) into `DuplicateJob`, for a clash on (item_id, destination)
where the caller says what that means, or a `StoreError`, retryable or not
by `is_retryable`. Everything else passes unchanged: the port's own errors,
and a caller's.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal

import sqlalchemy as sa

from fulltext_jobs._lazy import IfImported
from fulltext_jobs.domain import FullText
from fulltext_jobs.errors import DuplicateJob, StoreError

if TYPE_CHECKING:
    import psycopg
else:
    # Only to test objects against (see `_lazy`): a command on SQLite never
    # imports psycopg.
    psycopg = IfImported("psycopg")

__all__ = ["is_retryable", "store_error", "translated"]

# SQLSTATEs after which the same call may succeed: connection exceptions
# (class 08), the server shutting down or restarting (57P01 to 57P03), a
# serialization failure, a deadlock, a lock wait that timed out (as
# SQLite's "database is locked"), and a server with no connection slot left.
_RETRYABLE_SQLSTATES: Final = frozenset(
    {"57P01", "57P02", "57P03", "40001", "40P01", "55P03", "53300"}
)


# psycopg reports a failed connection attempt with no SQLSTATE, only the
# server's (or libpq's) message. These ones refuse us for good: retrying
# cannot help, and a worker should stop and say so. Any other failure to
# connect is taken to pass: a server that is away, starting, stopping or
# full. The list names refusals rather than passing states because the
# mistake costs less that way: a refusal it misses (say, in a server
# language other than English) makes a worker retry, logging each attempt,
# where a passing state it missed would stop a worker during a restart.
_REFUSALS_FOR_GOOD: Final = (
    "authentication failed",  # password, SCRAM, ident, peer, ...
    "no password supplied",
    "does not exist",  # the database or the role
    "no pg_hba.conf entry",
    "pg_hba.conf rejects connection",
    "is not permitted to log in",
    "permission denied for database",
)


def _fails_for_good(message: str) -> bool:
    """Whether a failed connection attempt's message names a refusal that
    will not pass by itself (see `_REFUSALS_FOR_GOOD`)."""
    return any(refusal in message for refusal in _REFUSALS_FOR_GOOD)


def is_retryable(exc: BaseException) -> bool:
    """Whether the call that raised `exc` (a SQLAlchemy or driver error) may
    succeed if made again: a lost connection, a server that is away,
    restarting or full, a serialization failure, a deadlock, a lock wait that
    timed out, a pool with no connection to spare. Not: a refusal for good
    (wrong password, unknown database or role), bad SQL, a constraint."""
    if isinstance(exc, sa.exc.TimeoutError | sa.exc.DisconnectionError):
        # The pool had no connection to spare within its timeout, or threw
        # away a dead one: both pass.
        return True
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    driver = _driver_error(exc)
    sqlstate = getattr(driver, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("08") or sqlstate in _RETRYABLE_SQLSTATES
    if isinstance(driver, psycopg.OperationalError):
        # No SQLSTATE: the client never got an answer to a statement
        # (refused, reset, timed out), or a connection attempt failed.
        return not _fails_for_good(str(driver))
    # SQLite: a lock held past the busy timeout.
    return "database is locked" in str(driver) or "database is busy" in str(driver)


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's exception behind a SQLAlchemy one, or `exc` itself."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def store_error(exc: BaseException, action: str) -> StoreError:
    """Translate an error raised while doing `action` (a SQLAlchemy error,
    or the driver's own, which some paths let through: a new connection
    refused, a listener's connection lost) into a `StoreError`, classified
    by `is_retryable`."""
    retryable = is_retryable(exc)
    detail = _first_line(_driver_error(exc))
    advice = " (retryable: the same call may succeed if made again)" if retryable else ""
    return StoreError(f"{action} failed: {detail}{advice}", retryable=retryable)


def _is_pair_violation(exc: BaseException) -> bool:
    """Whether `exc` is a clash on the jobs' unique (item_id, destination)."""
    if not isinstance(exc, sa.exc.IntegrityError | psycopg.IntegrityError):
        return False
    driver = _driver_error(exc)
    constraint = getattr(getattr(driver, "diag", None), "constraint_name", None)
    if constraint is not None:
        return bool(constraint == "jobs_fulltext_unique")
    message = str(driver)
    return "UNIQUE constraint failed" in message and "item_id" in message


def _duplicate_message(duplicate: str | FullText) -> str:
    """What `DuplicateJob` says: `duplicate` itself, or, for a job, its
    pair (built only when a clash happens: a save names its job on every
    call)."""
    if isinstance(duplicate, str):
        return duplicate
    return (
        f"a job already exists for item {duplicate.item_id!r} "
        f"and destination {duplicate.destination!r}"
    )


class translated:  # noqa: N801 - used as a block: `with translated(...)`
    """`with translated(action):` the block's SQLAlchemy and driver errors
    raised as the port's: with `duplicate` given, a clash on (item_id,
    destination) is a `DuplicateJob` saying `duplicate` (a message, or a
    job whose pair it names); any other is the
    `StoreError` of `store_error`. With `apps_own`, the block runs the
    app's own writes (the flush of its session before a call joins it):
    their errors are the app's (a constraint of its own table, bad data)
    and pass unchanged, except the ones no data causes and that pass (a
    lost connection, a server restarting, a deadlock, a lock wait that
    timed out), which are a retryable `StoreError` as in any call.

    A class rather than a generator: it wraps every call of the hot path,
    where a generator-based context manager costs several times as much.
    """

    __slots__ = ("_action", "_apps_own", "_duplicate")

    def __init__(
        self, action: str, *, duplicate: str | FullText | None = None, apps_own: bool = False
    ) -> None:
        self._action = action
        self._duplicate = duplicate
        self._apps_own = apps_own

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, sa.exc.SQLAlchemyError | psycopg.Error):
            return False
        if self._apps_own:
            if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) and is_retryable(
                exc
            ):
                raise store_error(exc, self._action) from exc
            return False
        if self._duplicate is not None and _is_pair_violation(exc):
            # The clash is the whole story: the driver's text adds nothing.
            raise DuplicateJob(_duplicate_message(self._duplicate)) from None
        raise store_error(exc, self._action) from exc
