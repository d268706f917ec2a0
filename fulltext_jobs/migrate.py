"""Migrations from Python: the same alembic revisions `alembic upgrade head`
runs from a checkout, shipped inside the package.

The revisions live in `migrations/` at the top of the repository; the wheel
carries them as `fulltext_jobs/_migrations`, so an installed package can
migrate a database without a checkout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL, Connection, Engine

from fulltext_jobs.engine import create_engine, store_error
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.schema import VERSION_TABLE

__all__ = ["current_revision", "downgrade", "head_revision", "migrations_dir", "upgrade"]

Target = str | URL | Engine | Connection


def migrations_dir() -> Path:
    """The folder of alembic's `env.py` and `versions/`: inside the installed
    package, or in the checkout this package was imported from."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    msg = f"fulltext-jobs' migrations are missing from {here}; reinstall the package"
    raise FileNotFoundError(msg)


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    # The ini parser treats % as interpolation; escape it in the path.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _connection(target: Target) -> Iterator[Connection]:
    if isinstance(target, Connection):
        yield target
        return
    engine = target if isinstance(target, Engine) else create_engine(target)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        if engine is not target:
            engine.dispose()


def _run(target: Target, action: str, revision: str) -> None:
    try:
        with _connection(target) as connection:
            getattr(command, action)(_config(connection), revision)
    except CommandError as exc:
        msg = f"cannot {action} to {revision!r}: {exc}"
        raise InvalidInput(msg) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise store_error(exc, action) from exc


def upgrade(target: Target, revision: str = "head") -> None:
    """Migrate the database at `target` (a URL, an Engine or a Connection) up
    to `revision`, in one transaction.

    Raises `InvalidInput` for a bad URL or an unknown revision and
    `StoreError` if the database fails.
    """
    _run(target, "upgrade", revision)


def downgrade(target: Target, revision: str = "base") -> None:
    """Migrate the database at `target` down to `revision`; `"base"` removes
    everything fulltext-jobs created, jobs included.

    Raises like `upgrade`.
    """
    _run(target, "downgrade", revision)


def current_revision(target: Target) -> str | None:
    """The revision the database at `target` is at, or None if fulltext-jobs'
    migrations have never run there."""
    try:
        with _connection(target) as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    except sa.exc.SQLAlchemyError as exc:
        raise store_error(exc, "current_revision") from exc


def head_revision() -> str:
    """The newest revision this package ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        msg = "no migrations found"
        raise FileNotFoundError(msg)
    return head
