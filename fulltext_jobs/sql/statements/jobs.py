"""Items and single jobs: adding items, reading, inserting and saving a job."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from fulltext_jobs.sql.statements.base import StatementsBase


class JobStatements(StatementsBase):
    """Items and single jobs: adding items, reading, inserting and saving a job."""

    # --- items and single jobs ---------------------------------------------

    def add_items(self) -> sa.Insert:
        """Insert item ids (executed with many rows), skipping those already
        there; returns the ids that were new."""
        items = self.tables.items
        return (
            self._insert(items)
            .on_conflict_do_nothing(index_elements=[items.c.id])
            .returning(items.c.id)
        )

    @functools.cached_property
    def select_job(self) -> sa.Select[Any]:
        """The job with id `:id`."""
        return sa.select(*self.job_columns).where(self.tables.fulltext.c.id == sa.bindparam("id"))

    @functools.cached_property
    def insert_job(self) -> sa.Insert:
        """Insert a job never stored before (its copy's version is 0) at
        version 1; the columns are given as parameters (see `job_row`).
        Returns the id, or no row if a job with this id exists already: a
        copy that was never read from the store must not replace what is
        there (`StaleJob`). A clash on (item_id, destination) with another id
        raises an integrity error.
        """
        ft = self.tables.fulltext
        values = {c.name: sa.bindparam(c.name, type_=c.type) for c in self.saved_columns}
        stmt = self._insert(ft).values(
            {"id": sa.bindparam("id", type_=sa.Uuid), **values, "version": 1}
        )
        return stmt.on_conflict_do_nothing(index_elements=[ft.c.id]).returning(ft.c.id)

    @functools.cached_property
    def update_job(self) -> sa.Update:
        """Replace job `:job_id` with the given columns (see `job_row`) if it is
        still at version `:read_version` under claim token `:claim` (both
        none counts): the compare-and-swap of a save. Returns the new
        version, or no row when the stored job has changed since the copy
        was read (or is gone) and nothing was written.

        The check sits in the UPDATE's own WHERE, so it is judged against
        the row as it is when the update happens, with the row locked: a
        save, claim, rescue or retry that committed a moment before bumped
        the version, and the stale copy cannot write. A clash on
        (item_id, destination) with another job raises an integrity error.
        `seq` is left alone, so a saved job keeps its place in the queue.
        """
        ft = self.tables.fulltext
        values = {c.name: sa.bindparam(c.name, type_=c.type) for c in self.saved_columns}
        return (
            sa.update(ft)
            .where(
                ft.c.id == sa.bindparam("job_id", type_=sa.Uuid),
                ft.c.version == sa.bindparam("read_version", type_=sa.Integer),
                ft.c.claim_token.is_not_distinct_from(sa.bindparam("claim", type_=sa.Uuid)),
            )
            .values({**values, "version": ft.c.version + 1})
            .returning(ft.c.version)
        )

    @functools.cached_property
    def update_jobs(self) -> sa.TextClause:
        """`update_job` for a whole batch in one statement (PostgreSQL): the
        parameters are one array per column of `job_row` (see `job_arrays`),
        and each row of the arrays is the compare-and-swap of one job.
        Returns the ids of the jobs written; a job whose stored row has
        changed since its copy was read (or is gone) matches nothing and is
        passed over, alone.

        The guards (version, claim token) sit in the UPDATE's own WHERE, as
        in `update_job`, so each is judged on the row as it is when it is
        updated, locked. The ids are distinct (the port refuses a batch that
        repeats one), so each row is matched at most once. One statement
        means one round trip and one statement's overhead for the batch,
        where a pipeline of `update_job` pays both per job. A clash on
        (item_id, destination) aborts the statement: nothing is written.
        """
        ft = self.tables.fulltext
        columns = [c.name for c in self.saved_columns]
        types = {
            "item_id": "text",
            "destination": "text",
            "started": "timestamptz",
            "finished": "timestamptz",
            "status": "text",
            "attempts": "integer",
            "claim_token": "uuid",
            "lease_expires": "timestamptz",
            "last_error": "text",
            "not_before": "timestamptz",
            "backoffs": "integer",
            "priority": "smallint",
            "ready_at": "timestamptz",
        }
        arrays = ", ".join(
            f"CAST(:{name} AS {kind}[])"
            for name, kind in (
                ("job_id", "uuid"),
                ("read_version", "integer"),
                ("claim", "uuid"),
                *((name, types[name]) for name in columns),
            )
        )
        assignments = ", ".join(
            f"{name} = CAST(v.status AS job_statuses)" if name == "status" else f"{name} = v.{name}"
            for name in columns
        )
        return sa.text(
            f"UPDATE {ft.fullname} AS f SET {assignments}, version = f.version + 1 "  # noqa: S608 - names from the declared table, values bound
            f"FROM unnest({arrays}) AS v(job_id, read_version, claim, {', '.join(columns)}) "
            "WHERE f.id = v.job_id AND f.version = v.read_version "
            "AND f.claim_token IS NOT DISTINCT FROM v.claim "
            "RETURNING f.id"
        )
