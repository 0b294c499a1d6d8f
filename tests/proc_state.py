"""What a running server holds, read from /proc: per-thread scheduling, RSS, open fds.

Shared by the reliability suites (test_bad_input, test_faults, test_load). Reads only.
"""
from __future__ import annotations

import os
from pathlib import Path


def thread_sched(pid: int) -> dict[int, tuple]:
    """{tid: (comm, cpus, nice, policy, rt_priority)} for every thread of `pid`, from
    /proc/<pid>/task/<tid>/stat (nice = field 19, rt_priority = 40, policy = 41) and status
    (Cpus_allowed_list). Threads that exit while being read are skipped."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        base = Path(f"/proc/{pid}/task/{t}")
        try:
            stat = (base / "stat").read_text()
            status = (base / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat[stat.rindex(")") + 2:].split()  # f[0] is field 3 (state)
        nice, rt_prio, policy = int(f[16]), int(f[37]), int(f[38])
        cpus = next(line.split(":", 1)[1].strip() for line in status.splitlines()
                    if line.startswith("Cpus_allowed_list:"))
        out[int(t)] = (comm, cpus, nice, policy, rt_prio)
    return out


def sched_changes(before: dict, after: dict) -> dict[int, tuple]:
    """Threads present in both snapshots whose scheduling differs: {tid: (before, after)}.
    Threads that came or went (Gradio/anyio workers do) are not judged, nor is the comm: the
    service names threads by role (tuning.roles) and renames one when synthesis moves to another."""
    return {t: (before[t], after[t]) for t in before.keys() & after.keys() if before[t][1:] != after[t][1:]}


def rss_kb(pid: int) -> int:
    """Resident set size (VmRSS) in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tracefs_fds(pid: int, kept=()) -> list[str]:
    """Open fds of `pid` that point into tracefs (trace_marker, trace, ...): a leak when idle,
    except the trace_marker of an instance in `kept` (a service's standby and spares hold theirs
    open: tracing/instances.py)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if "/tracing/" in target and not any(target.endswith(f"/instances/{n}/trace_marker") for n in kept):
            out.append(target)
    return out
