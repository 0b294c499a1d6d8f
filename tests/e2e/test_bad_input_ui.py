"""Bad input through the real UI in chromium: the user sees a clear error, and can go on."""
from __future__ import annotations

import os

import pytest

from tests.e2e.test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")]


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1600})
        pg.set_default_timeout(120_000)
        pg.goto(server.url)
        pg.wait_for_selector("#generate")
        yield pg
        browser.close()


def submit(page, text):
    page.locator("#text textarea").fill(text)
    page.locator("#generate").click()


@pytest.mark.parametrize("text,expect", [("", "Text is empty"), ("a" * 2001, "the limit is 2000"),
                                         ("。。。!!!", "nothing to speak")])
def test_bad_text_shows_a_clear_error_then_a_normal_request_works(page, server, text, expect):
    submit(page, text)
    page.get_by_text(expect).first.wait_for(timeout=60_000)
    before = page.locator("#clip_id textarea, #clip_id input").first.input_value()
    submit(page, "After the error, a normal request.")
    page.wait_for_function(
        """(before) => { const e = document.querySelector('#clip_id textarea, #clip_id input');
                        return e && e.value && e.value !== before; }""", arg=before, timeout=120_000)
