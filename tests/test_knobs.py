"""Machine-wide knobs a preset's `away` moves (tuning/knobs.py), against the real /proc/irq,
workqueue sysfs and kernel threads: moved, read back, put back exactly; a dead owner's leftovers
restored by the next launcher; refused whole for an unprivileged user. Each test puts the
machine back as it found it (checked)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuning import knobs as K
from tuning.apply import Tuner, TuningError
from tuning.kernel import online_cpus
from tuning.presets import Preset, PresetError, PresetSet

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0
ONLINE = online_cpus()
needs_root_2cpus = pytest.mark.skipif(not IS_ROOT or len(ONLINE) < 2, reason="needs root and 2+ online CPUs")
KINDS = ("irqs", "workqueues", "kthreads")


def machine() -> dict:
    """Every knob's value now (the thing each test must leave as it found it)."""
    knobs, _ = K.discover(KINDS)
    out = {}
    for k in knobs:
        try:
            out[k.key] = k.get()
        except OSError:
            pass
    return out


@pytest.fixture
def unchanged():
    before = machine()
    yield before
    assert machine() == before, "a knob was left moved"


def test_cpu_mask_format():
    assert K.cpu_mask({0}) == "1" and K.cpu_mask({0, 1}) == "3" and K.cpu_mask({4}) == "10"
    assert K.cpu_mask({0, 32}) == "1,00000001" and K.cpu_mask({33}) == "2,00000000"


def test_preset_fields_validated():
    assert Preset("x", cpus="last:1", away=["irqs", "kthreads"]).away == ("irqs", "kthreads")
    assert Preset("r", policy="fifo", rt_priority=5, rt_budget_s=30).rt_budget_s == 30
    for bad in ({"away": ["disks"]}, {"away": "irqs"}, {"rt_budget_s": 5},  # budget without fifo/rr
                {"policy": "fifo", "rt_priority": 5, "rt_budget_s": 0},
                {"policy": "fifo", "rt_priority": 5, "rt_budget_s": True}):
        with pytest.raises(PresetError):
            Preset("x", **bad)


@needs_root_2cpus
def test_move_read_back_and_restore(tmp_path, unchanged):
    target = frozenset({min(ONLINE)})
    hk = K.Housekeeping(state_dir=str(tmp_path))
    try:
        hk.apply(KINDS, target)
        rb = hk.readback()
        assert rb["kinds"] == sorted(KINDS) and rb["cpus"] == str(min(ONLINE))
        state = list(tmp_path.glob("knobs-*.json"))
        assert len(state) == 1  # the values to put back are on disk while anything is moved
        saved = {r["key"]: r["value"] for r in json.loads(state[0].read_text())}
        for key, (knob, before) in hk.saved.items():
            assert saved[key] == before
            got = knob.get()
            if knob.kind == "workqueues":
                assert int(got.replace(",", ""), 16) == 1 << min(ONLINE), (key, got)
            else:
                assert got == str(min(ONLINE)), (key, got)
        assert "kthreads" in rb["moved"] and any(x.startswith("kswapd") for x in rb["moved"]["kthreads"])
        assert "workqueues" in rb["moved"]
        for why in rb["left"].values():  # what stayed says why (managed IRQs here, read-only)
            assert "managed" in why or "refused" in why or "unreadable" in why
    finally:
        assert hk.restore() == []
    assert not list(tmp_path.glob("knobs-*.json"))


@needs_root_2cpus
def test_a_dead_owners_moves_are_put_back(tmp_path, unchanged):
    """kill -9 right after moving: the next Housekeeping (a new launcher) restores from the file."""
    child = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tuning import knobs as K
        hk = K.Housekeeping(state_dir={str(tmp_path)!r})
        hk.apply({KINDS!r}, frozenset({{{min(ONLINE)}}}))
        print(len(hk.saved), flush=True)
        os.kill(os.getpid(), 9)
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert r.returncode == -9 and int(r.stdout) > 0
    assert len(list(tmp_path.glob("knobs-*.json"))) == 1
    moved = machine()
    assert moved != unchanged  # the dead child left them moved
    done = K.Housekeeping(state_dir=str(tmp_path)).restore_stale()
    assert len(done) == int(r.stdout) and not list(tmp_path.glob("knobs-*.json"))
    # (the fixture checks every knob is back)


@needs_root_2cpus
def test_tuner_isolated_preset_and_request_scope(tmp_path, unchanged):
    presets = PresetSet({"default": Preset("default"),
                         "iso": Preset("iso", cpus="last:1", away=list(KINDS))})
    t = Tuner(presets, knob_state_dir=str(tmp_path))
    try:
        t.apply("iso")
        away = t.readback()["away"]
        assert away["cpus"] and int(away["cpus"].split(",")[0].split("-")[0]) not in {max(ONLINE)}
        assert away["moved"]
        t.apply("default")
        assert t.readback()["away"]["moved"] == {} and machine() == unchanged
        with t.request_scope("iso"):
            assert t.readback()["away"]["moved"]
        assert machine() == unchanged
        t.apply("iso")
    finally:
        t.apply("default")
        t.close()


@needs_root_2cpus
def test_all_cpus_leave_nothing_to_move(tmp_path, unchanged):
    t = Tuner(PresetSet({"default": Preset("default"), "all": Preset("all", away=["irqs"])}),
              knob_state_dir=str(tmp_path))
    try:
        t.apply("all")
        away = t.readback()["away"]
        assert away["moved"] == {} and "no CPU is left" in away["left"]["irqs"]
    finally:
        t.apply("default")
        t.close()


def test_unprivileged_is_refused_with_nothing_moved(tmp_path, unchanged):
    if not IS_ROOT or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run a child as nobody")
    import tempfile
    state = tempfile.mkdtemp(prefix="itts-knobs-root-", dir="/tmp")  # 0700, in a directory nobody can search
    child = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tuning.apply import Tuner, TuningError
        from tuning.presets import Preset, PresetSet
        # a state directory this user sees but may not read (root's 0700, as /run/itts-launcher is)
        t = Tuner(PresetSet({{"default": Preset("default"), "iso": Preset("iso", cpus="last:1", away=["irqs"])}}),
                  knob_state_dir={state!r})
        try:
            t.apply("iso"); print("APPLIED")
        except TuningError as e:
            print("REFUSED", e)
    """)
    try:
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                            child], capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        os.rmdir(state)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("REFUSED") and "needs root" in r.stdout and "Nothing was changed" in r.stdout
