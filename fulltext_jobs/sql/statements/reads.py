"""Looking at jobs: listing them, coverage and counts, and the audit."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from fulltext_jobs.audit import AUDIT_TERMINAL, UNLEASED_ERROR, AuditCheck
from fulltext_jobs.domain import MAX_ATTEMPTS
from fulltext_jobs.sql.statements.base import StatementsBase


class ReadStatements(StatementsBase):
    """Looking at jobs: listing them, coverage and counts, and the audit."""

    # --- looking at jobs -------------------------------------------------------

    def list_jobs(
        self, destination: str, statuses: list[str] | None, limit: int, after: str | None
    ) -> sa.Select[Any]:
        """A page of `destination`'s jobs (in `statuses`, if given) in item
        id order, after item `after`: a keyset page, read along the unique
        (item_id, destination) index, so a page costs the same wherever it
        starts. Read-only, and no row is locked."""
        ft = self.tables.fulltext
        query = sa.select(*self.job_columns).where(ft.c.destination == destination)
        if statuses is not None:
            query = query.where(ft.c.status.in_(statuses))
        if after is not None:
            query = query.where(ft.c.item_id > after)
        return query.order_by(ft.c.item_id).limit(limit)

    # --- coverage --------------------------------------------------------------

    def count_unqueued(self, destination: str) -> sa.Select[int]:
        """How many eligible items have no job for `destination`."""
        unqueued = self._unqueued(self.items.ids(), destination).subquery()
        return sa.select(sa.func.count()).select_from(unqueued)

    @functools.cached_property
    def has_destination(self) -> sa.Select[bool]:
        """Whether `:dest` has any job.

        Three EXISTS, tried in turn (PostgreSQL runs each as an InitPlan
        only when the OR before it was false): a ready job, through the
        partial ready index; a running job, through the partial running
        index; then any job, which is a scan that stops at the first job of
        the destination. The last one reads the whole table only for a
        destination with no job at all (a typo) or whose jobs sit at the
        end of the table: no index leads with the destination alone, since
        one more index on every claim and finish would cost throughput.
        """
        ft = self.tables.fulltext
        dest = ft.c.destination == sa.bindparam("dest")
        probes = [
            sa.exists().where(dest, ft.c.status == sa.literal_column(f"'{status}'"))
            for status in ("ready", "running")
        ]
        return sa.select(sa.or_(*probes, sa.exists().where(dest)))

    @functools.cached_property
    def oldest_ready_at(self) -> sa.Select[Any]:
        """The earliest `ready_at` among `:dest`'s ready jobs (NULL if none
        has one): the first entry of `fulltext_ready_at_idx` for the
        destination, so one probe however many jobs there are. The status is
        a literal so that the partial index serves a generic plan too. The
        lag is read from it (see `fulltext_jobs.domain.lag_at`)."""
        ft = self.tables.fulltext
        return sa.select(sa.func.min(ft.c.ready_at)).where(
            ft.c.destination == sa.bindparam("dest"),
            ft.c.status == sa.literal_column("'ready'"),
        )

    def count_by_status(self, destination: str | None) -> sa.Select[Any]:
        """Jobs per (destination, status), for every destination or one:
        exact, and read from what the triggers of migration 0019 keep, not
        from the jobs, so it costs the same on a ledger of any size.

        On PostgreSQL the folded sum plus the deltas not folded yet, in one
        statement and so one snapshot: a fold that commits beside it moves
        deltas into the sum in one transaction, which the snapshot sees
        whole or not at all. What it reads besides the sum is the deltas
        since the last fold (`fold_status_counts`, and the writers' own
        folds every 1,024 deltas). On SQLite the sum alone, which the
        triggers keep directly. A status no job has is left out.
        """
        counts = self.tables.status_counts
        parts = [sa.select(counts.c.destination, counts.c.status, counts.c.jobs)]
        if self.tables.status_deltas is not None:
            deltas = self.tables.status_deltas
            parts.append(sa.select(deltas.c.destination, deltas.c.status, deltas.c.jobs))
        if destination is not None:
            parts = [part.where(part.selected_columns.destination == destination) for part in parts]
        kept = sa.union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
        jobs = sa.func.sum(kept.c.jobs)
        return (
            sa.select(kept.c.destination, kept.c.status, sa.cast(jobs, sa.BigInteger))
            .group_by(kept.c.destination, kept.c.status)
            .having(jobs != 0)
        )

    @functools.cached_property
    def fold_status_counts(self) -> sa.Select[Any] | None:
        """On PostgreSQL, fold the deltas into the sum
        (`jobs.fulltext_status_fold()`, migration 0019), so that the next
        `count_by_status` reads few of them; it does nothing, and says
        false, where it cannot fold without waiting (a read-only
        transaction or a replica, one not in read committed, another fold
        under way). None on SQLite, which keeps no deltas."""
        if self.tables.status_deltas is None:
            return None
        return sa.select(sa.func.jobs.fulltext_status_fold())

    # --- audit ----------------------------------------------------

    def audit_conditions(self) -> dict[AuditCheck, ColumnElement[bool]]:
        """Each check of `Repository.audit` as a condition on a job, over
        the binds `:now`, `:stale_before` (now minus the rescue interval),
        `:future_after` (now plus the clock tolerance) and `:max_attempts`.

        The two running checks are served by `fulltext_running_idx`; the
        others read every job of the destination (see docs/benchmarks.md):
        no index on the ledger knows which timestamps disagree, and an item
        leaves the source without the ledger knowing.
        """
        ft = self.tables.fulltext.c
        running = ft.status == sa.literal_column("'running'")
        eligible = self.items.ids().where(self.items.id == ft.item_id)
        return {
            AuditCheck.RUNNING_WITHOUT_LEASE: sa.and_(running, ft.lease_expires.is_(None)),
            AuditCheck.LEASE_EXPIRED_UNRESCUED: sa.and_(
                running, ft.lease_expires < sa.bindparam("stale_before")
            ),
            AuditCheck.ITEM_MISSING: ~sa.exists(eligible),
            AuditCheck.FINISHED_BEFORE_STARTED: ft.finished < ft.started,
            AuditCheck.STARTED_IN_FUTURE: ft.started > sa.bindparam("future_after"),
            AuditCheck.TERMINAL_WITHOUT_FINISHED: sa.and_(
                ft.status.in_(sorted(s.value for s in AUDIT_TERMINAL)), ft.finished.is_(None)
            ),
            AuditCheck.ATTEMPTS_ABOVE_MAX: ft.attempts
            > sa.bindparam("max_attempts", type_=sa.Integer),
            AuditCheck.READY_WITH_CLAIM_TOKEN: sa.and_(
                ft.status == sa.literal_column("'ready'"), ft.claim_token.is_not(None)
            ),
        }

    @property
    def started_after(self) -> ColumnElement[bool]:
        """A job `started` after `:after`: claimed since its destination's
        pause began (`AuditCheck.CLAIMED_WHILE_PAUSED`), with `:after` that
        moment plus the clock tolerance."""
        ft = self.tables.fulltext.c
        return ft.started > sa.bindparam("after", type_=ft.started.type)

    @property
    def running(self) -> ColumnElement[bool]:
        """A running job (`AuditCheck.OVER_CAP` counts them, along
        `fulltext_running_idx`)."""
        return self.tables.fulltext.c.status == sa.literal_column("'running'")

    def audit_counts(
        self, condition: ColumnElement[bool], destination: str | None
    ) -> sa.Select[Any]:
        """Per destination: how many jobs meet `condition`, and the oldest
        `started` among them."""
        ft = self.tables.fulltext
        query = (
            sa.select(ft.c.destination, sa.func.count(), sa.func.min(ft.c.started))
            .where(condition)
            .group_by(ft.c.destination)
        )
        if destination is not None:
            query = query.where(ft.c.destination == destination)
        return query

    def audit_examples(self, condition: ColumnElement[bool]) -> sa.Select[Any]:
        """The smallest `:examples` ids of `:destination`'s jobs that meet
        `condition`."""
        ft = self.tables.fulltext
        return (
            sa.select(ft.c.id)
            .where(condition, ft.c.destination == sa.bindparam("destination"))
            .order_by(ft.c.id)
            .limit(sa.bindparam("examples", type_=sa.Integer))
        )

    def release_unleased(self, destination: str | None) -> sa.Update:
        """Return running jobs with no lease and a `started` before
        `:started_before` to ready from `:now`, counting an attempt and
        saying why.

        As in `rescue_expired`, the condition is in the UPDATE itself and is
        judged on each row, locked, as it is when written: a job finished
        or given a lease a moment before no longer matches.
        """
        ft = self.tables.fulltext
        stmt = sa.update(ft).where(
            ft.c.status == sa.literal_column("'running'"),
            ft.c.lease_expires.is_(None),
            ft.c.started < sa.bindparam("started_before"),
        )
        if destination is not None:
            stmt = stmt.where(ft.c.destination == destination)
        return stmt.values(
            status=sa.cast(sa.literal_column("'ready'"), ft.c.status.type),
            started=None,
            claim_token=None,
            # The lost claim counts, up to the bound (see `MAX_ATTEMPTS`).
            attempts=sa.case(
                (ft.c.attempts < MAX_ATTEMPTS, ft.c.attempts + 1), else_=ft.c.attempts
            ),
            last_error=UNLEASED_ERROR,
            ready_at=sa.bindparam("now", type_=ft.c.ready_at.type),
            version=ft.c.version + 1,
        ).returning(ft.c.id)
