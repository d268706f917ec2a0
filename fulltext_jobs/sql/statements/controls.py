"""What operators set per destination (`fulltext_controls`): reading it,
pausing, resuming and capping; the guard every claim reads it through, and
the capped claims' lock."""

from __future__ import annotations

import functools
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from fulltext_jobs.sql.statements.base import StatementsBase

#: The columns of `fulltext_controls` that `limit` sets (`Limits`' fields).
LIMITED: Final = ("max_running", "rate", "rate_burst")


class ControlStatements(StatementsBase):
    """What operators set per destination, and the claims' guard."""

    def _pause_in_force(self) -> ColumnElement[bool]:
        """A row of `fulltext_controls` whose pause is in force at `:now`."""
        controls = self.tables.controls.c
        now = sa.bindparam("now", type_=controls.paused_until.type)
        return sa.and_(
            controls.paused_at.is_not(None),
            sa.or_(controls.paused_until.is_(None), controls.paused_until > now),
        )

    def _claim_allowed(self) -> ColumnElement[bool]:
        """True unless `:dest` is paused at `:now`, or, when
        `:uncapped_only`, has a cap: the guard in every claim's WHERE.
        Uncorrelated, so PostgreSQL runs it once, first (a one-time filter:
        when it is false no index is read and no row locked), as one probe
        of the table's primary key; SQLite too runs it once. In the claim's
        own statement, so a claim that begins after a pause or a cap
        commits hands out nothing; the caller then takes the capped path
        (`lock_controls`, then `claim_capped` or `hold_capped`, with
        `:uncapped_only` false)."""
        controls = self.tables.controls
        capped = sa.and_(
            controls.c.max_running.is_not(None),
            sa.bindparam("uncapped_only", type_=sa.Boolean),
        )
        held_back = sa.exists().where(
            controls.c.destination == sa.bindparam("dest"),
            sa.or_(self._pause_in_force(), capped),
        )
        return ~held_back

    @functools.cached_property
    def lock_controls(self) -> sa.Select[Any]:
        """`:dest`'s row, if any, locked until the transaction ends (on
        PostgreSQL `FOR UPDATE`; SQLite's transaction holds the write lock
        already): the capped claimers of a destination take turns on it, so
        each counts the running jobs after the last one's claim committed."""
        controls = self.tables.controls
        query = sa.select(controls).where(controls.c.destination == sa.bindparam("dest"))
        return query.with_for_update() if self.postgresql else query

    @functools.cached_property
    def limit(self) -> sa.Insert:
        """Set `:dest`'s limits (`LIMITED`): each column to its parameter
        (null: none), unless `:keep_<column>`, which leaves it as it is (a
        new row has it null). Returns the row. An upsert, as `pause`."""
        controls = self.tables.controls
        values = {name: sa.bindparam(name, type_=controls.c[name].type) for name in LIMITED}
        stmt = self._insert(controls).values(destination=sa.bindparam("dest"), **values)
        kept = {
            name: sa.case(
                (sa.bindparam(f"keep_{name}", type_=sa.Boolean), controls.c[name]), else_=value
            )
            for name, value in values.items()
        }
        return stmt.on_conflict_do_update(
            index_elements=[controls.c.destination], set_=kept
        ).returning(*controls.c)

    @functools.cached_property
    def read_controls(self) -> sa.Select[Any]:
        """`:dest`'s row, if any."""
        controls = self.tables.controls
        return sa.select(controls).where(controls.c.destination == sa.bindparam("dest"))

    @functools.cached_property
    def list_controls(self) -> sa.Select[Any]:
        """Every row, by destination."""
        controls = self.tables.controls
        return sa.select(controls).order_by(controls.c.destination)

    @functools.cached_property
    def pause(self) -> sa.Insert:
        """Pause `:dest` from `:now` until `:until` (null: until resumed)
        for `:reason`; a pause already in force keeps when it began, and,
        when `:at_least`, is left as it is if it lasts until `:until` or
        longer (then no row is returned). Returns the row. One upsert: on
        PostgreSQL `ON CONFLICT DO UPDATE` locks the row, so two pauses of
        one destination are applied one after the other; on SQLite the
        transaction holds the write lock."""
        controls = self.tables.controls
        now = sa.bindparam("now", type_=controls.c.paused_at.type)
        until = sa.bindparam("until", type_=controls.c.paused_until.type)
        reason = sa.bindparam("reason", type_=sa.Text)
        stmt = self._insert(controls).values(
            destination=sa.bindparam("dest"), paused_at=now, paused_until=until, pause_reason=reason
        )
        began = sa.case((self._pause_in_force(), controls.c.paused_at), else_=now)
        outlasts = sa.and_(
            sa.bindparam("at_least", type_=sa.Boolean),
            self._pause_in_force(),
            sa.or_(controls.c.paused_until.is_(None), controls.c.paused_until >= until),
        )
        return stmt.on_conflict_do_update(
            index_elements=[controls.c.destination],
            set_={"paused_at": began, "paused_until": until, "pause_reason": reason},
            where=~outlasts,
        ).returning(*controls.c)

    @functools.cached_property
    def resume(self) -> sa.Update:
        """End `:dest`'s pause, if it has a row; returns the row."""
        controls = self.tables.controls
        return (
            sa.update(controls)
            .where(controls.c.destination == sa.bindparam("dest"))
            .values(paused_at=None, paused_until=None, pause_reason=None)
            .returning(*controls.c)
        )

    @functools.cached_property
    def announce_ready(self) -> sa.TextClause:
        """PostgreSQL: wake `:dest`'s listening workers when the transaction
        commits, on the channel the ready notifications use (migration
        0004), as a job that became ready would: a resume, or a cap raised
        or removed."""
        return sa.text("SELECT pg_notify('fulltext_jobs_ready', :dest)")
