"""The triggers of migration 0018 on the writes the library does not make:
an upstream job ended by plain SQL, as the Go original's workers or an
app's own code end one, is recorded for its followers, whose producer then
queues the item; and on PostgreSQL a role granted the jobs table and
nothing else of ours can still end a job (the function runs as the role
that migrated).

The library's own paths are the contract suite's (`DependencyContract`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from harness import jobs_table_role

from fulltext_jobs import SqlAlchemyRepository

#: The jobs table's name as each dialect's SQL spells it.
TABLE = {"postgresql": "jobs.fulltext", "sqlite": "fulltext"}
DAY = timedelta(days=1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    fixture = "sqlite_engine" if request.param == "sqlite" else "clean_postgres_engine"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


def ready_pipeline(engine: sa.Engine) -> SqlAlchemyRepository:
    """Items a to c, `lang` following `fetch`, `fetch` queued and the
    follower's producer past its first sweep."""
    repo = SqlAlchemyRepository(engine)
    repo.add_items(["a", "b", "c"])
    repo.depend("lang", on="fetch", statuses=["finished", "skipped"])
    repo.enqueue_unqueued("fetch")
    assert repo.enqueue_new("lang", sweep_interval=DAY) == 0
    return repo


def test_an_end_written_by_plain_sql_is_recorded_and_followed(engine: sa.Engine):
    repo = ready_pipeline(engine)
    table = TABLE[engine.dialect.name]
    with engine.begin() as connection:
        # As the Go original finishes a job: status and timestamp, nothing else.
        connection.execute(
            sa.text(
                f"UPDATE {table} SET status = 'finished', finished = CURRENT_TIMESTAMP "  # noqa: S608 - a constant
                "WHERE item_id = 'a' AND destination = 'fetch'"
            )
        )
        # An ended job inserted whole, as a positional insert may.
        connection.execute(
            sa.text(
                f"INSERT INTO {table} (id, item_id, destination, status) "  # noqa: S608 - a constant
                "VALUES (:id, 'z', 'fetch', 'skipped')"
            ),
            {"id": uuid.uuid4() if engine.dialect.name == "postgresql" else uuid.uuid4().hex},
        )
        # A status that the dependency does not name records nothing.
        connection.execute(
            sa.text(
                f"UPDATE {table} SET status = 'failed' "  # noqa: S608 - a constant
                "WHERE item_id = 'b' AND destination = 'fetch'"
            )
        )
    repo.add_items(["z"])
    assert repo.enqueue_new("lang", sweep_interval=DAY) == 2
    assert sorted(job.item_id for job in repo.list_jobs("lang")) == ["a", "z"]


@pytest.mark.postgresql
def test_a_role_allowed_only_the_jobs_table_can_end_a_followed_job(
    clean_postgres_engine: sa.Engine,
):
    engine = clean_postgres_engine
    repo = ready_pipeline(engine)
    with jobs_table_role(engine, "ftj_go") as role:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"SET LOCAL ROLE {role}")
            connection.exec_driver_sql(
                "UPDATE jobs.fulltext SET status = 'finished', finished = now() "
                "WHERE item_id = 'c' AND destination = 'fetch'"
            )
        assert repo.enqueue_new("lang", sweep_interval=DAY) == 1
        assert [job.item_id for job in repo.list_jobs("lang")] == ["c"]
