"""Claims, holds, the next due job, rate-limit tokens, and leases (heartbeats,
rescues, retries)."""

from __future__ import annotations

import functools
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from fulltext_jobs.domain import ATTEMPTS_EXHAUSTED_ERROR, MAX_ATTEMPTS, RESCUED_ERROR, JobStatus
from fulltext_jobs.rate_limit import TOLERANCE_SECONDS
from fulltext_jobs.sql.statements.controls import ControlStatements

#: How many of the delayed jobs that have come due a claim looks at (a batch
#: claim of more looks at as many as it claims), among which it finds the
#: first in claim order (see `ClaimStatements._first_ready`). Each costs the
#: claim one primary-key probe while that many have come due.
COME_DUE_LOOK_AHEAD: Final = 100


class ClaimStatements(ControlStatements):
    """Claims, holds, the next due job, rate-limit tokens, and leases (heartbeats,
    rescues, retries)."""

    # --- claims --------------------------------------------------------------

    def _ready(self) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
        """`:dest`'s ready jobs. The status is a literal, not a parameter: a
        prepared statement's generic plan can use a partial index `WHERE
        status = 'ready' ...` only if the query says 'ready' itself."""
        ft = self.tables.fulltext
        return ft.c.destination == sa.bindparam("dest"), ft.c.status == sa.literal_column("'ready'")

    def _first_ready(
        self, n: ColumnElement[int] | int, columns: tuple[sa.Column[Any], ...]
    ) -> sa.Select[Any]:
        """`columns` (and `seq`) of the `n` first ready jobs of `:dest` due
        at `:now` in claim order (`_claim_order`: the highest priority
        first, then the oldest by `seq`); on PostgreSQL each row locked
        (`FOR UPDATE SKIP LOCKED`) as it is read.

        Two queues, each read along its own partial index, merged in claim
        order: the due jobs (`not_before` null, `fulltext_due_priority_idx`)
        in claim order, and the delayed ones that have come due
        (`fulltext_delayed_idx`, by `not_before`): the `_look_ahead(n)` that
        came due first, of which the first in claim order compete with the
        due ones. So a claim reads no delayed job that is not yet due,
        however many wait ahead of the due ones, and a delayed job that has
        come due keeps its place (its priority, its `seq`) among the due
        ones (of more than the look-ahead come due at once, the later ones
        wait for the earlier to be claimed, whatever their priority).

        Each branch reads, and on PostgreSQL locks (`SKIP LOCKED` passing
        over the rows others hold), at most `n` rows; the merge keeps the
        `n` first. PostgreSQL sorts the two branches' rows rather than
        merge them lazily (it does not for locking branches), so a claim
        that takes delayed jobs also locks as many of the next due jobs,
        which it does not take: until its statement ends, or for
        `hold_ready` its transaction, other claimers pass over them and take
        the ones after. No job is lost or claimed twice; the order bends by
        that many jobs. A locked row is re-checked when locked (it may have
        stopped being ready, or due).
        """
        ft = self.tables.fulltext
        now = sa.bindparam("now", type_=ft.c.not_before.type)
        ready = self._ready()
        # What the merge orders by, after the columns asked for.
        asked = {c.name for c in columns}
        columns = (*columns, *(c for c in (ft.c.priority, ft.c.seq) if c.name not in asked))
        came_due = (
            sa.select(*columns)
            .where(*ready, ft.c.not_before.is_not(None), ft.c.not_before <= now)
            .order_by(ft.c.not_before, ft.c.seq)
            .limit(self._look_ahead(n))
        )
        due = (
            sa.select(*columns)
            .where(*ready, ft.c.not_before.is_(None), *self._from_floor())
            .order_by(*self._claim_order(ft.c))
            .limit(n)
        )
        if self.postgresql:
            # The look-ahead's ids as one array (an InitPlan, run once),
            # whose rows the branch probes by primary key, sorts (a bounded
            # set) and locks in claim order: a lock taken in the look-ahead
            # itself would lock, in `not_before` order, rows the claim does
            # not take.
            ids = sa.func.array(came_due.with_only_columns(ft.c.id).scalar_subquery())
            # The status compared as text: a condition that implies no
            # partial index's `status = 'ready'`, so that the primary key is
            # the only index the probe can use. Written plainly, on a
            # drained queue the planner scanned `fulltext_ready_idx` for the
            # destination with `id = ANY(...)` as a filter, reading every
            # dead entry of that index on every claim (docs/benchmarks.md,
            # "the soak with autovacuum on").
            still_ready = sa.cast(ft.c.status, sa.Text) == sa.literal_column("'ready'")
            came_due = (
                sa.select(*columns)
                .where(
                    ft.c.id == sa.any_(ids),
                    ft.c.destination == sa.bindparam("dest"),
                    still_ready,
                    ft.c.not_before <= now,
                )
                .order_by(*self._claim_order(ft.c))
                .limit(n)
                .with_for_update(skip_locked=True)
            )
            due = due.with_for_update(skip_locked=True)
        # Each branch a subquery: SQLite takes no ORDER BY or LIMIT in a
        # compound's members.
        branches = [sa.select(branch.subquery()) for branch in (due, came_due)]
        merged = sa.union_all(*branches).subquery("ready_jobs")
        return (
            sa.select(merged)
            .where(self._claim_allowed())
            .order_by(*self._claim_order(merged.c))
            .limit(n)
        )

    def _claim_order(self, c: Any) -> tuple[ColumnElement[Any], ...]:  # noqa: ANN401 - a table's or a subquery's columns
        """The claim order over the columns `c` (with `priority` and
        `seq`): the highest priority first, then the oldest. On PostgreSQL
        by the negated priority, as `fulltext_due_priority_idx` keys it
        (migration 0016), so that the floor's row comparison
        (`_from_floor`) is a range of the index; on SQLite by `priority
        DESC`, as its index there is."""
        if self.postgresql:
            return (-c.priority, c.seq)
        return (c.priority.desc(), c.seq)

    def _from_floor(self) -> tuple[ColumnElement[bool], ...]:
        """On PostgreSQL, the due jobs whose claim key `(-priority, seq)`
        is from `(:from_rank, :from_seq)` up to, not including,
        `(:below_rank, :below_seq)`: the claim floor of
        `fulltext_jobs.sql.floors`, where the due index's scan starts (and,
        reading behind the floor, ends). SQLite keeps no dead index entries
        to pass over: it reads from the start."""
        if not self.postgresql:
            return ()
        ft = self.tables.fulltext
        key = sa.tuple_(-ft.c.priority, ft.c.seq)

        def bound(name: str) -> ColumnElement[Any]:
            return sa.tuple_(
                sa.bindparam(f"{name}_rank", type_=sa.Integer),
                sa.bindparam(f"{name}_seq", type_=sa.BigInteger),
            )

        return key >= bound("from"), key < bound("below")

    def _look_ahead(self, n: ColumnElement[int] | int) -> sa.ColumnElement[int] | int:
        """How many of the delayed jobs that have come due a claim of `n`
        looks at: `COME_DUE_LOOK_AHEAD`, or `n` if more."""
        if isinstance(n, int):
            return max(n, COME_DUE_LOOK_AHEAD)
        # SQLite's many-argument max() is a scalar function.
        greatest = getattr(sa.func, "greatest" if self.postgresql else "max")
        larger: sa.ColumnElement[int] = greatest(n, COME_DUE_LOOK_AHEAD, type_=sa.Integer)
        return larger

    def _claimed_values(self, token: ColumnElement[Any]) -> dict[str, Any]:
        """The SET of a claim: the job running from `:now` under `token`
        with lease `:lease_until`, its attempt counted; or, for a job
        already at `MAX_ATTEMPTS` (whose attempt the column could not
        count), failed at `:now` with `ATTEMPTS_EXHAUSTED_ERROR`, which the
        caller does not hand out. The version moves on either way."""
        ft = self.tables.fulltext
        exhausted = ft.c.attempts >= MAX_ATTEMPTS
        now = sa.bindparam("now", type_=ft.c.started.type)

        def unless_exhausted(claimed: Any, failed: Any) -> ColumnElement[Any]:  # noqa: ANN401 - any column's value
            return sa.case((exhausted, failed), else_=claimed)

        return {
            # Cast: a CASE of plain strings is text, which PostgreSQL will
            # not put in an enum column.
            "status": unless_exhausted(
                sa.cast(sa.literal_column("'running'"), ft.c.status.type),
                sa.cast(sa.literal_column("'failed'"), ft.c.status.type),
            ),
            "started": unless_exhausted(now, ft.c.started),
            "finished": unless_exhausted(ft.c.finished, now),
            "attempts": unless_exhausted(ft.c.attempts + 1, ft.c.attempts),
            "claim_token": unless_exhausted(token, sa.null()),
            "lease_expires": unless_exhausted(
                sa.bindparam("lease_until", type_=ft.c.lease_expires.type), sa.null()
            ),
            "last_error": unless_exhausted(ft.c.last_error, sa.literal(ATTEMPTS_EXHAUSTED_ERROR)),
            "not_before": None,
            "version": ft.c.version + 1,
        }

    @functools.cached_property
    def claim_one(self) -> sa.Update:
        """Mark the first ready job of `:dest` due at `:now` (in claim order:
        the highest priority first, then the oldest) running, with
        `started` set to `:now`, claim token `:token` and lease
        `:lease_until`, count an attempt, and return it (with `seq`, after
        the job's columns); a job already at `MAX_ATTEMPTS` is failed
        instead (see `_claimed_values`), and returned so, for the caller to
        claim again.

        One statement, one round trip. The id is chosen by a scalar
        subquery, which PostgreSQL runs once (an InitPlan), so exactly one row
        is updated; `FOR UPDATE SKIP LOCKED` makes concurrent claimers pass
        over a row another is taking rather than wait for it or take it too (a
        locked row that has meanwhile stopped being ready is re-checked and
        skipped). The partial indexes of ready jobs keep the cost flat
        however many finished or delayed jobs there are. SQLite ignores
        `FOR UPDATE`; there the transaction's `BEGIN IMMEDIATE` holds the
        only write lock.
        """
        ft = self.tables.fulltext
        first = self._first_ready(1, (ft.c.id,))
        return (
            sa.update(ft)
            .where(ft.c.id == _ids(first).scalar_subquery())
            .values(self._claimed_values(sa.bindparam("token", type_=sa.Uuid)))
            .returning(*self.job_columns, ft.c.seq)
        )

    @functools.cached_property
    def claim_many(self) -> sa.Update:
        """Mark the `:n` first ready jobs of `:dest` due at `:now` (in claim
        order) running, with `started` set to `:now`, a fresh claim token
        each and lease `:lease_until`, count an attempt, and return them
        (with `seq`, to sort them: RETURNING keeps no order); a job already at
        `MAX_ATTEMPTS` is failed instead (see `_claimed_values`), and
        returned so, for the caller to leave out.

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
        return self._claim_up_to(sa.bindparam("n", type_=sa.Integer))

    @functools.cached_property
    def claim_capped(self) -> sa.Update:
        """`claim_many`, taking no more than the cap `:max_running` less the
        destination's running jobs (`_room_under_cap`): the claim of a
        capped destination, run after its row of the controls is locked
        (`lock_controls`), so that the count, made by this statement, sees
        every claim the previous holder of the lock committed."""
        return self._claim_up_to(self._room_under_cap())

    def _room_under_cap(self) -> ColumnElement[int]:
        """`:n`, or fewer: what `:max_running` leaves once `:dest`'s running
        jobs are counted (along `fulltext_running_idx`), never below 0 (a
        negative LIMIT is an error on PostgreSQL and no limit on SQLite)."""
        ft = self.tables.fulltext
        busy = (
            sa.select(sa.func.count())
            .where(
                ft.c.destination == sa.bindparam("dest"),
                ft.c.status == sa.literal_column("'running'"),
            )
            .scalar_subquery()
        )
        greatest = getattr(sa.func, "greatest" if self.postgresql else "max")
        least = getattr(sa.func, "least" if self.postgresql else "min")
        room: ColumnElement[int] = greatest(
            0,
            least(
                sa.bindparam("n", type_=sa.Integer),
                sa.bindparam("max_running", type_=sa.Integer) - busy,
                type_=sa.Integer,
            ),
            type_=sa.Integer,
        )
        return room

    def _claim_up_to(self, n: ColumnElement[int]) -> sa.Update:
        """`claim_many`'s statement, claiming `n` jobs."""
        ft = self.tables.fulltext
        first = self._first_ready(n, (ft.c.id,))
        stmt = sa.update(ft).values(self._claimed_values(self._new_uuid()))  # one per row: volatile
        if self.postgresql:
            picked = _ids(first).cte("picked")
            ids = sa.func.array(sa.select(picked.c.id).scalar_subquery())
            stmt = stmt.where(ft.c.id == sa.any_(ids))
        else:
            stmt = stmt.where(ft.c.id.in_(_ids(first).scalar_subquery()))
        return stmt.returning(*self.job_columns, ft.c.seq)

    @functools.cached_property
    def hold_ready(self) -> sa.Select[Any]:
        """The `:n` first due ready jobs of `:dest` (as `claim_many` chooses
        them), in claim order, with `seq` after the job's columns, row-locked
        until the transaction ends: the claim of `Repository.hold_ready`,
        which writes nothing. `SKIP LOCKED` passes over the rows other
        holders and claimers have locked; a locked row that has meanwhile
        stopped being ready is re-checked and skipped. The columns are read from the locked rows
        themselves. SQLite ignores `FOR UPDATE`: there the transaction's
        `BEGIN IMMEDIATE` holds the only write lock. A job at
        `MAX_ATTEMPTS` among them is the caller's to fail
        (`fail_exhausted`) before it holds the others."""
        return self._hold_up_to(sa.bindparam("n", type_=sa.Integer))

    @functools.cached_property
    def hold_capped(self) -> sa.Select[Any]:
        """`hold_ready`, holding no more than the cap `:max_running` less the
        destination's running jobs, as `claim_capped`."""
        return self._hold_up_to(self._room_under_cap())

    def _hold_up_to(self, n: ColumnElement[int]) -> sa.Select[Any]:
        """`hold_ready`'s statement, holding `n` jobs."""
        first = self._first_ready(n, self.job_columns)
        return first.with_only_columns(
            *(first.selected_columns[c.name] for c in self.job_columns),
            first.selected_columns["seq"],
        )

    @functools.cached_property
    def fail_exhausted(self) -> sa.Update:
        """Fail the ready jobs `:ids`, which a `hold_ready` found at
        `MAX_ATTEMPTS`, at `:now` with `ATTEMPTS_EXHAUSTED_ERROR` (as a
        claim does, `_claimed_values`), in the hold's transaction, which
        has them locked. Returns their ids."""
        ft = self.tables.fulltext
        return (
            sa.update(ft)
            .where(
                ft.c.id.in_(sa.bindparam("ids", expanding=True)),
                ft.c.status == sa.literal_column("'ready'"),
                ft.c.attempts >= MAX_ATTEMPTS,
            )
            .values(
                status=JobStatus.FAILED.value,
                finished=sa.bindparam("now"),
                last_error=ATTEMPTS_EXHAUSTED_ERROR,
                not_before=None,
                version=ft.c.version + 1,
            )
            .returning(ft.c.id)
        )

    @functools.cached_property
    def write_held(self) -> sa.TextClause:
        """`update_jobs` for the jobs of a `hold_ready` block (PostgreSQL):
        only the columns a held job's outcome can change, one array each
        (`job_id`, `read_version`, `status`, `started`, `finished`,
        `attempts`, `last_error`, `not_before`, `backoffs`, `ready_at`; see
        `held_arrays`); the
        claim token and lease are cleared, as the row holds neither. Returns
        the ids written; the version guard stays, though the block's row
        locks leave nobody else to change the rows. Five arrays fewer than
        `update_jobs` to send and unnest: the one write a held job costs."""
        return self._held_update(
            "status = CAST(v.status AS job_statuses), started = v.started, "
            "finished = v.finished, attempts = v.attempts, last_error = v.last_error, "
            "not_before = v.not_before, backoffs = v.backoffs, ready_at = v.ready_at",
            {
                "status": "text",
                "started": "timestamptz",
                "finished": "timestamptz",
                "attempts": "integer",
                "last_error": "text",
                "not_before": "timestamptz",
                "backoffs": "integer",
                "ready_at": "timestamptz",
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

        Two index probes: the first entry of the due jobs' index, and the
        first of the delayed jobs' index, which is in `not_before` order.
        No row is locked.
        """
        ft = self.tables.fulltext
        moment = ft.c.not_before.type
        now = sa.bindparam("now", type_=moment)
        # In `seq` order, not EXISTS: PostgreSQL may answer an EXISTS by a
        # sequential scan, which reads every finished job first.
        due = (
            sa.select(ft.c.seq)
            .where(*self._ready(), ft.c.not_before.is_(None))
            .order_by(ft.c.seq)
            .limit(1)
            .scalar_subquery()
        )
        first_delayed = sa.select(sa.func.min(ft.c.not_before, type_=moment)).where(
            *self._ready(), ft.c.not_before.is_not(None)
        )
        earliest = first_delayed.scalar_subquery()
        # The earlier of the two: `:now` for a due job, unless a delayed
        # job came due before it.
        earlier = sa.case(
            (sa.and_(due.is_not(None), sa.or_(earliest.is_(None), earliest > now)), now),
            else_=earliest,
        )
        return sa.select(sa.type_coerce(earlier, moment))

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
            ready_at=sa.case((give_up, ft.c.ready_at), else_=sa.bindparam("now")),
            claim_token=None,
            lease_expires=None,
            version=ft.c.version + 1,
        ).returning(ft.c.id)

    def retry(self, destination: str, statuses: list[str], item_ids: list[str] | None) -> sa.Update:
        """Return `destination`'s jobs in `statuses` (of `item_ids`, if
        given) to ready as `FullText.retry` does: `started`, `finished` and
        the delay cleared, `attempts` and `backoffs` back to 0, ready from
        `:now`, the last error and `seq` kept; the version moved on (the
        library's own write, which the
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
            backoffs=0,
            claim_token=None,
            lease_expires=None,
            not_before=None,
            ready_at=sa.bindparam("now", type_=ft.c.ready_at.type),
            version=ft.c.version + 1,
        ).execution_options(preserve_rowcount=True)


def _ids(first: sa.Select[Any]) -> sa.Select[Any]:
    """The ids alone of `_first_ready`'s jobs, in its order and limit."""
    return first.with_only_columns(first.selected_columns.id)
