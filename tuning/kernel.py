"""Thin I/O layer over the kernel's per-thread scheduling knobs.

On Linux, affinity, nice and scheduling policy are attributes of a *thread* (task), not of the
process: ``taskset``/``nice``/``chrt`` only look process-wide because new threads inherit them from
their creator. Every function here takes a thread id (tid); a tid equal to the pid is the main
thread. No policy decisions live here (see apply.py); errors are the raw ``OSError``s.

Read-back comes from /proc so that what the UI shows is what the kernel holds:
``/proc/<pid>/task/<tid>/stat`` fields 19 (nice), 40 (rt_priority), 41 (policy) and
``Cpus_allowed_list`` from ``status``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

POLICIES = {
    "other": os.SCHED_OTHER,
    "batch": os.SCHED_BATCH,
    "idle": os.SCHED_IDLE,
    "fifo": os.SCHED_FIFO,
    "rr": os.SCHED_RR,
}
POLICY_NAMES = {v: k for k, v in POLICIES.items()}
RT_POLICIES = frozenset({os.SCHED_FIFO, os.SCHED_RR})
RESET_ON_FORK = os.SCHED_RESET_ON_FORK

RT_RUNTIME_PATH = "/proc/sys/kernel/sched_rt_runtime_us"
ONLINE_CPUS_PATH = "/sys/devices/system/cpu/online"


@dataclass(frozen=True)
class ThreadState:
    """What the kernel holds for one thread; enough to restore it exactly."""

    tid: int
    cpus: frozenset[int]
    nice: int
    policy: int  # base policy, without the reset-on-fork flag
    rt_priority: int
    reset_on_fork: bool


def format_cpu_list(cpus) -> str:
    """{0,1,2,5} -> "0-2,5" (the kernel's Cpus_allowed_list form)."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [c]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def parse_kernel_cpu_list(text: str) -> frozenset[int]:
    """Kernel list form ("0-1,3") -> set; empty text -> empty set."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(cpus)


def online_cpus(path: str = ONLINE_CPUS_PATH) -> frozenset[int]:
    try:
        with open(path) as f:
            return parse_kernel_cpu_list(f.read())
    except OSError:  # no sysfs (container without it): trust what we may run on
        return frozenset(os.sched_getaffinity(0))


def rt_runtime_us(path: str = RT_RUNTIME_PATH) -> int | None:
    """sched_rt_runtime_us: -1 means RT throttling is off (a runaway FIFO task can own a CPU)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def list_threads(pid: int) -> list[int]:
    """Thread ids of a process (sorted). Threads may vanish right after this returns."""
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if t.isdigit())


def current_tid() -> int:
    import threading

    return threading.get_native_id()


# -- syscalls (fast path used by apply/restore) ------------------------------------------------

def get_state(tid: int) -> ThreadState:
    raw = os.sched_getscheduler(tid)  # kernel ORs in SCHED_RESET_ON_FORK when set
    return ThreadState(
        tid=tid,
        cpus=frozenset(os.sched_getaffinity(tid)),
        nice=os.getpriority(os.PRIO_PROCESS, tid),  # per thread on Linux
        policy=raw & ~RESET_ON_FORK,
        rt_priority=os.sched_getparam(tid).sched_priority,
        reset_on_fork=bool(raw & RESET_ON_FORK),
    )


def set_affinity(tid: int, cpus) -> None:
    os.sched_setaffinity(tid, cpus)


def set_nice(tid: int, nice: int) -> None:
    os.setpriority(os.PRIO_PROCESS, tid, nice)


def set_policy(tid: int, policy: int, rt_priority: int = 0, reset_on_fork: bool = False) -> None:
    flags = RESET_ON_FORK if reset_on_fork else 0
    os.sched_setscheduler(tid, policy | flags, os.sched_param(rt_priority))


# -- /proc read-back (what the UI shows) -------------------------------------------------------

def read_proc(pid: int, tid: int) -> dict | None:
    """One thread's row from /proc, or None if it vanished."""
    base = f"/proc/{pid}/task/{tid}"
    try:
        with open(f"{base}/stat") as f:
            stat = f.read()
        with open(f"{base}/status") as f:
            status = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = stat[stat.index("(") + 1: stat.rindex(")")]
    rest = stat[stat.rindex(")") + 2:].split()  # rest[0] is field 3 (state)
    cpus = ""
    for line in status.splitlines():
        if line.startswith("Cpus_allowed_list:"):
            cpus = line.split(":", 1)[1].strip()
    policy = int(rest[41 - 3])
    return {
        "tid": tid,
        "comm": comm,
        "cpus": cpus,
        "nice": int(rest[19 - 3]),
        "policy": POLICY_NAMES.get(policy, str(policy)),
        "rt_priority": int(rest[40 - 3]),
    }


def read_proc_all(pid: int) -> list[dict]:
    rows = []
    for tid in list_threads(pid):
        row = read_proc(pid, tid)
        if row is not None:
            rows.append(row)
    return rows


AUTOGROUP_ENABLED_PATH = "/proc/sys/kernel/sched_autogroup_enabled"


def get_autogroup_nice(pid: int, enabled_path: str = AUTOGROUP_ENABLED_PATH) -> int | None:
    """The nice of the process's autogroup (its session's scheduling group), or None when the
    kernel has no autogroup or it is disabled. With autogroup on, CFS first shares CPU time
    between groups by their nice, and a thread's own nice only orders it inside its group: a
    nice -10 thread still gets no more than an equal share against another session's hog."""
    try:
        with open(enabled_path) as fh:
            if fh.read().strip() != "1":
                return None
        with open(f"/proc/{pid}/autogroup") as fh:
            return int(fh.read().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def set_autogroup_nice(pid: int, nice: int) -> None:
    """Set the autogroup nice (lowering it needs CAP_SYS_NICE, like nice itself)."""
    with open(f"/proc/{pid}/autogroup", "w") as fh:
        fh.write(str(nice))
