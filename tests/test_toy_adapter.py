"""The shipped contract suite on an adapter it knows nothing about
(toy_adapter.py), in the lines a third-party adapter needs; and the unit-test
guide's own lines, run by pytest as a reader would."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from toy_adapter import ToyRepository

from fulltext_jobs.testing import (
    AppSource,
    Capabilities,
    ContractBackend,
    ContractSettings,
    RepositoryContract,
)

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide-unit-tests.md"


@pytest.fixture
def contract_backend(contract_settings: ContractSettings) -> ContractBackend:
    def make() -> ToyRepository:
        return ToyRepository(clock=contract_settings.clock, lease=contract_settings.lease)

    repo, app = make(), make()

    def set_api(item_id: str, api: object) -> None:  # app's source: eligible ids only
        if api is not None:
            app.add_items([item_id])

    return ContractBackend(
        repo,
        repo.add_items,
        AppSource(app, set_api),
        build=ToyRepository,
        # It inherits the port's depend, undepend and dependencies.
        capabilities=Capabilities(keeps_dependencies=False),
    )


class TestToyRepository(RepositoryContract):
    pass


@pytest.mark.slow
def test_the_guides_adapter_test_passes_under_pytest(tmp_path: Path):
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## Hold your own adapter to the contract") :]
    code = re.search(r"```python\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert code is not None
    (tmp_path / "test_my_repository.py").write_text(code.group(1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_repository.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Without an app source, only the tests of eligibility skip.
    counts = re.search(r"(\d+) passed, (\d+) skipped", done.stdout)
    assert counts is not None, done.stdout
    assert (int(counts.group(1)) > 300, int(counts.group(2))) == (True, 6), done.stdout
