"""The bundled demo behind `fulltext-jobs demo`: the main job, end to end, on
a sample that needs no network and no configuration.

It plays the part of an app that uses the ledger: it keeps full texts in a
table of its own (`demo_texts`), gives the ledger the item ids, queues them
for two destinations of its own (`demo-word-count`, `demo-language-detection`),
and runs a `Worker` per destination whose handler writes its result to
another table of its own (`demo_results`).

Decisions:

- **It touches nothing it did not create.** Its destinations are its own,
  named so that no app's can be mistaken for them; it queues only its own
  item ids (an item source of which only the sample's ids are eligible), and
  its workers claim only jobs of its own destinations. Its default database
  is a file of its own, `DEFAULT_DEMO_URL`, so that the command line's
  default database never holds demo items.
- **It refuses a database that is not its own**, before writing anything
  (`check_database`): one that holds items or jobs that are not the demo's,
  or tables that are neither the ledger's nor the demo's (an app's, or an
  app's `alembic_version`), raises `DemoRefused` saying what it found. The
  counts stop at `COUNT_CAP`, so refusing an app's millions of rows costs a
  short read, not a scan of them all.
- **The check and the writes are not one transaction**, and need not be:
  the check keeps the demo's rows out of an app's database, and the writes
  cannot touch an app's rows whatever happens in between. An app that adds
  items or jobs meanwhile gets no demo job for them (they are not eligible)
  and keeps its own jobs as they are (the demo claims only its own
  destinations). Holding a lock from the check to the end of the run would
  instead block such an app for the whole demo.
- **The sample is generated, not shipped**: 200 items from a fixed list of
  short sentences in five languages, chosen by arithmetic on the item's
  number, so it is the same on every run and machine and needs no package
  data. Every 25th item has an empty text, and its handlers raise `SkipJob`.
- **The app's tables are the app's**: created with `MetaData.create_all`,
  beside the ledger's schema (which comes only from the migrations).
- **Idempotent**: texts are inserted if absent, `add_items` and
  `enqueue_unqueued` add only what is missing, and results are upserted by
  (item, destination), so a job delivered twice writes one row. A second run
  adds nothing and ends with the same stats; its check passes, since the
  database holds only what the first run wrote.
- **The handlers are real, and small**: a word count, and a language guess
  by counting stop words.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Final

import sqlalchemy as sa
from rich import box
from rich.table import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

import fulltext_jobs
from fulltext_jobs._defaults import DEFAULT_DEMO_URL
from fulltext_jobs.domain import DestinationStats, FullText, JobStatus
from fulltext_jobs.errors import DemoRefused, InvalidInput
from fulltext_jobs.sql.errors import translated
from fulltext_jobs.sql.items import ItemSource
from fulltext_jobs.sql.repository import SqlAlchemyRepository
from fulltext_jobs.sql.schema import SUPPORTED_DIALECTS, VERSION_TABLE, tables_for
from fulltext_jobs.worker import SkipJob, Worker

__all__ = [
    "DEFAULT_DEMO_URL",
    "DESTINATIONS",
    "ITEMS",
    "ITEM_IDS",
    "DemoReport",
    "Sample",
    "check_database",
    "guess_language",
    "run",
    "sample_texts",
    "samples_table",
    "word_count",
]

#: The demo's database when it is given none: a SQLite file of its own in
#: the working directory, never the command line's default
#: (`fulltext_jobs.DEFAULT_DATABASE_URL`), which is where an app's real run
#: goes.

#: How many sample items there are.
ITEMS: Final = 200

#: Every this-many-th item has an empty text (and is skipped).
EMPTY_EVERY: Final = 25

#: The demo's destinations: its own, so that its workers never claim an
#: app's jobs (an app may well have a `word-count`).
WORD_COUNT: Final = "demo-word-count"
LANGUAGE_DETECTION: Final = "demo-language-detection"
DESTINATIONS: Final = (WORD_COUNT, LANGUAGE_DETECTION)

#: The most rows of a kind `check_database` counts: enough to tell a user
#: what is there, and a bounded read however big the app's tables are.
COUNT_CAP: Final = 10_000

SENTENCES: Final[Mapping[str, tuple[str, ...]]] = {
    "en": (
        "The river was high and the mill was working through the night.",
        "She wrote that the harvest had been good in all of the valley.",
        "We have sent the letters to the printer and they are ready.",
        "It is said that the old bridge will be rebuilt in the spring.",
    ),
    "fr": (
        "Le conseil de la ville a voté pour la nouvelle école.",
        "Les ouvriers sont arrivés avec les outils et le pain.",
        "Il est parti pour Paris dans une voiture de la poste.",
        "Nous avons reçu des nouvelles de la famille et des amis.",
    ),
    "de": (
        "Der Zug kam am Abend mit den Briefen aus der Stadt.",
        "Die Kinder sind mit dem Lehrer in den Wald gegangen.",
        "Es ist nicht das erste Mal, dass der Fluss über die Ufer tritt.",
        "Wir haben die Zeitung und ein Buch für den Winter gekauft.",
    ),
    "es": (
        "El tren llegó por la tarde con las cartas de la ciudad.",
        "Los niños fueron al mercado con su madre y el perro.",
        "La casa de los abuelos está en el centro del pueblo.",
        "Se dice que el puerto es el más grande de la costa.",
    ),
    "it": (
        "Il treno è arrivato alla stazione con le lettere della città.",
        "I bambini sono andati al mare con il nonno e gli amici.",
        "La chiesa del paese è stata restaurata nel corso degli anni.",
        "Non è facile trovare una casa per la famiglia in centro.",
    ),
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP_WORDS: Final[Mapping[str, frozenset[str]]] = {
    "en": _words("the and of to in that it is was have are they we she he will be all"),
    "fr": _words("le la les de des et un une il est pour dans nous avons sont avec du"),
    "de": _words("der die das und den dem ist nicht mit aus wir haben es ein sind für"),
    "es": _words("el la los las de del y en con por se que es su al más está"),
    "it": _words("il la le i gli di della del e è con per non una alla al nel sono"),
}

LANGUAGES: Final = tuple(SENTENCES)

_WORD: Final = re.compile(r"\w+")

METADATA: Final = sa.MetaData()

#: The app's full texts, keyed by item id.
TEXTS: Final = sa.Table(
    "demo_texts",
    METADATA,
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
)

#: The handlers' results, one row per (item, destination).
RESULTS: Final = sa.Table(
    "demo_results",
    METADATA,
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("destination", sa.Text, primary_key=True),
    sa.Column("result", sa.Text, nullable=False),
)


def item_id(number: int) -> str:
    """The id of sample item `number`."""
    return f"loc.gov/item/demo-{number:03}"


#: The ids of the sample's items, in order: the only items the demo adds
#: and queues.
ITEM_IDS: Final = tuple(item_id(number) for number in range(ITEMS))


def sample_texts() -> dict[str, str]:
    """The sample: item id to full text, the same on every call."""
    texts: dict[str, str] = {}
    for number in range(ITEMS):
        if number % EMPTY_EVERY == EMPTY_EVERY - 1:
            texts[item_id(number)] = ""
            continue
        sentences = SENTENCES[LANGUAGES[number % len(LANGUAGES)]]
        count = 1 + number % 3
        start = (number // len(LANGUAGES)) % len(sentences)
        texts[item_id(number)] = " ".join(
            sentences[(start + k) % len(sentences)] for k in range(count)
        )
    return texts


def word_count(text: str) -> int:
    """How many words `text` has."""
    return len(_WORD.findall(text))


def guess_language(text: str) -> str:
    """The language whose stop words `text` uses most (a language code), or
    `und` (undetermined) if it uses none."""
    words = [word.lower() for word in _WORD.findall(text)]
    scores = {lang: sum(word in stops for word in words) for lang, stops in STOP_WORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] else "und"


ANALYSES: Final[Mapping[str, Callable[[str], object]]] = {
    WORD_COUNT: word_count,
    LANGUAGE_DETECTION: guess_language,
}


def _insert(engine: Engine) -> Callable[[sa.Table], postgresql.Insert | sqlite.Insert]:
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


class DemoHandler:
    """A handler: reads the item's text from `demo_texts`, analyses it, and
    upserts the result into `demo_results`. An item without text is
    skipped."""

    def __init__(
        self, engine: Engine, destination: str, on_job: Callable[[str], None] | None = None
    ) -> None:
        self._engine = engine
        self._destination = destination
        self._analyse = ANALYSES[destination]
        self._on_job = on_job

    def __call__(self, job: FullText) -> None:
        """Handle `job`; raise `SkipJob` if its item has no text."""
        try:
            with self._engine.begin() as connection:
                text = connection.execute(
                    sa.select(TEXTS.c.text).where(TEXTS.c.item_id == job.item_id)
                ).scalar_one_or_none()
                if not (text or "").strip():
                    raise SkipJob("no full text")
                insert = _insert(self._engine)(RESULTS).values(
                    item_id=job.item_id,
                    destination=self._destination,
                    result=str(self._analyse(text or "")),
                )
                connection.execute(
                    insert.on_conflict_do_update(
                        index_elements=[RESULTS.c.item_id, RESULTS.c.destination],
                        set_={"result": insert.excluded.result},
                    )
                )
        finally:
            if self._on_job is not None:
                self._on_job(self._destination)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One item's text and what the handlers made of it (None: skipped)."""

    item_id: str
    text: str
    language: str | None
    words: str | None


@dataclasses.dataclass(frozen=True)
class DemoReport:
    """What a run of the demo did, and where the ledger stands after it."""

    items_added: int
    jobs_created: dict[str, int]
    stats: list[DestinationStats]
    samples: list[Sample]
    #: A signal stopped a worker before its destination was done (the rest
    #: were not started); running the demo again finishes the work.
    interrupted: bool = False


def check_database(engine: Engine) -> None:
    """Pass a database the demo may write to: one that is empty, or holds
    only the ledger's schema and the demo's own data (a previous run's).

    Reads, and writes nothing. Raises `DemoRefused` if the database holds
    items or jobs that are not the demo's (other ids, other destinations),
    rows of `demo_texts` or `demo_results` that are not, or tables (or
    views) that are neither the ledger's, its migrations' version table,
    nor the demo's; the message counts them (up to `COUNT_CAP` of each),
    names the tables, and says where to run the demo instead. Raises
    `InvalidInput` for an engine that is neither PostgreSQL nor SQLite, and
    `StoreError` if the database cannot be read.
    """
    if engine.dialect.name not in SUPPORTED_DIALECTS:
        msg = f"fulltext-jobs supports PostgreSQL and SQLite, not {engine.dialect.name}"
        raise InvalidInput(msg)
    with translated("checking the database for the demo"), engine.connect() as connection:
        found = _foreign(connection)
    if found:
        demo_file = sa.make_url(DEFAULT_DEMO_URL).database
        msg = (
            f"the database holds {_listed(found)} that the demo did not create: run the "
            f"demo on a database of its own (omit --database-url to use {demo_file}, or "
            "point it at an empty database); nothing was changed"
        )
        raise DemoRefused(msg)


def _foreign(connection: sa.Connection) -> list[str]:
    """What the database holds that the demo did not create, each as
    `300 items`, `2 tables (a, b)`...; empty if nothing."""
    inspector = sa.inspect(connection)
    default = inspector.default_schema_name
    present: set[tuple[str | None, str]] = set()
    for schema in inspector.get_schema_names():
        if schema == "information_schema" or schema.startswith("pg_"):
            continue  # PostgreSQL's own
        names = [*inspector.get_table_names(schema), *inspector.get_view_names(schema)]
        present.update((schema, name) for name in names)
    ledger = tables_for(connection.dialect.name)
    own = {
        (table.schema or default, table.name)
        for table in (*ledger.metadata.tables.values(), *METADATA.tables.values())
    }
    own.add((default, VERSION_TABLE))

    def count(table: sa.Table, not_ours: sa.ColumnElement[bool]) -> int:
        if (table.schema or default, table.name) not in present:
            return 0
        rows = sa.select(sa.literal(1)).select_from(table).where(not_ours).limit(COUNT_CAP + 1)
        return connection.execute(
            sa.select(sa.func.count()).select_from(rows.subquery())
        ).scalar_one()

    jobs = ledger.fulltext
    found = [
        _counted(count(ledger.items, ledger.items.c.id.not_in(ITEM_IDS)), "item"),
        _counted(
            count(jobs, jobs.c.destination.not_in(DESTINATIONS) | jobs.c.item_id.not_in(ITEM_IDS)),
            "job",
        ),
        _counted(
            count(TEXTS, TEXTS.c.item_id.not_in(ITEM_IDS))
            + count(
                RESULTS,
                RESULTS.c.item_id.not_in(ITEM_IDS) | RESULTS.c.destination.not_in(DESTINATIONS),
            ),
            f"row of {TEXTS.name} or {RESULTS.name}",
            f"rows of {TEXTS.name} or {RESULTS.name}",
        ),
    ]
    others = sorted(
        name if schema == default else f"{schema}.{name}" for schema, name in present - own
    )
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        found.append(f"{_counted(len(others), 'table')} ({shown})")
    return [part for part in found if part]


def _counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` `noun`s in words (`more than COUNT_CAP` past the cap), or "" for none."""
    if not n:
        return ""
    many = plural or f"{noun}s"
    if n > COUNT_CAP:
        return f"more than {COUNT_CAP} {many}"
    return f"{n} {noun if n == 1 else many}"


def _listed(parts: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _own_items(engine: Engine) -> ItemSource:
    """The default items table, of which only the sample's items are
    eligible: the demo's `enqueue_unqueued` queues nothing else, whatever
    else the table holds or is given meanwhile."""
    items = tables_for(engine.dialect.name).items
    return ItemSource(items, eligible=items.c.id.in_(ITEM_IDS))


def _load(engine: Engine) -> None:
    METADATA.create_all(engine)
    rows = [{"item_id": key, "text": text} for key, text in sample_texts().items()]
    with engine.begin() as connection:
        connection.execute(
            _insert(engine)(TEXTS).on_conflict_do_nothing(index_elements=[TEXTS.c.item_id]),
            rows,
        )


def _samples(engine: Engine) -> list[Sample]:
    # The first item of each language, and the first empty one.
    picks = [item_id(n) for n in (*range(len(LANGUAGES)), EMPTY_EVERY - 1)]
    with engine.connect() as connection:
        texts = {
            row.item_id: row.text
            for row in connection.execute(sa.select(TEXTS).where(TEXTS.c.item_id.in_(picks)))
        }
        results = {
            (row.item_id, row.destination): row.result
            for row in connection.execute(sa.select(RESULTS).where(RESULTS.c.item_id.in_(picks)))
        }
    return [
        Sample(
            item_id=pick,
            text=texts.get(pick, ""),
            language=results.get((pick, LANGUAGE_DETECTION)),
            words=results.get((pick, WORD_COUNT)),
        )
        for pick in picks
    ]


def run(
    engine: Engine,
    *,
    on_start: Callable[[str, int, int], None] | None = None,
    on_job: Callable[[str], None] | None = None,
) -> DemoReport:
    """Check that the database is the demo's own (see `check_database`),
    migrate it, load the sample, queue and work off its jobs for both of
    the demo's destinations, and report. Only the sample's items are added
    and queued, and only jobs of the demo's destinations are worked.

    `on_start(destination, total, done)` is called before each destination's
    worker runs, with its jobs and how many of them are already done;
    `on_job(destination)` after each job its handler ran. A SIGINT or
    SIGTERM stops the worker that is running (gracefully) and the demo with
    it: the report says it was interrupted. Raises `DemoRefused` (having
    changed nothing) for a database that holds data the demo did not create,
    and what `check_database`, `fulltext_jobs.upgrade`, the repository and
    the worker raise.
    """
    check_database(engine)
    fulltext_jobs.upgrade(engine)
    _load(engine)
    repo = SqlAlchemyRepository(engine, items=_own_items(engine))
    added = repo.add_items(sample_texts())
    created = {destination: repo.enqueue_unqueued(destination) for destination in DESTINATIONS}
    interrupted = False
    for destination in DESTINATIONS:
        if on_start is not None:
            [before] = repo.stats(destination)
            on_start(destination, before.jobs, before.jobs - before.counts.get(JobStatus.READY, 0))
        worker = Worker(
            repo,
            destination,
            DemoHandler(engine, destination, on_job),
            concurrency=2,
            poll_interval=0.05,
        )
        worker.run(until_idle=True)
        [after] = repo.stats(destination)
        if after.counts.get(JobStatus.READY, 0):  # SIGINT or SIGTERM stopped the worker
            interrupted = True
            break
    return DemoReport(
        items_added=added,
        jobs_created=created,
        interrupted=interrupted,
        stats=[row for destination in DESTINATIONS for row in repo.stats(destination)],
        samples=_samples(engine),
    )


def samples_table(samples: list[Sample]) -> Table:
    """A few items, their texts and the handlers' results, as a table."""
    table = Table(title="sample results", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    width = max((len(sample.item_id) for sample in samples), default=4)
    table.add_column("item", no_wrap=True, min_width=width)
    table.add_column("language", no_wrap=True)
    table.add_column("words", justify="right", no_wrap=True)
    table.add_column("text", overflow="ellipsis", no_wrap=True, max_width=36)
    for sample in samples:
        table.add_row(
            sample.item_id,
            sample.language or "skipped",
            sample.words or "skipped",
            sample.text or "(empty)",
        )
    return table
