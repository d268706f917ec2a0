"""A pipeline of three destinations, each following the one before: `fetch`
stores an item's text, `language` guesses the text's language, and
`quotations` picks the quotations out of the English texts only.

It shows how an app chains destinations:

- the ledger keeps the order: `depend("language", on="fetch")` and
  `depend("quotations", on="language")`. An item gets a job for a
  destination only once its job of the one before has finished; when that
  job ends, a trigger of the database records the item, and the follower's
  producer (a `Worker` with `produce=True`) queues it;
- the app keeps its own condition on the upstream's result, "only English
  texts", as the item source of the quotations repository: the items whose
  row in the app's `languages` table says `en`. An item must pass both;
- each handler writes the app's result (`texts`, `languages`,
  `quotations`) before it returns, so the result is there when the job
  finishes and the next destination's producer looks at the item. The
  write is idempotent: a job run twice writes the same rows.

Three workers, one per destination, run at once (threads here; machines in
a fleet), each making its own jobs as the one before finishes. The example
stops them once the pipeline is drained and prints what each did.

    python examples/pipeline.py [--database-url URL] [--items N]

With no URL (and no FULLTEXT_JOBS_DATABASE_URL) it uses a SQLite file in a
temporary folder, removed at the end. Given a database, it creates the
ledger there and its own tables `items`, `texts`, `languages` and
`quotations`: use an empty database. It refuses one where a table of those
names is not its own (an app's `items`, say), and changes nothing there.
On a database it has run on before it finds nothing new to do and prints
the same counts.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

import fulltext_jobs
from fulltext_jobs import FullText, ItemSource, JobsError, JobStatus, SqlAlchemyRepository, Worker

FETCH, LANGUAGE, QUOTATIONS = "fetch", "language", "quotations"
PIPELINE = (FETCH, LANGUAGE, QUOTATIONS)

# --- the app's own tables ------------------------------------------------------

metadata = sa.MetaData()
# Not "fulltext_items": that is the ledger's default item table on SQLite.
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
)
texts = sa.Table(
    "texts",
    metadata,
    sa.Column("item_id", sa.Text, sa.ForeignKey("items.id"), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
)
languages = sa.Table(
    "languages",
    metadata,
    sa.Column("item_id", sa.Text, sa.ForeignKey("items.id"), primary_key=True),
    sa.Column("language", sa.Text, nullable=False),
)
quotations = sa.Table(
    "quotations",
    metadata,
    sa.Column("item_id", sa.Text, sa.ForeignKey("items.id"), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("quotation", sa.Text, nullable=False),
)

# --- the work (toys, and deterministic) ------------------------------------------

SAMPLE_TEXTS = (
    'The mayor said "the bridge opens in the spring" and the crowd cheered.',
    'Le maire a dit "le pont ouvre au printemps" et la foule a applaudi.',
    'Der Bürgermeister sagte "die Brücke ist im Frühling offen" und das Volk jubelte.',
    'In the letter she wrote "come home soon" and "bring the maps".',
    "La lettre et les cartes des archives sont arrivées.",
    "Die Karte und das Buch der Stadt ist alt.",
)
STOP_WORDS = {
    "en": {"the", "and", "of", "is", "in"},
    "fr": {"le", "la", "et", "les", "des"},
    "de": {"der", "die", "und", "das", "ist"},
}
QUOTED = re.compile(r'"([^"]+)"')


def download(url: str) -> str:
    """The text at `url` (a stand-in for an HTTP request)."""
    number = int(url.rsplit("/", 1)[1])
    return SAMPLE_TEXTS[number % len(SAMPLE_TEXTS)]


def guess_language(text: str) -> str:
    words = re.findall(r"\w+", text.lower())
    scores = {lang: sum(word in stop for word in words) for lang, stop in STOP_WORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] else "unknown"


def handlers(engine: sa.Engine) -> dict[str, Callable[[FullText], None]]:
    """Each destination's handler. Each writes its result in a transaction
    of its own before it returns (the worker then finishes the job), and
    replaces what a previous run of the job wrote."""

    def fetch(job: FullText) -> None:
        with engine.begin() as connection:
            url = connection.scalar(sa.select(items.c.url).where(items.c.id == job.item_id))
            text = download(str(url))
            connection.execute(texts.delete().where(texts.c.item_id == job.item_id))
            connection.execute(texts.insert().values(item_id=job.item_id, text=text))

    def language(job: FullText) -> None:
        with engine.begin() as connection:
            text = connection.scalar(sa.select(texts.c.text).where(texts.c.item_id == job.item_id))
            found = guess_language(str(text))
            connection.execute(languages.delete().where(languages.c.item_id == job.item_id))
            connection.execute(languages.insert().values(item_id=job.item_id, language=found))

    def quote(job: FullText) -> None:
        with engine.begin() as connection:
            text = connection.scalar(sa.select(texts.c.text).where(texts.c.item_id == job.item_id))
            connection.execute(quotations.delete().where(quotations.c.item_id == job.item_id))
            found = QUOTED.findall(str(text))
            if found:
                connection.execute(
                    quotations.insert(),
                    [
                        {"item_id": job.item_id, "n": n, "quotation": quotation}
                        for n, quotation in enumerate(found, 1)
                    ],
                )

    return {FETCH: fetch, LANGUAGE: language, QUOTATIONS: quote}


# --- the set-up --------------------------------------------------------------------


def repositories(engine: sa.Engine) -> dict[str, SqlAlchemyRepository]:
    """The repository each destination's worker uses: one ledger, seen
    through two item sources. Fetch and language take every item of the
    app's `items`; quotations only those whose language is English."""
    every_item = SqlAlchemyRepository(engine, items=ItemSource(items))
    english = SqlAlchemyRepository(
        engine,
        items=ItemSource(sa.select(languages.c.item_id).where(languages.c.language == "en")),
    )
    return {FETCH: every_item, LANGUAGE: every_item, QUOTATIONS: english}


class NotOurTables(Exception):  # noqa: N818 - read as "error: not our tables"
    """The database has a table of the example's names that it did not make."""


def check_tables(engine: sa.Engine) -> None:
    """Raise `NotOurTables` if a table of the example's names exists with
    other columns than the example gives it: an app's own table, which the
    example must not write to."""
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        found = sorted(column["name"] for column in inspector.get_columns(table.name))
        if found != sorted(table.columns.keys()):
            msg = (
                f"the database has a table {table.name!r} of its own (columns: "
                f"{', '.join(found)}); run the example on an empty database"
            )
            raise NotOurTables(msg)


def set_up(engine: sa.Engine, n_items: int) -> None:
    """The ledger's schema, the app's tables and items, and the pipeline."""
    check_tables(engine)  # before anything is written
    fulltext_jobs.upgrade(engine)  # the ledger, from its migrations
    metadata.create_all(engine)  # the app's own tables
    with engine.begin() as connection:
        known = set(connection.scalars(sa.select(items.c.id)))
        new = [
            {"id": f"item-{n:03}", "url": f"https://texts.example.org/item/{n}"}
            for n in range(1, n_items + 1)
            if f"item-{n:03}" not in known
        ]
        if new:
            connection.execute(items.insert(), new)
    repo = repositories(engine)[FETCH]
    # Declarations live in the ledger: every producer of the fleet reads
    # them, and declaring again changes nothing.
    repo.depend(LANGUAGE, on=FETCH)
    repo.depend(QUOTATIONS, on=LANGUAGE)


def drained(repos: dict[str, SqlAlchemyRepository]) -> bool:
    """Whether no destination has a job to run or an item to queue. An
    upstream job's end makes its item unqueued downstream in the same
    commit, and items only move down the pipeline: read in its order, an
    item that moves on between two reads is seen at the later one."""
    for destination in PIPELINE:
        # `unqueued`: eligible items, done upstream, with no job yet.
        (stats,) = repos[destination].stats(destination)
        if stats.counts[JobStatus.READY] or stats.counts[JobStatus.RUNNING] or stats.unqueued:
            return False
    return True


def run_pipeline(engine: sa.Engine, *, timeout: float = 60) -> dict[str, Worker]:
    """Run a worker per destination, each in a thread, until the pipeline
    is drained; return them (their `stats` say what each did)."""
    repos = repositories(engine)
    work = handlers(engine)
    workers = {
        destination: Worker(
            repos[destination],
            destination,
            work[destination],
            produce=True,  # makes its own jobs: new items, and those its upstream let follow
            poll_interval=0.05,  # quick for a demo; the defaults suit a fleet
            max_poll_interval=0.2,
        )
        for destination in PIPELINE
    }
    errors: list[BaseException] = []

    def run(worker: Worker) -> None:
        try:
            worker.run(install_signal_handlers=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,), name=d) for d, w in workers.items()]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not errors and not drained(repos):
            if time.monotonic() > deadline:
                msg = f"the pipeline was not drained within {timeout} s"
                raise TimeoutError(msg)
            time.sleep(0.2)
    finally:
        for worker in workers.values():
            worker.stop()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return workers


# --- the report ---------------------------------------------------------------------


def all_jobs(repo: SqlAlchemyRepository, destination: str) -> list[FullText]:
    jobs: list[FullText] = []
    while page := repo.list_jobs(destination, limit=1000, after=jobs[-1].item_id if jobs else None):
        jobs.extend(page)
    return jobs


def report(engine: sa.Engine) -> list[str]:
    """The summary's lines: jobs per destination and status, the languages
    found, and which items got no quotations job."""
    repo = repositories(engine)[FETCH]
    with engine.connect() as connection:
        n_items = connection.scalar(sa.select(sa.func.count()).select_from(items))
        found = dict(connection.execute(sa.select(languages.c.item_id, languages.c.language)).all())
        n_quotations = connection.scalar(sa.select(sa.func.count()).select_from(quotations))
    lines = [f"items: {n_items}"]
    for dependency in repo.dependencies():
        statuses = ", ".join(sorted(status.value for status in dependency.statuses))
        lines.append(f"{dependency.destination} follows {dependency.upstream} ({statuses})")
    jobs = {destination: all_jobs(repo, destination) for destination in PIPELINE}
    for destination in PIPELINE:
        counts = Counter(job.status.value for job in jobs[destination])
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"{destination}: {len(jobs[destination])} jobs ({statuses or 'none'})")
    by_language = Counter(found.values())
    lines.append(
        "languages: " + ", ".join(f"{lang} {n}" for lang, n in sorted(by_language.items()))
    )
    quoted = {job.item_id for job in jobs[QUOTATIONS]}
    english = {item for item, lang in found.items() if lang == "en"}
    others = set(found) - english
    lines.append(
        f"quotations jobs: {len(quoted & english)} of {len(english)} English items, "
        f"{len(quoted & others)} of {len(others)} others"
    )
    lines.append(f"quotations found: {n_quotations}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(fulltext_jobs.DATABASE_URL_ENV),
        help="default: a SQLite file in a temporary folder",
    )
    parser.add_argument("--items", type=int, default=12)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fulltext-jobs-pipeline-") as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'pipeline.sqlite3'}"
        try:
            engine = fulltext_jobs.create_engine(url)
            try:
                set_up(engine, args.items)
                workers = run_pipeline(engine)
                print(f"database: {engine.url.render_as_string(hide_password=True)}")
                for destination, worker in workers.items():
                    stats = worker.stats
                    print(
                        f"{destination} worker: queued {stats.enqueued}, "
                        f"finished {stats.finished}, failed {stats.failed}"
                    )
                for line in report(engine):
                    print(line)
            finally:
                engine.dispose()
        except (JobsError, NotOurTables) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except sa.exc.DBAPIError as exc:  # the example's own reads and writes
            print(f"error: {exc.orig}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
