"""The claims of the SQLAlchemy adapter: what `get_ready_job`,
`claim_ready`, `hold_ready`, `next_due` and `take_rate_tokens` do in SQL,
on checked arguments, and the claim floors they read from on PostgreSQL
(`fulltext_jobs.sql.floors`).

`ClaimOperations` is a part of `SqlOperations` (which it is mixed into),
kept apart because the claims are the hot path and the floors' rules live
with them: every claim reads through `_from_floor`, and every operation
that makes jobs ready behind a floor drops it (`_returning_to_ready`,
`_forget_floor`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

import sqlalchemy as sa

from fulltext_jobs.checks import read_clock
from fulltext_jobs.domain import MAX_ATTEMPTS, FullText, JobStatus
from fulltext_jobs.errors import NoJobs, NotSupported, StoreError
from fulltext_jobs.port import Hold, hold_copy
from fulltext_jobs.rate_limit import RateTokens, wait_for_next
from fulltext_jobs.sql.compiled import HotPath
from fulltext_jobs.sql.floors import FROM_START, PAST_END, ClaimFloors, ClaimKey, range_params
from fulltext_jobs.sql.rows import (
    at_max_attempts,
    claim_key,
    controls_of,
    held_arrays,
    held_from_values,
    job_from_values,
    to_job,
)
from fulltext_jobs.sql.statements import Statements
from fulltext_jobs.sql.transactions import Transactions, in_autocommit

__all__ = ["ClaimOperations"]

_Claimed = TypeVar("_Claimed")

#: The message of a `DuplicateJob` from a write of several jobs.
BATCH_DUPLICATE: Final = "one of the jobs would be a second job for its item and destination"


def _row_key(row: Any) -> ClaimKey:  # noqa: ANN401 - a Row with the job's columns and `seq`
    """The place in the claim order of a row read with `Statements.job_columns`
    and `seq`."""
    return -row.priority, row.seq


_log = logging.getLogger(__name__)


class ClaimOperations:
    """The claims, holds, delays and rate tokens of `SqlOperations`, which
    sets the attributes below."""

    _tx: Transactions
    _sql: Statements
    _hot: HotPath | None
    _clock: Callable[[], datetime]
    _lease: timedelta
    _server_clock: bool
    _floors: ClaimFloors | None
    #: The destinations this process has found capped (see `_has_cap`).
    _capped: set[str]

    if TYPE_CHECKING:

        def _save_rows(self, connection: sa.Connection, jobs: list[FullText]) -> set[uuid.UUID]:
            """`SqlOperations._save_rows`."""

    # --- claims ----------------------------------------------------------

    def get_ready_job(self, destination: str) -> FullText:
        now = read_clock(self._clock, self._lease)
        params = {
            "dest": destination,
            "now": now,
            "token": uuid.uuid4(),
            "lease_until": now + self._lease,
            "uncapped_only": True,
        }
        while True:
            if destination in self._capped:
                found = self._claim_capped(destination, {**params, "n": 1})
                job = found[0] if found else None
            else:
                job = self._from_floor(destination, params, self._claim_one)
                if job is None and self._has_cap(destination):
                    continue  # a cap: claim again, within it
            if job is None:
                raise NoJobs(f"no job is ready for {destination!r}")
            if job.status is JobStatus.RUNNING:
                return job
            # The claim failed a job at MAX_ATTEMPTS (see `claim_one`):
            # the next one.

    def _claim_one(self, params: dict[str, Any]) -> tuple[FullText | None, ClaimKey | None]:
        """The job `claim_one` returns (claimed, or failed at
        `MAX_ATTEMPTS`) and its claim key, or (None, None) if none is ready."""
        if self._hot is not None and not self._tx.joined:
            self._restamp(params)  # its statement is its transaction
            values = self._tx.run_alone(self._hot.claim_one, params, "get_ready_job")
        else:
            with self._tx.connection("get_ready_job", single_statement=True) as connection:
                self._restamp(params)
                if self._hot is None:
                    row = connection.execute(self._sql.claim_one, params).one_or_none()
                    return (None, None) if row is None else (to_job(row), _row_key(row))
                values = self._hot.claim_one.run(connection, params)
        return (None, None) if values is None else (job_from_values(values), claim_key(values))

    def claim_ready(self, destination: str, n: int) -> list[FullText]:
        now = read_clock(self._clock, self._lease)
        params = {
            "dest": destination,
            "n": n,
            "now": now,
            "lease_until": now + self._lease,
            "uncapped_only": True,
        }
        claimed: list[FullText] = []
        while True:
            if destination in self._capped:
                jobs = self._claim_capped(destination, params)
            else:
                jobs = self._from_floor(destination, params, self._claim_many)
                if not jobs and self._has_cap(destination):
                    continue  # a cap: claim again, within it
            running = [job for job in jobs if job.status is JobStatus.RUNNING]
            claimed += running
            if len(running) == len(jobs) or len(claimed) == n:
                return claimed
            # The claim failed jobs at MAX_ATTEMPTS (see `claim_many`):
            # as many again, after the ones claimed.
            params["n"] = n - len(claimed)

    def _claim_many(self, params: dict[str, Any]) -> tuple[list[FullText], ClaimKey | None]:
        """The jobs `claim_many` returns (claimed, or failed at
        `MAX_ATTEMPTS`), in claim order, and the last one's claim key (None
        if none)."""
        with self._tx.connection("claim_ready", single_statement=True) as connection:
            self._restamp(params)
            return self._claim_many_on(connection, params)

    def _claim_many_on(
        self, connection: sa.Connection, params: dict[str, Any], *, capped: bool = False
    ) -> tuple[list[FullText], ClaimKey | None]:
        """`_claim_many`, on `connection`; with `capped`, `claim_capped`."""
        if self._hot is not None:
            hot = self._hot.claim_capped if capped else self._hot.claim_many
            values = hot.run_all(connection, params)
            # RETURNING keeps no order: the claim order's key, from the
            # priority and `seq` (after the job's columns).
            values.sort(key=claim_key)
            return [job_from_values(row) for row in values], claim_key(
                values[-1]
            ) if values else None
        statement = self._sql.claim_capped if capped else self._sql.claim_many
        rows = sorted(connection.execute(statement, params), key=_row_key)
        return [to_job(row) for row in rows], _row_key(rows[-1]) if rows else None

    # --- claims under a cap ------------------------------------------------

    def _has_cap(self, destination: str, connection: sa.Connection | None = None) -> bool:
        """After a claim that found nothing: whether `destination` has a cap
        (which the claim's guard, `uncapped_only`, stopped at), read on
        `connection` if given (a hold's, whose transaction holds SQLite's
        write lock); if so it is remembered, and this process's claims take
        the capped path from now on. A cap removed later is found there, and
        forgotten."""
        params = {"dest": destination}
        if connection is None:
            with self._tx.connection("claim_ready", single_statement=True) as own:
                row = own.execute(self._sql.read_controls, params).one_or_none()
        else:
            row = connection.execute(self._sql.read_controls, params).one_or_none()
        if row is None or row.max_running is None:
            return False
        self._capped.add(destination)
        return True

    def _claim_capped(self, destination: str, params: dict[str, Any]) -> list[FullText]:
        """Claim as `claim_many` does, within `destination`'s cap: in one
        transaction, lock the destination's row of the controls (capped
        claimers take turns on it), then claim at most the cap less its
        running jobs, counted by the claim itself (`claim_capped`; nothing
        while paused). A destination found to have no cap any more is
        forgotten, and claimed as usual."""
        with self._tx.connection("claim_ready") as connection:
            self._restamp(params)
            cap = self._lock_cap(connection, destination, params["now"])
            if cap is None:
                self._capped.discard(destination)
            elif cap == 0:
                return []
            else:
                capped = {**params, "n": params.get("n", 1), "max_running": cap}
                capped["uncapped_only"] = False
                return self._from_floor(
                    destination,
                    capped,
                    lambda p: self._claim_many_on(connection, p, capped=True),
                )
        return self._from_floor(destination, params, self._claim_many)

    def _restamp(self, params: dict[str, Any]) -> None:
        """Read the clock again for a claim's `params` (`now`, and
        `lease_until` where the claim has one), inside its transaction: on
        SQLite after `BEGIN IMMEDIATE` has waited for the write lock, so a
        job made during that wait is not stamped as started before it was
        ready (nor an upstream's end after its follower's start)."""
        now = read_clock(self._clock, self._lease)
        params["now"] = now
        if "lease_until" in params:
            params["lease_until"] = now + self._lease

    def _lock_cap(self, connection: sa.Connection, destination: str, now: datetime) -> int | None:
        """In a transaction on `connection`: lock `destination`'s row of the
        controls (`lock_controls`, until the transaction ends) and return
        its cap (0 while paused: nothing may start), or None if it has
        none."""
        row = connection.execute(self._sql.lock_controls, {"dest": destination}).one_or_none()
        if row is None or row.max_running is None:
            return None
        if controls_of(row).paused(now):
            return 0
        cap: int = row.max_running
        return cap

    def _from_floor(
        self,
        destination: str,
        params: dict[str, Any],
        claim: Callable[[dict[str, Any]], tuple[_Claimed, ClaimKey | None]],
    ) -> _Claimed:
        """What `claim` (one of the claims' runs, on `params`) takes, read
        from `destination`'s claim floor on PostgreSQL (see
        `fulltext_jobs.sql.floors`): if nothing is found there, the queue
        below the floor is read too, so that a claim comes back empty only
        when no job in the whole queue is due. In a caller's session the
        claim reads from the start: the caller's commit or rollback, which
        this process does not see, decides whether the claim stands."""
        floors = self._floors
        if floors is None or self._tx.joined:
            if floors is not None:
                params.update(range_params(FROM_START, PAST_END))
            return claim(params)[0]
        start = floors.start(destination)
        began = floors.now()
        params.update(range_params(start, PAST_END))
        found, last = claim(params)
        if last is None and start != FROM_START:
            params.update(range_params(FROM_START, start))
            found, last = claim(params)
            start = FROM_START
        floors.claimed(destination, start, last, began)
        return found

    @contextmanager
    def hold_ready(self, destination: str, n: int) -> Iterator[Hold]:
        params: dict[str, Any] = {"dest": destination, "n": n, "uncapped_only": True}
        jobs: list[FullText] = []
        written = 0
        committed = False
        try:
            with self._tx.connection("hold_ready", duplicate=BATCH_DUPLICATE) as connection:
                self._restamp(params)
                now: datetime = params["now"]
                if in_autocommit(connection):
                    msg = (
                        "hold_ready needs a transaction to hold its jobs, and this engine runs "
                        "in autocommit (isolation_level='AUTOCOMMIT'), where the row locks "
                        "would end with the statement and another worker could take the same "
                        "jobs: use an engine without it, or the leased mode (claim_ready)"
                    )
                    raise NotSupported(msg)
                jobs = self._hold_within_cap(connection, destination, params)
                hold_id = self._record_hold(destination, jobs, now)

                def write(checked: list[FullText], finished_as_held: bool) -> set[uuid.UUID]:  # noqa: FBT001 - the port's call
                    nonlocal written
                    done = self._write_held(connection, checked, now if finished_as_held else None)
                    written = len(done)
                    # Each job's row is written at most once, so a full count
                    # means none was refused (the common case, told without
                    # hashing a hundred ids).
                    if len(done) == len(checked):
                        return set()
                    return {job.id for job in checked} - set(done)

                # The caller's block runs here, inside the transaction;
                # leaving it with an exception rolls the transaction back.
                try:
                    yield Hold(jobs, write)
                except BaseException:
                    self._erase_hold_aside(hold_id)
                    raise
                if hold_id is not None:
                    # Gone exactly when the writes commit.
                    connection.execute(self._sql.erase_hold, {"hold_id": hold_id})
            committed = True
        finally:
            # Jobs held and not written (rolled back, or left by a stopping
            # caller) are ready again, behind the floor.
            if not committed or written < len(jobs):
                self._forget_floor(destination, len(jobs))
            elif written:
                self._returning_to_ready(jobs)

    def _hold_within_cap(
        self, connection: sa.Connection, destination: str, params: dict[str, Any]
    ) -> list[FullText]:
        """The jobs `hold_ready` holds, in its transaction on `connection`.
        Under a cap, the destination's row of the controls is locked for the
        whole hold (`_lock_cap`), and `hold_capped` holds within the cap:
        the held jobs count as running
        while no other capped claim of the destination can count, so holds
        of a capped destination take turns, and its leased claims wait for
        them."""
        now = params["now"]

        def hold(held_params: dict[str, Any]) -> tuple[list[FullText], ClaimKey | None]:
            return self._held(connection, held_params, now)

        if destination not in self._capped:
            jobs = self._from_floor(destination, params, hold)
            if jobs or not self._has_cap(destination, connection):
                return jobs
        cap = self._lock_cap(connection, destination, now)
        if cap is None:
            self._capped.discard(destination)
            return self._from_floor(destination, params, hold)
        if cap == 0:
            return []
        capped = {**params, "max_running": cap, "uncapped_only": False, "capped": True}
        return self._from_floor(destination, capped, hold)

    def _record_hold(
        self, destination: str, jobs: list[FullText], now: datetime
    ) -> uuid.UUID | None:
        """Record the hold of `jobs` (`Statements.record_hold`) on a second
        connection, in autocommit, where the hold's rollback cannot erase
        it, so that a holder that dies is counted; return the record's id.
        None where nothing is recorded: no job held, SQLite (see migration
        0012), or a caller's session, whose own rollback would look like a
        death."""
        if not jobs or self._sql.tables.holds is None or self._tx.joined:
            return None
        hold_id = uuid.uuid4()
        params = {
            "hold_id": hold_id,
            "dest": destination,
            "job_ids": [job.id for job in jobs],
            "versions": [job.version for job in jobs],
            "now": now,
        }
        with self._tx.connection("hold_ready", single_statement=True) as aside:
            aside.execute(self._sql.record_hold, params)
        return hold_id

    def _erase_hold_aside(self, hold_id: uuid.UUID | None) -> None:
        """Erase the record of a hold whose block raised, before its
        transaction rolls back and frees its rows: an error is no death.
        If the erase fails too (the database is gone), the record stays and
        a rescue counts the hold as a death, as it would a lost connection."""
        if hold_id is None:
            return
        try:
            with self._tx.connection("hold_ready", single_statement=True) as aside:
                aside.execute(self._sql.erase_hold, {"hold_id": hold_id})
        except StoreError as exc:
            _log.warning("could not erase the record of hold %s: %s", hold_id, exc)

    def _held(
        self, connection: sa.Connection, params: dict[str, Any], now: datetime
    ) -> tuple[list[FullText], ClaimKey | None]:
        """The jobs `hold_ready` holds, as it hands them out (in claim
        order), and the last one's claim key (None if none). A job at `MAX_ATTEMPTS` among them,
        whose attempt could not be counted, is failed in the hold's
        transaction (`fail_exhausted`), and the jobs read again: the ones
        already held (locked by this transaction, and still ready) and the
        next in the failed one's place."""
        while True:
            capped = params.get("capped", False)
            if self._hot is not None:
                hot = self._hot.hold_capped if capped else self._hot.hold_ready
                rows = hot.run_all(connection, params)
                exhausted = [row[0] for row in rows if at_max_attempts(row)]
                if not exhausted:
                    held = [held_from_values(row, now) for row in rows]
                    return held, claim_key(rows[-1]) if rows else None
            else:
                statement = self._sql.hold_capped if capped else self._sql.hold_ready
                found = connection.execute(statement, params).all()
                exhausted = [row.id for row in found if row.attempts >= MAX_ATTEMPTS]
                if not exhausted:
                    held = [hold_copy(to_job(row), now) for row in found]
                    return held, _row_key(found[-1]) if found else None
            connection.execute(self._sql.fail_exhausted, {"ids": exhausted, "now": now})

    def _write_held(
        self, connection: sa.Connection, jobs: list[FullText], finished_from: datetime | None
    ) -> Collection[uuid.UUID]:
        """Write the outcomes of held jobs; return the ids written, each
        once. On PostgreSQL one statement (the port has checked that each
        job is still the held one: same item and destination): `finish_held`
        when every job is a plain finish of a hold from `finished_from`,
        else `write_held`."""
        if self._hot is None:
            return self._save_rows(connection, jobs)
        if finished_from is not None:
            params = {
                "job_id": [job.id for job in jobs],
                "read_version": [job.version for job in jobs],
                "finished": [job.finished for job in jobs],
                "started": finished_from,
            }
            rows = self._hot.finish_held.run_all(connection, params)
        else:
            rows = self._hot.write_held.run_all(connection, held_arrays(jobs))
        return [row[0] for row in rows]

    # --- delays and rate limits -------------------------------------------

    def next_due(self, destination: str) -> datetime | None:
        now = read_clock(self._clock, self._lease)
        with self._tx.connection("next_due", single_statement=True) as connection:
            due: datetime | None = connection.execute(
                self._sql.next_due, {"dest": destination, "now": now}
            ).scalar_one()
        return due

    def take_rate_tokens(self, destination: str, rate: float, n: int, burst: int) -> RateTokens:
        # On PostgreSQL, the server's clock unless the repository was given
        # one (tests): see `Statements.take_rate_tokens`.
        now = None if self._server_clock else read_clock(self._clock, self._lease).timestamp()
        params = {"dest": destination, "now": now, "interval": 1 / rate, "burst": burst, "n": n}
        with self._tx.connection("take_rate_tokens", single_statement=True) as connection:
            if self._hot is None:
                row = tuple(connection.execute(self._sql.take_rate_tokens, params).one())
            else:
                # A take precedes every claim of a limited worker: the
                # claim's own path, straight to the cursor.
                row = self._hot.take_rate_tokens.run(connection, params) or ()
            tat, granted, judged_at = row
        return RateTokens(granted, wait_for_next(tat, judged_at, rate, burst))

    # --- floors dropped by writes -----------------------------------------

    def _returning_to_ready(self, jobs: Iterable[FullText]) -> None:
        """Drop the claim floor of each destination where a stored job was
        just saved back to ready and due at once: behind the floor, where
        this process's next claim would not look (`ClaimFloors.forget`);
        or where a new job was just saved, ready and due, of a priority
        above the floor's (`ClaimFloors.enqueued`). Called after the write
        commits, so that no claim of another thread sets a floor past the
        job before it is ready."""
        if self._floors is not None:
            for job in jobs:
                if job.status is JobStatus.READY and job.not_before is None:
                    if job.version:
                        self._floors.forget(job.destination)
                    else:
                        self._floors.enqueued(job.destination, job.priority)

    def _enqueued(self, destination: str, priority: int) -> None:
        """Drop `destination`'s claim floor if new jobs of `priority` just
        made for it sit behind it (`ClaimFloors.enqueued`). Called after the
        jobs commit."""
        if self._floors is not None:
            self._floors.enqueued(destination, priority)

    def _forget_floor(self, destination: str | None, changed: int = 1) -> None:
        """Drop `destination`'s claim floor (every one's, for None) if
        `changed` jobs were just made ready behind it."""
        if self._floors is not None and changed:
            self._floors.forget(destination)
