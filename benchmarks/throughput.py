"""Throughput with every request traced: K concurrent users, traced vs untraced, through the real server.

Per engine it starts two webui.py servers side by side (as start_app.sh would): one tracing every
request, one launched with `--no-trace`. K gradio_client callers (K = 1, 2, 4; one Client each, as
K users would be) then run closed loops against one server at a time: each caller submits a
request on the streamed /synthesize endpoint, waits for its complete clip (every update, files
downloaded), and submits the next. A round is R requests per caller against one server; rounds
alternate traced / untraced, and which goes first alternates too, so a shared machine's drift hits
both alike. Per round: requests/s = K * R / (first submit to last complete clip). Per request
(tracing_overhead.one_request, looking every 10 ms rather than gradio_client's busy 1 ms loop,
whose CPU would grow with each request's wait): time to audio (submit to the update carrying the
audio) and latency (submit to the complete clip).

Printed per engine and K:
  throughput ratio traced/untraced K=<k> <median> [<lo>, <hi>]
(the median over rounds of traced/untraced requests/s, each traced round paired with the
untraced round next to it, and a bootstrap 95% interval), requests/s per side, and p50 / p90 of
latency and time to audio per side with bootstrap intervals (requests pooled over rounds).
Goals (issue 25): at K = 4 the ratio >= 0.95 on the replica and >= 0.85 on builtin. The
single-user time-to-audio goal (<= 1.05) is benchmarks/tracing_overhead.py's.

    .venv/bin/python benchmarks/throughput.py [--ks 1,2,4] [--rounds 6] [--requests 3]
        [--engines builtin,replica] [--replica-generation JSON] [--server-args "..."] [--json out.json]

Example (the figures in docs/throughput.md):
    .venv/bin/python benchmarks/throughput.py --rounds 6 --requests 3 \\
        --replica-generation '{"max_mel_tokens": 64, "num_beams": 1}'
The callers run in this process, on the same machine as the server (as the other benchmarks'
client does): their CPU is part of what both sides share. Needs root for the traced side to run
in full mode (else schedstat mode, and the ratio measures that).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tracing_overhead import (TEXT, Server, add_record, bootstrap_median, bootstrap_percentile,  # noqa: E402
                              one_request)

GOALS = {"builtin": 0.85, "replica": 0.95}  # traced/untraced throughput at K = 4 (issue 25)
# Callers look for their updates every 10 ms (tracing_overhead.polled): times are to within that.
POLL_S = 0.01


def run_round(clients, outputs: Path, text: str, traced: bool, gen: dict, per_caller: int) -> dict:
    """K callers, `per_caller` requests each, back to back; the round's requests/s and rows."""
    start = threading.Barrier(len(clients) + 1)

    def caller(c):
        start.wait()
        return [one_request(c, outputs, text, traced, gen, poll_s=POLL_S, read_record=False) for _ in range(per_caller)]
    with ThreadPoolExecutor(len(clients)) as pool:
        futs = [pool.submit(caller, c) for c in clients]
        start.wait()
        t0 = time.monotonic()
        rows = [r for f in futs for r in f.result()]
        elapsed = time.monotonic() - t0
    for r in rows:  # after the clock: the harness's own parsing is no user's
        add_record(r, outputs)
    return {"traced": traced, "k": len(clients), "elapsed_s": elapsed, "rps": len(rows) / elapsed, "rows": rows}


def measure(engine: str, ks: list[int], rounds: int, per_caller: int, scale: float | None, text: str,
            tmp: Path, gen: dict, server_args: list[str]) -> dict:
    from gradio_client import Client
    servers = {}
    try:
        for traced in (True, False):
            out = tmp / f"outputs-{engine}-{'traced' if traced else 'untraced'}"
            servers[traced] = Server(out, engine, scale, [*server_args, *([] if traced else ["--no-trace"])])
        clients = {t: [Client(s.url, verbose=False) for _ in range(max(ks))] for t, s in servers.items()}
        for t in (True, False):  # warm every client and both paths (first requests, caches), untimed
            run_round(clients[t], servers[t].outputs, text, t, gen, 1)
        by_k = {}
        for k in ks:
            pairs = []
            for r in range(rounds):
                order = (True, False) if r % 2 == 0 else (False, True)
                got = {t: run_round(clients[t][:k], servers[t].outputs, text, t, gen, per_caller) for t in order}
                pairs.append(got)
                print(f"  {engine} K={k} round {r + 1}/{rounds}: {got[True]['rps']:.2f} / {got[False]['rps']:.2f} "
                      f"req/s traced / untraced (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
            by_k[k] = summarize(pairs)
    finally:
        for s in servers.values():
            s.stop()
    return {"engine": engine, "scale": scale, "rounds": rounds, "per_caller": per_caller, "by_k": by_k}


def summarize(pairs: list[dict]) -> dict:
    """Ratios per round pair and latency percentiles per side (requests pooled over rounds)."""
    out = {"ratio": bootstrap_median([p[True]["rps"] / p[False]["rps"] for p in pairs]),
           "pairs": [{t: {k: v for k, v in p[t].items() if k != "rows"} for t in (True, False)} for p in pairs]}
    for t, side in ((True, "traced"), (False, "untraced")):
        rows = [r for p in pairs for r in p[t]["rows"]]
        out[side] = {
            "rps": bootstrap_median([p[t]["rps"] for p in pairs]),
            "latency_p50": bootstrap_percentile([r["total_s"] for r in rows], 50),
            "latency_p90": bootstrap_percentile([r["total_s"] for r in rows], 90),
            "to_audio_p50": bootstrap_percentile([r["to_audio_s"] for r in rows], 50),
            "to_audio_p90": bootstrap_percentile([r["to_audio_s"] for r in rows], 90),
            "wall_p50_s": float(np.median([r["wall_s"] for r in rows])),
            "mode": next((r["mode"] for r in rows if r["mode"]), None),
            "lost": sum(r["lost"] or 0 for r in rows),
            "requests": len(rows),
        }
    return out


def _ms(t) -> str:
    return f"{t[0] * 1000:.0f} ms [{t[1] * 1000:.0f}, {t[2] * 1000:.0f}]"


def report(results: list[dict]) -> bool:
    ok = True
    for res in results:
        print(f"{res['engine']} ({res['rounds']} rounds of {res['per_caller']} requests per caller per side):")
        for k, s in res["by_k"].items():
            r, tr, un = s["ratio"], s["traced"], s["untraced"]
            print(f"throughput ratio traced/untraced K={k} {r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]")
            print(f"  requests/s traced {tr['rps'][0]:.2f} [{tr['rps'][1]:.2f}, {tr['rps'][2]:.2f}] (trace mode "
                  f"{tr['mode']}, {tr['lost']} events lost) / untraced {un['rps'][0]:.2f} "
                  f"[{un['rps'][1]:.2f}, {un['rps'][2]:.2f}]; synthesis wall p50 {tr['wall_p50_s'] * 1000:.0f} / "
                  f"{un['wall_p50_s'] * 1000:.0f} ms")
            for key, what in (("latency", "latency (submit to complete clip)"), ("to_audio", "time to audio")):
                print(f"  {what}: p50 {_ms(tr[key + '_p50'])} / {_ms(un[key + '_p50'])}, "
                      f"p90 {_ms(tr[key + '_p90'])} / {_ms(un[key + '_p90'])} (traced / untraced)")
            goal = GOALS.get(res["engine"])
            if k == 4 and goal is not None:
                met = r[0] >= goal
                ok &= met
                print(f"  goal K=4 >= {goal}: {'met' if met else 'NOT met'}")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="example: .venv/bin/python benchmarks/throughput.py --rounds 6 --requests 3 "
                                        "--replica-generation '{\"max_mel_tokens\": 64, \"num_beams\": 1}'",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--ks", default="1,2,4", help="numbers of concurrent callers")
    ap.add_argument("--rounds", type=int, default=6, help="rounds per side and K (pairs of traced/untraced rounds)")
    ap.add_argument("--requests", type=int, default=3, help="requests per caller per round")
    ap.add_argument("--engines", default="builtin,replica")
    ap.add_argument("--replica-scale", type=float, default=None, help="replica size factor (engine default when unset)")
    ap.add_argument("--replica-generation", default=None, metavar="JSON",
                    help='generation arguments for the replica, e.g. \'{"max_mel_tokens": 64, "num_beams": 1}\'')
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--server-args", default="", help='more webui.py flags for both servers (A/B runs)')
    ap.add_argument("--json", default=None, help="also write every round's figures here")
    args = ap.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    if args.rounds < 2 or args.requests < 1 or min(ks) < 1:
        ap.error("--rounds must be at least 2, --requests and every K at least 1")
    if os.geteuid() != 0:
        print("note: not root; the traced side may run in schedstat mode", file=sys.stderr)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rgen = json.loads(args.replica_generation) if args.replica_generation else {}
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        results = [measure(e, ks, args.rounds, args.requests, args.replica_scale if e == "replica" else None,
                           args.text, Path(tmp), rgen if e == "replica" else {}, args.server_args.split())
                   for e in args.engines.split(",")]
    ok = report(results)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"goals (K=4: replica >= 0.95, builtin >= 0.85): {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
