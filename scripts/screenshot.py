"""Make docs/dashboard.md's screenshot of the dashboard (run by scripts/screenshot).

The ledger is the demo's sample caught mid-run, so that every part of the
page has something to show: demo-word-count done over the last quarter of an
hour, demo-language-detection two thirds through with a few failures, three
jobs running and four given back to be retried later, and 40 new items not
queued yet. Times are real ones, just
past, because the dashboard reads the clock.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium  # noqa: E402 - after the path is set

import fulltext_jobs  # noqa: E402
from fulltext_jobs import SqlAlchemyRepository  # noqa: E402
from fulltext_jobs.cli import _demo_app as demo  # noqa: E402

ERRORS = (
    "TimeoutError: the language service did not answer within 30 s",
    "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9 in position 112",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
)


def fill(url: str) -> None:
    """The demo's items and jobs, worked off part way, as described above."""
    now = datetime.now(UTC)
    moment = [now]
    engine = fulltext_jobs.create_engine(url)
    fulltext_jobs.upgrade(engine)
    repo = SqlAlchemyRepository(engine, clock=lambda: moment[0])
    texts = demo.sample_texts()
    repo.add_items(texts)
    for destination in demo.DESTINATIONS:
        repo.enqueue_unqueued(destination)
    # Per destination: how many jobs end, over how many minutes, and which fail.
    plans = {
        demo.WORD_COUNT: (200, 14.5, ()),
        demo.LANGUAGE_DETECTION: (131, 11.0, (40, 75, 118)),
    }
    for destination, (count, minutes, failures) in plans.items():
        for n in range(count):
            ended = now - timedelta(minutes=minutes * (1 - n / count)) - timedelta(seconds=20)
            moment[0] = ended - timedelta(seconds=2)
            job = repo.get_ready_job(destination)
            if not texts[job.item_id]:
                job.skip(ended)
            elif n in failures:
                job.fail(ended, error=ERRORS[failures.index(n)])
            else:
                job.finish(ended)
            repo.save_fulltext(job)
    for started in (3.2, 1.5, 0.4):
        moment[0] = now - timedelta(minutes=started)
        repo.get_ready_job(demo.LANGUAGE_DETECTION)
    # Given back by a worker after an error, to be retried after a backoff.
    for attempt, due in ((1, 25), (1, 50), (2, 110), (3, 235)):
        moment[0] = now - timedelta(seconds=40)
        job = repo.get_ready_job(demo.LANGUAGE_DETECTION)
        job.attempts = attempt
        job.release(moment[0], not_before=now + timedelta(seconds=due), error=ERRORS[attempt - 1])
        repo.save_fulltext(job)
    repo.add_items(f"loc.gov/item/new-{n:03}" for n in range(40))
    engine.dispose()


def main(output: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        fill(f"sqlite:///{work / 'fulltext-jobs.sqlite3'}")
        dashboard = subprocess.Popen(
            [str(Path(sys.executable).parent / "fulltext-jobs"), "dashboard", "--port", "0"],
            cwd=work,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert dashboard.stdout is not None
            line = dashboard.stdout.readline()
            address = line.split(" on ", 1)[1].split()[0]
            browser = chromium(work / "profile", width=1280, height=760)
            try:
                browser.get(address)
                time.sleep(0.5)
                output.parent.mkdir(parents=True, exist_ok=True)
                if not browser.save_screenshot(str(output)):
                    sys.exit(f"chromium could not save {output}")
            finally:
                browser.quit()
        finally:
            dashboard.terminate()
            dashboard.wait(timeout=20)
    print(f"wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
