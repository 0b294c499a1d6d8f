"""A hand-laid request for the device view's pure tests: a breakdown dict with one launch thread
and a Kineto profile whose every gap has a known class (times on the trace clock; the profile in
CLOCK_REALTIME = trace clock + OFFSET_NS, which only the clock markers tell the analysis).

Trace clock, seconds from 100.0 (window 100.0 .. 101.0), launch thread tid 500 (ns tid 17):
  running 100.00-100.30, runnable 100.30-100.50 (CPU held by hog:77 on CPU 1), running
  100.50-100.60, sleep 100.60-100.80 (inside cudaStreamSynchronize), running 100.80-101.00.
GPU 0 (stream 7):
  K1 100.050-100.300 launched 100.010   -> gap 100.000-100.050 host_wait (launch after it began)
  K2 100.520-100.550 launched 100.510   -> gap 100.300-100.520 host_wait: runnable 0.2 behind hog
  K3 100.550010-100.600 launched 100.505 (queued) -> gap of 10 us: kernel_wait
  K4 100.650-100.750 launched 100.555 (queued)    -> gap 100.600-100.650: other
  after 100.750: no_gpu_work
"""
from __future__ import annotations

from tracing.clock import clock_marker

OFFSET_NS = 1_700_000_000_000_000_000 - 100_000_000_000  # REALTIME - trace clock
NS_TID, TID = 17, 500


def rt_us(trace_s: float, base_ns: int) -> float:
    """A trace-clock time as Kineto's relative microseconds."""
    return round((int(round(trace_s * 1e9)) + OFFSET_NS - base_ns) / 1e3, 3)


def breakdown() -> dict:
    segs = [(100.0, 100.3, "running", None), (100.3, 100.5, "runnable", "hog:77"), (100.5, 100.6, "running", None),
            (100.6, 100.8, "sleep", None), (100.8, 101.0, "running", None)]
    marks = [{"ts_s": t, "text": clock_marker(int(round(t * 1e9)) + OFFSET_NS, int(round(t * 1e9)), 150)}
             for t in (100.0, 101.0)]
    return {"mode": "full", "pid": TID, "window": {"start_s": 100.0, "end_s": 101.0, "duration_s": 1.0},
            "totals": {"wall_s": 1.0}, "threads": [{"tid": TID, "comm": "tts-synth", "observed_s": 1.0,
                                                    "on_cpu_s": 0.6, "runqueue_wait_s": 0.2, "sleep_s": 0.2}],
            "stages": [{"name": "gpt", "start_s": 100.0, "end_s": 100.5}, {"name": "vocoder", "start_s": 100.5,
                                                                            "end_s": 101.0}],
            "segments": [{"tid": TID, "state": st, "start_s": a, "end_s": b, "cpu": 1, "blocker": blk}
                         for a, b, st, blk in segs],
            "irq_segments": [{"tid": TID, "start_s": 100.40, "end_s": 100.401, "soft": False}],
            "markers": marks, "blockers": [{"comm": "hog", "pid": 77, "time_s": 0.2, "preemptions": 1}]}


def profile(base_ns: int | None = 1_700_000_000_000_000_000 - 1_000, absolute: bool = False) -> dict:
    base = 0 if absolute else base_ns
    ev = []
    kernels = [(1, 100.010, 100.050, 100.300), (2, 100.510, 100.520, 100.550), (3, 100.505, 100.550010, 100.600),
               (4, 100.555, 100.650, 100.750)]
    for corr, launch, a, b in kernels:
        ev.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 9, "tid": NS_TID,
                   "ts": rt_us(launch, base), "dur": 5.0, "args": {"correlation": corr}})
        ev.append({"ph": "X", "cat": "kernel", "name": f"k{corr}", "pid": 0, "tid": 7, "ts": rt_us(a, base),
                   "dur": round((b - a) * 1e6, 3), "args": {"device": 0, "stream": 7, "correlation": corr}})
    ev.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaStreamSynchronize", "pid": 9, "tid": NS_TID,
               "ts": rt_us(100.6, base), "dur": 200000.0, "args": {"correlation": 99}})
    ev.append({"ph": "M", "name": "process_name", "pid": 0, "args": {"name": "GPU 0"}})
    doc = {"schemaVersion": 1, "traceEvents": ev, "deviceProperties": [{"id": 0, "name": "Test GPU"}]}
    if not absolute:
        doc["baseTimeNanoseconds"] = base_ns
    return doc
