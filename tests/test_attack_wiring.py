"""Attacks 3, 5, 6, 7, 9 through real servers (each with the flags its case needs), plus the
decisions on the login page, login rate and queue size. Each case checks a clear error within a
bound, the server still serving, nothing lost or leaked, and scheduling unchanged where it must be.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from models import limits
from tests.conftest import ROOT, TRACEFS, Server, settled_instances
from tests.proc_state import sched_changes, thread_sched

LAST_CPU = max(os.sched_getaffinity(0))
BOUND_S = 30.0


# ------------------------------------------------------------------------------- helpers ----
def call(srv, api: str, values: dict | None = None, headers: dict | None = None, data: list | None = None,
         cookie: str | None = None) -> tuple[str, object]:
    """POST /gradio_api/call/<api> by parameter name (others: the endpoint's defaults, as any
    client fills them) and read the SSE result: ("complete", data) or ("error", message)."""
    h = {"Content-Type": "application/json", **(headers or {})}
    if data is None:
        info = json.loads(urllib.request.urlopen(urllib.request.Request(
            srv.url + "gradio_api/info", headers=h), timeout=30).read())
        params = info["named_endpoints"][f"/{api}"]["parameters"]
        data = [(values or {}).get(p["parameter_name"], p.get("parameter_default")) for p in params]
    req = urllib.request.Request(srv.url + f"gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                 headers=h)
    try:
        eid = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    except urllib.error.HTTPError as e:
        return "http", f"{e.code} {e.read().decode(errors='replace')}"
    stream = urllib.request.urlopen(urllib.request.Request(srv.url + f"gradio_api/call/{api}/{eid}", headers=h),
                                    timeout=120).read().decode()
    event, payload = None, None
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            payload = line.split(":", 1)[1].strip()
    if event == "error":
        return "error", (json.loads(payload) or {}).get("error", "") if payload and payload != "null" else ""
    return event, json.loads(payload) if payload else None


def status(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        r = urllib.request.urlopen(req, timeout=30)
        return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start(servers, tmp_path, *flags, env=None) -> Server:
    srv = Server(tmp_path, "--no-warmup", *flags)
    if env:
        os.environ.update(env)
    try:
        servers.append(srv.start())
    finally:
        for k in env or {}:
            os.environ.pop(k, None)
    return srv


def in_force(srv) -> str:
    ok, out = call(srv, "scheduling_state", {})
    assert ok == "complete", out
    return out[2]["preset"]


# ------------------------------------------------- 3: not naming a preset keeps what is in force ----
def test_unnamed_preset_keeps_the_service_preset(tmp_path, servers):
    srv = start(servers, tmp_path, "--i-know-this-is-open")
    c = Client(srv.url, verbose=False)
    c.predict("pinned", api_name="/apply_preset")
    before = thread_sched(srv.proc.pid)
    variants = {
        "gradio_client, text only": lambda: c.predict(text="Keep it.", api_name="/synthesize")[9],
        "gradio_client, request scope, no preset": lambda: c.predict(text="Keep it.", scope="this request only",
                                                                      api_name="/synthesize")[9],
        "raw HTTP, the endpoint's defaults": lambda: call(srv, "synthesize", {"text": "Keep it."})[1][9],
        "raw HTTP, preset null": lambda: call(srv, "synthesize", {"text": "Keep it.", "preset": None})[1][9],
        "raw HTTP, the keep choice": lambda: call(srv, "synthesize", {"text": "Keep it.",
                                                                      "preset": "(keep the preset in force)"})[1][9],
    }
    for name, run in variants.items():
        assert run()["preset"]["preset"] == "pinned", name
        assert in_force(srv) == "pinned", f"{name} reset the service preset"
    ok, msg = call(srv, "synthesize", {"text": "Keep it.", "preset": ""})  # not a choice: refused, nothing reset
    assert ok == "error" and "choices" in msg and in_force(srv) == "pinned"
    assert sched_changes(before, thread_sched(srv.proc.pid)) == {}
    # naming one still works (an operator here), and is what changes it
    assert c.predict(text="Now default.", preset="default", api_name="/synthesize")[9]["preset"]["preset"] == "default"


def test_raw_launch_flags_preset_served_by_plain_requests(tmp_path, servers):
    """`--cpus N` makes the in-force preset 'launch', which is no choice of the dropdown: a plain
    request (no preset) must be served under it, not refused as an invalid choice."""
    srv = start(servers, tmp_path, "--cpus", str(LAST_CPU))
    c = Client(srv.url, verbose=False)
    for run in (lambda: c.predict(text="Launch flags.", api_name="/synthesize")[9],
                lambda: call(srv, "synthesize", {"text": "Launch flags."})[1][9]):
        p = run()["preset"]
        assert p["preset"] == "launch" and p["cpus"] == str(LAST_CPU)


# --------------------------------------------------------- 5: two launchers, one --outputs ----
def test_second_launcher_leaves_the_first_ones_request_in_flight(tmp_path, servers):
    """Launcher A has a request in flight -- held there by stopping A (SIGSTOP) once the clip's
    directory exists -- while launcher B starts on the same --outputs. B's start-up clean-up
    removes a crashed request's leftovers but not A's clip; A, continued, completes its request."""
    import signal

    a = start(servers, tmp_path)
    clips = a.outputs / "clips"
    crashed = clips / "20200101T000000-0badf00d"  # a request killed mid-way long ago: no record, no lock
    crashed.mkdir(parents=True)
    (crashed / "audio.wav").write_bytes(b"half")
    ca = Client(a.url, verbose=False)
    job = ca.submit(text="A long request that is still running when the second launcher starts. " * 4,
                    api_name="/synthesize")
    deadline = time.monotonic() + 30
    # (a clip's directory is made as .<id>.new and renamed into place: wait for the real name)
    while not (mine := [d for d in clips.iterdir()
                        if d != crashed and not d.name.startswith(".") and not (d / "record.json").exists()]):
        assert time.monotonic() < deadline, "A's request never started"
        time.sleep(0.002)
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        (tmp_path / "b").mkdir()
        b = Server(tmp_path / "b", "--no-warmup")
        b.outputs = a.outputs
        b.args[b.args.index("--outputs") + 1] = str(a.outputs)
        servers.append(b.start())
        assert mine[0].is_dir() and not crashed.exists()
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    out = job.result(timeout=120)
    assert sf.info(out[0]).duration > 1 and (clips / out[1] / "record.json").is_file() and out[1] == mine[0].name
    assert Client(b.url, verbose=False).predict(text="B serves.", api_name="/synthesize")[1]
    assert not [d for d in clips.iterdir() if not (d / "record.json").exists()]


def test_store_claims_across_processes(tmp_path):
    """The same at the store level, every order: a clip claimed by another live process is kept;
    once that process exits (no clean-up: like kill -9) it is a leftover and goes."""
    from app.store import ClipStore
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; sys.path.insert(0, sys.argv[1]); from app.store import ClipStore; "
                               "s = ClipStore(sys.argv[2]); s.new_dir(sys.argv[3]); print('held', flush=True); "
                               "time.sleep(60)", str(ROOT), str(tmp_path), "20261128T000000-00000001"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        s = ClipStore(tmp_path)
        assert s.remove_incomplete() == 0 and (s.clips / "20261128T000000-00000001").is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert ClipStore(tmp_path).remove_incomplete() == 1


# ------------------------------------------------------------------ 6: snapshot limits ----
def _snapshots(srv) -> list[str]:
    d = srv.outputs / "snapshots"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_snapshot_limits_retention_and_history(tmp_path, servers):
    srv = start(servers, tmp_path, "--i-know-this-is-open", "--keep-clips", "3")
    c = Client(srv.url, verbose=False)
    user = [c.predict(text=f"User clip {i}.", api_name="/synthesize")[1] for i in range(3)]
    old = srv.outputs / "snapshots"
    for i in range(limits.MAX_SNAPSHOTS_KEPT):  # earlier snapshots, oldest first
        d = old / f"2020010{i // 10}T0000{i % 10:02d}-old"
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps({"presets": ["default"], "n": 1, "complete": True}))
        os.utime(d, (1_600_000_000 + i, 1_600_000_000 + i))
    kept = _snapshots(srv)
    allowed = ["default", "pinned", "priority", "pinned-priority", "background"]
    over = [  # (presets, n): each over a limit, in a different way
        (allowed, limits.MAX_SNAPSHOT_N + 1),
        # repeated names fold to 5 presets, and 5 x 41 is over the total (unfolded it was 1640)
        (allowed * 8, limits.MAX_SNAPSHOT_REQUESTS // len(allowed) + 1),
        (allowed + ["realtime"], limits.MAX_SNAPSHOT_REQUESTS // (len(allowed) + 1) + 1),
    ]
    for presets, n in over:
        t = time.monotonic()
        with pytest.raises(AppError) as e:
            c.predict(presets, n, "x", "over", api_name="/snapshot")
        assert time.monotonic() - t < BOUND_S
        assert str(limits.MAX_SNAPSHOT_N) in str(e.value) or str(limits.MAX_SNAPSHOT_REQUESTS) in str(e.value)
        assert _snapshots(srv) == kept, "a refused snapshot left a directory"
    # a refusal half-way (an unknown preset is refused up front; realtime is refused by the tuner)
    with pytest.raises(AppError):
        c.predict(["default", "realtime"], 1, "x", "rt", api_name="/snapshot")
    assert _snapshots(srv) == kept
    # 40 x "default" with n=2 is 2 requests, not 80
    out = c.predict(["default"] * 40, 2, "Fold me.", "fold", api_name="/snapshot")
    from tracing.snapshot import SUMMARY_HEAD  # the builtin engine has no GPU: no GPU share columns
    assert out[1]["headers"] == SUMMARY_HEAD and [r[0] for r in out[1]["data"]] == ["default"]
    now = _snapshots(srv)
    assert len(now) == limits.MAX_SNAPSHOTS_KEPT and kept[0] not in now  # the oldest went
    new = next(n for n in now if n.endswith("fold"))
    man = json.loads((old / new / "manifest.json").read_text())
    assert man["presets"] == ["default"] and man["n"] == 2
    assert len(list((old / new / "default").iterdir())) == 2
    # the user's clips are still the history
    hist = c.predict(api_name="/history")
    rows = hist["data"] if isinstance(hist, dict) else hist
    assert [r[0] for r in rows] == user[::-1]
    assert settled_instances(srv.proc.pid) == []


# ---------------------------------------------------- 7: uploads and Gradio's file cache ----
def _cache(srv) -> Path:
    return srv.outputs / "gradio-cache"


def _du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


@pytest.mark.parametrize("mb", [limits.MAX_UPLOAD_MB + 1, 3 * limits.MAX_UPLOAD_MB])
def test_upload_over_the_limit_refused_and_not_kept(tmp_path, servers, mb):
    srv = start(servers, tmp_path, "--keep-mb", "2")
    big = tmp_path / "big.wav"
    n = mb * 2**20 // 2
    with sf.SoundFile(big, "w", 22050, 1, "PCM_16") as f:
        import numpy as np
        for _ in range(0, n, 2**20):
            f.write(np.zeros(min(2**20, n), np.int16))
    c = Client(srv.url, verbose=False)
    t = time.monotonic()
    with pytest.raises(Exception) as e:
        c.predict(text="Big upload.", spk=handle_file(str(big)), api_name="/synthesize")
    assert time.monotonic() - t < BOUND_S
    assert "size" in str(e.value).lower() or "large" in str(e.value).lower() or "413" in str(e.value), e.value
    assert _du(_cache(srv)) < 2**20, "the refused upload was kept"
    assert c.predict(text="Still serving.", api_name="/synthesize")[1]


def test_cache_follows_retention(tmp_path, servers):
    srv = start(servers, tmp_path, "--keep-clips", "2", "--keep-mb", "1", "--i-know-this-is-open")
    first = call(srv, "synthesize", {"text": "First clip, soon removed by retention."})[1]
    urls = [v["url"] for v in (first[0], first[8], first[7]) if isinstance(v, dict) and v.get("url")]
    assert urls and all(status(u)[0] == 200 for u in urls)
    for i in range(3):
        assert call(srv, "synthesize", {"text": f"Clip {i} pushes the first one out."})[0] == "complete"
    assert not (srv.outputs / "clips" / first[1]).exists()
    for u in urls:
        assert status(u)[0] in (403, 404), f"a clip removed by retention is still served: {u}"
    assert _du(_cache(srv)) <= 1 * 2**20 + 512 * 1024  # the budget, plus the newest entry


# ------------------------------------------------------------------- 9: operator actions ----
def test_loopback_is_not_trusted(tmp_path, servers):
    srv = start(servers, tmp_path)
    pid = srv.proc.pid
    before = thread_sched(pid)
    c = Client(srv.url, verbose=False)
    job = c.submit(text="Plain synthesis works.", api_name="/synthesize")
    updates, out = list(job), job.result()
    assert out[9]["preset"]["preset"] == "default" and out[8] is None  # no raw trace for a stranger
    # no attachment due: the complete clip (breakdown included) is the second and last update, and
    # nothing of the attachment was built for a caller who may not have it (issue 25)
    assert len(updates) == 2 and updates[0][9]["pending"] == "analysis" and out[9]["breakdown"]["mode"] == "full"
    clip = srv.outputs / "clips" / out[1]
    assert not (clip / "trace.zip").exists() and not (clip / "timeline.png").exists() and (clip / ".trace.txt").is_file()
    refusals = {
        "apply service-wide": lambda: c.predict("priority", api_name="/apply_preset"),
        "re-apply the preset in force": lambda: c.predict("default", api_name="/apply_preset"),
        "synthesize under another preset": lambda: c.predict(text="x", preset="pinned", api_name="/synthesize"),
        "request scope": lambda: c.predict(text="x", preset="pinned", scope="this request only",
                                           api_name="/synthesize"),
        "compare": lambda: c.predict(text="x", preset_a="default", preset_b="pinned", api_name="/compare"),
        "snapshot": lambda: c.predict(["pinned"], 1, "x", "", api_name="/snapshot"),
        "download a trace": lambda: c.predict(out[1], api_name="/download"),
    }
    for name, run in refusals.items():
        with pytest.raises(AppError, match="disabled for this call") as e:
            run()
        assert "--auth" in str(e.value), name
    assert call(srv, "apply_preset", {"name": "priority"})[0] == "error"  # raw HTTP, as `nobody` could
    hist = c.predict(out[1], api_name="/clip")
    assert hist[8] is None
    assert sched_changes(before, thread_sched(pid)) == {}


def test_operator_token(tmp_path, servers):
    tok = tmp_path / "token"
    tok.write_text("s3cret-operator-token-0123456789\n")
    srv = start(servers, tmp_path, "--operator-token-file", str(tok))
    good = {"X-Operator-Token": "s3cret-operator-token-0123456789"}
    for bad in ({}, {"X-Operator-Token": "wrong"}, {"X-Operator-Token": "s3cret-operator-token-012345678"}):
        ok, msg = call(srv, "apply_preset", {"name": "pinned"}, headers=bad)
        assert ok == "error" and "disabled for this call" in msg
    assert in_force(srv) == "default"
    ok, out = call(srv, "apply_preset", {"name": "pinned"}, headers=good)
    assert ok == "complete" and in_force(srv) == "pinned"
    ok, out = call(srv, "synthesize", {"text": "With the token."}, headers=good)
    assert ok == "complete" and out[8] and out[8].get("url")
    c = Client(srv.url, verbose=False, headers=good)
    assert c.predict(text="x", preset="default", api_name="/synthesize")[9]["preset"]["preset"] == "default"


def test_short_operator_token_refused_at_start(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("short")
    p = subprocess.run([sys.executable, str(ROOT / "webui.py"), "--operator-token-file", str(tok), "--no-warmup",
                        "--port", "1"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 2 and "at least" in p.stderr


def test_gradio_share_needs_auth(tmp_path):
    env = dict(os.environ, GRADIO_SHARE="true")
    p = subprocess.run([sys.executable, str(ROOT / "webui.py"), "--no-warmup", "--port", "1",
                        "--outputs", str(tmp_path / "o")], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, env=env)
    assert p.returncode == 2 and "GRADIO_SHARE" in p.stderr


# ------------------------------------------------------- login page, login rate, queue size ----
def test_login_page_carries_no_api_schema_and_logins_are_rate_limited(tmp_path, servers):
    srv = start(servers, tmp_path, "--auth", "op:right-password")
    code, page = status(srv.url)
    assert code == 200 and b"auth_required" in page
    for name in (b"apply_preset", b"synthesize", b"snapshot", b"pinned"):
        assert name not in page, f"the login page names {name!r}"
    login = srv.url + "login"
    form = lambda pw: urllib.parse.urlencode({"username": "op", "password": pw}).encode()  # noqa: E731
    hdr = {"Content-Type": "application/x-www-form-urlencoded"}
    codes = [status(login, "POST", form(f"guess{i}"), hdr)[0] for i in range(30)]
    assert codes[:10] == [400] * 10 and set(codes[10:]) == {429}, codes
    assert status(login, "POST", form("right-password"), hdr)[0] == 429  # even right: wait it out


@pytest.mark.slow  # MAX_QUEUED + 12 real requests: about a minute
def test_queue_has_a_size_limit(tmp_path, servers):
    srv = start(servers, tmp_path)
    c = Client(srv.url, verbose=False)
    jobs = [c.submit(text=f"Queued request number {i}. " * 6, api_name="/synthesize")
            for i in range(limits.MAX_QUEUED + 12)]
    results = []
    for j in jobs:
        try:
            j.result(timeout=600)
            results.append("ok")
        except Exception as e:
            results.append(str(e))
    full = [r for r in results if r != "ok"]
    assert full and all("queue" in r.lower() for r in full), full[:3]
    assert results.count("ok") >= limits.MAX_QUEUED
    assert c.predict(text="Served after the burst.", api_name="/synthesize")[1]
