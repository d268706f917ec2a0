"""The app's own models: a book, its jobs in the ledger as a read-only
relationship, and the app's result of the language-detection destination."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase, Mapped, foreign, mapped_column, relationship

from fulltext_jobs.sql.orm import FullTextRecord


class Base(DeclarativeBase):
    pass


class Book(Base):
    __tablename__ = "books"
    id: Mapped[str] = mapped_column(primary_key=True)
    title: Mapped[str]

    jobs: Mapped[list[FullTextRecord]] = relationship(
        FullTextRecord,
        primaryjoin=lambda: Book.id == foreign(FullTextRecord.item_id),
        viewonly=True,
    )


class LanguageGuess(Base):
    __tablename__ = "language_guesses"
    book_id: Mapped[str] = mapped_column(primary_key=True)
    language: Mapped[str]
