"""The device view through the real Service (builtin engine on CPU, real tracefs, real torch.profiler):
- default level on a CPU engine: the device section is absent and says why; nothing errors;
- level "cpu" (no GPU here): the real profiler session, clock marks, export, parse and attachment
  run as on CUDA, minus the kernels;
- `python -m tracing analyze` on the clip's attachment prints the clip's breakdown: same numbers
  (trace.dat through trace-cmd: to float rounding; trace.txt: microsecond timestamps).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from app.service import Service
from app.store import ClipStore
from models.base import SynthesisRequest
from tests.conftest import ROOT
from tracing.attachment import validate_attachment
from tuning.apply import Tuner
from tuning.presets import load_presets

pytestmark = pytest.mark.slow  # ~30 s: out of the fast default run (pytest.ini), its own CI step
TEXT = "The GPU side of every clip. 每个片段的显卡一侧。"


@pytest.fixture(scope="module")
def engine():
    from models.builtin import BuiltinEngine
    return BuiltinEngine()


def _service(engine, tmp_path, level):
    return Service(engine, Tuner(load_presets()), ClipStore(tmp_path / "out"), device_view=level)


def test_cpu_engine_has_no_device_section_and_says_why(engine, tmp_path):
    svc = _service(engine, tmp_path, "auto")
    try:
        rec = svc.synthesize(SynthesisRequest(text=TEXT))
        svc.attachment(rec)  # built when asked (app/artifacts.py)
    finally:
        svc.close()
    dv = rec.breakdown["device"]
    assert dv == {"status": "absent", "why": "the serving engine runs on cpu: there is no GPU side to profile"}
    assert all(t["gpu_wait_s"] is None for t in rec.breakdown["threads"])
    assert not [m for m in rec.breakdown["markers"] if m["text"].startswith("itts_clock")]  # nothing written
    with zipfile.ZipFile(rec.attachment_path) as z:
        assert "device_profile.json" not in z.namelist()
        assert "GPU view: none: the serving engine runs on cpu" in z.read("report.txt").decode()


@pytest.fixture(scope="module")
def cpu_clip(engine, tmp_path_factory):
    svc = _service(engine, tmp_path_factory.mktemp("dv"), "cpu")
    try:
        rec = svc.synthesize(SynthesisRequest(text=TEXT))
        svc.attachment(rec)  # built when asked (app/artifacts.py), with the kept device profile
        yield rec
    finally:
        svc.close()


def test_cpu_level_runs_the_real_profiler_path(cpu_clip):
    bd = cpu_clip.breakdown
    dv = bd["device"]
    assert dv["status"] == "captured" and dv["activities"] == "cpu (test)"
    assert dv["device"] is None and "No GPU activity" in dv["headline"]
    assert dv["profile"]["time_format"] == "base"  # torch 2.13's Kineto writes baseTimeNanoseconds
    clk = dv["clock"]
    assert clk["markers"] == 2 and clk["method"] == "clock_markers"
    assert 0 <= clk["error_us"] < 1000 and 0 <= clk["marker_lag_us"] < 1000
    assert all(t["gpu_wait_s"] == 0.0 for t in bd["threads"])
    v = validate_attachment(cpu_clip.attachment_path)
    assert v["ok"], v["problems"]
    with zipfile.ZipFile(cpu_clip.attachment_path) as z:
        prof = json.loads(z.read("device_profile.json"))
    assert prof["traceEvents"] and prof["baseTimeNanoseconds"] > 1.6e18
    # Kineto names host-side events by the Linux tid, the kernel trace's own id for the thread
    synth = next(t["tid"] for t in bd["threads"] if t.get("role") == "synthesis")
    assert synth in {e.get("tid") for e in prof["traceEvents"] if e.get("cat") == "cpu_op"}
    assert not list((ROOT / "outputs").glob("**/.device_profile.json"))


def _analyze(path, *extra):
    r = subprocess.run([sys.executable, "-m", "tracing", "analyze", str(path), "--json", *extra], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _close(a: dict, b: dict, tol: float, keys):
    for k in keys:
        if isinstance(a.get(k), float):
            assert b[k] == pytest.approx(a[k], abs=tol), k
        elif isinstance(a.get(k), int):
            assert b[k] == a[k], k


def _compare(clip: dict, again: dict, tol: float):
    _close(clip["totals"], again["totals"], tol, clip["totals"])
    assert [t["tid"] for t in clip["threads"]] == [t["tid"] for t in again["threads"]]
    for t0, t1 in zip(clip["threads"], again["threads"]):
        _close(t0, t1, tol, t0)
        assert t0.get("role") == t1.get("role")
    assert [s["name"] for s in clip["stages"]] == [s["name"] for s in again["stages"]]
    for s0, s1 in zip(clip["stages"], again["stages"]):
        _close(s0, s1, tol, s0)
    assert [(b["comm"], b["pid"]) for b in clip["blockers"]] == [(b["comm"], b["pid"]) for b in again["blockers"]]
    for b0, b1 in zip(clip["blockers"], again["blockers"]):
        assert b1["time_s"] == pytest.approx(b0["time_s"], abs=tol)


@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="no trace-cmd: the attachment has no trace.dat")
def test_analyze_reproduces_the_clip_from_its_attachment(cpu_clip):
    out = _analyze(cpu_clip.attachment_path)
    bd = out["breakdown"]
    assert bd["source"] == "trace.dat"
    _compare(cpu_clip.breakdown, bd, 1e-9)  # nanosecond timestamps: the same numbers
    dv0, dv1 = cpu_clip.breakdown["device"], bd["device"]
    assert dv1["status"] == "captured" and dv1["clock"]["offset_ns"] == dv0["clock"]["offset_ns"]
    assert [f["kind"] for f in out["findings"]] == [f["kind"] for f in cpu_clip.findings]


def test_analyze_a_bare_trace_txt_and_bad_input(cpu_clip, tmp_path):
    with zipfile.ZipFile(cpu_clip.attachment_path) as z:
        (tmp_path / "trace.txt").write_bytes(z.read("trace.txt"))
        (tmp_path / "p.json").write_bytes(z.read("device_profile.json"))
    out = _analyze(tmp_path / "trace.txt", "--profile", str(tmp_path / "p.json"))
    bd = out["breakdown"]
    assert bd["source"] == "trace.txt" and bd["pid"] == cpu_clip.breakdown["pid"]  # from the stage markers
    # microsecond timestamps and the window from the first/last event: close, not equal
    assert bd["totals"]["on_cpu_s"] == pytest.approx(cpu_clip.breakdown["totals"]["on_cpu_s"], abs=0.01)
    assert [s["name"] for s in bd["stages"]] == [s["name"] for s in cpu_clip.breakdown["stages"]]
    assert bd["device"]["status"] == "captured"
    text = subprocess.run([sys.executable, "-m", "tracing", "analyze", str(cpu_clip.attachment_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120).stdout
    assert "Re-analysed from: trace" in text and "GPU (device view)" in text
    r = subprocess.run([sys.executable, "-m", "tracing", "analyze", str(tmp_path / "nope.zip")], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "does not exist" in r.stderr
