"""Saving the outcomes of claimed jobs (`OutcomeSaver`): a claim thread's
after its batch, and the shutdown's.

An outcome is saved (`save_fulltext`, or for a batch `save_many(...,
atomic=False)`: one call, each job under its own claim) only under the
claim that fetched it, so whatever happens here (a lease that ran out, a
shutdown that released a job whose handler was still running) a late save
is refused with `LostClaim` instead of overwriting what happened since. A
`LostClaim` means another delivery owns the job: it is logged and counted,
not raised. A retryable `StoreError` (a lost connection, a restart, a
deadlock) is logged and counted, and the call is made again after a
backoff. Any other error stops the worker and `run()` raises it.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from fulltext_jobs.domain import FullText
from fulltext_jobs.errors import LostClaim, StaleJobs, StoreError
from fulltext_jobs.repository import Repository
from fulltext_jobs.worker.inflight import Held, Run, take_over, to_save, unsaved
from fulltext_jobs.worker.settings import Wait
from fulltext_jobs.worker.stats import saved_as

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")


class OutcomeSaver:
    """Saves the outcomes of claimed jobs in `repository`, each under its
    claim: a claim thread's after its batch (`save_held`), and the
    shutdown's (`take_over`). Which of the two saves a job is settled under
    the run's lock by `inflight.to_save` and `inflight.take_over`; see
    `inflight` for why an outcome is thus saved once.

    A retryable `StoreError` is retried every `poll_interval` seconds,
    doubling up to `max_poll_interval` (paused by `wait`), until the save
    succeeds or the shutdown gives up; `clock` stamps the jobs released."""

    def __init__(  # noqa: PLR0913 - a save's store, stamps and retries
        self,
        repository: Repository,
        destination: str,
        *,
        clock: Callable[[], datetime],
        poll_interval: float,
        max_poll_interval: float,
        wait: Wait,
    ) -> None:
        self._repository = repository
        self._destination = destination
        self._clock = clock
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._wait = wait

    def take_over(self, run: Run, waited: float) -> None:
        """The shutdown's save, after the claim threads were waited for
        `waited` seconds: release every job still held whose handler has
        not finished, and save the outcomes that wait to be saved, so that
        no job is left running (`inflight.take_over`). A handler still
        running keeps going in its daemon thread; its save will be
        refused."""
        for held, outcome in take_over(run, self._released, waited):
            try:
                self._repository.save_fulltext(outcome)
            except LostClaim:
                self._lost(run, held)
            except StoreError as exc:
                # The lease will bring the job back.
                _log.warning("job %s: could not save it at shutdown: %s", held.job.id, exc)
            except Exception:  # noqa: BLE001 - logged; the run is ending
                _log.exception("job %s: could not save it at shutdown", held.job.id)
            else:
                run.count(saved_as(outcome))
            with run.lock:
                run.held.discard(held)

    def _released(self, held: Held) -> FullText:
        """What is saved for a job let go before its handler ended: back to
        `ready`, or `skipped` if an operator cancelled it."""
        released = held.job.copy()
        if held.back_until is not None:
            released.release(self._clock(), not_before=held.back_until, count_attempt=False)
        elif held.cancelled is None:
            released.release(self._clock())
        else:
            released.skip(self._clock(), error=held.cancelled)
        return released

    def save_held(self, run: Run, held: list[Held]) -> None:
        """Save the outcomes of `held` that the claim thread takes
        (`inflight.to_save`), and release those whose handler never
        started; if the save fails, leave them to the shutdown."""
        with run.lock:
            entries, outcomes, dropped = to_save(held, self._released)
        if dropped:
            run.count("dropped", dropped)
            _log.warning(
                "%s: %d claimed job(s) not started: a heartbeat found their batch's claim lost",
                self._destination,
                dropped,
            )
        try:
            self._save(run, entries, outcomes)
        except BaseException:
            # What was not saved is left for the shutdown to try again.
            with run.lock:
                unsaved(entries)
            raise
        run.forget(held)

    def _save(self, run: Run, entries: list[Held], outcomes: list[FullText]) -> None:
        """Save `outcomes`, those of `entries` in step, each under its
        claim, retrying after a retryable error until the save succeeds or
        the shutdown gives up.

        Each job of a batch is saved under its own claim, in one call: a
        job whose claim was lost is refused alone (`StaleJobs` names it),
        and the others are saved."""
        if not outcomes:
            return
        delay = self._poll_interval
        while True:
            try:
                if len(outcomes) == 1:
                    self._repository.save_fulltext(outcomes[0])
                else:
                    # Each job under its own claim: a lost one is refused
                    # alone, and the others are saved with it.
                    self._repository.save_many(outcomes, atomic=False)
            except StaleJobs as exc:
                self._saved_but(run, entries, outcomes, set(exc.refused))
                return
            except LostClaim:
                self._lost(run, entries[0])
                return
            except StoreError as exc:
                if not exc.retryable:
                    raise
                run.retryable("save", exc, delay)
                if self._wait(run.abandoned, delay):
                    _log.error(
                        "gave up saving %d job(s) at shutdown; their leases will bring them back",
                        len(outcomes),
                    )
                    run.forget(entries)
                    return
                delay = min(delay * 2, self._max_poll_interval)
            else:
                self._saved_but(run, entries, outcomes, set())
                return

    def _saved_but(
        self, run: Run, entries: list[Held], outcomes: list[FullText], refused: set[uuid.UUID]
    ) -> None:
        """Count the `outcomes` saved, and the `refused` ones lost (the
        caller, `save_held`, then stops holding all `entries`)."""
        saved = outcomes
        if refused:
            saved = []
            for entry, job in zip(entries, outcomes, strict=True):
                if job.id in refused:
                    self._lost(run, entry)
                else:
                    saved.append(job)
        for name, n in Counter(map(saved_as, saved)).items():
            run.count(name, n)

    def _lost(self, run: Run, held: Held) -> None:
        run.count("lost_claims")
        run.forget([held])
        if held.late is not None:
            _log.info(
                "job %s (item %s): the late result of a handler that outlived the shutdown "
                "was refused; the job had been released",
                held.job.id,
                held.job.item_id,
            )
        else:
            _log.warning(
                "job %s (item %s): the claim was lost (its lease ran out); another "
                "delivery owns the job, and this result was not saved",
                held.job.id,
                held.job.item_id,
            )
