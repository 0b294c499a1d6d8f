"""An idle launcher does no tracing work: no window opens, no instance is created or removed, the
trace-aux threads do not run; and once idle for --trace-standby-s, none of its instances has an
event enabled, so it adds no probe to any kernel event (what it costs in CPU, and what an armed
standby costs a neighbour, are benchmark figures: docs/throughput.md)."""
from __future__ import annotations

import os
import time

from tests.conftest import TRACEFS, Server, our_instances
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


def _armed(pid: int) -> list[str]:
    """Our instances of `pid` with any event enabled ("X" in events/enable: some of them)."""
    return [n for n, st in _instances(pid).items() if st is not None and st[1] != "0"]


def _wait_disarmed(pid: int, timeout: float = 12.0) -> None:
    t0 = time.monotonic()
    while _armed(pid) and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    assert not _armed(pid), _instances(pid)


def test_an_idle_launcher_disarms_its_standby_and_the_next_request_is_traced_in_full(tmp_path, servers):
    """--trace-standby-s 2: two seconds after the last request no instance of the server has
    an event on (the standby's probes are off the kernel's events) and none was made or removed
    for it, while the standby stays armed right after a request; the next request re-arms it and gets a full breakdown: its stages, its
    synthesis thread on CPU, no event lost."""
    from gradio_client import Client
    srv = Server(tmp_path, "--no-warmup", "--i-know-this-is-open", "--trace-standby-s", "2")
    servers.append(srv.start())
    client = Client(srv.url, verbose=False)
    pid = srv.proc.pid
    for i in range(2):
        out = client.predict(text=f"Request {i} after an idle launcher.", api_name="/synthesize")
        bd = out[-1]["breakdown"]
        assert bd["mode"] == "full" and bd["lost_events"]["total"] == 0, bd.get("mode")
        assert [s["name"] for s in bd["stages"]] == ["text", "emotion", "acoustic", "voice"], bd["stages"]
        synth = [t for t in bd["threads"] if t.get("role") == "synthesis"]
        assert synth and synth[0]["on_cpu_s"] > 0.01, bd["threads"]
        assert _armed(pid), "armed right after a request (the next one must not wait)"
        time.sleep(0.5)  # the request's post-processing is over: the instances stay as they are now
        held = set(_instances(pid))
        _wait_disarmed(pid)
        time.sleep(0.5)
        assert not _armed(pid), "nothing arms it again while idle"
        assert set(_instances(pid)) == held, "no instance made or removed to disarm"
    # any event submitted (here the History tab's refresh, no synthesis) re-arms it as it arrives
    # (app.queue_time.ArrivalStamp -> Service.wake); with no request following, it is disarmed again
    client.predict(api_name="/history")
    deadline = time.monotonic() + 5
    while not _armed(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _armed(pid), "an arriving event re-arms the standby"
    _wait_disarmed(pid)
