"""Regenerates docs/img/clip.png, the README's picture of a clip: the launcher started for real
(builtin engine), one request made in Debian chromium while a pinned CPU hog competes with it, and
the clip panel captured once its breakdown, findings and timeline are in.

    .venv/bin/python docs/screenshot.py [--out docs/img/clip.png] [--no-hog]

Needs what the browser tests need (chromium, Playwright) and root for a full trace.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import Server  # noqa: E402  (the launcher as the tests start it)
from tests.e2e.conftest import ARGS, CHROMIUM  # noqa: E402

TEXT = "Every click stalls for a second or two. Here is who held the CPU while this sentence was made."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "clip.png"))
    ap.add_argument("--no-hog", action="store_true", help="no competing stress-ng (a quiet clip)")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright
    tmp = Path(tempfile.mkdtemp(prefix="itts-shot-"))
    srv = Server(tmp, "--i-know-this-is-open").start()
    hog = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.set_default_timeout(180_000)
            page.goto(srv.url)
            page.wait_for_selector("#generate")
            if not a.no_hog and shutil.which("stress-ng"):
                hog = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "60"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            page.locator("#text textarea").fill(TEXT)
            page.locator("#generate").click()
            page.wait_for_selector("#attachment a")
            if hog:
                hog.terminate()
            page.wait_for_selector("#timeline_plot .plot-container")
            # from the audio player down to the timeline: what a user reads first
            top = page.locator("#out_audio").bounding_box()
            bottom = page.locator("#timeline_plot").bounding_box()
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=a.out, full_page=True, clip={
                "x": top["x"], "y": top["y"], "width": top["width"],
                "height": bottom["y"] + bottom["height"] - top["y"]})
            browser.close()
    finally:
        if hog and hog.poll() is None:
            hog.kill()
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
