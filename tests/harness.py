"""Backends for the tests: each adapter behind one small interface.

The contract suite, the Hypothesis state machine and the concurrency tests
all build their repositories here, so every adapter is exercised the same
way. PostgreSQL tests run in a database of their own, created here and
dropped afterwards; the shared server is never touched otherwise.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

import fulltext_jobs
from fulltext_jobs import (
    AsyncSqlAlchemyRepository,
    FullText,
    InMemoryRepository,
    ItemSource,
    JobStatus,
    Repository,
    SqlAlchemyRepository,
)
from fulltext_jobs.audit import AuditProblem
from fulltext_jobs.domain import (
    DEFAULT_LEASE,
    DEFAULT_SWEEP_INTERVAL,
    KEEP,
    Cancellation,
    DestinationControls,
    DestinationStats,
    Keep,
)
from fulltext_jobs.health import QueueHealth
from fulltext_jobs.pipeline import DEFAULT_ON_STATUSES, Dependency
from fulltext_jobs.rate_limit import RateTokens
from fulltext_jobs.retry import DEFAULT_MAX_ATTEMPTS
from fulltext_jobs.sql.floors import floors_of
from fulltext_jobs.sql.schema import tables_for
from fulltext_jobs.testing import FakeClock  # noqa: F401 - the tests take it from here

#: A database on the PostgreSQL server where tests may create and drop their own.
ADMIN_URL = os.environ.get(
    "FULLTEXT_JOBS_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

BACKENDS = ("memory", "sqlite", "postgresql", "sqlite-async", "postgresql-async")

Clock = Callable[[], datetime]

T = TypeVar("T")


def app_items_table(metadata: sa.MetaData) -> sa.Table:
    """An app's own item table, as in the original: eligible once `api` (the
    item's metadata) has been fetched."""
    return sa.Table(
        "app_items",
        metadata,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column(
            "api",
            # none_as_null: Python None must be SQL NULL (not JSON null) for
            # `api IS NOT NULL` to mean "metadata fetched".
            sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql"),
            nullable=True,
        ),
    )


APP_METADATA = sa.MetaData()
APP_ITEMS = app_items_table(APP_METADATA)


# --- PostgreSQL databases --------------------------------------------------


def admin_engine() -> sa.Engine:
    return sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")


def check_postgres_reachable() -> None:
    """Raise with a clear message if the server is not there."""
    engine = admin_engine()
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:
        msg = (
            f"PostgreSQL is not reachable at {ADMIN_URL} ({exc.orig}). Start it "
            "(bash scripts/test does; see docs/development.md) or point "
            "FULLTEXT_JOBS_TEST_ADMIN_URL at a server."
        )
        raise RuntimeError(msg) from None
    finally:
        engine.dispose()


@contextmanager
def postgres_database(prefix: str = "ftj_test") -> Iterator[str]:
    """A fresh, empty database on the test server; dropped on exit. Yields
    its URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = admin_engine()
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def jobs_table_role(engine: sa.Engine, prefix: str) -> Iterator[str]:
    """A PostgreSQL role granted the jobs table and nothing else of the
    ledger's, as the Go original's or an app's may be; dropped on exit.
    Yields its name, for `SET LOCAL ROLE`."""
    role = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role}")
        connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA jobs TO {role}")
        connection.exec_driver_sql(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON jobs.fulltext TO {role}"
        )
    try:
        yield role
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP OWNED BY {role}")
            connection.exec_driver_sql(f"DROP ROLE {role}")


# --- Backends --------------------------------------------------------------


@dataclass
class Backend:
    """One adapter, with the means to set up what the port cannot.

    `repo` reads items from the default source (`jobs.fulltext_items` in SQL).
    `add_items` adds eligible items to it. `app_repo` is a repository over
    an app's own table with eligibility `api IS NOT NULL`; `set_api` adds an
    item to that table or changes its `api` (None: not eligible).
    """

    name: str
    repo: Repository
    add_items: Callable[[Iterable[str]], None]
    app_repo: Repository
    set_api: Callable[[str, Any], None]
    engine: sa.Engine | None = None


class Monotonic:
    """A monotonic clock the test moves by hand (`now`, in seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def memory_backend(clock: Clock | None = None, lease: timedelta = DEFAULT_LEASE) -> Backend:
    repo = InMemoryRepository(clock=clock, lease=lease)
    app_repo = InMemoryRepository(clock=clock, lease=lease)

    def set_api(item_id: str, api: object) -> None:
        # The in-memory source holds only eligible ids; an item becomes
        # eligible when its metadata arrives, and never goes back.
        if api is not None:
            app_repo.add_items([item_id])

    def add_items(ids: Iterable[str]) -> None:
        repo.add_items(ids)

    return Backend("memory", repo, add_items, app_repo, set_api)


def sql_backend(
    engine: sa.Engine, clock: Clock | None = None, lease: timedelta = DEFAULT_LEASE
) -> Backend:
    """A backend over a migrated database (which also holds APP_ITEMS)."""
    repo = SqlAlchemyRepository(engine, clock=clock, lease=lease)
    app_repo = SqlAlchemyRepository(
        engine,
        items=ItemSource(APP_ITEMS, eligible=APP_ITEMS.c.api.is_not(None)),
        clock=clock,
        lease=lease,
    )

    def add_items(ids: Iterable[str]) -> None:
        repo.add_items(ids)

    def set_api(item_id: str, api: object) -> None:
        insert = (
            sa.dialects.postgresql.insert
            if engine.dialect.name == "postgresql"
            else sa.dialects.sqlite.insert
        )
        stmt = insert(APP_ITEMS).values(id=item_id, api=api)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={"api": stmt.excluded.api})
        with engine.begin() as connection:
            connection.execute(stmt)

    return Backend(engine.dialect.name, repo, add_items, app_repo, set_api, engine)


# --- The async adapter behind the sync port ---------------------------------

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def event_loop() -> asyncio.AbstractEventLoop:
    """One event loop for the test session, in a daemon thread of its own:
    an async engine's connections belong to the loop that made them."""
    global _loop  # noqa: PLW0603 - one loop, made on first use
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="test-loop", daemon=True).start()
        return _loop


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the test loop and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coroutine, event_loop()).result(timeout=120)


class BlockingAsyncRepository(Repository):
    """An `AsyncSqlAlchemyRepository` behind the sync port: each call is
    awaited to completion on the test loop. It adds nothing, so the one
    contract suite holds the async adapter to the sync one's behaviour."""

    def __init__(self, repo: AsyncSqlAlchemyRepository) -> None:
        self.repo = repo

    def add_items(self, item_ids: Iterable[str], *, batch_size: int = 10_000) -> int:
        return run_async(self.repo.add_items(item_ids, batch_size=batch_size))

    def get_fulltext(self, job_id: uuid.UUID | str) -> FullText:
        return run_async(self.repo.get_fulltext(job_id))

    def save_fulltext(self, job: FullText) -> None:
        run_async(self.repo.save_fulltext(job))

    def create_job_for_unqueued(self, destination: str, *, priority: int = 0) -> FullText:
        return run_async(self.repo.create_job_for_unqueued(destination, priority=priority))

    def get_ready_job(self, destination: str) -> FullText:
        return run_async(self.repo.get_ready_job(destination))

    def enqueue_unqueued(
        self,
        destination: str,
        *,
        limit: int | None = None,
        progress: Callable[[int], object] | None = None,
        priority: int = 0,
    ) -> int:
        return run_async(
            self.repo.enqueue_unqueued(
                destination, limit=limit, progress=progress, priority=priority
            )
        )

    def claim_ready(self, destination: str, n: int) -> list[FullText]:
        return run_async(self.repo.claim_ready(destination, n))

    def save_many(self, jobs: Iterable[FullText], *, atomic: bool = True) -> None:
        run_async(self.repo.save_many(jobs, atomic=atomic))

    @contextmanager
    def hold_ready(self, destination: str, n: int) -> Iterator[list[FullText]]:
        held = self.repo.hold_ready(destination, n)
        jobs = run_async(held.__aenter__())
        try:
            yield jobs
        except BaseException as exc:
            if not run_async(held.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            run_async(held.__aexit__(None, None, None))

    def enqueue_new(
        self,
        destination: str,
        *,
        sweep_interval: timedelta = DEFAULT_SWEEP_INTERVAL,
        priority: int = 0,
    ) -> int:
        return run_async(
            self.repo.enqueue_new(destination, sweep_interval=sweep_interval, priority=priority)
        )

    def has_destination(self, destination: str) -> bool:
        return run_async(self.repo.has_destination(destination))

    def count_unqueued(self, destination: str) -> int:
        return run_async(self.repo.count_unqueued(destination))

    def stats(
        self, destination: str | None = None, *, unqueued: bool = True
    ) -> list[DestinationStats]:
        return run_async(self.repo.stats(destination, unqueued=unqueued))

    def lag(self, destination: str) -> timedelta | None:
        return run_async(self.repo.lag(destination))

    def heartbeat(self, job: FullText) -> datetime:
        return run_async(self.repo.heartbeat(job))

    def rescue_expired(
        self, destination: str | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> int:
        return run_async(self.repo.rescue_expired(destination, max_attempts=max_attempts))

    def rescue_expired_jobs(
        self, destination: str | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> list[uuid.UUID]:
        return run_async(self.repo.rescue_expired_jobs(destination, max_attempts=max_attempts))

    def retry(
        self,
        destination: str,
        *,
        statuses: Iterable[JobStatus | str] = (JobStatus.FAILED, JobStatus.SKIPPED),
        item_ids: Iterable[str] | None = None,
    ) -> int:
        return run_async(self.repo.retry(destination, statuses=statuses, item_ids=item_ids))

    def audit(self, destination: str | None = None, **settings: Any) -> list[AuditProblem]:
        return run_async(self.repo.audit(destination, **settings))

    def release_unleased(
        self, older_than: timedelta, destination: str | None = None
    ) -> list[uuid.UUID]:
        return run_async(self.repo.release_unleased(older_than, destination))

    def queue_health(self, destination: str | None = None) -> QueueHealth:
        return run_async(self.repo.queue_health(destination))

    def list_jobs(
        self,
        destination: str,
        *,
        statuses: Iterable[JobStatus | str] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[FullText]:
        return run_async(
            self.repo.list_jobs(destination, statuses=statuses, limit=limit, after=after)
        )

    def next_due(self, destination: str) -> datetime | None:
        return run_async(self.repo.next_due(destination))

    def take_rate_tokens(
        self, destination: str, rate: float, n: int = 1, *, burst: int = 1
    ) -> RateTokens:
        return run_async(self.repo.take_rate_tokens(destination, rate, n, burst=burst))

    def controls(self, destination: str) -> DestinationControls:
        return run_async(self.repo.controls(destination))

    def list_controls(self) -> list[DestinationControls]:
        return run_async(self.repo.list_controls())

    def pause(
        self,
        destination: str,
        *,
        until: datetime | None = None,
        reason: str | None = None,
        at_least: bool = False,
    ) -> DestinationControls:
        return run_async(
            self.repo.pause(destination, until=until, reason=reason, at_least=at_least)
        )

    def resume(self, destination: str) -> DestinationControls:
        return run_async(self.repo.resume(destination))

    def limit(
        self,
        destination: str,
        *,
        max_running: int | Keep | None = KEEP,
        rate: float | Keep | None = KEEP,
        burst: int | Keep | None = KEEP,
    ) -> DestinationControls:
        return run_async(
            self.repo.limit(destination, max_running=max_running, rate=rate, burst=burst)
        )

    def cancel(
        self,
        destination: str,
        *,
        item_ids: Iterable[str] | None = None,
        all_ready: bool = False,
        reason: str | None = None,
    ) -> Cancellation:
        return run_async(
            self.repo.cancel(destination, item_ids=item_ids, all_ready=all_ready, reason=reason)
        )

    def prioritize(self, destination: str, *, item_ids: Iterable[str], priority: int) -> int:
        return run_async(self.repo.prioritize(destination, item_ids=item_ids, priority=priority))

    def take_cancel_requests(self, jobs: Iterable[FullText]) -> dict[uuid.UUID, str]:
        return run_async(self.repo.take_cancel_requests(jobs))

    def depend(
        self,
        destination: str,
        *,
        on: str | Iterable[str],
        statuses: Iterable[JobStatus | str] = DEFAULT_ON_STATUSES,
    ) -> list[Dependency]:
        return run_async(self.repo.depend(destination, on=on, statuses=statuses))

    def undepend(
        self, destination: str, *, on: str | Iterable[str] | None = None
    ) -> list[Dependency]:
        return run_async(self.repo.undepend(destination, on=on))

    def dependencies(self, destination: str | None = None) -> list[Dependency]:
        return run_async(self.repo.dependencies(destination))

    # The public methods above bypass this (sync) port's checks on purpose:
    # they hand every argument, as given, to the async adapter, whose own
    # port must check it. So the port's protected methods are never called.
    def _never_called(self, *_args: object, **_kwargs: object) -> Any:
        msg = "BlockingAsyncRepository overrides every public method"
        raise AssertionError(msg)

    _get_fulltext = _save_fulltext = _create_job_for_unqueued = _get_ready_job = _never_called
    _enqueue_unqueued = _claim_ready = _save_many = _count_unqueued = _stats = _never_called
    _heartbeat = _rescue_expired = _retry = _audit = _release_unleased = _never_called
    _queue_health = _controls = _list_controls = _pause = _resume = _limit = _never_called
    _cancel = _take_cancel_requests = _never_called
    _list_jobs = _next_due = _take_rate_tokens = _never_called
    _enqueue_new = _has_destination = _save_each = _lag = _never_called


@contextmanager
def async_sql_backend(
    engine: sa.Engine, clock: Clock | None = None, lease: timedelta = DEFAULT_LEASE
) -> Iterator[Backend]:
    """`sql_backend`'s database, reached through the async adapter (on its
    own asyncio engine, disposed on exit)."""
    url = engine.url.render_as_string(hide_password=False)
    async_engine = run_async(_make_async_engine(url))
    sync = sql_backend(engine, clock=clock, lease=lease)
    repo = BlockingAsyncRepository(
        AsyncSqlAlchemyRepository(async_engine, clock=clock, lease=lease)
    )
    app_repo = BlockingAsyncRepository(
        AsyncSqlAlchemyRepository(
            async_engine,
            items=ItemSource(APP_ITEMS, eligible=APP_ITEMS.c.api.is_not(None)),
            clock=clock,
            lease=lease,
        )
    )
    try:
        yield Backend(f"{sync.name}-async", repo, repo.add_items, app_repo, sync.set_api, engine)
    finally:
        run_async(async_engine.dispose())


async def _make_async_engine(url: str) -> AsyncEngine:
    # Made on the loop, as its connections will be.
    return fulltext_jobs.create_async_engine(url)


def prepare_database(url: str) -> sa.Engine:
    """Migrate the database at `url` and add the app's table; return an engine."""
    engine = fulltext_jobs.create_engine(url)
    fulltext_jobs.upgrade(engine)
    APP_METADATA.create_all(engine)
    return engine


def reset_database(engine: sa.Engine) -> None:
    """Empty every table the tests write to."""
    tables = tables_for(engine.dialect.name)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "TRUNCATE jobs.fulltext, jobs.fulltext_items, jobs.enqueue_cursor, "
                "jobs.fulltext_rate_limit, jobs.fulltext_holds, jobs.fulltext_controls, "
                "jobs.fulltext_cancels, jobs.fulltext_dependencies, jobs.fulltext_unblocked, "
                "app_items "
                "RESTART IDENTITY"
            )
            # The identity starts again below the claim floors this process
            # keeps for the engine (a ledger's own writes never do that).
            floors_of(engine).forget(None)
        else:
            for table in (
                tables.fulltext,
                tables.items,
                tables.enqueue_cursor,
                tables.rate_limit,
                tables.controls,
                tables.cancels,
                tables.dependencies,
                tables.unblocked,
                APP_ITEMS,
            ):
                connection.execute(sa.delete(table))


class SqliteTemplate:
    """A migrated SQLite file, copied for each test: faster than migrating."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "template.sqlite3"
        engine = prepare_database(f"sqlite:///{self.path}")
        engine.dispose()
        self._count = 0

    def fresh_url(self) -> str:
        self._count += 1
        path = self.folder / f"db{self._count}.sqlite3"
        shutil.copyfile(self.path, path)
        return f"sqlite:///{path}"


#: The command line of the venv the tests run in.
ENTRY_POINT = Path(sys.executable).parent / "fulltext-jobs"


@contextmanager
def dashboard_process(
    cwd: Path, *args: str, timeout: float = 30
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`fulltext-jobs dashboard --port 0 ARGS` started in `cwd`, and the
    address it serves (from the line it prints first), ending with a slash.
    The process is killed on leaving if it still runs."""
    process = subprocess.Popen(
        [str(ENTRY_POINT), "dashboard", "--port", "0", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = threading.Event()
        lines: list[str] = []

        def first_line() -> None:
            assert process.stdout is not None
            lines.append(process.stdout.readline())
            ready.set()

        threading.Thread(target=first_line, daemon=True).start()
        if not ready.wait(timeout):
            msg = f"the dashboard printed nothing in {timeout} s"
            raise AssertionError(msg)
        found = re.search(r"http://\S+/", lines[0])
        if found is None:
            _, err = process.communicate(timeout=timeout)
            msg = f"the dashboard did not start: {lines[0]!r} {err!r}"
            raise AssertionError(msg)
        yield process, found.group(0)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=timeout)


@dataclass(frozen=True)
class Page:
    """An HTTP response: its status, headers (lower-case names) and text."""

    status: int
    headers: dict[str, str]
    text: str


def fetch(url: str, timeout: float = 10) -> Page:
    """GET `url`, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own server
            return Page(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read().decode(),
            )
    except urllib.error.HTTPError as exc:
        with exc:
            headers = {k.lower(): v for k, v in exc.headers.items()}
            return Page(exc.code, headers, exc.read().decode())


@contextmanager
def served(app: object, timeout: float = 10) -> Iterator[str]:
    """An ASGI `app` served by uvicorn from a thread on a free port of
    127.0.0.1, until the block ends; yields its address, ending with a
    slash."""
    import uvicorn  # noqa: PLC0415 - the dashboard extra's, for its tests only

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                msg = "uvicorn did not start"
                raise AssertionError(msg)
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
