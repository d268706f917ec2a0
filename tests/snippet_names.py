"""The names that documentation snippets may assume, and nothing else.

A Python snippet in README.md or docs/*.md runs as written (see
test_snippets.py). One that uses names of the reader's own app says so in
its first line, `# assumes: engine, Item`, and this module supplies each of
them; nowhere else does anything reach a snippet. The database is the one
`FULLTEXT_JOBS_DATABASE_URL` names (a fresh PostgreSQL database per
snippet): migrated, with two eligible items, `item-1` and `item-2`, each with
a ready job for `language-detection`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import fulltext_jobs
from fulltext_jobs import FullText, SqlAlchemyRepository

DESTINATION = "language-detection"
ITEM_IDS = ("item-1", "item-2")

TEXTS = {"item-1": "The river was high and the mill was closed.", "item-2": None}


class Base(DeclarativeBase):
    pass


class Item(Base):
    """The app's own item: eligible once its metadata (`api`) is fetched."""

    __tablename__ = "collection_items"
    id: Mapped[str] = mapped_column(primary_key=True)
    api: Mapped[dict[str, Any] | None] = mapped_column(
        sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    )


class LanguageGuess(Base):
    """The app's own result table."""

    __tablename__ = "language_guesses"
    item_id: Mapped[str] = mapped_column(primary_key=True)
    language: Mapped[str]


@functools.cache
def make_engine() -> sa.Engine:
    """The snippet's database, prepared as the module docstring says."""
    engine = fulltext_jobs.create_engine(os.environ[fulltext_jobs.DATABASE_URL_ENV])
    fulltext_jobs.upgrade(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(Item(id=item_id, api={"title": item_id}) for item_id in ITEM_IDS)
        session.commit()
    repo = SqlAlchemyRepository(engine)
    repo.add_items(ITEM_IDS)
    repo.enqueue_unqueued(DESTINATION)
    return engine


def load_full_text(item_id: str) -> str | None:
    """The item's full text, or None if it has none."""
    return TEXTS.get(item_id, "")


def guess(text: str | None) -> str:
    """A language guess."""
    return "en" if text and " the " in f" {text.lower()} " else "und"


STORED: dict[str, str] = {}


def store_language(item_id: str, language: str) -> None:
    """Keep a result (in memory: the snippet shows the call, not the store)."""
    STORED[item_id] = language


def detect_language(job: FullText) -> None:
    """A handler: guess the item's language and store it."""
    store_language(job.item_id, guess(load_full_text(job.item_id)))


def supply(name: str) -> object:
    """The value of an assumed `name`; KeyError for a name not offered."""
    return _OFFERED[name]()


_OFFERED: dict[str, Any] = {
    "engine": make_engine,
    "repo": lambda: SqlAlchemyRepository(make_engine()),
    "Item": lambda: Item,
    "LanguageGuess": lambda: LanguageGuess,
    "load_full_text": lambda: load_full_text,
    "guess": lambda: guess,
    "store_language": lambda: store_language,
    "detect_language": lambda: detect_language,
    "detect": lambda: detect_language,
}

#: Every name a snippet may assume.
SUPPLIED = frozenset(_OFFERED)
