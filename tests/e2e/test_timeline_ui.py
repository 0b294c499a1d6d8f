"""The interactive timeline in a real browser: hover a running segment of the synthesis thread and
read its duration and CPU; zoom by dragging and see the visible range change; the compare tab
draws both clips on one time axis. Screenshots in test-artifacts/.
"""
from __future__ import annotations

import re

import pytest

from tests.conftest import ARTIFACTS
from tests.e2e.conftest import needs_chromium
from tests.e2e.test_browser import generate, pick

pytestmark = [pytest.mark.e2e, needs_chromium]

PLOT = "#timeline_plot .js-plotly-plot"

# The pixel centre of the widest bar of `state` in the lane whose label starts with `lane`,
# computed from the figure plotly.js drew (its own axis conversions), plus that bar's data.
WIDEST_BAR = """([sel, lane, state]) => {
  const gd = document.querySelector(sel);
  let best = null;
  gd._fullData.forEach((tr) => {
    if (!String(tr.meta).endsWith(state)) return;
    for (let i = 0; i < tr.x.length; i++) {
      if (!String(tr.y[i]).startsWith(lane)) continue;
      if (!best || tr.x[i] > best.dur) best = {dur: tr.x[i], base: tr.base[i], y: tr.y[i], cd: tr.customdata[i]};
    }
  });
  if (!best) return null;
  const fl = gd._fullLayout, box = gd.querySelector('.nsewdrag').getBoundingClientRect();
  best.px = box.left + fl.xaxis.d2p(best.base + best.dur / 2);
  best.py = box.top + fl.yaxis.d2p(best.y);
  return best;
}"""
HOVER_LINES = """() => Array.from(document.querySelectorAll('.hoverlayer .hovertext tspan.line'))
                     .map(t => t.textContent)"""
X_RANGE = "(sel) => document.querySelector(sel)._fullLayout.xaxis.range.slice()"


def plot_shot(page, name, sel="#timeline_plot"):
    """The plot alone, as it is on screen now (hover label included)."""
    box = page.locator(sel).bounding_box()
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), clip=box)


def test_hover_and_zoom_the_synthesis_thread(page):
    generate(page, "你好，时间线。Hover me, then zoom in.")
    # attached, not visible: the first bar may be a zero-width segment (a 0.0 ms switch)
    page.wait_for_selector(f"{PLOT} .barlayer .point", state="attached")
    page.locator(PLOT).scroll_into_view_if_needed()
    lanes = page.evaluate(f"() => document.querySelector('{PLOT}')._fullLayout.yaxis.categoryarray")
    assert lanes[-1].startswith("tts-synth "), lanes  # the synthesis thread, named by role, on top
    assert any(lbl.startswith("torch-intra-") for lbl in lanes), lanes
    bar = page.evaluate(WIDEST_BAR, [PLOT, "tts-synth", "running"])
    assert bar, "no running segment of the synthesis thread"
    page.mouse.move(bar["px"], bar["py"])
    page.wait_for_selector(".hoverlayer .hovertext")
    lines = page.evaluate(HOVER_LINES)
    plot_shot(page, "10-timeline-hover")
    assert lines[0].startswith("tts-synth ") and "state: running" in lines[1]
    text = "\n".join(lines)
    dur = float(re.search(r"duration: ([\d.]+) ms", text).group(1))
    start = float(re.search(r"start: ([\d.]+) ms", text).group(1))
    cpu = re.search(r"CPU: (\d+)", text).group(1)
    assert dur == pytest.approx(bar["dur"], abs=0.001) and dur > 0
    assert start == pytest.approx(bar["base"], abs=0.001)
    assert int(cpu) == bar["cd"][1] and dur == pytest.approx(bar["cd"][0], abs=0.001)  # (duration ms, CPU)
    assert "blocker: -" in text

    # zoom: drag across the middle of the plot
    before = page.evaluate(X_RANGE, PLOT)
    box = page.locator(f"{PLOT} .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.55, y + 5, steps=6)
    page.mouse.up()
    page.wait_for_function(f"(b) => {{ const r = document.querySelector('{PLOT}')._fullLayout.xaxis.range;"
                           " return r[0] !== b[0] || r[1] !== b[1]; }", arg=before)
    after = page.evaluate(X_RANGE, PLOT)
    plot_shot(page, "11-timeline-zoomed")
    span0, span1 = before[1] - before[0], after[1] - after[0]
    assert span1 < 0.5 * span0  # ~30% of the width selected
    assert after[0] == pytest.approx(before[0] + 0.25 * span0, rel=0.1, abs=0.05 * span0)


def test_compare_tab_draws_both_clips_on_one_axis(page):
    generate(page, "第二段。A second clip to compare.")
    page.get_by_role("tab", name="对比 / Compare").click()
    pick(page, "cmp_a", "default")
    pick(page, "cmp_b", "default")
    page.locator("#compare").click()
    sel = "#cmp_timeline .js-plotly-plot"
    page.wait_for_selector(f"{sel} .barlayer .point", state="attached", timeout=240_000)
    lay = page.evaluate(f"() => {{ const l = document.querySelector('{sel}')._fullLayout;"
                        " return [l.xaxis.matches || null, l.xaxis2 ? l.xaxis2._id : null]; }")
    assert lay == ["x2", "x2"]  # two rows, one shared time axis
    page.locator(sel).scroll_into_view_if_needed()
    plot_shot(page, "12-compare-timeline", "#cmp_timeline")
