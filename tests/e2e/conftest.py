"""Browser fixtures: Debian chromium driven by Playwright (never `playwright install`)."""
from __future__ import annotations

import os

import pytest

from tests.conftest import ARTIFACTS

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")


@pytest.fixture(scope="module")
def page(server):
    """A fresh headless page on the shared server, one per test module."""
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        ctx = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1800})
        pg = ctx.new_page()
        pg.set_default_timeout(120_000)
        pg.goto(server.url)
        pg.wait_for_selector("#generate")
        yield pg
        browser.close()
