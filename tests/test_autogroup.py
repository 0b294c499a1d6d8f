"""Autogroup: with sched_autogroup_enabled=1 a thread's nice only orders it inside its session's
group, so a nice preset also sets the group's nice, but only when the service owns its group
(session leader, as under systemd); a launch from a shell must not leave the shell's group niced."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuning.kernel import get_autogroup_nice

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(get_autogroup_nice(os.getpid()) is None, reason="no autogroup in this kernel")

SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from tuning.apply import Tuner
from tuning.kernel import get_autogroup_nice
import os
t = Tuner(__import__("tuning.presets", fromlist=["x"]).load_presets())
out = {"leader": os.getsid(0) == os.getpid(), "start": get_autogroup_nice(os.getpid())}
t.apply("priority"); out["priority"] = t.readback()["autogroup_nice"]
with t.request_scope("background"):
    out["background"] = get_autogroup_nice(os.getpid())
out["after_scope"] = get_autogroup_nice(os.getpid())
t.apply("default"); out["default"] = get_autogroup_nice(os.getpid())
print(json.dumps(out))
"""


def run(new_session: bool) -> dict:
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True, text=True,
                       start_new_session=new_session, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_session_leader_sets_and_restores_its_group_nice():
    r = run(new_session=True)
    assert r["leader"]
    assert r["priority"] == -10 and r["background"] == 10 and r["after_scope"] == -10
    assert r["default"] == r["start"]


def test_not_leader_leaves_the_shared_group_alone():
    mine = get_autogroup_nice(os.getpid())
    r = run(new_session=False)
    assert not r["leader"]
    assert r["priority"] == r["start"] == mine and r["default"] == mine
    assert get_autogroup_nice(os.getpid()) == mine
