"""The documentation builds: the API reference from the docstrings (pdoc,
as `scripts/docs` runs it) documents every public name with its docstring,
and the guides are linked from the README. (test_snippets.py runs their
Python.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import fulltext_jobs

ROOT = Path(__file__).resolve().parent.parent
GUIDES = sorted((ROOT / "docs").glob("guide-*.md"))


@pytest.mark.slow
def test_the_api_reference_documents_every_public_name(tmp_path: Path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdoc",
            "fulltext_jobs",
            "--docformat",
            "markdown",
            "--output-directory",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Warn" not in done.stderr, done.stderr
    page = (tmp_path / "fulltext_jobs.html").read_text(encoding="utf-8")
    for name in fulltext_jobs.__all__:
        assert f'id="{name}"' in page, name
    # Docstrings made it in, not only names.
    assert "Claim the oldest" in page
    assert "joined to the caller" in page


def test_the_guides_exist_and_the_readme_links_each():
    names = {guide.name for guide in GUIDES}
    assert names == {
        "guide-unit-tests.md",
        "guide-web-app.md",
        "guide-workers.md",
        "guide-deploys.md",
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in names:
        assert f"docs/{name}" in readme, name
