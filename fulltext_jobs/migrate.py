"""Migrations from Python: the same alembic revisions `alembic upgrade head`
runs from a checkout, shipped inside the package.

The revisions live in `migrations/` at the top of the repository; the wheel
carries them as `fulltext_jobs/_migrations`, so an installed package can
migrate a database without a checkout.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL, Connection, Engine

from fulltext_jobs.engine import create_engine, store_error
from fulltext_jobs.errors import InvalidInput, SchemaNotMigrated, SchemaTooNew
from fulltext_jobs.schema import (
    JOBS_SCHEMA,
    SCHEMA_REVISION,
    STATUS_VALUES,
    VERSION_TABLE,
    WINDOW_TABLE,
)

__all__ = [
    "ADOPT_ADVICE",
    "BASELINE_REVISION",
    "UPGRADE_ADVICE",
    "SchemaState",
    "adopt",
    "check_schema",
    "current_revision",
    "downgrade",
    "head_revision",
    "made_by_original",
    "migrations_dir",
    "upgrade",
]

Target = str | URL | Engine | Connection

#: What to do with a database made by the Go original.
ADOPT_ADVICE = "adopt it with `fulltext_jobs.adopt(url)` (`fulltext-jobs migrate adopt`)"

#: What to do with a database that is not migrated far enough.
UPGRADE_ADVICE = (
    "run `alembic upgrade head` from a checkout or `fulltext_jobs.upgrade(url)` from Python"
)

#: What to do with a library too old for the database.
LIBRARY_ADVICE = "upgrade fulltext-jobs (`pip install -U fulltext-jobs`), not the database"


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


def made_by_original(connection: Connection) -> bool:
    """Whether the database holds the Go original's `jobs.fulltext` and no
    fulltext-jobs revision: adopt it, do not upgrade it (the baseline
    revision would fail on the original's enum and table)."""
    return (
        connection.dialect.name == "postgresql"
        and _revision_of(connection) is None
        and sa.inspect(connection).has_table("fulltext", schema=JOBS_SCHEMA)
    )


def _made_by_original_leaving_no_transaction(connection: Connection) -> bool:
    """`made_by_original`, ending the transaction its reads began, if the
    connection had none: alembic then begins and commits its own, as it does
    on a connection handed over outside a transaction."""
    had_transaction = connection.in_transaction()
    try:
        return made_by_original(connection)
    finally:
        if not had_transaction and connection.in_transaction():
            connection.rollback()


def _revision_of(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What a repository needs to know of its database, learnt once per
    engine: the revision it is at."""

    revision: str


@functools.cache
def _older_revisions() -> frozenset[str]:
    """The revisions this package ships before `SCHEMA_REVISION`."""
    script = ScriptDirectory.from_config(_config())
    return frozenset(
        r.revision for r in script.walk_revisions() if r.revision != SCHEMA_REVISION
    )


def check_schema(connection: Connection, where: str) -> SchemaState:
    """Check that this version of the library can use the database on
    `connection` (described as `where` in messages).

    It can when the database is at `SCHEMA_REVISION`, or at a newer revision
    whose compatibility window (the table `WINDOW_TABLE`, written by the
    migrations) admits code of `SCHEMA_REVISION`: then the newer migrations
    were expand-only, and a rolling deploy's old workers keep working.

    Raises `SchemaNotMigrated` when the database is the one to upgrade (no
    schema, an older revision, or a database made by the Go original, which
    is to be adopted), and `SchemaTooNew` when the library is.
    """
    revision = _revision_of(connection)
    if revision is None:
        if made_by_original(connection):
            msg = f"the database {where} was made by the Go original: {ADOPT_ADVICE}"
        else:
            msg = f"the database {where} has no fulltext-jobs schema: {UPGRADE_ADVICE}"
        raise SchemaNotMigrated(msg)
    if revision == SCHEMA_REVISION:
        return SchemaState(revision)
    if revision in _older_revisions():
        msg = (
            f"the database {where} is at revision {revision}; this version of "
            f"fulltext-jobs needs revision {SCHEMA_REVISION}: {UPGRADE_ADVICE}"
        )
        raise SchemaNotMigrated(msg)
    oldest = None
    if sa.inspect(connection).has_table(WINDOW_TABLE):
        oldest = connection.execute(
            sa.text(f"SELECT oldest_code FROM {WINDOW_TABLE} WHERE revision = :r"),  # noqa: S608 - a constant
            {"r": revision},
        ).scalar_one_or_none()
    if oldest == SCHEMA_REVISION or oldest in _older_revisions():
        return SchemaState(revision)
    needs = f"code of revision {oldest} or newer" if oldest else "a newer fulltext-jobs"
    msg = (
        f"the database {where} is at revision {revision}, which needs {needs}; this "
        f"version of fulltext-jobs is built for revision {SCHEMA_REVISION}: {LIBRARY_ADVICE}"
    )
    raise SchemaTooNew(msg)


def _run(target: Target, action: str, revision: str) -> None:
    try:
        with _connection(target) as connection:
            if action == "upgrade" and _made_by_original_leaving_no_transaction(connection):
                msg = (
                    "the database was made by the Go original (jobs.fulltext without "
                    f"fulltext-jobs' revision table): {ADOPT_ADVICE} instead of upgrading it"
                )
                raise SchemaNotMigrated(msg)
            getattr(command, action)(_config(connection), revision)
    except CommandError as exc:
        msg = f"cannot {action} to {revision!r}: {exc}"
        raise InvalidInput(msg) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise store_error(exc, action) from exc


def upgrade(target: Target, revision: str = "head") -> None:
    """Migrate the database at `target` (a URL, an Engine or a Connection) up
    to `revision`, in one transaction.

    Raises `InvalidInput` for a bad URL or an unknown revision,
    `SchemaNotMigrated` for a database made by the Go original (which `adopt`
    brings under the migrations), and `StoreError` if the database fails.
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
