"""Tracing overhead as a user sees it: time to the audio through the real server, traced vs not.

For each engine it starts webui.py (a real Gradio server, as start_app.sh would) and sends pairs of
requests with gradio_client `submit()` on the streamed /synthesize endpoint, one with the kernel
trace on and one with it off, alternating which goes first. Per request it records, on the
client's clock (the server is on the same machine):
- time to audio: from submit() to the first update (the one that carries the audio, files
  downloaded); what a user waits for before they can listen;
- audio to breakdown: from that update to the one that carries the kernel breakdown (traced only);
- synthesis wall: the server's own `wall_s` for the request (window open + engine + window close
  when traced, the engine alone when not), read from the clip's record.json.
Printed per engine: `time-to-audio ratio <median> [<lo>, <hi>]` (median of the per-pair ratios
traced/untraced, with a bootstrap 95% interval: 5000 resamples of the pairs), the same for the
synthesis-only ratio, and the median audio-to-breakdown time. Pairwise ratios cancel most of the
drift of a shared machine; the interval says how far the median can be trusted. Goals (issue 15):
time-to-audio median <= 1.05 with the upper bound <= 1.10; audio to breakdown <= 150 ms (builtin).

    .venv/bin/python benchmarks/tracing_overhead.py [--pairs 30] [--engines builtin,replica]
        [--replica-scale 0.1] [--text "..."] [--json out.json]

Example (the figures in docs/benchmarks.md): `benchmarks/tracing_overhead.py --pairs 30`. Needs root for the
traced side to run in full mode (else schedstat mode, and the ratio measures that).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from app.metrics import delivery_outcomes  # noqa: E402
# about 5 s of speech from the builtin engine: the "~5 s sentence" of the goal
TEXT = "The quick brown fox jumps over the lazy dog. 今天天气很好，我们去公园散步吧。"
BOOT = 5000


def bootstrap_median(values, n=BOOT, seed=0) -> tuple[float, float, float]:
    """(median, 2.5th, 97.5th percentile of the medians of n resamples with replacement)."""
    return bootstrap_percentile(values, 50, n, seed)


def bootstrap_percentile(values, q: float, n=BOOT, seed=0) -> tuple[float, float, float]:
    """(q-th percentile, and the 2.5th / 97.5th percentiles of that statistic over n resamples
    with replacement): a 95% bootstrap interval (q in 0..100, linear interpolation)."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    stat = np.percentile(v[rng.integers(0, len(v), size=(n, len(v)))], q, axis=1)
    return float(np.percentile(v, q)), float(np.percentile(stat, 2.5)), float(np.percentile(stat, 97.5))


class Server:
    def __init__(self, outputs: Path, engine: str, scale: float | None, extra: list[str] = ()):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.outputs = outputs
        args = [sys.executable, str(ROOT / "webui.py"), "--port", str(self.port), "--outputs", str(outputs),
                "--engine", engine, "--keep-clips", "1000", *extra]
        if scale is not None:
            args += ["--replica-scale", str(scale)]
        self.log = open(outputs.parent / f"server-{outputs.name}.log", "w")  # one per server
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.flush()
                raise RuntimeError(f"server exited; its log ends:\n{Path(self.log.name).read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url + "config", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server did not come up: see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def one_request(client, outputs: Path, text: str, traced: bool, gen: dict, poll_s: float | None = None,
                read_record: bool = True) -> dict:
    """Submit, then time each streamed update as gradio_client hands it over (poll_s: look at
    the update list every poll_s instead, see polled()). The clock stops at the complete clip,
    before the clip's record.json is read for the server's figures (read_record=False: the
    caller reads it later with add_record, outside a timed round: a traced record holds every
    segment, ~1 MB under load, and parsing it is the harness's CPU, not a user's)."""
    t0 = time.monotonic()
    job = client.submit(text=text, trace=traced, api_name="/synthesize", **gen)
    t_audio = t_breakdown = None
    last, updates = None, 0
    for out in (job if poll_s is None else polled(job, poll_s)):  # gradio_client polls every 1 ms
        now = time.monotonic()
        updates += 1
        if t_audio is None and out[0]:
            t_audio = now
        if t_breakdown is None and isinstance(out[-1], dict) and out[-1].get("breakdown"):
            t_breakdown = now
        last = out
    final = job.result()  # raises if the request failed
    if last is None:  # a one-update endpoint can finish before its output is listed: the result is it
        now = time.monotonic()
        last, updates, t_audio = final, 1, now
        if isinstance(final[-1], dict) and final[-1].get("breakdown"):
            t_breakdown = now
    row = {"rid": last[1], "traced": traced, "to_audio_s": t_audio - t0, "total_s": time.monotonic() - t0,
           "audio_to_breakdown_s": (t_breakdown - t_audio) if t_breakdown is not None else None,
           "updates": updates, "mode": (last[-1].get("breakdown") or {}).get("mode")}
    return add_record(row, outputs) if read_record else row


def add_record(row: dict, outputs: Path) -> dict:
    """row (one_request's) with the server's figures from its clip's record.json: events, events
    lost, synthesis wall."""
    rec = json.loads((outputs / "clips" / row["rid"] / "record.json").read_text())
    bd = rec.get("breakdown") or {}
    row.update(events=bd.get("events"), lost=(bd.get("lost_events") or {}).get("total"), wall_s=rec["wall_s"])
    return row


def polled(job, poll_s: float):
    """The job's updates, looked for every poll_s. gradio_client's own iteration looks every 1 ms:
    with several callers in one process that loop costs CPU in proportion to how long each
    request waits, so a slower side would pay for its waiting too (benchmarks/throughput.py)."""
    seen = 0
    while True:
        done = job.done()
        outs = job.outputs()
        while seen < len(outs):
            seen += 1
            yield outs[seen - 1]
        if done:
            return
        time.sleep(poll_s)


def measure(engine: str, pairs: int, scale: float | None, text: str, tmp: Path, gen: dict,
            server_args: list[str] = ()) -> dict:
    from gradio_client import Client
    outputs = tmp / f"outputs-{engine}"
    srv = Server(outputs, engine, scale, server_args)
    try:
        client = Client(srv.url, verbose=False)
        for traced in (True, False):  # warm both paths (first Gradio request, caches), untimed
            one_request(client, outputs, text, traced, gen)
        rows = []
        for i in range(pairs):
            order = (True, False) if i % 2 == 0 else (False, True)
            rows.append({r["traced"]: r for r in (one_request(client, outputs, text, t, gen) for t in order)})
            print(f"  {engine} pair {i + 1}/{pairs}: to audio {rows[-1][True]['to_audio_s'] * 1000:.0f} / "
                  f"{rows[-1][False]['to_audio_s'] * 1000:.0f} ms", file=sys.stderr, flush=True)
        delivery = delivery_outcomes(srv.url)  # did post-processing start on the download or the timeout
    finally:
        srv.stop()
    on = [r[True] for r in rows]
    off = [r[False] for r in rows]
    a2b = [r["audio_to_breakdown_s"] for r in on if r["audio_to_breakdown_s"] is not None]
    return {
        "engine": engine, "pairs": pairs, "scale": scale, "mode": on[0]["mode"],
        "to_audio_ratio": bootstrap_median(ta := [a["to_audio_s"] / b["to_audio_s"] for a, b in zip(on, off)]),
        "wall_ratio": bootstrap_median(wa := [a["wall_s"] / b["wall_s"] for a, b in zip(on, off)]),
        "to_audio_balanced": balanced(ta), "wall_balanced": balanced(wa),
        # per order: which request of the pair ran first
        "to_audio_traced_first": float(np.median(ta[0::2])), "to_audio_untraced_first": float(np.median(ta[1::2])),
        "wall_traced_first": float(np.median(wa[0::2])), "wall_untraced_first": float(np.median(wa[1::2])),
        "to_audio_on_s": float(np.median([r["to_audio_s"] for r in on])),
        "to_audio_off_s": float(np.median([r["to_audio_s"] for r in off])),
        "wall_on_s": float(np.median([r["wall_s"] for r in on])),
        "wall_off_s": float(np.median([r["wall_s"] for r in off])),
        "audio_to_breakdown_s": bootstrap_median(a2b) if a2b else None,
        "total_on_s": float(np.median([r["total_s"] for r in on])),
        "updates": on[0]["updates"], "rows": rows, "delivery": delivery,
        "events_per_s": float(np.median([r["events"] / r["wall_s"] for r in on if r["events"]] or [0])),
        "lost": sum(r["lost"] or 0 for r in on),
    }


def balanced(ratios) -> tuple[float, float, float]:
    """Median ratio over quads of two consecutive pairs (one traced-first, one untraced-first):
    sqrt(r_i * r_i+1). A cost that falls on whichever request of a pair runs first (or second)
    multiplies one order's ratios and divides the other's, and cancels here."""
    quads = [(ratios[i] * ratios[i + 1]) ** 0.5 for i in range(0, len(ratios) - 1, 2)]
    return bootstrap_median(quads)


def _ci(t) -> str:
    return f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="example: .venv/bin/python benchmarks/tracing_overhead.py --pairs 30",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--engines", default="builtin,replica")
    ap.add_argument("--replica-scale", type=float, default=None, help="replica size factor (engine default when unset)")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--json", default=None, help="also write every request's figures here")
    ap.add_argument("--server-args", default="", help='more webui.py flags, e.g. "--audio-wait-s 0" (A/B runs)')
    ap.add_argument("--replica-generation", default=None, metavar="JSON",
                    help='generation arguments for the replica\'s requests, e.g. \'{"max_mel_tokens": 64, '
                         '"num_beams": 1}\' (a shorter request where a full one takes too long)')
    args = ap.parse_args(argv)
    if args.pairs < 2:
        ap.error("--pairs must be at least 2")
    if os.geteuid() != 0:
        print("note: not root; the traced side may run in schedstat mode", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="tracing-overhead-") as tmp:
        rgen = json.loads(args.replica_generation) if args.replica_generation else {}
        results = [measure(e, args.pairs, args.replica_scale if e == "replica" else None, args.text, Path(tmp),
                           rgen if e == "replica" else {}, args.server_args.split())
                   for e in args.engines.split(",")]
    for r in results:
        a2b = r["audio_to_breakdown_s"]
        print(f"{r['engine']} ({r['pairs']} pairs, trace mode {r['mode']}, {r['updates']} updates per traced request):")
        print(f"  time-to-audio ratio {_ci(r['to_audio_ratio'])}   "
              f"(medians {r['to_audio_on_s'] * 1000:.0f} ms traced / {r['to_audio_off_s'] * 1000:.0f} ms untraced)")
        print(f"  synthesis-only ratio {_ci(r['wall_ratio'])}   "
              f"(medians {r['wall_on_s'] * 1000:.0f} / {r['wall_off_s'] * 1000:.0f} ms; "
              f"{r['events_per_s']:.0f} events/s traced, {r['lost']} lost)")
        print(f"  order-balanced (quads of a traced-first and an untraced-first pair): time-to-audio "
              f"{_ci(r['to_audio_balanced'])}, synthesis-only {_ci(r['wall_balanced'])}; per order, traced-first / "
              f"untraced-first: time-to-audio {r['to_audio_traced_first']:.3f} / {r['to_audio_untraced_first']:.3f}, "
              f"synthesis {r['wall_traced_first']:.3f} / {r['wall_untraced_first']:.3f}")
        print(f"  post-processing started on the audio's download: {r['delivery'].get('fetched', '?')} requests, "
              f"on the timeout: {r['delivery'].get('timeout', '?')}")
        if a2b:
            print(f"  audio to breakdown {a2b[0] * 1000:.0f} ms [{a2b[1] * 1000:.0f}, {a2b[2] * 1000:.0f}]   "
                  f"(submit to last update, traced: {r['total_on_s'] * 1000:.0f} ms)")
    ok = all(r["to_audio_ratio"][0] <= 1.05 and r["to_audio_ratio"][2] <= 1.10 for r in results)
    print(f"goal: time-to-audio median <= 1.05, upper bound <= 1.10 -> {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
