"""The transaction mode's hold records (PostgreSQL): written beside each
hold, erased with its commit, and swept by the rescue, which counts an
attempt for every holder that died (see migration 0012)."""

from __future__ import annotations

import functools

import sqlalchemy as sa

from fulltext_jobs.domain import MAX_ATTEMPTS
from fulltext_jobs.sql.statements.base import StatementsBase


class HoldStatements(StatementsBase):
    """The transaction mode's hold records (PostgreSQL only: the table
    exists there alone)."""

    @property
    def _holds(self) -> str:
        holds = self.tables.holds
        if holds is None:  # pragma: no cover - the adapter records holds on PostgreSQL only
            msg = "hold records are kept on PostgreSQL only"
            raise RuntimeError(msg)
        return holds.fullname

    @functools.cached_property
    def record_hold(self) -> sa.TextClause:
        """Record hold `:hold_id` of `:dest`'s jobs `:job_ids` at `:versions`
        (arrays, in the same order), held at `:now`. Run in autocommit on a
        connection other than the hold's, so that it outlives the hold's
        transaction if that dies: a record left behind with its jobs
        unchanged and unlocked is a holder that died."""
        return sa.text(
            f"INSERT INTO {self._holds} (id, destination, job_ids, versions, held_at) "  # noqa: S608 - names from the declared table, values bound
            "VALUES (:hold_id, :dest, CAST(:job_ids AS uuid[]), CAST(:versions AS integer[]), :now)"
        )

    @functools.cached_property
    def erase_hold(self) -> sa.TextClause:
        """Delete the record of hold `:hold_id`: in the hold's transaction,
        so that it is gone exactly when the hold's writes commit; or, for a
        hold that ends without writing (an error in its block), in
        autocommit before its transaction rolls back and its locks go."""
        return sa.text(f"DELETE FROM {self._holds} WHERE id = :hold_id")  # noqa: S608 - the declared table's name

    @functools.cached_property
    def rescue_dead_holds(self) -> sa.TextClause:
        """Count an attempt for each death of a holder of `:dest`'s jobs (of
        every destination, for a null `:dest`), failing a job whose
        attempts reach `:max_attempts` at `:now` (`HOLDER_DIED_FAILED`, the
        attempts for its `{}`; else `:rescued` is its last error); delete
        the records that are settled. Returns the ids of the jobs counted.
        A job counted stays ready from its `ready_at`: its holder's writes
        rolled back, so to the ledger it never stopped waiting.

        A record is a death when its job is still `ready` at the version
        held (nothing was written since) and its row is not locked
        (`SKIP LOCKED` passes over rows a live hold still has: a holder
        locks its rows before it writes its record, and keeps them until it
        commits, with the record's delete, or erases the record first).
        Several dead holds of a job at one version are as many deaths. A
        record is kept while one of its jobs is ready at the version held
        but locked (by a live holder, or by a later hold of the same jobs,
        whose end decides); every other record is deleted. Records locked
        by another sweep are passed over."""
        ft = self.tables.fulltext.fullname
        return sa.text(
            f"WITH marked AS (SELECT id, job_ids, versions FROM {self._holds} "  # noqa: S608 - names from the declared tables, values bound
            "WHERE CAST(:dest AS text) IS NULL OR destination = CAST(:dest AS text) "
            "FOR UPDATE SKIP LOCKED), "
            "held AS (SELECT m.id AS hold_id, h.job_id, h.version FROM marked AS m, "
            "unnest(m.job_ids, m.versions) AS h(job_id, version)), "
            f"unlocked AS (SELECT f.id, f.version, f.attempts FROM {ft} AS f "
            "WHERE f.status = 'ready' AND EXISTS (SELECT 1 FROM held AS h "
            "WHERE h.job_id = f.id AND h.version = f.version) "
            "FOR UPDATE OF f SKIP LOCKED), "
            "deaths AS (SELECT u.id, u.attempts + count(*) AS attempts FROM unlocked AS u "
            "JOIN held AS h ON h.job_id = u.id AND h.version = u.version "
            "GROUP BY u.id, u.attempts), "
            f"counted AS (UPDATE {ft} AS f SET "
            f"attempts = least(d.attempts, {MAX_ATTEMPTS}), "
            "status = CASE WHEN d.attempts >= :max_attempts "
            "THEN CAST('failed' AS job_statuses) ELSE f.status END, "
            "finished = CASE WHEN d.attempts >= :max_attempts "
            "THEN CAST(:now AS timestamptz) ELSE f.finished END, "
            "not_before = CASE WHEN d.attempts >= :max_attempts "
            "THEN NULL ELSE f.not_before END, "
            "last_error = CASE WHEN d.attempts >= :max_attempts "
            "THEN replace(CAST(:failed AS text), '{}', CAST(d.attempts AS text)) "
            "ELSE CAST(:rescued AS text) END, "
            "version = f.version + 1 "
            "FROM deaths AS d WHERE f.id = d.id RETURNING f.id), "
            "live AS (SELECT DISTINCT h.hold_id FROM held AS h "
            f"JOIN {ft} AS f ON f.id = h.job_id AND f.version = h.version "
            "WHERE f.status = 'ready' AND f.id NOT IN (SELECT id FROM unlocked)), "
            f"swept AS (DELETE FROM {self._holds} WHERE id IN (SELECT id FROM marked) "
            "AND id NOT IN (SELECT hold_id FROM live)) "
            "SELECT id FROM counted"
        )
