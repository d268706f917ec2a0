"""The state one run of a worker shares between its threads (`Run`), and
the claimed jobs it holds (`Held`), each moving through the stages of
`Stage`.

An outcome is saved by its claim thread or by the shutdown, never both.
Every stage move is made under the run's lock, and each of the two savers
saves only the jobs it moved itself:

- the claim thread starts a handler (PENDING to RUNNING, in
  `Worker._work_through`), records its outcome (RUNNING to DONE,
  `record`), takes what it will save (PENDING or DONE to SAVING,
  `to_save`), and, if its save raised, hands it back for the shutdown to
  try (SAVING to DONE, `unsaved`);
- the shutdown takes what is left (PENDING, RUNNING or DONE to TAKEN,
  `take_over`), releasing the jobs whose handlers have not ended and
  saving the outcomes that wait.

The shutdown leaves SAVING jobs to their claim thread, and the claim thread
leaves TAKEN jobs to the shutdown, so a job that one of them took is never
saved by the other. The result of a handler that outlived the shutdown (it
ended on a TAKEN job) is still offered to the ledger, as `Held.late`, which
refuses it: the release ended the claim.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from fulltext_jobs.domain import FullText
from fulltext_jobs.errors import StoreError
from fulltext_jobs.worker.handlers import Verdict, settle
from fulltext_jobs.worker.stats import WorkerStats
from fulltext_jobs.worker.waiting import WaitLog

# The package's logger (see `fulltext_jobs.worker.core`).
_log = logging.getLogger("fulltext_jobs.worker")


class Stage(enum.Enum):
    """Where a claimed job is in the worker (see the module's docstring for
    who moves it, and why an outcome is thus saved once)."""

    PENDING = enum.auto()  # claimed; its handler has not started
    RUNNING = enum.auto()  # its handler is running
    DONE = enum.auto()  # handled; the outcome waits to be saved
    SAVING = enum.auto()  # its claim thread is saving it
    TAKEN = enum.auto()  # the shutdown released it, or saved its outcome


# The stages in which a job's lease must be kept alive.
HELD_STAGES: Final = frozenset({Stage.PENDING, Stage.RUNNING, Stage.DONE, Stage.SAVING})


@dataclasses.dataclass(eq=False, slots=True)
class Held:
    """A claimed job that has not been saved yet. Compared and hashed by
    identity: the run holds a set of them (two deliveries of one job are two
    entries)."""

    # As claimed while its handler runs (the handler gets a copy); once the
    # handler ended, under the run's lock, the outcome itself (`record`).
    # Only its id and claim token, which never change, matter to heartbeats.
    job: FullText
    interval: float  # seconds between heartbeats
    next_beat: float  # when the next heartbeat is due (monotonic)
    stage: Stage = Stage.PENDING
    outcome: FullText | None = None  # the job finished, failed, skipped or released
    late: FullText | None = None  # the outcome of a handler that outlived the shutdown
    lost: bool = False  # a heartbeat found the claim gone
    # The heartbeat thread's own copy, whose lease it updates: made at the
    # first heartbeat, since most jobs are saved before one is due.
    beat: FullText | None = None
    # Set when an operator's cancel of the job reached the worker before
    # its handler ended: the last_error to skip it with (`cancelling`).
    cancelled: str | None = None
    # An async handler's task, while it runs, for a cancel to cancel.
    task: asyncio.Task[Any] | None = None
    # Set when another job of the batch backed off with a pause before this
    # one's handler started: it goes back, its attempt given back, due then.
    back_until: datetime | None = None


class Run:
    """The state of one call of `Worker.run`, shared by its threads."""

    def __init__(
        self,
        *,
        destination: str,
        until_idle: bool,
        loops: int,
        waits: WaitLog,
        on_count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.destination = destination
        self.until_idle = until_idle
        self.on_count = on_count  # told every count too (the metrics)
        self.lock = threading.Lock()
        # Notified when the run ends, or when jobs are held whose first
        # heartbeat is due before `beat_wake`: the heartbeat thread waits on it.
        self.changed = threading.Condition(self.lock)
        # When the heartbeat thread next looks at the held jobs (monotonic):
        # inf while it waits for a notification, -inf while it is not
        # waiting (it looks again before it waits).
        self.beat_wake = -math.inf
        self.halt = threading.Event()  # claim nothing more
        # Set when a job may have become ready (or the run halts): idle claim
        # threads wait on it. Cleared only under the lock, and never once
        # halted, so a halt cannot be cleared away.
        self.wakeup = threading.Event()
        self.abandoned = threading.Event()  # shutdown_timeout passed: stop retrying saves
        self.over = False  # heartbeats end
        self.held: set[Held] = set()
        self.losses = 0  # how many held jobs heartbeats have found lost
        self.counts: Counter[str] = Counter()
        self.fatal: BaseException | None = None
        self.loops_left = loops
        # Counted by the signal handlers, which must not take locks (see
        # `signals`); `Worker._await_end` and `Worker._shut_down` act on it.
        self.signals = 0
        # What the claim threads wait for, when they wait (`Worker.waiting`).
        self.waits = waits
        # The listener's thread (`Worker(listen=True)`), started by the first
        # claim thread that finds nothing to claim or is about to wait (see
        # `listener.start_listener`), never once the run halts.
        self.listener: threading.Thread | None = None
        self.listening = False  # its thread was started
        # The thread that listens for cancels of the jobs held, started
        # when jobs are first held (`cancelling.CancelWatch.started`).
        self.cancel_listener: threading.Thread | None = None
        self.cancel_listening = False  # its thread was started
        self.produce_lock = threading.Lock()
        # When the last production ended (monotonic) and how many jobs it made.
        self.last_production = (-math.inf, 0)

    def end(self) -> None:
        """Claim nothing more, and wake the threads waiting for work."""
        with self.lock:
            self.halt.set()
            self.wakeup.set()

    def rearm(self) -> None:
        """Forget past wake-ups, before a claim: a job that becomes ready
        after this point sets `wakeup` again, so it is never slept through."""
        with self.lock:
            if not self.halt.is_set():
                self.wakeup.clear()

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n
        if self.on_count is not None:
            self.on_count(name, n)

    def stats(self) -> WorkerStats:
        with self.lock:
            return WorkerStats(
                **{f.name: self.counts[f.name] for f in dataclasses.fields(WorkerStats)}
            )

    def retryable(self, action: str, exc: StoreError, delay: float = 0.0) -> None:
        """Count and log a retryable error of `action`, to be tried again
        (after `delay` seconds, if given)."""
        self.count("retryable_errors")
        _log.warning(
            "%s of %s failed (retryable)%s: %s",
            action,
            self.destination,
            f"; trying again in {delay:g} s" if delay else "",
            exc,
        )

    def forget(self, held: list[Held]) -> None:
        """Stop holding these jobs: they were saved, or their claims ended."""
        with self.lock:
            self.held.difference_update(held)


def record(held: Held, verdict: Verdict) -> None:
    """Apply the verdict of a handler that ended to the claimed job itself,
    and record it as the outcome to save; called under the run's lock, so
    that the shutdown copies the job either before (to release it) or
    after (to save it), never halfway."""
    # In place rather than on a copy: the claimed state is not needed once
    # the handler ended (see `Held.job`), and every object a job makes
    # costs the garbage collector (docs/benchmarks.md, "Why the hot path is
    # written as it is").
    settle(held.job, verdict)
    if held.stage is Stage.TAKEN:
        # Released at shutdown while the handler ran: its save is refused,
        # as the ledger promises.
        held.late = held.job
    else:
        held.stage, held.outcome = Stage.DONE, held.job


def to_save(
    held: list[Held], released: Callable[[Held], FullText]
) -> tuple[list[Held], list[FullText], int]:
    """The claim thread's side: of the jobs of one claim, those it saves
    (moved to SAVING) and, in step, the outcomes to save (`released(entry)`
    for a job whose handler never started); and how many jobs it drops.
    Called under the run's lock.

    What the shutdown took over is left alone, except the late outcome of
    a handler it released, which is offered to be refused. In a batch with
    a claim found lost, a job whose handler never started is dropped:
    forgotten if its own claim was found lost, else released."""
    # Two lists rather than a list of pairs: fewer objects a batch (see
    # docs/benchmarks.md, "Why the hot path is written as it is").
    entries: list[Held] = []
    outcomes: list[FullText] = []
    dropped = 0
    lost_batch = any(entry.lost for entry in held)
    for entry in held:
        if entry.stage is Stage.PENDING and lost_batch:
            dropped += 1
            if entry.lost:
                continue  # another delivery owns it: nothing to save
        if entry.stage is Stage.PENDING:
            entry.outcome = released(entry)
            entry.stage = Stage.SAVING
            outcome = entry.outcome
        elif entry.stage is Stage.DONE and entry.outcome is not None:
            entry.stage = Stage.SAVING
            outcome = entry.outcome
        elif entry.stage is Stage.TAKEN and entry.late is not None:
            outcome = entry.late
        else:
            continue
        entries.append(entry)
        outcomes.append(outcome)
    return entries, outcomes, dropped


def unsaved(entries: list[Held]) -> None:
    """The claim thread's save of `entries` failed: give the shutdown the
    outcomes back to try again (SAVING to DONE). Called under the run's
    lock."""
    for entry in entries:
        if entry.stage is Stage.SAVING:
            entry.stage = Stage.DONE


def take_over(
    run: Run, released: Callable[[Held], FullText], waited: float
) -> list[tuple[Held, FullText]]:
    """The shutdown's side: every job still held whose handler has not
    ended, with `released(entry)` to save, and every outcome that waits to
    be saved, all moved to TAKEN. A handler still running after `waited`
    seconds is named in a warning: it keeps going in its daemon thread, and
    its save will be refused."""
    taken: list[tuple[Held, FullText]] = []
    with run.lock:
        for held in run.held:
            if held.stage is Stage.DONE and held.outcome is not None:
                taken.append((held, held.outcome))
            elif held.stage in {Stage.PENDING, Stage.RUNNING}:
                if held.stage is Stage.RUNNING:
                    _log.warning(
                        "job %s (item %s): its handler is still running after %.3g s; "
                        "releasing the job",
                        held.job.id,
                        held.job.item_id,
                        waited,
                    )
                taken.append((held, released(held)))
            else:
                continue
            held.stage = Stage.TAKEN
    return taken
