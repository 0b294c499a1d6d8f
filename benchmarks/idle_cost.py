#!/usr/bin/env python3
"""What an idle launcher costs: the server process's CPU time (every thread, user + system, from
/proc/<pid>/stat) over an idle interval, as % of one CPU, with no client and then with one
Chromium tab open on the page (Debian chromium driven by Playwright). Also counted: whether any
tracefs instance of the server was created or removed meanwhile (there should be none).

A/B in the same run: one server as shipped (Gradio's queue waits for the next pushed event while
nothing is queued, app/ui/compat.quiet_queue) and one with ITTS_GRADIO_POLLING=1 (Gradio's own
polling: every 1 ms on Gradio 6), measured one after the other, in alternating order per round.
Each server serves one request first (a launcher someone has used), then is left alone.

Issue 25's goal: <= 1% of one CPU over 60 s, with no client and with one tab open.

Then what the idle launcher's standby window costs the machine and what disarming it costs the
next request (one server with --trace-standby-s STANDBY, STANDBY_ROUNDS rounds; 0 skips):
- a neighbour's cost: `stress-ng --switch 2` ops/s for 4 s, measured once the standby was
  disarmed and once while it is armed (right after two requests), every round; then, with the
  server stopped, with no launcher at all. An instance with events on runs a probe on each of
  those events system-wide even though it records nothing;
- the re-arm: two servers, one disarmed after GAP/4 s idle and one never (--trace-standby-s
  3600); per round, after GAP s of idle each, one request to each (alternating order): the
  median ratio and difference of their time to audio, with bootstrap intervals (the disarmed
  one's request waits for its standby's events to go back on).

    .venv/bin/python benchmarks/idle_cost.py --seconds 60 --rounds 2 [--standby-rounds 6]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.tracing_overhead import TEXT, Server, bootstrap_median, one_request  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic"]
GOAL = 1.0  # % of one CPU


def cpu_s(pid: int) -> float:
    """The process's CPU time so far (all its threads; children not included)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def instances(pid: int) -> set[str]:
    from tracing import tracefs
    root = tracefs.find_tracefs(mount=False)
    if root is None:
        return set()
    return {p.name for p in (root / "instances").iterdir() if f"-{pid}-" in p.name}


def idle_share(pid: int, seconds: float) -> tuple[float, int]:
    """(% of one CPU over `seconds` of wall time, tracefs instances created or removed meanwhile)."""
    inst0, c0, t0 = instances(pid), cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    c1, t1, inst1 = cpu_s(pid), time.monotonic(), instances(pid)
    return 100 * (c1 - c0) / (t1 - t0), len(inst0 ^ inst1)


def measure(server: Server, seconds: float, settle: float, tab: bool) -> dict:
    from gradio_client import Client
    Client(server.url, verbose=False).predict(text="One request, then nothing.", api_name="/synthesize")
    time.sleep(settle)  # the request's post-processing and the next window's preparation
    pid = server.proc.pid
    out = {}
    out["no_client"], out["changes_no_client"] = idle_share(pid, seconds)
    if tab:
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
            page = browser.new_context().new_page()
            page.goto(server.url)
            page.wait_for_selector("#generate")
            time.sleep(settle)  # the page's first requests (config, heartbeat) answered
            out["tab"], out["changes_tab"] = idle_share(pid, seconds)
            browser.close()
    return out


def switch_ops() -> float:
    """`stress-ng --switch 2` for 4 s: its context-switch ops/s (real time)."""
    out = subprocess.run(["stress-ng", "--switch", "2", "-t", "4", "--metrics-brief"],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"switch\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)", out.stdout + out.stderr)
    if not m:
        raise RuntimeError(f"no stress-ng metrics in: {out.stderr[-500:]}")
    return float(m.group(1))


def armed(pid: int) -> bool:
    """Any instance of pid with an event on."""
    from tracing import tracefs
    root = tracefs.find_tracefs(mount=False)
    for name in instances(pid):
        try:
            if (root / "instances" / name / "events" / "enable").read_text().strip() != "0":
                return True
        except OSError:
            pass
    return False


def standby(tmp: Path, rounds: int, standby_s: float, gap_s: float) -> dict:
    """The standby's cost to a neighbour (armed / disarmed / no launcher) and the re-arm's to the
    next request (see the module docstring)."""
    from gradio_client import Client
    srv = Server(tmp / "standby", "builtin", None, ["--trace-standby-s", str(standby_s)])
    ops = {"disarmed": [], "armed": [], "none": []}
    try:
        client = Client(srv.url, verbose=False)
        one_request(client, srv.outputs, TEXT, True, {})  # the first request's one-time costs
        for r in range(rounds):
            deadline = time.monotonic() + standby_s + 30
            while armed(srv.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if armed(srv.proc.pid):
                raise RuntimeError("the standby was not disarmed")
            ops["disarmed"].append(switch_ops())
            one_request(client, srv.outputs, TEXT, True, {})
            ops["armed"].append(switch_ops())  # (4 s < standby_s: still armed throughout)
            print(f"standby round {r + 1}: stress-ng switch ops/s disarmed {ops['disarmed'][-1]:.0f} / armed "
                  f"{ops['armed'][-1]:.0f}", flush=True)
    finally:
        srv.stop()
    for _ in range(max(1, rounds // 2)):
        ops["none"].append(switch_ops())
    # the re-arm: the same idle gap before each request, one server disarmed by then, one never
    sides = {}
    try:
        for name, s in (("disarmed", min(standby_s, gap_s / 4)), ("armed", 3600.0)):
            sides[name] = Server(tmp / f"rearm-{name}", "builtin", None, ["--trace-standby-s", str(s)])
        clients = {k: Client(v.url, verbose=False) for k, v in sides.items()}
        for k in sides:
            one_request(clients[k], sides[k].outputs, TEXT, True, {})
        to_audio = {k: [] for k in sides}
        for r in range(rounds):
            for k in (("disarmed", "armed") if r % 2 == 0 else ("armed", "disarmed")):
                time.sleep(gap_s)
                to_audio[k].append(one_request(clients[k], sides[k].outputs, TEXT, True, {})["to_audio_s"])
            print(f"re-arm round {r + 1}: time to audio after {gap_s:g} s idle, disarmed "
                  f"{to_audio['disarmed'][-1] * 1000:.0f} ms / armed {to_audio['armed'][-1] * 1000:.0f} ms", flush=True)
    finally:
        for v in sides.values():
            v.stop()
    return {"ops": ops, "rearm_s": to_audio["disarmed"], "armed_s": to_audio["armed"], "gap_s": gap_s}


def report_standby(res: dict, standby_s: float) -> None:
    ops = res["ops"]
    print(f"\nthe idle launcher's standby window (--trace-standby-s {standby_s:g}), builtin:")
    for k, what in (("armed", "armed (events on, not recording)"), ("disarmed", "disarmed (events off)")):
        r = bootstrap_median([a / statistics.median(ops["none"]) for a in ops[k]])
        print(f"  a neighbour's context switches (stress-ng --switch 2), {what} / no launcher: "
              f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]")
    r = bootstrap_median([a / b for a, b in zip(ops["armed"], ops["disarmed"])])
    print(f"  armed / disarmed, per round: {r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]")
    ratio = bootstrap_median([a / b for a, b in zip(res["rearm_s"], res["armed_s"])])
    diff = bootstrap_median([(a - b) * 1000 for a, b in zip(res["rearm_s"], res["armed_s"])])
    print(f"  time to audio after {res['gap_s']:g} s idle, standby disarmed (re-armed first) / armed: "
          f"{ratio[0]:.3f} [{ratio[1]:.3f}, {ratio[2]:.3f}] ({diff[0]:+.0f} ms [{diff[1]:+.0f}, {diff[2]:+.0f}]; "
          f"medians {statistics.median(res['rearm_s']) * 1000:.0f} / {statistics.median(res['armed_s']) * 1000:.0f} ms)")


def idle(args) -> bool:
    """The idle CPU measurement (the module docstring's first part); True when its goal is met."""
    tab = not args.no_tab and os.path.exists(CHROMIUM)
    arms = ["quiet"] + ([] if args.no_polling_arm else ["polling"])
    got: dict[str, list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory(prefix="itts-idle-") as tmp:
        for r in range(args.rounds):
            for arm in (arms if r % 2 == 0 else arms[::-1]):
                env = {"ITTS_GRADIO_POLLING": "1"} if arm == "polling" else {}
                os.environ.update(env)
                try:
                    srv = Server(Path(tmp) / f"{arm}-{r}", "builtin", None)
                finally:
                    for k in env:
                        os.environ.pop(k)
                try:
                    m = measure(srv, args.seconds, args.settle, tab)
                finally:
                    srv.stop()
                got[arm].append(m)
                print(f"round {r + 1} {arm:8s} no client {m['no_client']:.2f}%"
                      + (f"   one tab {m['tab']:.2f}%" if tab else "")
                      + f"   tracefs instance changes {m['changes_no_client'] + m.get('changes_tab', 0)}",
                      flush=True)
    load = os.getloadavg()[0]
    print(f"\nidle launcher, % of one CPU over {args.seconds:.0f} s (builtin engine; load average {load:.1f}):")
    ok = True
    for arm in arms:
        for key in ("no_client", "tab") if tab else ("no_client",):
            vals = [m[key] for m in got[arm]]
            med = statistics.median(vals)
            print(f"  {arm:8s} {key.replace('_', ' '):9s} median {med:.2f}%  (rounds: "
                  + ", ".join(f"{v:.2f}" for v in vals) + ")")
            if arm == "quiet":
                ok &= max(vals) <= GOAL
    changes = sum(m["changes_no_client"] + m.get("changes_tab", 0) for m in got["quiet"])
    print(f"tracefs instance changes while idle: {changes}")
    print(f"goal: <= {GOAL:.0f}% of one CPU, no client and one tab -> {'met' if ok and not changes else 'NOT met'}")
    return ok and not changes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="idle interval per measurement")
    ap.add_argument("--rounds", type=int, default=2, help="rounds (each: both servers, alternating order)")
    ap.add_argument("--settle", type=float, default=5.0, help="wait before each interval")
    ap.add_argument("--no-tab", action="store_true", help="skip the browser-tab measurement")
    ap.add_argument("--no-polling-arm", action="store_true", help="measure the shipped server only")
    ap.add_argument("--standby-rounds", type=int, default=6, help="rounds of the standby measurement (0: skip)")
    ap.add_argument("--standby", type=float, default=6.0, help="the standby server's --trace-standby-s")
    ap.add_argument("--gap", type=float, default=8.0, help="idle seconds before each re-arm request")
    ap.add_argument("--skip-idle", action="store_true", help="only the standby measurement")
    args = ap.parse_args()
    ok = True if args.skip_idle else idle(args)
    if args.standby_rounds > 0:
        with tempfile.TemporaryDirectory(prefix="itts-standby-") as tmp:
            report_standby(standby(Path(tmp), args.standby_rounds, args.standby, args.gap), args.standby)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
