"""Claims under a cap: benchmark `cap` of benchmarks/run.py (table n.).

    python benchmarks/run.py --only cap

An uncapped destination's claim is one statement. A capped one's claim
locks the destination's row of `fulltext_controls`, counts its running
jobs and claims within the cap, in one transaction (see
docs/guide-workers.md, "A cap on running jobs"). This times
`claim_ready(100)` and `get_ready_job` with a cap in force that does not
bind (`CAP`, with `RUNNING` jobs running) against the same claims with no
cap, in the same run, on PostgreSQL and on SQLite: at batch 100 a capped
claim should cost at most `TARGET` times an uncapped one. Each claim's jobs
are finished (untimed) before the next claim, so that the running jobs the
capped claim counts stay at `RUNNING`, as under a cap they would.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fulltext_jobs import FullText, SqlAlchemyRepository

if TYPE_CHECKING:
    from run import Bench, Table

#: The batch a batch claim takes.
BATCH = 100
#: The jobs running throughout, which a capped claim counts.
RUNNING = 50
#: A cap that does not bind: the claims take what they ask for.
CAP = 10_000
#: The most a capped claim may cost, against an uncapped one, at batch 100.
TARGET = 1.3


def claim_latency(
    repo: SqlAlchemyRepository, claim: Callable[[], list[FullText]], runs: int, calls: int
) -> float:
    """The median over `runs` runs of the median latency of `calls` claims;
    each claim's jobs are finished, untimed, before the next."""

    def one() -> float:
        start = time.perf_counter()
        jobs = claim()
        took = time.perf_counter() - start
        for job in jobs:
            job.finish()
        if jobs:
            repo.save_many(jobs, atomic=False)
        return took

    return statistics.median(statistics.median(one() for _ in range(calls)) for _ in range(runs))


def bench_cap(bench: Bench, args: argparse.Namespace) -> Table:
    """Claim latency under a cap that does not bind against under none."""
    # run.py is the script that imports this module: import it when called.
    from delayed import on_both_stores  # noqa: PLC0415 - a sibling benchmark's ledgers
    from run import DESTINATION, Table, ms, verdict  # noqa: PLC0415

    runs, calls = args.runs, args.calls * 4
    due = 3 * (runs * calls + 3) * (BATCH + 1) + RUNNING + BATCH
    table = Table("n. Claims under a cap")

    def latencies(repo: SqlAlchemyRepository) -> dict[tuple[str, str], float]:
        """Each claim's median latency without a cap, with one, and without
        one again (the two uncapped runs are averaged: a drift of the
        machine falls on both sides)."""
        claims: dict[str, Callable[[], list[FullText]]] = {
            f"claim_ready({BATCH})": lambda: repo.claim_ready(DESTINATION, BATCH),
            "get_ready_job": lambda: [repo.get_ready_job(DESTINATION)],
        }
        repo.claim_ready(DESTINATION, RUNNING)  # these stay running
        found: dict[tuple[str, str], list[float]] = {}
        try:
            for case in ("none", "capped", "none"):
                repo.limit(DESTINATION, max_running=CAP if case == "capped" else None)
                for name, claim in claims.items():
                    claim_latency(repo, claim, 1, 3)  # warm-up
                    found.setdefault((name, case), []).append(
                        claim_latency(repo, claim, runs, calls)
                    )
        finally:
            repo.limit(DESTINATION, max_running=None)
        return {key: statistics.fmean(values) for key, values in found.items()}

    stores = on_both_stores(bench, due, "cap", latencies)
    for store, found in stores.items():
        for claim in (f"claim_ready({BATCH})", "get_ready_job"):
            none, capped = found[claim, "none"], found[claim, "capped"]
            ratio = capped / none
            table.add(f"{store}: {claim}, no cap", ms(none))
            gate = (f"<= {TARGET}", verdict(ratio <= TARGET)) if "claim_ready" in claim else ()
            table.add(
                f"{store}: {claim}, capped at {CAP:,} with {RUNNING} running",
                ms(capped),
                f"{ratio:.2f} x no cap",
                *gate,
            )
    table.notes.append(
        f"Medians of {runs} runs of {calls} claims each; the uncapped figure is the mean of "
        "a run before and a run after the capped one. Each claim's jobs are finished, "
        f"untimed, before the next claim, so that {RUNNING} jobs stay running throughout. "
        f"The target is for batch {BATCH} (the issue's); a single-job claim pays the "
        "same two extra statements on a smaller base."
    )
    return table
