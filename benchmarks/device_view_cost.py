"""What the device view costs a user: time to audio and synthesis wall with it on vs off.

Two real servers (webui.py, as start_app.sh runs it) of the same engine, both tracing, one with
`--device-view <on-level>` and one with `--device-view off`; interleaved pairs of requests through
gradio_client's streamed /synthesize (which server goes first alternates), so the machine's drift
hits both sides alike. Requests are sequential, so only one server computes at a time. Per side:
- time to audio (submit -> the update carrying the audio: what a user waits for);
- synthesis wall (the server's wall_s: the trace window, the profiler session inside it, the engine);
- audio to breakdown (the device profile's export, parse and join run in that step).
Printed: per-pair ratios on/off, median with a bootstrap 95% interval (5000 resamples), the
order-balanced version, and what the device section said (captured, or why not).

On a GPU machine (the `device` tool): `--engines replica --on-level auto` measures the CUDA profiler;
here, without a GPU, `--on-level cpu` measures torch.profiler's CPU-activity session (another,
heavier instrumentation: an upper bound of the session's fixed costs, not the CUDA figure).

    .venv/bin/python benchmarks/device_view_cost.py --pairs 20 --engines replica --on-level auto
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from tracing_overhead import TEXT, Server, balanced, bootstrap_median, one_request  # noqa: E402


def _device(outputs: Path, rid: str) -> dict:
    rec = json.loads((outputs / "clips" / rid / "record.json").read_text())
    return ((rec.get("breakdown") or {}).get("device")) or {}


def measure(engine: str, pairs: int, scale, text: str, tmp: Path, on_level: str, gen: dict) -> dict:
    from gradio_client import Client
    sides = {}
    try:
        for name, level in (("on", on_level), ("off", "off")):
            out = tmp / f"{engine}-{name}"
            out.mkdir()
            sides[name] = (Server(out / "outputs", engine, scale, ["--device-view", level]), out / "outputs")
        clients = {k: Client(s.url, verbose=False) for k, (s, _) in sides.items()}
        for k in ("on", "off"):  # warm both (first Gradio request, caches, the profiler's first session)
            for _ in range(2):
                one_request(clients[k], sides[k][1], text, True, gen)
        rows = []
        for i in range(pairs):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            row = {}
            for k in order:
                row[k] = one_request(clients[k], sides[k][1], text, True, gen)
            rows.append(row)
            print(f"  {engine} pair {i + 1}/{pairs}: to audio {row['on']['to_audio_s'] * 1000:.0f} / "
                  f"{row['off']['to_audio_s'] * 1000:.0f} ms, wall {row['on']['wall_s'] * 1000:.0f} / "
                  f"{row['off']['wall_s'] * 1000:.0f} ms", file=sys.stderr, flush=True)
        last = sorted((sides["on"][1] / "clips").iterdir())[-1].name
        dv = _device(sides["on"][1], last)
    finally:
        for s, _ in sides.values():
            s.stop()
    on, off = [r["on"] for r in rows], [r["off"] for r in rows]
    ta = [a["to_audio_s"] / b["to_audio_s"] for a, b in zip(on, off)]
    wa = [a["wall_s"] / b["wall_s"] for a, b in zip(on, off)]
    a2b = [(a["audio_to_breakdown_s"] or 0) - (b["audio_to_breakdown_s"] or 0) for a, b in zip(on, off)]
    return {"engine": engine, "pairs": pairs, "on_level": on_level, "to_audio_ratio": bootstrap_median(ta),
            "wall_ratio": bootstrap_median(wa), "to_audio_balanced": balanced(ta), "wall_balanced": balanced(wa),
            "audio_to_breakdown_extra_s": bootstrap_median(a2b),
            "to_audio_on_s": float(np.median([r["to_audio_s"] for r in on])),
            "to_audio_off_s": float(np.median([r["to_audio_s"] for r in off])),
            "wall_on_s": float(np.median([r["wall_s"] for r in on])),
            "wall_off_s": float(np.median([r["wall_s"] for r in off])),
            "device_status": dv.get("status"), "device_why": dv.get("why"), "headline": dv.get("headline"),
            "kernels": (dv.get("profile") or {}).get("kernels"), "clock": dv.get("clock"), "rows": rows}


def _ci(t, scale=1.0, fmt="{:.3f}") -> str:
    return f"{fmt.format(t[0] * scale)} [{fmt.format(t[1] * scale)}, {fmt.format(t[2] * scale)}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="example: .venv/bin/python benchmarks/device_view_cost.py --pairs 20 "
                                        "--engines replica --on-level auto",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--engines", default="replica")
    ap.add_argument("--on-level", choices=("auto", "cpu"), default="auto",
                    help="the measured side's --device-view (cpu: without a GPU)")
    ap.add_argument("--replica-scale", type=float, default=None)
    ap.add_argument("--replica-generation", default=None, metavar="JSON",
                    help='e.g. \'{"max_mel_tokens": 64, "num_beams": 1}\' for shorter replica requests')
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.pairs < 2:
        ap.error("--pairs must be at least 2")
    if os.geteuid() != 0:
        print("note: not root; tracing may run in schedstat mode (then there is no device view)", file=sys.stderr)
    print(f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="device-view-cost-") as tmp:
        gen = json.loads(args.replica_generation) if args.replica_generation else {}
        results = [measure(e, args.pairs, args.replica_scale if e == "replica" else None, args.text, Path(tmp),
                           args.on_level, gen if e == "replica" else {}) for e in args.engines.split(",")]
    for r in results:
        print(f"{r['engine']} ({r['pairs']} pairs, device view {r['on_level']} vs off; on side: {r['device_status']}"
              + (f", {r['kernels']} kernels" if r["kernels"] is not None else "")
              + (f": {r['device_why']}" if r["device_why"] else "") + ")")
        print(f"  time-to-audio ratio {_ci(r['to_audio_ratio'])}   (medians {r['to_audio_on_s'] * 1000:.0f} / "
              f"{r['to_audio_off_s'] * 1000:.0f} ms)")
        print(f"  synthesis-only ratio {_ci(r['wall_ratio'])}   (medians {r['wall_on_s'] * 1000:.0f} / "
              f"{r['wall_off_s'] * 1000:.0f} ms)")
        print(f"  order-balanced: time-to-audio {_ci(r['to_audio_balanced'])}, synthesis {_ci(r['wall_balanced'])}")
        print(f"  audio-to-breakdown extra (export + parse + join) {_ci(r['audio_to_breakdown_extra_s'], 1e3, '{:.0f}')} ms")
        if r["headline"]:
            print(f"  last clip: {r['headline']}  clock error {((r['clock'] or {}).get('error_us'))} us, probe "
                  f"{((r['clock'] or {}).get('probe_residual_us'))} us")
    print(f"load average {os.getloadavg()[0]:.2f} at end, {time.monotonic() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
