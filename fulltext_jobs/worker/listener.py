"""The ready listener: a thread that wakes a run's idle claim threads as
soon as the repository announces that a job of the destination became ready
(`Repository.listen`; on PostgreSQL a LISTEN on a connection of its own,
fed by triggers on the jobs table; in memory at once; SQLite cannot).

A job released for later announces nothing (nobody could claim it yet):
the worker that released it claims it when it is due, and the others find
it by their polls. The poll stays as the safety net: notifications sent
while the listener was reconnecting are lost, and SQLite has none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from fulltext_jobs.errors import StoreError
from fulltext_jobs.repository import ReadyListener, Repository
from fulltext_jobs.worker.inflight import Run

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")

#: The longest a listener waits at a time, so that its thread notices the
#: end of the run soon: `run()` joins it, so half a slice on average is
#: added to every run that listened (a run that never found its queue empty
#: never listens: `start_listener`). Ten wake-ups a second cost about 1% of
#: a core on PostgreSQL (psycopg's `notifies`), so the slice is not shorter.
LISTEN_SLICE_SECONDS: Final = 0.1

#: A new listener's first slice, doubled after each up to
#: `LISTEN_SLICE_SECONDS`: a run of `until_idle` starts its listener when
#: its queue runs dry, which is also when it ends, and should not then wait
#: out a whole slice.
FIRST_LISTEN_SLICE_SECONDS: Final = 0.005

#: The longest a listener waits before it tries to listen again after a
#: retryable error: it is cheap (one connection attempt), and the sooner it
#: listens again, the sooner the claim threads learn the server is back.
MAX_LISTEN_RETRY_SECONDS: Final = 5.0


def start_listener(run: Run) -> None:
    """Start the run's listener thread (made with `listen`), once: when a
    claim thread first finds nothing to claim, or is about to wait after an
    error. A worker that drains a queue and stops (`until_idle`) thus
    needs no listener until the queue runs dry, and `run()` does not
    wait out the listener's slice (`LISTEN_SLICE_SECONDS`) at the end
    of a run that never had to wait. Nothing is missed meanwhile: the
    listener wakes the claim threads once it listens (see
    `ReadyWatch.loop`)."""
    with run.lock:
        if run.listener is None or run.listening or run.halt.is_set():
            return
        run.listening = True
        run.listener.start()


class ReadyWatch:
    """Listens, in `repository`, for ready jobs of `destination`, retrying
    after a retryable error from `poll_interval` seconds, backing off.

    Given `listen` and `woken`, it listens as `listen(destination)` does
    instead (`Repository.listen_for_cancels`, say: `what` names it in the
    logs), and calls `woken(run)` where it would wake the claim threads."""

    def __init__(  # noqa: PLR0913 - what is listened for, and what a wake-up does
        self,
        repository: Repository,
        destination: str,
        poll_interval: float,
        *,
        listen: Callable[[str], ReadyListener | None] | None = None,
        woken: Callable[[Run], None] | None = None,
        what: str = "ready jobs",
    ) -> None:
        self._repository = repository
        self._destination = destination
        self._poll_interval = poll_interval
        self._listen = repository.listen if listen is None else listen
        self._woken = _wake_claim_threads if woken is None else woken
        self._what = what

    def loop(self, run: Run) -> None:
        """Wake the idle claim threads whenever the repository says that jobs
        of the destination became ready, until the run halts. Does nothing
        if the repository cannot say so.

        Listening is an optimisation, never a reason to stop: while the
        server is away the listener tries again with a backoff (up to
        `MAX_LISTEN_RETRY_SECONDS`), and the claim threads poll; once it
        listens, first or again, it wakes them, since it cannot know what
        was notified meanwhile. After an error that will not pass (a refused
        login, say) it leaves the claim threads to poll; they meet the same
        error, which stops the worker if it is one."""
        delay = self._poll_interval
        listener: ReadyListener | None = None
        slice_seconds = FIRST_LISTEN_SLICE_SECONDS
        try:
            while not run.halt.is_set():
                try:
                    if listener is None:
                        listener = self._listen(self._destination)
                        if listener is None:
                            return  # the store cannot notify: the claim threads poll
                        # Jobs may have become ready since the claim that
                        # found nothing and started the listener: claim again.
                        self._woken(run)
                    if listener.wait(slice_seconds):
                        self._woken(run)
                    slice_seconds = min(slice_seconds * 2, LISTEN_SLICE_SECONDS)
                    delay = self._poll_interval
                except StoreError as exc:
                    if not exc.retryable:
                        self._stop_listening(exc)
                        return
                    # Until it listens again, the claim threads poll.
                    run.retryable("listen", exc, delay)
                    run.halt.wait(delay)
                    delay = min(delay * 2, max(self._poll_interval, MAX_LISTEN_RETRY_SECONDS))
                except Exception as exc:  # noqa: BLE001 - a listener's bug must not stop the work
                    _log.exception(
                        "%s: the listener for %s failed; polling only",
                        self._destination,
                        self._what,
                    )
                    self._stop_listening(exc)
                    return
        finally:
            if listener is not None:
                listener.close()

    def _stop_listening(self, exc: Exception) -> None:
        # A warning: the worker still works. If the error stops it too (a
        # refused login), the claim thread's ERROR line says so.
        _log.warning(
            "%s: cannot listen for %s, polling only: %s", self._destination, self._what, exc
        )


def _wake_claim_threads(run: Run) -> None:
    run.wakeup.set()
