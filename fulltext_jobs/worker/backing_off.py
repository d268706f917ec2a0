"""Pausing a destination at a handler's word: `RetryAfter(pause=True)`.

The job itself is backed off by its verdict (`handlers.settle`); this is
the rest of it: the whole destination is paused until the same moment, so
that no worker of the fleet calls the service that asked for time. The
pause is taken with `at_least=True`, so it never shortens a longer one in
force (an operator's, or another job's), and the claim thread starts no
more handlers of its batch (see `Worker._work_through` and
`Worker._work_held`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from fulltext_jobs.domain import FullText
from fulltext_jobs.errors import InvalidInput, NotSupported, StoreError
from fulltext_jobs.repository import Repository
from fulltext_jobs.worker.handlers import Verdict
from fulltext_jobs.worker.inflight import Held, Run, Stage

_log = logging.getLogger("fulltext_jobs.worker")


class BackOffPause:
    """Pauses `destination` in `repository` for a handler that backed off."""

    __slots__ = ("_destination", "_repository")

    def __init__(self, repository: Repository, destination: str) -> None:
        self._repository = repository
        self._destination = destination

    def pause_batch(self, run: Run, held: list[Held], entry: Held, verdict: Verdict) -> None:
        """`entry`'s handler, in a leased batch `held`, backed off with a
        pause: have the jobs of `held` whose handlers have not started go
        back, their attempts given back, due at the verdict's due time
        (`OutcomeSaver._released`), and pause the destination until then."""
        until, error = verdict[2], verdict[3]
        if until is None:
            return
        with run.lock:
            for other in held:
                if other.stage is Stage.PENDING:
                    other.back_until = until
        self.pause(run, entry.job, until, error)

    def pause(self, run: Run, job: FullText, until: datetime, error: str | None) -> None:
        """Pause the destination until `until` for `job`'s back-off (its
        `last_error` is `error`), unless a pause in force lasts as long.

        Best effort: the job's own back-off stands whatever happens here. A
        retryable store error is counted and logged, and not retried (the
        next `RetryAfter(pause=True)` pauses again); a store that keeps no
        controls, or an `until` already past (a back-off of a moment), is
        logged. Any other error ends the run, as a claim's would."""
        reason = f"{error} (job {job.id}, item {job.item_id})"
        try:
            controls = self._repository.pause(
                self._destination, until=until, reason=reason, at_least=True
            )
        except StoreError as exc:
            if not exc.retryable:
                raise
            run.retryable("pause", exc)
        except (NotSupported, InvalidInput) as exc:
            _log.warning("could not pause %s for job %s: %s", self._destination, job.id, exc)
        else:
            _log.warning(
                "%s paused until %s: job %s (item %s) backed off (%s)",
                *(self._destination, controls.paused_until, job.id, job.item_id, error),
            )
