"""The main job, end to end, on the embedded SQLite default.

Migrates a SQLite file in the working directory (or the database named by
FULLTEXT_JOBS_DATABASE_URL or --database-url), loads sample items, creates a
job for every item and destination, claims and finishes them all, and prints
the counts. Running it again is idempotent: nothing new to do, same counts.

    python examples/quickstart.py [--database-url URL] [--items N]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

import fulltext_jobs
from fulltext_jobs import AllQueued, JobsError, NoJobs, SqlAlchemyRepository

DESTINATIONS = ("language-detection", "quotation-prediction")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(fulltext_jobs.DATABASE_URL_ENV, fulltext_jobs.DEFAULT_DATABASE_URL),
    )
    parser.add_argument("--items", type=int, default=200)
    args = parser.parse_args(argv)

    try:
        engine = fulltext_jobs.create_engine(args.database_url)
        fulltext_jobs.upgrade(engine)
        repo = SqlAlchemyRepository(engine)
        added = repo.add_items(f"loc.gov/item/sample-{n:05}" for n in range(args.items))
        created: Counter[str] = Counter()
        claimed: Counter[str] = Counter()
        for destination in DESTINATIONS:
            while True:
                try:
                    repo.create_job_for_unqueued(destination)
                except AllQueued:
                    break
                created[destination] += 1
            while True:
                try:
                    job = repo.get_ready_job(destination)
                except NoJobs:
                    break
                job.finish()  # the work itself would run here
                repo.save_fulltext(job)
                claimed[destination] += 1
        print(f"database: {engine.url.render_as_string(hide_password=True)}")
        print(f"items added: {added}")
        for destination in DESTINATIONS:
            print(
                f"{destination}: {created[destination]} jobs created, "
                f"{claimed[destination]} claimed and finished"
            )
        print_counts(repo)
        engine.dispose()
    except JobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def print_counts(repo: SqlAlchemyRepository) -> None:
    """Jobs per destination and status, as `stats()` reports them."""
    print(f"{'destination':<24}{'status':<10}{'jobs':>6}")
    for row in repo.stats():
        for status, count in row.counts.items():
            if count:
                print(f"{row.destination:<24}{status.value:<10}{count:>6}")


if __name__ == "__main__":
    sys.exit(main())
