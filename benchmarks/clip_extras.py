"""What this issue's per-clip extras cost, measured on real traced builtin-engine clips.

For each of N requests (builtin engine, the synthesis in a real TraceWindow), medians of:
- naming threads by role before the window (tuning.roles; the first request per thread and torch
  size wakes its OpenMP team once, later ones are a cache check);
- post-processing parts, after the window, in the order the service runs them: collect (read the
  buffer), analyze, the interactive timeline (Plotly figure + its JSON, what gr.Plot ships), the
  attachment zip without trace.dat, trace.dat (tracing.tracedat: two `trace-cmd restore` runs),
  and the zip with trace.dat;
- the trace.dat size and how much it adds to the zip.
The trace.dat figure is also shown next to the synthesis wall, as a ratio.

    .venv/bin/python benchmarks/clip_extras.py [-n 10]
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

import torch  # noqa: E402

from models.base import NullStages, SynthesisRequest  # noqa: E402
from models.registry import create_engine  # noqa: E402
from tracing import tracedat, tracefs  # noqa: E402
from tracing.attachment import build_attachment  # noqa: E402
from tracing.timeline_plot import timeline_figure  # noqa: E402
from tracing.window import TraceWindow  # noqa: E402
from tuning.roles import ThreadRoles  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog. 今天天气很好，我们去公园散步吧。"


class _Sink:
    def __init__(self, w):
        self.w = w

    def stage(self, name):
        return self.w.stage(name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    args = ap.parse_args()
    root = tracefs.find_tracefs()
    if root is None or tracedat.trace_cmd() is None:
        print("needs a writable tracefs and trace-cmd")
        return 1
    engine = create_engine("builtin")
    req = SynthesisRequest(text=TEXT)
    engine.synthesize(req, NullStages())  # warm-up, untimed
    roles = ThreadRoles()
    tracedat.prepare(root)  # what the service does at start, on its aux thread
    timeline_figure({"mode": "full", "segments": []})  # plotly's validators load once
    rows = []
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        for _ in range(args.n):
            t = time.perf_counter()
            roles.name_synthesis_thread(torch)
            r = {"roles": time.perf_counter() - t}
            w = TraceWindow().prepare()
            t = time.perf_counter()
            with w:
                engine.synthesize(req, _Sink(w))
            r["synthesis"] = time.perf_counter() - t
            t = time.perf_counter()
            cap = w.collect()
            r["collect"] = time.perf_counter() - t
            t = time.perf_counter()
            bd = w.analyze().to_dict()
            r["analyze"] = time.perf_counter() - t
            t = time.perf_counter()
            timeline_figure(bd).to_json()
            r["plotly figure + json"] = time.perf_counter() - t
            t = time.perf_counter()
            build_attachment(td / "a.zip", cap.raw_text, {"breakdown": bd}, "report", None)
            r["zip without trace.dat"] = time.perf_counter() - t
            t = time.perf_counter()
            dat = tracedat.write_trace_dat(td / "trace.dat", cap.pages, root, cap.ring.page_size)
            r["trace.dat"] = time.perf_counter() - t
            t = time.perf_counter()
            build_attachment(td / "b.zip", cap.raw_text, {"breakdown": bd}, "report", None, trace_dat=dat)
            r["zip with trace.dat"] = time.perf_counter() - t
            r["segments"] = len(bd["segments"])
            r["trace.dat KB"] = os.path.getsize(dat) / 1024
            r["zip growth KB"] = (os.path.getsize(td / "b.zip") - os.path.getsize(td / "a.zip")) / 1024
            rows.append(r)
    print(f"{args.n} builtin clips, medians:")
    for k in rows[0]:
        v = statistics.median(r[k] for r in rows)
        print(f"  {k:24s} {v * 1000:8.1f} ms" if k not in ("segments", "trace.dat KB", "zip growth KB")
              else f"  {k:24s} {v:8.0f}")
    ratio = statistics.median(r["trace.dat"] / r["synthesis"] for r in rows)
    print(f"trace.dat / synthesis wall: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
