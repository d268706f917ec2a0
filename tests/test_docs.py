"""The documentation builds: the API reference from the docstrings (pdoc,
as `scripts/docs` runs it) documents every public name with its docstring,
and the guides are linked from the README. The README stays a short first
page with a table of contents and the sections a newcomer needs; every
relative link in it and in docs/ leads somewhere; docs/cli.md covers every
command and option. (test_snippets.py runs their Python.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

import fulltext_jobs
from fulltext_jobs.cli import app

ROOT = Path(__file__).resolve().parent.parent
GUIDES = sorted((ROOT / "docs").glob("guide-*.md"))
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "CHANGELOG.md"]

FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$", re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


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
    assert "Claim the first" in page
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


def prose(text: str) -> str:
    """The text without its fenced code blocks, and without inline code
    spans (whose brackets are no links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of each heading outside code blocks."""
    return [(len(m.group(1)), m.group(2)) for m in HEADING.finditer(FENCE.sub("", text))]


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, each
    space a hyphen."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for _, title in headings(path.read_text(encoding="utf-8")):
        slug = anchor(title)
        n = 0
        while (f"{slug}-{n}" if n else slug) in found:
            n += 1
        found.add(f"{slug}-{n}" if n else slug)
    return found


def test_the_readme_is_short_and_has_a_table_of_contents_of_its_sections():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 300
    sections = [title for level, title in headings(text) if level == 2]
    assert sections[0] == "Contents", sections
    contents = text.split("## Contents\n", 1)[1].split("\n## ", 1)[0]
    entries = re.findall(r"^- \[(.+?)\]\(#(.+?)\)$", contents, re.MULTILINE)
    assert [title for title, _ in entries] == sections[1:]
    assert [target for _, target in entries] == [anchor(title) for title in sections[1:]]
    for needed in (
        "The two commands",
        "Concepts",
        "A walk-through on the command line",
        "Supported versions",
        "Troubleshooting",
    ):
        assert needed in sections, needed
    assert "(docs/troubleshooting.md)" in text
    # The two commands, exactly as they set up a fresh machine.
    assert "\nbash scripts/demo " in text
    assert "\nbash scripts/test " in text


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(document: Path):
    broken = []
    for target in LINK.findall(prose(document.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: and the like
        path, _, fragment = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        checks_anchor = bool(fragment) and linked.suffix == ".md"
        if not linked.exists() or (checks_anchor and fragment not in anchors(linked)):
            broken.append(target)
    assert not broken, broken


def commands(command: TyperCommand | TyperGroup, path: tuple[str, ...] = ()):
    """Every command under `command`, with its path of names. Typer's own
    classes: it carries its own copy of click, whose classes are not the
    installed click's (an `isinstance` against those found no group, and
    this test checked the root alone)."""
    yield path, command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))


def test_the_cli_reference_covers_every_command_and_option():
    """docs/cli.md's reference is `bash scripts/cli-reference`'s output:
    run it after changing the command line."""
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    reference = page.split("## Reference\n", 1)[1]
    sections = dict(
        re.findall(
            r"^### (fulltext-jobs.*?)\n(.*?)(?=^### |\Z)", reference, re.DOTALL | re.MULTILINE
        )
    )
    missing = []
    found = list(commands(typer.main.get_command(app)))
    assert len(found) > 20, found  # the walk reaches the nested commands
    for path, command in found:
        title = " ".join(("fulltext-jobs", *path))
        if title not in sections:
            missing.append(title)
            continue
        options = [
            option
            for parameter in command.params
            if isinstance(parameter, TyperOption) and not parameter.hidden  # an old name
            for option in parameter.opts
        ]
        missing.extend(f"{title} {option}" for option in options if option not in sections[title])
    assert not missing, f"run bash scripts/cli-reference: {missing}"


@pytest.mark.postgresql
def test_the_readme_names_the_postgresql_the_suite_runs_on(postgres_engine):
    """ "Tested on N" stays true: N is the major version of the server this
    suite runs against (CI's too)."""
    with postgres_engine.connect() as connection:
        number = connection.exec_driver_sql("SHOW server_version_num").scalar_one()
    major = int(number) // 10_000
    text = README.read_text(encoding="utf-8")
    assert re.search(rf"\*\*PostgreSQL: tested on {major}\*\*", text), f"PostgreSQL {major}"


def test_the_architecture_page_names_every_module():
    """docs/architecture.md is the map: a module it does not name is a room
    nobody can find."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    package = ROOT / "fulltext_jobs"
    missing = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if "_migrations" not in path.parts and f"`{path.name}`" not in text
    ]
    assert missing == []
    assert "](docs/architecture.md)" in README.read_text(encoding="utf-8")
