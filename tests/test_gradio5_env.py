"""The launcher inside an IndexTTS user's environment, for real: Python 3.10, Gradio 5.45 and the
other versions of IndexTTS v2.0.0's uv.lock (tests/userenvs.py builds and caches it), started the
documented way, `PYTHON=<env>/bin/python ./start_app.sh`.

Shows: the overlay adds only what the env lacks and the env is unchanged; /synthesize returns
audio with a full breakdown (raw HTTP and the env's own gradio_client 1.13); a bad request's error
text reaches a raw-HTTP SSE client (Gradio 5 sends `data: null` there unless app/ui/compat.py
bridges it). Skips, saying why, where the env cannot be built (no Python 3.10, registry down)."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import ROOT, Server, delivery_counts
from tests import userenvs

pytestmark = [pytest.mark.gradio5, pytest.mark.slow]

ADDED = {"espeakng-loader", "prometheus-client", "tomli", "plotly", "narwhals"}  # what v2.0.0's env lacks of ours
# (plotly draws the per-clip timeline; narwhals is plotly's own dependency)


@pytest.fixture(scope="module")
def user_env():
    try:
        env, secs, fresh = userenvs.build("gradio5")
    except userenvs.Unavailable as e:
        pytest.skip(f"IndexTTS-like env (py3.10, gradio 5.45) not buildable here: {e}")
    print(f"gradio5 env {'built' if fresh else 'cached'} in {secs:.1f} s: {env}")
    return env / "bin" / "python"


def _dists(py, *extra_path) -> dict:
    code = ("import json, sys, re; from importlib import metadata as m; "
            "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version "
            "for d in m.distributions(path=sys.argv[1:] or sys.path)}))")
    out = subprocess.run([str(py), "-c", code, *extra_path], capture_output=True, text=True, check=True, cwd="/")
    return json.loads(out.stdout)


def _overlay(py) -> tuple[str, str]:
    ov = subprocess.run([str(py), str(ROOT / "userenv.py"), "overlay"], capture_output=True, text=True, check=True)
    sites = subprocess.run([str(py), str(ROOT / "userenv.py"), "sitedirs"], capture_output=True, text=True, check=True)
    return ov.stdout.strip(), sites.stdout.strip()


@pytest.fixture(scope="module")
def g5_server(user_env, tmp_path_factory):
    before = _dists(user_env)
    assert before["gradio"] == "5.45.0" and "prometheus-client" not in before
    ov, sites = _overlay(user_env)
    p = subprocess.run(["bash", "-c", 'source ./bootstrap.sh && use_user_env "$0"', str(user_env)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and not userenvs.registry_reachable():
        pytest.skip(f"the overlay needs PyPI, which is unreachable: {p.stderr[-300:]}")
    assert p.returncode == 0, p.stderr
    assert _dists(user_env) == before  # the user's env is not changed
    added = set(_dists(user_env, *sites.split(":")))
    assert added == ADDED, f"overlay {ov} holds {added}, expected only {ADDED}"
    # opened: the attachment it checks is an operator action (app/access.py)
    # --audio-wait-s 2: the browser test counts how the analysis started (cause, not speed)
    srv = Server(tmp_path_factory.mktemp("g5"), "--version", "2", "--i-know-this-is-open", "--audio-wait-s", "2",
                 launcher=[ROOT / "start_app.sh"],
                 env={"PYTHON": str(user_env)}).start(timeout=300)
    yield srv
    assert srv.stop() == 0


def _sse(url: str) -> list[tuple[str, object]]:
    body = urllib.request.urlopen(url, timeout=300).read().decode()
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((lines.get("event"), json.loads(lines.get("data", "null"))))
    return events


def _call(srv, posted=None, **fields) -> list[tuple[str, object]]:
    """The REST route a curl user takes: POST the inputs (defaults from /info), then read the SSE.
    posted(sent, answered): called with time.monotonic() just before the POST and once it answered
    (the server stamps arrivals on the same system-wide clock, app/queue_time.py)."""
    base = srv.url + "gradio_api"
    params = json.load(urllib.request.urlopen(base + "/info"))["named_endpoints"]["/synthesize"]["parameters"]
    data = [fields.get(p["parameter_name"], p.get("parameter_default")) for p in params]
    req = urllib.request.Request(base + "/call/synthesize", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    sent = time.monotonic()
    eid = json.load(urllib.request.urlopen(req, timeout=30))["event_id"]
    if posted:
        posted(sent, time.monotonic())
    return _sse(f"{base}/call/synthesize/{eid}")


def test_runs_on_gradio5_and_python310(g5_server):
    out = g5_server.output()
    assert "* UI: Gradio 5.45.0, Python 3.10" in out
    assert "* Engine selection: auto: builtin engine" in out


def test_synthesize_over_raw_http_returns_audio_and_breakdown(g5_server):
    kind, data = _call(g5_server, text="Hello from the IndexTTS environment. 你好。")[-1]
    assert kind == "complete", data
    audio, rid, head, bd_rows, stage_rows, blk_rows, findings, timeline, attachment, bd = data
    wav = urllib.request.urlopen(audio["url"], timeout=30).read()
    samples, sr = sf.read(io.BytesIO(wav))
    assert sr == 22050 and len(samples) > sr // 2 and np.abs(samples).max() > 0.05
    b = bd["breakdown"]
    assert bd["request_id"] == rid and b["mode"] in ("full", "schedstat")
    assert b["totals"]["on_cpu_s"] > 0 and b["totals"]["wall_s"] > 0
    assert {s["name"] for s in b["stages"]} >= {"text", "acoustic", "voice"}
    assert bd_rows["data"] and stage_rows["data"]
    assert attachment["url"].endswith(".zip")


def test_queue_time_and_allowed_hosts_on_gradio5(g5_server):
    """Gradio 5.45 hands the handler the same ASGI scope (the arrival stamp), keeps the same queue
    (running/waiting), and the allowed-hosts middleware stands in front of its routes too."""
    import http.client
    import threading
    results, stamps, first_posted = {}, {}, threading.Event()
    # the first one long (~0.5 s of synthesis), so the second is sure to wait it out
    texts = ["Queued on Gradio five, the first request." + " Long enough to hold the service a while." * 6,
             "Queued on Gradio five, the second request."]

    def call(i):
        def posted(sent, answered):
            stamps[i] = (sent, answered)
            first_posted.set()
        results[i] = _call(g5_server, posted=posted, text=texts[i])[-1]
    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    threads[0].start()
    assert first_posted.wait(60)  # the second arrives after the first, by the server's stamps too
    threads[1].start()
    for t in threads:
        t.join(300)
    first, second = (results[i][1][-1] for i in range(2))
    assert (first["queue"]["ahead"], second["queue"]["ahead"]) == (0, 1), (first, second)
    # Ground truth on the shared monotonic clock: the first started after its POST was sent and
    # held the service for its wall_s; the second arrived before its POST answered. So the
    # second's queue time, measured from its HTTP arrival, covers at least the rest of the
    # first's synthesis. (Not compared with the first's queue time: that is Gradio's dispatch,
    # ~0.1 s on Gradio 5, and varies as much as a short synthesis lasts.)
    wall_1st = json.loads((g5_server.outputs / "clips" / first["request_id"] / "record.json").read_text())["wall_s"]
    bound = stamps[0][0] + wall_1st - stamps[1][1]
    assert wall_1st > 0.1 and second["queue"]["queue_s"] >= bound - 0.005, (first["queue"], second["queue"], wall_1st, stamps)
    metrics = urllib.request.urlopen(g5_server.url + "metrics", timeout=30).read().decode()
    assert "itts_queue_seconds_count{" in metrics and "itts_requests_waiting 0.0" in metrics
    c = http.client.HTTPConnection("127.0.0.1", g5_server.port, timeout=30)
    c.request("GET", "/config", headers={"Host": "rebind.attacker.example"})
    r = c.getresponse()
    assert r.status == 403 and b"--allowed-hosts rebind.attacker.example" in r.read()


def test_error_text_reaches_raw_sse_client(g5_server):
    kind, data = _call(g5_server, text="   ")[-1]
    assert kind == "error"
    assert data["error"] == "Text is empty: type something to synthesize."
    # and the server is still up and serving
    assert _call(g5_server, text="Still here.")[-1][0] == "complete"


def test_env_gradio_client_gets_audio_and_error(g5_server, user_env):
    code = f"""
from gradio_client import Client
from gradio_client.exceptions import AppError
c = Client({g5_server.url!r}, verbose=False)
r = c.predict(text="Client one point thirteen.", api_name="/synthesize")
print("AUDIO", r[0], r[-1]["breakdown"]["totals"]["on_cpu_s"] > 0)
try:
    c.predict(text="", api_name="/synthesize")
except AppError as e:
    print("ERROR", e)
"""
    p = subprocess.run([str(user_env), "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "AUDIO " in p.stdout and " True" in p.stdout
    assert "ERROR Text is empty: type something to synthesize." in p.stdout


def test_conflict_names_the_package_and_changes_nothing(tmp_path):
    """An env whose prometheus_client is older than we accept: the launcher refuses, names it,
    and neither the env nor the overlay changes (start_app.sh exits non-zero before webui.py)."""
    try:
        env, _, _ = userenvs.build("gradio5-oldprom")
    except userenvs.Unavailable as e:
        pytest.skip(f"env not buildable here: {e}")
    py = env / "bin" / "python"
    before = _dists(py)
    ov, sites = _overlay(py)
    p = subprocess.run([str(ROOT / "start_app.sh"), "--port", "1", "--outputs", str(tmp_path)], cwd=tmp_path,
                       env={**__import__("os").environ, "PYTHON": str(py)}, capture_output=True, text=True,
                       timeout=600)
    if p.returncode != 0 and "conflict" not in p.stderr and not userenvs.registry_reachable():
        pytest.skip("PyPI unreachable")
    assert p.returncode == 1, p.stderr
    assert f"cannot add the launcher's packages to {py} without changing its prometheus-client" in p.stderr
    assert "The user requested (constraint) prometheus-client==0.16.0" in p.stderr
    assert "Running on" not in p.stdout
    assert _dists(py) == before
    assert not _dists(py, *sites.split(":"))  # nothing half-installed in the overlay


@contextlib.contextmanager
def browser_page(url: str):
    """A page of Debian chromium (Playwright) on `url`, the app loaded; skips without chromium."""
    from tests.e2e.conftest import ARGS, CHROMIUM, needs_chromium
    if needs_chromium.args[0]:
        pytest.skip(needs_chromium.kwargs["reason"])
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.wait_for_selector("#generate")
            yield page
        finally:
            browser.close()


def test_gradio5_page_fetches_the_audio_before_the_analysis_starts(g5_server):
    """Gradio 5.45's own page in a real browser: the player fetches the clip's wav on the first
    update, which (not the timeout) starts the analysis (app/delivery.py); the breakdown update,
    whose audio slot is gr.skip(), keeps the player, and the clip ends complete."""
    before = delivery_counts(g5_server)
    with browser_page(g5_server.url) as page:
        page.locator("#text textarea").fill("Gradio five in a browser. 第五版。")
        page.locator("#generate").click()
        page.wait_for_function("""() => {
            const h = document.querySelector('#clip_head')?.innerText || '';
            return h.includes('Trace mode') && !h.includes('Analysing'); }""")
        assert "audio.wav" in page.locator("#out_audio").inner_html()  # the player kept its clip
    after = delivery_counts(g5_server)
    assert after["fetched"] == before["fetched"] + 1 and after["timeout"] == before["timeout"], (before, after)


def test_gradio5_live_player_plays_before_the_clip_is_complete(g5_server):
    """Gradio 5.45's streaming audio output (through the same live_player code): on its own page
    in a real browser the live player is playing a long text's first segment before the
    request's complete clip has arrived."""
    from tests.e2e.live import play_long_text
    if shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg: the live player is hidden")
    with browser_page(g5_server.url) as page:
        seen = play_long_text(page)
    assert seen["playing"]["full_then"] is False and seen["playing"]["t"] < seen["full"]["t"], seen
    assert "First sound" in seen["done"]["head"]


def test_gradio5_client_gets_segments_from_the_stream_endpoint(g5_server, user_env):
    """The env's gradio_client 1.13 on /synthesize_stream: one wav per segment, then the clip."""
    fields = {"text": " ".join(f"Sentence number {w} is long enough to be a segment of its own here."
                               for w in ("one", "two", "three", "four")), "max_tokens_seg": 20}
    p = subprocess.run([str(user_env), str(ROOT / "tests" / "stream_client.py"), g5_server.url, json.dumps(fields)],
                       capture_output=True, text=True, timeout=300, cwd="/")
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    assert len(res["segments"]) == len(res["final"]["segment_s"]) >= 4
    assert res["first_s"] < res["audio_s"] and res["clip"].endswith("audio.wav")
