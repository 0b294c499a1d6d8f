"""Degraded mode without a writable tracefs: per-thread counters from /proc (labelled "schedstat").

/proc/<pid>/task/<tid>/schedstat = "<ns on cpu> <ns waiting on a runqueue> <timeslices>" and
status has voluntary_ctxt_switches / nonvoluntary_ctxt_switches. A window snapshots both at enter
and exit; the differences are the only metrics this mode can give (others are None).
"""
from __future__ import annotations

from pathlib import Path

from .analysis import Breakdown, empty_lost, latency_summary

NONE_KEYS = ("blocked_io_s", "sleep_s", "irq_s", "softirq_s", "reclaim_s", "migrations", "inferred_switches",
             "uncertain_s")  # not measured from counters


def snapshot(pid: int, proc: str = "/proc") -> dict[int, dict]:
    """tid -> {comm, run_ns, wait_ns, vol, invol} for every live thread of pid."""
    out: dict[int, dict] = {}
    base = Path(proc) / str(pid) / "task"
    try:
        tids = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
    except OSError:
        return out
    for tid in tids:
        d = base / str(tid)
        try:
            run, wait, *_ = (int(x) for x in (d / "schedstat").read_text().split())
            st = dict(line.split(":", 1) for line in (d / "status").read_text().splitlines() if ":" in line)
            out[tid] = {"comm": (d / "comm").read_text().strip(), "run_ns": run, "wait_ns": wait,
                        "vol": int(st.get("voluntary_ctxt_switches", 0)),
                        "invol": int(st.get("nonvoluntary_ctxt_switches", 0))}
        except (OSError, ValueError):
            continue  # thread exited between listing and reading
    return out


def breakdown(pid: int, before: dict, after: dict, start_ts: float, end_ts: float) -> Breakdown:
    """Breakdown in mode "schedstat" from two snapshots. Threads that exited before the end are
    lost (their counters went with them); threads born inside the window count from zero."""
    threads = []
    wall = end_ts - start_ts
    for tid, a in sorted(after.items()):
        b = before.get(tid, {"run_ns": 0, "wait_ns": 0, "vol": 0, "invol": 0})
        row = {"tid": tid, "comm": a["comm"], "observed_s": wall,
               "on_cpu_s": max(0, a["run_ns"] - b["run_ns"]) / 1e9,
               "runqueue_wait_s": max(0, a["wait_ns"] - b["wait_ns"]) / 1e9}
        row.update({k: None for k in NONE_KEYS})
        row["voluntary_switches"] = max(0, a["vol"] - b["vol"])
        row["involuntary_switches"] = max(0, a["invol"] - b["invol"])
        if row["on_cpu_s"] or row["runqueue_wait_s"] or row["voluntary_switches"] or row["involuntary_switches"]:
            threads.append(row)
    totals = {"wall_s": wall,
              "on_cpu_s": sum(t["on_cpu_s"] for t in threads),
              "runqueue_wait_s": sum(t["runqueue_wait_s"] for t in threads),
              "voluntary_switches": sum(t["voluntary_switches"] for t in threads),
              "involuntary_switches": sum(t["involuntary_switches"] for t in threads),
              "threads": len(threads)}
    totals.update({k: None for k in NONE_KEYS})
    return Breakdown(mode="schedstat", pid=pid,
                     window={"start_s": start_ts, "end_s": end_ts, "duration_s": wall},
                     totals=totals, threads=threads, stages=[], wakeup_latency=latency_summary([]),
                     blockers=[], lost_events=empty_lost(), segments=[], events=0)
