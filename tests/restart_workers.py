"""Worker processes for test_server_restart.py (importable by spawned
children, which inherit the parent's sys.path).

Each worker claims jobs (one at a time, or ten at a time), "works" on them
for a few milliseconds, finishes them and saves them, while the test
restarts the database server under it. It handles errors the way a real
worker should:

- a retryable `StoreError` while claiming or rescuing: wait a little and go
  on (a claim that committed unseen comes back after its lease, by rescue);
- a retryable `StoreError` while saving: wait a little and save again, for
  as long as `SAVE_RETRY_SECONDS`. The claim token guards the save, so a
  retry can never overwrite another worker's result; if the retry raises
  `LostClaim`, the job is read back to tell "an earlier attempt committed
  before the connection dropped" (the job is finished with exactly this
  worker's `finished` timestamp) from "the lease ran out and the job was
  rescued";
- `LostClaim` on a save: record it and go on (another delivery owns the job);
- `NoJobs`: rescue expired leases and stop once nothing is ready or running;
- anything else: record it as a failure (the test fails on it).

The report lists every job this worker saved successfully, so the test can
check that each job was finished exactly once.
"""

from __future__ import annotations

import os
import random
import time
import traceback
from datetime import timedelta
from typing import Any

import fulltext_jobs
from fulltext_jobs import (
    FullText,
    JobStatus,
    LostClaim,
    NoJobs,
    Repository,
    SqlAlchemyRepository,
    StoreError,
)

DESTINATION = "restart"

#: A short lease, so that a claim lost in a restart comes back soon.
LEASE = timedelta(seconds=3)

#: Rescue gives up on a job after this many attempts; high, so that no job
#: ends `failed` however many of its claims a restart swallowed.
MAX_ATTEMPTS = 50

#: How long one job's "work" takes: slows the run down enough for the test
#: to restart the server while jobs are in flight.
WORK_SECONDS = 0.005

#: How often a worker rescues expired leases while it works.
RESCUE_EVERY_SECONDS = 1.0

#: How long a worker keeps retrying one save before abandoning it (the job
#: then comes back by rescue).
SAVE_RETRY_SECONDS = 30.0

#: A worker stops after this many failures: enough to see a pattern.
MAX_FAILURES = 20


def new_report(name: str) -> dict[str, Any]:
    return {
        "name": name,
        # Ids of the jobs this worker finished and saved.
        "finished": [],
        # Of those, saves whose first attempt failed with a retryable error
        # but had committed (found by reading the job back).
        "confirmed_after_error": [],
        # Ids of jobs whose save raised LostClaim.
        "lost_claims": [],
        # (action, first line of the message) of each retryable StoreError.
        "retryable": [],
        # Ids of jobs whose save was abandoned after SAVE_RETRY_SECONDS of
        # retryable errors.
        "abandoned": [],
        # (repr, traceback) of every other exception.
        "failures": [],
        "rescued": 0,
        "claims": 0,
        "stopped": "deadline",
    }


class _Worker:
    def __init__(self, repo: Repository, name: str, batch: int, seed: int) -> None:
        self.repo = repo
        self.batch = batch
        self.rng = random.Random(seed)
        self.report = new_report(name)

    # --- error handling ---------------------------------------------------

    def _failure(self, exc: BaseException) -> None:
        self.report["failures"].append((repr(exc), traceback.format_exc()))

    def _retryable(self, action: str, exc: StoreError) -> None:
        self.report["retryable"].append((action, str(exc).splitlines()[0]))
        time.sleep(self.rng.uniform(0.1, 0.5))

    def _note(self, action: str, exc: Exception) -> bool:
        """Record an error from `action`; True if it is retryable (the
        worker backs off and may call again), False if it is a failure."""
        if isinstance(exc, StoreError) and exc.retryable:
            self._retryable(action, exc)
            return True
        self._failure(exc)
        return False

    def _too_many_failures(self) -> bool:
        return len(self.report["failures"]) >= MAX_FAILURES

    # --- the loop ---------------------------------------------------------

    def run(self, deadline: float) -> None:
        next_rescue = 0.0
        while time.monotonic() < deadline and not self._too_many_failures():
            if time.monotonic() >= next_rescue:
                self._rescue()
                next_rescue = time.monotonic() + RESCUE_EVERY_SECONDS
            jobs = self._claim()
            if jobs is None:
                continue
            if not jobs:
                if self._all_done():
                    self.report["stopped"] = "done"
                    return
                time.sleep(0.2)
                continue
            self.report["claims"] += len(jobs)
            for job in jobs:
                time.sleep(WORK_SECONDS)
                job.finish()
            if len(jobs) == 1:
                self._save_one(jobs[0], ambiguous=False)
            else:
                self._save_batch(jobs)

    def _claim(self) -> list[FullText] | None:
        """Claimed jobs, [] if none is ready, None after a handled error."""
        try:
            if self.batch == 1:
                return [self.repo.get_ready_job(DESTINATION)]
            return self.repo.claim_ready(DESTINATION, self.batch)
        except NoJobs:
            return []
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding
            self._note("claim", exc)
            return None

    def _rescue(self) -> int | None:
        """Rescue expired leases; None after a handled error."""
        try:
            rescued = self.repo.rescue_expired(DESTINATION, max_attempts=MAX_ATTEMPTS)
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding
            self._note("rescue_expired", exc)
            return None
        self.report["rescued"] += rescued
        return rescued

    def _all_done(self) -> bool:
        """True when a rescue found nothing and no job is ready or running."""
        if self._rescue() != 0:
            return False
        try:
            (stats,) = self.repo.stats(DESTINATION)
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding
            self._note("stats", exc)
            return False
        return stats.counts[JobStatus.READY] == 0 and stats.counts[JobStatus.RUNNING] == 0

    # --- saving -----------------------------------------------------------

    def _committed_before(self, job: FullText) -> bool | None:
        """Whether an earlier, failed-looking save of `job` committed: the
        stored job is finished at exactly this worker's timestamp. None if
        the job could not be read in time."""
        give_up = time.monotonic() + SAVE_RETRY_SECONDS
        while time.monotonic() < give_up:
            try:
                stored = self.repo.get_fulltext(job.id)
            except Exception as exc:  # noqa: BLE001 - any other exception is the finding
                if not self._note("get_fulltext", exc):
                    return None
                continue
            return stored.status is JobStatus.FINISHED and stored.finished == job.finished
        return None

    def _saved(self, job: FullText, *, ambiguous: bool) -> None:
        self.report["finished"].append(str(job.id))
        if ambiguous:
            self.report["confirmed_after_error"].append(str(job.id))

    def _lost(self, job: FullText, *, ambiguous: bool) -> None:
        if ambiguous and self._committed_before(job):
            self._saved(job, ambiguous=True)
        else:
            self.report["lost_claims"].append(str(job.id))

    def _save_one(self, job: FullText, *, ambiguous: bool) -> None:
        """Save `job`; `ambiguous`: an earlier save of it failed with a
        retryable error and may have committed."""
        give_up = time.monotonic() + SAVE_RETRY_SECONDS
        while True:
            try:
                self.repo.save_fulltext(job)
            except LostClaim:
                self._lost(job, ambiguous=ambiguous)
                return
            except Exception as exc:  # noqa: BLE001 - any other exception is the finding
                if not self._note("save_fulltext", exc):
                    return
                ambiguous = True
                if time.monotonic() >= give_up:
                    self.report["abandoned"].append(str(job.id))
                    return
            else:
                self._saved(job, ambiguous=False)
                return

    def _save_batch(self, jobs: list[FullText]) -> None:
        """Save `jobs` together; if some claim is gone (or an earlier attempt
        may have committed), save them one by one."""
        give_up = time.monotonic() + SAVE_RETRY_SECONDS
        ambiguous = False
        while True:
            try:
                self.repo.save_many(jobs)
            except LostClaim:
                # All or nothing: nothing was saved by this call. Save those
                # still held one by one.
                for job in jobs:
                    self._save_one(job, ambiguous=ambiguous)
                return
            except Exception as exc:  # noqa: BLE001 - any other exception is the finding
                if not self._note("save_many", exc):
                    return
                ambiguous = True
                if time.monotonic() >= give_up:
                    self.report["abandoned"].extend(str(job.id) for job in jobs)
                    return
            else:
                for job in jobs:
                    self._saved(job, ambiguous=False)
                return


def restart_worker(url: str, index: int, batch: int, seconds: float, results: Any) -> None:
    """The body of one spawned process: its own engine and repository; works
    until no job is left or `seconds` have passed, then puts its report on
    `results`."""
    deadline = time.monotonic() + seconds
    worker: _Worker | None = None
    engine = None
    name = f"worker {index} (pid {os.getpid()}, batch {batch})"
    try:
        engine = fulltext_jobs.create_engine(url)
        worker = _Worker(SqlAlchemyRepository(engine, lease=LEASE), name, batch, seed=index)
        worker.run(deadline)
    except Exception:  # noqa: BLE001 - reported: the test fails on it
        report = worker.report if worker is not None else new_report(name)
        report["failures"].append(("setup", traceback.format_exc()))
        results.put(report)
        return
    finally:
        if engine is not None:
            engine.dispose()
    results.put(worker.report)
