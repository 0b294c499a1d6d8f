"""Window analysis speed: our decode + analyze vs `trace-cmd report` on the SAME ring-buffer pages,
interleaved in one run, with a bootstrap interval; and the memory the analysis takes.

Capture: `stress-ng --switch 2` into a tracefs instance with a big buffer (48 MB/CPU: ~1.7-1.9 M
events on a 2-vCPU VM; the buffer fills, so some events are lost, as in real heavy windows), read
exactly as TraceWindow.collect() does: the text `trace`, then the binary pages (per_cpu/cpuN/
trace_pipe_raw). trace-cmd gets those same pages: `trace-cmd restore` wraps the per-CPU files into a
trace.dat with this kernel's formats, and `trace-cmd report -i` on it is timed (output to /dev/null).
Ours is the product's path: tracing.rawparse.parse_pages + tracing.analysis.analyze for one
stress-ng worker (the heavy case: it takes part in about half of all events).
Also run, in the same rounds unless --no-reference: the event-by-event implementation this one
replaced (tests/reference/*_loop.py, the tests' oracle); its breakdown and ours are compared field
by field (printed "identical").

Rounds: every arm runs once per round, in a rotating order; per round the ratio ours/trace-cmd;
printed: the median ratio and a bootstrap 95% interval over rounds (5000 resamples), goal <= 0.2,
in wall time (the goal) and in CPU time (ours: process_time; trace-cmd: the child's user+sys),
which a loaded machine distorts less.
Memory: decode + analyze in a fresh subprocess per implementation: peak RSS (VmHWM) above the
RSS with the pages loaded, and numpy's own peak (tracemalloc), per event.
Load average is printed: timings on a shared machine are noisy, ratios less so (same rounds).

    .venv/bin/python benchmarks/analysis_speed.py [--seconds 2] [--buffer-mb 48] [--rounds 9]
        [--save DIR | --load DIR] [--no-reference] [--text] [--baseline ROOT] [--fresh]

--baseline ROOT also times ROOT/tracing (another checkout, e.g. `git archive main | tar -x -C ROOT`)
as an arm of the same rounds: a before/after on the same events, with its memory and breakdown.
--fresh adds an arm per implementation (the reference aside) that runs decode + analyze in a new
process each round: on memory the process never touched, as a server's analysis runs after its
heap was given back between requests (the in-process arms reuse what earlier arms freed).

--save DIR keeps the capture (pages, formats, window bounds) for a later --load DIR run (profiling,
or the same events on another machine); the instance is always removed.
"""
from __future__ import annotations

import argparse
import collections
import importlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracing import analysis, parse, rawparse, tracefs  # noqa: E402
from tracing.window import EVENTS, _cpumask  # noqa: E402
from tests.reference.compare import first_difference  # noqa: E402

BOOT = 5000
GOAL = 0.2


def capture(root: Path, seconds: float, buffer_mb: int, cpus: list[int], out: Path) -> None:
    """A stress-ng --switch window saved under `out` (see save())."""
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
        overrun = {}
        for c in cpus:  # events the full buffer overwrote (the capture is meant to be lossy)
            stats = tracefs._read(inst / "per_cpu" / f"cpu{c}" / "stats") or ""
            overrun[c] = next((int(ln.split()[-1]) for ln in stats.splitlines() if ln.startswith("overrun:")), None)
        pages = tracefs.read_pages(inst, cpus, ring.page_size)
        tgids = tracefs.read_saved_tgids(root)
    finally:
        tracefs.quiesce_and_remove(inst)
    formats = [tracefs._read(root / "events" / ev / "format") for ev in (*EVENTS, tracefs.MARKER_EVENT)]
    save(out, pages, tracefs._read(root / "events" / "header_page"), [f for f in formats if f],
         ring.page_size, tgids, t0, t1, text, overrun)


def save(out: Path, pages, header_page, formats, page_size, tgids, t0, t1, text, overrun) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for c, b in pages.items():
        (out / f"cpu{c}.raw").write_bytes(b)
    (out / "header_page").write_text(header_page)
    (out / "formats").write_text("%%\n".join(formats))
    (out / "trace.txt").write_text(text)
    (out / "meta.json").write_text(json.dumps({"t0": t0, "t1": t1, "cpus": sorted(pages), "page_size": page_size,
                                               "tgids": {str(k): v for k, v in tgids.items()},
                                               "overrun": {str(k): v for k, v in overrun.items()}}))


def load(d: Path):
    """(pages, ring format, tgids, t0, t1) of a saved capture."""
    m = json.loads((d / "meta.json").read_text())
    ring = rawparse.ring_format((d / "header_page").read_text(), (d / "formats").read_text().split("%%\n"),
                                m["page_size"])
    pages = {c: (d / f"cpu{c}.raw").read_bytes() for c in m["cpus"]}
    return pages, ring, {int(k): v for k, v in m["tgids"].items()}, m["t0"], m["t1"]


def trace_cmd_dat(d: Path, cpus: list[int], td: str) -> str:
    """A trace.dat holding exactly the saved pages (trace-cmd restore: header from this kernel + CPU files)."""
    head, dat = os.path.join(td, "head.dat"), os.path.join(td, "trace.dat")
    files = []
    for c in range(max(cpus) + 1):
        f = d / f"cpu{c}.raw"
        if not f.exists():
            f.write_bytes(b"")
        files.append(str(f))
    subprocess.run(["trace-cmd", "restore", "-c", "-o", head], check=True, capture_output=True)
    subprocess.run(["trace-cmd", "restore", "-i", head, "-o", dat, *files], check=True, capture_output=True)
    return dat


def implementations(reference: bool, baseline: Path | None = None, d: Path | None = None) -> dict:
    impls = {"ours": (rawparse.parse_pages, analysis.analyze)}
    if reference:
        from tests.reference import analysis_loop, rawparse_loop
        impls["reference"] = (rawparse_loop.parse_pages, analysis_loop.analyze)
    if baseline is not None:
        impls["baseline"] = baseline_impl(baseline, d)
    return impls


def baseline_impl(root: Path, d: Path):
    """(decode, analyze) of the tracing package of another checkout (`git archive main | tar -x -C
    DIR`, say): imported as a package of its own, with the ring format its own code reads from
    the capture, so a before/after runs in the same rounds on the same events."""
    name = "tracing_baseline"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, root / "tracing" / "__init__.py",
                                                      submodule_search_locations=[str(root / "tracing")])
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    rp, an = importlib.import_module(f"{name}.rawparse"), importlib.import_module(f"{name}.analysis")
    m = json.loads((d / "meta.json").read_text())
    ring = rp.ring_format((d / "header_page").read_text(), (d / "formats").read_text().split("%%\n"), m["page_size"])
    return (lambda pages, _ring, tgids: rp.parse_pages(pages, ring, tgids)), an.analyze


def pick_target(ev) -> int:
    """The busiest stress-ng worker (most switch-outs)."""
    sw = ev.kind == parse.K_SWITCH
    first_row = {}
    for i in map(int, (sw.nonzero()[0])[:200000]):
        first_row.setdefault(int(ev.tid[i]), i)
    counts = collections.Counter(ev.tid[sw].tolist())
    return next((p for p, _ in counts.most_common() if p in first_row and ev.sa(first_row[p]).startswith("stress-ng")),
                os.getpid())


def memory_child(d: Path, impl: str, pid: int, baseline: Path | None = None) -> dict:
    """Run in a fresh process: decode + analyze once; RSS figures in bytes."""
    import tracemalloc

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        return 0

    pages, ring, tgids, t0, t1 = load(d)
    decode, analyze = implementations(impl == "reference", baseline if impl == "baseline" else None, d)[impl]
    base = status("VmRSS:")
    tracemalloc.start()
    ev = decode(pages, ring, tgids)
    analyze(ev, pid, t0, t1)
    _, traced_peak = tracemalloc.get_traced_memory()
    return {"events": len(ev), "pages_bytes": sum(map(len, pages.values())), "rss_base": base,
            "hwm_above_base": status("VmHWM:") - base, "numpy_peak": traced_peak}


def time_child(d: Path, impl: str, pid: int, baseline: Path | None = None) -> dict:
    """Run in a fresh process: decode + analyze once, on memory this process never touched before
    (as a server's analysis is after its heap was given back between requests); seconds."""
    pages, ring, tgids, t0, t1 = load(d)
    decode, analyze = implementations(False, baseline if impl == "baseline" else None, d)[impl]
    c0, a = time.process_time(), time.perf_counter()
    analyze(decode(pages, ring, tgids), pid, t0, t1)
    return {"wall": time.perf_counter() - a, "cpu": time.process_time() - c0}


def bootstrap_median(values, n=BOOT, seed=0) -> tuple[float, float, float]:
    """(median, 2.5th, 97.5th percentile of the medians of n resamples with replacement)."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, len(v), size=(n, len(v)))], axis=1)
    return float(np.median(v)), float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="stress-ng --switch run traced (default 2)")
    ap.add_argument("--buffer-mb", type=int, default=48, help="ring buffer per CPU (default 48)")
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    ap.add_argument("--save", type=Path, help="keep the capture in this directory")
    ap.add_argument("--load", type=Path, help="use a capture saved with --save instead of a new one")
    ap.add_argument("--no-reference", action="store_true", help="skip the event-by-event implementation")
    ap.add_argument("--text", action="store_true", help="also time the text parser path once")
    ap.add_argument("--baseline", type=Path, metavar="ROOT",
                    help="also time the tracing package of another checkout (a before/after in the same rounds)")
    ap.add_argument("--fresh", action="store_true",
                    help="also time ours (and the baseline) in a fresh process each round (memory never touched)")
    ap.add_argument("--memory-child", nargs=3, metavar=("DIR", "IMPL", "PID"), help=argparse.SUPPRESS)
    ap.add_argument("--time-child", nargs=3, metavar=("DIR", "IMPL", "PID"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for child, fn in ((args.memory_child, memory_child), (args.time_child, time_child)):
        if child:
            print(json.dumps(fn(Path(child[0]), child[1], int(child[2]), args.baseline)))
            return 0

    with tempfile.TemporaryDirectory() as td:
        d = args.load or args.save or Path(td) / "capture"
        if not args.load:
            root = tracefs.find_tracefs()
            if root is None:
                print("no tracefs: cannot benchmark")
                return 1
            capture(root, args.seconds, args.buffer_mb, sorted(os.sched_getaffinity(0)), d)
        pages, ring, tgids, t0, t1 = load(d)
        lost = json.loads((d / "meta.json").read_text()).get("overrun", {})
        impls = implementations(not args.no_reference, args.baseline, d)
        ev = rawparse.parse_pages(pages, ring, tgids)
        target = pick_target(ev)
        n = len(ev)
        del ev
        dat = trace_cmd_dat(d, sorted(pages), td)
        report = ["trace-cmd", "report", "-i", dat]
        out = subprocess.run(report, check=True, capture_output=True, text=True, errors="replace").stdout
        tc_events = sum(1 for line in out.splitlines() if line.startswith(" ") and "]" in line[:60])
        del out

        def run_ours(name):
            decode, analyze = impls[name]
            c0, a = time.process_time(), time.perf_counter()
            e = decode(pages, ring, tgids)
            b = time.perf_counter()
            bd = analyze(e, target, t0, t1)
            return time.perf_counter() - a, b - a, bd, time.process_time() - c0

        extra = ["--baseline", str(args.baseline)] if args.baseline else []
        fresh = {f"{name}, fresh": name for name in impls if args.fresh and name != "reference"}
        arms = [*impls, *fresh, "trace-cmd"]
        times = {a: [] for a in arms}
        cpu_s = {a: [] for a in arms}
        decode_s = {a: [] for a in impls}
        bds = {}
        load_avg = []
        for r in range(args.rounds):
            load_avg.append(os.getloadavg()[0])
            for arm in arms[r % len(arms):] + arms[:r % len(arms)]:  # rotating order
                if arm == "trace-cmd":
                    r0, a = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                    subprocess.run(report, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    times[arm].append(time.perf_counter() - a)
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu_s[arm].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
                elif arm in fresh:
                    res = subprocess.run([sys.executable, __file__, "--time-child", str(d), fresh[arm], str(target),
                                          *extra], check=True, capture_output=True, text=True)
                    got = json.loads(res.stdout.strip().splitlines()[-1])
                    times[arm].append(got["wall"])
                    cpu_s[arm].append(got["cpu"])
                else:
                    t, t_dec, bd, t_cpu = run_ours(arm)
                    times[arm].append(t)
                    cpu_s[arm].append(t_cpu)
                    decode_s[arm].append(t_dec)
                    bds[arm] = bd.to_dict()
        mem = {}
        for name in impls:
            res = subprocess.run([sys.executable, __file__, "--memory-child", str(d), name, str(target), *extra],
                                 check=True, capture_output=True, text=True)
            mem[name] = json.loads(res.stdout.strip().splitlines()[-1])
        t_text = None
        if args.text:
            text = (d / "trace.txt").read_text()
            a = time.perf_counter()
            analysis.analyze(parse.parse_trace(text), target, t0, t1)
            t_text = time.perf_counter() - a

    bd = bds["ours"]
    switches = bd["totals"]["voluntary_switches"] + bd["totals"]["involuntary_switches"]
    overrun = lost
    print(f"events: {n} decoded from {sum(map(len, pages.values())) / 1e6:.1f} MB of pages (trace-cmd reports "
          f"{tc_events}); overwritten by the full buffer, per CPU: {overrun}; target pid {target}: "
          f"{switches} switches, {bd['totals']['inferred_switches']} inferred")
    print(f"rounds: {args.rounds}, load average (1 min) during them: {min(load_avg):.2f}..{max(load_avg):.2f} "
          f"on {os.cpu_count()} CPUs")
    tc = times["trace-cmd"]
    print(f"trace-cmd report: median {statistics.median(tc):.3f} s ({n / statistics.median(tc) / 1e3:.0f}k events/s)")
    for name in impls:
        t, dec = statistics.median(times[name]), statistics.median(decode_s[name])
        print(f"{name}: median {t:.3f} s = decode {dec:.3f} s + analyze {t - dec:.3f} s ({n / t / 1e3:.0f}k events/s)")
    for name in fresh:
        print(f"{name} (decode + analyze in a new process each round): median {statistics.median(times[name]):.3f} s")
    timed = [*impls, *fresh]
    for name in timed:
        med, lo, hi = bootstrap_median([a / b for a, b in zip(times[name], tc)])
        goal = f" (goal <= {GOAL})" if name.startswith("ours") else ""
        print(f"ratio {name}/trace-cmd: {med:.3f} [{lo:.3f}, {hi:.3f}]{goal}")
    for name in timed:  # what each side computed, whatever the machine's load made of the wall times
        med, lo, hi = bootstrap_median([a / b for a, b in zip(cpu_s[name], cpu_s["trace-cmd"])])
        print(f"ratio {name}/trace-cmd in CPU time: {med:.3f} [{lo:.3f}, {hi:.3f}] "
              f"({statistics.median(cpu_s[name]):.3f} s vs {statistics.median(cpu_s['trace-cmd']):.3f} s)")
    for name in ("reference", "baseline"):
        if name not in impls:
            continue
        med, lo, hi = bootstrap_median([b / a for a, b in zip(times["ours"], times[name])])
        print(f"speed-up {name}/ours: {med:.2f} [{lo:.2f}, {hi:.2f}]")
        ours = dict(bds["ours"])
        if name == "reference":
            ours.pop("first_sound", None)  # newer than the reference (issue 23), as tests/test_analysis_identity.py
        diff = first_difference(ours, bds[name])
        print(f"breakdowns identical (ours vs {name}): " + ("yes" if diff is None else f"NO: {diff}"))
    for name, m in mem.items():
        print(f"memory {name}: peak RSS {m['hwm_above_base'] / 1e6:.0f} MB above the {m['rss_base'] / 1e6:.0f} MB "
              f"with the pages loaded ({m['pages_bytes'] / 1e6:.0f} MB of pages), {m['hwm_above_base'] / n:.0f} B/event; "
              f"numpy peak {m['numpy_peak'] / 1e6:.0f} MB ({m['numpy_peak'] / n:.0f} B/event)")
    if t_text is not None:
        print(f"text parser path (once, for reference): {t_text:.3f} s = {t_text / statistics.median(tc):.2f}x trace-cmd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
