"""Why a snapshot crawled under CPU pressure: the trace-aux thread's scheduling class, side by side.

Every request waits for its analysis (reading the ring buffer, breakdown, findings, timeline,
attachment) and the next window's preparation, which run on the trace-aux thread. With no CPU
left free by the preset, that thread used to run at SCHED_IDLE; it now runs at SCHED_BATCH
(tuning/apply.py). This runs K requests per class under `stress-ng --cpu 2 --vm 1 --vm-bytes 512M`,
alternating the class request by request (same background for both), and prints per class the
p50/max of the time one snapshot request costs (Service.synthesize, end to end) and the ratio.

    .venv/bin/python benchmarks/aux_policy_under_pressure.py [-k 3] [--cap 60] [--timeout 300]

A request that takes longer than --cap seconds is reported as "> cap": the hog is then stopped so
that the starved request can finish, and the run ends there.

Metric: seconds of one `Service.synthesize(..., preset="default", scope="request", trace=True)`
call (time.monotonic), builtin engine, the snapshot CLI's default text.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from app.service import Service  # noqa: E402
from app.store import ClipStore  # noqa: E402
from models.base import NullStages, SynthesisRequest  # noqa: E402
from models.registry import create_engine  # noqa: E402
from tracing.snapshot import DEFAULT_TEXT  # noqa: E402
from tracing.tracefs import find_tracefs  # noqa: E402
from tuning.apply import Tuner  # noqa: E402
from tuning.presets import load_presets  # noqa: E402

CLASSES = {"batch (now)": os.SCHED_BATCH, "idle (before)": os.SCHED_IDLE}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", type=int, default=3, help="requests per class")
    ap.add_argument("--timeout", type=int, default=300, help="stress-ng --timeout, seconds")
    ap.add_argument("--cap", type=float, default=60.0, help="give up on a request after this many seconds")
    a = ap.parse_args(argv)
    eng = create_engine("builtin")
    tuner = Tuner(load_presets())
    want = {"policy": os.SCHED_BATCH}

    def place(tid):  # the tuner's placement, with the class under test
        os.sched_setscheduler(tid, want["policy"], os.sched_param(0))
        return {"tid": tid}

    tuner._place_aux = place  # re-placements (preset changes) keep the class under test
    work = tempfile.mkdtemp(prefix="aux-bench-")
    svc = Service(eng, tuner, ClipStore(work), trace_root=find_tracefs(None))
    eng.synthesize(SynthesisRequest(text=DEFAULT_TEXT), NullStages())
    hog = subprocess.Popen(["stress-ng", "--cpu", "2", "--vm", "1", "--vm-bytes", "512M",
                            "--timeout", f"{a.timeout}s", "--quiet"], process_group=0)
    times = {k: [] for k in CLASSES}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally below stops the hog
    capped = None
    try:
        time.sleep(2)
        for i in range(a.k):
            for name, pol in CLASSES.items():
                want["policy"] = pol
                svc._aux.submit(lambda: place(0)).result()
                t = time.monotonic()
                th = threading.Thread(target=svc.synthesize, args=(SynthesisRequest(text=DEFAULT_TEXT),),
                                      kwargs={"preset": "default", "scope": "request", "trace": True})
                th.start()
                th.join(a.cap)
                if th.is_alive():
                    capped = name
                    print(f"{name:14s} request {i + 1}: > {a.cap:.0f} s; stopping the hog so it can finish",
                          flush=True)
                    os.killpg(hog.pid, signal.SIGTERM)
                    th.join()
                    print(f"{name:14s} request {i + 1}: finished {time.monotonic() - t:.1f} s after it began, "
                          "once the hog was gone", flush=True)
                    break
                times[name].append(time.monotonic() - t)
                print(f"{name:14s} request {i + 1}: {times[name][-1]:.1f} s", flush=True)
            if capped:
                break
    finally:
        if hog.poll() is None:
            os.killpg(hog.pid, signal.SIGTERM)
        hog.wait(15)
        svc.close()
    if capped:
        ok = times["batch (now)"]
        print(f"batch (now): {', '.join(f'{x:.1f}' for x in ok)} s; idle (before): a request took more than "
              f"{a.cap:.0f} s under the same pressure")
        return 0
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:14s} p50 {med[k]:.1f} s  max {max(v):.1f} s  (n={len(v)})")
    b, i = med["batch (now)"], med["idle (before)"]
    print(f"ratio idle/batch (p50): {i / b:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
