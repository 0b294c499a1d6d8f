"""Tracing overhead: the same synthesis with the trace window on and off, interleaved A/B.

For each engine (builtin, replica) it runs pairs of requests through the real Service, one traced
and one not, alternating which goes first, and prints:
- the median of (traced synthesis wall / untraced synthesis wall) over the pairs (goal <= 1.03),
  where "synthesis wall" is what the user waits for the engine: window open + engine + window
  close for the traced request, the engine alone for the untraced one;
- the post-processing time (reading the buffer, analysis, findings, timeline, attachment; done
  after the window closed, on the aux thread) as a fraction of the synthesis wall.
Pairwise ratios cancel most of the drift of a shared, noisy machine; the median resists outliers.

    .venv/bin/python benchmarks/tracing_overhead.py [--pairs 15] [--engines builtin,replica]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.base import NullStages, SynthesisRequest  # noqa: E402
from models.registry import create_engine  # noqa: E402
from app.service import Service  # noqa: E402
from app.store import ClipStore  # noqa: E402
from tuning.apply import Tuner  # noqa: E402
from tuning.presets import load_presets  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog. 今天天气很好，我们去公园散步吧。"


def measure(engine_kind: str, pairs: int, scale: float | None) -> dict:
    engine = create_engine(engine_kind, replica_scale=scale)
    engine.synthesize(SynthesisRequest(text=TEXT), NullStages())  # warm-up, untimed
    with tempfile.TemporaryDirectory() as tmp:
        svc = Service(engine, Tuner(load_presets()), ClipStore(tmp, max_clips=10))
        ratios, post_fracs, on_walls, off_walls = [], [], [], []
        for i in range(pairs):
            walls = {}
            for traced in ((True, False) if i % 2 == 0 else (False, True)):
                t0 = time.monotonic()
                rec = svc.synthesize(SynthesisRequest(text=TEXT), trace=traced)
                total = time.monotonic() - t0
                walls[traced] = rec.wall_s
                if traced:
                    post_fracs.append((total - rec.wall_s) / rec.wall_s)
            ratios.append(walls[True] / walls[False])
            on_walls.append(walls[True])
            off_walls.append(walls[False])
        svc.close()
    return {"engine": engine_kind, "pairs": pairs, "median_ratio": statistics.median(ratios),
            "p25_ratio": statistics.quantiles(ratios, n=4)[0], "p75_ratio": statistics.quantiles(ratios, n=4)[2],
            "median_on_s": statistics.median(on_walls), "median_off_s": statistics.median(off_walls),
            "post_fraction": statistics.median(post_fracs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--engines", default="builtin,replica")
    ap.add_argument("--replica-scale", type=float, default=None)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("note: not root; the traced side may run in schedstat mode", file=sys.stderr)
    rows = [measure(e, args.pairs, args.replica_scale) for e in args.engines.split(",")]
    print(f"{'engine':9} {'pairs':>5} {'traced s':>9} {'untraced s':>10} {'median on/off':>13} "
          f"{'IQR':>13} {'analysis/synth':>14}")
    for r in rows:
        print(f"{r['engine']:9} {r['pairs']:5d} {r['median_on_s']:9.3f} {r['median_off_s']:10.3f} "
              f"{r['median_ratio']:13.3f} {r['p25_ratio']:6.3f}-{r['p75_ratio']:<6.3f} {r['post_fraction']:14.2f}")
    worst = max(r["median_ratio"] for r in rows)
    print(f"goal: median on/off <= 1.03 -> {'met' if worst <= 1.03 else 'NOT met'} (worst {worst:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
