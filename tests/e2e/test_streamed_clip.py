"""The clip panel streams: in a real browser the audio of a request is playable before that same
request's kernel breakdown has arrived, and the breakdown, timeline and attachment follow."""
from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS, delivery_counts
from tests.e2e.conftest import needs_chromium

pytestmark = [pytest.mark.e2e, needs_chromium]

# Records, on every DOM change of the page, the first moment (performance.now) each part of the
# clip panel shows for a request id other than the one shown before the click.
WATCH = """(before) => {
  window.__seen = {};
  const note = (what, id, extra) => { if (!window.__seen[what]) window.__seen[what] = {t: performance.now(), id, ...extra}; };
  const check = () => {
    const id = document.querySelector('#clip_id textarea, #clip_id input')?.value || '';
    if (!id || id === before) return;
    const audio = !!document.querySelector('#out_audio a[data-testid="download-link"][href*="audio.wav"]');
    const bd = (document.querySelector('#breakdown')?.innerText || '').toLowerCase().includes('run-queue');
    const head = document.querySelector('#clip_head .prose, #clip_head [data-testid="markdown"]')?.innerText || '';
    const progress = document.querySelector('#clip_head [data-testid="status-tracker"]')?.innerText || '';
    if (audio && !bd && progress.includes('analysing the trace')) note('analysing', id, {});
    if (audio) note('audio', id, {breakdown_then: bd});
    if (audio && !bd) window.__seen.audio_only_head = {id, head};  // the last such moment: rendered by then
    if (bd) note('breakdown', id, {audio_then: audio});
    if (document.querySelector('#attachment a')) note('attachment', id, {});
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def test_audio_shows_before_the_breakdown_of_the_same_request(page, server):
    delivered = delivery_counts(server)
    before = page.locator("#clip_id textarea, #clip_id input").first.input_value()
    page.evaluate(WATCH, before)
    page.locator("#text textarea").fill("先听到声音，再看到分析。The audio comes first, then its breakdown.")
    page.locator("#generate").click()
    page.wait_for_function("() => window.__seen.audio && window.__seen.breakdown && window.__seen.attachment",
                           timeout=180_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "streamed-clip-complete.png"), full_page=True)
    seen = page.evaluate("window.__seen")
    audio, bd, att = seen["audio"], seen["breakdown"], seen["attachment"]
    assert audio["id"] == bd["id"] == att["id"] != before  # one request throughout
    # the audio was on the page while that request's breakdown was not, and the head said why
    assert audio["breakdown_then"] is False and audio["t"] < bd["t"] <= att["t"]
    last = seen["audio_only_head"]
    assert last["id"] == audio["id"] and "Analysing the kernel trace" in last["head"] and audio["id"] in last["head"]
    # in between, the progress indicator says what is going on
    assert seen.get("analysing", {}).get("id") == audio["id"]
    assert bd["audio_then"] is True  # the breakdown joins the audio, it does not replace it
    final_head = page.locator("#clip_head").inner_text()
    assert "Analysing" not in final_head and "Trace mode" in final_head
    # the page's player fetched the wav at once: that download, not the timeout, started the analysis
    after = delivery_counts(server)
    assert after["fetched"] == delivered["fetched"] + 1 and after["timeout"] == delivered["timeout"]
