"""An app's alembic `env.py` beside fulltext-jobs: the app's own migrations
and version table, autogenerate blind to the ledger's objects, and the
ledger migrated first, on the same connection, in the same transaction.

Run from this folder: `alembic -x url=sqlite:///app.sqlite3 upgrade head`,
or `alembic -x url=... revision --autogenerate -m "..."`.
"""

from __future__ import annotations

from alembic import context
from models import Base  # the app's declarative models

import fulltext_jobs
from fulltext_jobs.sql.orm import include_name, include_object

config = context.config


def run_migrations_online() -> None:
    url = context.get_x_argument(as_dictionary=True)["url"]
    engine = fulltext_jobs.create_engine(url)
    with engine.begin() as connection:
        # The ledger's own revisions first (its version table is its own),
        # then the app's, whose tables may refer to the ledger's.
        fulltext_jobs.upgrade(connection)
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_schemas=connection.dialect.name == "postgresql",
            include_name=include_name,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
