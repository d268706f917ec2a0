"""Reads from a replica: `stats`, `jobs`, `audit` and the dashboard's
`/metrics` with `--read-url` (or `FULLTEXT_JOBS_READ_URL`) read a hot
standby and label their figures with its replay lag, while `retry`,
`rescue`, `audit --fix` and the API's writes go to the primary only.

A private primary with a small ledger and a hot standby of it
(tests/replication.py), made once for the module. The primary's URL given
beside the standby's is, in most tests, a port where nothing listens: a
read that went there would fail, so a passing read went to the replica.
The tests fail, never skip, without PostgreSQL 15's binaries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import dashboard_process, fetch
from replication import Pair, cut_off, replicated_ledger
from typer.testing import CliRunner, Result

import fulltext_jobs
from fulltext_jobs import SqlAlchemyRepository, StoreError
from fulltext_jobs.cli import app

DESTINATION = "replicated"
JOBS = 30

#: A PostgreSQL URL where nothing listens.
NOWHERE = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"

pytestmark = pytest.mark.slow


def fill(repo: SqlAlchemyRepository) -> None:
    """Of the ready jobs: 5 finished, 1 failed, 2 left running."""
    for n, job in enumerate(repo.claim_ready(DESTINATION, 8)):
        if n < 5:
            job.finish()
        elif n == 5:
            job.fail(error="broken")
        else:
            continue
        repo.save_fulltext(job)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with replicated_ledger("ftj-replica-", "replica", DESTINATION, JOBS, fill=fill) as made:
        made.wait_replayed()
        yield made


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={fulltext_jobs.DATABASE_URL_ENV: None, fulltext_jobs.READ_URL_ENV: None})


def invoke(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


def standby_url(pair: Pair) -> str:
    return pair.standby.url(pair.database)


def primary_url(pair: Pair) -> str:
    return pair.primary.url(pair.database)


def test_stats_reads_the_replica_and_labels_its_figures(runner: CliRunner, pair: Pair):
    done = invoke(runner, "--database-url", NOWHERE, "stats", "--read-url", standby_url(pair))
    assert done.exit_code == 0, (done.stdout, done.stderr)
    row = next(line for line in done.stdout.splitlines() if line.startswith(DESTINATION))
    assert row.split()[1:6] == ["22", "2", "5", "1", "0"], done.stdout
    label = done.stdout.splitlines()[-1]
    assert label.startswith("read from a replica, figures lag the primary: last replayed commit ")
    assert "all received WAL replayed, streaming from its primary" in label

    # JSON keeps its shape; the label goes to stderr.
    done = invoke(
        runner, "--database-url", NOWHERE, "stats", "--json", "--read-url", standby_url(pair)
    )
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)[0]["finished"] == 5
    assert done.stderr.startswith("note: read from a replica")

    # The environment variable, and the global option, do the same.
    done = invoke(
        runner,
        "--database-url",
        NOWHERE,
        "stats",
        DESTINATION,
        env={fulltext_jobs.READ_URL_ENV: standby_url(pair)},
    )
    assert done.exit_code == 0, done.stderr
    assert "read from a replica" in done.stdout
    done = invoke(runner, "--read-url", standby_url(pair), "--database-url", NOWHERE, "stats")
    assert done.exit_code == 0, done.stderr

    # Read as the database, the standby is still labelled; the primary not.
    done = invoke(runner, "--database-url", standby_url(pair), "stats")
    assert "read from a replica" in done.stdout
    done = invoke(runner, "--database-url", primary_url(pair), "stats")
    assert done.exit_code == 0
    assert "read from" not in done.stdout
    # A read URL that is a primary says that its figures are current.
    done = invoke(runner, "--database-url", NOWHERE, "stats", "--read-url", primary_url(pair))
    assert done.stdout.splitlines()[-1] == (
        "read from a primary (not in recovery): figures are current"
    )


def test_jobs_reads_the_replica_and_labels_its_figures(runner: CliRunner, pair: Pair):
    done = invoke(
        runner,
        "--database-url",
        NOWHERE,
        "jobs",
        DESTINATION,
        "--status",
        "failed",
        "--read-url",
        standby_url(pair),
    )
    assert done.exit_code == 0, (done.stdout, done.stderr)
    assert "broken" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("read from a replica")


def test_audit_reads_the_replica_and_says_what_it_cannot_tell(runner: CliRunner, pair: Pair):
    done = invoke(
        runner, "--database-url", NOWHERE, "audit", "--json", "--read-url", standby_url(pair)
    )
    assert done.exit_code == 0, (done.stdout, done.stderr)
    found = json.loads(done.stdout)
    assert found["source"]["replica"] is True
    assert found["source"]["receiving"] is True
    assert found["source"]["replay_pending_bytes"] == 0
    assert found["source"]["label"].startswith("read from a replica")
    # The jobs table's statistics are each server's own: not read there.
    assert found["health"]["table"] is None
    assert any("replica" in note for note in found["health"]["notes"])
    done = invoke(runner, "--database-url", NOWHERE, "audit", "--read-url", standby_url(pair))
    assert done.exit_code == 0, done.stdout
    assert done.stdout.splitlines()[-1].startswith("read from a replica")


def test_writes_never_go_to_the_read_url(runner: CliRunner, pair: Pair):
    env = {fulltext_jobs.READ_URL_ENV: standby_url(pair)}
    for command in (
        ["retry", DESTINATION],
        ["rescue", DESTINATION],
        ["audit", "--fix", "--rescue"],
        ["enqueue", DESTINATION],
        ["work", DESTINATION, "--handler", "tests.cli_handlers:slow", "--until-idle"],
    ):
        done = invoke(runner, "--database-url", NOWHERE, *command, env=env)
        assert done.exit_code in {1, 2}, (command, done.stdout, done.stderr)
        assert "127.0.0.1:1" in done.stderr or "Connection refused" in done.stderr, (
            command,
            done.stderr,
        )
    # Only the read commands have the option.
    done = invoke(runner, "retry", DESTINATION, "--read-url", standby_url(pair))
    assert done.exit_code == 2
    assert "No such option" in done.stderr
    # `audit --fix` reads the database it repairs, whatever the read URL.
    done = invoke(
        runner, "--database-url", primary_url(pair), "audit", "--fix", "--rescue", env=env
    )
    assert done.exit_code == 0, (done.stdout, done.stderr)
    assert "rescued 0 expired jobs" in done.stdout
    assert "replica" not in done.stdout


def test_a_bad_read_url_is_one_error_line(runner: CliRunner, pair: Pair):
    for url in ("nonsense://x", "postgresql+psycopg://postgres@127.0.0.1:1/nothing"):
        done = invoke(runner, "--database-url", primary_url(pair), "stats", "--read-url", url)
        assert done.exit_code == 1, done.stdout
        assert done.stderr.startswith("error: "), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_the_api_reads_the_replica_and_refuses_to_write_there(pair: Pair):
    source = fulltext_jobs.read_source(standby_url(pair))
    assert source.replica
    assert source.receiving is True
    assert source.replay_pending == 0
    assert source.last_replay_age is not None
    assert source.label().startswith("read from a replica")
    assert not fulltext_jobs.read_source(primary_url(pair)).replica
    assert not fulltext_jobs.read_source("sqlite:///nowhere.sqlite3").replica

    engine = fulltext_jobs.create_engine(standby_url(pair))
    try:
        repo = SqlAlchemyRepository(engine)
        assert {s.destination: s.jobs for s in repo.stats()} == {DESTINATION: JOBS}
        assert len(repo.list_jobs(DESTINATION)) == JOBS
        with pytest.raises(StoreError, match="read-only"):
            repo.retry(DESTINATION)
    finally:
        engine.dispose()


def test_the_dashboard_and_its_metrics_say_they_come_from_a_replica(pair: Pair, tmp_path: Path):
    args = ("--database-url", NOWHERE, "--read-url", standby_url(pair))
    with dashboard_process(tmp_path, *args) as (process, base):
        metrics = fetch(f"{base}metrics")
        page = fetch(base)
        assert process.poll() is None
    assert metrics.status == page.status == 200
    assert "fulltext_jobs_ledger_replica 1.0" in metrics.text
    assert "fulltext_jobs_ledger_replica_receiving 1.0" in metrics.text
    assert "fulltext_jobs_ledger_replica_replay_pending_bytes 0.0" in metrics.text
    assert "fulltext_jobs_ledger_replica_last_replay_age_seconds " in metrics.text
    assert f'fulltext_jobs_jobs{{destination="{DESTINATION}",status="finished"}} 5.0' in (
        metrics.text
    )
    assert 'data-source="replica"' in page.text


def test_the_label_shows_a_replica_cut_off_from_its_primary(pair: Pair, runner: CliRunner):
    """Last in the module: it stops the standby's WAL receiver. The replay
    age keeps growing (nothing is replayed), and the label says that the
    replica no longer receives."""
    cut_off(pair.standby)
    time.sleep(0.2)
    done = invoke(runner, "--database-url", NOWHERE, "stats", "--read-url", standby_url(pair))
    assert done.exit_code == 0, done.stderr
    assert "NOT receiving from a primary" in done.stdout.splitlines()[-1]
