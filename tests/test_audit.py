"""`Repository.audit`, `Repository.release_unleased` and `fulltext-jobs
audit`: each check sees a bad state built behind the port's back (SQL on
the tables, or the in-memory adapter's stored jobs), a clean ledger reports
nothing on every adapter, and the repair touches only what it names.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from harness import Backend, memory_backend
from typer.testing import CliRunner

import fulltext_jobs
from fulltext_jobs import (
    AsyncRepository,
    AuditCheck,
    AuditProblem,
    InMemoryRepository,
    InvalidInput,
    JobStatus,
)
from fulltext_jobs.audit import UNLEASED_ERROR, AuditSettings
from fulltext_jobs.cli import app, parse_duration
from fulltext_jobs.domain import utc
from fulltext_jobs.sql.schema import VERSION_TABLE, tables_for
from fulltext_jobs.sql.schema_audit import schema_problems

DEST = "lang"


def fill(backend: Backend) -> dict[str, uuid.UUID]:
    """Six items and their jobs in `DEST`, a clean ledger: one job each
    finished, failed, skipped, running (with its lease), ready after a
    release, and ready never claimed. Returns the ids of the first five,
    by status."""
    repo = backend.repo
    backend.add_items([f"item-{i}" for i in range(6)])
    assert repo.enqueue_unqueued(DEST) == 6
    finished, failed, skipped, running, released = repo.claim_ready(DEST, 5)
    finished.finish()
    failed.fail(error="boom")
    skipped.skip()
    released.release()
    repo.save_many([finished, failed, skipped, released])
    return {
        "finished": finished.id,
        "failed": failed.id,
        "skipped": skipped.id,
        "running": running.id,
        "ready": released.id,
    }


def tamper(backend: Backend, job_id: uuid.UUID, **values: Any) -> None:
    """Change the stored job behind the port: an UPDATE on the table, or,
    in memory, the stored copy itself."""
    if backend.engine is None:
        repo = backend.repo
        assert isinstance(repo, InMemoryRepository)
        stored = repo._jobs[job_id]
        for name, value in values.items():
            setattr(stored, name, value)
        return
    fulltext = tables_for(backend.engine.dialect.name).fulltext
    with backend.engine.begin() as connection:
        connection.execute(sa.update(fulltext).where(fulltext.c.id == job_id).values(**values))


def remove_item(backend: Backend, item_id: str) -> None:
    """Take the item out of the item source, as an app's cleanup would."""
    if backend.engine is None:
        repo = backend.repo
        assert isinstance(repo, InMemoryRepository)
        repo._item_set.discard(item_id)
        repo._items.remove(item_id)
        return
    items = tables_for(backend.engine.dialect.name).items
    with backend.engine.begin() as connection:
        connection.execute(sa.delete(items).where(items.c.id == item_id))


def test_a_clean_ledger_reports_nothing(backend: Backend) -> None:
    fill(backend)
    assert backend.repo.audit() == []
    assert backend.repo.audit(DEST) == []
    assert backend.repo.release_unleased(timedelta(seconds=1)) == []


def test_an_empty_ledger_reports_nothing(backend: Backend) -> None:
    assert backend.repo.audit() == []
    assert backend.repo.audit("nothing-here") == []


def test_a_recovery_by_retry_leaves_the_ledger_clean(clocked: Backend, clock: Any) -> None:
    # A worker's life of a job, by hand: each attempt fails and is retried
    # after a backoff until the last one fails for good; then the operator
    # retries it, and its attempts run to the limit again. A rescue to
    # ready (its reason recorded) and a skip with a reason are clean too.
    max_attempts = 3
    repo = clocked.repo
    clocked.add_items(["a", "b"])
    assert repo.enqueue_unqueued(DEST) == 2

    def attempts_to_the_limit() -> uuid.UUID:
        for attempt in range(1, max_attempts + 1):
            clock.advance(minutes=5)
            job = repo.get_ready_job(DEST)
            assert (job.item_id, job.attempts) == ("a", attempt)
            if attempt < max_attempts:
                job.release(clock.now, not_before=clock.now + timedelta(minutes=1), error="503")
            else:
                job.fail(clock.now, error="HTTPError: 503")
            repo.save_fulltext(job)
        return job.id

    failed = attempts_to_the_limit()
    assert repo.audit(max_attempts=max_attempts) == []
    assert repo.retry(DEST, statuses=[JobStatus.FAILED]) == 1
    assert repo.get_fulltext(failed).attempts == 0
    assert attempts_to_the_limit() == failed
    assert repo.audit(max_attempts=max_attempts) == []
    other = repo.get_ready_job(DEST)
    clock.advance(minutes=5)
    assert repo.rescue_expired(max_attempts=max_attempts) == 1
    assert repo.audit(max_attempts=max_attempts) == []
    other = repo.get_ready_job(DEST)
    other.skip(clock.now, error="no full text")
    repo.save_fulltext(other)
    assert repo.retry(DEST) == 2
    assert repo.audit(max_attempts=max_attempts) == []


NOW = utc()
NOW = utc()


# (check, which job of `fill`, what to change on it)
BAD_STATES: list[tuple[AuditCheck, str, dict[str, Any]]] = [
    (
        AuditCheck.RUNNING_WITHOUT_LEASE,
        "running",
        {"claim_token": None, "lease_expires": None},
    ),
    (
        AuditCheck.LEASE_EXPIRED_UNRESCUED,
        "running",
        {"lease_expires": NOW - timedelta(hours=1)},
    ),
    (AuditCheck.FINISHED_BEFORE_STARTED, "finished", {"finished": NOW - timedelta(days=1)}),
    (AuditCheck.STARTED_IN_FUTURE, "running", {"started": NOW + timedelta(days=1)}),
    (AuditCheck.TERMINAL_WITHOUT_FINISHED, "failed", {"finished": None}),
    (AuditCheck.TERMINAL_WITHOUT_FINISHED, "skipped", {"finished": None}),
    (AuditCheck.ATTEMPTS_ABOVE_MAX, "failed", {"attempts": 6}),
    (AuditCheck.READY_WITH_CLAIM_TOKEN, "ready", {"claim_token": uuid.uuid4()}),
]


@pytest.mark.parametrize(
    ("check", "which", "values"),
    BAD_STATES,
    ids=[f"{check.value}-{which}" for check, which, _ in BAD_STATES],
)
def test_each_check_sees_its_bad_state(
    backend: Backend, check: AuditCheck, which: str, values: dict[str, Any]
) -> None:
    job_id = fill(backend)[which]
    tamper(backend, job_id, **values)
    [problem] = backend.repo.audit()
    assert (problem.destination, problem.check, problem.count) == (DEST, check, 1)
    assert problem.examples == (job_id,)
    assert backend.repo.audit("other") == []


def test_a_missing_item_is_reported_not_deleted(backend: Backend) -> None:
    job = backend.repo.get_fulltext(fill(backend)["finished"])
    remove_item(backend, job.item_id)
    [problem] = backend.repo.audit()
    assert (problem.check, problem.count, problem.examples) == (
        AuditCheck.ITEM_MISSING,
        1,
        (job.id,),
    )
    assert backend.repo.get_fulltext(job.id) == job


def test_an_item_no_longer_eligible_is_reported(backend: Backend) -> None:
    backend.set_api("a", {"title": "x"})
    repo = backend.app_repo
    job = repo.create_job_for_unqueued(DEST)
    assert repo.audit() == []
    if backend.engine is None:
        # The in-memory source holds eligible ids only: leaving it is
        # how an item stops being eligible there.
        assert isinstance(repo, InMemoryRepository)
        repo._item_set.discard("a")
        repo._items.remove("a")
    else:
        backend.set_api("a", None)
    [problem] = repo.audit()
    assert (problem.check, problem.examples) == (AuditCheck.ITEM_MISSING, (job.id,))


def test_running_without_lease_reports_the_oldest_and_release_returns_them(
    backend: Backend,
) -> None:
    ids = fill(backend)
    old_job, young_job = ids["running"], ids["ready"]
    two_days, one_minute = NOW - timedelta(days=2), NOW - timedelta(minutes=1)
    for job_id, started in ((old_job, two_days), (young_job, one_minute)):
        # What the Go original's claim leaves: running, started, no lease.
        tamper(
            backend,
            job_id,
            status=JobStatus.RUNNING,
            claim_token=None,
            lease_expires=None,
            started=started,
        )
    [problem] = backend.repo.audit()
    assert problem.check is AuditCheck.RUNNING_WITHOUT_LEASE
    assert problem.count == 2
    assert set(problem.examples) == {old_job, young_job}
    assert problem.oldest_started == two_days
    before = backend.repo.get_fulltext(old_job)

    assert backend.repo.release_unleased(timedelta(hours=1), "other") == []
    assert backend.repo.release_unleased(timedelta(hours=1)) == [old_job]

    released = backend.repo.get_fulltext(old_job)
    assert released.status is JobStatus.READY
    assert (released.started, released.claim_token, released.lease_expires) == (None, None, None)
    assert released.attempts == before.attempts + 1
    assert released.last_error == UNLEASED_ERROR
    assert released.version == before.version + 1
    # The young one stays; the released one is claimable again.
    [left] = backend.repo.audit()
    assert (left.count, left.examples) == (1, (young_job,))
    assert backend.repo.get_fulltext(young_job).status is JobStatus.RUNNING
    assert backend.repo.get_ready_job(DEST).id == old_job


def test_release_leaves_leased_finished_and_undated_jobs_alone(backend: Backend) -> None:
    ids = fill(backend)
    old = NOW - timedelta(days=2)
    tamper(backend, ids["running"], started=old)  # with its lease
    tamper(backend, ids["finished"], started=old, finished=old + timedelta(seconds=1))
    tamper(backend, ids["ready"], status=JobStatus.RUNNING, started=None)  # age unknown
    assert backend.repo.release_unleased(timedelta(hours=1)) == []


def test_a_stale_copy_cannot_undo_a_release(backend: Backend) -> None:
    job_id = fill(backend)["running"]
    tamper(backend, job_id, lease_expires=None, started=NOW - timedelta(days=2))
    stale = backend.repo.get_fulltext(job_id)
    assert backend.repo.release_unleased(timedelta(hours=1)) == [job_id]
    stale.finish()
    with pytest.raises(fulltext_jobs.StaleJob):
        backend.repo.save_fulltext(stale)


def test_examples_are_capped_and_settings_matter() -> None:
    backend = memory_backend()
    ids = list(fill(backend).values())
    for job_id in ids:
        tamper(backend, job_id, attempts=7)
    [problem] = backend.repo.audit(examples=2)
    assert (problem.count, len(problem.examples)) == (5, 2)
    assert problem.examples == tuple(sorted(ids)[:2])
    assert backend.repo.audit(max_attempts=7) == []


@pytest.mark.parametrize(
    "settings",
    [
        {"max_attempts": 0},
        {"examples": 0},
        {"examples": 1001},
        {"rescue_after": -timedelta(seconds=1)},
        {"clock_tolerance": 5},
        {"rescue_after": timedelta(days=4000)},
    ],
)
def test_audit_checks_its_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        InMemoryRepository().audit(**settings)


@pytest.mark.parametrize("older_than", [timedelta(0), -timedelta(hours=1), 3600, None])
def test_release_checks_its_duration(older_than: object) -> None:
    with pytest.raises(InvalidInput):
        InMemoryRepository().release_unleased(older_than)  # type: ignore[arg-type]


def test_bad_timestamps_on_a_fixed_clock() -> None:
    """The tolerances on a clock the test holds: a start 4 minutes ahead is
    within the default 5, one 6 minutes ahead is not; a lease 4 minutes
    expired is rescue's business, one 6 minutes expired is reported."""
    start = datetime(2026, 11, 28, 12, 0, tzinfo=NOW.tzinfo)
    repo = InMemoryRepository(["a", "b"], clock=lambda: start)
    repo.enqueue_unqueued(DEST)
    a, b = repo.claim_ready(DEST, 2)
    backend = Backend("memory", repo, repo.add_items, repo, lambda *_: None)
    tamper(backend, a.id, started=start + timedelta(minutes=4))
    tamper(backend, b.id, lease_expires=start - timedelta(minutes=4))
    assert repo.audit() == []
    tamper(backend, a.id, started=start + timedelta(minutes=6))
    tamper(backend, b.id, lease_expires=start - timedelta(minutes=6))
    assert [(p.check, p.examples) for p in repo.audit()] == [
        (AuditCheck.LEASE_EXPIRED_UNRESCUED, (b.id,)),
        (AuditCheck.STARTED_IN_FUTURE, (a.id,)),
    ]
    assert repo.audit(rescue_after=timedelta(minutes=10), clock_tolerance=timedelta(hours=1)) == []


# --- rescue_interval, the old name of rescue_after ---------------------------------


def lease_expired_6_minutes_ago() -> tuple[InMemoryRepository, AsyncInMemory]:
    """A ledger on a fixed clock with one running job whose lease ran out
    6 minutes ago (reported by default, not with `rescue_after` of 10), and
    an async port over it."""
    start = datetime(2026, 11, 28, 12, 0, tzinfo=NOW.tzinfo)
    repo = InMemoryRepository(["a"], clock=lambda: start)
    repo.enqueue_unqueued(DEST)
    job = repo.get_ready_job(DEST)
    repo._jobs[job.id].lease_expires = start - timedelta(minutes=6)
    assert len(repo.audit()) == 1
    return repo, AsyncInMemory(repo)


class AsyncInMemory(AsyncRepository):
    """The async port over an in-memory repository: only its audit."""

    def __init__(self, repo: InMemoryRepository) -> None:
        self.repo = repo

    async def _audit(self, destination: str | None, settings: AuditSettings) -> list[AuditProblem]:
        return self.repo._audit(destination, settings)


AsyncInMemory.__abstractmethods__ = frozenset()  # type: ignore[attr-defined]


def test_rescue_interval_still_works_with_a_deprecation_warning() -> None:
    repo, async_repo = lease_expired_6_minutes_ago()
    late = timedelta(minutes=10)
    with pytest.warns(DeprecationWarning, match=r"rescue_after=") as warned:
        assert repo.audit(rescue_interval=late) == []
    # The warning points at the caller, not at the library.
    assert [w.filename for w in warned] == [__file__]

    async def audit_the_old_way() -> list[AuditProblem]:
        return await async_repo.audit(rescue_interval=late)

    with pytest.warns(DeprecationWarning, match=r"rescue_after=") as warned:
        assert asyncio.run(audit_the_old_way()) == []
    assert [w.filename for w in warned] == [__file__]
    # Checked as rescue_after is, under the new name.
    with (
        pytest.warns(DeprecationWarning, match=r"rescue_after="),
        pytest.raises(InvalidInput, match="rescue_after"),
    ):
        repo.audit(rescue_interval=-late)


def test_rescue_interval_and_rescue_after_together_are_refused() -> None:
    repo, async_repo = lease_expired_6_minutes_ago()
    both = {"rescue_after": timedelta(minutes=10), "rescue_interval": timedelta(minutes=10)}
    with pytest.raises(InvalidInput, match="rescue_interval is the old name of rescue_after"):
        repo.audit(**both)
    coroutine = async_repo.audit(**both)  # refused when awaited, as every check is
    with pytest.raises(InvalidInput, match="rescue_interval is the old name of rescue_after"):
        asyncio.run(coroutine)


# --- the command line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None})


@pytest.mark.postgresql
def test_done_when_on_postgresql(runner: CliRunner, clean_postgres_engine: sa.Engine) -> None:
    """An operator's case: the Go original's claim, its worker gone two
    days; reported (exit 1), fixed, then clean (exit 0)."""
    engine = clean_postgres_engine
    url = engine.url.render_as_string(hide_password=False)
    repo = fulltext_jobs.SqlAlchemyRepository(engine)
    repo.add_items(["a", "b"])
    repo.enqueue_unqueued(DEST)
    with engine.begin() as connection:
        job_id = connection.exec_driver_sql(
            "UPDATE jobs.fulltext SET status = 'running', started = now() - interval '2 days' "
            "WHERE item_id = 'a' RETURNING id"
        ).scalar_one()

    reported = runner.invoke(app, ["--database-url", url, "audit", "--json"])
    assert reported.exit_code == 1, (reported.stdout, reported.stderr)
    body = json.loads(reported.stdout)
    assert body["clean"] is False
    assert body["fixed"] is None
    [problem] = body["problems"]
    assert problem["destination"] == DEST
    assert problem["check"] == "running_without_lease"
    assert problem["count"] == 1
    assert problem["examples"] == [str(job_id)]
    assert datetime.fromisoformat(problem["oldest_started"]) < utc() - timedelta(days=1)

    fixed = runner.invoke(
        app,
        ["--database-url", url, "audit", "--fix", "--running-without-lease-older-than", "1h"],
    )
    assert fixed.exit_code == 0, (fixed.stdout, fixed.stderr)
    assert "returned 1 running jobs without a lease to ready" in fixed.stdout
    assert str(job_id) in fixed.stdout
    assert repo.get_fulltext(job_id).status is JobStatus.READY

    clean = runner.invoke(app, ["--database-url", url, "audit", "--json"])
    assert clean.exit_code == 0, (clean.stdout, clean.stderr)
    body = json.loads(clean.stdout)
    assert body.pop("health")["store"] == "postgresql"
    assert body == {
        "clean": True,
        "problems": [],
        "schema": [],
        "fixed": None,
        "warnings": [],
    }


def test_cli_rescue_and_text_output(runner: CliRunner, sqlite_template: Any) -> None:
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = fulltext_jobs.SqlAlchemyRepository(engine)
        repo.add_items(["a"])
        repo.enqueue_unqueued(DEST)
        job = repo.get_ready_job(DEST)
        fulltext = tables_for("sqlite").fulltext
        with engine.begin() as connection:
            connection.execute(sa.update(fulltext).values(lease_expires=utc() - timedelta(hours=2)))
        text = runner.invoke(app, ["--database-url", url, "audit"])
        assert text.exit_code == 1, (text.stdout, text.stderr)
        assert "lease_expired_unrescued" in text.stdout
        assert str(job.id) in text.stdout

        rescued = runner.invoke(
            app, ["--database-url", url, "audit", "--fix", "--rescue", "--json"]
        )
        assert rescued.exit_code == 0, (rescued.stdout, rescued.stderr)
        body = json.loads(rescued.stdout)
        assert body.pop("health")["store"] == "sqlite"
        assert body == {
            "clean": True,
            "problems": [],
            "schema": [],
            "fixed": {"rescued": [str(job.id)]},
            "warnings": [],
        }
        assert repo.get_fulltext(job.id).status is JobStatus.READY
        # And as text: what the repair changed, by id.
        with engine.begin() as connection:
            connection.execute(
                sa.update(fulltext).values(
                    status="running", lease_expires=utc() - timedelta(hours=2)
                )
            )
        text = runner.invoke(app, ["--database-url", url, "audit", "--fix", "--rescue"])
        assert text.exit_code == 0, (text.stdout, text.stderr)
        assert f"rescued 1 expired jobs\n  {job.id}\n" in text.stdout
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "args",
    [
        ["--fix"],
        ["--rescue"],
        ["--running-without-lease-older-than", "1h"],
        ["--fix", "--running-without-lease-older-than", "an hour"],
        ["--rescue-after", "5"],
        ["--rescue-interval", "5"],
        ["--rescue-after", "10m", "--rescue-interval", "10m"],
    ],
)
def test_cli_usage_errors_exit_2(runner: CliRunner, sqlite_template: Any, args: list[str]) -> None:
    url = sqlite_template.fresh_url()
    result = runner.invoke(app, ["--database-url", url, "audit", *args])
    assert result.exit_code == 2, (result.stdout, result.stderr)


def test_cli_rescue_interval_is_the_old_name_of_rescue_after(
    runner: CliRunner, sqlite_template: Any
) -> None:
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = fulltext_jobs.SqlAlchemyRepository(engine)
        repo.add_items(["a"])
        repo.enqueue_unqueued(DEST)
        repo.get_ready_job(DEST)
        fulltext = tables_for("sqlite").fulltext
        with engine.begin() as connection:
            connection.execute(sa.update(fulltext).values(lease_expires=utc() - timedelta(hours=2)))
    finally:
        engine.dispose()
    audit = ["--database-url", url, "audit", "--json"]
    assert runner.invoke(app, audit).exit_code == 1
    new = runner.invoke(app, [*audit, "--rescue-after", "3h"])
    assert (new.exit_code, new.stderr) == (0, ""), (new.stdout, new.stderr)
    old = runner.invoke(app, [*audit, "--rescue-interval", "3h"])
    assert old.exit_code == 0, (old.stdout, old.stderr)
    assert old.stdout == new.stdout
    assert old.stderr.startswith("warning: --rescue-interval is deprecated; use --rescue-after")
    assert runner.invoke(app, [*audit, "--rescue-interval", "1h"]).exit_code == 1
    both = runner.invoke(app, [*audit, "--rescue-after", "3h", "--rescue-interval", "3h"])
    assert both.exit_code == 2
    assert "give --rescue-after only" in " ".join(both.stderr.replace("│", " ").split())
    shown = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "200"})
    assert "--rescue-after" in shown.stdout
    assert "--rescue-interval" not in shown.stdout


def test_cli_errors_exit_2(runner: CliRunner, tmp_path: Any, sqlite_template: Any) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.sqlite3'}"
    result = runner.invoke(app, ["--database-url", missing, "audit"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ")
    # A typo'd destination is an error, not a clean report.
    result = runner.invoke(app, ["--database-url", sqlite_template.fresh_url(), "audit", "lnag"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ")
    assert "lnag" in result.stderr


# --- schema drift -------------------------------------------------------------------


def test_the_migrations_schema_shows_no_drift(
    clean_postgres_engine: sa.Engine, sqlite_engine: sa.Engine
) -> None:
    """The expected definitions are what the migrations make, as each
    database prints them."""
    for engine in (clean_postgres_engine, sqlite_engine):
        with engine.connect() as connection:
            assert schema_problems(connection) == [], engine.dialect.name


@pytest.mark.postgresql
def test_schema_drift_on_postgresql(runner: CliRunner, fresh_postgres_url: str) -> None:
    fulltext_jobs.upgrade(fresh_postgres_url)
    engine = fulltext_jobs.create_engine(fresh_postgres_url)
    try:
        with engine.begin() as connection:
            for statement in (
                "ALTER TABLE jobs.fulltext DROP CONSTRAINT jobs_fulltext_unique",
                "DROP INDEX jobs.fulltext_running_idx",
                "DROP INDEX jobs.fulltext_ready_idx",
                "CREATE INDEX fulltext_ready_idx ON jobs.fulltext (destination, seq)",
                "DROP TRIGGER fulltext_count_write ON jobs.fulltext",
            ):
                connection.exec_driver_sql(statement)
        with engine.connect() as connection:
            found = [(p.kind, p.name, p.problem) for p in schema_problems(connection)]
        assert found == [
            ("constraint", "jobs_fulltext_unique", "missing"),
            ("index", "fulltext_ready_idx", "changed"),
            ("index", "fulltext_running_idx", "missing"),
            ("trigger", "fulltext_count_write", "missing"),
        ]
        result = runner.invoke(app, ["--database-url", fresh_postgres_url, "audit", "--json"])
        assert result.exit_code == 1, (result.stdout, result.stderr)
        body = json.loads(result.stdout)
        assert body["clean"] is False
        assert body["problems"] == []
        [unique, ready, *_] = body["schema"]
        assert unique == {
            "kind": "constraint",
            "name": "jobs_fulltext_unique",
            "problem": "missing",
            "expected": "UNIQUE (item_id, destination)",
            "found": None,
        }
        assert ready["found"] == (
            "CREATE INDEX fulltext_ready_idx ON jobs.fulltext USING btree (destination, seq)"
        )
        # The unique pair made again, in the other order: changed.
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "ALTER TABLE jobs.fulltext ADD CONSTRAINT jobs_fulltext_unique "
                "UNIQUE (destination, item_id)"
            )
            assert ("constraint", "jobs_fulltext_unique", "changed") in [
                (p.kind, p.name, p.problem) for p in schema_problems(connection)
            ]
    finally:
        engine.dispose()


@pytest.mark.postgresql
def test_a_revision_outside_the_window_is_reported(
    runner: CliRunner, fresh_postgres_url: str
) -> None:
    fulltext_jobs.upgrade(fresh_postgres_url)
    engine = fulltext_jobs.create_engine(fresh_postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0005'"))  # noqa: S608 - a constant
    finally:
        engine.dispose()
    result = runner.invoke(app, ["--database-url", fresh_postgres_url, "audit", "--json"])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    [problem] = json.loads(result.stdout)["schema"]
    assert (problem["kind"], problem["problem"]) == ("revision", "outside_window")
    assert "0005" in problem["found"]
    text = runner.invoke(app, ["--database-url", fresh_postgres_url, "audit"])
    assert text.exit_code == 1
    assert text.stdout.startswith("schema: revision alembic_version: outside_window")


def test_schema_drift_on_sqlite(runner: CliRunner, sqlite_template: Any) -> None:
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP INDEX fulltext_running_idx")
            connection.exec_driver_sql("DROP TRIGGER fulltext_seq")
        with engine.connect() as connection:
            found = [(p.kind, p.name, p.problem) for p in schema_problems(connection)]
    finally:
        engine.dispose()
    assert found == [
        ("index", "fulltext_running_idx", "missing"),
        ("trigger", "fulltext_seq", "missing"),
    ]
    result = runner.invoke(app, ["--database-url", url, "audit"])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "schema: index fulltext_running_idx: missing" in result.stdout


def test_schema_drift_on_sqlite_sees_a_changed_index_and_trigger_but_not_spelling(
    sqlite_template: Any,
) -> None:
    url = sqlite_template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    try:
        with engine.begin() as connection:
            # Spelled otherwise, the same: no drift.
            connection.exec_driver_sql("DROP INDEX fulltext_ready_idx")
            connection.exec_driver_sql(
                'create index "fulltext_ready_idx" on "fulltext"(destination,seq) '
                "where status='ready'"
            )
        with engine.connect() as connection:
            assert schema_problems(connection) == []
        with engine.begin() as connection:
            # Changed: claims would scan for the wrong status; writes uncounted.
            connection.exec_driver_sql("DROP INDEX fulltext_ready_idx")
            connection.exec_driver_sql(
                "CREATE INDEX fulltext_ready_idx ON fulltext (destination, seq) "
                "WHERE status = 'running'"
            )
            connection.exec_driver_sql("DROP TRIGGER fulltext_count_write")
            connection.exec_driver_sql(
                "CREATE TRIGGER fulltext_count_write AFTER UPDATE OF status ON fulltext "
                "BEGIN SELECT 1; END"
            )
        with engine.connect() as connection:
            found = [(p.kind, p.name, p.problem) for p in schema_problems(connection)]
    finally:
        engine.dispose()
    assert found == [
        ("index", "fulltext_ready_idx", "changed"),
        ("trigger", "fulltext_count_write", "changed"),
    ]
