"""Debian's chromium, headless, driven through its chromedriver by selenium:
for the dashboard's browser test and `scripts/screenshot`.

No browser is downloaded: both binaries come from Debian's packages
(`apt-get install chromium chromium-driver`, which `scripts/test` runs when
they are missing), and selenium is given their paths, so its manager looks
nothing up. The flags keep chromium off the network this machine does not
have and out of any profile but a fresh one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

#: What to run when chromium or its driver is missing.
INSTALL_ADVICE = (
    "the browser test needs Debian's chromium and chromium-driver: `bash scripts/test` "
    "installs them, or run `apt-get install chromium chromium-driver`"
)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def binaries() -> tuple[str, str] | None:
    """The paths of chromium and chromedriver, or None if either is missing."""
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return None if chromium is None or driver is None else (chromium, driver)


def chromium(profile: Path, width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """A headless chromium with a fresh profile in `profile` and a window of
    `width` x `height`. Raises RuntimeError if it is not installed."""
    found = binaries()
    if found is None:
        raise RuntimeError(INSTALL_ADVICE)
    browser, driver = found
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium's manager must fetch nothing
    options = Options()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.set_page_load_timeout(30)
    chrome.set_script_timeout(30)
    return chrome
