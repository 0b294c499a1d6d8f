"""Events of one trace window -> the latency Breakdown of one process (pure, no I/O).

Metric definitions (as bcc runqlat / perf sched timehist), per thread of the process and summed:
  on_cpu_s          time between a switch-in and the next switch-out of the thread.
  runqueue_wait_s   runnable but not running: from sched_waking (or sched_wakeup when waking is
                    missing), or from a switch-out in state R/R+ (preemption), to the next switch-in.
  blocked_io_s      off-CPU after a switch-out in state D (uninterruptible: I/O, page faults).
  sleep_s           off-CPU after a switch-out in any other state (S, I, T, ...).
  irq_s / softirq_s hard/soft IRQ handler time on a CPU while our thread was the current task
                    (the handler runs inside our on_cpu time; softirq time excludes nested hard IRQs).
  reclaim_s         direct reclaim begin..end in our threads, including reclaim forced by a memory
                    cgroup limit (memcg_reclaim, the container case); inside their on_cpu/blocked time.
  migrations        sched_migrate_task events for our threads.
  voluntary / involuntary switches: switch-outs in a blocking state / in state R (preempted).
  wakeup latency    sched_waking -> switch-in, in us: log2 histogram (key = bucket lower bound;
                    "0" holds < 1 us), count, max, p50, p95.
  blockers          for each other task (comm AND pid): the time it was running on the CPU where one
                    of our threads sat runnable (summed over our threads), and how many times it
                    preempted us (we switched out in R with it as next). The idle task is not one:
  idle_wait_s       runnable time while the CPU we waited for ran its idle task (summed over our
                    threads; part of runqueue_wait_s). Nobody held the CPU: the wakeup was slow to
                    reach it (a halted vCPU the hypervisor has to reschedule, a deep C-state exit,
                    a delayed IPI). Large values on a VM mean host-side latency, not a local task.
Window edges: a thread's state is unknown until its first event. If that event is a switch-out,
or any event with the thread as the current task (a marker it wrote, an IRQ that interrupted it),
the thread was running since the first event on that CPU (or the window start), because no switch
happened there before; otherwise observation starts at the first event. After the last event the
state lasts until the window end. So per thread on_cpu + runqueue_wait + blocked_io + sleep ==
observed_s exactly. Events lost to overruns (reported in lost_events) can bend this accounting.
Stages: atrace markers `B|<tgid>|<name>` / `E|<tgid>` of our tgid (nested allowed); every stage
gets the overlap of our threads' state intervals with [begin, end].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import parse as P

RUNNING, RUNNABLE, BLOCKED_IO, SLEEP = 0, 1, 2, 3  # thread states; index the two tuples below
STATE_NAMES = ("running", "runnable", "blocked_io", "sleep")  # as segments carry them
_STATE_KEYS = ("on_cpu_s", "runqueue_wait_s", "blocked_io_s", "sleep_s")
MAX_SEGMENTS = 4000  # enough for a timeline; shortest ones are dropped beyond that (see _cap_segments)
_R, _D = ord("R"), ord("D")


@dataclass
class Breakdown:
    """The analysis result; to_dict() is the JSON schema of ARCHITECTURE.md."""
    mode: str
    pid: int
    window: dict
    totals: dict
    threads: list
    stages: list
    wakeup_latency: dict
    blockers: list
    lost_events: dict
    segments: list = field(default_factory=list)
    events: int = 0
    source: str = ""  # what the events were decoded from: "pages" | "text" ("" in schedstat mode)
    latency: dict = field(default_factory=dict)  # tracing.latency results per family (window's)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "pid": self.pid, "window": dict(self.window), "totals": dict(self.totals),
                "threads": [dict(t) for t in self.threads], "stages": [dict(s) for s in self.stages],
                "wakeup_latency": dict(self.wakeup_latency), "blockers": [dict(b) for b in self.blockers],
                "lost_events": self.lost_events, "segments": [dict(s) for s in self.segments],
                "events": self.events, "source": self.source, "latency": dict(self.latency)}


def empty_lost(cpus=()) -> dict:
    return {"total": 0, "per_cpu": {str(c): {"overrun": 0, "dropped_events": 0} for c in cpus}}


def latency_summary(lat_us) -> dict:
    """Wakeup latency list (us) -> {count, max_us, p50_us, p95_us, hist_log2_us}."""
    lat = np.asarray(lat_us, dtype=float)
    if len(lat) == 0:
        return {"count": 0, "max_us": None, "p50_us": None, "p95_us": None, "hist_log2_us": {}}
    lo = np.where(lat < 1, 0, np.exp2(np.floor(np.log2(np.maximum(lat, 1))))).astype(np.int64)
    keys, counts = np.unique(lo, return_counts=True)
    hist = {str(k): int(c) for k, c in zip(keys.tolist(), counts.tolist())}
    return {"count": int(len(lat)), "max_us": round(float(lat.max()), 3),
            "p50_us": round(float(np.percentile(lat, 50)), 3), "p95_us": round(float(np.percentile(lat, 95)), 3),
            "hist_log2_us": hist}


def analyze(events: P.Events, pid: int, start_ts: float, end_ts: float, lost: dict | None = None,
            tids=None) -> Breakdown:
    """Breakdown of process `pid` (its threads: header tgid == pid, plus `tids`) in [start_ts, end_ts]."""
    ev = events
    n = len(ev)
    kind, tid_c, tgid_c = ev.kind, ev.tid, ev.tgid
    ours = set(np.unique(tid_c[(tgid_c == pid) & (tid_c > 0)]).tolist()) | set(tids or ()) | {pid}
    ours_arr = np.fromiter(ours, dtype=np.int64)

    # Select what the per-thread state machine must see; the rest (other tasks' wakeups, switches
    # not involving us) is only needed for blockers, which are computed per CPU afterwards.
    is_sw = kind == P.K_SWITCH
    is_wk = (kind == P.K_WAKING) | (kind == P.K_WAKEUP) | (kind == P.K_WAKEUP_NEW) | (kind == P.K_MIGRATE)
    cur_ours = np.isin(tid_c, ours_arr)
    # Any event with our thread current is kept: it proves the thread was on that CPU then.
    sel = cur_ours | (is_sw & np.isin(ev.a, ours_arr)) | (is_wk & np.isin(ev.a, ours_arr)) \
        | ((kind == P.K_MARKER) & (tgid_c == pid))
    sel &= (ev.ts >= start_ts) & (ev.ts <= end_ts)
    idx = np.flatnonzero(sel)

    # Per-CPU first event time: before it nothing is known about that CPU (overruns eat the start).
    cpu_c = ev.cpu
    first_on_cpu: dict[int, float] = {}
    if n:
        ucpu, first_i = np.unique(cpu_c, return_index=True)
        first_on_cpu = {int(cc): max(float(ev.ts[i]), start_ts) for cc, i in zip(ucpu.tolist(), first_i.tolist())}

    # state[tid] = [state, since, cpu, wake_ts or None]; unknown threads are absent.
    state: dict[int, list] = {}
    segs: list[tuple] = []  # (tid, state, start, end, cpu)
    comm: dict[int, str] = {}
    cnt = {t: [0, 0, 0] for t in ours}  # migrations, voluntary, involuntary
    irq_iv: list[tuple] = []  # (tid, start, end, is_soft)
    reclaim_iv: list[tuple] = []
    irq_open: dict[int, tuple] = {}  # cpu -> (tid, start)
    soft_open: dict[int, list] = {}  # cpu -> [tid, start, nested hard-irq time]
    reclaim_open: dict[int, float] = {}
    preempt: dict[int, int] = {}  # pid -> times it preempted us
    preempt_row: dict[int, int] = {}  # pid -> an event row naming it (for its comm)
    lat_us: list[float] = []
    marks: list[tuple] = []  # (ts, tgid, text)
    stage_stack: dict[int, list] = {}
    stages_out: list[dict] = []
    migr_ts: list[float] = []

    cpu_rows: dict[int, np.ndarray] = {}

    def running_since(row, cpu, tid):
        """Start of the stretch in which `tid` is the current task at `row` without a switch
        to it in the window: after the CPU's last earlier event with another current task,
        else from the CPU's first event (or the window start)."""
        if cpu not in cpu_rows:
            cpu_rows[cpu] = np.flatnonzero(cpu_c == cpu)
        rows = cpu_rows[cpu]
        prior = rows[:np.searchsorted(rows, row)]
        other = prior[tid_c[prior] != tid]
        return max(float(ev.ts[other[-1]]), start_ts) if len(other) else first_on_cpu.get(cpu, start_ts)

    def close(t, s, now):
        if now > s[1]:
            segs.append((t, s[0], s[1], now, s[2]))

    cols = zip(idx.tolist(), ev.ts[idx].tolist(), cpu_c[idx].tolist(), kind[idx].tolist(), tid_c[idx].tolist(),
               tgid_c[idx].tolist(), ev.a[idx].tolist(), ev.b[idx].tolist(), ev.c[idx].tolist())
    add_seg = segs.append
    for i, ts, cpu, k, cur, tg, a, b, c in cols:
        if k != P.K_SWITCH and cur in ours and cur not in state:
            # first sign of a thread that has not switched so far: it is the current task here
            state[cur] = [RUNNING, running_since(i, cpu, cur), cpu, None]
        if k == P.K_SWITCH:
            if cur in ours:  # switch-out of our thread
                s = state.get(cur)
                if s is None:
                    s = [RUNNING, first_on_cpu.get(cpu, start_ts), cpu, None]
                if cur not in comm:
                    comm[cur] = ev.sa(i)
                if ts > s[1]:
                    add_seg((cur, s[0], s[1], ts, s[2]))
                if b == _R:
                    cnt[cur][2] += 1
                    preempt[a] = preempt.get(a, 0) + 1  # comm resolved once per pid below
                    preempt_row.setdefault(a, i)
                    state[cur] = [RUNNABLE, ts, cpu, None]
                else:
                    cnt[cur][1] += 1
                    state[cur] = [BLOCKED_IO if b == _D else SLEEP, ts, cpu, None]
            if a in ours:  # switch-in of our thread
                s = state.get(a)
                if s is not None:
                    if ts > s[1]:
                        add_seg((a, s[0], s[1], ts, s[2]))
                    if s[0] == RUNNABLE and s[3] is not None:
                        lat_us.append((ts - s[3]) * 1e6)
                if a not in comm:
                    comm[a] = ev.sb(i)
                state[a] = [RUNNING, ts, cpu, None]
        elif k in (P.K_WAKING, P.K_WAKEUP, P.K_WAKEUP_NEW):
            if a not in ours:
                continue  # our thread woke someone else
            s = state.get(a)
            if s is None:
                state[a] = [RUNNABLE, ts, b, ts]
                if k == P.K_WAKEUP_NEW:
                    comm.setdefault(a, ev.sa(i))
            elif s[0] in (BLOCKED_IO, SLEEP):
                close(a, s, ts)
                state[a] = [RUNNABLE, ts, b, ts]
            elif s[0] == RUNNABLE and k != P.K_WAKING:
                s[2] = b  # sched_wakeup carries the CPU actually chosen
        elif k == P.K_MIGRATE:
            if a not in ours:
                continue
            cnt.setdefault(a, [0, 0, 0])[0] += 1
            migr_ts.append(ts)
            s = state.get(a)
            if s is not None and s[0] != RUNNING:
                close(a, s, ts)
                state[a] = [s[0], ts, c, s[3]]
        elif k == P.K_IRQ_ENTRY:
            irq_open[cpu] = (cur, ts)
        elif k == P.K_IRQ_EXIT:
            o = irq_open.pop(cpu, None)
            if o is not None:
                irq_iv.append((o[0], o[1], ts, False))
                so = soft_open.get(cpu)
                if so is not None:
                    so[2] += ts - o[1]
        elif k == P.K_SOFTIRQ_ENTRY:
            soft_open[cpu] = [cur, ts, 0.0]
        elif k == P.K_SOFTIRQ_EXIT:
            o = soft_open.pop(cpu, None)
            if o is not None:
                irq_iv.append((o[0], o[1], ts - o[2], True))
        elif k == P.K_RECLAIM_BEGIN:
            reclaim_open[cur] = ts
        elif k == P.K_RECLAIM_END:
            t0 = reclaim_open.pop(cur, None)
            if t0 is not None:
                reclaim_iv.append((cur, t0, ts))
        elif k == P.K_MARKER:
            marks.append((ts, ev.sa(i)))
    for t, s in state.items():
        close(t, s, end_ts)

    # Stages from atrace markers of our tgid.
    for ts, text in marks:
        parts = text.strip().split("|")
        if len(parts) < 2 or parts[0] not in ("B", "E") or parts[1] != str(pid):
            continue
        stack = stage_stack.setdefault(pid, [])
        if parts[0] == "B":
            stack.append(("|".join(parts[2:]), ts))
        elif stack:
            name, t0 = stack.pop()
            stages_out.append({"name": name, "start_s": t0, "end_s": ts})
    for name, t0 in stage_stack.get(pid, []):  # never closed: ends with the window
        stages_out.append({"name": name, "start_s": t0, "end_s": end_ts})
    stages_out.sort(key=lambda s: s["start_s"])

    # Segments as columns: tid, state, start, end, cpu.
    S = np.array(segs, dtype=np.float64).reshape(-1, 5)
    seg_tid, seg_st, seg_cpu = S[:, 0].astype(np.int64), S[:, 1].astype(np.int64), S[:, 4].astype(np.int64)
    seg_a, seg_b = S[:, 2], S[:, 3]
    pieces = _blocker_pieces(ev, seg_tid, seg_st, seg_a, seg_b, seg_cpu)
    blockers = _blockers(pieces, {(ev.sb(preempt_row[p]), p): n_ for p, n_ in preempt.items()})
    idle_wait = float(pieces.dur[pieces.pid == 0].sum())

    def per_tid(ivs):
        out: dict[int, float] = {}
        for iv in ivs:
            out[iv[0]] = out.get(iv[0], 0.0) + (iv[2] - iv[1])
        return out

    hard = per_tid([iv for iv in irq_iv if not iv[3] and iv[0] in ours])
    soft = per_tid([iv for iv in irq_iv if iv[3] and iv[0] in ours])
    recl = per_tid([iv for iv in reclaim_iv if iv[0] in ours])

    seen = np.array(sorted(set(seg_tid.tolist()) | {t for t in ours if any(cnt[t]) or t in hard}), dtype=np.int64)
    # time per (thread, state): one weighted bincount over all segments
    per = np.bincount(np.searchsorted(seen, seg_tid) * 4 + seg_st, weights=seg_b - seg_a,
                      minlength=4 * len(seen)).reshape(-1, 4)
    threads = []
    for j, t in enumerate(seen.tolist()):
        row = {"tid": t, "comm": comm.get(t, ""), "observed_s": 0.0}
        for st, key in enumerate(_STATE_KEYS):
            row[key] = float(per[j, st])
        row["observed_s"] = row["on_cpu_s"] + row["runqueue_wait_s"] + row["blocked_io_s"] + row["sleep_s"]
        row["irq_s"], row["softirq_s"], row["reclaim_s"] = hard.get(t, 0.0), soft.get(t, 0.0), recl.get(t, 0.0)
        c3 = cnt.get(t, [0, 0, 0])
        row["migrations"], row["voluntary_switches"], row["involuntary_switches"] = c3
        threads.append(row)

    sum_keys = ("on_cpu_s", "runqueue_wait_s", "blocked_io_s", "sleep_s", "irq_s", "softirq_s", "reclaim_s",
                "migrations", "voluntary_switches", "involuntary_switches")
    totals = {"wall_s": end_ts - start_ts}
    for k in sum_keys:
        totals[k] = sum(r[k] for r in threads)
    totals["threads"] = len(threads)
    totals["idle_wait_s"] = idle_wait

    # Stage slices: overlap of every interval with the stage.
    irq_all = [iv for iv in irq_iv if iv[0] in ours]
    for sg in stages_out:
        a0, b0 = sg["start_s"], sg["end_s"]
        sg["wall_s"] = b0 - a0
        ov = np.clip(np.minimum(seg_b, b0) - np.maximum(seg_a, a0), 0, None)
        by_state = np.bincount(seg_st, weights=ov, minlength=4)
        for st, key in enumerate(_STATE_KEYS):
            sg[key] = float(by_state[st])
        sg["irq_s"] = sum(max(0.0, min(e, b0) - max(s, a0)) for _, s, e, soft_ in irq_all if not soft_)
        sg["softirq_s"] = sum(max(0.0, min(e, b0) - max(s, a0)) for _, s, e, soft_ in irq_all if soft_)
        sg["reclaim_s"] = sum(max(0.0, min(e, b0) - max(s, a0)) for _, s, e in reclaim_iv if _ in ours)
        sg["migrations"] = sum(1 for t in migr_ts if a0 <= t <= b0)

    segments = _cap_segments(seg_tid, seg_st, seg_a, seg_b, seg_cpu, pieces)
    return Breakdown(
        mode="full", pid=pid,
        window={"start_s": start_ts, "end_s": end_ts, "duration_s": end_ts - start_ts},
        totals=totals, threads=threads, stages=stages_out, wakeup_latency=latency_summary(lat_us),
        blockers=blockers, lost_events=lost if lost is not None else empty_lost(sorted(first_on_cpu)),
        segments=segments, events=n)


def _cpu_timelines(ev: P.Events):
    """cpu -> (switch times, next pids, row indices, pid running before the first switch)."""
    sw = np.flatnonzero(ev.kind == P.K_SWITCH)
    out = {}
    cpus = ev.cpu[sw]
    for c in np.unique(cpus).tolist():
        rows = sw[cpus == c]
        out[c] = (ev.ts[rows], ev.a[rows], rows, int(ev.tid[rows[0]]), int(rows[0]))
    return out


@dataclass
class _Pieces:
    """Stretches of another task running on the CPU where our thread sat runnable, as columns:
    segment index, pid (0 = the CPU was idle), seconds, and the task's comm (index into names)."""
    si: np.ndarray
    pid: np.ndarray
    dur: np.ndarray
    name: np.ndarray
    names: list


def _blocker_pieces(ev, seg_tid, seg_st, seg_a, seg_b, seg_cpu) -> _Pieces:
    """Vectorised for the usual case of one task in the way per runnable segment (the next switch
    on that CPU is the one to us); a Python walk for the rest."""
    tl = _cpu_timelines(ev)
    si_l, pid_l, row_l, nxt_l, dur_l = [], [], [], [], []
    runnable = seg_st == RUNNABLE
    for cpu in np.unique(seg_cpu[runnable]).tolist():
        if cpu not in tl:
            continue
        times, nxt, rows, first_pid, first_row = tl[cpu]
        si_a = np.flatnonzero(runnable & (seg_cpu == cpu))
        tid_a, a0, b0 = seg_tid[si_a], seg_a[si_a], seg_b[si_a]
        k = np.searchsorted(times, a0, side="right") - 1  # last switch at/before the start
        k_end = np.searchsorted(times, b0, side="left")  # first switch at/after the end
        pid_cur = np.where(k >= 0, nxt[np.maximum(k, 0)], first_pid)
        row_cur = np.where(k >= 0, rows[np.maximum(k, 0)], first_row)
        single = k_end <= k + 1
        ok = single & (pid_cur != tid_a)  # pid 0 (idle) kept: it becomes idle_wait_s
        si_l.append(si_a[ok]), pid_l.append(pid_cur[ok]), row_l.append(row_cur[ok])
        nxt_l.append(k[ok] >= 0), dur_l.append(b0[ok] - a0[ok])
        walk = ([], [], [], [], [])
        for j in np.flatnonzero(~single).tolist():  # several tasks ran in turn: walk the switches
            t_cur, kk, end, tid = float(a0[j]), int(k[j]), float(b0[j]), int(tid_a[j])
            while True:
                pid, row, is_next = (first_pid, first_row, False) if kk < 0 else (int(nxt[kk]), int(rows[kk]), True)
                t_next = float(times[kk + 1]) if kk + 1 < len(times) else math.inf
                t_end = min(t_next, end)
                if pid != tid and t_end > t_cur:
                    for col, v in zip(walk, (int(si_a[j]), pid, row, is_next, t_end - t_cur)):
                        col.append(v)
                if t_next >= end:
                    break
                t_cur, kk = t_next, kk + 1
        for lst, col, dt in zip((si_l, pid_l, row_l, nxt_l, dur_l), walk,
                                (np.int64, np.int64, np.int64, bool, np.float64)):
            lst.append(np.array(col, dtype=dt))
    cat = [np.concatenate(x) if x else np.zeros(0, dtype=dt)
           for x, dt in zip((si_l, pid_l, row_l, nxt_l, dur_l), (np.int64, np.int64, np.int64, bool, np.float64))]
    si, pid, row, is_next, dur = cat
    name, names = _comm_names(ev, pid, row, is_next)
    return _Pieces(si, pid, dur, name, names)


def _comm_names(ev, pid, row, is_next):
    """The comm of each piece's task: read from its switch event (next_comm, or prev_comm for the
    task running before the CPU's first switch). A task's comm changes only on exec or a rename,
    so each pid's first and last piece are read, and every piece only when those two differ."""
    names: list[str] = []
    index: dict[str, int] = {}
    name = np.zeros(len(pid), dtype=np.int64)

    def comm_at(r, nx):
        c = ev.sb(r) if nx else ev.sa(r)
        if c not in index:
            index[c] = len(names)
            names.append(c)
        return index[c]

    if len(pid):
        order = np.argsort(pid, kind="stable")
        bounds = np.flatnonzero(np.diff(pid[order])) + 1
        for grp in np.split(order, bounds):
            first = comm_at(int(row[grp[0]]), bool(is_next[grp[0]]))
            last = comm_at(int(row[grp[-1]]), bool(is_next[grp[-1]]))
            if first == last:
                name[grp] = first
            else:
                name[grp] = [comm_at(int(row[g]), bool(is_next[g])) for g in grp.tolist()]
    return name, names


def _blockers(pieces: _Pieces, preempt) -> list[dict]:
    """Per (comm, pid) other than idle: time it held our CPU while we were runnable, preemptions."""
    acc: dict[tuple, float] = {}
    if len(pieces.pid):
        key = pieces.pid * (len(pieces.names) + 1) + pieces.name
        uk, inv = np.unique(key, return_inverse=True)
        sums = np.bincount(inv, weights=pieces.dur)
        for k_, total in zip(uk.tolist(), sums.tolist()):
            p, ni = divmod(k_, len(pieces.names) + 1)
            acc[(pieces.names[ni], p)] = total
    keys = set(acc) | set(preempt)
    out = [{"comm": c, "pid": p, "time_s": acc.get((c, p), 0.0), "preemptions": preempt.get((c, p), 0)}
           for c, p in keys if p != 0]
    out.sort(key=lambda r: (-r["time_s"], -r["preemptions"]))
    return out


def _main_blocker_by_seg(pieces: _Pieces, wanted: np.ndarray) -> dict[int, str]:
    """For the segments in `wanted`: "comm:pid" of the task that held the CPU longest (not idle)."""
    m = (pieces.pid != 0) & np.isin(pieces.si, wanted)
    si, dur, pid, name = pieces.si[m], pieces.dur[m], pieces.pid[m], pieces.name[m]
    if not len(si):
        return {}
    o = np.lexsort((dur, si))  # by segment, then duration: the last of each segment wins
    last = o[np.append(si[o][1:] != si[o][:-1], True)]
    return {s_: f"{pieces.names[n_]}:{p_}" for s_, n_, p_ in zip(si[last].tolist(), name[last].tolist(),
                                                                  pid[last].tolist())}


def _cap_segments(seg_tid, seg_st, seg_a, seg_b, seg_cpu, pieces: _Pieces, cap: int = MAX_SEGMENTS) -> list[dict]:
    """Segments for the timeline. Beyond `cap`, only the longest `cap` are kept (short ones are
    invisible on a timeline anyway); output is sorted by start time."""
    keep = np.arange(len(seg_tid))
    if len(keep) > cap:
        keep = np.sort(np.argsort(seg_a - seg_b, kind="stable")[:cap])
    blk = _main_blocker_by_seg(pieces, keep)
    return [{"tid": t, "state": STATE_NAMES[st], "start_s": a, "end_s": b, "cpu": c, "blocker": blk.get(i)}
            for i, t, st, a, b, c in zip(keep.tolist(), seg_tid[keep].tolist(), seg_st[keep].tolist(),
                                         seg_a[keep].tolist(), seg_b[keep].tolist(), seg_cpu[keep].tolist())]
