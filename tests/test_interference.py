"""The efficacy benchmark's interference workloads (benchmarks/interference.py) for real: each
starts, bites (its own kernel counter moves: kswapd scans, the cgroup hits its limit, pages are
written back, NET_RX softirqs run), and stops without leaving anything behind: no process of its
session, no file, no cgroup, the watermark setting back, this process back in its own cgroup.
Marker presets_live (root; each disturbs the whole machine for a few seconds)."""
from __future__ import annotations

import os
import time

import pytest

from benchmarks import interference as I

pytestmark = [pytest.mark.presets_live,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups, watermarks)")]


def _session_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return False
    except ProcessLookupError:
        return True


@pytest.mark.parametrize("kind", I.KINDS)
def test_workload_bites_and_leaves_nothing(kind):
    cgroup_before = open("/proc/self/cgroup").read()
    wsf_before = open(I.WSF_PATH).read()
    w = I.make(kind, cpus=2, mbps=400, write_mbps=50, headroom_mb=128)
    try:
        with w:
            took = w.ready()
            assert took < 240
            c0 = w.counter()
            time.sleep(2)
            assert w.alive(), f"{kind} workload exited early"
            if w.counted:
                assert w.counter() > c0, f"{kind}: {w.evidence_name} did not move while it ran"
            pids = [p.pid for p in w.procs]
            dirs = [d for d in (getattr(w, "dir", None),) if d]
            cg = getattr(w, "cg", None)
            if kind == "memcg":
                assert cg and os.path.basename(cg) in open("/proc/self/cgroup").read()
            if kind == "kswapd" and w.wsf_set is not None:
                assert int(open(I.WSF_PATH).read()) == w.wsf_set
    except I.Unavailable as e:
        pytest.skip(f"{kind} cannot run here: {e}")
    assert all(_session_gone(pid) for pid in pids), f"{kind}: a workload process outlived stop()"
    assert not any(os.path.exists(d) for d in dirs), f"{kind}: its files are still there"
    assert cg is None or not os.path.exists(cg), f"{kind}: its cgroup is still there"
    assert open("/proc/self/cgroup").read() == cgroup_before
    assert open(I.WSF_PATH).read() == wsf_before


def test_disk_dir_is_never_tmpfs(tmp_path):
    d = I.disk_dir()
    try:
        assert I._fs_type(d) != I.TMPFS_MAGIC
    finally:
        os.rmdir(d)


@pytest.mark.parametrize("kind", ["kswapd", "memcg", "writeback"])
def test_a_killed_benchmark_leaves_nothing_behind(kind):
    """kill -9 of the process running a workload: its helper (PDEATHSIG) puts the watermark setting
    back, removes its file and its cgroup."""
    import signal
    import subprocess
    import sys
    wsf = open(I.WSF_PATH).read()
    child = ("import sys, time, json; sys.path.insert(0, %r)\n"
             "from benchmarks import interference as I\n"
             "w = I.make(%r, write_mbps=20, mbps=50); w.start()\n"
             "print(json.dumps([getattr(w, 'wsf_set', None), w.dir, getattr(w, 'cg', None)]), flush=True)\n"
             "time.sleep(60)\n") % (os.path.dirname(os.path.dirname(I.HERE)), kind)
    p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        import json
        raised, d, cg = json.loads(p.stdout.readline())
        assert os.path.isdir(d) and (cg is None or os.path.isdir(cg))
        if raised is not None:
            assert int(open(I.WSF_PATH).read()) == raised
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (os.path.exists(d) or (cg and os.path.exists(cg))
                                           or open(I.WSF_PATH).read() != wsf):
        time.sleep(0.1)
    assert open(I.WSF_PATH).read() == wsf
    assert not os.path.exists(d), "the workload's files outlived the benchmark"
    assert not (cg and os.path.exists(cg)), "the cgroup outlived the benchmark"
