"""The Scheduling tab's advisor in a real browser: open it, run a one-request-per-preset trial,
read the recommendation and its evidence table, find the recommended preset put in the preset
choice, and nothing applied (the in-force line still names the preset it named before).
Marker presets_live (the trial runs a dozen traced requests)."""
from __future__ import annotations

import re

import pytest

from tests.conftest import ARTIFACTS
from tests.e2e.conftest import needs_chromium

pytestmark = [pytest.mark.e2e, pytest.mark.presets_live, needs_chromium]


def test_advisor_recommends_and_applies_nothing(page):
    page.get_by_role("tab", name="调度 / Scheduling").click()
    page.locator("#refresh_sched").click()
    page.wait_for_function("() => (document.querySelector('#sched_state')?.innerText || '').includes('In force')")
    before = re.search(r"In force:\s*(\S+)", page.locator("#sched_state").inner_text()).group(1)
    page.get_by_text("Advisor: which preset holds up on this machine now?").click()
    page.locator("#advise_n input").fill("1")
    page.locator("#advise_run").click()
    page.wait_for_function("() => (document.querySelector('#advise_md')?.innerText || '').includes('Recommended')",
                           timeout=300_000)
    md = page.locator("#advise_md").inner_text()
    pick = re.search(r"Recommended:\s*(\S+)", md).group(1)
    assert "Nothing was applied" in md
    table = page.locator("#advise_table").inner_text()
    assert "default" in table and "pinned" in table and f"★ {pick}" in table
    assert page.locator("#sched_preset input").first.input_value() == pick
    page.locator("#refresh_sched").click()
    page.wait_for_timeout(1000)
    assert re.search(r"In force:\s*(\S+)", page.locator("#sched_state").inner_text()).group(1) == before
    page.screenshot(path=str(ARTIFACTS / "advisor.png"), full_page=True)
