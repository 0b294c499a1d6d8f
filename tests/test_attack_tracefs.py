"""Attack 4 against the real tracefs: instance ownership is more than a pid.

A launcher's clean-up at start must (a) remove every instance whose owner is gone, whatever its
name says about pids (pid 1 again after a container restart, our own pid reused), and (b) never
touch -- not even switch off events in -- an instance a live owner holds, wherever that owner runs
(another pid namespace sees our pids as dead or as other processes). And a window must never lose
its instance to a leftover that holds the name it would use.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TRACEFS
from tracing import tracefs
from tracing.window import TraceWindow

INST = TRACEFS / "instances"
needs_tracefs = pytest.mark.skipif(tracefs.probe().mode != "full", reason="needs writable tracefs with instances")
PFX = "ittswatk"  # a prefix of our own: other helpers' launchers use ittsw


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def name_variants() -> dict[str, str]:
    """Owner parts of instance names that a pid-only check gets wrong, each in both formats."""
    me = os.getpid()
    start = tracefs.process_start(me)
    return {
        "dead pid, old format": f"{dead_pid()}-0",
        "dead pid": f"{dead_pid()}-{start}-0",
        "pid 1 (container), old format": "1-0",
        "pid 1 (container), another start": f"1-{(tracefs.process_start(1) or 0) + 7}-0",
        "our pid, old format": f"{me}-5",
        "our pid, another start (reused pid)": f"{me}-{start + 1}-5",
        "live pid, wrong start": f"{os.getppid()}-{(tracefs.process_start(os.getppid()) or 0) + 3}-1",
    }


def make(name: str) -> Path:
    d = INST / name
    d.mkdir()
    (d / "events/sched/sched_switch/enable").write_text("1")
    (d / "tracing_on").write_text("1")
    return d


class Holder:
    """A live owner elsewhere: a process holding the instance's trace_marker open, as a window does."""

    def __init__(self, inst: Path):
        self.p = subprocess.Popen([sys.executable, "-c", "import os, sys, time; os.open(sys.argv[1], os.O_WRONLY); "
                                   "print('held', flush=True); time.sleep(60)", str(inst / "trace_marker")],
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "held"

    def release(self):
        self.p.kill()
        self.p.wait()


def state(d: Path) -> tuple[str, str]:
    return ((d / "events/sched/sched_switch/enable").read_text().strip(), (d / "tracing_on").read_text().strip())


@pytest.fixture
def made():
    dirs: list[Path] = []
    yield dirs
    for d in dirs:
        if d.exists():
            tracefs.quiesce_and_remove(d)


@needs_tracefs
@pytest.mark.parametrize("where", ["our pid namespace", "a new pid namespace"])
def test_cleanup_removes_unheld_and_never_touches_held(made, where):
    variants = name_variants()
    stale = {k: make(f"{PFX}-{v}") for k, v in variants.items()}
    live = {k: make(f"{PFX}-{v.rsplit('-', 1)[0]}-9{i}") for i, (k, v) in enumerate(variants.items())}
    made += [*stale.values(), *live.values()]
    holders = [Holder(d) for d in live.values()]
    try:
        before = {k: state(d) for k, d in live.items()}
        if where == "our pid namespace":
            removed = tracefs.cleanup_stale(PFX)
        else:
            if subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode:
                pytest.skip("cannot create a pid namespace here")
            r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                                "import sys; sys.path.insert(0, sys.argv[1]); from tracing import tracefs; "
                                "print('\\n'.join(tracefs.cleanup_stale(sys.argv[2])))",
                                str(Path(__file__).resolve().parents[1]), PFX],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            removed = r.stdout.split()
        for k, d in stale.items():
            assert not d.exists() and d.name in removed, f"leftover kept: {k} ({d.name})"
        for k, d in live.items():
            assert d.exists(), f"a live owner's instance was removed: {k}"
            assert state(d) == before[k], f"a live owner's instance was quiesced: {k}"
    finally:
        for h in holders:
            h.release()
    # released: now they are leftovers, and go
    assert set(tracefs.cleanup_stale(PFX)) == {d.name for d in live.values()}


@needs_tracefs
def test_running_owner_in_our_namespace_is_skipped_even_unheld(made):
    """Between mkdir and its claim, or for instances that hold no fd (latency tracers on kernels
    that have them), an owner that runs here (pid and start time match) keeps its instance."""
    d = make(f"{PFX}-{tracefs.owner_token(os.getppid())}-0")
    made.append(d)
    before = state(d)
    assert d.name not in tracefs.cleanup_stale(PFX) and d.exists() and state(d) == before


@needs_tracefs
@pytest.mark.parametrize("held", [True, False])
def test_window_never_loses_its_name_to_a_leftover(made, held):
    """Leftovers sit on the next names this process would use (same pid and start time, as after
    a restart in a container where the pid and even the clock tick repeat): the window takes
    another name and traces in full mode, and the leftovers are left as they were."""
    import tracing.window as W

    n = next(W._counter)
    taken = [make(f"ittsw-{tracefs.owner_token()}-{k}") for k in range(n + 1, n + 4)]
    made += taken
    holders = [Holder(d) for d in taken] if held else []
    try:
        w = TraceWindow(latency=False).prepare()
        try:
            assert w.caps.mode == "full", w.caps.reason
            assert w.inst is not None and w.inst not in taken and w.inst.exists()
            with w:
                with w.stage("work"):
                    sum(range(10000))
            cap = w.capture
            assert cap.mode == "full" and "B|" in cap.raw_text
        finally:
            w.discard()
        assert all(d.exists() and state(d) == ("1", "1") for d in taken)
    finally:
        for h in holders:
            h.release()
