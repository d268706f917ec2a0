"""A PostgreSQL server of one's own: `initdb` in a temporary folder, started
with `pg_ctl` on a free port, stopped and deleted at the end
(`private_postgres`); and a hot standby of one (`private_standby`): a copy
made by `pg_basebackup -R`, streaming from it, which a test can cut off
and promote.

Used by the restart test (tests/test_server_restart.py), which restarts
and crashes it, the failover and replica tests (tests/test_failover.py,
tests/test_replica_reads.py), and by the soak benchmark (`benchmarks/soak.py
--private-server`), which imports it from here (it puts tests/ on its
path): the shared server is never touched by either.

`initdb` and `postgres` refuse to run as root: as root, they run as the
`postgres` user (`runuser`), who then owns the folder. Failures raise
`ServerError` with the command's output and the end of the server's log.
Standard library only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Where PostgreSQL's server binaries are.
PG_BIN = Path(os.environ.get("FULLTEXT_JOBS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))

PG_CTL_TIMEOUT_SECONDS = 60

#: Attempts at a free port: another program can take the one picked
#: between the pick and the server's start.
START_ATTEMPTS = 5


class ServerError(RuntimeError):
    """A command on the private server failed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_binaries() -> str | None:
    """Why no private server can be started here, or None if it can."""
    if (PG_BIN / "initdb").is_file() and (PG_BIN / "pg_ctl").is_file():
        return None
    return (
        f"PostgreSQL 15's initdb and pg_ctl are not in {PG_BIN}: install "
        "postgresql-15 (apt-get install postgresql-15) or point "
        "FULLTEXT_JOBS_TEST_PG_BIN at the folder that has them."
    )


@dataclass
class PrivatePostgres:
    """A PostgreSQL instance in `base` (its data in `base/data`, its log in
    `base/server.log`), on 127.0.0.1:`port`, with the server's defaults but
    for `settings` (`name=value`, each given as `-c`)."""

    base: Path
    port: int = 0
    settings: Sequence[str] = ()

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run(
            [*as_postgres, str(PG_BIN / program), *args],
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT_SECONDS,
            check=False,
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            raise ServerError(
                f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"server log:\n{self.log_tail()}"
            )

    def initdb(self) -> None:
        self.check(
            self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"),
            "initdb",
        )

    def try_start(self) -> subprocess.CompletedProcess[str]:
        options = " ".join(
            [
                f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1",
                *(f"-c {setting}" for setting in self.settings),
            ]
        )
        return self.run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w",
            "-t", str(PG_CTL_TIMEOUT_SECONDS), "start",
        )  # fmt: skip

    def start(self) -> None:
        self.check(self.try_start(), f"pg_ctl start on port {self.port}")

    def stop(self, mode: str = "fast") -> subprocess.CompletedProcess[str]:
        return self.run(
            "pg_ctl", "-D", str(self.data), "-m", mode, "-w",
            "-t", str(PG_CTL_TIMEOUT_SECONDS), "stop",
        )  # fmt: skip

    def restart(self, mode: str = "fast") -> None:
        self.check(
            self.run(
                "pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                "-t", str(PG_CTL_TIMEOUT_SECONDS), "-l", str(self.log), "restart",
            ),
            f"pg_ctl -m {mode} restart",
        )  # fmt: skip

    def promote(self) -> None:
        """End a standby's recovery: it becomes a primary (waits until it is)."""
        self.check(
            self.run(
                "pg_ctl", "-D", str(self.data), "-w", "-t", str(PG_CTL_TIMEOUT_SECONDS), "promote"
            ),
            "pg_ctl promote",
        )

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def kill_postmaster(self) -> None:
        """Last resort: this server's postmaster, by the pid in its folder."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 9)
        except (OSError, ValueError, IndexError):
            pass


@contextmanager
def private_postgres(prefix: str, settings: Sequence[str] = ()) -> Iterator[PrivatePostgres]:
    """A fresh, started PostgreSQL instance in a new temporary folder (named
    `prefix`...) on a free port; stopped (fast, else immediately, else
    killed) and its folder deleted however the block ends."""
    with _server_folder(prefix, settings) as server:
        server.initdb()
        _start_on_a_free_port(server)
        yield server


@contextmanager
def private_standby(
    primary: PrivatePostgres, prefix: str, name: str = "standby", settings: Sequence[str] = ()
) -> Iterator[PrivatePostgres]:
    """A hot standby of the running `primary`, in a new temporary folder on
    a free port: `pg_basebackup -R` (WAL streamed during the copy), then
    started streaming from it with `application_name` `name` (what
    `synchronous_standby_names` names). Stopped and deleted as
    `private_postgres` is."""
    with _server_folder(prefix, settings) as server:
        server.check(
            server.run(
                "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                "-D", str(server.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
                "-d", f"application_name={name}",
            ),
            "pg_basebackup",
        )  # fmt: skip
        _start_on_a_free_port(server)
        yield server


@contextmanager
def _server_folder(prefix: str, settings: Sequence[str]) -> Iterator[PrivatePostgres]:
    """A server (not started) in a new temporary folder, owned by the
    `postgres` user under root; stopped and the folder deleted however the
    block ends."""
    if (missing := missing_binaries()) is not None:
        raise ServerError(missing)
    base = Path(tempfile.mkdtemp(prefix=prefix))
    server = PrivatePostgres(base, settings=settings)
    try:
        if os.geteuid() == 0:
            shutil.chown(base, user="postgres", group="postgres")
        yield server
    finally:
        if server.running():
            stopped = server.stop("fast")
            if stopped.returncode != 0 and server.running():
                server.stop("immediate")
            if server.running():
                server.kill_postmaster()
        shutil.rmtree(base, ignore_errors=True)


def _start_on_a_free_port(server: PrivatePostgres) -> None:
    for _ in range(START_ATTEMPTS):
        server.port = free_port()
        started = server.try_start()
        if started.returncode == 0:
            return
    server.check(started, "pg_ctl start")
