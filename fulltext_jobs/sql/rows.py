"""Between rows and jobs: the mappers of rows to `FullText`, and the
parameters of the writes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from fulltext_jobs.domain import MAX_ATTEMPTS, DestinationControls, FullText, JobStatus
from fulltext_jobs.pipeline import Dependency

#: Where `Statements.job_columns` puts the columns read by position below,
#: after the first ten (id to last_error), which are unpacked in order.
NOT_BEFORE, BACKOFFS, PRIORITY, READY_AT, VERSION = 10, 11, 12, 13, 14


def job_from_values(values: tuple[Any, ...]) -> FullText:
    """The job in a raw driver row of `Statements.job_columns` (timestamps
    aware, in any zone)."""
    (job_id, item_id, destination, started, finished, status, attempts, token, lease, error) = (
        values[:10]
    )
    return FullText(
        id=job_id,
        item_id=item_id,
        destination=destination,
        started=None if started is None else started.astimezone(UTC),
        finished=None if finished is None else finished.astimezone(UTC),
        status=JobStatus(status),
        attempts=attempts,
        claim_token=token,
        lease_expires=None if lease is None else lease.astimezone(UTC),
        last_error=error,
        not_before=None if values[NOT_BEFORE] is None else values[NOT_BEFORE].astimezone(UTC),
        backoffs=values[BACKOFFS],
        priority=values[PRIORITY],
        ready_at=None if values[READY_AT] is None else values[READY_AT].astimezone(UTC),
        version=values[VERSION],
    )


def held_from_values(values: tuple[Any, ...], now: datetime) -> FullText:
    """The ready job in a raw driver row of `Statements.hold_ready` as
    `hold_ready` hands it out (see `fulltext_jobs.port.hold_copy`):
    `running` from `now`, its attempt counted, no token, lease or delay,
    at its stored version. Built in one step: a batch builds a hundred."""
    return FullText(
        values[0],
        values[1],
        values[2],
        now,
        None,
        JobStatus.RUNNING,
        values[6] + 1,
        None,
        None,
        values[9],
        values[VERSION],
        None,
        values[BACKOFFS],
        values[PRIORITY],
        None if values[READY_AT] is None else values[READY_AT].astimezone(UTC),
    )


def claim_key(values: tuple[Any, ...]) -> tuple[int, int]:
    """The place in the claim order of the job in a raw driver row of
    `Statements.job_columns` followed by `seq`: (-priority, seq), smallest
    first (see `ClaimStatements._claim_order`)."""
    return -values[PRIORITY], values[-1]


def at_max_attempts(values: tuple[Any, ...]) -> bool:
    """Whether the job in a raw driver row of `Statements.job_columns` is
    at `MAX_ATTEMPTS`: a claim fails it rather than hand it out."""
    attempts: int = values[6]
    return attempts >= MAX_ATTEMPTS


def to_job(row: Any) -> FullText:  # noqa: ANN401 - a Row, or any object with the columns
    """The job in a row selected or returned with `Statements.job_columns`,
    or in anything else with the job table's columns as attributes (the read
    model `fulltext_jobs.sql.orm.FullTextRecord`)."""
    return FullText(
        id=row.id,
        item_id=row.item_id,
        destination=row.destination,
        started=row.started,
        finished=row.finished,
        status=JobStatus(row.status),
        attempts=row.attempts,
        claim_token=row.claim_token,
        lease_expires=row.lease_expires,
        last_error=row.last_error,
        version=row.version,
        not_before=row.not_before,
        backoffs=row.backoffs,
        priority=row.priority,
        ready_at=row.ready_at,
    )


def job_row(job: FullText) -> dict[str, Any]:
    """The job's columns as the store keeps them (see `stored_form`: only a
    running job holds a claim token and a lease), with the id again
    (`job_id`), the version the copy was read at (`read_version`) and its
    claim token (`claim`): the
    parameters of `insert_job` and `update_job`."""
    running = job.status is JobStatus.RUNNING
    return {
        "job_id": job.id,
        "read_version": job.version,
        "claim": job.claim_token,
        "id": job.id,
        "item_id": job.item_id,
        "destination": job.destination,
        "started": job.started,
        "finished": job.finished,
        "status": job.status.value,
        "attempts": job.attempts,
        "claim_token": job.claim_token if running else None,
        "lease_expires": job.lease_expires if running else None,
        "last_error": job.last_error,
        "not_before": job.not_before,
        "backoffs": job.backoffs,
        "priority": job.priority,
        "ready_at": job.ready_at,
    }


def job_arrays(jobs: Sequence[FullText]) -> dict[str, list[Any]]:
    """The parameters of `Statements.update_jobs`: `job_row`'s, one list
    per column, in the order of `jobs`."""
    running = [job.status is JobStatus.RUNNING for job in jobs]
    return {
        "job_id": [job.id for job in jobs],
        "read_version": [job.version for job in jobs],
        "claim": [job.claim_token for job in jobs],
        "item_id": [job.item_id for job in jobs],
        "destination": [job.destination for job in jobs],
        "started": [job.started for job in jobs],
        "finished": [job.finished for job in jobs],
        "status": [job.status.value for job in jobs],
        "attempts": [job.attempts for job in jobs],
        "claim_token": [
            job.claim_token if held else None for job, held in zip(jobs, running, strict=True)
        ],
        "lease_expires": [
            job.lease_expires if held else None for job, held in zip(jobs, running, strict=True)
        ],
        "last_error": [job.last_error for job in jobs],
        "not_before": [job.not_before for job in jobs],
        "backoffs": [job.backoffs for job in jobs],
        "priority": [job.priority for job in jobs],
        "ready_at": [job.ready_at for job in jobs],
    }


def held_arrays(jobs: Sequence[FullText]) -> dict[str, list[Any]]:
    """The parameters of `Statements.write_held`, one list per column."""
    return {
        "job_id": [job.id for job in jobs],
        "read_version": [job.version for job in jobs],
        "status": [job.status.value for job in jobs],
        "started": [job.started for job in jobs],
        "finished": [job.finished for job in jobs],
        "attempts": [job.attempts for job in jobs],
        "last_error": [job.last_error for job in jobs],
        "not_before": [job.not_before for job in jobs],
        "backoffs": [job.backoffs for job in jobs],
        "ready_at": [job.ready_at for job in jobs],
    }


def controls_of(row: Any) -> DestinationControls:  # noqa: ANN401 - a row of the controls table
    """The `DestinationControls` in a row of `fulltext_controls`."""
    return DestinationControls(
        destination=row.destination,
        paused_at=row.paused_at,
        paused_until=row.paused_until,
        pause_reason=row.pause_reason,
        max_running=row.max_running,
        rate=row.rate,
        rate_burst=row.rate_burst,
    )


def dependencies_of(rows: Iterable[Any]) -> list[Dependency]:
    """The declarations in rows of (destination, upstream, status), one
    `Dependency` per destination and upstream."""
    statuses: dict[tuple[str, str], set[JobStatus]] = {}
    for destination, upstream, status in rows:
        statuses.setdefault((destination, upstream), set()).add(JobStatus(status))
    return [
        Dependency(destination, upstream, frozenset(named))
        for (destination, upstream), named in sorted(statuses.items())
    ]
