"""A private primary with a ledger and a hot standby of it, for the tests
that read from a replica or fail over (tests/test_failover.py,
tests/test_replica_reads.py, tests/test_dashboard_browser.py); both
servers are private (tests/private_server.py), never the shared one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from private_server import PrivatePostgres, missing_binaries, private_postgres, private_standby
from sqlalchemy.pool import NullPool

import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository

#: What the standby calls itself to its primary (`synchronous_standby_names`).
STANDBY_NAME = "standby1"


@dataclass
class Pair:
    """A primary and its streaming standby, and the ledger's database on them."""

    primary: PrivatePostgres
    standby: PrivatePostgres
    database: str

    @property
    def multi_host_url(self) -> str:
        """Both servers in one URL; libpq connects to the one that takes writes."""
        return (
            f"postgresql+psycopg://postgres@/{self.database}?host=127.0.0.1:{self.primary.port}"
            f"&host=127.0.0.1:{self.standby.port}&target_session_attrs=read-write"
        )

    def wait_replayed(self, seconds: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written."""
        with engine_on(self.primary).connect() as connection:
            written = connection.exec_driver_sql("SELECT pg_current_wal_lsn()::text").scalar_one()
        standby = engine_on(self.standby)
        wait_until(
            lambda: scalar(
                standby, f"SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn"
            ) is True,
            "the standby caught up",
            seconds,
        )  # fmt: skip


def cut_off(standby: PrivatePostgres) -> None:
    """Stop `standby` receiving WAL (its `primary_conninfo` emptied, which
    a reload applies): from then on it keeps only what it had received."""
    engine = engine_on(standby)
    with engine.connect() as connection:
        connection.exec_driver_sql("ALTER SYSTEM SET primary_conninfo = ''")
        connection.exec_driver_sql("SELECT pg_reload_conf()")
    wait_until(
        lambda: scalar(engine, "SELECT count(*) FROM pg_stat_wal_receiver") == 0,
        "the standby cut off",
    )


def require_postgres_binaries() -> None:
    """Fail (never skip) if no private server can be started."""
    if (missing := missing_binaries()) is not None:
        pytest.fail(f"{missing} The replication tests start a primary and a standby of their own.")


def engine_on(server: PrivatePostgres, database: str = "postgres") -> sa.Engine:
    """An autocommit engine on `server` that keeps no connection."""
    return sa.create_engine(server.url(database), isolation_level="AUTOCOMMIT", poolclass=NullPool)


def scalar(engine: sa.Engine, sql: str) -> object:
    with engine.connect() as connection:
        return connection.exec_driver_sql(sql).scalar_one()


def wait_until(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > seconds:
            pytest.fail(f"{what}: not within {seconds} s")
        time.sleep(0.05)


@contextmanager
def replicated_ledger(
    prefix: str,
    database: str,
    destination: str,
    jobs: int,
    *,
    setup_sql: str = "",
    fill: Callable[[SqlAlchemyRepository], None] | None = None,
) -> Iterator[Pair]:
    """A private primary whose `database` holds a migrated ledger (with
    `setup_sql` run in it, then `jobs` items with a ready job each for
    `destination`), and a streaming hot standby of it named `STANDBY_NAME`;
    then `fill` is called on the primary (so the standby replays its
    writes). Both stopped and removed however the block ends."""
    require_postgres_binaries()
    with private_postgres(f"{prefix}primary-", settings=("fsync=off",)) as primary:
        with engine_on(primary).connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {database}")
        fulltext_jobs.upgrade(primary.url(database))
        engine = fulltext_jobs.create_engine(primary.url(database))
        try:
            if setup_sql:
                with engine.begin() as connection:
                    connection.exec_driver_sql(setup_sql)
            repo = SqlAlchemyRepository(engine)
            repo.add_items(f"item-{n:05}" for n in range(jobs))
            assert repo.enqueue_unqueued(destination) == jobs
            with private_standby(primary, f"{prefix}standby-", name=STANDBY_NAME) as standby:
                if fill is not None:
                    fill(repo)
                engine.dispose()
                yield Pair(primary, standby, database)
        finally:
            engine.dispose()
