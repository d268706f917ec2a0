"""Cancelling jobs: ready jobs skipped in place, and the requests for running
ones (`fulltext_cancels`) that their workers take."""

from __future__ import annotations

import functools

import sqlalchemy as sa

from fulltext_jobs.sql.statements.base import StatementsBase

#: The channel a cancel request is announced on (PostgreSQL); the payload
#: is the destination.
CANCEL_CHANNEL = "fulltext_jobs_cancel"


class CancelStatements(StatementsBase):
    """Ready jobs skipped, and cancel requests made, dropped and taken."""

    @functools.cached_property
    def cancel_all_ready(self) -> sa.Update:
        """Skip every ready job of `:dest` (see `_cancel_ready`)."""
        return self._cancel_ready(by_items=False)

    @functools.cached_property
    def cancel_ready(self) -> sa.Update:
        """Skip the ready jobs of `:dest` among the item ids `:item_ids`
        (see `_cancel_ready`)."""
        return self._cancel_ready(by_items=True)

    def _cancel_ready(self, *, by_items: bool) -> sa.Update:
        """Skip `:dest`'s ready jobs (those of the item ids `:item_ids`, if
        `by_items`) at `:now` with `:error` as their last error, moving
        each version on; returns their ids.

        The condition (`ready`) is in the UPDATE, judged on each row as it
        is written with the row locked: a job claimed a moment before is
        left alone. On PostgreSQL a row a transaction-mode hold has locked
        is waited for, then judged as the hold left it. The version moves
        on here (the library's own write, which the version trigger does
        not count again), so a stale copy of the job cannot be saved over
        the skip."""
        ft = self.tables.fulltext
        stmt = sa.update(ft).where(
            ft.c.destination == sa.bindparam("dest"),
            ft.c.status == sa.literal_column("'ready'"),
        )
        if by_items:
            stmt = stmt.where(ft.c.item_id.in_(sa.bindparam("item_ids", expanding=True)))
        return stmt.values(
            status=sa.cast(sa.literal_column("'skipped'"), ft.c.status.type),
            finished=sa.bindparam("now", type_=ft.c.finished.type),
            last_error=sa.bindparam("error", type_=sa.Text),
            lease_expires=None,
            version=ft.c.version + 1,
        ).returning(ft.c.id)

    @functools.cached_property
    def request_cancels(self) -> sa.Insert:
        """Record a request to stop each running job of `:dest` among the
        item ids `:item_ids`, for the claim that holds it now, with
        `:error` and `:now`; returns their ids. A job asked before gets the
        new claim and error. Jobs running without a claim token (the Go
        original's claims) cannot be asked, and are passed over.

        The jobs are read in the statement's own snapshot: one that
        finishes a moment later leaves its request unheard, which the next
        cancel drops (`forget_stale_cancels`)."""
        ft = self.tables.fulltext
        cancels = self.tables.cancels
        running = sa.select(
            ft.c.id,
            ft.c.claim_token,
            ft.c.destination,
            sa.bindparam("error", type_=sa.Text),
            sa.bindparam("now", type_=cancels.c.requested_at.type),
        ).where(
            ft.c.destination == sa.bindparam("dest"),
            ft.c.status == sa.literal_column("'running'"),
            ft.c.claim_token.is_not(None),
            ft.c.item_id.in_(sa.bindparam("item_ids", expanding=True)),
        )
        stmt = self._insert(cancels).from_select(
            ["job_id", "claim_token", "destination", "error", "requested_at"], running
        )
        return stmt.on_conflict_do_update(
            index_elements=[cancels.c.job_id],
            set_={
                "claim_token": stmt.excluded.claim_token,
                "error": stmt.excluded.error,
                "requested_at": stmt.excluded.requested_at,
            },
        ).returning(cancels.c.job_id)

    @functools.cached_property
    def forget_stale_cancels(self) -> sa.Delete:
        """Drop the requests whose claim has ended unheard (the job is no
        longer running under it). The table holds a row per job asked and
        not yet heard, so this reads a handful of rows, each probing the
        jobs' primary key."""
        ft = self.tables.fulltext
        cancels = self.tables.cancels
        live = sa.exists().where(
            ft.c.id == cancels.c.job_id,
            ft.c.status == sa.literal_column("'running'"),
            ft.c.claim_token == cancels.c.claim_token,
        )
        return sa.delete(cancels).where(~live)

    @functools.cached_property
    def take_cancel_requests(self) -> sa.Executable:
        """Take (delete and return) the requests of the jobs `:job_ids`,
        with the claim each was made for: the caller applies those of its
        own claims. A request of an earlier claim of one of these jobs is
        stale, and goes with them. A delete, so that two takers of one row
        get it once: on PostgreSQL the second waits for the first's row
        lock and then finds it gone."""
        cancels = self.tables.cancels
        return (
            sa.delete(cancels)
            .where(cancels.c.job_id.in_(sa.bindparam("job_ids", expanding=True)))
            .returning(cancels.c.job_id, cancels.c.claim_token, cancels.c.error)
        )

    @functools.cached_property
    def announce_cancel(self) -> sa.TextClause:
        """PostgreSQL: wake `:dest`'s workers listening for cancels when the
        transaction commits."""
        return sa.text(f"SELECT pg_notify('{CANCEL_CHANNEL}', :dest)")
