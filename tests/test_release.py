"""The release: the version is one, the CHANGELOG has its entry, and the
sdist and wheel build from the working tree and pass `twine check --strict`
(the metadata and the README render as the package index would show them).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def project_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        value = tomllib.load(file)["project"]["version"]
    assert isinstance(value, str)
    return value


def test_the_version_is_released_and_has_its_changelog_entry():
    released = project_version()
    assert "dev" not in released
    assert version("fulltext-jobs") == released
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## [{released}] - " in changelog


def test_the_sdist_and_wheel_build_and_pass_twine_check(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    released = project_version()
    dists = sorted(path.name for path in tmp_path.iterdir())
    assert dists == [
        f"fulltext_jobs-{released}-py3-none-any.whl",
        f"fulltext_jobs-{released}.tar.gz",
    ]
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *sorted(map(str, tmp_path.iterdir()))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(checked.stdout)  # the closing note quotes it
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout
