"""Does a priority boost bring the first sound forward under CPU interference? (issue 23, item 5)

In process (Service + the replica engine, traced), with `stress-ng --cpu <N>` hogging every CPU at
nice 0, it runs interleaved pairs of requests of a >= 4-segment text: one under the request-scoped
preset `default`, one under `priority` (nice -10, the boost), alternating which goes first. The
first sound is the server's first_sound_s (synthesis start -> first segment handed over); the boost
is in force from the request's start until it ends, so up to the first sound it is exactly a
"first segment only" boost (what a first-segment-only variant would add is giving the CPU back
after the first sound). Printed: `first-sound boosted/default ratio <median> [<lo>, <hi>]` (per
pair, bootstrap 95%), the medians, and whole-request wall the same way.

    sudo .venv/bin/python benchmarks/first_sound_boost.py [--pairs 8] [--hogs 2] [--scale 0.1]

Example: `flock /tmp/itts-bench.lock .venv/bin/python benchmarks/first_sound_boost.py --pairs 8`.
Needs stress-ng and the right to lower nice (root or CAP_SYS_NICE).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.first_sound import TEXT  # noqa: E402
from benchmarks.tracing_overhead import bootstrap_median  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--hogs", type=int, default=len(os.sched_getaffinity(0)), help="stress-ng --cpu workers")
    ap.add_argument("--scale", type=float, default=0.1, help="replica scale")
    ap.add_argument("--boost", default="priority", help="the boosted preset")
    args = ap.parse_args(argv)
    if not shutil.which("stress-ng"):
        ap.error("stress-ng is not installed")
    from app.service import Service
    from app.store import ClipStore
    from models.base import SynthesisRequest
    from models.replica import ReplicaEngine
    from tuning.apply import Tuner
    from tuning.presets import load_presets

    load = os.getloadavg()
    tuner = Tuner(load_presets())
    with tempfile.TemporaryDirectory(prefix="boost-") as tmp:
        svc = Service(ReplicaEngine(scale=args.scale), tuner, ClipStore(Path(tmp) / "out"))
        gen = {"max_mel_tokens": 60, "num_beams": 1}

        def req():
            return SynthesisRequest(text=TEXT, max_text_tokens_per_segment=20, generation=dict(gen))
        svc.synthesize(req(), history=False)  # warm-up, no interference
        hog = subprocess.Popen(["stress-ng", "--cpu", str(args.hogs), "--timeout", "3600", "-q"])
        rows = []
        try:
            for i in range(args.pairs):
                order = ("default", args.boost) if i % 2 == 0 else (args.boost, "default")
                row = {}
                for p in order:
                    rec = svc.synthesize(req(), preset=p, scope="request", history=False)
                    row[p] = (rec.first_sound_s, rec.wall_s, len(rec.segment_s))
                    svc.store.discard(rec.id)
                rows.append(row)
                print(f"  pair {i + 1}/{args.pairs}: first sound {row['default'][0] * 1000:.0f} ms default / "
                      f"{row[args.boost][0] * 1000:.0f} ms {args.boost}", file=sys.stderr, flush=True)
        finally:
            hog.terminate()
            hog.wait()
            svc.close()
    fs = bootstrap_median([r[args.boost][0] / r["default"][0] for r in rows])
    wall = bootstrap_median([r[args.boost][1] / r["default"][1] for r in rows])
    med = lambda p, k: sorted(r[p][k] for r in rows)[len(rows) // 2]  # noqa: E731
    print(f"load average before: {load[0]:.2f}; stress-ng --cpu {args.hogs}; replica scale {args.scale}; "
          f"{rows[0]['default'][2]} segments")
    print(f"first-sound {args.boost}/default ratio {fs[0]:.3f} [{fs[1]:.3f}, {fs[2]:.3f}]  "
          f"(medians {med(args.boost, 0) * 1000:.0f} / {med('default', 0) * 1000:.0f} ms)")
    print(f"wall {args.boost}/default ratio {wall[0]:.3f} [{wall[1]:.3f}, {wall[2]:.3f}]  "
          f"(medians {med(args.boost, 1) * 1000:.0f} / {med('default', 1) * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
