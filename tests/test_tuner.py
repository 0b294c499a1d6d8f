"""Tuner against the real kernel: every thread read back from /proc, rollback with a real
unprivileged user, the real-time safety net. The pytest process is always restored (fixture)."""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tuning import kernel
from tuning.apply import Tuner, TuningError
from tuning.presets import Preset, PresetSet, load_presets

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (CAP_SYS_NICE) to set and undo nice -10 / RT")
LAUNCH = frozenset(os.sched_getaffinity(0))
LAST = max(LAUNCH)


def _states(pid=None):
    out = {}
    for tid in kernel.list_threads(pid or os.getpid()):
        try:
            out[tid] = kernel.get_state(tid)
        except ProcessLookupError:
            pass
    return out


def _unchanged(before, after=None) -> bool:
    """Every thread present in both snapshots is in the same state. Threads may come and go
    meanwhile (torch/pytest helpers on a loaded machine); that is not a change we made."""
    after = _states() if after is None else after
    common = set(before) & set(after)
    return os.getpid() in common and all(before[t] == after[t] for t in common)


@pytest.fixture
def restore_process():
    """Never leave the pytest process pinned, niced or RT: put every thread back as it was."""
    before = _states()
    rl = resource.getrlimit(resource.RLIMIT_RTTIME)
    torch = sys.modules.get("torch")
    tt = torch.get_num_threads() if torch else None
    yield before
    for tid, st in _states().items():
        old = before.get(tid, before[os.getpid()])
        try:
            kernel.set_policy(tid, old.policy, old.rt_priority, old.reset_on_fork)
            kernel.set_nice(tid, old.nice)
            kernel.set_affinity(tid, old.cpus)
        except ProcessLookupError:
            pass
    resource.setrlimit(resource.RLIMIT_RTTIME, rl)
    if torch and tt:
        torch.set_num_threads(tt)
    assert kernel.get_state(os.getpid()) == before[os.getpid()]


@pytest.fixture
def extra_threads():
    """A few idle threads, so "every thread" is tested, not just the main one."""
    ev = threading.Event()
    ts = [threading.Thread(target=ev.wait, name=f"extra{i}") for i in range(3)]
    for t in ts:
        t.start()
    yield [t.native_id for t in ts]
    ev.set()
    for t in ts:
        t.join()


def _rows(pid=None):
    return {r["tid"]: r for r in kernel.read_proc_all(pid or os.getpid())}


def _check_all(tuner, cpus, nice, policy, rt_priority, extra):
    rb = tuner.readback()
    assert rb["matches"], rb["mismatches"]
    rows = _rows()
    assert set(extra) <= set(rows)
    for tid, r in rows.items():
        assert (r["cpus"], r["nice"], r["policy"], r["rt_priority"]) == (cpus, nice, policy, rt_priority), r
    assert (rb["cpus"], rb["nice"], rb["policy"], rb["rt_priority"]) == (cpus, nice, policy, rt_priority)


ALL = kernel.format_cpu_list(LAUNCH)


@needs_root
@pytest.mark.parametrize("name, want", [
    ("default", (ALL, 0, "other", 0)),
    ("pinned", (str(LAST), 0, "other", 0)),
    ("priority", (ALL, -10, "other", 0)),
    ("pinned-priority", (str(LAST), -10, "other", 0)),
    ("background", (ALL, 10, "batch", 0)),
])
def test_each_default_preset_reads_back_on_every_thread(name, want, restore_process, extra_threads):
    assert kernel.get_state(os.getpid()).nice == 0 and kernel.get_state(os.getpid()).policy == os.SCHED_OTHER
    import torch  # imported on purpose: the tuner must size its pool to the CPU set

    base_tt = torch.get_num_threads()
    t = Tuner(load_presets())
    t.apply(name)
    assert t.current.name == name
    _check_all(t, *want, extra_threads)
    assert torch.get_num_threads() == (1 if "pinned" in name else base_tt)
    t.apply("default")
    _check_all(t, ALL, 0, "other", 0, extra_threads)
    assert torch.get_num_threads() == base_tt


@needs_root
def test_ensure_fixes_threads_created_since(restore_process, extra_threads):
    t = Tuner(load_presets())
    t.apply("pinned-priority")
    # a thread spawned by a thread the preset does not cover (the aux worker) starts with the aux
    # thread's placement -- as a library pool started from elsewhere would
    ready, stop = threading.Event(), threading.Event()
    box = {}

    def aux():
        box["aux"] = t.place_aux_thread()
        child = threading.Thread(target=lambda: (box.setdefault("child", threading.get_native_id()),
                                                 ready.set(), stop.wait()))
        child.start()
        stop.wait()
        child.join()

    a = threading.Thread(target=aux)
    a.start()
    try:
        ready.wait(5)
        child = box["child"]
        assert kernel.read_proc(os.getpid(), child)["nice"] != -10
        assert not t.readback()["matches"]
        assert t.ensure() >= 1
        rb = t.readback()
        assert rb["matches"], rb["mismatches"]
        c = kernel.read_proc(os.getpid(), child)
        assert (c["cpus"], c["nice"]) == (str(LAST), -10)
        assert t.ensure() == 0  # idempotent
    finally:
        stop.set()
        a.join()


@needs_root
def test_request_scope_restores_exactly(restore_process, extra_threads):
    import torch

    t = Tuner(load_presets())
    t.apply("pinned")
    before, tt = _states(), torch.get_num_threads()
    with t.request_scope("priority") as p:
        assert p.name == "priority" and t.current.name == "priority"
        _check_all(t, ALL, -10, "other", 0, extra_threads)
        assert torch.get_num_threads() == t.target("priority").torch_threads  # the launch count
    assert _unchanged(before)
    assert torch.get_num_threads() == tt == 1
    assert t.current.name == "pinned" and t.readback()["matches"]


@needs_root
def test_request_scope_restores_after_an_exception(restore_process):
    t = Tuner(load_presets())
    before = _states()
    with pytest.raises(ZeroDivisionError):
        with t.request_scope("background"):
            1 / 0
    assert _unchanged(before) and t.current.name == "default"


def test_cpu_not_online_is_refused_and_nothing_changes(restore_process, extra_threads, tmp_path):
    bad = max(kernel.online_cpus()) + 5
    f = tmp_path / "p.toml"
    f.write_text(f'[presets.far]\ncpus = "0,{bad}"\nnice = 3\n')
    t = Tuner(load_presets(str(f)))
    before = _states()
    with pytest.raises(TuningError, match=f"{bad}.*not online"):
        t.apply("far")
    assert _unchanged(before) and t.current.name == "default"


def test_unknown_and_not_allowed_presets_are_refused(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('allowed = ["default"]\n')
    t = Tuner(load_presets(str(f)))
    with pytest.raises(TuningError, match="not allowed"):
        t.apply("pinned")
    with pytest.raises(TuningError, match="Unknown preset"):
        t.apply("nope")
    assert t.allowed == ["default"]


def test_thread_vanishing_is_not_a_failure(restore_process):
    t = Tuner(load_presets())
    th = threading.Thread(target=lambda: None)
    th.start()
    th.join()
    gone = th.native_id
    target = t.target("pinned")
    t._transition({gone: target.state_for(gone), os.getpid(): target.state_for(os.getpid())})
    assert kernel.get_state(os.getpid()).cpus == {LAST}


@needs_root
def test_place_aux_thread_off_the_synthesis_cpus(restore_process):
    if len(LAUNCH) < 2:
        pytest.skip("needs 2 CPUs")
    t = Tuner(load_presets())
    t.apply("pinned")
    out, go, done = {}, threading.Event(), threading.Event()

    def aux():
        out["first"] = t.place_aux_thread()
        out["tid"] = threading.get_native_id()
        go.set()
        done.wait(10)

    a = threading.Thread(target=aux)
    a.start()
    try:
        go.wait(5)
        tid = out["tid"]
        r = kernel.read_proc(os.getpid(), tid)
        assert r["cpus"] == kernel.format_cpu_list(LAUNCH - {LAST}) and r["policy"] == "batch"
        t.apply("pinned-priority")  # apply leaves it alone (re-placed, not given the preset)
        r = kernel.read_proc(os.getpid(), tid)
        assert r["nice"] == 0 and str(LAST) not in r["cpus"].split(",")
        assert [x for x in t.readback()["threads"] if x["tid"] == tid][0]["aux"]
        t.apply("default")  # no CPU left free: all CPUs, still batch (idle starves it under load)
        r = kernel.read_proc(os.getpid(), tid)
        assert (r["cpus"], r["policy"]) == (ALL, "batch")
        assert t.ensure() == 0 and t.readback()["matches"]
    finally:
        done.set()
        a.join()


# -- real-time ---------------------------------------------------------------------------------

def test_realtime_refused_without_allow(restore_process):
    before = _states()
    with pytest.raises(TuningError, match="--allow-realtime"):
        Tuner(load_presets()).apply("realtime")
    assert _unchanged(before)


def test_realtime_refused_when_rt_throttling_off(restore_process, tmp_path):
    sysctl = tmp_path / "sched_rt_runtime_us"
    sysctl.write_text("-1\n")
    before = _states()
    t = Tuner(load_presets(), allow_realtime=True, rt_runtime_path=str(sysctl))
    try:
        with pytest.raises(TuningError, match="throttling is off"):
            t.apply("realtime")
    finally:
        t.close()
    assert _unchanged(before)


@needs_root
def test_realtime_forced_when_throttling_off(restore_process, tmp_path):
    sysctl = tmp_path / "sched_rt_runtime_us"
    sysctl.write_text("-1\n")
    t = Tuner(load_presets(), allow_realtime=True, force_realtime=True, rt_runtime_path=str(sysctl))
    try:
        t.apply("realtime")
        assert kernel.read_proc(os.getpid(), os.getpid())["policy"] == "fifo"
    finally:
        t.apply("default")
        t.close()


@needs_root
def test_realtime_allowed_reads_back_with_reset_on_fork_and_rttime(restore_process, extra_threads):
    rl0 = resource.getrlimit(resource.RLIMIT_RTTIME)
    t = Tuner(load_presets(), allow_realtime=True)
    try:
        t.apply("realtime")  # keep the RT section short: it holds the CPU against everything
        rows = _rows()
        states = _states()
        rb = t.readback()
        child = subprocess.run(["cat", "/proc/self/stat"], capture_output=True, text=True, timeout=10).stdout
        rl = resource.getrlimit(resource.RLIMIT_RTTIME)
        dog = t._watchdog_tid  # the SIGXCPU watchdog keeps its own (top) RT priority
    finally:
        t.apply("default")
        dog_after = kernel.get_state(t._watchdog_tid).policy  # real-time only while RT is in force
        t.close()
    assert rb["matches"], rb["mismatches"]
    assert dog is not None and rows.pop(dog)["policy"] == "fifo"
    for tid, r in rows.items():
        assert (r["policy"], r["rt_priority"]) == ("fifo", 10), r
        assert states[tid].reset_on_fork
    child_policy = int(child[child.rindex(")") + 2:].split()[41 - 3])
    assert child_policy == os.SCHED_OTHER  # reset-on-fork: children do not inherit RT
    assert rl[0] == 2_000_000 and rb["rlimit_rttime_us"] == 2_000_000
    assert resource.getrlimit(resource.RLIMIT_RTTIME) == rl0  # removed when leaving RT
    assert dog_after == os.SCHED_OTHER
    assert all(s.policy == os.SCHED_OTHER and not s.reset_on_fork for s in _states().values())


# -- all-or-nothing with a real unprivileged user -----------------------------------------------

CHILD = r"""
import json, os, sys, threading
sys.path.insert(0, sys.argv[1])
from tuning import kernel
from tuning.apply import Tuner, TuningError
from tuning.presets import load_presets
ev = threading.Event()
ts = [threading.Thread(target=ev.wait) for _ in range(3)]
for t in ts: t.start()
def states():
    return {t: [sorted(s.cpus), s.nice, s.policy, s.rt_priority, s.reset_on_fork]
            for t in kernel.list_threads(os.getpid()) for s in [kernel.get_state(t)]}
before = states()
extra = None
if len(sys.argv) > 3:  # operator presets as text: pytest's tmp dir is not readable by nobody
    import tempfile
    fd, extra = tempfile.mkstemp(suffix=".toml")
    os.write(fd, sys.argv[3].encode()); os.close(fd)
try:
    tuner = Tuner(load_presets(extra))
finally:
    if extra: os.unlink(extra)
try:
    tuner.apply(sys.argv[2]); msg = None
except TuningError as e:
    msg = str(e)
print(json.dumps({"msg": msg, "before": before, "after": states(), "rolled_back": tuner.rolled_back,
                  "current": tuner.current.name, "uid": os.getuid()}))
ev.set()
"""


def _as_nobody(preset, extra_toml=None):
    if not IS_ROOT or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run a child as nobody")
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
           sys.executable, "-c", CHILD, str(ROOT), preset] + ([extra_toml] if extra_toml else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("preset", ["priority", "pinned-priority"])
def test_unprivileged_priority_is_refused_cleanly(preset):
    r = _as_nobody(preset)
    assert r["uid"] != 0
    assert r["msg"] and "CAP_SYS_NICE" in r["msg"] and "Nothing was changed" in r["msg"]
    assert len(r["before"]) >= 4 and r["after"] == r["before"]
    assert r["current"] == "default"
    if preset == "pinned-priority" and len(LAUNCH) > 1:
        # affinity had been changed on every thread before nice failed: all of it was undone
        assert len(r["rolled_back"]) == len(r["before"])


def test_unprivileged_pinning_works():
    r = _as_nobody("pinned")
    assert r["msg"] is None
    assert all(s[0] == [LAST] for s in r["after"].values())


def test_unprivileged_offline_cpu_is_refused():
    bad = max(kernel.online_cpus()) + 3
    r = _as_nobody("far", f'[presets.far]\ncpus = "0,{bad}"\n')
    assert r["msg"] and str(bad) in r["msg"]
    assert r["after"] == r["before"]


@needs_root
def test_sigxcpu_demotes_instead_of_killing(restore_process, extra_threads):
    import signal
    import time
    t = Tuner(load_presets(), allow_realtime=True)
    try:
        t.apply("realtime")
        assert signal.getsignal(signal.SIGXCPU) == t._on_xcpu and t._watchdog.is_alive()
        os.kill(os.getpid(), signal.SIGXCPU)  # what the kernel sends at the RLIMIT_RTTIME soft limit
        deadline = time.monotonic() + 5  # the watchdog thread takes it (pytest's main thread blocks it)
        while not t.rt_demoted and time.monotonic() < deadline:
            time.sleep(0.01)
        rows = _rows()
        dog = rows.pop(t._watchdog_tid)
        assert t.rt_demoted and all(r["policy"] == "other" for r in rows.values()) and dog["policy"] == "fifo"
        assert dog["comm"] == "rt-watchdog"
        assert t.readback()["rt_demoted"] and t.ensure() == len(rows)  # next request: real-time again
        assert all(r["policy"] == "fifo" for r in _rows().values())
    finally:
        t.apply("default")
        t.close()
    assert signal.getsignal(signal.SIGXCPU) == signal.SIG_DFL
    assert signal.SIGXCPU not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
