"""Findings: turn a Breakdown dict (ARCHITECTURE.md schema) into sentences a user can act on.

Pure: no I/O, no imports of the rest of the package. `findings(breakdown, context)` returns a list
of `{kind, severity, message, evidence}`, most severe first:

- kind: one of KINDS, stable (used as a Prometheus label and in tests).
- severity: "crit" | "warn" | "info".
- message: one plain sentence with the numbers, naming the task and pid concerned and what to do.
- evidence: the numbers the rule used (seconds unless the key says otherwise), JSON-serialisable.

`context` is optional: {"preset": {"name" (or "preset"), "policy", "cpus", "torch_threads", ...},
"rt_runtime_us": int, "rt_period_us": int, "roles": {tid: role kind}}; the preset read back names
itself in messages, its policy (fifo/rr, or SCHED_FIFO/SCHED_RR) drives the RT-throttling rule, and
its cpus/torch_threads with the thread roles (tuning.roles: synthesis, torch-intra, torch-interop,
web-loop, web-worker, trace-aux) drive the self-contention advice.

Shares are of the window's wall time summed over our threads' observed time where that is the fairer
denominator (several threads can wait at once), see `_denominator`.
"""
from __future__ import annotations

import re

# --- stable kinds (Prometheus label values) ---------------------------------------------------
CPU_CONTENTION = "cpu_contention"      # another named task held the CPU while we were runnable
SELF_CONTENTION = "self_contention"    # our own threads queue behind each other
RUNQUEUE_WAIT = "runqueue_wait"        # run-queue wait is high but no single task explains it
IDLE_WAKEUP = "idle_wakeup"            # we waited for CPUs that were idle: slow wakeups (VM/C-states)
MEMORY_PRESSURE = "memory_pressure"    # kswapd0 ran on our CPU, or our threads did direct reclaim
WRITEBACK = "writeback"                # kworker / jbd2 / journald / flush held our CPU
IO_WAIT = "io_wait"                    # our threads were blocked in D state
IRQ = "irq"                            # hard/soft IRQ handlers ran on our CPUs in our time
MIGRATIONS = "migrations"              # threads bounced between CPUs
RT_THROTTLING = "rt_throttling"        # a real-time task ran long / our RT threads got throttled
LOST_EVENTS = "lost_events"            # ring buffer overflowed: numbers are lower bounds
DEGRADED_MODE = "degraded_mode"        # no tracefs: schedstat only
KERNEL_LATENCY = "kernel_latency"      # a latency tracer saw irqs/preemption off or a slow wakeup
INFERRED_SWITCHES = "inferred_switches"  # the trace left switches out: part of the split is inferred
MISSING_EVENTS = "missing_events"      # an event could not be enabled: part of the breakdown is blind
GPU_STARVED = "gpu_starved"            # the GPU sat idle waiting for the host (device view, tracing/device.py)
GPU_SYNC_SPIN = "gpu_sync_spin"        # a thread spun on-CPU inside a CUDA synchronize
GPU_LAUNCH_BOUND = "gpu_launch_bound"  # a stage's kernels are too short to keep the GPU busy
FIRST_SOUND = "first_sound_delay"     # a named task / reclaim / I/O held up the first audio segment
NICE_INERT = "nice_inert"              # a nice boost in force that autogroup makes void against other sessions
RT_DEMOTED = "rt_demoted"              # RLIMIT_RTTIME demoted our real-time threads during the request
HEALTHY = "healthy"                    # nothing above stood out

KINDS = (CPU_CONTENTION, SELF_CONTENTION, RUNQUEUE_WAIT, IDLE_WAKEUP, MEMORY_PRESSURE, WRITEBACK, IO_WAIT, IRQ,
         MIGRATIONS, RT_THROTTLING, LOST_EVENTS, DEGRADED_MODE, KERNEL_LATENCY, INFERRED_SWITCHES, MISSING_EVENTS,
         GPU_STARVED, GPU_SYNC_SPIN, GPU_LAUNCH_BOUND, FIRST_SOUND, NICE_INERT, RT_DEMOTED, HEALTHY)

SEVERITY_ORDER = {"crit": 0, "warn": 1, "info": 2}

# --- thread roles the service names (tuning.roles kinds; passed in as ctx["roles"]) -----------
SYNTH_ROLE = "synthesis"
TORCH_INTRA_ROLE = "torch-intra"
TORCH_INTEROP_ROLE = "torch-interop"
WEB_LOOP_ROLE = "web-loop"
WEB_WORKER_ROLE = "web-worker"
TRACE_AUX_ROLE = "trace-aux"

# --- thresholds -----------------------------------------------------------------------------
# A blocker that held our CPU for >= 5% of the request (and >= 5 ms, below which timer noise and a
# single tick dominate) is worth naming; at >= 20% it is the main reason the click felt slow.
CONTENTION_WARN_SHARE = 0.05
CONTENTION_CRIT_SHARE = 0.20
MIN_BLOCKER_S = 0.005
# Run-queue wait above 10% of our observed time means we wanted a CPU and did not get it.
RUNQUEUE_WARN_SHARE = 0.10
RUNQUEUE_CRIT_SHARE = 0.30
# Any direct reclaim is a stall the user pays for (allocation blocked until pages are freed);
# Waiting runnable while the CPU sat idle (totals.idle_wait_s): >= 5% of the request and >= 10 ms is
# more than wakeup IPIs cost on bare metal (microseconds); on a VM it is the host rescheduling a
# halted vCPU. >= 20% makes it the main reason the click felt slow.
IDLE_WAIT_WARN_SHARE = 0.05
IDLE_WAIT_CRIT_SHARE = 0.20
MIN_IDLE_WAIT_S = 0.010
# kswapd0 on our CPU at all means the machine is short of free memory. Crit when it is >= 10%.
MEMORY_CRIT_SHARE = 0.10
# Flusher threads are usually brief; 2% of the window (and >= 5 ms) is already abnormal.
WRITEBACK_WARN_SHARE = 0.02
WRITEBACK_CRIT_SHARE = 0.15
# Blocked in D state for >= 5% of observed time: synthesis is CPU-bound, so this is I/O (model or
# swap reads, log writes) in the critical path. >= 25% dominates.
IO_WARN_SHARE = 0.05
IO_CRIT_SHARE = 0.25
MIN_IO_S = 0.005
# IRQ + softirq handlers stealing >= 2% of our on-CPU time is a noisy device on our cores
# (network RX, NVMe completions); >= 10% is severe.
IRQ_WARN_SHARE = 0.02
IRQ_CRIT_SHARE = 0.10
MIN_IRQ_S = 0.002
# Migrations: a pinned worker migrates ~never. > 50/s (and at least 20 in the window, so short
# windows do not trip on a handful) means the scheduler is shuffling us between cores, losing caches.
MIGRATIONS_WARN_PER_S = 50.0
MIGRATIONS_CRIT_PER_S = 500.0
MIN_MIGRATIONS = 20
# Latency tracers (breakdown "latency", when the kernel has them): interrupts/preemption off, or
# the top task's wakeup-to-run, for >= 1 ms is a kernel path that blocks scheduling long enough to
# be felt in audio; >= 10 ms is a stall.
KERNEL_LATENCY_WARN_US = 1000
KERNEL_LATENCY_CRIT_US = 10000
# An RT (SCHED_FIFO/RR) task can only be stopped by RT throttling (default 950 ms per 1 s). One that
# held our CPU for >= 100 ms, or our own RT threads waiting >= 5% runnable, points at throttling.
RT_LONG_S = 0.100
RT_SELF_WAIT_SHARE = 0.05
# Kernel prio as printed by sched_switch: 0..99 are real-time classes.
RT_PRIO_LIMIT = 100
# Lost events: any loss makes every number a lower bound; losing >= 5% of what we parsed is crit.
# A CPU whose loss counters could not be read lost an unknown number: a warning, never "0 lost".
LOST_CRIT_RATIO = 0.05
# Inferred switches (breakdown totals.uncertain_s: time whose state hangs on a switch the trace left
# out). Below 5% of our observed time (or 5 ms) the split is as good as measured and the report's
# count is enough; from 5% the per-thread numbers can be off by that much, worth saying; from 25%
# the on-CPU / run-queue split is mostly inference.
UNCERTAIN_WARN_SHARE = 0.05
UNCERTAIN_CRIT_SHARE = 0.25
MIN_UNCERTAIN_S = 0.005
# Events the window could not record: without sched_switch there is no on-CPU/run-queue split at all
# (crit); without another sched event part of it is guessed (warn); without IRQ/reclaim events
# those columns read 0 for lack of data (info). Events this kernel does not have at all are named
# only when they are sched events (the rest are optional, e.g. memcg reclaim on old kernels).
CRIT_EVENTS = ("sched/sched_switch",)
# Device view (breakdown "device", tracing/device.py). GPU starved by the host: host_wait (idle gaps
# whose next launch came after the GPU went idle) >= 20% of the synthesis window (and >= 20 ms) is
# a GPU the host does not keep fed; >= 50% makes the host the bottleneck, not the model.
GPU_HOST_WAIT_WARN_SHARE = 0.20
GPU_HOST_WAIT_CRIT_SHARE = 0.50
MIN_GPU_HOST_WAIT_S = 0.020
# A kernel-trace cause of host_wait is named when it covers >= 10% of the host_wait time.
GPU_CAUSE_MIN_SHARE = 0.10
# Spinning inside a synchronize: on-CPU time while in cudaStreamSynchronize & co. >= 10% of the
# window (and >= 50 ms) is a CPU burnt on waiting; >= 30% is a core lost to it.
GPU_SPIN_INFO_SHARE = 0.10
GPU_SPIN_WARN_SHARE = 0.30
MIN_GPU_SPIN_S = 0.050
# Launch-bound stage (HTA's short-kernel rule: a kernel shorter than its own launch call): >= 100
# kernels, >= half of them short, the GPU busy < half the stage, and the stage >= 50 ms.
LAUNCH_BOUND_MIN_KERNELS = 100
LAUNCH_BOUND_SHORT_SHARE = 0.5
LAUNCH_BOUND_BUSY_SHARE = 0.5
LAUNCH_BOUND_MIN_STAGE_S = 0.050
# First sound (breakdown first_sound.before: window start -> first segment handed over): a blocker,
# direct reclaim or D-state wait that took >= 5% of that time (and >= 5 ms) delayed the sound the
# user waits for, whatever it did to the rest of the clip; >= 20% of it is the main reason.
FIRST_SOUND_WARN_SHARE = 0.05
FIRST_SOUND_CRIT_SHARE = 0.20

_KSWAPD = re.compile(r"^kswapd\d*")
# Write-back / journal flushers: kworker (flush work runs there), jbd2 (ext4 journal), journald,
# the old per-bdi flush-<maj>:<min> threads, and xfs/btrfs flush workers named likewise.
_FLUSHER = re.compile(r"^(kworker/|jbd2/|systemd-journal|journald|flush-|xfsaild|btrfs-)")


def findings(breakdown: dict, context: dict | None = None) -> list[dict]:
    """All findings for one request, most severe first (stable within a severity: rule order)."""
    bd = breakdown or {}
    ctx = context or {}
    out: list[dict] = []
    for rule in _RULES:
        out.extend(rule(bd, ctx))
    if not any(f["severity"] in ("warn", "crit") for f in out):
        out.append(_healthy(bd))
    out.sort(key=lambda f: SEVERITY_ORDER[f["severity"]])  # stable sort keeps rule order
    return out


def worst_severity(items: list[dict]) -> str:
    """'crit' | 'warn' | 'info' — the most severe of a findings list ('info' when empty)."""
    return min((f["severity"] for f in items), key=SEVERITY_ORDER.__getitem__, default="info")


# --- helpers ---------------------------------------------------------------------------------

def _f(kind: str, severity: str, message: str, evidence: dict) -> dict:
    return {"kind": kind, "severity": severity, "message": message, "evidence": evidence}


def _num(d: dict, key: str) -> float:
    v = d.get(key) if isinstance(d, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _ms(seconds: float) -> str:
    ms = seconds * 1000.0
    if ms >= 1000:
        return f"{seconds:.2f} s"
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%" if share >= 0.1 else f"{share * 100:.1f}%"


def _wall(bd: dict) -> float:
    w = _num(bd.get("totals", {}), "wall_s") or _num(bd.get("window", {}), "duration_s")
    return w if w > 0 else 0.0


def _denominator(bd: dict) -> float:
    """Sum of our threads' observed time (the time the per-thread states add up to).

    Per-thread quantities (run-queue wait, D state) are summed over threads, so they are compared
    with summed observed time; falls back to wall time when threads are not listed.
    """
    obs = sum(_num(t, "observed_s") for t in bd.get("threads") or [])
    return obs if obs > 0 else _wall(bd)


def _our_tids(bd: dict) -> set[int]:
    tids = {int(t["tid"]) for t in bd.get("threads") or [] if isinstance(t.get("tid"), int)}
    if isinstance(bd.get("pid"), int):
        tids.add(bd["pid"])
    return tids


def _proc_name(bd: dict) -> str:
    """'comm (pid N)' for the traced process: the main thread's comm when listed."""
    pid = bd.get("pid")
    threads = bd.get("threads") or []
    comm = next((t.get("comm") for t in threads if t.get("tid") == pid), None)
    if comm is None and threads:
        comm = threads[0].get("comm")
    return f"{comm or 'process'} (pid {pid})"


def _top_thread(bd: dict, key: str) -> dict | None:
    threads = [t for t in bd.get("threads") or [] if _num(t, key) > 0]
    return max(threads, key=lambda t: _num(t, key)) if threads else None


def _thread_name(t: dict | None, bd: dict) -> str:
    if not t:
        return _proc_name(bd)
    return f"{t.get('comm', '?')} (tid {t.get('tid')}, pid {bd.get('pid')})"


def _blockers(bd: dict) -> list[dict]:
    return [b for b in bd.get("blockers") or [] if isinstance(b, dict)]


def _blocker_name(b: dict) -> str:
    return f"{b.get('comm', '?')} (pid {b.get('pid')})"


def _is_rt_blocker(b: dict) -> bool:
    """True when the analysis recorded a real-time policy or prio for the blocker (optional keys)."""
    pol = str(b.get("policy", "")).lower()
    if pol in ("fifo", "rr", "sched_fifo", "sched_rr"):
        return True
    prio = b.get("prio")
    return isinstance(prio, int) and not isinstance(prio, bool) and 0 <= prio < RT_PRIO_LIMIT


def _preset_name(ctx: dict) -> str | None:
    p = ctx.get("preset")
    if isinstance(p, str):
        return p
    if isinstance(p, dict):
        return p.get("name") or p.get("preset")
    return None


def _preset_policy(ctx: dict) -> str:
    p = ctx.get("preset")
    pol = str(p.get("policy", "")) if isinstance(p, dict) else ""
    pol = pol.lower()
    return pol[6:] if pol.startswith("sched_") else pol


def _sev(share: float, warn: float, crit: float) -> str | None:
    if share >= crit:
        return "crit"
    if share >= warn:
        return "warn"
    return None


# --- rules -----------------------------------------------------------------------------------

def _rule_contention(bd: dict, ctx: dict) -> list[dict]:
    """Other tasks (not kswapd, not flushers, not us) that held our CPU while we were runnable."""
    wall = _wall(bd)
    if bd.get("mode") == "schedstat" or wall <= 0:
        return []
    ours = _our_tids(bd)
    cands = [b for b in _blockers(bd)
             if not _KSWAPD.match(str(b.get("comm", ""))) and not _FLUSHER.match(str(b.get("comm", "")))
             and b.get("pid") not in ours and b.get("pid") != 0
             and _num(b, "time_s") >= MIN_BLOCKER_S]
    cands.sort(key=lambda b: -_num(b, "time_s"))
    if not cands:
        return []
    top = cands[0]
    share = _num(top, "time_s") / wall
    sev = _sev(share, CONTENTION_WARN_SHARE, CONTENTION_CRIT_SHARE)
    if sev is None:
        return []
    others = [b for b in cands[1:4] if _num(b, "time_s") / wall >= CONTENTION_WARN_SHARE]
    also = ""
    if others:
        also = " (also " + ", ".join(f"{_blocker_name(b)} {_ms(_num(b, 'time_s'))}" for b in others) + ")"
    preset = _preset_name(ctx)
    where = f" (current preset: {preset})" if preset else ""
    msg = (f"CPU contention: {_blocker_name(top)} held our CPU for {_ms(_num(top, 'time_s'))} "
           f"({_pct(share)} of the {_ms(wall)} request) while {_proc_name(bd)} was runnable, preempting it "
           f"{int(_num(top, 'preemptions'))} times{also}; pin synthesis to its own cores with the "
           f"`pinned` preset{where} or move/isolate that task (taskset, cgroup cpuset, isolcpus).")
    return [_f(CPU_CONTENTION, sev, msg, {
        "comm": top.get("comm"), "pid": top.get("pid"), "time_s": _num(top, "time_s"),
        "preemptions": int(_num(top, "preemptions")), "wall_s": wall, "share": share,
        "others": [{"comm": b.get("comm"), "pid": b.get("pid"), "time_s": _num(b, "time_s")} for b in others],
    })]


def _rule_self_contention(bd: dict, ctx: dict) -> list[dict]:
    """Our own threads as blockers. Says which roles collided (who waited behind whom, from the
    runnable segments' blockers and ctx["roles"]) and advises from the read-back (torch threads
    vs the preset's CPUs), never "set torch threads to N" when they are N already."""
    wall = _wall(bd)
    if bd.get("mode") == "schedstat" or wall <= 0:
        return []
    ours = _our_tids(bd)
    mine = [b for b in _blockers(bd) if b.get("pid") in ours]
    t = sum(_num(b, "time_s") for b in mine)
    share = t / wall
    sev = _sev(share, CONTENTION_WARN_SHARE, CONTENTION_CRIT_SHARE)
    if not mine or t < MIN_BLOCKER_S or sev is None:
        return []
    top = max(mine, key=lambda b: _num(b, "time_s"))
    roles = _roles(ctx)
    pairs = _self_collisions(bd, ours)
    names = {th.get("tid"): th.get("comm") for th in bd.get("threads") or []}
    names.update({b.get("pid"): b.get("comm") for b in mine})
    shown = pairs[:3]
    if shown:
        who = "; ".join(f"{names.get(w, w)} waited {_ms(d)} behind {names.get(h, h)}" for w, h, d in shown)
        who = f" ({who})"
    else:
        who = ""
    kinds = {roles[x] for w, h, _ in pairs for x in (w, h) if x in roles} | \
        {roles[b.get("pid")] for b in mine if b.get("pid") in roles}
    advice, evidence = _self_advice(kinds, ctx)
    # Our own queueing is a sizing problem, never worse than a warning.
    msg = (f"Our own threads queue behind each other: {_blocker_name(top)} and {len(mine) - 1} other "
           f"thread(s) of {_proc_name(bd)} held the CPU for {_ms(t)} ({_pct(share)} of the request) "
           f"while a sibling was runnable{who}; {advice}.")
    return [_f(SELF_CONTENTION, "warn", msg, {
        "time_s": t, "share": share, "wall_s": wall, "threads": len(mine),
        "top_comm": top.get("comm"), "top_pid": top.get("pid"), "roles": sorted(kinds),
        "collisions": [{"waiter": names.get(w), "waiter_tid": w, "waiter_role": roles.get(w),
                        "holder": names.get(h), "holder_tid": h, "holder_role": roles.get(h), "time_s": d}
                       for w, h, d in pairs[:10]],
        **evidence,
    })]


def _roles(ctx: dict) -> dict:
    """ctx["roles"]: {tid: role kind} from the service (JSON may have made the tids strings)."""
    out = {}
    for k, v in (ctx.get("roles") or {}).items() if isinstance(ctx.get("roles"), dict) else ():
        try:
            out[int(k)] = str(v)
        except (TypeError, ValueError):
            pass
    return out


def _self_collisions(bd: dict, ours: set) -> list:
    """[(waiter tid, holder tid, seconds)] from runnable segments whose blocker is one of ours,
    largest first. Segments are capped in long windows, so these are the visible part."""
    acc: dict = {}
    for sg in bd.get("segments") or []:
        b = sg.get("blocker") if sg.get("state") == "runnable" else None
        if not isinstance(b, str) or ":" not in b:
            continue
        try:
            holder = int(b.rsplit(":", 1)[1])
        except ValueError:
            continue
        if holder in ours and holder != sg.get("tid"):
            key = (sg.get("tid"), holder)
            acc[key] = acc.get(key, 0.0) + max(0.0, _num(sg, "end_s") - _num(sg, "start_s"))
    return sorted(((w, h, d) for (w, h), d in acc.items()), key=lambda x: -x[2])


def _cpu_count(cpus) -> int | None:
    """Count of a read-back CPU list ("0-1,3"), None when unknown ("mixed", missing)."""
    if not isinstance(cpus, str) or not cpus or cpus == "mixed":
        return None
    n = 0
    try:
        for part in cpus.split(","):
            a, _, b = part.partition("-")
            n += int(b) - int(a) + 1 if b else 1
    except ValueError:
        return None
    return n


def _self_advice(kinds: set, ctx: dict) -> tuple[str, dict]:
    """What would help, from the roles that collided and what the kernel/torch read back."""
    p = ctx.get("preset") if isinstance(ctx.get("preset"), dict) else {}
    tt = p.get("torch_threads") if isinstance(p.get("torch_threads"), int) else None
    n = _cpu_count(p.get("cpus"))
    ev = {"torch_threads": tt, "cpus": n}
    if tt and n and tt > n:
        return (f"torch runs {tt} intra-op threads on the preset's {n} CPU(s): set torch threads to {n} "
                f"(the preset's torch_threads)"), ev
    tips = []
    if TRACE_AUX_ROLE in kinds:
        tips.append("the trace worker (trace-aux) shared the synthesis CPUs because the preset leaves it "
                    "none of its own: a preset that leaves a CPU free (e.g. `pinned`) moves it there")
    if kinds & {WEB_LOOP_ROLE, WEB_WORKER_ROLE}:
        tips.append("the web server's threads (web-loop/web-worker) ran on the synthesis CPUs: pin synthesis "
                    "to a subset with `pinned` so they keep the rest, or raise it with `priority`")
    if TORCH_INTEROP_ROLE in kinds:
        tips.append("torch's inter-op pool competed with its intra-op team: set torch interop threads to 1")
    if kinds & {SYNTH_ROLE, TORCH_INTRA_ROLE} and tt and n:
        if n > 1:
            tips.append(f"torch threads already match the {n} CPU(s) ({tt}), so the synthesis thread's serial "
                        f"work and its intra-op workers took turns: fewer intra-op threads than CPUs (torch "
                        f"threads {n - 1}) leave it a CPU, and OMP_WAIT_POLICY=passive stops idle workers "
                        f"spinning")
        else:
            tips.append("the preset gives synthesis one CPU, shared by all its threads: a preset with more "
                        "CPUs helps; torch threads cannot go below 1")
    if not tips and tt and n:
        tips.append(f"torch threads ({tt}) do not exceed the preset's {n} CPU(s), so fewer torch threads "
                    f"will not help; pin synthesis with `pinned` so other work keeps off its CPUs")
    elif not tips:  # nothing read back: the sizing rule is all we can say
        tips.append("keep torch threads at or below the number of CPUs in the preset")
    return "; ".join(tips), ev


def _rule_runqueue(bd: dict, ctx: dict) -> list[dict]:
    """High run-queue wait that no single named blocker explains (also the schedstat-mode view)."""
    denom = _denominator(bd)
    rq = _num(bd.get("totals", {}), "runqueue_wait_s")
    if denom <= 0 or rq <= 0:
        return []
    share = rq / denom
    sev = _sev(share, RUNQUEUE_WARN_SHARE, RUNQUEUE_CRIT_SHARE)
    if sev is None:
        return []
    wall = _wall(bd)
    named = [b for b in _blockers(bd) if wall > 0 and _num(b, "time_s") / wall >= CONTENTION_WARN_SHARE]
    if named and bd.get("mode") != "schedstat":
        return []  # the contention rules already name who
    t = _top_thread(bd, "runqueue_wait_s")
    why = ("schedstat cannot say who held the CPU" if bd.get("mode") == "schedstat"
           else "spread over many short tasks, none of them dominant")
    msg = (f"Run-queue wait: {_thread_name(t, bd)} and siblings waited {_ms(rq)} runnable "
           f"({_pct(share)} of their observed time), {why}; pin synthesis with the `pinned` preset "
           f"so it has cores of its own.")
    return [_f(RUNQUEUE_WAIT, sev, msg, {
        "runqueue_wait_s": rq, "observed_s": denom, "share": share,
        "top_tid": t.get("tid") if t else None, "top_comm": t.get("comm") if t else None,
    })]


def _rule_idle_wakeup(bd: dict, ctx: dict) -> list[dict]:
    """Runnable while the CPU ran its idle task: nobody to blame locally, the wakeup was slow."""
    idle = _num(bd.get("totals", {}), "idle_wait_s")
    wall = _wall(bd)
    if wall <= 0 or idle < MIN_IDLE_WAIT_S:
        return []
    share = idle / wall
    sev = _sev(share, IDLE_WAIT_WARN_SHARE, IDLE_WAIT_CRIT_SHARE)
    if sev is None:
        return []
    msg = (f"Slow wakeups: our threads waited {_ms(idle)} ({_pct(share)} of the request) for CPUs that "
           f"were idle, so no task was in the way; on a VM the host is slow to run a halted vCPU "
           f"(ask for dedicated vCPUs, or keep the cores busy with the `pinned` preset and fewer "
           f"torch threads), on bare metal check deep C-states (cpuidle, intel_idle.max_cstate).")
    return [_f(IDLE_WAKEUP, sev, msg, {"idle_wait_s": idle, "wall_s": wall, "share": share})]


def _rule_memory(bd: dict, ctx: dict) -> list[dict]:
    wall = _wall(bd)
    reclaim = _num(bd.get("totals", {}), "reclaim_s")
    ksw = [b for b in _blockers(bd) if _KSWAPD.match(str(b.get("comm", ""))) and _num(b, "time_s") > 0]
    ksw_t = sum(_num(b, "time_s") for b in ksw)
    if reclaim <= 0 and not ksw:
        return []
    share = (reclaim + ksw_t) / wall if wall > 0 else 0.0
    sev = "crit" if share >= MEMORY_CRIT_SHARE else "warn"
    parts = []
    if reclaim > 0:
        t = _top_thread(bd, "reclaim_s")
        parts.append(f"{_thread_name(t, bd)} spent {_ms(reclaim)} in direct reclaim")
    if ksw:
        k = max(ksw, key=lambda b: _num(b, "time_s"))
        parts.append(f"{_blocker_name(k)} ran {_ms(ksw_t)} on our CPU while we were runnable")
    msg = (f"Memory pressure: {' and '.join(parts)} ({_pct(share)} of the {_ms(wall)} request); free "
           f"memory (fewer cached models, smaller batch), raise the memory limit, or add swap so "
           f"reclaim is not in the request path.")
    return [_f(MEMORY_PRESSURE, sev, msg, {
        "reclaim_s": reclaim, "kswapd_s": ksw_t, "wall_s": wall, "share": share,
        "kswapd": [{"comm": b.get("comm"), "pid": b.get("pid"), "time_s": _num(b, "time_s")} for b in ksw],
    })]


def _rule_writeback(bd: dict, ctx: dict) -> list[dict]:
    wall = _wall(bd)
    if wall <= 0:
        return []
    fl = [b for b in _blockers(bd) if _FLUSHER.match(str(b.get("comm", ""))) and _num(b, "time_s") > 0]
    t = sum(_num(b, "time_s") for b in fl)
    share = t / wall
    sev = _sev(share, WRITEBACK_WARN_SHARE, WRITEBACK_CRIT_SHARE)
    if not fl or t < MIN_BLOCKER_S or sev is None:
        return []
    top = max(fl, key=lambda b: _num(b, "time_s"))
    io = _num(bd.get("totals", {}), "blocked_io_s")
    io_txt = f", and our threads were blocked on I/O for {_ms(io)}" if io > 0 else ""
    msg = (f"Write-back flush: {_blocker_name(top)}" + (f" and {len(fl) - 1} other flusher(s)" if len(fl) > 1 else "")
           + f" ran {_ms(t)} on our CPU ({_pct(share)} of the request){io_txt}; lower vm.dirty_ratio/"
           f"dirty_background_ratio so dirty pages flush in smaller batches, put outputs/logs on another "
           f"disk, or keep synthesis off the CPUs that service the disk (`pinned` preset).")
    return [_f(WRITEBACK, sev, msg, {
        "time_s": t, "share": share, "wall_s": wall, "blocked_io_s": io, "comm": top.get("comm"),
        "pid": top.get("pid"),
        "flushers": [{"comm": b.get("comm"), "pid": b.get("pid"), "time_s": _num(b, "time_s")} for b in fl],
    })]


def _rule_io(bd: dict, ctx: dict) -> list[dict]:
    io = _num(bd.get("totals", {}), "blocked_io_s")
    denom = _denominator(bd)
    if io < MIN_IO_S or denom <= 0:
        return []
    share = io / denom
    sev = _sev(share, IO_WARN_SHARE, IO_CRIT_SHARE)
    if sev is None:
        return []
    t = _top_thread(bd, "blocked_io_s")
    msg = (f"I/O waits: {_thread_name(t, bd)} and siblings were blocked in D state for {_ms(io)} "
           f"({_pct(share)} of their observed time); keep model files in page cache (preload at start), "
           f"avoid swap, and write outputs asynchronously.")
    return [_f(IO_WAIT, sev, msg, {
        "blocked_io_s": io, "observed_s": denom, "share": share,
        "top_tid": t.get("tid") if t else None, "top_comm": t.get("comm") if t else None,
    })]


def _rule_irq(bd: dict, ctx: dict) -> list[dict]:
    tot = bd.get("totals", {})
    irq, soft = _num(tot, "irq_s"), _num(tot, "softirq_s")
    on = _num(tot, "on_cpu_s")
    if irq + soft < MIN_IRQ_S or on <= 0:
        return []
    share = (irq + soft) / on
    sev = _sev(share, IRQ_WARN_SHARE, IRQ_CRIT_SHARE)
    if sev is None:
        return []
    threads = bd.get("threads") or []
    t = max(threads, key=lambda x: _num(x, "irq_s") + _num(x, "softirq_s")) if threads else None
    msg = (f"Interrupts on our cores: hard IRQs took {_ms(irq)} and softirqs {_ms(soft)} "
           f"({_pct(share)} of on-CPU time) while {_thread_name(t, bd)} was running; steer device IRQs "
           f"away from the synthesis CPUs (/proc/irq/*/smp_affinity, irqbalance --banirq) or pick a "
           f"preset whose CPUs exclude them.")
    return [_f(IRQ, sev, msg, {"irq_s": irq, "softirq_s": soft, "on_cpu_s": on, "share": share,
                               "top_tid": t.get("tid") if t else None})]


def _rule_migrations(bd: dict, ctx: dict) -> list[dict]:
    mig = _num(bd.get("totals", {}), "migrations")
    wall = _wall(bd)
    if mig < MIN_MIGRATIONS or wall <= 0:
        return []
    rate = mig / wall
    sev = _sev(rate, MIGRATIONS_WARN_PER_S, MIGRATIONS_CRIT_PER_S)
    if sev is None:
        return []
    t = _top_thread(bd, "migrations")
    msg = (f"Migrations: our threads moved between CPUs {int(mig)} times ({rate:.0f}/s), most often "
           f"{_thread_name(t, bd)} ({int(_num(t, 'migrations')) if t else 0}); pin them with the `pinned` "
           f"preset so caches stay warm.")
    return [_f(MIGRATIONS, sev, msg, {"migrations": int(mig), "wall_s": wall, "per_s": rate,
                                      "top_tid": t.get("tid") if t else None})]


def _rule_rt(bd: dict, ctx: dict) -> list[dict]:
    out = []
    rt_blockers = [b for b in _blockers(bd) if _is_rt_blocker(b) and _num(b, "time_s") >= RT_LONG_S]
    if rt_blockers:
        b = max(rt_blockers, key=lambda x: _num(x, "time_s"))
        msg = (f"Real-time hog: {_blocker_name(b)} runs with a real-time policy and held our CPU for "
               f"{_ms(_num(b, 'time_s'))}; only RT throttling (kernel.sched_rt_runtime_us) stops it, so "
               f"lower its priority (chrt -o -p 0 {b.get('pid')}) or move it off the synthesis CPUs.")
        out.append(_f(RT_THROTTLING, "crit" if _num(b, "time_s") >= 5 * RT_LONG_S else "warn", msg, {
            "comm": b.get("comm"), "pid": b.get("pid"), "time_s": _num(b, "time_s"),
            "prio": b.get("prio"), "policy": b.get("policy")}))
    policy = _preset_policy(ctx)
    if policy in ("fifo", "rr") and bd.get("mode") != "schedstat":
        rq = _num(bd.get("totals", {}), "runqueue_wait_s")
        denom = _denominator(bd)
        share = rq / denom if denom > 0 else 0.0
        if share >= RT_SELF_WAIT_SHARE and not rt_blockers:
            runtime = ctx.get("rt_runtime_us", 950000)
            period = ctx.get("rt_period_us", 1000000)
            t = _top_thread(bd, "runqueue_wait_s")
            msg = (f"RT throttling likely: preset {_preset_name(ctx) or '?'} runs {_thread_name(t, bd)} as "
                   f"SCHED_{policy.upper()}, yet our threads waited {_ms(rq)} runnable ({_pct(share)}); the "
                   f"kernel throttles real-time tasks after {runtime} us per {period} us, so use a "
                   f"non-RT preset (`pinned`) or fewer RT threads than CPUs.")
            out.append(_f(RT_THROTTLING, "warn", msg, {
                "preset": _preset_name(ctx), "policy": policy, "runqueue_wait_s": rq, "share": share,
                "rt_runtime_us": runtime, "rt_period_us": period}))
    return out


def _rule_lost(bd: dict, ctx: dict) -> list[dict]:
    lost = bd.get("lost_events") or {}
    total = _num(lost, "total")
    unknown = [str(c) for c in lost.get("unknown_cpus") or []]
    if unknown and bd.get("mode") != "schedstat":
        known = f" ({int(total)} lost on the others)" if total > 0 else ""
        msg = (f"Lost events unknown: the trace buffer's loss counters of CPU {', '.join(unknown)} could not be "
               f"read, so how many events were lost there is unknown{known}; the breakdown of {_proc_name(bd)} "
               f"may be incomplete (check per_cpu/cpuN/stats in tracefs).")
        return [_f(LOST_EVENTS, "warn" if total <= 0 else "crit", msg,
                   {"lost": int(total), "unknown_cpus": unknown, "events": int(_num(bd, "events"))})]
    if total <= 0:
        return []
    events = _num(bd, "events")
    ratio = total / (total + events) if total + events > 0 else 1.0
    per = {cpu: v for cpu, v in (lost.get("per_cpu") or {}).items()
           if _num(v, "overrun") + _num(v, "dropped_events") > 0}
    cpus = ("on CPU " + ", ".join(sorted(per, key=str))) if per else "across CPUs"
    msg = (f"Lost events: the trace buffer overflowed ({int(total)} events lost {cpus}, "
           f"{_pct(ratio)} of the total) while tracing {_proc_name(bd)}, so this breakdown is incomplete "
           f"and its times are lower bounds; enlarge the trace buffer or shorten the request.")
    return [_f(LOST_EVENTS, "crit" if ratio >= LOST_CRIT_RATIO else "warn", msg,
               {"lost": int(total), "events": int(events), "ratio": ratio, "per_cpu": per})]


def _rule_degraded(bd: dict, ctx: dict) -> list[dict]:
    if bd.get("mode") != "schedstat":
        return []
    msg = (f"Degraded mode: tracefs is not writable here, so {_proc_name(bd)} was measured from "
           f"/proc schedstat only (on-CPU, run-queue wait, context switches); blocked I/O vs sleep, "
           f"IRQ/softirq, reclaim, migrations, who held the CPU, stages and the timeline are missing; "
           f"run as root with tracefs mounted for the full breakdown.")
    return [_f(DEGRADED_MODE, "info", msg, {"mode": "schedstat",
                                            "missing": ["blocked_io_vs_sleep", "irq", "softirq", "reclaim",
                                                        "migrations", "blockers", "stages", "segments"]})]


def _rule_kernel_latency(bd: dict, ctx: dict) -> list[dict]:
    out = []
    for fam, res in (bd.get("latency") or {}).items():
        if not isinstance(res, dict) or "max_latency_us" not in res:
            continue  # "not available" / "in use": nothing was measured
        us = _num(res, "max_latency_us")
        if us < KERNEL_LATENCY_WARN_US:
            continue
        who = f" in {res['task']}:{res['pid']}" if res.get("task") else ""
        where = f" on CPU {res['cpu']}" if res.get("cpu") is not None else ""
        span = (f" (from {res['started_at']} to {res['ended_at']})"
                if res.get("started_at") and res.get("ended_at") else "")
        if fam == "wakeup":
            what = (f"the highest-priority task waited {us / 1000:.1f} ms from its wakeup to running{where}"
                    f"{who} ({res.get('tracer')} tracer)")
        else:
            off = {"preemptirqsoff": "interrupts and preemption were", "irqsoff": "interrupts were"}.get(
                res.get("tracer"), "preemption was")
            what = f"{off} off for {us / 1000:.1f} ms{where}{who}{span}"
        msg = (f"Kernel latency: {what} during this request; the scheduler could not run the synthesis "
               f"threads meanwhile. The attachment's summary holds the tracer's trace of that stretch.")
        out.append(_f(KERNEL_LATENCY, "crit" if us >= KERNEL_LATENCY_CRIT_US else "warn", msg,
                      {"family": fam, "tracer": res.get("tracer"), "max_latency_us": us,
                       "task": res.get("task"), "pid": res.get("pid"), "cpu": res.get("cpu")}))
    return out


def _rule_inferred(bd: dict, ctx: dict) -> list[dict]:
    """Switches the trace left out and the analysis inferred (see tracing/analysis.py)."""
    tot = bd.get("totals") or {}
    unc, n = _num(tot, "uncertain_s"), int(_num(tot, "inferred_switches"))
    denom = _denominator(bd)
    if bd.get("mode") == "schedstat" or unc < MIN_UNCERTAIN_S or denom <= 0:
        return []
    share = unc / denom
    sev = _sev(share, UNCERTAIN_WARN_SHARE, UNCERTAIN_CRIT_SHARE)
    if sev is None:
        return []
    t = _top_thread(bd, "uncertain_s")
    msg = (f"Inferred switches: the kernel left {n} context switch(es) of {_proc_name(bd)} out of the trace "
           f"(no loss counted); they were placed from the events that show who was running, and "
           f"{_ms(unc)} ({_pct(share)} of our threads' observed time, most in {_thread_name(t, bd)}) lies in "
           f"the gaps where they happened, so on-CPU and run-queue wait per thread are that uncertain; "
           f"no blocker is charged past its last event.")
    return [_f(INFERRED_SWITCHES, sev, msg, {"inferred_switches": n, "uncertain_s": unc, "observed_s": denom,
                                             "share": share, "top_tid": t.get("tid") if t else None})]


def _rule_missing_events(bd: dict, ctx: dict) -> list[dict]:
    """Events the window could not record (breakdown missing_events: event -> why)."""
    miss = bd.get("missing_events") or {}
    if bd.get("mode") == "schedstat" or not isinstance(miss, dict):
        return []
    out = []
    for ev, why in sorted(miss.items()):
        sched = ev.startswith("sched/")
        if not sched and "failed" not in str(why):
            continue  # optional, and this kernel has no such event
        if ev in CRIT_EVENTS:
            sev, what = "crit", ("on-CPU, run-queue wait, sleep, blockers and the timeline are missing or wrong "
                                 "(the breakdown is NOT healthy, it is blind)")
        elif sched:
            sev, what = "warn", "wakeups/migrations are not seen, so run-queue wait and wakeup latency are guesses"
        else:
            sev, what = "info", "the matching column (IRQ / reclaim) reads 0 for lack of data"
        msg = (f"Event not recorded: {ev} ({why}) while tracing {_proc_name(bd)}; {what}. "
               f"`python -m tracing doctor` shows which events this tracefs offers.")
        out.append(_f(MISSING_EVENTS, sev, msg, {"event": ev, "why": why}))
    return out


def _rule_first_sound(bd: dict, ctx: dict) -> list[dict]:
    """What held up the first audio segment: the largest of the other tasks on our CPU (kswapd,
    flushers and the rest alike), direct reclaim and D-state waits, in first_sound.before only."""
    before = (bd.get("first_sound") or {}).get("before") or {}
    wall = _num(before, "wall_s")
    if not before or wall <= 0:
        return []
    ours = _our_tids(bd)
    cands = [(_num(b, "time_s"), f"{_blocker_name(b)} holding our CPU while synthesis waited", b)
             for b in before.get("blockers") or [] if b.get("pid") not in ours]
    cands += [(_num(before, "reclaim_s"), "direct memory reclaim in our threads", None),
              (_num(before, "blocked_io_s"), "blocked I/O (D state) in our threads", None)]
    t, what, b = max(cands, key=lambda c: c[0])
    sev = _sev(t / wall, FIRST_SOUND_WARN_SHARE, FIRST_SOUND_CRIT_SHARE)
    if sev is None or t < MIN_BLOCKER_S:
        return []
    comm = str((b or {}).get("comm", ""))
    if b is None and "reclaim" in what or _KSWAPD.match(comm):
        advice = "free memory or add swap so reclaim is not in the request path"
    elif b is None:
        advice = "keep model files and logs off a busy disk (or preload them)"
    elif _FLUSHER.match(comm):
        advice = "spread write-back (vm.dirty_* limits) or keep the synthesis CPUs free of it"
    else:
        advice = "give synthesis CPUs of its own (a pinned preset) or lower that task's priority"
    msg = (f"First sound was delayed {_ms(t)} by {what}: {_pct(t / wall)} of the {_ms(wall)} before the "
           f"first segment was out; {advice}.")
    ev = {"delay_s": t, "before_s": wall, "share": t / wall}
    if b is not None:
        ev.update(comm=b.get("comm"), pid=b.get("pid"))
    return [_f(FIRST_SOUND, sev, msg, ev)]


def _healthy(bd: dict) -> dict:
    tot = bd.get("totals", {})
    wall = _wall(bd)
    on = _num(tot, "on_cpu_s")
    rq = _num(tot, "runqueue_wait_s")
    msg = (f"Healthy: nothing stood out for {_proc_name(bd)} — {_ms(on)} on CPU and {_ms(rq)} run-queue "
           f"wait in a {_ms(wall)} request; if it still felt slow, the time is in the model itself.")
    return _f(HEALTHY, "info", msg, {"wall_s": wall, "on_cpu_s": on, "runqueue_wait_s": rq})


def _captured(bd: dict) -> dict:
    """The breakdown's device section when a profile was captured (else {})."""
    dv = bd.get("device")
    return dv if isinstance(dv, dict) and dv.get("status") == "captured" else {}


def _device(bd: dict) -> dict:
    """The device section when the profile shows GPU activity in the window (else {})."""
    dv = _captured(bd)
    return dv if dv.get("device") is not None else {}


def _rule_gpu_starved(bd: dict, ctx: dict) -> list[dict]:
    """The GPU waited for the host (host_wait gaps), with what the kernel did to the launch thread."""
    dv = _device(bd)
    tot = dv.get("totals") or {}
    wall, hw = _num(dv, "window_s"), _num(tot, "host_wait_s")
    if wall <= 0 or hw < MIN_GPU_HOST_WAIT_S:
        return []
    share = hw / wall
    sev = _sev(share, GPU_HOST_WAIT_WARN_SHARE, GPU_HOST_WAIT_CRIT_SHARE)
    if sev is None:
        return []
    hc = tot.get("host_cause") or {}
    blk = [b for b in hc.get("blockers") or [] if not str(b.get("blocker", "")).startswith("(")]
    # the advice follows the launching thread's biggest state in the gaps (a named blocker wins)
    main = max(("running_s", "sleep_s", "blocked_io_s", "runnable_s"), key=lambda k: _num(hc, k))
    advice = {"running_s": "the host code between launches is the bottleneck: batch, fuse or CUDA-graph that stage",
              "sleep_s": "the launching thread slept between launches (a lock, the GIL, a queue, a timer): find "
                         "what it waits on (the timeline shows when)",
              "blocked_io_s": "the launching thread waited for I/O between launches: keep model and prompt data in "
                              "memory, off the request path",
              "runnable_s": "the launching thread was runnable but not running: give synthesis its own cores "
                            "(`pinned`, `gpu-local` preset)"}[main]
    causes = []
    if blk and _num(blk[0], "time_s") >= GPU_CAUSE_MIN_SHARE * hw:
        b = blk[0]
        cpus = ",".join(str(c) for c in b.get("cpus") or [])
        causes.append(f"{_ms(_num(b, 'time_s'))} runnable behind {b['blocker']}" + (f" on CPU {cpus}" if cpus else ""))
        advice = ("the kernel kept the launching thread off its CPU: give synthesis its own cores (`pinned`, "
                  "`gpu-local` preset) or move that task away")
    for key, what in (("runnable_s", "runnable (run-queue wait)"), ("sleep_s", "asleep"),
                      ("blocked_io_s", "blocked on I/O (D)"), ("irq_s", "in IRQ handlers"),
                      ("softirq_s", "in softirq handlers"), ("running_s", "on-CPU in host code")):
        v = _num(hc, key)
        if v >= GPU_CAUSE_MIN_SHARE * hw and not (key == "runnable_s" and causes):
            causes.append(f"{_ms(v)} {what}")
    msg = (f"GPU starved by the host: GPU {dv.get('device')} sat idle waiting for the next launch for {_ms(hw)} "
           f"({_pct(share)} of the {_ms(wall)} synthesis, {int(_num(tot, 'host_wait_gaps'))} gaps); during those gaps "
           f"the launching thread was " + ("; ".join(causes) if causes else "not seen in the kernel trace")
           + f". So {advice}.")
    return [_f(GPU_STARVED, sev, msg, {"device": dv.get("device"), "host_wait_s": hw, "window_s": wall,
                                       "share": share, "host_cause": hc,
                                       "clock_error_us": (dv.get("clock") or {}).get("error_us")})]


def _rule_gpu_sync_spin(bd: dict, ctx: dict) -> list[dict]:
    """A thread that spun on-CPU inside synchronizing CUDA calls (cudaDeviceScheduleAuto spins)."""
    dv = _captured(bd)
    wall = _num(dv, "window_s")
    rows = (dv.get("gpu_waits") or {}).get("threads") or []
    if wall <= 0 or not rows:
        return []
    top = max(rows, key=lambda r: _num(r, "spinning_s"))
    spin = _num(top, "spinning_s")
    share = spin / wall
    if spin < MIN_GPU_SPIN_S or share < GPU_SPIN_INFO_SHARE:
        return []
    t = next((x for x in bd.get("threads") or [] if x.get("tid") == top.get("tid")), {"tid": top.get("tid")})
    msg = (f"Spinning in synchronize: {_thread_name(t, bd)} waited for the GPU for {_ms(_num(top, 'wait_s'))} in "
           f"{int(_num(top, 'calls'))} synchronizing call(s), {_ms(spin)} of it ({_pct(share)} of the request) "
           f"on-CPU, busy-waiting; PyTorch has no blocking-sync switch (pytorch#28224), so leave that thread a "
           f"core of its own (the torch intra-op threads must not need it) or it slows the CPU work beside it.")
    return [_f(GPU_SYNC_SPIN, "warn" if share >= GPU_SPIN_WARN_SHARE else "info", msg,
               {"tid": top.get("tid"), "wait_s": _num(top, "wait_s"), "spinning_s": spin, "sleep_s": _num(top, "sleep_s"),
                "calls": int(_num(top, "calls")), "share": share})]


def _rule_gpu_launch_bound(bd: dict, ctx: dict) -> list[dict]:
    """Stages whose kernels are shorter than their launches (HTA's short-kernel rule) and leave the GPU idle."""
    out = []
    for st in _device(bd).get("stages") or []:
        n, short, wall = int(_num(st, "kernels")), int(_num(st, "short_kernels")), _num(st, "wall_s")
        if n < LAUNCH_BOUND_MIN_KERNELS or wall < LAUNCH_BOUND_MIN_STAGE_S:
            continue
        busy = _num(st, "busy_s") / wall
        if short / n < LAUNCH_BOUND_SHORT_SHARE or busy >= LAUNCH_BOUND_BUSY_SHARE:
            continue
        msg = (f"Launch-bound stage: in '{st.get('name')}' {short} of {n} kernels ran shorter than their own launch "
               f"call, and the GPU was busy only {_pct(busy)} of the stage's {_ms(wall)}; the host cannot launch "
               f"them as fast as the GPU retires them: fuse them (torch.compile), capture the loop in a CUDA graph, "
               f"or batch more work per launch.")
        out.append(_f(GPU_LAUNCH_BOUND, "warn", msg, {"stage": st.get("name"), "kernels": n, "short_kernels": short,
                                                      "busy_share": busy, "wall_s": wall}))
    return out


def _outside_blockers(bd: dict) -> list[dict]:
    """Blockers that are not our own threads (other processes and kernel threads), largest first."""
    ours = _our_tids(bd)
    return sorted((b for b in _blockers(bd) if b.get("pid") not in ours and b.get("pid") != 0
                   and _num(b, "time_s") >= MIN_BLOCKER_S), key=lambda b: -_num(b, "time_s"))


def _rule_nice_inert(bd: dict, ctx: dict) -> list[dict]:
    """A nice boost (nice < 0) in force while the kernel's autogroup puts the service in a session
    group it does not own: CFS shares CPU time between groups first, so against another session's
    tasks the boost is void (tuning/apply.py `_set_autogroup`). The preset read-back carries
    `nice`, `autogroup_nice` (None: autogroup off) and `autogroup_owned`. warn when other tasks
    held our CPU in this request (the boost was needed and did nothing), else info."""
    p = ctx.get("preset") if isinstance(ctx.get("preset"), dict) else {}
    nice = p.get("nice")
    if not isinstance(nice, int) or isinstance(nice, bool) or nice >= 0:
        return []
    if p.get("autogroup_nice") is None or p.get("autogroup_owned") is not False:
        return []
    wall = _wall(bd)
    held = _outside_blockers(bd)
    held_s = sum(_num(b, "time_s") for b in held)
    sev = "warn" if wall > 0 and held_s / wall >= CONTENTION_WARN_SHARE else "info"
    who = (f"; meanwhile {_blocker_name(held[0])} and others held our CPU for {_ms(held_s)} "
           f"({_pct(held_s / wall)} of the request)") if held and wall > 0 else ""
    msg = (f"Nice cannot act: preset {_preset_name(ctx) or '?'} runs the synthesis at nice {nice}, but autogroup is on "
           f"and {_proc_name(bd)} sits in the launching shell's session group (group nice "
           f"{p.get('autogroup_nice')}), so its nice only orders it among that session's tasks and it gets no "
           f"more than an equal group share against other sessions{who}. Run the service as its own session "
           f"(a systemd service, or `setsid ./start_app.sh`) so presets set the group's nice too, or use a "
           f"`pinned` or `realtime` preset.")
    return [_f(NICE_INERT, sev, msg, {"nice": nice, "autogroup_nice": p.get("autogroup_nice"),
                                      "autogroup_owned": False, "outside_blockers_s": held_s, "wall_s": wall})]


def _rule_rt_demoted(bd: dict, ctx: dict) -> list[dict]:
    """RLIMIT_RTTIME fired during the request (the read-back's `rt_demoted`, set per request by
    the tuner's rt_request): every real-time thread ran the rest of it as SCHED_OTHER."""
    p = ctx.get("preset") if isinstance(ctx.get("preset"), dict) else {}
    if p.get("rt_demoted") is not True:
        return []
    budget = p.get("rt_budget_s")
    source = p.get("rt_budget_source")
    wall = _wall(bd)
    why = {"observed": "sized from the recent requests' times (3x the expected)",
           "unknown": "the budget for a first request, before any was observed",
           "preset": "the preset's rt_budget_s"}.get(source, "its budget")
    spent = f"{_ms(float(budget))} ({why})" if isinstance(budget, (int, float)) else why
    msg = (f"Real-time lost mid-request: a real-time thread of {_proc_name(bd)} computed {spent} without "
           f"blocking, so RLIMIT_RTTIME demoted every thread to SCHED_OTHER and the rest of this "
           f"{_ms(wall) if wall else ''} request competed like a normal task. If the engine legitimately computes "
           f"that long, set `rt_budget_s` in the preset above this request's time; if it should not, a thread "
           f"is spinning (see its on-CPU time). The next request goes real-time again.")
    return [_f(RT_DEMOTED, "crit", msg, {"preset": _preset_name(ctx), "rt_budget_s": budget,
                                         "rt_budget_source": source, "wall_s": wall})]


_RULES = (_rule_missing_events, _rule_contention, _rule_self_contention, _rule_runqueue, _rule_idle_wakeup,
          _rule_memory, _rule_writeback, _rule_io, _rule_irq, _rule_migrations, _rule_rt, _rule_lost, _rule_degraded,
          _rule_kernel_latency, _rule_inferred, _rule_gpu_starved, _rule_gpu_sync_spin, _rule_gpu_launch_bound,
          _rule_first_sound, _rule_rt_demoted, _rule_nice_inert)
