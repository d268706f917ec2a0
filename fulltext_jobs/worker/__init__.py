"""The worker: claim the jobs of one destination, run a handler on each, and
save what came of it, with heartbeats, backoff when idle, an optional
producer, and a graceful shutdown.

It uses only the port (`Repository`), so it runs on every adapter, and it
keeps the ledger's promises rather than adding its own: a job is saved only
under the claim that fetched it (see `core`).

How a job goes through a worker, and where each step is:

- It is claimed by a claim thread (`core`: `get_ready_job`, or
  `claim_ready` when `batch_size` > 1; with `in_transaction=True`, held by
  `hold_ready` instead); under a `rate_limit`, only after a start token was
  taken for it (`tokens.TokenWaiter`). From then until it is saved, the
  heartbeat thread extends its lease (`heartbeat`).
- `handler(job)` runs, and how it ended says how the job ends: finished,
  skipped, failed, or back to `ready` to be retried (`handlers`).
- The outcome is saved by its claim thread, or, if the run stopped first,
  by the shutdown, never by both (`inflight`, `core`).

Meanwhile the ready listener wakes idle claim threads (`listener`), and
with `produce=True` the producer fills the queue and rescues expired jobs
(`producer`). The modules:

- `core`: `Worker`: the run's life (run, stop, signals, shutdown), the
  claim loops and waiting for work;
- `saving`: saving the outcomes of claimed jobs under their claims;
- `settings`: `WorkerSettings`, the checked settings of a worker;
- `handlers`: running a handler (sync, async, within a time limit) and
  the verdict on how its job ends;
- `inflight`: a run's shared state, and the stages of a claimed job;
- `heartbeat`: the heartbeat thread;
- `listener`: the ready listener thread;
- `producer`: the producer and rescuer;
- `tokens`: the rate limit's token waiter;
- `stats`: `WorkerStats`, `SkipJob`, `FailJob`, `RetryAfter`, `Handler`, and the
  `WorkerObserver` protocol that metrics implement (and `WaitObserver`,
  told each claimed job's wait from ready to start, where they have it);
- `waiting`: what an idle worker waits for (`Worker.waiting`), and the log
  lines that say so;
- `signals`: SIGINT and SIGTERM: the first stops a run gracefully, the
  second at once;
- `cancelling`: an operator's cancel of a running job: heard at its
  heartbeat or by the cancel listener thread, and handed to its handler
  (`cancel_requested()`, an async handler's task cancelled);
- `backing_off`: a handler's `RetryAfter(pause=True)`: the destination
  paused for as long.

The names below are the package's API; the modules' own names may change.
"""

from fulltext_jobs.worker.core import Worker
from fulltext_jobs.worker.handlers import cancel_requested
from fulltext_jobs.worker.settings import MAX_CONCURRENCY, MAX_SECONDS
from fulltext_jobs.worker.stats import FailJob, Handler, RetryAfter, SkipJob, WorkerStats
from fulltext_jobs.worker.waiting import Waiting, WaitReason

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_SECONDS",
    "FailJob",
    "Handler",
    "RetryAfter",
    "SkipJob",
    "WaitReason",
    "Waiting",
    "Worker",
    "WorkerStats",
    "cancel_requested",
]
