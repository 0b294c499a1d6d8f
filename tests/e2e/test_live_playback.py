"""The page's live player starts on the first segment of a long text while the rest is still being
made: in a real browser (Debian Chromium, Gradio 6's HLS player), the <audio> of #live_audio is
playing before the request's complete clip has arrived."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import ARTIFACTS
from tests.e2e.conftest import needs_chromium
from tests.e2e.live import play_long_text

# slow: a ~1900-character text through a real browser (tens of seconds on 2 busy vCPUs)
pytestmark = [pytest.mark.e2e, pytest.mark.slow, needs_chromium,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg: the live player is hidden")]


def test_live_player_plays_before_the_request_completes(page, server):
    seen = play_long_text(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live-playback.png"), full_page=True)
    playing, full = seen["playing"], seen["full"]
    # the player was playing before the complete clip reached the page (synthesis still going)
    assert playing["full_then"] is False and seen["click"] < playing["t"] < full["t"], seen
    rec = json.loads((server.outputs / "clips" / full["id"] / "record.json").read_text())
    segs = rec["segment_s"]
    assert len(segs) >= 4 and rec["first_sound_s"] == segs[0] < rec["wall_s"]
    # the page says it: time to first sound and what happened before it
    assert f"First sound {rec['first_sound_s'] * 1000:.0f} ms" in seen["done"]["head"]
    assert "Before the first sound" in seen["done"]["head"]
