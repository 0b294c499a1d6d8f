"""Our decode+analyze vs `trace-cmd report` on the SAME ring-buffer pages, side by side in one run.

Captures `stress-ng --switch 2` into a tracefs instance with a big buffer (the default fills
48 MB/CPU: ~1.9 M events on this 2-CPU VM), reads its text `trace`, then its binary pages
(per_cpu/cpuN/trace_pipe_raw) exactly as TraceWindow.collect() does. trace-cmd gets those same
pages: `trace-cmd restore` wraps the per-CPU files into a trace.dat with this kernel's formats,
and `trace-cmd report` on it is timed (output to /dev/null). Our side is the product's path:
tracing.rawparse.parse_pages + tracing.analysis.analyze for one stress-ng worker (the heavy
case: it takes part in about a quarter of all events). The text parser's figure is printed too.
Medians of --repeat runs; prints the ratio ours / trace-cmd (goal <= 1.0). The instance is
always removed.

    .venv/bin/python benchmarks/analysis_speed.py [--seconds 2] [--buffer-mb 48] [--repeat 3]
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracing import analysis, parse, rawparse, tracefs  # noqa: E402
from tracing.window import EVENTS, _cpumask  # noqa: E402


def capture(root: Path, seconds: float, buffer_mb: int, cpus: list[int]):
    """(text, pages, ring, tgids, t0, t1) of a stress-ng --switch run."""
    name = f"ittsw-bench-{os.getpid()}"
    inst = root / "instances" / name
    os.mkdir(inst)
    try:
        w = lambda f, v: (inst / f).write_text(str(v))  # noqa: E731
        w("tracing_on", 0)
        w("tracing_cpumask", _cpumask(cpus))
        w("buffer_size_kb", buffer_mb * 1024)
        w("trace_clock", "mono")
        w("options/record-tgid", 1)
        for ev in EVENTS:
            try:
                w(f"events/{ev}/enable", 1)
            except OSError:
                pass
        w("tracing_on", 1)
        t0 = time.monotonic()
        # stress-ng's --timeout takes whole seconds ("0.3" would mean forever): stop it ourselves
        p = subprocess.Popen(["stress-ng", "--switch", "2", "--timeout", "600", "-q"])
        try:
            time.sleep(seconds)
        finally:
            p.terminate()
            p.wait(timeout=30)
        t1 = time.monotonic()
        w("tracing_on", 0)
        text = (inst / "trace").read_text(errors="replace")
        ring = tracefs.read_ring_format(root, inst)
        if ring is None:
            raise SystemExit("cannot read the ring-buffer formats of this tracefs")
        pages = tracefs.read_pages(inst, cpus, ring.page_size)
        tgids = tracefs.read_saved_tgids(root)
    finally:
        tracefs.quiesce_and_remove(inst)
    return text, pages, ring, tgids, t0, t1


def trace_cmd_dat(pages: dict, cpus: list[int], td: str) -> str:
    """A trace.dat holding exactly `pages` (trace-cmd restore: header from this kernel + CPU files)."""
    head, dat = os.path.join(td, "head.dat"), os.path.join(td, "trace.dat")
    files = []
    for c in range(max(cpus) + 1):
        f = os.path.join(td, f"cpu{c}.raw")
        Path(f).write_bytes(pages.get(c, b""))
        files.append(f)
    subprocess.run(["trace-cmd", "restore", "-c", "-o", head], check=True, capture_output=True)
    subprocess.run(["trace-cmd", "restore", "-i", head, "-o", dat, *files], check=True, capture_output=True)
    return dat


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        a = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - a)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--buffer-mb", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = tracefs.find_tracefs()
    if root is None:
        print("no tracefs: cannot benchmark")
        return 1
    cpus = sorted(os.sched_getaffinity(0))
    text, pages, ring, tgids, t0, t1 = capture(root, args.seconds, args.buffer_mb, cpus)

    ev = rawparse.parse_pages(pages, ring, tgids)
    sw = ev.kind == parse.K_SWITCH
    first_row = {}
    for i in map(int, (sw.nonzero()[0])[:200000]):
        first_row.setdefault(int(ev.tid[i]), i)
    counts = collections.Counter(ev.tid[sw].tolist())
    target = next((p for p, _ in counts.most_common() if p in first_row and ev.sa(first_row[p]).startswith("stress-ng")),
                  os.getpid())

    def ours_pages():
        e = rawparse.parse_pages(pages, ring, tgids)
        return analysis.analyze(e, target, t0, t1)

    def ours_text():
        e = parse.parse_trace(text)
        return analysis.analyze(e, target, t0, t1)

    t_pages, bd = timed(ours_pages, args.repeat)
    t_parse, _ = timed(lambda: rawparse.parse_pages(pages, ring, tgids), args.repeat)
    t_text, bd_text = timed(ours_text, 1)
    with tempfile.TemporaryDirectory() as td:
        dat = trace_cmd_dat(pages, cpus, td)
        report = ["trace-cmd", "report", "-i", dat]
        t_tc, _ = timed(lambda: subprocess.run(report, check=True, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL), args.repeat)
        out = subprocess.run(report, check=True, capture_output=True, text=True, errors="replace").stdout
    tc_events = sum(1 for line in out.splitlines() if line.startswith(" ") and "]" in line[:60])

    n = len(ev)
    text_lines = sum(1 for ln in text.splitlines() if ln and not ln.startswith("#"))
    switches = bd.totals["voluntary_switches"] + bd.totals["involuntary_switches"]
    print(f"events: {n} decoded from {sum(map(len, pages.values())) / 1e6:.1f} MB of pages "
          f"(trace-cmd reports {tc_events}; text has {text_lines} lines, {len(text) / 1e6:.0f} MB); "
          f"target pid {target}: {switches} switches")
    if abs(bd.totals["on_cpu_s"] - bd_text.totals["on_cpu_s"]) > 1e-3:
        print("WARNING: the text and page paths disagree on on_cpu_s")
    print(f"ours (pages): {t_pages:.3f} s = decode {t_parse:.3f} s + analyze {t_pages - t_parse:.3f} s "
          f"({n / t_pages / 1e3:.0f}k events/s)")
    print(f"ours (text parser, for reference): {t_text:.3f} s")
    print(f"trace-cmd report: {t_tc:.3f} s ({n / t_tc / 1e3:.0f}k events/s)")
    print(f"ratio ours/trace-cmd: {t_pages / t_tc:.2f} (goal <= 1.0); text path: {t_text / t_tc:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
