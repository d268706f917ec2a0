"""Schema drift, for `fulltext-jobs audit`: the indexes, constraints and
triggers that the migrations create on the jobs table, missing or changed,
and the database's revision against the compatibility window.

Someone with psql can drop the unique pair (and every "exactly once"
promise with it), a partial index (claims fall back to sequential scans) or
a trigger (no wake-ups; uncounted writes; jobs' counts by status that
drift). Nothing else notices.

On PostgreSQL each object is compared with the server's own rendering of
what the migrations create (`pg_get_indexdef`, `pg_get_constraintdef`,
`pg_get_triggerdef`, as PostgreSQL 15 prints them; a test builds them from
the migrations, so a new migration that changes one fails there first). On
SQLite the catalog keeps each statement's text as its writer spelled it, so
the text is compared after normalising case, quoting and white space; the
unique pair is found by its columns, whatever its name.

The primary key is left out: an adopted database keeps the original's.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

import sqlalchemy as sa

from fulltext_jobs.errors import SchemaNotMigrated, SchemaTooNew
from fulltext_jobs.sql.migrate import check_schema

__all__ = ["EXPECTED_POSTGRESQL", "EXPECTED_SQLITE", "SchemaProblem", "schema_problems"]


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One object out of place: `kind` is `index`, `constraint`, `trigger`
    or `revision`; `problem` is `missing`, `changed` or, for the revision,
    `outside_window`; `expected` and `found` are definitions (None where
    there is nothing to show)."""

    kind: str
    name: str
    problem: str
    expected: str | None
    found: str | None


UNIQUE_PAIR: Final = "jobs_fulltext_unique"

#: (kind, name) -> the definition PostgreSQL prints for what the migrations make.
EXPECTED_POSTGRESQL: Final[dict[tuple[str, str], str]] = {
    ("constraint", UNIQUE_PAIR): "UNIQUE (item_id, destination)",
    ("index", "fulltext_ready_idx"): (
        "CREATE INDEX fulltext_ready_idx ON jobs.fulltext USING btree (destination, seq) "
        "WHERE (status = 'ready'::job_statuses)"
    ),
    ("index", "fulltext_due_idx"): (
        "CREATE INDEX fulltext_due_idx ON jobs.fulltext USING btree (destination, seq) "
        "WHERE ((status = 'ready'::job_statuses) AND (not_before IS NULL))"
    ),
    ("index", "fulltext_delayed_idx"): (
        "CREATE INDEX fulltext_delayed_idx ON jobs.fulltext USING btree "
        "(destination, not_before, seq) "
        "WHERE ((status = 'ready'::job_statuses) AND (not_before IS NOT NULL))"
    ),
    ("index", "fulltext_running_idx"): (
        "CREATE INDEX fulltext_running_idx ON jobs.fulltext USING btree (destination) "
        "WHERE (status = 'running'::job_statuses)"
    ),
    ("index", "fulltext_retryable_idx"): (
        "CREATE INDEX fulltext_retryable_idx ON jobs.fulltext USING btree (destination) "
        "WHERE (status = ANY (ARRAY['failed'::job_statuses, 'skipped'::job_statuses]))"
    ),
    ("trigger", "fulltext_ready_inserted"): (
        "CREATE TRIGGER fulltext_ready_inserted AFTER INSERT ON jobs.fulltext "
        "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT "
        "EXECUTE FUNCTION jobs.fulltext_notify_ready_inserted()"
    ),
    ("trigger", "fulltext_ready_updated"): (
        "CREATE TRIGGER fulltext_ready_updated AFTER UPDATE OF status ON jobs.fulltext "
        "FOR EACH ROW WHEN (((new.status = 'ready'::job_statuses) AND "
        "(old.status IS DISTINCT FROM 'ready'::job_statuses) AND (new.not_before IS NULL))) "
        "EXECUTE FUNCTION jobs.fulltext_notify_ready_updated()"
    ),
    ("trigger", "fulltext_count_write"): (
        "CREATE TRIGGER fulltext_count_write BEFORE UPDATE OF item_id, destination, started, "
        "finished, status, attempts, claim_token, last_error ON jobs.fulltext FOR EACH ROW "
        "WHEN ((new.version = old.version)) EXECUTE FUNCTION jobs.fulltext_count_write()"
    ),
    ("trigger", "fulltext_unblock_inserted"): (
        "CREATE TRIGGER fulltext_unblock_inserted AFTER INSERT ON jobs.fulltext FOR EACH ROW "
        "WHEN ((new.status = ANY (ARRAY['finished'::job_statuses, 'failed'::job_statuses, "
        "'skipped'::job_statuses]))) EXECUTE FUNCTION jobs.fulltext_unblock()"
    ),
    ("trigger", "fulltext_unblock_updated"): (
        "CREATE TRIGGER fulltext_unblock_updated AFTER UPDATE OF status ON jobs.fulltext "
        "FOR EACH ROW WHEN (((new.status = ANY (ARRAY['finished'::job_statuses, "
        "'failed'::job_statuses, 'skipped'::job_statuses])) AND "
        "(old.status IS DISTINCT FROM new.status))) EXECUTE FUNCTION jobs.fulltext_unblock()"
    ),
    # The jobs' counts by status (0019): a missing one leaves them wrong.
    ("index", "fulltext_ended_idx"): (
        "CREATE INDEX fulltext_ended_idx ON jobs.fulltext USING btree "
        "(finished, destination, status) WHERE (status = ANY (ARRAY['finished'::job_statuses, "
        "'skipped'::job_statuses, 'failed'::job_statuses]))"
    ),
    ("trigger", "fulltext_status_inserted"): (
        "CREATE TRIGGER fulltext_status_inserted AFTER INSERT ON jobs.fulltext "
        "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT "
        "EXECUTE FUNCTION jobs.fulltext_status_inserted()"
    ),
    ("trigger", "fulltext_status_updated"): (
        "CREATE TRIGGER fulltext_status_updated AFTER UPDATE ON jobs.fulltext "
        "REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION jobs.fulltext_status_updated()"
    ),
    ("trigger", "fulltext_status_deleted"): (
        "CREATE TRIGGER fulltext_status_deleted AFTER DELETE ON jobs.fulltext "
        "REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT "
        "EXECUTE FUNCTION jobs.fulltext_status_deleted()"
    ),
    ("trigger", "fulltext_status_truncated"): (
        "CREATE TRIGGER fulltext_status_truncated AFTER TRUNCATE ON jobs.fulltext "
        "FOR EACH STATEMENT EXECUTE FUNCTION jobs.fulltext_status_truncated()"
    ),
}

#: Whether anyone follows a job's destination: SQLite's WHEN of 0018.
_SQLITE_FOLLOWED: Final = (
    "EXISTS (SELECT 1 FROM fulltext_dependencies AS d WHERE d.upstream = NEW.destination)"
)
#: What SQLite's triggers of a job's end run (0018).
_SQLITE_UNBLOCK: Final = (
    "INSERT OR IGNORE INTO fulltext_unblocked (destination, item_id, upstream) "
    "SELECT d.destination, NEW.item_id, NEW.destination FROM fulltext_dependencies AS d "
    "WHERE d.upstream = NEW.destination AND d.status = NEW.status;"
)


def _sqlite_count(sign: str, row: str) -> str:
    """The upsert of SQLite's count triggers (0019) that adds `sign`1 to
    the count of the job `row` (NEW or OLD)."""
    return (
        "INSERT INTO fulltext_status_counts (destination, status, jobs) "  # noqa: S608 - constants
        f"VALUES ({row}.destination, {row}.status, {sign}1) "
        f"ON CONFLICT (destination, status) DO UPDATE SET jobs = jobs {sign} 1;"
    )


#: (kind, name) -> what the migrations make on SQLite: the statement (compared
#: after `_normalised`), or for the unique pair its columns.
EXPECTED_SQLITE: Final[dict[tuple[str, str], str]] = {
    ("constraint", UNIQUE_PAIR): "UNIQUE (item_id, destination)",
    ("index", "fulltext_ready_idx"): (
        "CREATE INDEX fulltext_ready_idx ON fulltext (destination, seq) WHERE status = 'ready'"
    ),
    ("index", "fulltext_due_idx"): (
        "CREATE INDEX fulltext_due_idx ON fulltext (destination, seq) "
        "WHERE status = 'ready' AND not_before IS NULL"
    ),
    ("index", "fulltext_delayed_idx"): (
        "CREATE INDEX fulltext_delayed_idx ON fulltext (destination, not_before, seq) "
        "WHERE status = 'ready' AND not_before IS NOT NULL"
    ),
    ("index", "fulltext_running_idx"): (
        "CREATE INDEX fulltext_running_idx ON fulltext (destination) WHERE status = 'running'"
    ),
    ("index", "fulltext_retryable_idx"): (
        "CREATE INDEX fulltext_retryable_idx ON fulltext (destination) "
        "WHERE status IN ('failed', 'skipped')"
    ),
    ("trigger", "fulltext_seq"): (
        "CREATE TRIGGER fulltext_seq AFTER INSERT ON fulltext FOR EACH ROW "
        "WHEN NEW.seq IS NULL BEGIN UPDATE fulltext SET seq = NEW.rowid "
        "WHERE rowid = NEW.rowid; END"
    ),
    ("trigger", "fulltext_count_write"): (
        "CREATE TRIGGER fulltext_count_write AFTER UPDATE OF item_id, destination, started, "
        "finished, status, attempts, claim_token, last_error ON fulltext FOR EACH ROW "
        "WHEN NEW.version = OLD.version BEGIN UPDATE fulltext SET version = OLD.version + 1 "
        "WHERE rowid = NEW.rowid; END"
    ),
    ("trigger", "fulltext_unblock_inserted"): (
        "CREATE TRIGGER fulltext_unblock_inserted AFTER INSERT ON fulltext FOR EACH ROW "
        "WHEN NEW.status IN ('finished', 'failed', 'skipped') AND " + _SQLITE_FOLLOWED + " "
        "BEGIN " + _SQLITE_UNBLOCK + " END"
    ),
    ("trigger", "fulltext_unblock_updated"): (
        "CREATE TRIGGER fulltext_unblock_updated AFTER UPDATE OF status ON fulltext FOR EACH ROW "
        "WHEN NEW.status IN ('finished', 'failed', 'skipped') AND OLD.status IS NOT NEW.status "
        "AND " + _SQLITE_FOLLOWED + " BEGIN " + _SQLITE_UNBLOCK + " END"
    ),
    # The jobs' counts by status (0019).
    ("index", "fulltext_ended_idx"): (
        "CREATE INDEX fulltext_ended_idx ON fulltext (finished, destination, status) "
        "WHERE status IN ('finished', 'skipped', 'failed')"
    ),
    ("trigger", "fulltext_status_inserted"): (
        "CREATE TRIGGER fulltext_status_inserted AFTER INSERT ON fulltext FOR EACH ROW BEGIN "
        f"{_sqlite_count('+', 'NEW')} END"
    ),
    ("trigger", "fulltext_status_updated"): (
        "CREATE TRIGGER fulltext_status_updated AFTER UPDATE OF destination, status ON fulltext "
        "FOR EACH ROW WHEN NEW.status IS NOT OLD.status OR NEW.destination IS NOT "
        f"OLD.destination BEGIN {_sqlite_count('-', 'OLD')} {_sqlite_count('+', 'NEW')} END"
    ),
    ("trigger", "fulltext_status_deleted"): (
        "CREATE TRIGGER fulltext_status_deleted AFTER DELETE ON fulltext FOR EACH ROW BEGIN "
        f"{_sqlite_count('-', 'OLD')} END"
    ),
}

_POSTGRESQL_FOUND: Final = sa.text(
    "SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = 'jobs.fulltext'::regclass AND contype IN ('u', 'x') "
    "UNION ALL "
    "SELECT 'index', i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
    "JOIN pg_class i ON i.oid = x.indexrelid "
    "WHERE x.indrelid = 'jobs.fulltext'::regclass "
    "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid) "
    "UNION ALL "
    "SELECT 'trigger', tgname, pg_get_triggerdef(oid) FROM pg_trigger "
    "WHERE tgrelid = 'jobs.fulltext'::regclass AND NOT tgisinternal"
)

_SQLITE_FOUND: Final = sa.text(
    "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'fulltext' "
    "AND type IN ('index', 'trigger') AND sql IS NOT NULL"
)


def _normalised(statement: str) -> str:
    """`statement` without the differences of spelling that SQLite keeps:
    case, identifier quotes, and white space (none around punctuation)."""
    text = " ".join(statement.lower().translate(str.maketrans("", "", '"`[]')).split())
    return re.sub(r"\s*([(),;=+])\s*", r"\1", text)


def schema_problems(connection: sa.Connection) -> list[SchemaProblem]:
    """What is out of place in the jobs table's schema on `connection`,
    sorted by kind then name; empty when it is as the migrations made it.

    A revision outside the compatibility window is one problem, and then
    nothing else is compared (the objects to expect are not known). Raises
    what the driver raises for a database it cannot read.
    """
    try:
        check_schema(connection, "being audited")
    except (SchemaNotMigrated, SchemaTooNew) as exc:
        return [SchemaProblem("revision", "alembic_version", "outside_window", None, str(exc))]
    if connection.dialect.name == "postgresql":
        expected = EXPECTED_POSTGRESQL
        found = {(kind, name): text for kind, name, text in connection.execute(_POSTGRESQL_FOUND)}
    else:
        expected = EXPECTED_SQLITE
        found = {
            (str(kind), str(name)): str(text)
            for kind, name, text in connection.execute(_SQLITE_FOUND)
        }
        found.update(_sqlite_unique_pairs(connection))
    same = _normalised if connection.dialect.name == "sqlite" else (lambda t: " ".join(t.split()))
    problems = []
    for key, definition in expected.items():
        there = found.get(key)
        if there is None:
            problems.append(SchemaProblem(*key, "missing", definition, None))
        elif same(there) != same(definition):
            problems.append(SchemaProblem(*key, "changed", definition, there))
    return sorted(problems, key=lambda p: (p.kind, p.name))


def _sqlite_unique_pairs(connection: sa.Connection) -> dict[tuple[str, str], str]:
    """The unique pair on SQLite, by the columns of a unique index over
    exactly (item_id, destination), whatever its name."""
    for row in connection.exec_driver_sql("PRAGMA index_list('fulltext')"):
        name, unique, partial = row[1], row[2], row[4]
        if not unique or partial:
            continue
        quoted = str(name).replace("'", "''")
        info = connection.exec_driver_sql(f"PRAGMA index_info('{quoted}')")
        columns = [column[2] for column in info]
        if columns == ["item_id", "destination"]:
            return {("constraint", UNIQUE_PAIR): "UNIQUE (item_id, destination)"}
    return {}
