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
from sqlalchemy.engine import URL, Connection, Engine

from fulltext_jobs._logs import quiet_info
from fulltext_jobs.engine import create_engine, store_error
from fulltext_jobs.errors import InvalidInput
from fulltext_jobs.schema import STATUS_VALUES, VERSION_TABLE

# alembic logs "setup plugin ..." seven times when it is first imported:
# noise at the start of every program that logs at INFO and imports us.
with quiet_info("alembic.runtime.plugins"):
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

__all__ = [
    "BASELINE_REVISION",
    "adopt",
    "current_revision",
    "downgrade",
    "head_revision",
    "migrations_dir",
    "upgrade",
]

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
        with (
            _connection(target) as connection,
            # alembic's "Context impl PostgresqlImpl." and "Will assume
            # transactional DDL.": a worker or command looks at the revision at
            # every start, and the lines say nothing to its user. Migrations
            # still log what they run.
            quiet_info("alembic.runtime.migration"),
        ):
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


# --- Adopting a database made by the Go original ---------------------------

#: The revision whose layout an adopted database is brought to before the
#: later revisions run as they do everywhere.
BASELINE_REVISION = "0001"

#: The original's `jobs.fulltext`: its columns in order, and their types as
#: PostgreSQL's catalogue names them.
_ORIGINAL_COLUMNS = (
    ("id", "uuid"),
    ("item_id", "text"),
    ("destination", "text"),
    ("started", "timestamptz"),
    ("finished", "timestamptz"),
    ("status", "job_statuses"),
)

# What revision 0001 has that the original's layout lacks; each statement is
# safe on the original's rows (no row is rewritten or dropped).
_TO_BASELINE = (
    "ALTER TABLE jobs.fulltext ALTER COLUMN status SET NOT NULL",
    # Existing rows are numbered in their physical order: the claim order
    # among jobs the original made is not defined anyway.
    "ALTER TABLE jobs.fulltext ADD COLUMN seq bigint GENERATED BY DEFAULT AS IDENTITY",
    "CREATE INDEX fulltext_ready_idx ON jobs.fulltext (destination, seq) WHERE status = 'ready'",
    "CREATE TABLE jobs.items (id text PRIMARY KEY)",
)


def adopt(target: Target) -> str | None:
    """Bring a PostgreSQL database laid out by the Go original under
    fulltext-jobs' migrations, keeping every row, and upgrade it to the
    head; return the revision it was at before (None if it was adopted now).

    The original's layout is `jobs.fulltext` with exactly its six columns
    (`id uuid`, `item_id text`, `destination text`, `started timestamptz`,
    `finished timestamptz`, `status job_statuses`), the `job_statuses` enum
    and a unique constraint on (item_id, destination). It is brought to the
    baseline revision's layout in place: `status` becomes NOT NULL, the
    enqueue sequence and the partial index of ready jobs are added, the
    unique constraint gets the name the library looks for, missing enum
    values are added, and `jobs.items` is created; the baseline is then
    stamped and the later revisions run, all in one transaction. The foreign
    key from `item_id` to the app's `items`, if there is one, is kept.

    A database fulltext-jobs already manages is only upgraded (adopting
    twice is harmless). Raises `InvalidInput`, changing nothing, for a
    database that is not PostgreSQL, has no `jobs.fulltext`, or whose
    table is not in the original's layout (the message says how), or has
    jobs without a status; `StoreError` if the database fails.
    """
    try:
        with _connection(target) as connection:
            if sa.inspect(connection).has_table(VERSION_TABLE):
                before = MigrationContext.configure(
                    connection, opts={"version_table": VERSION_TABLE}
                ).get_current_revision()
                command.upgrade(_config(connection), "head")
                return before
            _to_baseline(connection)
            config = _config(connection)
            command.stamp(config, BASELINE_REVISION)
            command.upgrade(config, "head")
            return None
    except CommandError as exc:
        msg = f"cannot adopt the database: {exc}"
        raise InvalidInput(msg) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise store_error(exc, "adopt") from exc


def _to_baseline(connection: Connection) -> None:
    """Check that the database is in the original's layout, and bring it to
    the baseline revision's; `InvalidInput` (before any change) if not."""
    unique = _check_original_layout(connection)
    labels = set(
        connection.execute(
            sa.text(
                "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                "WHERE t.typname = 'job_statuses'"
            )
        ).scalars()
    )
    for status in STATUS_VALUES:
        if status not in labels:
            connection.execute(sa.text(f"ALTER TYPE job_statuses ADD VALUE '{status}'"))
    if unique != "jobs_fulltext_unique":
        connection.execute(
            sa.text(
                f'ALTER TABLE jobs.fulltext RENAME CONSTRAINT "{unique}" TO jobs_fulltext_unique'
            )
        )
    for statement in _TO_BASELINE:
        connection.execute(sa.text(statement))


def _check_original_layout(connection: Connection) -> str:
    """Raise `InvalidInput` unless the database is in the original's layout;
    return the name of its unique constraint on (item_id, destination)."""
    if connection.dialect.name != "postgresql":
        msg = (
            "only PostgreSQL databases made by the original can be adopted, "
            f"not {connection.dialect.name}"
        )
        raise InvalidInput(msg)
    found = tuple(
        (str(name), str(kind))
        for name, kind in connection.execute(
            sa.text(
                "SELECT a.attname, t.typname FROM pg_attribute a "
                "JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE a.attrelid = to_regclass('jobs.fulltext') AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY a.attnum"
            )
        )
    )
    if not found:
        msg = (
            "the database has no jobs.fulltext table, so nothing to adopt; "
            "a new database is set up by upgrade"
        )
        raise InvalidInput(msg)
    if found != _ORIGINAL_COLUMNS:
        shown = ", ".join(f"{name} {kind}" for name, kind in found)
        wanted = ", ".join(f"{name} {kind}" for name, kind in _ORIGINAL_COLUMNS)
        msg = f"jobs.fulltext is not in the original's layout: it has ({shown}), not ({wanted})"
        raise InvalidInput(msg)
    if connection.execute(sa.text("SELECT to_regclass('jobs.items')")).scalar() is not None:
        msg = "jobs.items already exists: not the original's layout"
        raise InvalidInput(msg)
    unnamed = connection.execute(
        sa.text("SELECT count(*) FROM jobs.fulltext WHERE status IS NULL")
    ).scalar_one()
    if unnamed:
        msg = (
            f"{unnamed} job(s) in jobs.fulltext have no status; give them one "
            "(ready, say) before adopting"
        )
        raise InvalidInput(msg)
    unique = connection.execute(
        sa.text(
            "SELECT c.conname FROM pg_constraint c "
            "WHERE c.conrelid = 'jobs.fulltext'::regclass AND c.contype = 'u' "
            "AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a "
            "     WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey))"
            "    = ARRAY['destination', 'item_id']"
        )
    ).scalar()
    if unique is None:
        msg = "jobs.fulltext has no unique constraint on (item_id, destination)"
        raise InvalidInput(msg)
    return str(unique)
