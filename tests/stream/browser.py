"""Headless Chromium for tests that look at the web view: Debian's ``chromium`` driven
through its ``chromedriver`` with selenium. Not a test module.

:func:`chromium_or_skip` skips with the reason when the browser or its driver is not
installed (``apt-get install chromium chromium-driver``; ``.ci/run`` installs them), so
where CI runs, the browser test runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser")
DRIVER = "chromedriver"


def chromium_paths() -> tuple[str, str] | None:
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = shutil.which(DRIVER)
    return None if browser is None or driver is None else (browser, driver)


def chromium_or_skip() -> tuple[str, str]:
    paths = chromium_paths()
    if paths is None:
        pytest.skip("headless Chromium not installed: apt-get install chromium "
                    "chromium-driver (.ci/run installs them)")
    pytest.importorskip("selenium", reason="selenium (a dev dependency) is not installed")
    return paths


@contextmanager
def headless_chromium(size: tuple[int, int] = (1280, 900)) -> Iterator[Any]:
    """A selenium WebDriver on headless Chromium, quit on exit. Selenium Manager (which
    would download a driver) is not used: both paths are given."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={size[0]},{size[1]}", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def save_screenshot(driver: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"chromium could not save a screenshot to {path}")
    return path
