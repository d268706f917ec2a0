"""The read models in an app's Session, and an app's alembic autogenerate
beside the library's migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, foreign, mapped_column, relationship

import fulltext_jobs
from fulltext_jobs import JobStatus, SqlAlchemyRepository
from fulltext_jobs.sql.orm import FullTextRecord, ItemRecord, include_name, include_object


class AppBase(DeclarativeBase):
    pass


class Book(AppBase):
    """An app's own item model, with its jobs as a read-only relationship."""

    __tablename__ = "books"
    id: Mapped[str] = mapped_column(primary_key=True)
    title: Mapped[str]

    jobs: Mapped[list[FullTextRecord]] = relationship(
        FullTextRecord,
        primaryjoin=lambda: Book.id == foreign(FullTextRecord.item_id),
        viewonly=True,
        order_by=lambda: FullTextRecord.destination,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """A migrated database of each dialect in turn, with the app's table."""
    fixture = "tmp_sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    url = str(request.getfixturevalue(fixture))
    fulltext_jobs.upgrade(url)
    engine = fulltext_jobs.create_engine(url)
    AppBase.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_the_read_models_query_the_ledger_in_an_app_session(engine: sa.Engine):
    repo = SqlAlchemyRepository(engine)
    repo.add_items(["b-1", "b-2", "b-3"])
    repo.enqueue_unqueued("language")
    repo.enqueue_unqueued("quotes")
    done = repo.get_ready_job("language")
    done.finish()
    repo.save_fulltext(done)
    with Session(engine) as session:
        session.add_all(Book(id=i, title=f"Book {i}") for i in ("b-1", "b-2", "b-3"))
        session.commit()

        records = session.scalars(
            sa.select(FullTextRecord).where(FullTextRecord.destination == "language")
        ).all()
        assert sorted(r.item_id for r in records) == ["b-1", "b-2", "b-3"]
        entities = [record.to_entity() for record in records]

        # The app's model, its jobs through the relationship.
        book = session.get(Book, done.item_id)
        assert book is not None
        assert [(job.destination, job.status) for job in book.jobs] == [
            ("language", "finished"),
            ("quotes", "ready"),
        ]

        # Items without a finished job for a destination.
        finished = sa.exists().where(
            FullTextRecord.item_id == Book.id,
            FullTextRecord.destination == "language",
            FullTextRecord.status == JobStatus.FINISHED.value,
        )
        waiting = session.scalars(sa.select(Book.id).where(~finished).order_by(Book.id)).all()
        assert waiting == sorted({"b-1", "b-2", "b-3"} - {done.item_id})
        assert sorted(session.scalars(sa.select(ItemRecord.id))) == ["b-1", "b-2", "b-3"]
    # (After the session: on SQLite its transaction holds the write lock.)
    for entity in entities:
        assert entity == repo.get_fulltext(entity.id)


def autogenerate_diffs(engine: sa.Engine, *, hooks: bool) -> list[object]:
    """What the app's autogenerate would propose, with or without our hooks."""
    options: dict[str, object] = {"compare_type": True}
    if engine.dialect.name == "postgresql":
        options["include_schemas"] = True
    if hooks:
        options["include_object"] = include_object
        options["include_name"] = include_name
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts=options)
        return list(compare_metadata(context, AppBase.metadata))


def test_autogenerate_leaves_the_librarys_objects_alone(engine: sa.Engine):
    assert autogenerate_diffs(engine, hooks=True) == []
    # Without the hooks the app would be told to drop the ledger.
    unhooked = autogenerate_diffs(engine, hooks=False)
    removed = {diff[1].name for diff in unhooked if diff[0] == "remove_table"}  # type: ignore[index]
    assert {"fulltext", "enqueue_cursor", "fulltext_jobs_alembic_version"} <= removed
