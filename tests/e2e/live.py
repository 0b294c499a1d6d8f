"""Watching the live player in a real page (shared by the Gradio 6 e2e test and the Gradio 5.45 env
test): when the player's <audio> started playing, and when the request's complete clip arrived."""
from __future__ import annotations

# 30 sentences (~1900 characters, ~440 tokens): four or more segments at the UI's default 120
# tokens per segment, long enough that synthesis is still going when the first segment plays
LONG_TEXT = " ".join(f"Part {i} of the text plays while the rest is still being made." for i in range(1, 31))

# performance.now() of: the live player's first `playing` (its currentTime then), the complete
# clip's audio link in the clip panel (synthesis over), and the final head (attachment stage over)
WATCH = """(before) => {
  window.__live = {};
  document.addEventListener('playing', e => {
    if (e.target.closest && e.target.closest('#live_audio') && !window.__live.playing)
      window.__live.playing = {t: performance.now(), full_then: !!window.__live.full};
  }, true);
  const check = () => {
    const id = document.querySelector('#clip_id textarea, #clip_id input')?.value || '';
    if (!id || id === before) return;
    if (!window.__live.full && document.querySelector('#out_audio a[href*="audio.wav"]'))
      window.__live.full = {t: performance.now(), id};
    const h = document.querySelector('#clip_head')?.innerText || '';
    if (!window.__live.done && h.includes('First sound') && h.includes('Trace mode') && !h.includes('Analysing'))
      window.__live.done = {t: performance.now(), head: h};
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                      characterData: true});
}"""


def play_long_text(page, text: str = LONG_TEXT) -> dict:
    """Click Synthesize on `text` and wait for the complete clip; returns window.__live with
    `click` (performance.now() of the click) added."""
    before = page.locator("#clip_id textarea, #clip_id input").first.input_value()
    page.evaluate(WATCH, before)
    page.locator("#text textarea").fill(text)
    click = page.evaluate("performance.now()")
    page.locator("#generate").click()
    try:
        page.wait_for_function("() => window.__live.full && window.__live.done", timeout=240_000)
        page.wait_for_function("() => window.__live.playing", timeout=30_000)
    except Exception as e:  # say what was seen: which step never came
        raise AssertionError(f"{e}; seen: {page.evaluate('window.__live')}; head: "
                             f"{page.locator('#clip_head').inner_text()[:600]}") from None
    return {**page.evaluate("window.__live"), "click": click}
