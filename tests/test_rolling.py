"""Rolling deploys, in processes, against PostgreSQL: workers of the released
code keep claiming and finishing while the database is upgraded under them
by an expand-only revision and workers of the next release start beside
them; with the new workers stopped, a downgrade leaves the old ones working;
and a contract revision is refused by old code, naming the library as the
side to upgrade.

The test's revisions (an expand and a contract one) live in a copy of the
migrations, written here; see `rolling_new_worker.py` for what "old" and
"new" code are and why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

import fulltext_jobs
from fulltext_jobs import JobStatus, SqlAlchemyRepository
from fulltext_jobs.sql.migrate import migrations_dir

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
DEST = "rolling"

#: How many jobs `feed_until_each_ran` keeps ready.
FEED = 4

EXPAND = '''
"""Test revision: a nullable column old code ignores (expand-only)."""
import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{head}"
branch_labels = None
depends_on = None
expand_only = True
oldest_code = "{oldest}"


def upgrade():
    op.add_column("fulltext", sa.Column("rolling_note", sa.Text), schema="jobs")
    op.execute(
        "INSERT INTO fulltext_jobs_schema_window VALUES ('9001', '{oldest}', true)"
    )


def downgrade():
    op.execute("DELETE FROM fulltext_jobs_schema_window WHERE revision = '9001'")
    op.drop_column("fulltext", "rolling_note", schema="jobs")
'''

CONTRACT = '''
"""Test revision: one that old code must not use (contract)."""
from alembic import op

revision = "9002"
down_revision = "9001"
branch_labels = None
depends_on = None
expand_only = False
oldest_code = "9002"


def upgrade():
    op.execute("INSERT INTO fulltext_jobs_schema_window VALUES ('9002', '9002', false)")


def downgrade():
    op.execute("DELETE FROM fulltext_jobs_schema_window WHERE revision = '9002'")
'''


@pytest.fixture
def test_migrations(tmp_path: Path) -> Config:
    """An alembic config over a copy of the migrations plus the test's two
    revisions."""
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder, ignore=shutil.ignore_patterns("__pycache__"))
    head = fulltext_jobs.head_revision()
    oldest = _declared_oldest(folder / "versions", head)
    (folder / "versions" / "9001_rolling_expand.py").write_text(
        EXPAND.format(head=head, oldest=oldest), encoding="utf-8"
    )
    (folder / "versions" / "9002_rolling_contract.py").write_text(CONTRACT, encoding="utf-8")
    config = Config()
    config.set_main_option("script_location", str(folder))
    return config


def _declared_oldest(versions: Path, head: str) -> str:
    [path] = versions.glob(f"{head}_*.py")
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)  # noqa: S102 - our own revision file
    return str(namespace["oldest_code"])


def migrate_to(config: Config, url: str, revision: str) -> None:
    engine = fulltext_jobs.create_engine(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            if revision < fulltext_jobs.current_revision(connection):  # type: ignore[operator]
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
    finally:
        config.attributes.pop("connection", None)
        engine.dispose()


class Workers:
    """`fulltext-jobs work` processes on one database, old and new."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[str]] = {}
        self.pids: dict[str, int] = {}

    def start(self, name: str, *, new_revision: str | None = None) -> None:
        args = ["--database-url", self.url, "work", DEST, "--handler", "cli_handlers:logged"]
        args += ["--concurrency", "2", "--json"]
        prefix = (
            [sys.executable, "-m", "fulltext_jobs"]
            if new_revision is None
            else [sys.executable, str(TESTS / "rolling_new_worker.py"), new_revision]
        )
        env = {k: v for k, v in os.environ.items() if k != fulltext_jobs.DATABASE_URL_ENV}
        env["ROLLING_LOG_DIR"] = str(self.logs)
        self.processes[name] = subprocess.Popen(
            [*prefix, *args],
            cwd=TESTS,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pids[name] = self.processes[name].pid

    def ran(self, name: str) -> int:
        """How many jobs the worker `name` has run."""
        log = self.logs / f"{self.pids[name]}.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def stop(self, name: str) -> str:
        """SIGTERM one worker; it must exit 0 within its shutdown timeout."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, (name, err)
        assert "Traceback" not in err, (name, err)
        return out

    def alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, (name, process.communicate(timeout=5))

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)


@pytest.fixture
def workers(fresh_postgres_url: str, tmp_path: Path) -> Iterator[Workers]:
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Workers(fresh_postgres_url, logs)
    try:
        yield running
    finally:
        running.kill_all()


def finished(repo: SqlAlchemyRepository) -> int:
    [row] = repo.stats(DEST)
    return row.counts[JobStatus.FINISHED]


def wait_for(repo: SqlAlchemyRepository, workers: Workers, count: int) -> None:
    deadline = time.monotonic() + 120
    while finished(repo) < count:
        workers.alive()
        assert time.monotonic() < deadline, f"{finished(repo)} of {count} finished in time"
        time.sleep(0.1)


def feed_until_each_ran(
    repo: SqlAlchemyRepository, workers: Workers, names: tuple[str, ...], *, up_to: int
) -> int:
    """Keep a few jobs ready, and no more, until each worker of `names` has
    run one; return how many jobs were queued (at most `up_to`)."""
    queued = 0
    deadline = time.monotonic() + 120
    while not all(workers.ran(name) > 0 for name in names):
        workers.alive()
        assert time.monotonic() < deadline, {name: workers.ran(name) for name in names}
        assert queued < up_to, f"{up_to} jobs ran before every new worker ran one"
        [row] = repo.stats(DEST)
        ready = row.counts[JobStatus.READY]
        if ready < FEED:
            queued += repo.enqueue_unqueued(DEST, limit=min(FEED - ready, up_to - queued))
        time.sleep(0.05)
    return queued


def runs_per_job(logs: Path) -> Counter[str]:
    return Counter(
        line for path in logs.glob("*.log") for line in path.read_text().splitlines() if line
    )


def test_rolling_upgrade_and_downgrade_keep_old_workers_working(
    fresh_postgres_url: str, workers: Workers, test_migrations: Config
):
    url = fresh_postgres_url
    head = fulltext_jobs.head_revision()
    fulltext_jobs.upgrade(url)
    engine = fulltext_jobs.create_engine(url)
    repo = SqlAlchemyRepository(engine)
    try:
        repo.add_items(f"item-{n:04}" for n in range(600))
        enqueued = repo.enqueue_unqueued(DEST, limit=200)
        workers.start("old-1")
        workers.start("old-2")
        wait_for(repo, workers, 50)

        # Deploy step 1: migrate the database under the running old workers.
        migrate_to(test_migrations, url, "9001")
        assert fulltext_jobs.current_revision(url) == "9001"
        # Step 2: new workers start, and an old one started now works too.
        # The running workers would drain what is queued before a new
        # process is up, so the rest comes a few jobs at a time until each
        # new one has run some.
        workers.start("new-1", new_revision="9001")
        workers.start("old-3")
        enqueued += feed_until_each_ran(repo, workers, ("new-1", "old-3"), up_to=400 - enqueued)
        repo.enqueue_unqueued(DEST, limit=400 - enqueued)
        wait_for(repo, workers, 400)

        # Roll back: new workers stopped, the database back by one revision.
        workers.stop("new-1")
        migrate_to(test_migrations, url, head)
        repo.enqueue_unqueued(DEST)  # 200 more, for the old workers alone
        wait_for(repo, workers, 600)
        for name in ("old-1", "old-2", "old-3"):
            workers.stop(name)
        runs = runs_per_job(workers.logs)
        assert len(runs) == 600
        assert set(runs.values()) == {1}  # every job ran exactly once
        [row] = repo.stats(DEST)
        assert row.counts[JobStatus.RUNNING] == row.counts[JobStatus.READY] == 0

        # A contract revision: old code refuses it, naming the library.
        migrate_to(test_migrations, url, "9002")
        for args in (["stats"], ["work", DEST, "--handler", "cli_handlers:logged"]):
            done = subprocess.run(
                [sys.executable, "-m", "fulltext_jobs", "--database-url", url, *args],
                cwd=TESTS,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 1, done.stderr
            [line] = done.stderr.splitlines()
            assert "is at revision 9002" in line
            assert "upgrade fulltext-jobs (`pip install -U fulltext-jobs`)" in line
    finally:
        engine.dispose()
