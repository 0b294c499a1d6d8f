"""Our parse+analyze vs `trace-cmd report` on the SAME captured events.

Captures `stress-ng --switch 2` into a tracefs instance kept for the benchmark (big buffer), reads
its `trace` text, then `trace-cmd extract -B <instance>` (while the instance still exists) and
times `trace-cmd report` on that file. Analysis is done for one stress-ng worker process, a heavy
case (it takes part in about a quarter of all events). Prints counts, times and the ratio
ours / trace-cmd (goal <= 1.0). The instance is always removed.

    .venv/bin/python benchmarks/analysis_speed.py [--seconds 1.5] [--buffer-mb 48]
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracing import analysis, parse, tracefs  # noqa: E402
from tracing.window import EVENTS, _cpumask, process_cpus  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--buffer-mb", type=int, default=48)
    args = ap.parse_args()
    root = tracefs.find_tracefs()
    if root is None:
        print("no tracefs: cannot benchmark")
        return 1
    name = f"ittsw-bench-{os.getpid()}"
    inst = root / "instances" / name
    os.mkdir(inst)
    try:
        w = lambda f, v: (inst / f).write_text(str(v))  # noqa: E731
        w("tracing_on", 0)
        w("tracing_cpumask", _cpumask(process_cpus(os.getpid())))
        w("buffer_size_kb", args.buffer_mb * 1024)
        w("trace_clock", "mono")
        w("options/record-tgid", 1)
        for ev in EVENTS:
            try:
                w(f"events/{ev}/enable", 1)
            except OSError:
                pass
        w("tracing_on", 1)
        t0 = time.monotonic()
        subprocess.run(["stress-ng", "--switch", "2", "--timeout", str(args.seconds), "-q"],
                       timeout=args.seconds + 30)
        t1 = time.monotonic()
        w("tracing_on", 0)
        text = (inst / "trace").read_text(errors="replace")
        with tempfile.TemporaryDirectory() as td:
            dat = os.path.join(td, "f.dat")
            subprocess.run(["trace-cmd", "extract", "-B", name, "-o", dat], check=True, capture_output=True)
            a = time.perf_counter()
            subprocess.run(["trace-cmd", "report", "-i", dat], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            tc = time.perf_counter() - a
    finally:
        tracefs.quiesce_and_remove(inst)

    a = time.perf_counter()
    events = parse.parse_trace(text)
    tp = time.perf_counter() - a
    # the busiest stress-ng process: the heavy case for the per-thread state machine
    sw = events.kind == parse.K_SWITCH
    counts = collections.Counter(events.tid[sw].tolist())
    target = next((p for p, _ in counts.most_common() if p and events.sa(int(
        next(i for i in range(len(events)) if sw[i] and events.tid[i] == p))).startswith("stress-ng")),
        os.getpid())
    a = time.perf_counter()
    bd = analysis.analyze(events, target, t0, t1)
    ta = time.perf_counter() - a
    ours = tp + ta
    print(f"events: {len(events)} (text {len(text) / 1e6:.1f} MB), target pid {target}: "
          f"{bd.totals['voluntary_switches'] + bd.totals['involuntary_switches']} switches")
    print(f"ours: parse {tp:.3f} s + analyze {ta:.3f} s = {ours:.3f} s ({len(events) / ours / 1e3:.0f}k events/s)")
    print(f"trace-cmd report: {tc:.3f} s ({len(events) / tc / 1e3:.0f}k events/s)")
    print(f"ratio ours/trace-cmd: {ours / tc:.2f} (goal <= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
