"""Changing the priority of ready jobs."""

from __future__ import annotations

import functools

import sqlalchemy as sa

from fulltext_jobs.sql.statements.base import StatementsBase


class PriorityStatements(StatementsBase):
    """Ready jobs given a new priority."""

    @functools.cached_property
    def prioritize(self) -> sa.Update:
        """Give `:dest`'s ready jobs among the item ids `:item_ids` the
        priority `:priority`, moving each version on; returns their ids.

        The condition (`ready`) is in the UPDATE, judged on each row as it
        is written with the row locked: a job claimed a moment before keeps
        its priority. On PostgreSQL a row a transaction-mode hold has
        locked is waited for, then judged as the hold left it. `seq` and
        `not_before` stay: a job keeps its place among the jobs of its new
        priority, and a delayed one its delay. The version moves on here
        (the library's own write, which the version trigger does not count
        again), so a stale copy of the job cannot be saved over it. Jobs
        whose priority is already `:priority` are written too: the count
        is of the ready jobs named, whatever they had."""
        ft = self.tables.fulltext
        return (
            sa.update(ft)
            .where(
                ft.c.destination == sa.bindparam("dest"),
                ft.c.status == sa.literal_column("'ready'"),
                ft.c.item_id.in_(sa.bindparam("item_ids", expanding=True)),
            )
            .values(
                priority=sa.bindparam("priority", type_=ft.c.priority.type),
                version=ft.c.version + 1,
            )
            .returning(ft.c.id)
        )
