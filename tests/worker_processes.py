"""What the fault tests (tests/test_server_restart.py, tests/test_failover.py)
share: worker processes, each with its log and its report, stopped by
SIGTERM within a bound, killed if need be; the bounded wait that fails as
soon as one of them ends early; and the trigger that records every finish
in the test's database."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: The bound of each wait: for progress, for an exit.
WAIT_SECONDS = 60.0

#: Every move of a job to `finished`, with the port of the server whose
#: transaction made it (the old primary's or the new one's).
FINISHES_AUDIT = """
CREATE TABLE public.finishes (
    job_id uuid NOT NULL,
    port int NOT NULL DEFAULT inet_server_port(),
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION public.record_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.finishes (job_id) VALUES (NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER record_finish AFTER UPDATE OF status ON jobs.fulltext FOR EACH ROW
    WHEN (NEW.status = 'finished' AND OLD.status IS DISTINCT FROM 'finished')
    EXECUTE FUNCTION public.record_finish();
"""


@dataclass
class WorkerProcess:
    """A worker process, its log (stderr) and its report file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    report: Path
    returncode: int | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"


def start_workers(
    script: Path,
    layouts: Sequence[tuple[str, int, int]],
    folder: Path,
    arguments: Callable[[int, Path], list[str]],
) -> list[WorkerProcess]:
    """One process of `script` per (handler, claim batch size, claim
    threads) in `layouts`, its stderr in `folder`; each is run with
    `arguments(index, report file)`, then those three."""
    workers = []
    for index, (kind, batch, threads) in enumerate(layouts):
        name = f"worker {index} ({kind}, batch {batch}, {threads} thread(s))"
        log, report = folder / f"worker-{index}.log", folder / f"worker-{index}.json"
        command = [sys.executable, str(script), *arguments(index, report)]
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [*command, kind, str(batch), str(threads)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        workers.append(WorkerProcess(name, process, log, report))
    return workers


def stop_workers(workers: list[WorkerProcess]) -> None:
    """SIGTERM each worker, wait for it (bounded), and read its report."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.returncode = worker.process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
            pytest.fail(f"{worker.name} did not stop within {WAIT_SECONDS} s of SIGTERM")
        if worker.report.exists():
            worker.result = json.loads(worker.report.read_text())


def check_returned_normally(workers: list[WorkerProcess]) -> None:
    """Each worker's `run()` returned normally (on SIGTERM), exit status 0."""
    for worker in workers:
        assert worker.returncode == 0, f"{worker.name}: {worker.result}\n{worker.log_text()}"
        assert worker.result["error"] is None


def kill_leftovers(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def wait_for(check: Callable[[], bool], what: str, workers: list[WorkerProcess]) -> float:
    """Wait (bounded) until `check()`; return how long it took. Fails at
    once if a worker ended."""
    began = time.monotonic()
    while not check():
        ended = [w.name for w in workers if w.process.poll() is not None]
        if ended:
            pytest.fail(f"{what}: {ended} ended early:\n{workers[0].log_text()[-3000:]}")
        if time.monotonic() - began > WAIT_SECONDS:
            pytest.fail(f"{what}: not within {WAIT_SECONDS} s")
        time.sleep(0.05)
    return time.monotonic() - began
