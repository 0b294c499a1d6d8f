"""tracefs discovery, probe and stale-instance cleanup on the real tracefs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracing import tracefs
from tracing.__main__ import main

TR = tracefs.find_tracefs(mount=False)
needs_tracefs = pytest.mark.skipif(TR is None or not os.access(TR / "instances", os.W_OK),
                                   reason="no writable tracefs")


@needs_tracefs
def test_probe_real():
    cap = tracefs.probe()
    d = cap.to_dict()
    assert cap.mode == "full" and d["writable"] and d["instances"]
    assert d["events"]["sched/sched_switch"] and d["trace_marker"] and d["per_cpu_stats"]
    assert "mono" in " ".join(d["clocks"])
    assert "mode: full" in cap.summary()
    assert d["raw_pages"] and "binary ring-buffer pages" in cap.summary()


def test_probe_absent_root(tmp_path):
    cap = tracefs.probe(tmp_path / "nope")
    assert cap.mode == "schedstat" and cap.root is None
    assert "schedstat" in cap.summary()


def test_doctor_cli(capsys):
    rc = main(["doctor"])
    out = capsys.readouterr().out
    assert "mode:" in out and rc in (0, 1)


@needs_tracefs
def test_cleanup_stale_removes_dead_pid_instance():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    inst = TR / "instances" / f"ittswtest-{dead}-0"
    live = TR / "instances" / f"ittswtest-{tracefs.owner_token()}-0"
    try:
        os.mkdir(inst)
        os.mkdir(live)
        (inst / "events/sched/sched_switch/enable").write_text("1")  # removable as it is (no quiesce)
        removed = tracefs.cleanup_stale("ittswtest")
        assert inst.name in removed and not inst.exists()
        assert live.exists()  # our own pid and start time: its owner runs, kept
    finally:
        for p in (inst, live):
            if p.exists():
                tracefs.quiesce_and_remove(p)
    assert not inst.exists() and not live.exists()
