"""Bad input through the real UI in chromium: the user sees a clear error, and can go on."""
from __future__ import annotations


import pytest

from tests.e2e.conftest import needs_chromium

pytestmark = [pytest.mark.e2e, needs_chromium]


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
    # the panel streams (audio, breakdown, then attachment): the next case starts on a finished
    # request, or its click would wait behind this one's post-processing
    page.wait_for_selector("#attachment a", timeout=120_000)
