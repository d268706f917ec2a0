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
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from fulltext_jobs._defaults import ORIGINAL_ELIGIBLE, ORIGINAL_ITEMS_TABLE
from fulltext_jobs._logs import quiet_info
from fulltext_jobs.errors import InvalidInput, SchemaNotMigrated, SchemaTooNew
from fulltext_jobs.sql.engine import create_engine
from fulltext_jobs.sql.errors import translated
from fulltext_jobs.sql.schema import (
    JOBS_SCHEMA,
    SCHEMA_REVISION,
    VERSION_TABLE,
    WINDOW_TABLE,
)

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "ADOPT_ADVICE",
    "ORIGINAL_ELIGIBLE",
    "ORIGINAL_ITEMS_TABLE",
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
    here = Path(__file__).resolve().parent.parent  # the package's folder
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    msg = f"fulltext-jobs' migrations are missing from {here}; reinstall the package"
    raise FileNotFoundError(msg)


@functools.cache
def _import_alembic() -> None:
    """Import alembic, on first use: only migrating, and reading the
    migration scripts, need it. Every repository and command reads the
    database's revision when it starts, and does so with one SELECT
    (`_revision_of`), so a worker process does not wait for alembic's
    import (a tenth of a second, with mako and pygments)."""
    # alembic logs "setup plugin ..." seven times when it is first imported:
    # noise in every program that logs at INFO.
    with quiet_info("alembic.runtime.plugins"):
        import alembic.command  # noqa: PLC0415
        import alembic.config  # noqa: PLC0415
        import alembic.script  # noqa: PLC0415
        import alembic.util  # noqa: F401, PLC0415


def _config(connection: Connection | None = None) -> Config:
    _import_alembic()
    from alembic.config import Config  # noqa: PLC0415 - see _import_alembic

    config = Config()
    # The ini parser treats % as interpolation; escape it in the path.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
        # Revision 0011 builds its indexes outside any transaction
        # (CREATE INDEX CONCURRENTLY) unless the revisions run in one the
        # caller began, which the caller asked to be one transaction.
        config.attributes[_IN_CALLERS_TRANSACTION] = connection.in_transaction()
    return config


#: The attribute through which revision 0011 learns that it runs in a
#: transaction the caller began (see `_config`).
_IN_CALLERS_TRANSACTION = "fulltext_jobs_in_callers_transaction"


@contextmanager
def _connection(target: Target, *, begin: bool = True) -> Iterator[Connection]:
    """A connection to `target`: the caller's own, as it is, or one of an
    engine, in a transaction that commits at the end; without `begin`, on
    PostgreSQL in none (alembic then begins and commits its own, which a
    revision may end early: see `upgrade`). SQLite's DDL is not
    transactional to alembic, which would begin none of its own."""
    if isinstance(target, Connection):
        yield target
        return
    engine = target if isinstance(target, Engine) else create_engine(target)
    try:
        begin = begin or engine.dialect.name != "postgresql"
        with engine.begin() if begin else engine.connect() as connection:
            yield connection
    finally:
        if engine is not target:
            engine.dispose()


def made_by_original(connection: Connection) -> bool:
    """Whether the database holds the Go original's `jobs.fulltext` and no
    fulltext-jobs revision: adopt it, do not upgrade it (the baseline
    revision would fail on the original's enum and table)."""
    return _revision_of(connection) is None and _has_jobs_table(connection)


def _has_jobs_table(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql" and sa.inspect(connection).has_table(
        "fulltext", schema=JOBS_SCHEMA
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
    """The revision in the version table, or None if there is no table or
    no row: what alembic's `MigrationContext.get_current_revision` reads
    (the table in the default schema), without importing alembic. Raises
    `SchemaNotMigrated` if the table holds several revisions, which
    fulltext-jobs' one line of migrations never writes."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    version_num = sa.column("version_num", sa.String)
    revisions = list(
        connection.execute(sa.select(version_num).select_from(sa.table(VERSION_TABLE))).scalars()
    )
    if len(revisions) > 1:
        msg = (
            f"the table {VERSION_TABLE} holds {len(revisions)} revisions "
            f"({', '.join(sorted(revisions))}); fulltext-jobs' migrations are one line, "
            "so the table was written by something else: repair it by hand"
        )
        raise SchemaNotMigrated(msg)
    return revisions[0] if revisions else None


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What a repository needs to know of its database, learnt once per
    engine: the revision it is at, and whether it was adopted from the Go
    original (whose creators may still be running beside ours)."""

    revision: str
    adopted: bool


def _adopted(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql" and sa.inspect(connection).has_table(
        "adoption", schema=JOBS_SCHEMA
    )


@functools.cache
def _older_revisions() -> frozenset[str]:
    """The revisions this package ships before `SCHEMA_REVISION`."""
    config = _config()
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - see _import_alembic

    script = ScriptDirectory.from_config(config)
    return frozenset(r.revision for r in script.walk_revisions() if r.revision != SCHEMA_REVISION)


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
        if _has_jobs_table(connection):  # no revision and the original's table
            msg = f"the database {where} was made by the Go original: {ADOPT_ADVICE}"
        else:
            msg = f"the database {where} has no fulltext-jobs schema: {UPGRADE_ADVICE}"
        raise SchemaNotMigrated(msg)
    if revision == SCHEMA_REVISION:
        return SchemaState(revision, _adopted(connection))
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
        return SchemaState(revision, _adopted(connection))
    needs = f"code of revision {oldest} or newer" if oldest else "a newer fulltext-jobs"
    msg = (
        f"the database {where} is at revision {revision}, which needs {needs}; this "
        f"version of fulltext-jobs is built for revision {SCHEMA_REVISION}: {LIBRARY_ADVICE}"
    )
    raise SchemaTooNew(msg)


@contextmanager
def _keeping_an_outer_alembic_context() -> Iterator[None]:
    """Let `upgrade(connection)` run inside an app's own alembic `env.py`.

    Alembic's `context` module is a proxy to the one environment running;
    running ours inside the app's would leave the app's `context` empty
    (`context.configure` then fails on None). The app's environment is put
    back when ours ends. This uses alembic's proxy internals, pinned by
    `tests/test_app_alembic.py`.
    """
    from alembic import context as alembic_context  # noqa: PLC0415 - only when nesting matters

    outer = getattr(alembic_context, "_proxy", None)
    try:
        yield
    finally:
        if outer is not None and getattr(alembic_context, "_proxy", None) is not outer:
            outer._install_proxy()  # noqa: SLF001 - see the docstring


def _check_revision(revision: object) -> str:
    """`revision` if it is a str that can name a revision (`head`, `base`,
    an id, a relative step such as `-1`); raise `InvalidInput` for anything
    else, which alembic would meet with an AssertionError or a TypeError."""
    if not isinstance(revision, str) or not revision.strip() or "\x00" in revision:
        msg = f"a revision must be a name such as 'head', 'base' or '0010', not {revision!r}"
        raise InvalidInput(msg)
    return revision


def _run(target: Target, action: str, revision: str) -> None:
    _check_revision(revision)
    _import_alembic()
    from alembic import command  # noqa: PLC0415 - see _import_alembic
    from alembic.util import CommandError  # noqa: PLC0415

    try:
        with (
            translated(action),
            _connection(target, begin=False) as connection,
            _keeping_an_outer_alembic_context(),
        ):
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


def upgrade(target: Target, revision: str = "head") -> None:
    """Migrate the database at `target` (a URL, an Engine or a Connection) up
    to `revision`, in one transaction, but for one step on PostgreSQL:
    revision 0011 builds its two indexes with `CREATE INDEX CONCURRENTLY`
    (which blocks no claim or save while it reads the jobs table), which
    PostgreSQL runs only outside a transaction; so the revisions before it
    are committed first, and 0011's own changes and those after it in a
    second transaction. If that build is interrupted, the database stays at
    the revision before 0011 and upgrading again finishes it. On a
    Connection the caller has begun a transaction on, everything runs in
    that transaction (the indexes built plainly, blocking writes to the
    jobs table while they are built), and commits or rolls back with it.

    Raises `InvalidInput` for a bad URL or target, or a revision that is
    not a str naming a known one,
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
    with translated("current_revision"), _connection(target) as connection:
        return _revision_of(connection)


def head_revision() -> str:
    """The newest revision this package ships."""
    config = _config()
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - see _import_alembic

    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        msg = "no migrations found"
        raise FileNotFoundError(msg)
    return head


# --- Adopting a database made by the Go original ---------------------------

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

#: The attribute through which `adopt` hands revision 0001 what it found.
_ADOPT_ATTRIBUTE = "fulltext_jobs_adopt"


def adopt(
    target: Target,
    *,
    items_table: str = ORIGINAL_ITEMS_TABLE,
    eligible: str = ORIGINAL_ELIGIBLE,
) -> str | None:
    """Bring a PostgreSQL database laid out by the Go original under
    fulltext-jobs' migrations, keeping every row, and upgrade it to the
    head; return the revision it was at before (None if it was adopted now).

    The original's layout is `jobs.fulltext` with exactly its six columns
    (`id uuid`, `item_id text`, `destination text`, `started timestamptz`,
    `finished timestamptz`, `status job_statuses`), the `job_statuses` enum
    and a unique constraint on (item_id, destination). The migrations then
    convert it in place (revision 0001 does, see its docstring), all in one
    transaction; the foreign key from `item_id` to the app's `items`, if
    there is one, is kept.

    The adopted database remembers where its items come from: the default
    items table (`jobs.fulltext_items`) becomes a view of `items_table`'s
    `id` (a text column) where `eligible` (an SQL condition on that table,
    the original's `api IS NOT NULL` by default) holds, so every repository
    and command built without `items=` reads the original's eligible items.
    Creators on an adopted database also take the original's advisory lock
    (see `SqlAlchemyRepository`'s `mixed_fleet`). Downgrading to `base`
    returns the database to the original's layout with every row.

    A database fulltext-jobs already manages is only upgraded (adopting
    twice is harmless). Raises `InvalidInput`, changing nothing, for a
    database that is not PostgreSQL, has no `jobs.fulltext`, whose table is
    not in the original's layout (the message says how), that has jobs
    without a status, or whose `items_table` has no text `id` column or
    rejects `eligible`; `StoreError` if the database fails.
    """
    _import_alembic()
    from alembic import command  # noqa: PLC0415 - see _import_alembic
    from alembic.util import CommandError  # noqa: PLC0415

    try:
        with translated("adopt"), _connection(target) as connection:
            before = _revision_of(connection)
            if before is not None:
                command.upgrade(_config(connection), "head")
                return before
            unique = _check_original_layout(connection)
            _check_item_source(connection, items_table, eligible)
            config = _config(connection)
            config.attributes[_ADOPT_ATTRIBUTE] = {
                "unique": unique,
                "items_table": items_table,
                "eligible": eligible,
            }
            command.upgrade(config, "head")
            return None
    except CommandError as exc:
        msg = f"cannot adopt the database: {exc}"
        raise InvalidInput(msg) from exc


def _check_item_source(connection: Connection, items_table: str, eligible: str) -> None:
    """Raise `InvalidInput` unless `items_table` has a text `id` column and
    `eligible` is a condition on it that PostgreSQL accepts."""
    kind = connection.execute(
        sa.text(
            "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = to_regclass(:table) AND a.attname = 'id' AND NOT a.attisdropped"
        ),
        {"table": items_table},
    ).scalar_one_or_none()
    if kind not in {"text", "varchar"}:
        found = "no such table or no id column" if kind is None else f"id is {kind}"
        msg = f"the items table {items_table!r} needs a text id column ({found})"
        raise InvalidInput(msg)
    try:
        with connection.begin_nested():
            connection.execute(
                sa.text(f"SELECT id FROM {items_table} WHERE {eligible} LIMIT 0")  # noqa: S608 - the operator's own table and condition, checked here
            )
    except sa.exc.DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0]
        msg = f"the condition {eligible!r} on {items_table!r} is not valid: {detail}"
        raise InvalidInput(msg) from None


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
    for ours in ("jobs.items", "jobs.fulltext_items"):  # before and since revision 0006
        if connection.execute(sa.text("SELECT to_regclass(:t)"), {"t": ours}).scalar():
            msg = f"{ours} already exists: not the original's layout"
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
