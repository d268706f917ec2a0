"""Worker processes for test_concurrency_scale.py (importable by spawned
children, which inherit the parent's sys.path)."""

from __future__ import annotations

import random
import traceback
from typing import Any

import fulltext_jobs
from fulltext_jobs import AllQueued, SqlAlchemyRepository

DESTINATION = "scale"


def mixed_worker(url: str, seed: int, barrier: Any, results: Any) -> None:
    """Create jobs (one at a time and in bulk) while claiming some, until
    nothing is left to queue; then, once every process is there, claim what
    is left. Report counts, claimed ids and any exception."""
    rng = random.Random(seed)
    report: dict[str, Any] = {"created": [], "enqueued": 0, "claimed": [], "errors": []}
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)
        barrier.wait(timeout=60)
        exhausted = False
        while not exhausted:
            choice = rng.random()
            if choice < 0.5:
                try:
                    report["created"].append(repo.create_job_for_unqueued(DESTINATION).item_id)
                except AllQueued:
                    # Nothing left for this call; a bulk sweep settles it.
                    swept = repo.enqueue_unqueued(DESTINATION)
                    report["enqueued"] += swept
                    exhausted = swept == 0
            elif choice < 0.7:
                report["enqueued"] += repo.enqueue_unqueued(DESTINATION, limit=rng.randint(20, 400))
            else:
                report["claimed"] += [
                    str(job.id) for job in repo.claim_ready(DESTINATION, rng.randint(1, 60))
                ]
        barrier.wait(timeout=240)
        while batch := repo.claim_ready(DESTINATION, rng.randint(1, 60)):
            report["claimed"] += [str(job.id) for job in batch]
    except Exception:  # noqa: BLE001 - any exception reaching a caller is the finding
        report["errors"].append(traceback.format_exc())
        barrier.abort()
    finally:
        engine.dispose()
    results.put(report)
