"""First contact: the project as a newcomer meets it, on every change.

The wheel goes into a brand-new venv with its runtime dependencies only (no
test or lint group, no extras): the package imports with every optional
dependency blocked, and the command line answers `--help` and runs the demo
twice in an empty folder. The README's first command, `bash scripts/demo`,
runs from a fresh clone with no `.venv`. Nothing here uses the test venv's
packages, which is how an import of greenlet once passed every test and
failed every user.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Installed by the test group or the `async`, `metrics`, `dashboard` and
#: `otel` extras, never by a plain install.
OPTIONAL = (
    "greenlet",
    "aiosqlite",
    "pytest",
    "hypothesis",
    "pdoc",
    "prometheus_client",
    "starlette",
    "uvicorn",
    "selenium",
    "opentelemetry",
)

#: What the package says when an extra is missing.
ASYNC_ADVICE = "the async adapter needs greenlet: pip install 'fulltext-jobs[async]'"
METRICS_ADVICE = "metrics need prometheus_client: pip install 'fulltext-jobs[metrics]'"
OTEL_ADVICE = "OpenTelemetry needs opentelemetry-api: pip install 'fulltext-jobs[otel]'"
DASHBOARD_ADVICE = (
    "the dashboard needs starlette, uvicorn and prometheus_client: "
    "pip install 'fulltext-jobs[dashboard]'"
)

#: The demo's stats table once everything is done: 200 items, every 25th empty.
DONE_ROWS = (
    re.compile(r"demo-word-count\s+0\s+0\s+192\s+0\s+8\s+0"),
    re.compile(r"demo-language-detection\s+0\s+0\s+192\s+0\s+8\s+0"),
)

pytestmark = pytest.mark.slow


def newcomer_env() -> dict[str, str]:
    """The environment of someone who has not set anything up: no database
    URL, no active venv, and this project's `.venv` off the PATH."""
    ours = str(REPO_ROOT / ".venv")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"FULLTEXT_JOBS_DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    }
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if not part.startswith(ours)
    )
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(
    args: list[str], cwd: Path, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=newcomer_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def plain_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the wheel and its runtime dependencies, nothing else."""
    venv = tmp_path_factory.mktemp("plain") / "venv"
    work = venv.parent
    done = run([sys.executable, "-m", "venv", str(venv)], work)
    assert done.returncode == 0, done.stderr
    done = run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], work)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


FIND_INSTALLED = """
import importlib.util, sys
print(" ".join(name for name in sys.argv[1:] if importlib.util.find_spec(name)))
"""


def test_a_plain_install_brings_no_optional_dependency(plain_venv: Path):
    done = run(
        [
            str(plain_venv / "bin" / "python"),
            "-c",
            FIND_INSTALLED,
            *OPTIONAL,
        ],
        plain_venv.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


IMPORT_EVERYTHING = """
import importlib, importlib.util, pkgutil, sys

blocked = sys.argv[1:]
for name in blocked:
    sys.modules[name] = None

import fulltext_jobs
from fulltext_jobs import *  # noqa: F403 - every public name resolves

# fulltext_jobs.testing is the contract suite for adapters' own tests: it
# imports pytest, which a plain install lacks, and only whoever runs tests
# imports it. It ships in the wheel all the same.
assert importlib.util.find_spec("fulltext_jobs.testing") is not None
for module in pkgutil.walk_packages(fulltext_jobs.__path__, "fulltext_jobs."):
    if "._migrations" not in module.name and not module.name.startswith("fulltext_jobs.testing"):
        importlib.import_module(module.name)
for name in fulltext_jobs.__all__:
    getattr(fulltext_jobs, name)

from fulltext_jobs.dashboard import require_dashboard
from fulltext_jobs.metrics import WorkerMetrics
from fulltext_jobs.telemetry import Telemetry

for name, make in (
    ("greenlet", lambda: fulltext_jobs.create_async_engine("sqlite://")),
    ("greenlet", lambda: fulltext_jobs.AsyncSqlAlchemyRepository(None)),
    ("prometheus_client", WorkerMetrics),
    ("starlette", require_dashboard),
    ("uvicorn", require_dashboard),
    ("opentelemetry", Telemetry),
):
    if name in blocked:
        try:
            make()
        except ImportError as exc:
            assert isinstance(exc, fulltext_jobs.MissingDependency), repr(exc)
            print(exc)
        else:
            raise AssertionError(f"it ran without {name}")
print("imported")
"""


@pytest.mark.parametrize("blocked", [*OPTIONAL, ",".join(OPTIONAL)])
def test_the_package_imports_with_optional_dependencies_blocked(plain_venv: Path, blocked: str):
    names = blocked.split(",")
    done = run(
        [str(plain_venv / "bin" / "python"), "-W", "error", "-c", IMPORT_EVERYTHING, *names],
        plain_venv.parent,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "imported"
    expected = [ASYNC_ADVICE, ASYNC_ADVICE] if "greenlet" in names else []
    if "prometheus_client" in names:
        expected.append(METRICS_ADVICE)
    expected.extend(DASHBOARD_ADVICE for name in ("starlette", "uvicorn") if name in names)
    if "opentelemetry" in names:
        expected.append(OTEL_ADVICE)
    assert lines[:-1] == expected


def check_demo_output(stdout: str, *, first: bool) -> None:
    for row in DONE_ROWS:
        assert row.search(stdout), stdout
    if first:
        assert "items added: 200" in stdout, stdout
    else:
        assert "items added: 0" in stdout, stdout
        assert "jobs created for demo-word-count: 0" in stdout, stdout


def test_the_installed_command_answers_help_and_runs_the_demo_twice(
    plain_venv: Path, tmp_path: Path
):
    command = str(plain_venv / "bin" / "fulltext-jobs")
    done = run([command, "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout
    assert "migrate" in done.stdout
    done = run([command, "--version"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"fulltext-jobs {version('fulltext-jobs')}\n"
    for first in (True, False):
        done = run([command, "demo"], tmp_path)
        assert done.returncode == 0, done.stderr
        check_demo_output(done.stdout, first=first)
        assert "Traceback" not in done.stderr, done.stderr
    assert sorted(path.name for path in tmp_path.iterdir() if path.suffix == ".sqlite3") == [
        "fulltext-jobs-demo.sqlite3"
    ]
    # The extras' commands name the extra in one line.
    for args, advice in (
        (["dashboard"], DASHBOARD_ADVICE),
        (["work", "word-count", "--handler", "os:getcwd", "--metrics-port", "0"], METRICS_ADVICE),
    ):
        done = run([command, *args], tmp_path)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr == f"error: {advice}\n"


def fresh_clone(destination: Path) -> Path:
    """A `git clone` of this repository plus the working tree's uncommitted
    changes and new files, so that what is tested is what is on disk."""
    clone = destination / "clone"
    done = run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(clone)], destination
    )
    assert done.returncode == 0, done.stderr
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--binary"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    if diff:
        subprocess.run(
            ["git", "apply", "--whitespace=nowarn"], cwd=clone, input=diff, check=True, timeout=60
        )
    untracked = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, untracked.split("\0")):
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    assert not (clone / ".venv").exists()
    return clone


def test_the_readmes_first_command_runs_from_a_fresh_clone(tmp_path: Path):
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "bash scripts/demo" in readme
    clone = fresh_clone(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    for first in (True, False):
        done = run(["bash", str(clone / "scripts" / "demo")], empty, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        check_demo_output(done.stdout, first=first)
    assert (empty / "fulltext-jobs-demo.sqlite3").is_file()
    assert (clone / ".venv" / "bin" / "fulltext-jobs").is_file()
