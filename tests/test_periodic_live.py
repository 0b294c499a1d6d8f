"""Periodic snapshots against a live launcher (the session's webui.py server): the CLI a systemd
timer runs keeps a series in the launcher's --snapshot-series directory, waits for user requests
to finish before probing and says so, /metrics exports the latest verdict (and the documented
alert rule's expression fires on a regression), and the Snapshots tab plots the series."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_metrics import _plain, _value

pytestmark = pytest.mark.slow
LONG = "This request keeps the service busy for a while, so that the periodic probe has to wait. " * 6


def scrape(server) -> str:
    return urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()


def snapshot_args(server, series, *extra):
    return [sys.executable, "-m", "app", "snapshot", "--url", server.url, "--series", str(series),
            "--presets", "default", "-n", "3", "--no-plot", "--keep", "3", *extra]


def snapshot(server, series, *extra):
    return subprocess.run(snapshot_args(server, series, *extra), cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_periodic_series_waits_for_idle_exports_and_plots(server, client):
    from tests.test_series import _write, quiet, stalled
    from tracing.series import Series, load_series

    series = server.outputs / "snapshot-series"  # the launcher's default --snapshot-series
    # user requests back to back until the run reached its first probe (its "warm-up" line: the
    # gate is polling then), and a second more: the probe must wait for them and say so
    stop = threading.Event()

    def user():
        while not stop.is_set():
            client.predict(text=LONG, preset="default", scope="this request only", api_name="/synthesize")

    users = threading.Thread(target=user)
    users.start()
    try:
        deadline = time.monotonic() + 60
        while _plain(scrape(server), "itts_service_busy") != 1:
            assert time.monotonic() < deadline, "the user requests never made the service busy"
            time.sleep(0.05)
        t0 = time.monotonic()
        proc = subprocess.Popen(snapshot_args(server, series, "--pin"), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            if "warm-up" in line:
                break
        time.sleep(1.0)
    finally:
        stop.set()
        users.join(120)
    out, err = proc.communicate(timeout=300)
    took = time.monotonic() - t0
    first = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Pinned as the baseline" in first.stdout and "idle: waited" in first.stdout, first.stdout
    data = load_series(series)
    assert data["baseline"] == data["entries"][-1]["name"] and data["entries"][-1]["idle"]["waits"] >= 1

    second = snapshot(server, series)
    assert second.returncode == 0, second.stdout + second.stderr  # N = 3 cannot flag anything (docs/snapshots.md)
    assert "Against the baseline" in second.stdout and "idle before every probe" in second.stdout
    body = scrape(server)
    assert _value(body, "itts_snapshot_regression", kind="any") == 0
    assert _plain(body, "itts_snapshot_series_entries") >= 2 and _plain(body, "itts_service_busy") == 0
    assert _value(body, "itts_snapshot_seconds", preset="default", metric="wall", quantile="0.95", snapshot="latest") > 0

    # a re-pinned baseline and a regressed snapshot (hand-made: a tail of 3x stalls) in the series
    s = Series(series, keep=3)
    first_name = data["entries"][-1]["name"]
    pinned = s.record(_write(s.next_dir(), quiet(7)), pin=True)
    s.record(_write(s.next_dir(), stalled(8)))  # keep=3: the oldest entry that is not the baseline goes
    data = load_series(series)
    assert data["baseline"] == pinned["name"] and len(data["entries"]) == 3
    assert first_name not in [e["name"] for e in data["entries"]] and not (series / first_name).exists()
    body = scrape(server)
    rules = yaml.safe_load((ROOT / "docs/alerts/snapshots.rules.yml").read_text())["groups"][0]["rules"]
    expr = next(r["expr"] for r in rules if r["alert"] == "TTSPressureRegression")
    assert expr == 'itts_snapshot_regression{kind="any"} == 1'
    assert _value(body, "itts_snapshot_regression", kind="any") == 1  # the rule fires

    text, image = client.predict(api_name="/snapshot_series")
    assert "REGRESSION against the baseline" in text and "TAIL REGRESSION" in text, text
    with open(image, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    print(f"\nfirst periodic snapshot (3 probes + warm-up, behind user requests): {took:.1f} s")
