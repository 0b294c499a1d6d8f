"""Launch flags: parsing, how they combine with a preset, and the result compared per thread with
the real taskset / nice / chrt wrapping the same child."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuning.launch import add_launch_args, launch_preset
from tuning.presets import PresetError, load_presets

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0


def parse(*argv):
    p = argparse.ArgumentParser()
    add_launch_args(p)
    return p.parse_args(list(argv))


def test_flags_parse():
    a = parse("--preset", "pinned", "--cpus", "0,1", "--nice", "-5", "--policy", "batch",
              "--rt-priority", "0", "--presets", "x.toml", "--allow-realtime", "--force-realtime")
    assert (a.preset, a.cpus, a.nice, a.policy, a.rt_priority, a.presets) == ("pinned", "0,1", -5, "batch", 0, "x.toml")
    assert a.allow_realtime and a.force_realtime
    a = parse()
    assert (a.preset, a.cpus, a.nice, a.policy, a.rt_priority, a.allow_realtime) == (None,) * 5 + (False,)


@pytest.mark.parametrize("argv", [["--nice", "20"], ["--nice", "x"], ["--cpus", "a-b"], ["--policy", "deadline"],
                                  ["--rt-priority", "100"]])
def test_bad_flags_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit):
        parse(*argv)


def test_launch_preset_combinations():
    presets = load_presets()
    assert launch_preset(parse(), presets) is None
    assert launch_preset(parse("--preset", "pinned"), presets) is presets["pinned"]
    p = launch_preset(parse("--preset", "pinned-priority", "--nice", "-3"), presets)
    assert (p.name, p.cpus, p.nice) == ("launch", "last:1", -3)  # raw flag overrides the field
    p = launch_preset(parse("--preset", "realtime", "--policy", "batch"), presets)
    assert (p.policy, p.rt_priority) == ("batch", 0)
    p = launch_preset(parse("--preset", "realtime", "--rt-priority", "20"), presets)
    assert (p.policy, p.rt_priority) == ("fifo", 20)
    p = launch_preset(parse("--cpus", "0", "--nice", "5", "--policy", "batch"), presets)
    assert (p.cpus, p.nice, p.policy, p.rt_priority) == ("0", 5, "batch", 0)
    with pytest.raises(PresetError, match="rt-priority"):
        launch_preset(parse("--policy", "fifo"), presets)
    with pytest.raises(PresetError, match="policy fifo or rr"):
        launch_preset(parse("--rt-priority", "5"), presets)
    with pytest.raises(PresetError, match="unknown preset"):
        launch_preset(parse("--preset", "nope"), presets)


# The child prints every thread's state from /proc. Threads are started before the launch preset
# is applied, so "every thread" is covered; `--late` also starts threads afterwards and runs
# Tuner.ensure() as the service does at each request.
CHILD = r"""
import argparse, json, os, sys, threading
sys.path.insert(0, sys.argv[1])
from tuning import kernel
from tuning.launch import add_launch_args, apply_launch
from tuning.presets import load_presets
p = argparse.ArgumentParser(); add_launch_args(p); p.add_argument("--torch", action="store_true")
args = p.parse_args(sys.argv[2:])
ev = threading.Event()
early = [threading.Thread(target=ev.wait, daemon=True) for _ in range(2)]
for t in early: t.start()
presets = load_presets()
launched = apply_launch(args, presets)
late = [threading.Thread(target=ev.wait, daemon=True) for _ in range(2)]
for t in late: t.start()
rows = lambda skip=None: [{k: r[k] for k in ("cpus", "nice", "policy", "rt_priority")}
                          for r in kernel.read_proc_all(os.getpid()) if r["tid"] != skip]
out = {"rows": rows(), "launched": launched.name if launched else None,
       "late_tids": [t.native_id for t in late]}
from tuning.apply import Tuner
tuner = Tuner(presets, allow_realtime=args.allow_realtime)
if launched is not None:
    tuner.adopt(launched)
out["fixed"] = tuner.ensure()
out["rows_after_ensure"] = rows(tuner._watchdog_tid)  # the SIGXCPU watchdog is not a synthesis thread
out["rrt"] = os.sched_getscheduler(0) & os.SCHED_RESET_ON_FORK
if args.torch:
    import torch
    out["torch_threads"] = torch.get_num_threads()
ev.set()
print(json.dumps(out))
"""


def _child(prefix, flags, torch=False):
    cmd = prefix + [sys.executable, "-c", CHILD, str(ROOT)] + flags + (["--torch"] if torch else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _need(*tools):
    for t in tools:
        if not shutil.which(t):
            pytest.skip(f"{t} not installed")


def test_flags_match_taskset_nice_chrt_batch():
    _need("taskset", "nice", "chrt")
    tools = _child(["taskset", "-c", "0", "nice", "-n", "5", "chrt", "-b", "0"], [], torch=True)
    ours = _child([], ["--cpus", "0", "--nice", "5", "--policy", "batch"], torch=True)
    want = {"cpus": "0", "nice": 5, "policy": "batch", "rt_priority": 0}
    assert tools["rows"] == [want] * len(tools["rows"]) and len(tools["rows"]) >= 5
    assert ours["rows"] == tools["rows"]  # every thread, same as the tools
    assert ours["rows_after_ensure"] == tools["rows"] and ours["fixed"] == 0
    assert ours["torch_threads"] == tools["torch_threads"] == 1  # torch sized from the launch affinity


@pytest.mark.skipif(not IS_ROOT, reason="SCHED_FIFO needs root")
def test_flags_match_chrt_fifo():
    _need("chrt")
    tools = _child(["chrt", "-f", "10"], [])
    ours = _child([], ["--policy", "fifo", "--rt-priority", "10", "--allow-realtime"])
    fifo = {"cpus": kernel_all(), "nice": 0, "policy": "fifo", "rt_priority": 10}
    assert tools["rows"] == [fifo] * len(tools["rows"])
    # threads that existed at launch: identical to chrt
    early = len(ours["rows"]) - 2
    assert ours["rows"][:early] == tools["rows"][:early]
    # reset-on-fork (deliberate, so child processes do not inherit RT) also resets new threads;
    # the tuner's ensure() at each request lifts them, after which every thread matches chrt
    assert ours["rrt"] and not tools["rrt"]
    assert all(r["policy"] == "other" for r in ours["rows"][early:])
    assert ours["fixed"] == 2 and ours["rows_after_ensure"] == tools["rows"]


def test_realtime_flag_refused_without_allow():
    p = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), "--policy", "fifo", "--rt-priority", "10"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "--allow-realtime" in p.stderr


def kernel_all() -> str:
    from tuning.kernel import format_cpu_list
    return format_cpu_list(os.sched_getaffinity(0))
