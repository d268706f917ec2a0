"""The dashboard in a real browser (Debian's chromium, headless, through
chromedriver and selenium): the page loads, names the destinations of a
demo database, and updates itself, without reloading, after more jobs
finish and one fails, and after a worker gives jobs back to be retried
later (shown as waiting for retry, with their errors, not as due); every
resource it loads comes from the dashboard. And the page read from a hot
standby (`--read-url`) says so, and follows what the primary does.

This test never skips: without chromium it fails, saying how to install
it (`bash scripts/test` does). Each wait is bounded.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from browser import INSTALL_ADVICE, binaries, chromium
from harness import dashboard_process
from replication import replicated_ledger
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

import fulltext_jobs
from fulltext_jobs import FullText, RetryPolicy, SqlAlchemyRepository, Worker
from fulltext_jobs.cli import _demo_app as demo

pytestmark = pytest.mark.slow

#: The longest any one wait in the browser may take, in seconds.
WAIT = 20


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if binaries() is None:
        pytest.fail(INSTALL_ADVICE)
    driver = chromium(tmp_path_factory.mktemp("profile"))
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver: WebDriver, selector: str) -> str | None:
    """The text of the element `selector` finds, read in one script: the
    page replaces its overview every half second, so an element found in
    one call may be gone by the next."""
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
        selector,
    )
    return None if found is None else str(found)


def cell(driver: WebDriver, destination: str, status: str) -> str | None:
    return text_of(driver, f'section[data-destination="{destination}"] [data-status="{status}"]')


def wait_for(driver: WebDriver, destination: str, status: str, text: str) -> None:
    try:
        WebDriverWait(driver, WAIT, poll_frequency=0.1).until(
            lambda d: cell(d, destination, status) == text
        )
    except Exception as exc:
        shown = cell(driver, destination, status)
        msg = f"{destination} {status}: {shown!r} after {WAIT} s, not {text!r}"
        raise AssertionError(msg) from exc


def wait_for_text(driver: WebDriver, selector: str, pattern: str) -> str:
    """The text of `selector` once it matches the regular expression
    `pattern`; fails after `WAIT` seconds."""
    try:
        WebDriverWait(driver, WAIT, poll_frequency=0.1).until(
            lambda d: re.search(pattern, text_of(d, selector) or "")
        )
    except Exception as exc:
        shown = text_of(driver, selector)
        msg = f"{selector}: {shown!r} after {WAIT} s, not matching {pattern!r}"
        raise AssertionError(msg) from exc
    return text_of(driver, selector) or ""


def broken(job: FullText) -> None:
    if job.item_id == "extra-3":
        raise RuntimeError("extra-3 is broken")


def unreachable(job: FullText) -> None:
    raise ConnectionError(f"the language service is unreachable for {job.item_id}")


def give_back_to_retry(repo: SqlAlchemyRepository, destination: str, jobs: int) -> None:
    """Run a worker on `destination` whose handler always raises, with a
    10-minute backoff, until it has given `jobs` jobs back to be retried;
    then stop it."""
    retry = RetryPolicy(max_attempts=3, base_delay=timedelta(minutes=10), jitter=0)
    worker = Worker(repo, destination, unreachable, poll_interval=0.05, retry=retry)
    thread = threading.Thread(
        target=worker.run, kwargs={"install_signal_handlers": False}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + WAIT
    while worker.stats.retried < jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    thread.join(WAIT)
    assert worker.stats.retried == jobs
    assert not thread.is_alive()


def test_the_page_loads_shows_the_demo_and_updates_itself(tmp_path: Path, browser: WebDriver):
    engine = fulltext_jobs.create_engine(f"sqlite:///{tmp_path / 'fulltext-jobs.sqlite3'}")
    demo.run(engine)
    repo = SqlAlchemyRepository(engine)
    with dashboard_process(tmp_path, "--refresh", "0.5", "--unqueued") as (process, base):
        started = time.monotonic()
        browser.get(base)
        assert browser.title == "fulltext-jobs: sqlite:///fulltext-jobs.sqlite3"
        names = browser.execute_script(
            "return [...document.querySelectorAll('section.destination')]"
            ".map(e => e.dataset.destination);"
        )
        assert names == ["demo-language-detection", "demo-word-count"]
        assert "demo-word-count" in (text_of(browser, "main") or "")
        assert cell(browser, "demo-word-count", "finished") == "192"
        assert cell(browser, "demo-word-count", "skipped") == "8"
        # The queue health panel, above the destinations: on SQLite, what
        # does not apply says so.
        health = text_of(browser, "section.health") or ""
        assert all(t in health for t in ("Queue health", "oldest transaction", "not applicable"))
        browser.execute_script("window.notReloaded = true;")

        # More work arrives: the page shows it ready, then done, by itself.
        repo.add_items(["extra-1", "extra-2", "extra-3"])
        repo.enqueue_unqueued("demo-word-count")
        wait_for(browser, "demo-word-count", "ready", "3")
        stats = Worker(repo, "demo-word-count", broken, poll_interval=0.05, max_attempts=1).run(
            until_idle=True, install_signal_handlers=False
        )
        assert (stats.finished, stats.failed) == (2, 1)
        wait_for(browser, "demo-word-count", "finished", "194")
        wait_for(browser, "demo-word-count", "failed", "1")
        assert cell(browser, "demo-word-count", "ready") == "0"
        assert cell(browser, "demo-language-detection", "unqueued") == "3"
        failures = (
            text_of(browser, 'section[data-destination="demo-word-count"] table.failures') or ""
        )
        assert "extra-3" in failures
        assert "RuntimeError: extra-3 is broken" in failures

        # A worker whose handler raises gives its jobs back to be retried in
        # 10 minutes: they are ready, but shown as waiting for retry, each
        # with its error, and none as due.
        section = 'section[data-destination="demo-language-detection"]'
        queued = repo.enqueue_unqueued("demo-language-detection")
        assert queued == 3
        give_back_to_retry(repo, "demo-language-detection", queued)
        ready = wait_for_text(browser, f"{section} [data-ready]", "waiting for retry")
        assert re.fullmatch(r"3 \(0 due, 3 waiting for retry, next in 9m \d+s\)", ready), ready
        assert cell(browser, "demo-language-detection", "ready") == "3"
        retries = text_of(browser, f"{section} table.retries") or ""
        for item in ("extra-1", "extra-2", "extra-3"):
            assert f"the language service is unreachable for {item}" in retries
        heading = text_of(browser, f"{section} h3") or ""
        assert re.match(r"Waiting for retry \(3, next in 9m \d+s; all ready jobs\)", heading)
        assert "none due" in (text_of(browser, f"{section} dl") or "")
        assert browser.execute_script("return window.notReloaded === true;")

        # Nothing came from anywhere but the dashboard.
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);"
        )
        assert loaded
        assert all(str(name).startswith(base) for name in loaded), loaded

        # The failed count links to the failed jobs.
        browser.execute_script(
            "document.querySelector(arguments[0]).click();",
            'section[data-destination="demo-word-count"] [data-status="failed"] a',
        )
        WebDriverWait(browser, WAIT).until(
            lambda d: d.title == "fulltext-jobs: demo-word-count failed"
        )
        assert "extra-3 is broken" in browser.find_element(By.TAG_NAME, "table").text
        print(f"browser part took {time.monotonic() - started:.1f} s")
        assert process.poll() is None
    engine.dispose()


def test_the_page_read_from_a_replica_says_so_and_follows_the_primary(
    tmp_path: Path, browser: WebDriver
):
    """`dashboard --read-url` on a private hot standby (tests/replication.py),
    with a database URL where nothing listens: the page reads the standby
    alone, says above its figures that they come from a replica and how far
    behind it may be, and shows a job finished on the primary once the
    standby has replayed it."""
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    with replicated_ledger("ftj-browser-", "browser", "replicated", 4) as pair:
        standby = pair.standby.url(pair.database)
        args = ("--database-url", nowhere, "--read-url", standby, "--refresh", "0.5")
        with dashboard_process(tmp_path, *args) as (process, base):
            browser.get(base)
            label = wait_for_text(browser, '[data-source="replica"]', "read from a replica")
            assert "figures lag the primary" in label
            assert "streaming from its primary" in label
            assert cell(browser, "replicated", "ready") == "4"
            browser.execute_script("window.notReloaded = true;")
            engine = fulltext_jobs.create_engine(pair.primary.url(pair.database))
            try:
                repo = SqlAlchemyRepository(engine)
                job = repo.get_ready_job("replicated")
                job.finish()
                repo.save_fulltext(job)
            finally:
                engine.dispose()
            wait_for(browser, "replicated", "finished", "1")
            assert cell(browser, "replicated", "ready") == "3"
            label = wait_for_text(browser, '[data-source="replica"]', "last replayed commit")
            assert browser.execute_script("return window.notReloaded === true;")
            assert process.poll() is None
