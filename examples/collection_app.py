"""An app with its own item model, as the original pipeline had: items are
crawled first, and become eligible for full-text work once their metadata
(`api`, JSON) has been fetched.

It shows the three ways an app wires its ORM into fulltext-jobs:

- its declarative `Item` model is the item source, with the original's
  eligibility rule `api IS NOT NULL`;
- each job is handled in one of the app's sessions: the claim, the app's
  `LanguageGuess` row and the finish commit together, so a crash anywhere
  before the commit leaves neither the result nor a finished job behind
  (exactly-once effects);
- its report reads the ledger through the read model `FullTextRecord`: a
  view-only relationship from `Item` to its jobs, and a query for the items
  that have no finished job yet.

    python examples/collection_app.py [--database-url URL]

With no URL it uses `collection.sqlite3` in the working directory. Running it
again finds nothing new to do.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, foreign, mapped_column, relationship

import fulltext_jobs
from fulltext_jobs import ItemSource, JobsError, NoJobs, SqlAlchemyRepository
from fulltext_jobs.sql.orm import FullTextRecord

DESTINATION = "language-detection"

# Python None must be SQL NULL, not JSON null, for `api IS NOT NULL` to mean
# "metadata fetched".
JSON_API = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

STOP_WORDS = {
    "en": {"the", "and", "of", "is", "in"},
    "fr": {"le", "la", "et", "les", "des"},
    "de": {"der", "die", "und", "das", "ist"},
}


class Base(DeclarativeBase):
    pass


class Item(Base):
    """An item of the collection, as the crawler stores it."""

    # Not "items": on SQLite, which has no schemas, the ledger's own default
    # item table has that name.
    __tablename__ = "collection_items"
    id: Mapped[str] = mapped_column(primary_key=True)
    title: Mapped[str]
    api: Mapped[dict[str, Any] | None] = mapped_column(JSON_API)

    # Its jobs in the ledger, for reading: the repository writes them.
    jobs: Mapped[list[FullTextRecord]] = relationship(
        FullTextRecord,
        primaryjoin=lambda: Item.id == foreign(FullTextRecord.item_id),
        viewonly=True,
    )


class LanguageGuess(Base):
    """The app's own result of the language-detection destination."""

    __tablename__ = "language_guesses"
    item_id: Mapped[str] = mapped_column(sa.ForeignKey("collection_items.id"), primary_key=True)
    language: Mapped[str]


def repository(engine: sa.Engine) -> SqlAlchemyRepository:
    """The ledger over the app's own items: only those with metadata."""
    return SqlAlchemyRepository(engine, items=ItemSource(Item, eligible=Item.api.is_not(None)))


def guess_language(text: str) -> str:
    words = text.lower().split()
    scores = {lang: sum(word in stop for word in words) for lang, stop in STOP_WORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] else "unknown"


SAMPLE = [
    ("item-001", "Letter", {"full_text": "The state of the union is strong and free"}),
    ("item-002", "Lettre", {"full_text": "La lettre et les papiers des archives"}),
    ("item-003", "Brief", {"full_text": "Der Brief und das Buch ist alt"}),
    ("item-004", "Map", None),  # metadata not fetched yet: not eligible
    ("item-005", "Diary", {"full_text": "In the morning of the fourth day"}),
]


def load_sample(engine: sa.Engine) -> None:
    """The crawler's part: items, some with metadata and some without."""
    with Session(engine) as session:
        for item_id, title, api in SAMPLE:
            if session.get(Item, item_id) is None:
                session.add(Item(id=item_id, title=title, api=api))
        session.commit()


def handle_one(engine: sa.Engine, repo: SqlAlchemyRepository) -> bool:
    """Claim one job, store its result and finish it in one transaction;
    return False when no job is ready."""
    with Session(engine) as session:
        joined = repo.in_session(session)
        try:
            job = joined.get_ready_job(DESTINATION)
        except NoJobs:
            return False
        item = session.get(Item, job.item_id)
        text = (item.api or {}).get("full_text", "") if item is not None else ""
        session.merge(LanguageGuess(item_id=job.item_id, language=guess_language(text)))
        job.finish()
        joined.save_fulltext(job)
        session.commit()  # the result and the finished job, together
    return True


def run(url: str) -> dict[str, str]:
    """Set up, enqueue the eligible items, handle every job; return the
    guesses by item."""
    engine = fulltext_jobs.create_engine(url)
    try:
        fulltext_jobs.upgrade(engine)  # the ledger's schema, from its migrations
        Base.metadata.create_all(engine)  # the app's own tables
        load_sample(engine)
        repo = repository(engine)
        repo.enqueue_unqueued(DESTINATION)
        while handle_one(engine, repo):
            pass
        with Session(engine) as session:
            return {g.item_id: g.language for g in session.scalars(sa.select(LanguageGuess))}
    finally:
        engine.dispose()


def report(url: str) -> list[tuple[str, str, str]]:
    """Per item: its title, the status of its language-detection job (or
    `no job`) and the guess (or `-`); items without a finished job first."""
    engine = fulltext_jobs.create_engine(url)
    try:
        with Session(engine) as session:
            finished = sa.exists().where(
                FullTextRecord.item_id == Item.id,
                FullTextRecord.destination == DESTINATION,
                FullTextRecord.status == "finished",
            )
            guesses = {g.item_id: g.language for g in session.scalars(sa.select(LanguageGuess))}
            rows = []
            for done in (False, True):
                query = sa.select(Item).where(finished if done else ~finished).order_by(Item.id)
                for item in session.scalars(query):
                    statuses = [job.status for job in item.jobs if job.destination == DESTINATION]
                    status = statuses[0] if statuses else "no job"
                    rows.append((item.title, status, guesses.get(item.id, "-")))
            return rows
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite:///collection.sqlite3")
    args = parser.parse_args(argv)
    try:
        run(args.database_url)
        rows = report(args.database_url)
    except JobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for title, status, language in rows:
        print(f"{title}\t{status}\t{language}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
