"""An idle launcher does no tracing work: no window opens, no instance is created or removed, the
trace-aux threads do not run. (What it costs in CPU is a benchmark figure, docs/throughput.md.)"""
from __future__ import annotations

import os
import time

from tests.conftest import TRACEFS, our_instances
from tracing.instances import SPARES

IDLE_S = 2.0


def _instances(pid: int) -> dict:
    """Our instances of `pid`: (tracing_on, events/enable) of each."""
    out = {}
    for name in our_instances(pid, standby_ok=False):
        try:
            out[name] = tuple((TRACEFS / "instances" / name / f).read_text().strip() for f in ("tracing_on", "events/enable"))
        except OSError:
            out[name] = None
    return out


def _aux_ticks(pid: int) -> dict:
    """CPU clock ticks (utime + stime) of the server's trace-aux threads, by tid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            raw = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        if raw[raw.index("(") + 1:raw.rindex(")")] == "trace-aux":
            f = raw.rsplit(")", 1)[1].split()
            out[int(tid)] = int(f[11]) + int(f[12])
    return out


def test_an_idle_launcher_does_no_tracing_work(server, client):
    client.predict(text="One request first, then nothing.", api_name="/synthesize")
    pid = server.proc.pid
    time.sleep(1.0)  # its post-processing and the next window's preparation are over
    before = (_instances(pid), _aux_ticks(pid))
    assert before[1], "the server names its trace-aux threads"
    # one standby instance (events on, not recording) and at most SPARES spares (events off too)
    states = sorted(before[0].values(), key=lambda v: v[1] == "0")
    assert states[0][0] == "0" and states[0][1] != "0" and states[1:] == [("0", "0")] * (len(states) - 1), before
    assert len(states) <= 1 + SPARES, before
    time.sleep(IDLE_S)
    assert (_instances(pid), _aux_ticks(pid)) == before
