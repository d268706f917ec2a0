"""What a rate limit adds to a claim: benchmark `rate` of benchmarks/run.py.

    python benchmarks/run.py --only rate

A worker under a rate limit takes start tokens (`take_rate_tokens`, one
upsert of its destination's bucket row) before each claim. This times the
claim alone and the take-then-claim pair, for one job (`get_ready_job`) and
for a batch of 100 (`claim_ready`), in the same run, with a rate so high
that no take is ever refused: the figures are the cost of the bookkeeping,
not of the waiting the limit is for.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fulltext_jobs.rate_limit import MAX_BURST, MAX_RATE

if TYPE_CHECKING:
    from run import Bench, Table

#: The batch a batch claim takes.
BATCH = 100


def bench_rate_limit(bench: Bench, args: argparse.Namespace) -> Table:
    """Claim latency with and without taking rate tokens first."""
    # run.py is the script that imports this module: import it when called.
    from run import DESTINATION, Table, median_latency, ms  # noqa: PLC0415

    runs, calls = args.runs, args.calls * 4
    table = Table("h. Claim cost under a rate limit")
    repo = bench.repo()

    def take(n: int) -> None:
        granted, _ = repo.take_rate_tokens(DESTINATION, MAX_RATE, n, burst=MAX_BURST)
        if granted != n:
            msg = "the bucket refused a take: the figures would include a wait"
            raise RuntimeError(msg)

    def one_plain() -> None:
        repo.get_ready_job(DESTINATION)

    def one_limited() -> None:
        take(1)
        repo.get_ready_job(DESTINATION)

    def batch_plain() -> None:
        repo.claim_ready(DESTINATION, BATCH)

    def batch_limited() -> None:
        take(BATCH)
        repo.claim_ready(DESTINATION, BATCH)

    figures = {}
    for name, call, per_call in (
        ("one", one_plain, 1),
        ("one, limited", one_limited, 1),
        ("batch", batch_plain, BATCH),
        ("batch, limited", batch_limited, BATCH),
    ):
        bench.ready_jobs(runs * calls * per_call + 2 * per_call)
        call()  # warm-up: connection, schema check, prepared statements
        figures[name] = median_latency(call, runs, calls)
    for plain, limited, label in (
        ("one", "one, limited", "get_ready_job"),
        ("batch", "batch, limited", f"claim_ready({BATCH})"),
    ):
        ratio = figures[limited] / figures[plain]
        table.add(label, ms(figures[plain]))
        table.add(f"take_rate_tokens + {label}", ms(figures[limited]), f"{ratio:.2f} x")
    table.notes.append(
        f"Medians of {runs} runs of {calls} calls each, one process, rate {MAX_RATE:,.0f}/s "
        "(never refused). The take is one more round trip before the claim: it roughly "
        "doubles a single claim's cost and adds a few percent to a batch's. At the rates a "
        "limit is for (tens a second), neither is what bounds the work."
    )
    return table
