"""Claims, holds, the next due job, rate-limit tokens, and leases (heartbeats,
rescues, retries)."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from fulltext_jobs.domain import RESCUED_ERROR, JobStatus
from fulltext_jobs.rate_limit import TOLERANCE_SECONDS
from fulltext_jobs.sql.statements.base import StatementsBase


class ClaimStatements(StatementsBase):
    """Claims, holds, the next due job, rate-limit tokens, and leases (heartbeats,
    rescues, retries)."""

    # --- claims --------------------------------------------------------------

    def _oldest_ready(self, n: sa.BindParameter[int] | int) -> sa.Select[Any]:
        ft = self.tables.fulltext
        return (
            sa.select(ft.c.id)
            .where(
                ft.c.destination == sa.bindparam("dest"),
                # A literal, not a parameter: a prepared statement's generic
                # plan can use the partial index `WHERE status = 'ready'` only
                # if the query says 'ready' itself.
                ft.c.status == sa.literal_column("'ready'"),
                # Jobs delayed past `:now` (a retry after a backoff) are
                # passed over. Tested on the rows the index scan visits, in
                # `seq` order: while no job is delayed, every row passes and
                # the plan and its cost are those of the plain claim; each
                # delayed job ahead of the first due one costs one row more.
                sa.or_(ft.c.not_before.is_(None), ft.c.not_before <= sa.bindparam("now")),
            )
            .order_by(ft.c.seq)
            .limit(n)
        )

    @functools.cached_property
    def claim_one(self) -> sa.Update:
        """Mark the oldest ready job of `:dest` running, with `started`
        set to `:now`, claim token `:token` and lease `:lease_until`, count an
        attempt, and return it.

        One statement, one round trip. The id is chosen by a scalar
        subquery, which PostgreSQL runs once (an InitPlan), so exactly one row
        is updated; `FOR UPDATE SKIP LOCKED` makes concurrent claimers pass
        over a row another is taking rather than wait for it or take it too (a
        locked row that has meanwhile stopped being ready is re-checked and
        skipped). The partial index on ready jobs, ordered by `seq`, keeps the
        cost flat however many finished jobs there are. SQLite ignores
        `FOR UPDATE`; there the transaction's `BEGIN IMMEDIATE` holds the
        only write lock.
        """
        ft = self.tables.fulltext
        oldest = self._oldest_ready(1).with_for_update(skip_locked=True)
        return (
            sa.update(ft)
            .where(ft.c.id == oldest.scalar_subquery())
            .values(
                status=JobStatus.RUNNING.value,
                started=sa.bindparam("now"),
                attempts=ft.c.attempts + 1,
                claim_token=sa.bindparam("token", type_=sa.Uuid),
                lease_expires=sa.bindparam("lease_until"),
                not_before=None,
                version=ft.c.version + 1,
            )
            .returning(*self.job_columns)
        )

    @functools.cached_property
    def claim_many(self) -> sa.Update:
        """Mark the `:n` oldest ready jobs of `:dest` running, with
        `started` set to `:now`, a fresh claim token each and lease
        `:lease_until`, count an attempt, and return them (with `seq`, to
        sort them: RETURNING keeps no order).

        On PostgreSQL the locking SELECT sits in a CTE, which is never
        inlined: written as `WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP
        LOCKED)` the planner may turn it into a semi join that re-runs the
        subquery and updates more than `n` rows. The UPDATE takes the CTE's
        ids as one array (`id = ANY(ARRAY(SELECT id FROM picked))`, an
        InitPlan run once), which it can only probe the primary key with:
        joined to the CTE (`UPDATE ... FROM picked`), the planner, which
        sees 100 picked rows, chose a hash join over a sequential scan of
        the whole table, and the claim's cost grew with the table (see
        docs/benchmarks.md, "Why the hot path is written as it is"). SQLite runs the IN
        subquery once, under the transaction's write lock.
        """
        ft = self.tables.fulltext
        oldest = self._oldest_ready(sa.bindparam("n", type_=sa.Integer))
        stmt = sa.update(ft).values(
            status=JobStatus.RUNNING.value,
            started=sa.bindparam("now"),
            attempts=ft.c.attempts + 1,
            claim_token=self._new_uuid(),  # one per row: it is volatile
            lease_expires=sa.bindparam("lease_until"),
            not_before=None,
            version=ft.c.version + 1,
        )
        if self.postgresql:
            picked = oldest.with_for_update(skip_locked=True).cte("picked")
            ids = sa.func.array(sa.select(picked.c.id).scalar_subquery())
            stmt = stmt.where(ft.c.id == sa.any_(ids))
        else:
            stmt = stmt.where(ft.c.id.in_(oldest.scalar_subquery()))
        return stmt.returning(*self.job_columns, ft.c.seq)

    @functools.cached_property
    def hold_ready(self) -> sa.Select[Any]:
        """The `:n` oldest due ready jobs of `:dest` (as `claim_many` chooses
        them), oldest first, row-locked until the transaction ends: the
        claim of `Repository.hold_ready`, which writes nothing. `SKIP
        LOCKED` passes over the rows other holders and claimers have
        locked; a locked row that has meanwhile stopped being ready is
        re-checked and skipped. SQLite ignores `FOR UPDATE`: there the
        transaction's `BEGIN IMMEDIATE` holds the only write lock."""
        oldest = self._oldest_ready(sa.bindparam("n", type_=sa.Integer))
        stmt = oldest.with_only_columns(*self.job_columns)
        return stmt.with_for_update(skip_locked=True) if self.postgresql else stmt

    @functools.cached_property
    def write_held(self) -> sa.TextClause:
        """`update_jobs` for the jobs of a `hold_ready` block (PostgreSQL):
        only the columns a held job's outcome can change, one array each
        (`job_id`, `read_version`, `status`, `started`, `finished`,
        `attempts`, `last_error`, `not_before`; see `held_arrays`); the
        claim token and lease are cleared, as the row holds neither. Returns
        the ids written; the version guard stays, though the block's row
        locks leave nobody else to change the rows. Five arrays fewer than
        `update_jobs` to send and unnest: the one write a held job costs."""
        return self._held_update(
            "status = CAST(v.status AS job_statuses), started = v.started, "
            "finished = v.finished, attempts = v.attempts, last_error = v.last_error, "
            "not_before = v.not_before",
            {
                "status": "text",
                "started": "timestamptz",
                "finished": "timestamptz",
                "attempts": "integer",
                "last_error": "text",
                "not_before": "timestamptz",
            },
        )

    @functools.cached_property
    def finish_held(self) -> sa.TextClause:
        """`write_held` for a batch of held jobs that were all plainly
        finished (PostgreSQL): only `job_id`, `read_version` and `finished`
        travel as arrays; `started` is the hold's one moment (`:started`),
        the attempt is counted on the row (`attempts + 1`: the row is
        locked, so it is the count the copy was handed out with), the last
        error stays and the delay is cleared. Returns the ids written."""
        return self._held_update(
            "status = 'finished', started = :started, finished = v.finished, "
            "attempts = f.attempts + 1, not_before = NULL",
            {"finished": "timestamptz"},
        )

    def _held_update(self, assignments: str, arrays: dict[str, str]) -> sa.TextClause:
        """The write of held jobs: `assignments` from the arrays `job_id`,
        `read_version` and `arrays` (name: element type), unnested as `v`;
        the claim token and lease cleared, as the row holds neither; the
        version moved on under its guard; the ids written returned."""
        columns = {"job_id": "uuid", "read_version": "integer", **arrays}
        unnested = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns.items())
        return sa.text(
            f"UPDATE {self.tables.fulltext.fullname} AS f SET {assignments}, "  # noqa: S608 - names from the declared table, values bound
            "claim_token = NULL, lease_expires = NULL, version = f.version + 1 "
            f"FROM unnest({unnested}) AS v({', '.join(columns)}) "
            "WHERE f.id = v.job_id AND f.version = v.read_version RETURNING f.id"
        )

    @functools.cached_property
    def next_due(self) -> sa.Select[Any]:
        """When the next of `:dest`'s ready jobs may be claimed: the earliest
        `not_before` among them, `:now` for one not delayed, or NULL if none
        is ready.

        Read along the partial index of ready jobs; a worker asks only after
        a claim came back empty, when the ready jobs are the delayed ones
        (and any another claimer is taking), the rows that claim just passed
        over. No row is locked.
        """
        ft = self.tables.fulltext
        now = sa.bindparam("now", type_=ft.c.not_before.type)
        due = sa.func.coalesce(ft.c.not_before, now, type_=ft.c.not_before.type)
        return sa.select(sa.func.min(due, type_=ft.c.not_before.type)).where(
            ft.c.destination == sa.bindparam("dest"),
            ft.c.status == sa.literal_column("'ready'"),
        )

    # --- rate limits ------------------------------------------------

    @functools.cached_property
    def take_rate_tokens(self) -> sa.Insert:
        """Take up to `:n` start tokens from `:dest`'s bucket, for a rate of
        one token every `:interval` seconds and bursts of `:burst` (the
        arithmetic of `fulltext_jobs.rate_limit.take`); return the bucket's
        new `tat`, the tokens granted, and the time the take was judged at
        (seconds since 1970).

        One upsert, one round trip: the first take of a destination
        creates its row, full. Why it is safe under concurrency: on
        PostgreSQL `ON CONFLICT DO UPDATE` locks the row, so takers of one
        destination queue on it for the length of one statement and each
        computes from the `tat` the previous one wrote (takers of other
        destinations do not wait); on SQLite the transaction's `BEGIN
        IMMEDIATE` holds the only write lock.

        The clock: on PostgreSQL `:now` may be NULL, and then the server's
        clock is read (`statement_timestamp()`, fixed for the statement),
        so that workers on machines whose clocks disagree still share one
        notion of "now" for the bucket. If the statement waits for the row,
        that reading is a little old, which only hands out fewer tokens.
        """
        bucket = self.tables.rate_limit
        interval = sa.bindparam("interval", type_=sa.Double)
        burst = sa.bindparam("burst", type_=sa.Integer)
        n = sa.bindparam("n", type_=sa.Integer)
        now: ColumnElement[float] = sa.bindparam("now", type_=sa.Double)
        if self.postgresql:
            now = sa.func.coalesce(
                sa.cast(now, sa.Double),
                sa.func.date_part("epoch", sa.func.statement_timestamp()),
                type_=sa.Double,
            )
        # SQLite's many-argument max() and min() are scalar functions.
        greatest = getattr(sa.func, "greatest" if self.postgresql else "max")
        least = getattr(sa.func, "least" if self.postgresql else "min")
        base = greatest(bucket.c.tat, now, type_=sa.Double)
        earned = greatest(
            sa.literal(0.0, sa.Double),
            (now - base + sa.literal(TOLERANCE_SECONDS, sa.Double)) / interval + burst,
            type_=sa.Double,
        )
        # The value is at least 0 here, where a cast (SQLite's truncation)
        # and floor() agree; PostgreSQL's cast would round.
        available = (
            sa.cast(sa.func.floor(earned), sa.Integer)
            if self.postgresql
            else sa.cast(earned, sa.Integer)
        )
        granted = least(n, available, type_=sa.Integer)
        first = least(n, burst, type_=sa.Integer)
        stmt = self._insert(bucket).values(
            destination=sa.bindparam("dest"), tat=now + first * interval, granted=first
        )
        return stmt.on_conflict_do_update(
            index_elements=[bucket.c.destination],
            # Each SET reads the row as it was: `granted` is spelt out again.
            set_={"tat": base + granted * interval, "granted": granted},
        ).returning(bucket.c.tat, bucket.c.granted, now)

    # --- leases ----------------------------------------------------------------

    @functools.cached_property
    def heartbeat(self) -> sa.Update:
        """Extend the lease of job `:id` to `:lease_until`, if it is still
        running under claim `:token`; returns the new lease, or no row.

        It changes only `lease_expires`, which is in no index, so on
        PostgreSQL it can be a HOT update; it leaves `version` alone (and
        the version trigger does not fire on the lease), so the worker's
        other copies of the job stay current."""
        ft = self.tables.fulltext
        return (
            sa.update(ft)
            .where(
                ft.c.id == sa.bindparam("job_id", type_=sa.Uuid),
                ft.c.status == sa.literal_column("'running'"),
                ft.c.claim_token == sa.bindparam("token", type_=sa.Uuid),
            )
            .values(lease_expires=sa.bindparam("lease_until"))
            .returning(ft.c.lease_expires)
        )

    def rescue_expired(self, destination: str | None) -> sa.Update:
        """Return running jobs whose lease ended before `:now` to ready, with
        `RESCUED_ERROR` as their last error, or, at `:max_attempts`
        attempts, fail them with that reason recorded (`lease_expired_error`);
        end their claims. Returns their ids.

        The condition (running, lease expired) is in the UPDATE itself, so it
        is judged on each row as it is when updated, with the row locked: a
        job finished a moment before no longer matches and is left alone.
        """
        ft = self.tables.fulltext
        give_up = ft.c.attempts >= sa.bindparam("max_attempts", type_=sa.Integer)
        failed_reason = (
            sa.literal("lease expired after ")
            + sa.cast(ft.c.attempts, sa.Text)
            + sa.literal(" attempt(s); max_attempts reached")
        )
        stmt = sa.update(ft).where(
            ft.c.status == sa.literal_column("'running'"),
            ft.c.lease_expires < sa.bindparam("now"),
        )
        if destination is not None:
            stmt = stmt.where(ft.c.destination == destination)
        return stmt.values(
            # Cast: a CASE of plain strings is text, which PostgreSQL will
            # not put in an enum column.
            status=sa.case(
                (give_up, sa.cast(sa.literal_column("'failed'"), ft.c.status.type)),
                else_=sa.cast(sa.literal_column("'ready'"), ft.c.status.type),
            ),
            started=sa.case((give_up, ft.c.started), else_=None),
            finished=sa.case((give_up, sa.bindparam("now")), else_=ft.c.finished),
            last_error=sa.case((give_up, failed_reason), else_=sa.literal(RESCUED_ERROR)),
            claim_token=None,
            lease_expires=None,
            version=ft.c.version + 1,
        ).returning(ft.c.id)

    def retry(self, destination: str, statuses: list[str], item_ids: list[str] | None) -> sa.Update:
        """Return `destination`'s jobs in `statuses` (of `item_ids`, if
        given) to ready as `FullText.retry` does: `started`, `finished` and
        the delay cleared, `attempts` back to 0, the last error and `seq`
        kept; the version moved on (the library's own write, which the
        version trigger does not count again)."""
        ft = self.tables.fulltext
        stmt = sa.update(ft).where(ft.c.destination == destination, ft.c.status.in_(statuses))
        if item_ids is not None:
            stmt = stmt.where(ft.c.item_id.in_(item_ids))
        return stmt.values(
            status=JobStatus.READY.value,
            started=None,
            finished=None,
            attempts=0,
            claim_token=None,
            lease_expires=None,
            not_before=None,
            version=ft.c.version + 1,
        ).execution_options(preserve_rowcount=True)
