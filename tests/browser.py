"""A real headless Chromium for the explorer tests, driven by selenium.

The browser and its driver are the system's (Debian's `chromium` and
`chromium-driver`; `make browser` installs them), never downloaded at run time:
selenium is told exactly which binaries to use, so its driver manager stays idle.
`PONDER_CHROMIUM` and `PONDER_CHROMEDRIVER` point elsewhere.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

INSTALL_HINT = "install Debian's chromium and chromium-driver (`make browser`)"


def _binary(variable: str, *names: str) -> str:
    found = os.environ.get(variable) or next(filter(None, map(shutil.which, names)), None)
    if not found:
        raise RuntimeError(f"no {names[0]} found: {INSTALL_HINT}, or set {variable}")
    return found


@contextmanager
def headless_chromium() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _binary("PONDER_CHROMIUM", "chromium", "chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    service = Service(_binary("PONDER_CHROMEDRIVER", "chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def poll(check: Callable[[], T], within_s: float, every_s: float = 0.05) -> T:
    """The first truthy value of `check()` within `within_s`, else AssertionError."""
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within_s} s: {check}")
        time.sleep(every_s)
