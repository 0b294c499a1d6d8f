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

    .venv/bin/python benchmarks/idle_cost.py --seconds 60 --rounds 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.tracing_overhead import Server  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="idle interval per measurement")
    ap.add_argument("--rounds", type=int, default=2, help="rounds (each: both servers, alternating order)")
    ap.add_argument("--settle", type=float, default=5.0, help="wait before each interval")
    ap.add_argument("--no-tab", action="store_true", help="skip the browser-tab measurement")
    ap.add_argument("--no-polling-arm", action="store_true", help="measure the shipped server only")
    args = ap.parse_args()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
