"""Instances reused window after window (tracing/instances.py), on the real tracefs: a reused
instance gives its next window nothing of the last one (events, markers, lost-event counts), a
spare records nothing and costs no probe (events off), and every instance goes away at the end,
on SIGTERM too."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_window import mine, needs_tracefs, no_leftovers, sigterm_child, spin  # noqa: F401  (the fixture)
from tracing import instances, tracefs
from tracing.instances import InstancePool
from tracing.window import TraceWindow

TR = tracefs.find_tracefs(mount=False)


def _window(pool, **kw) -> TraceWindow:
    return TraceWindow(pool=pool, **kw)


@needs_tracefs
def test_a_reused_instance_gives_the_next_window_nothing_of_the_last():
    pool = InstancePool()
    try:
        with _window(pool) as w1:
            w1.marker("FIRST-WINDOW")
            spin(0.05)
        c1 = w1.collect()  # read, then given back to the pool
        assert w1.inst is None and pool.spares() == 1 and pool.created == 1
        spare = Path(TR / "instances" / mine()[0])
        # a spare records nothing; once the pool is quiet it costs the system no probe either
        assert (spare / "tracing_on").read_text().strip() == "0"
        assert (spare / "events/sched/sched_switch/enable").read_text().strip() == "1"  # (busy: kept on)
        pool.quiet()
        assert (spare / "events/enable").read_text().strip() == "0"
        with _window(pool) as w2:
            assert w2.inst == spare  # the same instance, events back on
            assert (spare / "events/sched/sched_switch/enable").read_text().strip() == "1"
            w2.marker("SECOND-WINDOW")
            spin(0.05)
        c2 = w2.collect()
        assert pool.created == 1
        assert "FIRST-WINDOW" in c1.raw_text and "FIRST-WINDOW" not in c2.raw_text
        assert "SECOND-WINDOW" in c2.raw_text
        ev, src = c2.events()
        assert src == "pages" and len(ev) > 0
        assert float(ev.ts.min()) >= c1.end_ts  # no event of the first window in the second's pages
        assert c2.events_enabled == c1.events_enabled and "sched/sched_switch" in c2.events_enabled
    finally:
        pool.close()
    assert mine() == []


@needs_tracefs
@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="needs stress-ng")
def test_lost_events_are_the_windows_own_on_a_reused_instance():
    """A window that overflows a small buffer reports its loss; the next window on the same
    instance reports none, and starts from zeroed counters: a ring that overran once would
    otherwise make the kernel annotate every later window's text ("CPU n buffer started"), which
    then could not be written from the pages (tracing.window.KernelText)."""
    pool = InstancePool()
    try:
        with _window(pool, buffer_kb=64) as w1:
            subprocess.run(["stress-ng", "--switch", "2", "--timeout", "1"], capture_output=True)
        c1 = w1.collect()
        assert c1.lost["total"] > 0, "a 64 KB buffer under stress-ng --switch should overflow"
        # a lossy window may have lost a thread's birth too: every gone pid read from saved_tgids
        assert c1.tgids.owner is None
        with _window(pool, buffer_kb=64) as w2:
            inst = w2.inst
            counted = sum(int(line.split(":")[1]) for c in w2.cpus
                          for line in (inst / "per_cpu" / f"cpu{c}" / "stats").read_text().splitlines()
                          if line.startswith("overrun:"))
            time.sleep(0.01)
        c2 = w2.collect()
        assert counted == 0
        assert c2.lost["total"] == 0 and c2.lost["unknown_cpus"] == []
        assert c2.text_meta is not None and c2.text_meta.overrun == 0
        assert "buffer started" not in c2.raw_text
        assert c2.tgids.owner == c2.pid
        ev, _ = c2.events()  # the spare kept its events on between the windows, recording nothing
        assert len(ev) and float(ev.ts.min()) >= c1.end_ts
    finally:
        pool.close()


@needs_tracefs
def test_events_left_unread_are_cleared_before_the_next_window():
    """A window given back without its pages read (a read that failed half-way) leaves events in
    the buffer: the next window on the instance starts from an empty one."""
    pool = InstancePool()
    try:
        w1 = _window(pool)
        with w1:
            w1.marker("UNREAD-WINDOW")
            spin(0.02)
        path = w1.inst
        w1.discard()  # never read
        stats = (path / "per_cpu" / "cpu0" / "stats").read_text() + (path / "per_cpu" / f"cpu{w1.cpus[-1]}" / "stats").read_text()
        assert any(line.startswith("entries:") and line.split()[1] != "0" for line in stats.splitlines())
        with _window(pool) as w2:
            assert w2.inst == path
            spin(0.02)
        c2 = w2.collect()
        assert "UNREAD-WINDOW" not in c2.raw_text and c2.lost["total"] == 0
    finally:
        pool.close()


@needs_tracefs
def test_spares_are_bounded_by_count_and_by_memory():
    pool = InstancePool(keep=1)
    windows = [_window(pool).prepare() for _ in range(3)]
    for w in windows:
        w.discard()
    assert pool.spares() == 1 and len(mine()) == 1  # one kept, two removed
    pool.close()
    assert mine() == []
    small = InstancePool(keep=2, keep_mb=0)  # no buffer memory allowed for spares: none kept
    w = _window(small).prepare()
    w.discard()
    assert small.spares() == 0 and mine() == []


@needs_tracefs
def test_a_window_on_other_cpus_rewrites_the_spares_cpumask():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    pool = InstancePool()
    _window(pool, cpus=[0, 1]).prepare().discard()
    w = _window(pool, cpus=[1]).prepare()
    try:
        assert pool.created == 1 and (w.inst / "tracing_cpumask").read_text().strip().endswith("2")
        assert w.retarget([0]) and (w.inst / "tracing_cpumask").read_text().strip().endswith("1")
        with w:
            spin(0.02)
        assert set(w.collect().pages) == {0}
    finally:
        w.discard()
        pool.close()


CHILD = r"""
import sys, time
sys.path.insert(0, %r)
from tracing.instances import InstancePool
from tracing.window import TraceWindow
pool = InstancePool()
w = TraceWindow(pool=pool)
with w:
    pass
name = w.inst.name
w.collect()  # the instance is a spare now
pool.quiet()
print(name, flush=True)
time.sleep(30)
"""


@needs_tracefs
def test_sigterm_removes_the_spares():
    def a_held_spare(inst):
        assert (inst / "events/enable").read_text().strip() == "0"  # a spare
        # a live owner's spare is held (its trace_marker open): another launcher's clean-up skips it
        assert inst.name not in tracefs.cleanup_stale("ittsw")
    sigterm_child(CHILD, a_held_spare)
    assert instances.held() == []  # (this process holds none)
