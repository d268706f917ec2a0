"""Cancels of running jobs, in a worker: hearing them, and telling the
handler.

An operator's `cancel` records a request for each running job it names
(`Repository.cancel`). The worker takes the requests of the jobs it holds
(`Repository.take_cancel_requests`, one call for all of them): after each
round of heartbeats, for the jobs of that round; and, where the store
announces requests (PostgreSQL, in memory), as soon as this module's
listener thread hears one, for every job it holds. For a job whose handler
has not ended, it then:

- records the job's `last_error` on the job (`Held.cancelled`): from then
  on, whatever the handler returns or raises, the claim thread saves the
  job `skipped` with it, under its claim, and never retries it
  (`handlers.HandlerRunner.judge`); a job whose handler had not started is
  skipped without running it, and so is one a shutdown lets go
  (`OutcomeSaver._released`);
- cancels an async handler's task, on the loop it runs on;
- lets a sync handler see it: `cancel_requested()` is True in the
  handler's context from then on, for the handler to poll and return
  early (Python cannot stop a thread from outside).

A job whose handler had already ended keeps its outcome. In the transaction
mode (`hold_ready`) nothing is heard: a held job's row is locked by its
batch, and a cancel waits for the batch to commit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Final

from fulltext_jobs.errors import StoreError
from fulltext_jobs.repository import Repository
from fulltext_jobs.worker.handlers import Cancellable
from fulltext_jobs.worker.inflight import Held, Run, Stage
from fulltext_jobs.worker.listener import ReadyWatch

__all__ = ["CancelWatch", "interrupt"]

# The stages in which a job's handler has not ended: a cancel still binds it.
_ALIVE: Final = frozenset({Stage.PENDING, Stage.RUNNING})

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")


def interrupt(job: Cancellable) -> None:
    """Cancel `job`'s async handler, if one runs: from any thread, on the
    task's own loop. Its runner checks `cancelled` after it registers the
    task, so a cancel that comes between is not missed."""
    task = job.task
    if task is not None:
        # A closed loop raises RuntimeError: the handler has ended.
        with contextlib.suppress(RuntimeError):
            task.get_loop().call_soon_threadsafe(task.cancel)


class CancelWatch:
    """Takes, in `repository`, the cancel requests of the jobs a run of
    `destination` holds, and applies them to the jobs still running; its
    listener (`listen`, the thread `Run.cancel_listener`) retries after a
    retryable error from `poll_interval` seconds, backing off."""

    def __init__(self, repository: Repository, destination: str, poll_interval: float) -> None:
        self._repository = repository
        self._destination = destination
        self._watch = ReadyWatch(
            repository,
            destination,
            poll_interval,
            listen=repository.listen_for_cancels,
            woken=self.check_all,
            what="cancels",
        )

    def started(self, run: Run) -> None:
        """Start the run's cancel listener (made with `listen`), once: when
        jobs are first held. A run that holds none (it found nothing, or
        works in the transaction mode) opens no connection for it, and its
        end waits out no listener's slice."""
        if run.cancel_listening:
            return  # the usual case, read without the lock
        with run.lock:
            if run.cancel_listener is None or run.cancel_listening or run.halt.is_set():
                return
            run.cancel_listening = True
            run.cancel_listener.start()

    def listen(self, run: Run) -> None:
        """The listener thread: take the requests of every held job whenever
        the store announces a cancel of the destination, until the run
        halts (see `listener.ReadyWatch.loop`). Does nothing if the store
        cannot announce: the heartbeats look then."""
        self._watch.loop(run)

    def check(self, run: Run, held: Iterable[Held]) -> None:
        """Take the requests of `held` (those whose handler has not ended)
        and apply them. A retryable store error is counted and logged: the
        next heartbeat or notification looks again."""
        alive = _ALIVE
        with run.lock:
            asked = [
                (entry, entry.job.copy())
                for entry in held
                if entry.stage in alive and entry.cancelled is None and not entry.lost
            ]
        if not asked:
            return
        try:
            requests = self._repository.take_cancel_requests([job for _, job in asked])
        except StoreError as exc:
            if not exc.retryable:
                raise
            run.retryable("taking cancel requests", exc)
            return
        if not requests:
            return
        with run.lock:
            for entry, job in asked:
                error = requests.get(job.id)
                if error is None:
                    continue
                if entry.stage in alive:
                    entry.cancelled = error
                    interrupt(entry)
                    _log.info("job %s (item %s): %s", job.id, job.item_id, error)
                else:
                    _log.info(
                        "job %s (item %s): cancelled after its handler ended; its outcome stands",
                        job.id,
                        job.item_id,
                    )

    def check_all(self, run: Run) -> None:
        """`check` every job the run holds (a notification came)."""
        with run.lock:
            held = list(run.held)
        self.check(run, held)
