"""The Snapshots tab in a real browser: the periodic series' p50/p95 plot and latest verdict.

The series is written the way the snapshot CLI writes it (tracing.series.Series.record) into the
server's default --snapshot-series directory: a pinned quiet baseline, a quiet snapshot and one
with a 3x tail of stalls."""
from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS
from tests.e2e.conftest import needs_chromium

pytestmark = [pytest.mark.e2e, needs_chromium]


def test_series_plot_and_verdict(page, server):
    from tests.test_series import _write, quiet, stalled
    from tracing.series import Series
    s = Series(server.outputs / "snapshot-series", keep=10)
    s.record(_write(s.next_dir(), quiet(11)), pin=True)
    s.record(_write(s.next_dir(), quiet(12)))
    s.record(_write(s.next_dir(), stalled(13)))

    page.get_by_role("tab", name="快照 / Snapshots").click()
    page.locator("#snap_series_refresh").click()
    page.wait_for_function("() => document.querySelector('#snap_series_text textarea')?.value"
                           ".includes('REGRESSION against the baseline')")
    text = page.locator("#snap_series_text textarea").input_value()
    assert "TAIL REGRESSION" in text and "default: wall tail" in text
    img = page.locator("#snap_series_image img")
    img.wait_for()
    assert img.evaluate("i => i.complete && i.naturalWidth") > 600
    page.locator("#snap_series_image").screenshot(path=str(ARTIFACTS / "snapshots-series.png"))
