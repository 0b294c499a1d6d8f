"""TraceWindow on the real tracefs: lifecycle, markers, raising bodies, overlap, degraded mode."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import readonly_tracefs
from tracing import tracefs
from tracing.window import TraceWindow
from tracing.instances import InstancePool

TR = tracefs.find_tracefs(mount=False)
needs_tracefs = pytest.mark.skipif(TR is None or not os.access(TR / "instances", os.W_OK),
                                   reason="no writable tracefs")


def mine():
    return sorted(p.name for p in (TR / "instances").iterdir() if p.name.startswith(f"ittsw-{os.getpid()}-"))


def spin(s):
    end = time.monotonic() + s
    while time.monotonic() < end:
        pass


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    if TR is not None and (TR / "instances").is_dir():
        left = mine()
        for n in left:
            tracefs.quiesce_and_remove(TR / "instances" / n)
        assert not left, f"instances left behind: {left}"


@needs_tracefs
def test_window_lifecycle_and_stages():
    with TraceWindow() as w:
        assert len(mine()) == 1
        inst = w.inst
        assert (inst / "options/record-tgid").read_text().strip() == "1"
        assert (inst / "trace_clock").read_text().find("[mono]") >= 0
        with w.stage("work"):
            spin(0.05)
        w.marker("hello")
    # exit only stops recording (cheap, on the synthesis path); collecting reads and removes
    assert (inst / "tracing_on").read_text().strip() == "0"
    c = w.capture
    assert mine() == []
    assert c.mode == "full" and c.raw_text.startswith("# tracer: nop")
    assert f"B|{os.getpid()}|work" in c.raw_text and "hello" in c.raw_text
    assert set(c.lost) == {"total", "per_cpu", "unknown_cpus"} and c.duration > 0.05
    assert c.lost["unknown_cpus"] == [] and all(v["overrun"] is not None for v in c.lost["per_cpu"].values())
    assert "sched/sched_switch" in c.events_enabled
    bd = w.analyze().to_dict()
    assert bd["mode"] == "full" and bd["events"] > 0
    (st,) = bd["stages"]
    assert st["name"] == "work" and 0.04 < st["wall_s"] < 0.5
    assert c.start_ts <= st["start_s"] <= st["end_s"] <= c.end_ts  # same clock as time.monotonic
    assert st["on_cpu_s"] + st["runqueue_wait_s"] > 0.04


@needs_tracefs
def test_window_removed_when_body_raises():
    with pytest.raises(RuntimeError):
        with TraceWindow() as w:
            spin(0.01)
            raise RuntimeError("boom")
    assert mine() == [] and w.capture is not None


@needs_tracefs
def test_overlapping_windows_in_two_threads():
    out = {}

    def work(name, secs):
        with TraceWindow() as w:
            with w.stage(name):
                spin(secs)
        out[name] = w.analyze().to_dict()

    ts = [threading.Thread(target=work, args=(n, s)) for n, s in (("one", 0.15), ("two", 0.1))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for name in ("one", "two"):
        names = [s["name"] for s in out[name]["stages"]]
        assert name in names  # markers went to each window's own instance
        tot = out[name]["totals"]  # a spinning thread is running or runnable (load from others)
        assert tot["on_cpu_s"] + tot["runqueue_wait_s"] > 0.09


def test_degraded_absent_root(tmp_path):
    with TraceWindow(root=tmp_path / "absent") as w:
        spin(0.2)
    bd = w.analyze().to_dict()
    assert bd["mode"] == "schedstat" and w.capture.mode == "schedstat"
    me = next(t for t in bd["threads"] if t["tid"] == threading.get_native_id())
    assert 0.1 < me["on_cpu_s"] + me["runqueue_wait_s"] < 0.5
    assert me["blocked_io_s"] is None and bd["totals"]["sleep_s"] is None


@needs_tracefs
def test_degraded_read_only_tracefs(tmp_path):
    with readonly_tracefs(tmp_path) as ro:
        with TraceWindow(root=ro) as w:
            spin(0.2)
        bd = w.analyze().to_dict()
        assert bd["mode"] == "schedstat"
        me = next(t for t in bd["threads"] if t["tid"] == threading.get_native_id())
        assert 0.1 < me["on_cpu_s"] + me["runqueue_wait_s"] < 0.5


CHILD = r"""
import sys, time
sys.path.insert(0, %r)
from tracing.window import TraceWindow
w = TraceWindow().__enter__()
print(w.inst.name, flush=True)
time.sleep(30)
"""


def sigterm_child(code: str, while_alive=None) -> None:
    """Run `code` (%r: this checkout's root) in a child that prints one instance's name and
    sleeps; while it lives, while_alive(instance path); then SIGTERM: the instance must be gone."""
    root = str(Path(__file__).resolve().parents[1])
    p = subprocess.Popen([sys.executable, "-c", code % root], stdout=subprocess.PIPE, text=True)
    try:
        name = p.stdout.readline().strip()
        inst = TR / "instances" / name
        assert name and inst.exists()
        if while_alive is not None:
            while_alive(inst)
        p.terminate()
        p.wait(timeout=10)
        assert not inst.exists()
    finally:
        if p.poll() is None:
            p.kill()
        tracefs.cleanup_stale("ittsw")


@needs_tracefs
def test_sigterm_child_removes_its_window():
    sigterm_child(CHILD)


class _SwitchRefused(InstancePool):
    """Instances whose sched_switch enable the kernel refuses (a real EINVAL: tracefs takes 0 or 1)."""

    def _enable_event(self, path, ev):
        (path / "events" / ev / "enable").write_text("2" if ev == "sched/sched_switch" else "1")


@needs_tracefs
def test_event_that_failed_to_enable_is_in_the_breakdown_and_flagged():
    from tracing.findings import HEALTHY, MISSING_EVENTS, findings
    from tracing.report import render_report
    with TraceWindow(pool=_SwitchRefused(keep=0)) as w:
        spin(0.05)
    bd = w.analyze().to_dict()
    assert "sched/sched_switch" not in w.capture.events_enabled
    assert bd["missing_events"]["sched/sched_switch"].startswith("failed to enable: Invalid argument")
    out = findings(bd)
    assert out[0]["kind"] == MISSING_EVENTS and out[0]["severity"] == "crit"
    assert HEALTHY not in [f["kind"] for f in out]
    assert "events not recorded: sched/sched_switch" in render_report(bd, out)
    # a normal window records every event this kernel has
    with TraceWindow() as w2:
        spin(0.01)
    assert not any(v.startswith("failed") for v in w2.analyze().to_dict()["missing_events"].values())


@needs_tracefs
def test_unreadable_loss_counter_is_unknown_not_zero():
    from tracing.window import _read_lost
    w = TraceWindow().prepare()
    try:
        cpu = w.cpus[0]
        lost = _read_lost(w.inst, [cpu, 4095])  # no per_cpu/cpu4095 here: its counters cannot be read
    finally:
        w.discard()
    assert lost["unknown_cpus"] == [4095]
    assert lost["per_cpu"]["4095"] == {"overrun": None, "dropped_events": None}
    assert lost["per_cpu"][str(cpu)]["overrun"] == 0 and lost["total"] == 0
