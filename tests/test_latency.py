"""tracing.latency: the kernel's latency tracers, used per window when present and free.

This kernel has none (available_tracers: blk function nop), so: the real tracefs is used for what
it can show (nothing available -> nothing created; a tracer the kernel refuses -> the real EINVAL
path, the instance removed), and the present-and-free path runs against a stand-in directory with
tracefs's file names and formats, the test writing what the kernel would (tracing_max_latency and
a latency-format `trace`).
"""
import os
from pathlib import Path

import pytest

from tracing import findings as F
from tracing import latency as L
from tracing import tracefs
from tracing.report import render_report
from tracing.window import TraceWindow

TR = tracefs.find_tracefs(mount=False)
needs_tracefs = pytest.mark.skipif(TR is None or not os.access(TR / "instances", os.W_OK),
                                   reason="no writable tracefs")

# The header a latency tracer's `trace` starts with (latency-format, as the kernel prints it).
IRQSOFF_TRACE = """# tracer: irqsoff
#
# irqsoff latency trace v1.1.5 on 6.18.0
# --------------------------------------------------------------------
# latency: 2345 us, #4/4, CPU#1 | (M:desktop VP:0, KP:0, SP:0 HP:0 #P:2)
#    -----------------
#    | task: kworker/1:0-77 (uid:0 nice:0 policy:0 rt_prio:0)
#    -----------------
#  => started at: _raw_spin_lock_irqsave
#  => ended at:   _raw_spin_unlock_irqrestore
#
"""
WAKEUP_TRACE = """# tracer: wakeup
#
# wakeup latency trace v1.1.5 on 6.18.0
# --------------------------------------------------------------------
# latency: 180 us, #12/12, CPU#0 | (M:desktop VP:0, KP:0, SP:0 HP:0 #P:2)
#    -----------------
#    | task: python3-4242 (uid:0 nice:0 policy:0 rt_prio:0)
#    -----------------
"""


def test_parse_latency_header():
    assert L.parse_latency_trace(IRQSOFF_TRACE) == {
        "latency_us": 2345, "cpu": 1, "task": "kworker/1:0", "pid": 77,
        "task_info": "uid:0 nice:0 policy:0 rt_prio:0",
        "started_at": "_raw_spin_lock_irqsave", "ended_at": "_raw_spin_unlock_irqrestore"}
    assert L.parse_latency_trace("# tracer: nop\n") == {}


def test_choose_best_free_tracer_per_family():
    fams = L.choose(["function", "irqsoff", "preemptirqsoff", "wakeup_rt", "nop"], {})
    assert fams == {"irqs/preemption off": "preemptirqsoff", "wakeup": "wakeup_rt"}
    fams = L.choose(["irqsoff", "wakeup"], {"top": "function", "other-7-1": "irqsoff"})
    assert fams["irqs/preemption off"] == "in use by other-7-1 (irqsoff)" and fams["wakeup"] == "wakeup"
    assert set(L.choose(["blk", "function", "nop"], {}).values()) == {"not available on this kernel"}


def standin(tmp_path, tracers="irqsoff preemptoff wakeup wakeup_rt function nop", others=None):
    """A directory with tracefs's names: available_tracers, current_tracer, instances/."""
    root = tmp_path / "tracing"
    (root / "instances").mkdir(parents=True)
    (root / "available_tracers").write_text(tracers + "\n")
    (root / "current_tracer").write_text("nop\n")
    for name, tracer in (others or {}).items():
        (root / "instances" / name).mkdir()
        (root / "instances" / name / "current_tracer").write_text(tracer + "\n")
    return root


def names(prefix="ittsw-test"):
    n = iter(range(1000))
    return lambda: f"{prefix}-{os.getpid()}-{next(n)}"


def test_present_and_free_path_against_a_standin(tmp_path):
    root = standin(tmp_path)
    p = L.LatencyProbe(root, "3", names()).prepare()
    assert {fam: t for fam, (t, _) in p.insts.items()} == {"irqs/preemption off": "irqsoff", "wakeup": "wakeup"}
    irq_inst, wk_inst = p.insts["irqs/preemption off"][1], p.insts["wakeup"][1]
    for inst, tracer in ((irq_inst, "irqsoff"), (wk_inst, "wakeup")):
        assert (inst / "current_tracer").read_text() == tracer
        assert (inst / "tracing_on").read_text() == "0" and (inst / "tracing_cpumask").read_text() == "3"
    p.start()
    assert (irq_inst / "tracing_on").read_text() == "1"
    # what the kernel writes while the window runs
    (irq_inst / "tracing_max_latency").write_text("2345\n")
    (irq_inst / "trace").write_text(IRQSOFF_TRACE)
    (wk_inst / "tracing_max_latency").write_text("180\n")
    (wk_inst / "trace").write_text(WAKEUP_TRACE)
    p.stop()
    res = p.collect()
    irq = res["irqs/preemption off"]
    assert (irq["tracer"], irq["max_latency_us"], irq["cpu"], irq["task"], irq["pid"]) == \
        ("irqsoff", 2345, 1, "kworker/1:0", 77)
    assert irq["trace"].startswith("# tracer: irqsoff") and res["wakeup"]["max_latency_us"] == 180
    # undone exactly: tracer back to nop, tracing off (a plain directory cannot be rmdir'ed
    # while it holds files; the kernel's instance can)
    for inst in (irq_inst, wk_inst):
        assert (inst / "current_tracer").read_text() == "nop" and (inst / "tracing_on").read_text() == "0"
    assert p.insts == {}

    bd = {"mode": "full", "pid": 1, "window": {"duration_s": 1.0}, "totals": {"wall_s": 1.0},
          "events": 10, "latency": res}
    found = [f for f in F.findings(bd) if f["kind"] == F.KERNEL_LATENCY]
    assert len(found) == 1 and found[0]["severity"] == "warn"  # 2.3 ms >= 1 ms; the 180 us wakeup is not
    assert "interrupts were off for 2.3 ms on CPU 1 in kworker/1:0:77" in found[0]["message"]
    rep = render_report(bd, found)
    assert "irqsoff max 2345 us, CPU 1, task kworker/1:0:77" in rep and "wakeup max 180 us" in rep


def test_busy_family_is_left_alone(tmp_path):
    root = standin(tmp_path, others={"someone-else": "preemptoff"})
    p = L.LatencyProbe(root, "1", names()).prepare()
    assert p.status["irqs/preemption off"] == "in use by someone-else (preemptoff)"
    assert list(p.insts) == ["wakeup"]
    p.collect()
    assert (root / "instances" / "someone-else" / "current_tracer").read_text().strip() == "preemptoff"


@needs_tracefs
def test_this_kernel_has_none_and_nothing_is_created():
    before = sorted(os.listdir(TR / "instances"))
    p = L.LatencyProbe(TR, "1", names()).prepare()
    assert p.insts == {} and set(p.status.values()) == {"not available on this kernel"}
    assert sorted(os.listdir(TR / "instances")) == before
    with TraceWindow() as w:
        pass
    bd = w.analyze().to_dict()
    assert set(bd["latency"]) == set(L.FAMILIES) and "not available on this kernel" in render_report(bd, [])


@needs_tracefs
def test_a_tracer_the_kernel_refuses_is_reported_and_its_instance_removed(tmp_path):
    # A stand-in root that lists irqsoff but whose instances/ is the real one: the real kernel
    # refuses current_tracer=irqsoff (EINVAL) and the real instance must go away again.
    root = tmp_path / "tracing"
    root.mkdir()
    (root / "available_tracers").write_text("irqsoff nop\n")
    (root / "instances").symlink_to(TR / "instances")
    before = sorted(os.listdir(TR / "instances"))
    p = L.LatencyProbe(root, "1", names("ittsw")).prepare()
    assert p.insts == {} and p.status["irqs/preemption off"] == "not available on this kernel"
    assert sorted(os.listdir(TR / "instances")) == before
