"""Hostile input, by properties: the project's rule is that bad input gets a
typed error (a `JobsError`; on the command line one `error:` line and exit
status 1, or typer's usage error and status 2) and changes nothing, and that
no raw Python or driver exception escapes where the library can say what
went wrong.

Three families:

- every command and option of the command line, found by walking its click
  tree (a command added later is covered without a change here), run with
  extreme values for each parameter of its type;
- every public function and repository method, called with wrong-typed
  arguments on every adapter (the `backend` fixture), which must raise a
  `JobsError` or work, and leave the ledger as it was when they refuse;
- `add_items`, which must count and store the same ids on every adapter for
  the same hostile-but-valid input, and refuse the same invalid input with
  the same error.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
import unicodedata
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
import typer.main
from harness import Backend, SqliteTemplate, postgres_database, prepare_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.core import TyperArgument, TyperOption
from typer.testing import CliRunner

import fulltext_jobs
from fulltext_jobs import (
    MAX_ITEM_ID_LENGTH,
    FullText,
    InMemoryRepository,
    InvalidInput,
    JobsError,
    Repository,
    RetryPolicy,
    SqlAlchemyRepository,
    Worker,
)
from fulltext_jobs import dashboard as dashboard_module
from fulltext_jobs.cli import app

# --- hostile values ----------------------------------------------------------------

HUGE = 2**63
TOO_BIG_FOR_A_FLOAT = 10**400
LONG = "x" * 100_000

#: Text no option should trip on: empty, blank, NUL bytes, lone surrogates
#: (what `os.fsdecode` makes of bytes that are not UTF-8), very long, a
#: path that does not exist, and text that reads as an option or a number.
HOSTILE_TEXT = (
    "",
    " ",
    "\t\n",
    "\x00",
    "a\x00b",
    "\udcff\udcfe",
    "\ud800",
    "e\u0301",
    "\u202e\ufeff",
    LONG,
    "/nonexistent/folder/file",
    "-",
    "--",
    "-1",
    "0",
    "nan",
    str(TOO_BIG_FOR_A_FLOAT),
)
HOSTILE_INTS = (
    "0",
    "-1",
    "1",
    str(2**31 - 1),
    str(2**31),
    str(HUGE),
    str(-HUGE),
    str(TOO_BIG_FOR_A_FLOAT),
    "1e3",
    "0x10",
    "",
    " ",
    "nan",
)
HOSTILE_FLOATS = (
    "nan",
    "inf",
    "-inf",
    "1e308",
    "-1e308",
    "-0.0",
    "0",
    "-1",
    "5e-324",
    "1e-300",
    str(HUGE),
    str(TOO_BIG_FOR_A_FLOAT),
    "",
    " ",
    "1,5",
)

#: Wrong-typed arguments for the Python API.
WRONG_TYPED: tuple[object, ...] = (
    None,
    True,
    0,
    -1,
    HUGE,
    -HUGE,
    TOO_BIG_FOR_A_FLOAT,
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    b"bytes",
    bytearray(b"x"),
    [],
    ["x"],
    [None],
    {},
    {"a": 1},
    (),
    object(),
    "",
    " ",
    "a\x00b",
    "\ud800",
    LONG,
    timedelta(-1),
    timedelta.max,
    datetime(2026, 1, 1),  # noqa: DTZ001 - naive, on purpose
    uuid.UUID(int=0),
)
wrong_typed = st.one_of(
    st.sampled_from(WRONG_TYPED),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=5),
)


def _text_values() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=30))


# --- the command line, walked -------------------------------------------------------

Param = TyperArgument | TyperOption


@dataclasses.dataclass(frozen=True)
class Command:
    """One runnable command of the tree: its words, and its parameters."""

    path: tuple[str, ...]
    params: tuple[Param, ...]

    @property
    def name(self) -> str:
        return " ".join(self.path)


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[Command]:
    """Every leaf command under `command` (typer's click command tree), with
    its words from the root."""
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in sorted(subcommands.items()):
            yield from walk(sub, (*path, name))
    else:
        yield Command(path, tuple(command.params))


ROOT = typer.main.get_command(app)
COMMANDS = tuple(walk(ROOT))
ROOT_OPTIONS: tuple[Param, ...] = tuple(ROOT.params)

#: What each command needs to get past its required parameters, so that a
#: drawn value reaches the command's own code. `work` is bounded by
#: --until-idle, and by a handler of the tests' that returns at once.
REQUIRED: dict[str, dict[str, str]] = {
    "work": {"destination": "d", "--handler": "cli_handlers:by_item"},
    "enqueue": {"destination": "d"},
    "jobs": {"destination": "d"},
    "retry": {"destination": "d"},
    "migrate downgrade": {"revision": "head"},
}
ALWAYS: dict[str, tuple[str, ...]] = {"work": ("--until-idle",)}


def test_the_walk_finds_every_command() -> None:
    names = {command.name for command in COMMANDS}
    assert {"work", "dashboard", "items add", "migrate upgrade", "audit", "demo"} <= names
    assert set(REQUIRED) <= names


def is_argument(param: Param) -> bool:
    return isinstance(param, TyperArgument)


def kind_of(param: Param) -> tuple[str, type]:
    """What a parameter takes, from its annotation: ("one" or "many", and
    the type of each value: int, float, str, bool or an enum of choices)."""
    annotation = param.type_descriptor.annotation
    many = typing.get_origin(annotation) is list
    if many:
        [annotation] = typing.get_args(annotation)
    return ("many" if many else "one"), annotation


def values_for(param: Param) -> st.SearchStrategy[list[str]]:
    """The argv words that give `param` a hostile value: a list, since a
    flag is one word or none, and a count or a repeated option several."""
    if getattr(param, "count", False):
        return st.integers(0, 40).map(lambda n: ["-v"] * n)
    if getattr(param, "is_flag", False):
        return st.sampled_from([[], [param.opts[0]]])
    how_many, kind = kind_of(param)
    one: st.SearchStrategy[str]
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        choices = [str(member.value) for member in kind]
        one = st.one_of(
            st.sampled_from(choices), st.sampled_from(choices).map(str.upper), _text_values()
        )
    elif kind is int:
        one = st.one_of(st.sampled_from(HOSTILE_INTS), st.integers().map(str))
        edges = [
            str(bound + step)
            for bound in (param.min, param.max)
            if bound is not None
            for step in (-1, 0, 1)
        ]
        if edges:
            one = st.one_of(one, st.sampled_from(edges))
    elif kind is float:
        one = st.one_of(
            st.sampled_from(HOSTILE_FLOATS), st.floats().map(repr), st.integers().map(str)
        )
    else:
        one = _text_values()
    if is_argument(param):
        return one.map(lambda value: [value])
    name = param.opts[0]
    if how_many == "many":
        return st.lists(one, min_size=1, max_size=3).map(
            lambda values: [word for value in values for word in (name, value)]
        )
    return one.map(lambda value: [name, value])


@dataclasses.dataclass
class Invocation:
    argv: list[str]
    what: str


def invocation(data: st.DataObject, url: str, commands: tuple[Command, ...]) -> Invocation:
    """A command with one or two of its parameters (or a global option)
    hostile, the others valid."""
    command = data.draw(st.sampled_from(commands), label="command")
    candidates = [*command.params, *ROOT_OPTIONS]
    chosen = data.draw(
        st.lists(st.sampled_from(candidates), min_size=1, max_size=2, unique_by=id),
        label="parameters",
    )
    root: list[str] = ["--database-url", url]
    options: list[str] = list(ALWAYS.get(command.name, ()))
    arguments: dict[str, str] = {}
    required = REQUIRED.get(command.name, {})
    for param in command.params:
        if param in chosen:
            continue
        if is_argument(param) and param.name in required:
            arguments[param.name] = required[param.name]
        elif not is_argument(param) and param.opts[0] in required:
            options += [param.opts[0], required[param.opts[0]]]
    for param in chosen:
        words = data.draw(values_for(param), label=param.name or "")
        if param in ROOT_OPTIONS:
            root += words
        elif is_argument(param):
            arguments[param.name or ""] = words[0]
        else:
            options += words
    # Positional values after `--`, so that `-1` is a value, not an option.
    positional = [arguments[p.name] for p in command.params if p.name in arguments]
    argv = [*root, *command.path, *options, "--", *positional]
    return Invocation(argv, command.name)


def check_run(argv: list[str]) -> None:
    """Run the command line; assert it ended as the project's rule says."""
    result = CliRunner().invoke(app, argv, catch_exceptions=True)
    shown = repr(argv)[:400]
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown} raised {result.exception!r}"
    )
    assert result.exit_code in {0, 1, 2}, f"{shown} exited {result.exit_code}: {result.output}"
    assert "Traceback" not in result.output, f"{shown} printed a traceback: {result.output}"
    if result.exit_code == 1 and "error:" in result.output:
        [line] = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert line


@contextmanager
def no_serving() -> Iterator[None]:
    """`dashboard` up to its socket, without serving forever: everything
    it checks and binds is exercised; `serve` returns at once."""
    # The command imports the server when it runs: patch it where it lives.
    with mock.patch.object(dashboard_module, "serve", return_value=None):
        yield


def sqlite_with_jobs(template: SqliteTemplate) -> str:
    """A migrated SQLite file of this example's own, with two jobs of `d`."""
    url = template.fresh_url()
    engine = fulltext_jobs.create_engine(url)
    try:
        repo = SqlAlchemyRepository(engine)
        repo.add_items(["item-1", "item-2"])
        repo.enqueue_unqueued("d")
    finally:
        engine.dispose()
    return url


CLI_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: The demo runs its whole job (200 items) each time: a few examples only.
QUICK_COMMANDS = tuple(c for c in COMMANDS if c.name != "demo")


@CLI_SETTINGS
@given(data=st.data())
def test_every_command_survives_hostile_values(
    sqlite_template: SqliteTemplate, data: st.DataObject
) -> None:
    """On SQLite, any command with any extreme option or argument value
    ends with status 0, 1 or 2, no traceback and no exception."""
    url = sqlite_with_jobs(sqlite_template)
    run = invocation(data, url, QUICK_COMMANDS)
    with no_serving():
        check_run(run.argv)


@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_the_demo_survives_hostile_values(
    sqlite_template: SqliteTemplate, data: st.DataObject
) -> None:
    url = sqlite_template.fresh_url()
    demo = tuple(c for c in COMMANDS if c.name == "demo")
    check_run(invocation(data, url, demo).argv)


@pytest.fixture(scope="module")
def own_postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this module's own, with two jobs
    of `d`: the hostile commands may migrate it down or change its jobs."""
    with postgres_database("ftj_hostile") as url:
        engine = prepare_database(url)
        repo = SqlAlchemyRepository(engine)
        repo.add_items(["item-1", "item-2"])
        repo.enqueue_unqueued("d")
        engine.dispose()
        yield url


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_commands_survive_hostile_values_on_postgresql(
    own_postgres_url: str, data: st.DataObject
) -> None:
    """A few examples on PostgreSQL, whose driver sees the values."""
    commands = tuple(c for c in QUICK_COMMANDS if c.path[0] != "migrate")
    with no_serving():
        check_run(invocation(data, own_postgres_url, commands).argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["items", "add", "--batch-size", str(HUGE)],
        ["items", "add", "--batch-size", str(TOO_BIG_FOR_A_FLOAT)],
        ["items", "add", "--", "a\x00b"],
        ["migrate", "upgrade", ""],
        ["migrate", "downgrade", ""],
        ["migrate", "upgrade", " "],
        [
            *("work", "d", "--handler", "cli_handlers:by_item", "--until-idle"),
            *("--metrics-port", "0", "--metrics-host", "x" * 300),
        ],
        ["dashboard", "--host", "x" * 300],
    ],
    ids=lambda argv: " ".join(argv)[:60],
)
def test_found_defects_stay_fixed(sqlite_template: SqliteTemplate, argv: list[str]) -> None:
    """What the properties above found, pinned: each once ended in a
    traceback (ValueError, AssertionError, UnicodeError)."""
    url = sqlite_with_jobs(sqlite_template)
    result = CliRunner().invoke(app, ["--database-url", url, *argv])
    assert result.exit_code in {1, 2}, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("url", ["sqlite:///a\x00b.sqlite3", "postgresql://u:p@h\x00st/db"])
def test_a_database_url_with_a_nul_byte_is_one_error_line(url: str) -> None:
    for argv in (["migrate", "upgrade"], ["stats"], ["demo"]):
        result = CliRunner().invoke(app, ["--database-url", url, *argv])
        assert result.exit_code == 1, result.output
        assert "NUL" in result.output


# --- the Python API, with wrong-typed arguments ---------------------------------------


def ledger(repo: Repository) -> object:
    """What a refused call must leave as it was: the counts, and every job
    (with its `ready_at`; the lag, which grows on the clock, is left out)."""
    rows = [dataclasses.replace(row, lag=None) for row in repo.stats(unqueued=True)]
    jobs = {row.destination: repo.list_jobs(row.destination, limit=10_000) for row in rows}
    return rows, jobs


def refused_or_done(repo: Repository, call: Callable[[], object]) -> None:
    """`call` works, or raises a `JobsError` and changes nothing."""
    before = ledger(repo)
    try:
        call()
    except JobsError:
        assert ledger(repo) == before
    except Exception as exc:  # noqa: BLE001 - the failure names it
        pytest.fail(f"raised {type(exc).__name__}: {exc}")


def _hold(repo: Repository, destination: Any, n: Any) -> None:
    with repo.hold_ready(destination, n):
        pass


def _deprecated(call: Callable[[], object]) -> object:
    """`call`, which uses an old name: its `DeprecationWarning` is the
    point of test_audit.py, not of this one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return call()


def _job_with(job: FullText, field: str, value: object) -> FullText:
    changed = job.copy()
    object.__setattr__(changed, field, value)
    return changed


JOB_FIELDS = tuple(f.name for f in dataclasses.fields(FullText))

#: Every method of the port, each argument in turn hostile (`v`), the
#: others valid. `job` is a running job of `d`, claimed by the test.
PORT_CALLS: dict[str, Callable[[Repository, FullText, Any], object]] = {
    "get_fulltext": lambda r, _j, v: r.get_fulltext(v),
    "save_fulltext": lambda r, _j, v: r.save_fulltext(v),
    "create_job_for_unqueued": lambda r, _j, v: r.create_job_for_unqueued(v),
    "get_ready_job": lambda r, _j, v: r.get_ready_job(v),
    "enqueue_unqueued(destination)": lambda r, _j, v: r.enqueue_unqueued(v),
    "enqueue_unqueued(limit)": lambda r, _j, v: r.enqueue_unqueued("e", limit=v),
    "enqueue_unqueued(progress)": lambda r, _j, v: r.enqueue_unqueued("e", progress=v),
    "claim_ready(destination)": lambda r, _j, v: r.claim_ready(v, 1),
    "claim_ready(n)": lambda r, _j, v: r.claim_ready("d", v),
    "save_many(jobs)": lambda r, _j, v: r.save_many(v),
    "save_many([job])": lambda r, _j, v: r.save_many([v]),
    "save_many(atomic)": lambda r, j, v: r.save_many([j], atomic=v),
    "hold_ready(destination)": lambda r, _j, v: _hold(r, v, 1),
    "hold_ready(n)": lambda r, _j, v: _hold(r, "d", v),
    "enqueue_new(destination)": lambda r, _j, v: r.enqueue_new(v),
    "enqueue_new(sweep_interval)": lambda r, _j, v: r.enqueue_new("e", sweep_interval=v),
    "has_destination": lambda r, _j, v: r.has_destination(v),
    "count_unqueued": lambda r, _j, v: r.count_unqueued(v),
    "stats(destination)": lambda r, _j, v: r.stats(v),
    "stats(unqueued)": lambda r, _j, v: r.stats("d", unqueued=v),
    "heartbeat": lambda r, _j, v: r.heartbeat(v),
    "rescue_expired(destination)": lambda r, _j, v: r.rescue_expired(v),
    "rescue_expired(max_attempts)": lambda r, _j, v: r.rescue_expired("d", max_attempts=v),
    "rescue_expired_jobs(destination)": lambda r, _j, v: r.rescue_expired_jobs(v),
    "rescue_expired_jobs(max_attempts)": lambda r, _j, v: r.rescue_expired_jobs(
        "d", max_attempts=v
    ),
    "retry(destination)": lambda r, _j, v: r.retry(v),
    "retry(statuses)": lambda r, _j, v: r.retry("d", statuses=v),
    "retry(item_ids)": lambda r, _j, v: r.retry("d", item_ids=v),
    "list_jobs(destination)": lambda r, _j, v: r.list_jobs(v),
    "list_jobs(statuses)": lambda r, _j, v: r.list_jobs("d", statuses=v),
    "list_jobs(limit)": lambda r, _j, v: r.list_jobs("d", limit=v),
    "list_jobs(after)": lambda r, _j, v: r.list_jobs("d", after=v),
    "next_due": lambda r, _j, v: r.next_due(v),
    "take_rate_tokens(destination)": lambda r, _j, v: r.take_rate_tokens(v, 1.0),
    "take_rate_tokens(rate)": lambda r, _j, v: r.take_rate_tokens("d", v),
    "take_rate_tokens(n)": lambda r, _j, v: r.take_rate_tokens("d", 1.0, v),
    "take_rate_tokens(burst)": lambda r, _j, v: r.take_rate_tokens("d", 1.0, burst=v),
    "audit(destination)": lambda r, _j, v: r.audit(v),
    "audit(rescue_after)": lambda r, _j, v: r.audit(rescue_after=v),
    "audit(rescue_interval), its old name": lambda r, _j, v: _deprecated(
        lambda: r.audit(rescue_interval=v)
    ),
    "audit(clock_tolerance)": lambda r, _j, v: r.audit(clock_tolerance=v),
    "audit(max_attempts)": lambda r, _j, v: r.audit(max_attempts=v),
    "audit(examples)": lambda r, _j, v: r.audit(examples=v),
    "release_unleased(older_than)": lambda r, _j, v: r.release_unleased(v),
    "release_unleased(destination)": lambda r, _j, v: r.release_unleased(timedelta(days=1), v),
    "add_items(item_ids)": lambda r, _j, v: r.add_items(v),  # type: ignore[attr-defined]
    "add_items(batch_size)": lambda r, _j, v: r.add_items(["x"], batch_size=v),  # type: ignore[attr-defined]
    **{
        f"save_fulltext(job.{field})": (
            lambda r, j, v, field=field: r.save_fulltext(_job_with(j, field, v))
        )
        for field in JOB_FIELDS
    },
    **{
        f"heartbeat(job.{field})": (
            lambda r, j, v, field=field: r.heartbeat(_job_with(j, field, v))
        )
        for field in ("id", "claim_token")
    },
}


@pytest.fixture
def ledger_with_a_claim(backend: Backend) -> tuple[Repository, FullText]:
    """The backend's repository with three items, jobs of `d` for them, and
    one of the jobs claimed (returned)."""
    repo = backend.repo
    repo.add_items(["item-1", "item-2", "item-3"])  # type: ignore[attr-defined]
    repo.enqueue_unqueued("d")
    [job] = repo.claim_ready("d", 1)
    return repo, job


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=st.sampled_from(sorted(PORT_CALLS)), value=wrong_typed)
def test_every_port_method_refuses_wrong_types_with_a_typed_error(
    ledger_with_a_claim: tuple[Repository, FullText], call: str, value: object
) -> None:
    """Each adapter's every method, with a wrong-typed argument, raises a
    `JobsError` (changing nothing) or works: never a raw TypeError,
    ValueError, OverflowError or driver error."""
    repo, job = ledger_with_a_claim
    refused_or_done(repo, lambda: PORT_CALLS[call](repo, job, value))


#: The public functions and constructors outside the port (`Worker`'s
#: separately, below), each argument in turn hostile.
API_CALLS: dict[str, Callable[[str, Any], object]] = {
    "upgrade(target)": lambda _u, v: fulltext_jobs.upgrade(v),
    "upgrade(revision)": fulltext_jobs.upgrade,
    "downgrade(target)": lambda _u, v: fulltext_jobs.downgrade(v, "head"),
    "downgrade(revision)": fulltext_jobs.downgrade,
    "adopt(target)": lambda _u, v: fulltext_jobs.adopt(v),
    "adopt(items_table)": lambda u, v: fulltext_jobs.adopt(u, items_table=v),
    "adopt(eligible)": lambda u, v: fulltext_jobs.adopt(u, eligible=v),
    "current_revision": lambda _u, v: fulltext_jobs.current_revision(v),
    "create_engine": lambda _u, v: fulltext_jobs.create_engine(v).dispose(),
    "create_async_engine": lambda _u, v: fulltext_jobs.create_async_engine(v),
    "configure_sqlite": lambda _u, v: fulltext_jobs.configure_sqlite(v),
    "SqlAlchemyRepository(engine)": lambda _u, v: SqlAlchemyRepository(v),
    "SqlAlchemyRepository(lease)": lambda u, v: SqlAlchemyRepository(_engine(u), lease=v),
    "SqlAlchemyRepository(clock)": lambda u, v: SqlAlchemyRepository(_engine(u), clock=v),
    "SqlAlchemyRepository(items)": lambda u, v: SqlAlchemyRepository(_engine(u), items=v),
    "SqlAlchemyRepository(enqueue_batch_size)": lambda u, v: SqlAlchemyRepository(
        _engine(u), enqueue_batch_size=v
    ),
    "SqlAlchemyRepository(mixed_fleet)": lambda u, v: SqlAlchemyRepository(
        _engine(u), mixed_fleet=v
    ),
    "InMemoryRepository(items)": lambda _u, v: InMemoryRepository(v),
    "InMemoryRepository(clock)": lambda _u, v: InMemoryRepository(clock=v),
    "InMemoryRepository(lease)": lambda _u, v: InMemoryRepository(lease=v),
    "FullText.new(item_id)": lambda _u, v: FullText.new(v, "d"),
    "FullText.new(destination)": lambda _u, v: FullText.new("i", v),
    "RetryPolicy(max_attempts)": lambda _u, v: RetryPolicy(max_attempts=v),
    "RetryPolicy(base_delay)": lambda _u, v: RetryPolicy(base_delay=v),
    "RetryPolicy(max_delay)": lambda _u, v: RetryPolicy(max_delay=v),
    "RetryPolicy(jitter)": lambda _u, v: RetryPolicy(jitter=v),
    "RetryPolicy.delay": lambda _u, v: RetryPolicy().delay(v),
    "RetryPolicy.backoff": lambda _u, v: RetryPolicy().backoff(v),
    "RetryPolicy.gives_up": lambda _u, v: RetryPolicy().gives_up(v),
    "WorkerMetrics(registry)": lambda _u, v: fulltext_jobs.WorkerMetrics(v),
}

_engines: dict[str, sa.Engine] = {}


def _engine(url: str) -> sa.Engine:
    if url not in _engines:
        _engines[url] = fulltext_jobs.create_engine(url)
    return _engines[url]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=st.sampled_from(sorted(API_CALLS)), value=wrong_typed)
def test_every_public_function_refuses_wrong_types_with_a_typed_error(
    sqlite_template: SqliteTemplate, call: str, value: object
) -> None:
    url = sqlite_template.fresh_url()
    try:
        API_CALLS[call](url, value)
    except JobsError:
        pass
    except Exception as exc:  # noqa: BLE001 - the assertion names it
        pytest.fail(f"{call} with {value!r:.60} raised {type(exc).__name__}: {exc}")
    finally:
        engine = _engines.pop(url, None)
        if engine is not None:
            engine.dispose()


@settings(max_examples=40, deadline=None)
@given(path=_text_values().filter(lambda t: "/" not in t))
def test_a_sqlite_path_of_any_text_is_opened_or_refused_with_a_typed_error(
    tmp_path_factory: pytest.TempPathFactory, path: str
) -> None:
    """A URL's database path reaches SQLite only when the library has found
    it acceptable: a NUL byte was a raw ValueError on the first connect."""
    folder = tmp_path_factory.mktemp("paths")
    try:
        engine = fulltext_jobs.create_engine(f"sqlite:///{folder}/{path}")
        try:
            fulltext_jobs.upgrade(engine)
        finally:
            engine.dispose()
    except JobsError:
        pass


WORKER_ARGUMENTS = (
    *("concurrency", "batch_size", "in_transaction", "poll_interval", "max_poll_interval"),
    *("shutdown_timeout", "produce", "sweep_interval", "retry", "rate_limit", "rate_burst"),
    *("timeout", "metrics", "clock", "heartbeat_interval"),
)


@pytest.mark.parametrize("argument", [*WORKER_ARGUMENTS, "repository", "destination", "handler"])
def test_the_worker_refuses_wrong_types_with_a_typed_error(argument: str) -> None:
    """Every argument of `Worker(...)`, each wrong-typed value in turn."""
    escaped = []
    for value in WRONG_TYPED:
        repo = InMemoryRepository(["item-1"])
        positional: list[Any] = [repo, "d", lambda _job: None]
        keywords: dict[str, Any] = {}
        if argument in {"repository", "destination", "handler"}:
            positional[("repository", "destination", "handler").index(argument)] = value
        else:
            keywords[argument] = value
        before = ledger(repo)
        try:
            Worker(*positional, **keywords)
        except JobsError:
            assert ledger(repo) == before
        except Exception as exc:  # noqa: BLE001 - collected, and named below
            escaped.append(f"{value!r:.40}: {type(exc).__name__}: {exc}")
    assert not escaped, escaped


# --- add_items: the same on every adapter ------------------------------------------------

#: Ids that are valid and easy to get wrong: the same id twice in one call,
#: ids equal but for case, Unicode normalisation or white space at either
#: end, and ids of the longest length, in 1- to 4-byte characters.
_letters = st.sampled_from(["a", "A", "\u00e9", "e\u0301", "\u00df", "SS", "\U0001f600", "1"])
_stems = st.lists(_letters, min_size=1, max_size=4).map("".join)
hostile_ids = st.one_of(
    _stems,
    _stems.map(str.upper),
    _stems.map(lambda s: unicodedata.normalize("NFD", s)),
    _stems.map(lambda s: unicodedata.normalize("NFC", s)),
    _stems.map(lambda s: s + " "),
    _stems.map(lambda s: " " + s),
    _stems.map(lambda s: s + "\t"),
    _stems.map(lambda s: s + "\u00a0"),
    st.sampled_from(["a", "\u00e9", "\U0001f600"]).map(lambda c: c * MAX_ITEM_ID_LENGTH),
)
id_batches = st.lists(hostile_ids, max_size=12).flatmap(
    lambda ids: st.permutations(ids + ids[: len(ids) // 2])
)
shapes = st.sampled_from(["list", "tuple", "generator", "set", "dict"])


def shaped(ids: list[str], shape: str) -> Any:
    if shape == "tuple":
        return tuple(ids)
    if shape == "generator":
        return (item_id for item_id in ids)
    if shape == "set":
        return set(ids)
    if shape == "dict":
        return dict.fromkeys(ids)
    return list(ids)


def stored_ids(repo: Repository, destination: str) -> set[str]:
    """The ids the repository holds, read through the port: a job for each
    eligible item, listed."""
    repo.enqueue_unqueued(destination)
    return {job.item_id for job in repo.list_jobs(destination, limit=10_000)}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(st.tuples(id_batches, shapes), min_size=1, max_size=3))
def test_add_items_counts_and_stores_the_same_ids_on_every_adapter(
    backend: Backend, batches: list[tuple[list[str], str]]
) -> None:
    """Every adapter counts exactly the ids new to it, code point for code
    point (no folding of case, normal form or white space), and stores
    them; the model is a Python set, so all adapters agree with each other."""
    repo = backend.repo
    destination = f"dest-{uuid.uuid4().hex}"  # the examples share the backend
    known = stored_ids(repo, destination)
    for ids, shape in batches:
        new = set(ids) - known
        batch_size = max(1, len(ids) // 2)
        added = repo.add_items(shaped(ids, shape), batch_size=batch_size)  # type: ignore[attr-defined]
        assert added == len(new), (ids, shape)
        known |= new
        assert stored_ids(repo, destination) == known


#: Invalid input to add_items, and the one error every adapter must raise.
INVALID_ITEM_IDS: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
    "a str": (lambda: "item-1", {}),
    "bytes": (lambda: b"item-1", {}),
    "None": (lambda: None, {}),
    "an int": (lambda: 7, {}),
    "an empty id": (lambda: ["ok", ""], {}),
    "a NUL byte": (lambda: ["ok", "a\x00b"], {}),
    "a lone surrogate": (lambda: ["ok", "\ud800"], {}),
    "an id too long": (lambda: ["ok", "x" * (MAX_ITEM_ID_LENGTH + 1)], {}),
    "a non-str id": (lambda: ["ok", 7], {}),
    "a generator with a bad id": (lambda: (i for i in ["ok", None]), {}),
    "batch_size 0": (lambda: ["ok"], {"batch_size": 0}),
    "batch_size too big": (lambda: ["ok"], {"batch_size": 10**400}),
    "batch_size a float": (lambda: ["ok"], {"batch_size": 1.0}),
    "batch_size a bool": (lambda: ["ok"], {"batch_size": True}),
    "batch_size bad, ids bad": (lambda: "item-1", {"batch_size": 0}),
}


@pytest.mark.parametrize("case", sorted(INVALID_ITEM_IDS))
def test_add_items_refuses_the_same_input_with_the_same_error(backend: Backend, case: str) -> None:
    repo = backend.repo
    make, keywords = INVALID_ITEM_IDS[case]
    with pytest.raises(InvalidInput) as refused:
        repo.add_items(make(), **keywords)  # type: ignore[attr-defined]
    assert stored_ids(repo, "probe") == set(), "a refused add_items added something"
    # The same message on every adapter: the checks run in the same order.
    with pytest.raises(InvalidInput) as in_memory:
        InMemoryRepository().add_items(make(), **keywords)
    assert str(refused.value) == str(in_memory.value)


def test_a_str_subclass_id_is_stored_as_a_plain_str(backend: Backend) -> None:
    """An id of a str subclass (an enum member, say) is stored and listed as
    the plain str it equals, as a database returns it."""

    class ItemId(str):
        __slots__ = ()

    repo = backend.repo
    assert repo.add_items([ItemId("item-1")]) == 1  # type: ignore[attr-defined]
    repo.enqueue_unqueued("d")
    [job] = repo.list_jobs("d")
    assert type(job.item_id) is str


def test_the_hostile_values_cover_every_parameter_kind() -> None:
    """The walk meets only the kinds of parameter this module draws values
    for: a new kind (a path, a datetime) must get its own hostile values."""
    for command in COMMANDS:
        for param in (*command.params, *ROOT_OPTIONS):
            _, kind = kind_of(param)
            known = kind in {int, float, str, bool} or issubclass(kind, enum.Enum)
            assert known, (command.name, param.name, kind)


def test_a_path_that_does_not_exist_is_one_error_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such.sqlite3'}"
    result = CliRunner().invoke(app, ["--database-url", url, "stats"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
