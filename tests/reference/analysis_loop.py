# Frozen copy of tracing/analysis.py at main 9903978 (before issue 25's rewrite): the event-by-event
# oracle of tests/test_analysis_identity.py and the reference arm of benchmarks/analysis_speed.py.
# Keep it as it is (only its import of tracing.parse differs); fix a bug in both or in neither.
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
Missing switches (this kernel leaves some sched_switch events out: those with certain tasks as
prev never arrive, with no overrun counted; lost events do the same): every event names the task
current on its CPU, so on one CPU each event's current task must be the one current after the
previous event there (after a switch: its next task). Where two neighbours disagree (X current at
the first, Y at the second), a switch X -> Y happened in the gap between them unrecorded.
`_infer_switches` inserts it (vectorised: one radix sort by CPU, one neighbour comparison) at the
gap's START, the last event showing X current: nobody is charged past its last evidence, neither
a blocker nor our thread's on-CPU time when X is ours; Y, when ours, is on-CPU from there (its
on-CPU an upper, its run-queue wait a lower bound). One refinement: when Y is our thread, X is
not, and Y was woken or moved (sched_waking/wakeup/migrate) inside the gap, the switch goes right
after that: a sleeping thread is not switched in before its wakeup. In blocker timelines the gap
is nobody's: X until its last evidence, Y from its first, between them unattributed.
An inferred switch-out of our thread has no prev_state: the thread is off-CPU in an unknown state
until its next event says which: a wakeup -> it slept (counted as sleep_s: S and D cannot be told
apart), a switch-in or migration -> runnable, the window end -> sleep_s (and uncertain). A thread
woken twice with no switch-in between ran and slept unseen in that stretch: counted as an inferred
switch, the stretch runnable and uncertain.
  inferred_switches  per thread and summed: switches of our threads (in or out) that were inferred.
  uncertain_s        per thread and summed: time in which the thread's state hangs on an inferred
                     switch: (a) each own inferred switch's gap, from the point chosen to the next
                     evidence; (b) a runnable stretch crossed by an inferred gap between other
                     tasks on its CPU (it may have run there unseen), from that gap to the stretch's
                     end; (c) an unresolved inferred switch-out, from its gap to the window end;
                     (d) a woken-twice stretch. Bound: each thread's on_cpu_s and runqueue_wait_s
                     are within its uncertain_s of what the complete trace gives, every blocker's
                     time_s within totals.uncertain_s, as long as every run of a task shows in at
                     least one event (a run whose switch-in and switch-out are both missing, with
                     nothing between, leaves no trace to infer from). Not bounded: the blocked_io
                     / sleep split after an inferred switch-out.
  blockers.uncertain_s  per blocker: unattributed gap time next to it (inferred switches from or to
                     it) in our runnable time, plus gaps it handed over to our thread by an inferred
                     switch-in: it held our CPU at least time_s, at most about time_s + uncertain_s.
Inferred switches are not counted as voluntary/involuntary, nor as preemptions, nor as wakeup
latency samples. On a complete trace nothing is inferred and the numbers are those of before.
Stages: atrace markers `B|<tgid>|<name>` / `E|<tgid>` of our tgid (nested allowed); every stage
gets the overlap of our threads' state intervals with [begin, end]. Our other markers are kept as
`markers` ({ts_s, text}, at most MAX_MARKERS: the clock marks of tracing/clock.py), and our threads'
IRQ/softirq handler intervals as `irq_segments` ({tid, start_s, end_s, soft}; the longest
MAX_SEGMENTS), which the device view joins with GPU idle gaps (tracing/device.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tracing import parse as P

RUNNING, RUNNABLE, BLOCKED_IO, SLEEP = 0, 1, 2, 3  # thread states; index the two tuples below
OFF = 4  # off-CPU after an inferred switch-out: runnable or asleep, the next event decides
STATE_NAMES = ("running", "runnable", "blocked_io", "sleep")  # as segments carry them
_STATE_KEYS = ("on_cpu_s", "runqueue_wait_s", "blocked_io_s", "sleep_s")
MAX_SEGMENTS = 4000  # enough for a timeline; shortest ones are dropped beyond that (see _cap_segments)
MAX_MARKERS = 64  # non-stage markers kept (clock marks: two or three per window)
_R, _D = ord("R"), ord("D")
UNKNOWN = -1  # pid of "some task" in a blocker timeline: the gap of an inferred switch
INFERRED = 2  # column c of a switch row _infer_switches inserted (real switches: 0, or 1 for "+")
_UNKNOWN_STATE = ord("?")  # column b (prev_state) of an inserted switch
_WAKE_KINDS = (P.K_WAKING, P.K_WAKEUP, P.K_WAKEUP_NEW, P.K_MIGRATE)


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
    missing_events: dict = field(default_factory=dict)  # event -> why the window did not record it
    markers: list = field(default_factory=list)  # our non-stage trace_marker lines (clock marks, tracing/clock.py)
    irq_segments: list = field(default_factory=list)  # IRQ/softirq handlers on our threads (device join)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "pid": self.pid, "window": dict(self.window), "totals": dict(self.totals),
                "threads": [dict(t) for t in self.threads], "stages": [dict(s) for s in self.stages],
                "wakeup_latency": dict(self.wakeup_latency), "blockers": [dict(b) for b in self.blockers],
                "lost_events": self.lost_events, "segments": [dict(s) for s in self.segments],
                "events": self.events, "source": self.source, "latency": dict(self.latency),
                "missing_events": dict(self.missing_events), "markers": [dict(m) for m in self.markers],
                "irq_segments": [dict(q) for q in self.irq_segments]}


def empty_lost(cpus=()) -> dict:
    return {"total": 0, "per_cpu": {str(c): {"overrun": 0, "dropped_events": 0} for c in cpus},
            "unknown_cpus": []}


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
    n = len(events)
    ours = set(np.unique(events.tid[(events.tgid == pid) & (events.tid > 0)]).tolist()) | set(tids or ()) | {pid}
    ours_arr = np.fromiter(ours, dtype=np.int64)
    ev, inf = _infer_switches(events, ours_arr)
    kind, tid_c, tgid_c = ev.kind, ev.tid, ev.tgid

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

    # state[tid] = [state, since, cpu, wake_ts or None (OFF: its gap's end)]; unknown threads are absent.
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
    # Inferred switches of our threads (see the module docstring): counts and uncertain time per
    # thread; the table's inserted rows first, then what the state machine adds.
    n_inf: dict[int, int] = {}
    unc: dict[int, float] = {}
    win = (inf.point >= start_ts) & (inf.point <= end_ts)
    gap = np.minimum(inf.gap_end, end_ts) - inf.point
    for col in (inf.x, inf.y):
        m = win & np.isin(col, ours_arr)
        if m.any():
            u, inv = np.unique(col[m], return_inverse=True)
            for t, c_, g in zip(u.tolist(), np.bincount(inv).tolist(), np.bincount(inv, weights=gap[m]).tolist()):
                n_inf[t] = n_inf.get(t, 0) + c_
                unc[t] = unc.get(t, 0.0) + g
    ev_rows: dict[tuple, np.ndarray] = {}

    def last_evidence(t, cpu, row, since):
        """Time of the last event before `row` showing `t` current on `cpu` (or switching to it)."""
        if (t, cpu) not in ev_rows:
            ev_rows[(t, cpu)] = np.flatnonzero(((tid_c == t) | (is_sw & (ev.a == t))) & (cpu_c == cpu))
        r = ev_rows[(t, cpu)]
        j = np.searchsorted(r, row) - 1
        return max(float(ev.ts[r[j]]), since) if j >= 0 else since

    def inferred(t, dt):
        n_inf[t] = n_inf.get(t, 0) + 1
        unc[t] = unc.get(t, 0.0) + dt

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

    def close(t, s, now, off_as=RUNNABLE):
        """End t's current state `s` at `now`; OFF (after an inferred switch-out) becomes off_as."""
        if now > s[1]:
            segs.append((t, off_as if s[0] == OFF else s[0], s[1], now, s[2]))

    cols = zip(idx.tolist(), ev.ts[idx].tolist(), cpu_c[idx].tolist(), kind[idx].tolist(), tid_c[idx].tolist(),
               tgid_c[idx].tolist(), ev.a[idx].tolist(), ev.b[idx].tolist(), ev.c[idx].tolist())
    add_seg = segs.append
    for i, ts, cpu, k, cur, tg, a, b, c in cols:
        if k != P.K_SWITCH and cur in ours:
            s = state.get(cur)
            if s is None:
                # first sign of a thread that has not switched so far: it is the current task here
                state[cur] = [RUNNING, running_since(i, cpu, cur), cpu, None]
            elif s[0] != RUNNING or s[2] != cpu:
                # current here, yet not switched in here: a switch-in _infer_switches could not place
                # (events of other CPUs in between, clock skew); it ran from this evidence on
                close(cur, s, ts)
                state[cur] = [RUNNING, ts, cpu, None]
                inferred(cur, 0.0)
        if k == P.K_SWITCH:
            if cur in ours:  # switch-out of our thread
                s = state.get(cur)
                if s is None:
                    s = [RUNNING, first_on_cpu.get(cpu, start_ts), cpu, None]
                elif s[0] != RUNNING:  # (as above, for a switch-out)
                    close(cur, s, ts)
                    s = [RUNNING, ts, cpu, None]
                    inferred(cur, 0.0)
                if cur not in comm:
                    comm[cur] = ev.sa(i)
                if ts > s[1]:
                    add_seg((cur, s[0], s[1], ts, s[2]))
                if c == INFERRED:  # prev_state unknown: the next event of the thread tells
                    state[cur] = [OFF, ts, cpu, float(inf.gap_end[np.searchsorted(inf.row, i)])]
                elif b == _R:
                    cnt[cur][2] += 1
                    preempt[a] = preempt.get(a, 0) + 1  # comm resolved once per pid below
                    preempt_row.setdefault(a, i)
                    state[cur] = [RUNNABLE, ts, cpu, None]
                else:
                    cnt[cur][1] += 1
                    state[cur] = [BLOCKED_IO if b == _D else SLEEP, ts, cpu, None]
            if a in ours:  # switch-in of our thread
                s = state.get(a)
                if s is not None and s[0] == RUNNING:
                    # still running on another CPU: its switch-out there is missing and nothing
                    # later on that CPU showed it; it left after its last evidence there
                    t_last = last_evidence(a, s[2], i, s[1])
                    close(a, s, t_last)
                    s = [RUNNABLE, t_last, s[2], None]
                    inferred(a, ts - t_last)
                if s is not None:
                    if ts > s[1]:
                        add_seg((a, RUNNABLE if s[0] == OFF else s[0], s[1], ts, s[2]))
                    if s[0] == RUNNABLE and s[3] is not None and c != INFERRED:
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
            elif s[0] in (BLOCKED_IO, SLEEP, OFF):
                close(a, s, ts, off_as=SLEEP)  # woken: it was asleep, whatever the switch said
                state[a] = [RUNNABLE, ts, b, ts]
            elif s[0] == RUNNABLE and k != P.K_WAKING:
                s[2] = b  # sched_wakeup carries the CPU actually chosen
            elif s[0] == RUNNABLE and s[3] is not None:
                # woken again without a switch-in since the last wakeup: it ran and slept unseen
                # (both switches missing); where in that stretch is unknown
                close(a, s, ts)
                inferred(a, ts - s[1])
                state[a] = [RUNNABLE, ts, b, ts]
        elif k == P.K_MIGRATE:
            if a not in ours:
                continue
            cnt.setdefault(a, [0, 0, 0])[0] += 1
            migr_ts.append(ts)
            s = state.get(a)
            if s is not None and s[0] != RUNNING:
                close(a, s, ts)  # a thread moved while off-CPU without a wakeup was runnable
                state[a] = [RUNNABLE, ts, c, None] if s[0] == OFF else [s[0], ts, c, s[3]]
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
        if s[0] == OFF:  # nothing resolved an inferred switch-out: asleep or runnable is unknown
            unc[t] = unc.get(t, 0.0) + max(0.0, end_ts - max(s[1], s[3]))  # (its gap is counted)
        close(t, s, end_ts, off_as=SLEEP)

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
    pieces = _blocker_pieces(ev, inf, seg_tid, seg_st, seg_a, seg_b, seg_cpu)
    # a gap that ends in our thread's inferred switch-in went to its on-CPU time; the task before
    # may have held the CPU there (another of ours: not a blocker of itself, counted as its own)
    handed: dict[tuple, float] = {}
    m = win & np.isin(inf.y, ours_arr) & ~np.isin(inf.x, ours_arr) & (inf.x > 0)
    for r, x_, g in zip(inf.row[m].tolist(), inf.x[m].tolist(), gap[m].tolist()):
        handed[(ev.sa(r), x_)] = handed.get((ev.sa(r), x_), 0.0) + g
    blockers = _blockers(ev, pieces, {(ev.sb(preempt_row[p]), p): n_ for p, n_ in preempt.items()},
                         seg_tid[pieces.si], handed)
    # A runnable stretch crossed by an inferred gap between other tasks: the thread may have run
    # there unseen (and even gone to sleep), so from the gap on to the stretch's end (its next
    # event) its state is uncertain. (The gap after its own inferred switch-out is counted above.)
    crossed = np.flatnonzero((pieces.pid == UNKNOWN) & (ev.tid[pieces.row] != seg_tid[pieces.si]))
    if len(crossed):
        first = np.full(len(seg_tid), np.inf)  # an UNKNOWN piece starts at its gap (or its segment)
        start = np.maximum(seg_a[pieces.si[crossed]], inf.gap_start[np.searchsorted(inf.row, pieces.row[crossed])])
        np.minimum.at(first, pieces.si[crossed], start)
        hit = np.flatnonzero(np.isfinite(first))
        u_t, inv = np.unique(seg_tid[hit], return_inverse=True)
        for t, g in zip(u_t.tolist(), np.bincount(inv, weights=seg_b[hit] - first[hit]).tolist()):
            unc[t] = unc.get(t, 0.0) + g
    idle_wait = float(pieces.dur[pieces.pid == 0].sum())

    def per_tid(ivs):
        out: dict[int, float] = {}
        for iv in ivs:
            out[iv[0]] = out.get(iv[0], 0.0) + (iv[2] - iv[1])
        return out

    hard = per_tid([iv for iv in irq_iv if not iv[3] and iv[0] in ours])
    soft = per_tid([iv for iv in irq_iv if iv[3] and iv[0] in ours])
    recl = per_tid([iv for iv in reclaim_iv if iv[0] in ours])

    seen = np.array(sorted(set(seg_tid.tolist()) | {t for t in ours if any(cnt[t]) or t in hard or t in n_inf}),
                    dtype=np.int64)
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
        row["inferred_switches"], row["uncertain_s"] = n_inf.get(t, 0), unc.get(t, 0.0)
        threads.append(row)

    sum_keys = ("on_cpu_s", "runqueue_wait_s", "blocked_io_s", "sleep_s", "irq_s", "softirq_s", "reclaim_s",
                "migrations", "voluntary_switches", "involuntary_switches", "inferred_switches", "uncertain_s")
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
    other_marks = [{"ts_s": ts, "text": text.strip()} for ts, text in marks if not text.startswith(("B|", "E|"))]
    irq_segs = sorted(irq_all, key=lambda iv: iv[2] - iv[1], reverse=True)[:MAX_SEGMENTS]
    return Breakdown(
        mode="full", pid=pid,
        window={"start_s": start_ts, "end_s": end_ts, "duration_s": end_ts - start_ts},
        totals=totals, threads=threads, stages=stages_out, wakeup_latency=latency_summary(lat_us),
        blockers=blockers, lost_events=lost if lost is not None else empty_lost(sorted(first_on_cpu)),
        segments=segments, events=n, markers=other_marks[:MAX_MARKERS],
        irq_segments=[{"tid": t, "start_s": a, "end_s": b, "soft": bool(soft_)}
                      for t, a, b, soft_ in sorted(irq_segs, key=lambda iv: iv[1])])


@dataclass
class _Inferred:
    """Switches _infer_switches inserted, as columns sorted by row (in the new table): row, the
    switched-out (x) and switched-in (y) pid, the point chosen, and the gap: from the last event
    showing x current to the first showing y."""
    row: np.ndarray
    x: np.ndarray
    y: np.ndarray
    point: np.ndarray
    gap_start: np.ndarray
    gap_end: np.ndarray


_NO_INFERRED = _Inferred(*(np.zeros(0, dtype=dt) for dt in (np.int64, np.int64, np.int64, float, float, float)))


def _infer_switches(ev: P.Events, ours_arr: np.ndarray) -> "tuple[P.Events, _Inferred]":
    """The events with a switch row inserted wherever a CPU's current task changes without one
    (see "Missing switches" in the module docstring). Vectorised: one stable sort by CPU (radix),
    one comparison of neighbours; the table is copied only when something is missing."""
    n = len(ev)
    if n < 2:
        return ev, _NO_INFERRED
    order = np.argsort(ev.cpu.astype(np.int16), kind="stable")  # per CPU, time order kept
    cs = ev.cpu[order]
    before = ev.tid[order]
    after = np.where(ev.kind[order] == P.K_SWITCH, ev.a[order], before)
    k = np.flatnonzero((cs[1:] == cs[:-1]) & (after[:-1] != before[1:]))
    if not len(k):
        return ev, _NO_INFERRED
    i_row, j_row = order[k], order[k + 1]
    x, y = after[k], before[k + 1]
    point, pos = ev.ts[i_row], i_row + 1
    # A sleeping thread of ours is not switched in before it is woken (or moved) there: when that
    # happened inside the gap, the switch goes right after it (unless the task leaving is ours too:
    # then its last evidence rules, as for everyone).
    y_ours = np.isin(y, ours_arr) & ~np.isin(x, ours_arr)
    if y_ours.any():
        wk = np.flatnonzero(np.isin(ev.kind, _WAKE_KINDS) & np.isin(ev.a, ours_arr))
        if len(wk):
            big = n + 1
            keys = np.sort(ev.a[wk] * big + wk)  # by (pid, row)
            p = np.searchsorted(keys, y * big + j_row) - 1  # the pid's last wakeup before j_row
            kp = keys[np.maximum(p, 0)]
            w_row = kp % big
            hit = y_ours & (p >= 0) & (kp // big == y) & (w_row > i_row)
            pos = np.where(hit, w_row + 1, pos)
            point = np.where(hit, ev.ts[w_row], point)
    o = np.argsort(pos, kind="stable")
    pos, x, y, point, i_row, gap_end = pos[o], x[o], y[o], point[o], i_row[o], ev.ts[j_row[o]]
    gap_start = ev.ts[i_row]
    m = len(pos)
    ins = lambda col, v: np.insert(col, pos, v)  # noqa: E731
    src = ins(np.arange(n), -1 - np.arange(m))
    names: dict[int, str] = {}

    def comm(p_: int) -> str:
        """A pid's comm from any switch naming it (inserted rows carry none of their own)."""
        if not names:
            sw = np.flatnonzero(ev.kind == P.K_SWITCH)
            pids = np.concatenate((ev.tid[sw], ev.a[sw]))
            first = np.unique(pids, return_index=True)
            for q, fi in zip(first[0].tolist(), first[1].tolist()):
                r = int(sw[fi % len(sw)])
                names[q] = ev.sa(r) if fi < len(sw) else ev.sb(r)
            names[-1] = ""  # looked up: not again
        return names.get(p_, "")

    def sa(i):
        s_ = int(src[i])
        return ev.sa(s_) if s_ >= 0 else comm(int(x[-1 - s_]))

    def sb(i):
        s_ = int(src[i])
        return ev.sb(s_) if s_ >= 0 else comm(int(y[-1 - s_]))

    ev2 = P.Events(ins(ev.ts, point), ins(ev.cpu, ev.cpu[i_row]), ins(ev.kind, P.K_SWITCH), ins(ev.tid, x),
                   ins(ev.tgid, -1), ins(ev.a, y), ins(ev.b, _UNKNOWN_STATE), ins(ev.c, INFERRED), sa, sb)
    return ev2, _Inferred(pos + np.arange(m), x, y, point, gap_start, gap_end)


def _cpu_timelines(ev: P.Events, inf: _Inferred):
    """cpu -> (switch times, next pids, row indices, pid running before the first switch).
    An inferred switch x -> y becomes two steps: UNKNOWN from x's last evidence, y from its first:
    nobody is charged for the gap in between."""
    sw = np.flatnonzero(ev.kind == P.K_SWITCH)
    out = {}
    cpus = ev.cpu[sw]
    for c in np.unique(cpus).tolist():
        rows = sw[cpus == c]
        times, nxt = ev.ts[rows], ev.a[rows]
        syn = np.flatnonzero(ev.c[rows] == INFERRED)
        if len(syn):
            j = np.searchsorted(inf.row, rows[syn])
            times, nxt = times.copy(), nxt.copy()
            times[syn], nxt[syn] = inf.gap_start[j], UNKNOWN
            at = np.searchsorted(times, inf.gap_end[j], side="left")
            times, nxt, rows = np.insert(times, at, inf.gap_end[j]), np.insert(nxt, at, inf.y[j]), \
                np.insert(rows, at, rows[syn])
        out[c] = (times, nxt, rows, int(ev.tid[rows[0]]), int(rows[0]))
    return out


@dataclass
class _Pieces:
    """Stretches of another task running on the CPU where our thread sat runnable, as columns:
    segment index, pid (0 = the CPU was idle, UNKNOWN = the gap of an inferred switch), seconds,
    the task's comm (index into names), and the switch row that began it."""
    si: np.ndarray
    pid: np.ndarray
    dur: np.ndarray
    name: np.ndarray
    names: list
    row: np.ndarray


def _blocker_pieces(ev, inf, seg_tid, seg_st, seg_a, seg_b, seg_cpu) -> _Pieces:
    """Vectorised for the usual case of one task in the way per runnable segment (the next switch
    on that CPU is the one to us); a Python walk for the rest."""
    tl = _cpu_timelines(ev, inf)
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
        for lst, col, dt in zip((si_l, pid_l, row_l, nxt_l, dur_l), walk, _PIECE_TYPES):
            lst.append(np.array(col, dtype=dt))
    cat = [np.concatenate(x) if x else np.zeros(0, dtype=dt)
           for x, dt in zip((si_l, pid_l, row_l, nxt_l, dur_l), _PIECE_TYPES)]
    si, pid, row, is_next, dur = cat
    name, names = _comm_names(ev, pid, row, is_next)
    return _Pieces(si, pid, dur, name, names, row)


_PIECE_TYPES = (np.int64, np.int64, np.int64, bool, np.float64)


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


def _blockers(ev, pieces: _Pieces, preempt, owner: np.ndarray, handed: dict) -> list[dict]:
    """Per (comm, pid) other than idle: time it held our CPU while we were runnable, preemptions,
    and uncertain_s: the unattributed gaps of inferred switches from or to it in that time (it
    may have run there too: its time_s is a lower bound, time_s + uncertain_s an upper one as far
    as those gaps go). owner: the tid of each piece's runnable segment (never its own blocker);
    handed: (comm, pid) -> gaps it handed over to our thread by an inferred switch."""
    acc: dict[tuple, float] = {}
    known = pieces.pid > 0
    if known.any():
        nn = len(pieces.names) + 1
        uk, inv = np.unique(pieces.pid[known] * nn + pieces.name[known], return_inverse=True)
        for k_, total in zip(uk.tolist(), np.bincount(inv, weights=pieces.dur[known]).tolist()):
            p, ni = divmod(k_, nn)
            acc[(pieces.names[ni], p)] = total
    unc: dict[tuple, float] = dict(handed)
    gap = np.flatnonzero(pieces.pid == UNKNOWN)
    if len(gap):
        for side, name_of in ((ev.tid, ev.sa), (ev.a, ev.sb)):  # the tasks before and after the gap
            g = gap[side[pieces.row[gap]] != owner[gap]]
            r, d = pieces.row[g], pieces.dur[g]
            u, first, inv = np.unique(side[r], return_index=True, return_inverse=True)
            for p, fi, total in zip(u.tolist(), first.tolist(), np.bincount(inv, weights=d).tolist()):
                if p > 0:
                    key = (name_of(int(r[fi])), p)
                    unc[key] = unc.get(key, 0.0) + total
    keys = set(acc) | set(preempt) | set(unc)
    out = [{"comm": c, "pid": p, "time_s": acc.get((c, p), 0.0), "preemptions": preempt.get((c, p), 0),
            "uncertain_s": unc.get((c, p), 0.0)}
           for c, p in keys if p > 0]
    out.sort(key=lambda r: (-r["time_s"], -r["preemptions"]))
    return out


def _main_blocker_by_seg(pieces: _Pieces, wanted: np.ndarray) -> dict[int, str]:
    """For the segments in `wanted`: "comm:pid" of the task that held the CPU longest (not idle)."""
    m = (pieces.pid > 0) & np.isin(pieces.si, wanted)
    si, dur, pid, name = pieces.si[m], pieces.dur[m], pieces.pid[m], pieces.name[m]
    if not len(si):
        return {}
    o = np.lexsort((dur, si))  # by segment, then duration: the last of each segment wins
    last = o[np.append(si[o][1:] != si[o][:-1], True)]
    return {s_: f"{pieces.names[n_]}:{p_}" for s_, n_, p_ in zip(si[last].tolist(), name[last].tolist(),
                                                                  pid[last].tolist())}


def _held_by(pieces: _Pieces, wanted: np.ndarray) -> dict[int, dict]:
    """For the segments in `wanted` that several tasks held in turn: {"comm:pid": seconds} (the
    device view apportions a GPU gap's run-queue wait by it; one task: `blocker` says it all)."""
    m = (pieces.pid > 0) & np.isin(pieces.si, wanted)
    si = pieces.si[m]
    if not len(si):
        return {}
    u, counts = np.unique(si, return_counts=True)
    sel = np.isin(si, u[counts > 1])  # (the usual case, one task per stretch, costs no Python loop)
    out: dict[int, dict] = {}
    for s_, p_, n_, d_ in zip(si[sel].tolist(), pieces.pid[m][sel].tolist(), pieces.name[m][sel].tolist(),
                              pieces.dur[m][sel].tolist()):
        k = f"{pieces.names[n_]}:{p_}"
        out.setdefault(s_, {})[k] = out.get(s_, {}).get(k, 0.0) + d_
    return {k: v for k, v in out.items() if len(v) > 1}


def _cap_segments(seg_tid, seg_st, seg_a, seg_b, seg_cpu, pieces: _Pieces, cap: int = MAX_SEGMENTS) -> list[dict]:
    """Segments for the timeline. Beyond `cap`, only the longest `cap` are kept (short ones are
    invisible on a timeline anyway); output is sorted by start time."""
    keep = np.arange(len(seg_tid))
    if len(keep) > cap:
        keep = np.sort(np.argsort(seg_a - seg_b, kind="stable")[:cap])
    blk = _main_blocker_by_seg(pieces, keep)
    held = _held_by(pieces, keep)
    out = [{"tid": t, "state": STATE_NAMES[st], "start_s": a, "end_s": b, "cpu": c, "blocker": blk.get(i)}
           for i, t, st, a, b, c in zip(keep.tolist(), seg_tid[keep].tolist(), seg_st[keep].tolist(),
                                        seg_a[keep].tolist(), seg_b[keep].tolist(), seg_cpu[keep].tolist())]
    for j, i in enumerate(keep.tolist()):
        if i in held:
            out[j]["held_by"] = held[i]
    return out
