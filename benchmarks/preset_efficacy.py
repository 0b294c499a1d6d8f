"""Does a scheduling preset protect synthesis latency under real CPU + memory interference?

Measures, in one run: synthesis wall time per request with the builtin engine, for each preset,
first on an idle machine (baseline) and then under `stress-ng --cpu N --vm 1 --vm-bytes 256M`.
Presets are interleaved round-robin (request i uses preset i mod P, applied with Tuner.apply), so
slow drifts of the shared machine hit every preset alike. Prints p50/p95 per preset and condition,
and the ratio of each to the idle baseline of the `default` preset (1.0 = as fast as idle).

    .venv/bin/python benchmarks/preset_efficacy.py [-k 20] [--stress-cpus 2] [--allow-realtime]

Metric: latency = wall-clock seconds of one `engine.synthesize()` call (time.perf_counter).
p50/p95: nearest-rank percentiles over the K requests of a preset in a condition.
Run as root for the nice -10 presets (they are skipped with a note otherwise).
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tuning.apply import Tuner, TuningError  # noqa: E402
from tuning.presets import load_presets  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, and the scheduler decides who runs next."


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def measure(engine, tuner, presets, k, req, stages, demoted: dict) -> dict[str, list[float]]:
    out = {p: [] for p in presets}
    for _ in range(k):
        for p in presets:  # round-robin: every preset sees the same moments of the run
            tuner.apply(p)
            tuner.ensure()
            t = time.perf_counter()
            with tuner.rt_request(len(req.text)) as rt:  # as the service wraps every synthesis
                engine.synthesize(req, stages)
            out[p].append(time.perf_counter() - t)
            demoted[p] = demoted.get(p, 0) + rt.demoted  # RLIMIT_RTTIME fired mid-request
    tuner.apply("default")
    return out


def start_stress(cpus: int, seconds: int) -> subprocess.Popen:
    if not shutil.which("stress-ng"):
        sys.exit("stress-ng is not installed (apt-get install stress-ng)")
    def die_with_us():  # the stressor must not outlive a benchmark that is killed
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return subprocess.Popen(
        ["stress-ng", "--cpu", str(cpus), "--vm", "1", "--vm-bytes", "256M", "--timeout", f"{seconds}s", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=die_with_us)


def stop_stress(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)  # its own session: the workers go too
            p.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", type=int, default=10, help="requests per preset per condition")
    ap.add_argument("--stress-cpus", type=int, default=os.cpu_count(), help="stress-ng --cpu workers")
    ap.add_argument("--max-stress-s", type=int, default=120, help="stress-ng --timeout (hard bound)")
    ap.add_argument("--presets", default="default,pinned,priority,pinned-priority,background",
                    help="comma-separated preset names")
    ap.add_argument("--allow-realtime", action="store_true", help="also measure the realtime preset")
    args = ap.parse_args(argv)

    from models.base import NullStages, SynthesisRequest
    from models.builtin import BuiltinEngine

    presets = load_presets()
    names = [n for n in args.presets.split(",") if n]
    if args.allow_realtime and "realtime" not in names:
        names.append("realtime")
    tuner = Tuner(presets, allow_realtime=args.allow_realtime)
    usable = []
    for n in names:  # drop presets this user may not apply, and say so
        try:
            tuner.apply(n)
            usable.append(n)
        except TuningError as e:
            print(f"# skipping {n}: {e}")
    tuner.apply("default")
    engine = BuiltinEngine()
    req, stages = SynthesisRequest(text=TEXT), NullStages()
    if hasattr(engine, "warmup"):
        engine.warmup()
    for n in usable:  # warm each preset once (torch pools resize with the thread count)
        tuner.apply(n)
        engine.synthesize(req, stages)
    tuner.apply("default")

    t0 = time.monotonic()
    demoted: dict[str, int] = {}
    idle = measure(engine, tuner, usable, args.k, req, stages, demoted)
    idle_s = time.monotonic() - t0
    stress = start_stress(args.stress_cpus, min(args.max_stress_s, int(idle_s * 8) + 30))
    try:
        time.sleep(1.0)  # let the workers and the 256M vm worker get going
        t0 = time.monotonic()
        loaded = measure(engine, tuner, usable, args.k, req, stages, demoted)
        loaded_s = time.monotonic() - t0
        stress_alive = stress.poll() is None
    finally:
        stop_stress(stress)
        tuner.apply("default")

    base50 = percentile(idle["default"], 50) if "default" in idle else percentile(idle[usable[0]], 50)
    base95 = percentile(idle["default"], 95) if "default" in idle else percentile(idle[usable[0]], 95)
    print(f"# builtin engine, {args.k} requests per preset per condition, round-robin; "
          f"stress-ng --cpu {args.stress_cpus} --vm 1 --vm-bytes 256M "
          f"({'running throughout' if stress_alive else 'ENDED EARLY: raise --max-stress-s'}); "
          f"{os.cpu_count()} CPUs; idle phase {idle_s:.1f}s, stress phase {loaded_s:.1f}s")
    print(f"# ratios are to the idle `default` baseline (p50 {base50 * 1e3:.1f} ms, p95 {base95 * 1e3:.1f} ms)")
    head = ("preset", "idle p50 ms", "idle p95 ms", "stress p50 ms", "stress p95 ms", "p50 ratio", "p95 ratio",
            "RT demoted")
    print("{:<16}{:>12}{:>12}{:>14}{:>14}{:>11}{:>11}{:>11}".format(*head))
    for n in usable:
        i50, i95 = percentile(idle[n], 50), percentile(idle[n], 95)
        s50, s95 = percentile(loaded[n], 50), percentile(loaded[n], 95)
        print("{:<16}{:>12.1f}{:>12.1f}{:>14.1f}{:>14.1f}{:>11.2f}{:>11.2f}{:>11}".format(
            n, i50 * 1e3, i95 * 1e3, s50 * 1e3, s95 * 1e3, s50 / base50, s95 / base95, demoted.get(n, 0)))
    print("# RT demoted: requests during which RLIMIT_RTTIME fired and the tuner dropped real-time "
          "(the rest of that request ran as SCHED_OTHER)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
