"""Hand-made Breakdown dicts (ARCHITECTURE.md schema) shared by the findings/report/timeline tests."""
from __future__ import annotations

import copy


def healthy(wall: float = 1.0, pid: int = 4242) -> dict:
    """A 1 s request of two threads that mostly ran, no one else in the way."""
    t0 = 1000.0
    threads = [
        {"tid": pid, "comm": "python3", "observed_s": wall, "on_cpu_s": 0.90 * wall, "runqueue_wait_s": 0.01 * wall,
         "blocked_io_s": 0.0, "sleep_s": 0.09 * wall, "irq_s": 0.001 * wall, "softirq_s": 0.0, "reclaim_s": 0.0,
         "migrations": 2, "voluntary_switches": 10, "involuntary_switches": 3},
        {"tid": pid + 1, "comm": "worker-1", "observed_s": wall, "on_cpu_s": 0.50 * wall,
         "runqueue_wait_s": 0.01 * wall, "blocked_io_s": 0.0, "sleep_s": 0.49 * wall, "irq_s": 0.0,
         "softirq_s": 0.0, "reclaim_s": 0.0, "migrations": 1, "voluntary_switches": 40,
         "involuntary_switches": 1},
    ]
    segs = []
    for th, frac in ((threads[0], 0.9), (threads[1], 0.5)):
        segs.append({"tid": th["tid"], "state": "running", "start_s": t0, "end_s": t0 + frac * wall, "cpu": 0,
                     "blocker": None})
        segs.append({"tid": th["tid"], "state": "sleep", "start_s": t0 + frac * wall, "end_s": t0 + wall,
                     "cpu": 0, "blocker": None})
    return {
        "mode": "full",
        "pid": pid,
        "window": {"start_s": t0, "end_s": t0 + wall, "duration_s": wall},
        "totals": {"wall_s": wall, "on_cpu_s": 1.4 * wall, "runqueue_wait_s": 0.02 * wall, "blocked_io_s": 0.0,
                   "sleep_s": 0.58 * wall, "irq_s": 0.001 * wall, "softirq_s": 0.0, "reclaim_s": 0.0,
                   "migrations": 3, "voluntary_switches": 50, "involuntary_switches": 4, "threads": 2},
        "threads": threads,
        "stages": [
            {"name": "text", "start_s": t0, "end_s": t0 + 0.2 * wall, "wall_s": 0.2 * wall, "on_cpu_s": 0.2 * wall,
             "runqueue_wait_s": 0.0, "blocked_io_s": 0.0, "sleep_s": 0.0, "irq_s": 0.0, "softirq_s": 0.0,
             "reclaim_s": 0.0, "migrations": 0},
            {"name": "vocoder", "start_s": t0 + 0.2 * wall, "end_s": t0 + wall, "wall_s": 0.8 * wall,
             "on_cpu_s": 1.2 * wall, "runqueue_wait_s": 0.02 * wall, "blocked_io_s": 0.0, "sleep_s": 0.0,
             "irq_s": 0.001, "softirq_s": 0.0, "reclaim_s": 0.0, "migrations": 3},
        ],
        "wakeup_latency": {"count": 50, "max_us": 180.0, "p50_us": 12.0, "p95_us": 90.0,
                           "hist_log2_us": {"4": 10, "8": 20, "16": 12, "64": 6, "128": 2}},
        "blockers": [],
        "lost_events": {"total": 0, "per_cpu": {"0": {"overrun": 0, "dropped_events": 0},
                                                "1": {"overrun": 0, "dropped_events": 0}}},
        "segments": segs,
        "events": 1234,
    }


def with_(bd: dict, **changes) -> dict:
    """Deep copy with dotted-path overrides: with_(bd, **{"totals.reclaim_s": 0.1})."""
    out = copy.deepcopy(bd)
    for path, value in changes.items():
        d = out
        keys = path.split(".")
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return out


def contended(pid: int = 4242) -> dict:
    """The victim waited 400 ms behind a named CPU hog."""
    bd = healthy(pid=pid)
    bd["totals"]["runqueue_wait_s"] = 0.42
    bd["threads"][0]["runqueue_wait_s"] = 0.40
    bd["blockers"] = [{"comm": "noisyneighbour", "pid": 777, "time_s": 0.40, "preemptions": 37},
                      {"comm": "sshd", "pid": 55, "time_s": 0.001, "preemptions": 1}]
    t0 = bd["window"]["start_s"]
    bd["segments"].insert(1, {"tid": pid, "state": "runnable", "start_s": t0 + 0.3, "end_s": t0 + 0.7, "cpu": 0,
                              "blocker": "noisyneighbour:777"})
    return bd


def schedstat(pid: int = 4242) -> dict:
    bd = healthy(pid=pid)
    bd["mode"] = "schedstat"
    bd["segments"] = []
    bd["stages"] = []
    bd["blockers"] = []
    bd["wakeup_latency"] = {"count": 0, "max_us": 0, "p50_us": 0, "p95_us": 0, "hist_log2_us": {}}
    return bd


def many_segments(n_threads: int = 12, n_segments: int = 4000, pid: int = 4242) -> dict:
    """A busy breakdown: n_segments spread over n_threads, with blockers on some runnable ones."""
    bd = healthy(pid=pid)
    t0 = bd["window"]["start_s"]
    wall = 2.0
    bd["window"] = {"start_s": t0, "end_s": t0 + wall, "duration_s": wall}
    bd["totals"]["wall_s"] = wall
    states = ("running", "runnable", "running", "sleep", "running", "blocked_io")
    threads, segs = [], []
    per = n_segments // n_threads
    for i in range(n_threads):
        tid = pid + i
        dt = wall / per
        for j in range(per):
            st = states[(i + j) % len(states)]
            segs.append({"tid": tid, "state": st, "start_s": t0 + j * dt, "end_s": t0 + (j + 1) * dt,
                         "cpu": i % 2, "blocker": ("kworker/0:1:12" if st == "runnable" and j % 7 == 0 else None)})
        threads.append({"tid": tid, "comm": f"worker-{i}", "observed_s": wall, "on_cpu_s": wall * (0.3 + 0.04 * i),
                        "runqueue_wait_s": 0.1, "blocked_io_s": 0.05, "sleep_s": 0.2, "irq_s": 0.0,
                        "softirq_s": 0.0, "reclaim_s": 0.0, "migrations": i, "voluntary_switches": 10,
                        "involuntary_switches": 5})
    bd["threads"] = threads
    bd["segments"] = segs
    bd["totals"]["threads"] = n_threads
    bd["stages"] = [
        {**bd["stages"][0], "name": "text", "start_s": t0, "end_s": t0 + 0.3},
        {**bd["stages"][0], "name": "gpt", "start_s": t0 + 0.3, "end_s": t0 + 1.5},
        {**bd["stages"][0], "name": "bigvgan", "start_s": t0 + 1.5, "end_s": t0 + 2.0},
    ]
    return bd
