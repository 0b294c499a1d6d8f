"""The real UI in a real browser (Debian chromium driven by Playwright).

A user generates speech, sees that clip's kernel breakdown with a timeline, switches to the pinned
preset, generates again, compares the two presets, and downloads both attachments.
Screenshots land in test-artifacts/ (kept by CI as artefacts).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS

from tests.e2e.conftest import needs_chromium

pytestmark = [pytest.mark.e2e, needs_chromium]


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def pick(page, elem_id, option):
    page.locator(f"#{elem_id} input").first.click()
    page.locator(f'#{elem_id} li[role=option][aria-label="{option}"]').first.click()
    page.keyboard.press("Escape")


def generate(page, text):
    before = page.locator("#clip_id textarea, #clip_id input").first.input_value()
    page.locator("#text textarea").fill(text)
    page.locator("#generate").click()
    page.wait_for_function(
        """(before) => { const e = document.querySelector('#clip_id textarea, #clip_id input');
                        return e && e.value && e.value !== before; }""", arg=before, timeout=180_000)
    page.wait_for_selector("#out_audio audio, #out_audio [data-testid='waveform-controls'], #out_audio button")
    # the panel streams (audio first, breakdown and attachment after): wait for the complete clip
    page.wait_for_selector("#attachment a", timeout=180_000)
    return page.locator("#clip_id textarea, #clip_id input").first.input_value()


def download_attachment(page, locator_css, dest: Path) -> Path:
    with page.expect_download() as d:
        page.locator(locator_css).first.click()
    d.value.save_as(dest)
    return dest


def check_attachment(path: Path, rid: str):
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"trace.txt", "summary.json", "report.txt"} <= names
        summary = json.loads(z.read("summary.json"))
        assert summary["request_id"] == rid
        raw = z.read("trace.txt").decode()
        if summary["breakdown"]["mode"] == "full":
            assert raw.startswith("# tracer:")
            assert "sched_waking" in raw and "B|" in raw  # opens in ui.perfetto.dev with slices
    return summary


def test_user_journey(page, tmp_path):
    rid1 = generate(page, "你好，这是第一次合成。Hello from the browser.")
    page.wait_for_selector("#breakdown table")
    page.wait_for_selector("#timeline_plot .js-plotly-plot")
    assert "run-queue" in page.locator("#breakdown").inner_text().lower()
    shot(page, "01-first-clip")
    a1 = download_attachment(page, "#attachment a", tmp_path / "a1.zip")
    s1 = check_attachment(a1, rid1)

    # switch the service to the pinned preset from the Scheduling tab
    page.get_by_role("tab", name="调度 / Scheduling").click()
    pick(page, "sched_preset", "pinned")
    page.locator("#apply_service").click()
    page.wait_for_function("() => document.querySelector('#sched_state')?.innerText.includes('pinned')")
    shot(page, "02-scheduling-pinned")
    page.get_by_role("tab", name="合成 / Synthesize").click()
    rid2 = generate(page, "第二次合成，已经绑定处理器。Pinned now.")
    assert rid2 != rid1
    a2 = download_attachment(page, "#attachment a", tmp_path / "a2.zip")
    s2 = check_attachment(a2, rid2)
    assert s2["preset"]["preset"] == "pinned" and s1["preset"]["preset"] != "pinned"
    shot(page, "03-second-clip")

    # compare default vs pinned side by side
    page.get_by_role("tab", name="对比 / Compare").click()
    pick(page, "cmp_a", "default")
    pick(page, "cmp_b", "pinned")
    page.locator("#compare").click()
    page.wait_for_selector("#cmp_table table", timeout=240_000)
    page.wait_for_function("() => document.querySelector('#cmp_table')?.innerText.includes('run-queue wait')")
    shot(page, "04-compare")
    table = page.locator("#cmp_table").inner_text()
    assert "pinned" in table and "default" in table
    # leave the shared server as found: the service preset back to default (a later page that names
    # no preset keeps what is in force, so it would otherwise run pinned)
    page.get_by_role("tab", name="调度 / Scheduling").click()
    pick(page, "sched_preset", "default")
    page.locator("#apply_service").click()
    page.wait_for_function("() => document.querySelector('#sched_state')?.innerText.includes('default')")
