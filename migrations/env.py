"""Alembic's entry point for fulltext-jobs' migrations.

The database comes, in this order, from a connection handed over by
`fulltext_jobs.upgrade` (`config.attributes["connection"]`), from
`-x url=...`, from the environment variable FULLTEXT_JOBS_DATABASE_URL, or
from `sqlalchemy.url` in the ini file.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from fulltext_jobs.sql.engine import DATABASE_URL_ENV, create_engine, parse_url
from fulltext_jobs.sql.schema import VERSION_TABLE, tables_for

config = context.config
if config.config_file_name is not None:
    # Run from the command line with alembic.ini: its logging settings.
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get(DATABASE_URL_ENV)
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        msg = f"no database URL: pass -x url=... or set {DATABASE_URL_ENV}"
        raise SystemExit(msg)
    return url


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=tables_for(connection.dialect.name).metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = parse_url(database_url())
    context.configure(
        url=url,
        target_metadata=tables_for(url.get_backend_name()).metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    handed_over = config.attributes.get("connection")
    if handed_over is not None:
        run_migrations(handed_over)
        return
    engine = create_engine(database_url())
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
