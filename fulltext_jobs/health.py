"""Queue health: what slows or stalls the queue without any job being
wrong, as `Repository.queue_health` reads it and as `fulltext-jobs audit`,
the dashboard and `/metrics` report it; the thresholds past which it is
worth a warning, and the rules that judge a reading against them.

Three things, each invisible from the jobs themselves:

- **What holds vacuum back** (PostgreSQL). Any open transaction of the
  database, a prepared transaction, a replication slot's or a standby's
  `xmin` keeps every row version written since it began: the dead rows of
  every job claimed and finished since then stay, the table and its indexes
  grow, and a claim that reads the due jobs from the oldest (a process's
  first claim, a look-back, code before the claim floors) walks past their
  index entries. These are the horizon's holders (`HorizonHolder`).
- **The jobs table's live and dead rows, and its last (auto)vacuum and
  (auto)analyze** (PostgreSQL; SQLite counts live rows only: it keeps no
  old row versions for a vacuum to remove).
- **Delayed jobs ahead of due ones**: ready jobs waiting for a retry
  (`not_before` in the future) that come, in enqueue order, before the
  first job a claim may take now (`DelayedAhead`).

The figures are read by the adapters (`fulltext_jobs.sql.health` for
SQL, `fulltext_jobs.memory` in memory); what is worth a warning is decided
here, once, by `health_warnings`. A reading changes nothing.

This module imports only the standard library and the argument checks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from fulltext_jobs.checks import MAX_INT32, as_real, check_count, check_duration
from fulltext_jobs.errors import InvalidInput

__all__ = [
    "DEAD_ROWS_FRACTION",
    "DEAD_ROWS_WARNING",
    "DELAYED_AHEAD_COUNTED",
    "DELAYED_AHEAD_WARNING",
    "TRANSACTION_AGE_WARNING",
    "VACUUM_AGE_WARNING",
    "XMIN_AGE_WARNING",
    "DelayedAhead",
    "HealthCheck",
    "HealthThresholds",
    "HealthWarning",
    "HolderKind",
    "HorizonHolder",
    "QueueHealth",
    "TableHealth",
    "delayed_ahead_of",
    "health_warnings",
    "not_reported",
    "span_text",
]

# --- the thresholds ---------------------------------------------------------------

#: An open transaction (or a prepared one) older than this is warned of.
#: The library's own transactions last one call, a batch in the transaction
#: mode: minutes are someone's forgotten `BEGIN`, an analytics query, or a
#: handler run inside its claim. Every row version written meanwhile stays.
TRANSACTION_AGE_WARNING: Final = timedelta(minutes=5)

#: A holder whose age in time is unknown (a replication slot, a standby's
#: feedback, another role's session this role may not inspect) is warned of
#: when its `xmin` is more than this many transactions old. Only writing
#: transactions take a transaction id, so this counts writes held back: at
#: two writes a job, about half a million jobs' rows kept.
XMIN_AGE_WARNING: Final = 1_000_000

#: Dead rows of the jobs table are warned of above this many (and above
#: `DEAD_ROWS_FRACTION` of the live rows): below it, a small ledger whose
#: vacuum is merely late is not worth a line.
DEAD_ROWS_WARNING: Final = 100_000

#: ... and above this fraction of the live rows. PostgreSQL's default
#: autovacuum trigger is a fifth of the table (`autovacuum_vacuum_scale_factor`
#: 0.2), and per-table settings for the jobs table only lower it, so a table
#: a fifth dead is at or past its trigger: vacuum is not running, or it runs
#: and cannot remove them (something holds the horizon).
DEAD_ROWS_FRACTION: Final = 0.2

#: Dead rows past autovacuum's own trigger for the table, with no vacuum
#: (manual or auto) for longer than this, are warned of: autovacuum looks at
#: every table once a minute by default, so an hour means it is off for the
#: table, or its workers are busy elsewhere for that long.
VACUUM_AGE_WARNING: Final = timedelta(hours=1)

#: More delayed jobs than this ahead of a destination's first due job are
#: warned of: a backlog of retries, after an outage. Claims since revision
#: 0011 read none of them until it comes due; the claims of older code,
#: which the schema window still admits, read and pass over each of them
#: (docs/benchmarks.md, table l., measures both).
DELAYED_AHEAD_WARNING: Final = 10_000

#: At most this many delayed jobs ahead are counted, so a reading stays
#: bounded however large a backlog of retries grows; a count at the bound
#: means "this many or more".
DELAYED_AHEAD_COUNTED: Final = 100_000

#: The largest fraction `HealthThresholds.dead_fraction` takes.
_MAX_FRACTION: Final = 1000.0


@dataclasses.dataclass(frozen=True, slots=True)
class HealthThresholds:
    """What a reading is judged against (see the constants above for each
    default and why); `checked` refuses values out of range."""

    transaction_age: timedelta = TRANSACTION_AGE_WARNING
    xmin_age: int = XMIN_AGE_WARNING
    dead_rows: int = DEAD_ROWS_WARNING
    dead_fraction: float = DEAD_ROWS_FRACTION
    vacuum_age: timedelta = VACUUM_AGE_WARNING
    delayed_ahead: int = DELAYED_AHEAD_WARNING

    @classmethod
    def checked(  # noqa: PLR0913 - one per threshold
        cls,
        *,
        transaction_age: object = TRANSACTION_AGE_WARNING,
        xmin_age: object = XMIN_AGE_WARNING,
        dead_rows: object = DEAD_ROWS_WARNING,
        dead_fraction: object = DEAD_ROWS_FRACTION,
        vacuum_age: object = VACUUM_AGE_WARNING,
        delayed_ahead: object = DELAYED_AHEAD_WARNING,
    ) -> HealthThresholds:
        """The thresholds, or `InvalidInput` for any out of range: the two
        ages timedeltas above 0 (at most 3,650 days), `xmin_age` and
        `dead_rows` whole numbers from 0 to 2**31 - 1, `dead_fraction` a
        number from 0 to 1,000, `delayed_ahead` a whole number from 0 to one
        less than `DELAYED_AHEAD_COUNTED` (a count is bounded by that)."""
        fraction = as_real(dead_fraction)
        if fraction is None or not math.isfinite(fraction) or not 0 <= fraction <= _MAX_FRACTION:
            msg = (
                f"dead_fraction must be a number from 0 to {_MAX_FRACTION:g}, not {dead_fraction!r}"
            )
            raise InvalidInput(msg)
        return cls(
            transaction_age=check_duration(transaction_age, "transaction_age"),
            xmin_age=check_count(xmin_age, "xmin_age", MAX_INT32, minimum=0),
            dead_rows=check_count(dead_rows, "dead_rows", MAX_INT32, minimum=0),
            dead_fraction=fraction,
            vacuum_age=check_duration(vacuum_age, "vacuum_age"),
            delayed_ahead=check_count(
                delayed_ahead, "delayed_ahead", DELAYED_AHEAD_COUNTED - 1, minimum=0
            ),
        )


# --- a reading --------------------------------------------------------------------


class HolderKind(StrEnum):
    """What holds the vacuum horizon back (the `kind` of a holder in
    `fulltext-jobs audit --json`)."""

    #: A session's open transaction (`pg_stat_activity`).
    TRANSACTION = "transaction"
    #: A prepared transaction waiting for its `COMMIT PREPARED` (`pg_prepared_xacts`).
    PREPARED_TRANSACTION = "prepared_transaction"
    #: A replication slot's `xmin` (`pg_replication_slots`): a standby's
    #: `hot_standby_feedback` through a physical slot, or a slot left behind.
    REPLICATION_SLOT = "replication_slot"
    #: A standby's `hot_standby_feedback` through a connection with no slot
    #: (a WAL sender's `backend_xmin`).
    STANDBY_FEEDBACK = "standby_feedback"


@dataclasses.dataclass(frozen=True, slots=True)
class HorizonHolder:
    """One thing that keeps old row versions from being vacuumed, or an
    open transaction that will once it reads."""

    kind: HolderKind
    #: `pid 4242` for a session, the prepared transaction's gid, the slot's name.
    name: str
    #: Since its transaction began (or was prepared); None where PostgreSQL
    #: does not say (slots, feedback, another role's session without
    #: `pg_read_all_stats`).
    age: timedelta | None
    #: Transactions since the oldest one it still sees (its `xmin`, or its own
    #: transaction id); None when it holds nothing yet (a transaction that has
    #: not read or written, or one in READ COMMITTED between statements).
    xmin_age: int | None
    #: The session's `state` (`idle in transaction`, `active`, ...), `active`
    #: or `inactive` for a slot; None where not known.
    state: str | None = None
    #: The session's `application_name`, a prepared transaction's owner, a
    #: slot's type; None where not known.
    application: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TableHealth:
    """The jobs table as the database's statistics see it. Each figure is
    None where the store does not keep it (see `QueueHealth.notes`)."""

    live_rows: int | None
    dead_rows: int | None = None
    last_vacuum: datetime | None = None
    last_autovacuum: datetime | None = None
    last_analyze: datetime | None = None
    last_autoanalyze: datetime | None = None
    #: Since the later of the last vacuum and autovacuum; None if neither ran
    #: (since the statistics were last reset).
    since_vacuum: timedelta | None = None
    #: How many dead rows make autovacuum vacuum the table (its threshold
    #: plus its scale factor times the rows the planner counts); None if
    #: autovacuum is off for it, or where there is no autovacuum.
    autovacuum_trigger: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DelayedAhead:
    """One destination's ready jobs that wait for a retry."""

    destination: str
    #: Ready jobs not due yet (`not_before` in the future).
    delayed: int
    #: Of those, how many come before the first due ready job in enqueue
    #: order (`seq`): the jobs a claim reads and passes over. 0 when no job
    #: is due. Counted up to `DELAYED_AHEAD_COUNTED`.
    ahead: int

    @property
    def capped(self) -> bool:
        """Whether `ahead` reached the bound of the count (there may be more)."""
        return self.ahead >= DELAYED_AHEAD_COUNTED


@dataclasses.dataclass(frozen=True, slots=True)
class QueueHealth:
    """A reading of the queue's health. `horizon` and `table` are None where
    they do not apply to the store (SQLite has no concurrent snapshots to
    hold back and no vacuum of old row versions; the in-memory adapter has
    no table); `notes` says why, in words."""

    #: `postgresql`, `sqlite`, `memory`, or what another adapter calls itself.
    store: str
    #: What holds the vacuum horizon back, the oldest first; empty when
    #: nothing does.
    horizon: tuple[HorizonHolder, ...] | None
    table: TableHealth | None
    #: Per destination with ready jobs waiting for a retry.
    delayed: tuple[DelayedAhead, ...] = ()
    #: Sessions of this database whose transactions this role may not see
    #: in full (grant it `pg_read_all_stats`, or `pg_monitor`); None where
    #: `horizon` is.
    unseen_sessions: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def oldest_transaction(self) -> HorizonHolder | None:
        """The open or prepared transaction that began first, if any."""
        timed = [holder for holder in self.horizon or () if holder.age is not None]
        return max(timed, key=lambda holder: holder.age or timedelta(0), default=None)

    def warnings(self, thresholds: HealthThresholds | None = None) -> list[HealthWarning]:
        """`health_warnings` of this reading."""
        return health_warnings(self, thresholds or HealthThresholds())


def not_reported(store: str) -> QueueHealth:
    """The reading of a store that reports no queue health."""
    return QueueHealth(
        store=store, horizon=None, table=None, notes=(f"{store} reports no queue health",)
    )


def delayed_ahead_of(due: Iterable[bool]) -> int:
    """How many of a destination's ready jobs, given in enqueue order as
    whether each is due, are not due and come before the first due one; 0
    when none is due. Counted up to `DELAYED_AHEAD_COUNTED`."""
    for position, is_due in enumerate(due):
        if is_due:
            return min(position, DELAYED_AHEAD_COUNTED)
    return 0


# --- the rules ------------------------------------------------------------------------


class HealthCheck(StrEnum):
    """The kinds of health warning, by their stable names (the `check` field
    of `warnings` in `fulltext-jobs audit --json`, and the label of
    `fulltext_jobs_health_warnings`)."""

    #: A transaction (or prepared transaction) open longer than `transaction_age`.
    LONG_TRANSACTION = "long_transaction"
    #: A slot, a standby's feedback or an unseen session holding an `xmin`
    #: older than `xmin_age` transactions.
    OLD_XMIN = "old_xmin"
    #: More dead rows than `dead_rows` and than `dead_fraction` of the live ones.
    DEAD_ROWS = "dead_rows"
    #: Dead rows past autovacuum's trigger (and `dead_rows`), and no vacuum
    #: for longer than `vacuum_age`.
    VACUUM_OVERDUE = "vacuum_overdue"
    #: More delayed jobs ahead of a destination's first due one than `delayed_ahead`.
    DELAYED_AHEAD = "delayed_ahead"


@dataclasses.dataclass(frozen=True, slots=True)
class HealthWarning:
    """One warning: which check, the destination (None for the database or
    the table), what was measured and the threshold it passed (seconds for
    ages, else a count; `value` is None for a table never vacuumed), and a
    sentence for a person."""

    check: HealthCheck
    destination: str | None
    value: float | None
    threshold: float
    message: str


def health_warnings(health: QueueHealth, thresholds: HealthThresholds) -> list[HealthWarning]:
    """What in `health` is past `thresholds`: each holder, the table and each
    destination judged by the rules of `HealthCheck`, strictly above each
    threshold, in that order. A figure the store does not keep is never
    warned of."""
    found = [_holder_warning(holder, thresholds) for holder in health.horizon or ()]
    if health.table is not None:
        found.extend(_table_warnings(health.table, thresholds))
    found.extend(
        HealthWarning(
            HealthCheck.DELAYED_AHEAD,
            row.destination,
            row.ahead,
            thresholds.delayed_ahead,
            f"{row.ahead:,}{'+' if row.capped else ''} delayed jobs of {row.destination!r} "
            "come before its first due job: claims that read from the oldest pass over them",
        )
        for row in health.delayed
        if row.ahead > thresholds.delayed_ahead
    )
    return [warning for warning in found if warning is not None]


def _holder_warning(holder: HorizonHolder, thresholds: HealthThresholds) -> HealthWarning | None:
    who = f"{holder.kind.value} {holder.name}"
    if holder.state:
        who += f" ({holder.state})"
    if holder.age is not None:
        if holder.age <= thresholds.transaction_age:
            return None
        holds = "" if holder.xmin_age is None else ", holding back vacuum"
        return HealthWarning(
            HealthCheck.LONG_TRANSACTION,
            None,
            holder.age.total_seconds(),
            thresholds.transaction_age.total_seconds(),
            f"{who} has been open for {span_text(holder.age.total_seconds())}{holds}",
        )
    if holder.xmin_age is None or holder.xmin_age <= thresholds.xmin_age:
        return None
    return HealthWarning(
        HealthCheck.OLD_XMIN,
        None,
        holder.xmin_age,
        thresholds.xmin_age,
        f"{who} holds an xmin {holder.xmin_age:,} transactions old, holding back vacuum",
    )


def _table_warnings(table: TableHealth, thresholds: HealthThresholds) -> list[HealthWarning]:
    dead = table.dead_rows
    if dead is None:
        return []
    found = []
    live = table.live_rows or 0
    if dead > thresholds.dead_rows and dead > thresholds.dead_fraction * live:
        found.append(
            HealthWarning(
                HealthCheck.DEAD_ROWS,
                None,
                dead,
                max(thresholds.dead_rows, thresholds.dead_fraction * live),
                f"the jobs table has {dead:,} dead rows for {live:,} live ones: vacuum is "
                "not running, or cannot remove them (see what holds the horizon)",
            )
        )
    trigger = max(thresholds.dead_rows, table.autovacuum_trigger or 0)
    overdue = table.since_vacuum is None or table.since_vacuum > thresholds.vacuum_age
    if dead > trigger and overdue:
        since = table.since_vacuum
        when = "never" if since is None else f"{span_text(since.total_seconds())} ago"
        why = (
            "autovacuum is off for it"
            if table.autovacuum_trigger is None
            else f"past autovacuum's trigger of {table.autovacuum_trigger:,}"
        )
        found.append(
            HealthWarning(
                HealthCheck.VACUUM_OVERDUE,
                None,
                None if table.since_vacuum is None else table.since_vacuum.total_seconds(),
                thresholds.vacuum_age.total_seconds(),
                f"the jobs table has {dead:,} dead rows ({why}) and was last vacuumed {when}",
            )
        )
    return found


def span_text(seconds: float) -> str:
    """`seconds` as a person reads a span: `2h 5m`, `3m 12s` or `42s`
    (whole seconds, never negative)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"
