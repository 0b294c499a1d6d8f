"""A clip whose text arrived with lone UTF-16 surrogates (JSON allows them, UTF-8 cannot encode
them) must not break the page for the next visitor: the History rows are sent on every page load,
and one such row once left every later request in the browser spinning."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import needs_chromium
from tests.test_bad_input import raw_call

pytestmark = [pytest.mark.e2e, needs_chromium]


@pytest.mark.parametrize("text", ["Hello \ud800 world", "\udfff tail \ud83d"])
def test_page_works_after_a_clip_with_lone_surrogates(server, request, text):
    outcome, data = raw_call(server, "synthesize", dict(text=text))
    assert outcome == "complete", data[:300]
    page = request.getfixturevalue("page")  # the page loads (History included) after that clip
    page.reload()
    page.wait_for_selector("#generate")
    page.locator("#text textarea").fill("")
    page.locator("#generate").click()
    page.get_by_text("Text is empty").first.wait_for(timeout=60_000)
