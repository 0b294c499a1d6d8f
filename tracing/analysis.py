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
First sound: the service writes the atrace counter `C|<tgid>|audio_segments|<n>` the moment the
engine hands segment n over (app/service.py). The first one splits the window in two slices,
`first_sound.before` [window start, first segment] and `.after` [first segment, window end], each
with the stage slices' columns plus idle_wait_s and its own blockers (time_s: the part of each
blocker's hold on our CPU that falls inside the slice), so "what delayed the first sound" is told
apart from "what made the rest slow". {} when no segment was marked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import parse as P

RUNNING, RUNNABLE, BLOCKED_IO, SLEEP = 0, 1, 2, 3  # thread states; index the two tuples below
OFF = 4  # off-CPU after an inferred switch-out: runnable or asleep, the next event decides
STATE_NAMES = ("running", "runnable", "blocked_io", "sleep")  # as segments carry them
_STATE_KEYS = ("on_cpu_s", "runqueue_wait_s", "blocked_io_s", "sleep_s")
MAX_SEGMENTS = 4000  # enough for a timeline; shortest ones are dropped beyond that (see _cap_segments)
MAX_MARKERS = 64  # non-stage markers kept (clock marks: two or three per window)
SEGMENT_COUNTER = "audio_segments"  # atrace counter the service writes per audio segment handed over
MAX_PHASE_BLOCKERS = 10  # blockers kept per first-sound slice (the top ones by time)
_R, _D = ord("R"), ord("D")
UNKNOWN = -1  # pid of "some task" in a blocker timeline: the gap of an inferred switch
INFERRED = 2  # column c of a switch row _infer_switches inserted (real switches: 0, or 1 for "+")
_UNKNOWN_STATE = ord("?")  # column b (prev_state) of an inserted switch


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
    first_sound: dict = field(default_factory=dict)  # {at_s, before, after} (see the docstring), or {}

    def to_dict(self) -> dict:
        return {"mode": self.mode, "pid": self.pid, "window": dict(self.window), "totals": dict(self.totals),
                "threads": [dict(t) for t in self.threads], "stages": [dict(s) for s in self.stages],
                "wakeup_latency": dict(self.wakeup_latency), "blockers": [dict(b) for b in self.blockers],
                "lost_events": self.lost_events, "segments": [dict(s) for s in self.segments],
                "events": self.events, "source": self.source, "latency": dict(self.latency),
                "missing_events": dict(self.missing_events), "markers": [dict(m) for m in self.markers],
                "irq_segments": [dict(q) for q in self.irq_segments], "first_sound": dict(self.first_sound)}


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
    ours = set(_distinct(events.tid[(events.tgid == pid) & (events.tid > 0)]).tolist()) | set(tids or ()) | {pid}
    ours_arr = np.fromiter(ours, dtype=np.int64)
    by_cpu = _by_cpu(events)
    # per row: our thread is the current task / the pid the event names (a wakeup, migration or
    # switch-in of ours); computed on the decoded table, the inserted rows' added after inference
    cur_ours = _member(events.tid, ours_arr)
    is_wk = (events.kind >= P.K_WAKING) & (events.kind <= P.K_MIGRATE)  # waking, wakeup(_new), migrate
    is_sw = events.kind == P.K_SWITCH
    a_ours = _member(events.a, ours_arr) & (is_wk | is_sw)
    ev, inf = _infer_switches(events, ours_arr, by_cpu, woken=np.flatnonzero(a_ours & is_wk))
    del is_wk

    # Select what the per-thread state machine must see; the rest (other tasks' wakeups, switches
    # not involving us) is only needed for blockers, which are computed per CPU afterwards.
    # Any event with our thread current is kept: it proves the thread was on that CPU then.
    sel = cur_ours | a_ours | ((events.kind == P.K_MARKER) & (events.tgid == pid))
    sel &= (events.ts >= start_ts) & (events.ts <= end_ts)
    ins_cur, ins_a = _member(inf.x, ours_arr), _member(inf.y, ours_arr)
    idx, loc = ev.rows(np.flatnonzero(sel), (ins_cur | ins_a) & (inf.point >= start_ts) & (inf.point <= end_ts),
                       loc=True)
    del sel
    cur_in, a_in = ev.take(cur_ours, ins_cur, loc), ev.take(a_ours, ins_a, loc)
    kind_idx = ev.col("kind", loc=loc)
    del cur_ours, a_ours, loc

    # Per-CPU first event time: before it nothing is known about that CPU (overruns eat the start).
    # (Inserted switches never come first on their CPU: the first rows are the original ones.)
    first_on_cpu: dict[int, float] = {}
    if n:
        order, _, starts = by_cpu
        first_i = order[starts]
        first_on_cpu = {int(cc): max(float(t_), start_ts)
                        for cc, t_ in zip(events.cpu[first_i].tolist(), events.ts[first_i].tolist())}
        del order, starts
    del by_cpu

    irq_iv: list[tuple] = []  # (tid, start, end, is_soft)
    reclaim_iv: list[tuple] = []
    irq_open: dict[int, tuple] = {}  # cpu -> (tid, start)
    soft_open: dict[int, list] = {}  # cpu -> [tid, start, nested hard-irq time]
    reclaim_open: dict[int, float] = {}
    marks: list[tuple] = []  # (ts, tgid, text)
    stage_stack: dict[int, list] = {}
    stages_out: list[dict] = []

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
            dec = np.flatnonzero(((events.tid == t) | (is_sw & (events.a == t))) & (events.cpu == cpu))
            ev_rows[(t, cpu)] = ev.rows(dec, ((inf.x == t) | (inf.y == t)) & (ev.ins.get("cpu", inf.x) == cpu))
        r = ev_rows[(t, cpu)]
        j = np.searchsorted(r, row) - 1
        return max(float(ev.value("ts", r[j])), since) if j >= 0 else since

    def running_since(row, cpu, tid):
        """Start of the stretch in which `tid` is the current task at `row` without a switch
        to it in the window: after the CPU's last earlier event with another current task,
        else from the CPU's first event (or the window start)."""
        r = ev.last_other(row, cpu, tid)
        return max(float(ev.value("ts", r)), start_ts) if r >= 0 else first_on_cpu.get(cpu, start_ts)

    tm = _thread_machine(ev, inf, np.sort(ours_arr), idx, cur_in, a_in, kind_idx, first_on_cpu, start_ts,
                         end_ts, running_since, last_evidence)
    del cur_in, a_in
    for t, dt in tm.inferred:
        n_inf[t] = n_inf.get(t, 0) + 1
        unc[t] = unc.get(t, 0.0) + dt
    for t, dt in tm.unresolved:  # inferred switch-outs nothing resolved (their gap is counted)
        unc[t] = unc.get(t, 0.0) + dt
    comm, preempt, preempt_row, lat_us, migr_ts = tm.comm, tm.preempt, tm.preempt_row, tm.lat_us, tm.migr_ts
    cnt = {t: [0, 0, 0] for t in ours}  # migrations, voluntary, involuntary
    for t, c3 in tm.counts.items():
        cnt[t] = c3

    # IRQ, softirq, reclaim and marker events are few: their own pass, in time order.
    rest = idx[(kind_idx >= P.K_IRQ_ENTRY) & (kind_idx != P.K_KSWAPD_WAKE)]
    loc = ev.locate(rest)
    cols = (ev.col(c_, loc=loc).tolist() for c_ in ("ts", "cpu", "kind", "tid"))
    for i, ts, cpu, k, cur in zip(rest.tolist(), *cols):
        if k == P.K_IRQ_ENTRY:
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

    # Stages from atrace markers of our tgid.
    seg_marks = []
    for ts, text in marks:
        parts = text.strip().split("|")
        if len(parts) >= 4 and parts[0] == "C" and parts[1] == str(pid) and parts[2] == SEGMENT_COUNTER:
            seg_marks.append(ts)
            continue
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
    seg_tid, seg_st, seg_a, seg_b, seg_cpu = tm.segments
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
    crossed = np.flatnonzero((pieces.pid == UNKNOWN) & (ev.col("tid", pieces.row) != seg_tid[pieces.si]))
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

    ours_sorted = np.sort(ours_arr)
    present = np.zeros(len(ours_sorted), dtype=bool)
    present[np.searchsorted(ours_sorted, seg_tid)] = True  # (segments are of our threads only)
    present |= [any(cnt[t]) or t in hard or t in n_inf for t in ours_sorted.tolist()]
    seen = ours_sorted[present]
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
    recl_ours = [iv for iv in reclaim_iv if iv[0] in ours]
    for sg in stages_out:
        _slice_into(sg, sg["start_s"], sg["end_s"], seg_st, seg_a, seg_b, irq_all, recl_ours, migr_ts)
    first_sound = {}
    if seg_marks:  # the first segment handed over splits the window (see the docstring)
        t1 = min(max(min(seg_marks), start_ts), end_ts)
        first_sound = {"at_s": t1, "before": _phase(start_ts, t1, seg_st, seg_a, seg_b, irq_all, recl_ours,
                                                    migr_ts, pieces),
                       "after": _phase(t1, end_ts, seg_st, seg_a, seg_b, irq_all, recl_ours, migr_ts, pieces)}

    segments = _cap_segments(seg_tid, seg_st, seg_a, seg_b, seg_cpu, pieces)
    other_marks = [{"ts_s": ts, "text": text.strip()} for ts, text in marks
                   if not text.startswith(("B|", "E|", f"C|{pid}|{SEGMENT_COUNTER}|"))]
    irq_segs = sorted(irq_all, key=lambda iv: iv[2] - iv[1], reverse=True)[:MAX_SEGMENTS]
    return Breakdown(
        mode="full", pid=pid,
        window={"start_s": start_ts, "end_s": end_ts, "duration_s": end_ts - start_ts},
        totals=totals, threads=threads, stages=stages_out, wakeup_latency=latency_summary(lat_us),
        blockers=blockers, lost_events=lost if lost is not None else empty_lost(sorted(first_on_cpu)),
        segments=segments, events=n, markers=other_marks[:MAX_MARKERS],
        irq_segments=[{"tid": t, "start_s": a, "end_s": b, "soft": bool(soft_)}
                      for t, a, b, soft_ in sorted(irq_segs, key=lambda iv: iv[1])], first_sound=first_sound)


def _slice_into(sg: dict, a0: float, b0: float, seg_st, seg_a, seg_b, irq_all, reclaim_ours, migr_ts) -> dict:
    """The stage-slice columns of [a0, b0] into sg: the overlap of every interval with it."""
    sg["wall_s"] = b0 - a0
    ov = np.clip(np.minimum(seg_b, b0) - np.maximum(seg_a, a0), 0, None)
    by_state = np.bincount(seg_st, weights=ov, minlength=4)
    for st, key in enumerate(_STATE_KEYS):
        sg[key] = float(by_state[st])
    sg["irq_s"] = sum(max(0.0, min(e, b0) - max(s, a0)) for _, s, e, soft_ in irq_all if not soft_)
    sg["softirq_s"] = sum(max(0.0, min(e, b0) - max(s, a0)) for _, s, e, soft_ in irq_all if soft_)
    sg["reclaim_s"] = sum(max(0.0, min(e, b0) - max(s, a0)) for _, s, e in reclaim_ours)
    sg["migrations"] = sum(1 for t in migr_ts if a0 <= t <= b0)
    return sg


def _phase(a0: float, b0: float, seg_st, seg_a, seg_b, irq_all, reclaim_ours, migr_ts, pieces: "_Pieces") -> dict:
    """A first-sound slice: the stage columns of [a0, b0], idle_wait_s and the blockers whose hold
    on our CPU falls inside it (each piece clipped to the slice)."""
    ph = _slice_into({"start_s": a0, "end_s": b0}, a0, b0, seg_st, seg_a, seg_b, irq_all, reclaim_ours, migr_ts)
    inside = np.clip(np.minimum(pieces.start + pieces.dur, b0) - np.maximum(pieces.start, a0), 0, None)
    ph["idle_wait_s"] = float(inside[pieces.pid == 0].sum())
    acc: dict[tuple, float] = {}
    for p_, ni, d in zip(pieces.pid.tolist(), pieces.name.tolist(), inside.tolist()):
        if p_ > 0 and d > 0:
            acc[(pieces.names[ni], p_)] = acc.get((pieces.names[ni], p_), 0.0) + d
    top = sorted(acc.items(), key=lambda kv: -kv[1])[:MAX_PHASE_BLOCKERS]
    ph["blockers"] = [{"comm": c, "pid": p_, "time_s": t} for (c, p_), t in top]
    return ph


# The thread state machine, vectorised. Every event of one of our threads is an item of that
# thread (a switch between two of ours is two items: out, then in). What an item does to the
# thread's state [state, since, cpu, wake] depends on the state before it only in a few ways,
# so each part of the state is computed in turn over all items at once: first the state kind
# (switches and "current" evidence set it outright; wakeups and migrations follow a rule on the
# kind before them), then which items set the wakeup time, the CPU, the start time; between
# setters each part is carried forward (a running maximum of setter positions). The segments,
# counts and latencies then come from each item and the state before it, exactly as an
# event-by-event walk gives them (tests/test_analysis_identity.py holds the walk as the oracle).
_NONE = 5  # no state yet (the thread has shown no sign so far)
_E1, _OUT, _IN, _WAKE, _MIG = 0, 1, 2, 3, 4  # item types: current on a CPU, switch-out, switch-in, ...


@dataclass
class _Machine:
    segments: tuple  # (tid, state, start, end, cpu) columns, in the walk's order
    counts: dict  # tid -> [migrations, voluntary, involuntary]
    comm: dict
    preempt: dict  # pid -> times it preempted us (first preemption first)
    preempt_row: dict  # pid -> the row of its first preemption
    lat_us: np.ndarray
    migr_ts: list
    inferred: list  # (tid, uncertain seconds) per switch the walk inferred, in order
    unresolved: list  # (tid, uncertain seconds) of inferred switch-outs open at the window end


def _distinct(pids: np.ndarray) -> np.ndarray:
    """np.unique of a pid column (pids are below 2^22: a table instead of a sort)."""
    if len(pids) and 0 <= int(pids.min()) and int(pids.max()) < 1 << 23:
        seen = np.zeros(int(pids.max()) + 1, dtype=bool)
        seen[pids] = True
        return np.flatnonzero(seen)
    return np.unique(pids)


def _member(col: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """np.isin for a few pids over millions of rows: a comparison or two, else one lookup table
    (the pids' range is small)."""
    if 0 < len(ours) <= 2:
        out = col == ours[0]
        if len(ours) == 2:
            out |= col == ours[1]
        return out
    if len(ours) and int(ours.max()) - int(ours.min()) < 1 << 22:
        return np.isin(col, ours, kind="table")
    return np.isin(col, ours)


def _last(setter: np.ndarray, tstart: np.ndarray) -> np.ndarray:
    """Per item: the index of the last setter at or before it within its thread, else -1 (in
    tstart's integer type: int32 below 2^31 items, half the memory of int64)."""
    src = np.arange(len(setter), dtype=tstart.dtype)
    src[~setter] = -1
    np.maximum.accumulate(src, out=src)
    src[src < tstart] = -1
    return src


def _carry(setter: np.ndarray, value: np.ndarray, tstart: np.ndarray, default) -> np.ndarray:
    """Per item: the value of the last setter at or before it within its thread, else default."""
    src = _last(setter, tstart)
    out = value[src]
    out[src < 0] = default
    return out


def _before(after: np.ndarray, first: np.ndarray, default) -> np.ndarray:
    """Per item: the value after the previous item of its thread (default for a thread's first)."""
    out = np.empty_like(after)
    out[1:] = after[:-1]
    out[first] = default
    return out


def _thread_machine(ev: "_Table", inf, ours: np.ndarray, idx, cur_in, a_in, kind_in, first_on_cpu, start_ts, end_ts,
                    running_since, last_evidence) -> _Machine:
    """The per-thread walk over the selected rows `idx` (cur_in / a_in: the current task / the
    event's pid is ours there; kind_in: the event kind), vectorised (see above). ours: our tids, sorted.
    Memory: positions are int32 (below 2^31 items), flags int8/bool, and each column is freed
    once consumed: the peak is what makes a cold analysis slow (fresh pages fault in)."""
    # items in walk order (by row; in a row the current task's item before the named pid's)
    cnt = cur_in.view(np.int8) + a_in.view(np.int8)
    row = np.repeat(idx, cnt)
    named = np.repeat(a_in, cnt)
    both = np.flatnonzero(cur_in & a_in)
    if len(both):  # a switch between two of ours: the one leaving first
        named[np.cumsum(cnt, dtype=np.int64)[both] - 2] = False
    k = np.repeat(kind_in.astype(np.int8), cnt)
    del cnt, both
    it = np.int32 if len(row) < (1 << 31) - 1 else np.int64
    key = np.arange(len(row), dtype=it)  # walk order
    asc = True  # rows ascend, unless sorted by thread below
    loc = ev.locate(row, ascending=asc)
    thr = ev.col("tid", loc=loc)
    nm = np.flatnonzero(named)
    thr[nm] = ev.col("a", loc=ev.locate(row[nm], ascending=True))
    sw = k == P.K_SWITCH
    typ = np.where(sw, np.int8(_OUT), np.int8(_E1))
    typ[nm] = np.where(sw[nm], np.int8(_IN), np.where(k[nm] == P.K_MIGRATE, np.int8(_MIG), np.int8(_WAKE)))
    del named, nm, sw
    if len(ours) > 1:
        ti = np.searchsorted(ours, thr)
        if len(ti) and (ti != ti[0]).any():  # several threads: walk order within each
            o = np.argsort(ti.astype(np.int16) if len(ours) < 1 << 15 else ti, kind="stable")
            row, k, thr, typ, key = row[o], k[o], thr[o], typ[o], key[o]
            del o
            loc, asc = None, False
        del ti
    cpu = ev.col("cpu", row, loc)
    del loc
    first = np.ones(len(row), dtype=bool)
    first[1:] = thr[1:] != thr[:-1]
    # Showing the thread current on the CPU its previous item switched it in on, or showed it
    # current on, changes nothing: such items are dropped before the work.
    stay = np.zeros(len(row), dtype=bool)
    stay[1:] = (typ[1:] == _E1) & (typ[:-1] <= _IN) & (typ[:-1] != _OUT) & (cpu[1:] == cpu[:-1])
    stay &= ~first
    if stay.any():
        kept = np.flatnonzero(~stay)
        row, k, thr, typ, key, cpu, first = (x[kept] for x in (row, k, thr, typ, key, cpu, first))
        del kept
    del stay
    m = len(row)
    loc = ev.locate(row, ascending=asc)
    ts, b, c = (ev.col(name, loc=loc) for name in ("ts", "b", "c"))
    del loc
    starts = np.flatnonzero(first)
    tstart = np.repeat(starts.astype(it), np.diff(np.append(starts, m)))
    is_e1, is_out, is_in, is_wake, is_mig = (typ == _E1), (typ == _OUT), (typ == _IN), (typ == _WAKE), (typ == _MIG)
    reset = typ <= _IN
    del typ
    c_inf = c == INFERRED
    out_inf = is_out & c_inf
    b_r = b == _R
    # 1. the state kind after each item
    k_reset = np.where(is_out, np.where(c_inf, np.int8(OFF), np.where(b_r, np.int8(RUNNABLE), np.where(
        b == _D, np.int8(BLOCKED_IO), np.int8(SLEEP)))), np.int8(RUNNING))
    cpu_val = np.where(reset, cpu, np.where(is_wake, b, c))  # what sets the CPU, where something does
    del b, c
    lr = _last(reset, tstart)
    base = np.where(lr >= 0, k_reset[lr], np.int8(_NONE))
    n_wake = np.cumsum(is_wake, dtype=it)
    woken = n_wake > np.where(lr >= 0, n_wake[lr], n_wake[tstart] - is_wake[tstart])  # since the reset
    del lr, n_wake
    k_after = np.where(reset, k_reset, np.where(base == RUNNING, np.int8(RUNNING),
                                                np.where(woken | (base == OFF), np.int8(RUNNABLE), base)))
    del base, woken, k_reset
    prev = _before(k_after, first, _NONE)
    asleep = (prev >= BLOCKED_IO)  # BLOCKED_IO, SLEEP, OFF or _NONE: a wakeup starts a new wait
    off_cpu = (prev != _NONE) & (prev != RUNNING)
    waking = k == P.K_WAKING

    # 2. whether a wakeup time is set, and its value
    set_w = reset | (is_wake & asleep) | (is_mig & (prev == OFF))
    has_w = _before(_carry(set_w, is_wake | out_inf, tstart, False), first, False)
    rewoken = is_wake & (prev == RUNNABLE) & waking & has_w  # woken twice without a switch-in
    w_val = np.where(is_wake, ts, np.nan)
    oi = np.flatnonzero(out_inf)
    w_val[oi] = inf.gap_end[np.searchsorted(inf.row, row[oi])]
    wake_after = _carry(set_w | rewoken, w_val, tstart, np.nan)
    del w_val, oi, out_inf

    # 3. the CPU
    set_c = reset | (is_wake & (asleep | ((prev == RUNNABLE) & (~waking | has_w)))) | (is_mig & off_cpu)
    cpu_after = _carry(set_c, cpu_val, tstart, -1)
    del set_c, set_w, has_w, waking, cpu_val
    cpu_prev = _before(cpu_after, first, -1)

    # 4. the start of the state
    stay = is_e1 & (prev == RUNNING) & (cpu_prev == cpu)  # (what the drop above left)
    set_s = (reset & ~stay) | (is_mig & off_cpu) | (is_wake & (asleep | rewoken))
    s_val = ts.copy()
    for j in np.flatnonzero(is_e1 & (prev == _NONE)).tolist():
        s_val[j] = running_since(int(row[j]), int(cpu[j]), int(thr[j]))
    since_after = _carry(set_s, s_val, tstart, np.nan)
    since_prev = _before(since_after, first, np.nan)
    del set_s, s_val, reset

    # a switch-in of a thread still running elsewhere: it left after its last evidence there
    gone = np.flatnonzero(is_in & (prev == RUNNING))
    t_last = np.array([last_evidence(int(thr[j]), int(cpu_prev[j]), int(row[j]), float(since_prev[j]))
                       for j in gone.tolist()], dtype=np.float64)

    # Segments. (0) closing the state before the item, at the item's time (OFF: runnable, or
    # asleep when a wakeup closes it; a switch-in of a thread running elsewhere: its run, to its
    # last evidence); (1) the second segment of a switch (out: the run that ends; in: the wait
    # that ends); (2) every state still open at the window end. The few switch-ins of a thread
    # still running elsewhere (`gone`) and switch-outs of one that was not running are patched in.
    later = ts > since_prev
    close = (is_e1 & (prev != _NONE) & ~stay) | ((is_out | is_mig) & off_cpu) \
        | (is_wake & ((asleep & (prev != _NONE)) | rewoken))
    close[gone] = True
    c0 = close & later
    c0[gone] = t_last > since_prev[gone]
    seg0 = np.flatnonzero(c0)
    del close, c0
    end0 = ts[seg0]
    st0 = prev[seg0]
    is_g0 = np.isin(seg0, gone)
    end0[is_g0] = t_last[np.searchsorted(gone, seg0[is_g0])]
    st0 = np.where(st0 == OFF, np.where(is_wake[seg0], np.int8(SLEEP), np.int8(RUNNABLE)), st0)
    j_new = np.flatnonzero(is_out & (prev == _NONE))  # running since the CPU's first event
    s1_new = np.array([first_on_cpu.get(x, start_ts) for x in cpu[j_new].tolist()], dtype=np.float64)
    c1 = later  # ts > s1, with s1: since_prev, t_last where gone, the first event's time (j_new), inf
    c1[gone] = ts[gone] > t_last
    c1[j_new] = ts[j_new] > s1_new
    c1[is_out & off_cpu] = False  # switched out where it was not running: the run was inferred
    seg1 = np.flatnonzero(c1 & (is_out | (is_in & (prev != _NONE))))
    del c1, later
    s1 = since_prev[seg1]
    cp1 = cpu_prev[seg1]
    at_g = np.isin(seg1, gone)
    s1[at_g] = t_last[np.searchsorted(gone, seg1[at_g])]
    at_n = np.isin(seg1, j_new)
    s1[at_n] = s1_new[np.searchsorted(j_new, seg1[at_n])]
    cp1[at_n] = cpu[seg1[at_n]]
    st1 = np.where(is_out[seg1], np.int8(RUNNING), np.where(at_g, np.int8(RUNNABLE), prev[seg1]))
    st1 = np.where(st1 == OFF, np.where(is_wake[seg1], np.int8(SLEEP), np.int8(RUNNABLE)), st1)
    last = np.append(starts[1:] - 1, m - 1) if m else np.zeros(0, dtype=np.int64)
    known = last[k_after[last] != _NONE]
    with_state = np.flatnonzero(k_after != _NONE)  # the walk's state dict: in order of first state
    known = known[np.argsort(key[with_state[np.searchsorted(with_state, tstart[known])]], kind="stable")]
    del with_state, tstart
    end_since, end_w = since_after[known], wake_after[known]
    seg2 = np.flatnonzero(end_ts > end_since)
    st2 = np.where(k_after[known] == OFF, SLEEP, k_after[known])
    seg_key = np.concatenate((key[seg0].astype(np.int64) * 2, key[seg1].astype(np.int64) * 2 + 1,
                              4 * (len(ev) + 1) + seg2))
    so = np.argsort(seg_key, kind="stable")
    del seg_key
    at = np.empty(len(so), dtype=np.intp)  # where each segment goes: the three kinds in walk order
    at[so] = np.arange(len(so))
    bounds = np.cumsum([0, len(seg0), len(seg1), len(seg2)])

    def place(parts, dt):
        out = np.empty(len(so), dtype=dt)
        for part, lo, hi in zip(parts, bounds[:-1], bounds[1:]):
            out[at[lo:hi]] = part
        return out
    segments = (place((thr[seg0], thr[seg1], thr[known][seg2]), np.int64),
                place((st0, st1, st2[seg2]), np.int64),
                place((since_prev[seg0], s1, end_since[seg2]), np.float64),
                place((end0, ts[seg1], end_ts), np.float64),
                place((cpu_prev[seg0], cp1, cpu_after[known][seg2]), np.int64))
    del so, at, seg0, seg1, st0, st1, s1, cp1, end0

    # Counts, comms, preemptions, wakeup latency
    out_real = is_out & ~c_inf
    invol = out_real & b_r
    per = [np.bincount(np.searchsorted(ours, thr[mask]), minlength=len(ours)).tolist()
           for mask in (is_mig, out_real & ~invol, invol)]
    counts = {t: list(c3) for t, c3 in zip(ours.tolist(), zip(*per))}
    comm: dict[int, str] = {}
    cand = np.flatnonzero(is_out | is_in | (is_wake & (prev == _NONE) & (k == P.K_WAKEUP_NEW)))
    if len(cand):
        for j in cand[np.concatenate(([True], thr[cand][1:] != thr[cand][:-1]))].tolist():
            r = int(row[j])
            comm[int(thr[j])] = ev.sb(r) if is_in[j] else ev.sa(r)
    pre = np.flatnonzero(invol)
    pre = pre[np.argsort(key[pre], kind="stable")]
    preempt: dict[int, int] = {}
    preempt_row: dict[int, int] = {}
    if len(pre):
        u, fi, cnt_ = np.unique(ev.col("a", row[pre]), return_index=True, return_counts=True)
        for j in np.argsort(fi, kind="stable").tolist():
            preempt[int(u[j])] = int(cnt_[j])
            preempt_row[int(u[j])] = int(row[pre[fi[j]]])
    lat = np.flatnonzero(is_in & (prev == RUNNABLE) & ~c_inf)  # (never a thread's first item)
    wake_prev = wake_after[lat - 1]
    has = ~np.isnan(wake_prev)
    lat_us = (ts[lat[has]] - wake_prev[has]) * 1e6
    migr = np.flatnonzero(is_mig)
    migr_ts = ts[migr[np.argsort(key[migr], kind="stable")]].tolist()

    # Inferred switches the walk adds, in walk order: a sign of running where not switched in,
    # a switch-out of a thread not running, a switch-in of one still running, a second wakeup.
    is_gone = np.zeros(m, dtype=bool)
    is_gone[gone] = True
    infm = np.flatnonzero((is_e1 & (prev != _NONE) & ~stay) | (is_out & off_cpu) | is_gone | rewoken)
    infm = infm[np.argsort(key[infm], kind="stable")]
    t_last_at = since_prev[infm]
    g_at = is_gone[infm]
    t_last_at[g_at] = t_last[np.searchsorted(gone, infm[g_at])]
    inf_dt = np.where(g_at, ts[infm] - t_last_at, np.where(rewoken[infm], ts[infm] - since_prev[infm], 0.0))
    inferred = list(zip(thr[infm].tolist(), inf_dt.tolist()))
    unresolved = [(t, max(0.0, end_ts - max(s_, w_)))
                  for t, kk, s_, w_ in zip(thr[known].tolist(), k_after[known].tolist(), end_since.tolist(),
                                           end_w.tolist()) if kk == OFF]
    return _Machine(segments, counts, comm, preempt, preempt_row, lat_us, migr_ts, inferred, unresolved)


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


def _by_cpu(ev: P.Events):
    """(rows grouped by CPU, time order kept within each: a radix sort; the CPUs' column in that
    order; where each CPU's rows start)."""
    lo, hi = (int(ev.cpu.min()), int(ev.cpu.max())) if len(ev) else (0, 0)
    # (CPU numbers fit 16 bits, NR_CPUS <= 8192: a radix sort, of one byte below 256 CPUs)
    cpu = ev.cpu.astype(np.uint8 if 0 <= lo and hi < 1 << 8 else np.int16)
    order = np.argsort(cpu, kind="stable")
    cs = cpu[order] if 0 <= lo and hi < 1 << 15 else ev.cpu[order]
    starts = np.flatnonzero(np.concatenate(([True], cs[1:] != cs[:-1]))) if len(cs) else np.zeros(0, np.int64)
    return order, cs, starts


def _infer_switches(ev: P.Events, ours_arr: np.ndarray, by_cpu=None, woken=None) -> "tuple[_Table, _Inferred]":
    """The events with a switch row inserted wherever a CPU's current task changes without one
    (see "Missing switches" in the module docstring), as a _Table (the decoded columns are not
    copied). Vectorised: one stable sort by CPU (radix, or by_cpu: _by_cpu(ev) when the caller
    has it), one comparison of neighbours. woken: the rows of wakeups and migrations of our
    threads, when the caller has them."""
    n = len(ev)
    if n < 2:
        return _Table(ev, _NO_INFERRED), _NO_INFERRED
    order, cs, _ = by_cpu or _by_cpu(ev)
    before = ev.tid[order]
    after = np.where(ev.kind == P.K_SWITCH, ev.a, ev.tid)[order]  # the current task after each row
    k = np.flatnonzero((cs[1:] == cs[:-1]) & (after[:-1] != before[1:]))
    if not len(k):
        return _Table(ev, _NO_INFERRED), _NO_INFERRED
    i_row, j_row = order[k], order[k + 1]
    x, y = after[k], before[k + 1]
    point, pos = ev.ts[i_row], i_row + 1
    # A sleeping thread of ours is not switched in before it is woken (or moved) there: when that
    # happened inside the gap, the switch goes right after it (unless the task leaving is ours too:
    # then its last evidence rules, as for everyone).
    y_ours = np.isin(y, ours_arr) & ~np.isin(x, ours_arr)
    if y_ours.any():
        wk = woken if woken is not None else \
            np.flatnonzero((ev.kind >= P.K_WAKING) & (ev.kind <= P.K_MIGRATE) & _member(ev.a, ours_arr))
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
    inf = _Inferred(pos + np.arange(len(pos)), x, y, point, ev.ts[i_row], gap_end)
    return _Table(ev, inf, {"ts": point, "cpu": ev.cpu[i_row], "kind": np.full(len(pos), P.K_SWITCH),
                            "tid": x, "tgid": np.full(len(pos), -1), "a": y, "b": np.full(len(pos), _UNKNOWN_STATE),
                            "c": np.full(len(pos), INFERRED)}), inf


def _steps(n: int, at: np.ndarray) -> np.ndarray:
    """Per position 0..n-1: how many of the positions `at` are at or before it."""
    return np.cumsum(np.bincount(at, minlength=n + 1)[:n])


class _Table:
    """The decoded events with the inferred switches inserted (row r: the j-th inserted switch
    where inf.row[j] == r, else decoded row r - (switches inserted before it)), read by rows
    without a copy of the decoded columns: a window misses tens of switches among millions of
    events, and a copy of its 8 columns would be most of the analysis' memory. col(name, rows)
    reads a column at rows; locate(rows) once for several columns at the same rows."""

    def __init__(self, ev: P.Events, inf: _Inferred, ins: dict | None = None):
        self.ev, self.inf, self.ins = ev, inf, ins or {}
        self.pos = inf.row - np.arange(len(inf.row))  # where each went in, in decoded rows
        self._names: dict[int, str] = {}
        self._sw: list = []

    def __len__(self) -> int:
        return len(self.ev) + len(self.inf.row)

    def locate(self, rows, ascending: bool = False) -> tuple:
        """(decoded row of each of `rows`, positions in `rows` of inserted ones, which inserted).
        ascending: rows never decrease (then the few inserted rows are looked up in them, instead
        of every row among the inserted ones)."""
        rows = np.asarray(rows)
        ins = self.inf.row
        if not len(ins) or not len(rows):
            return rows, None, None
        if not ascending:
            j = np.searchsorted(ins, rows)
            hit = np.flatnonzero(ins[np.minimum(j, len(ins) - 1)] == rows)
            src = rows - j
            j = j[hit]
        else:
            lo, hi = np.searchsorted(rows, ins), np.searchsorted(rows, ins, side="right")
            src = rows - _steps(len(rows), hi)  # less the inserted rows before each
            n_at = hi - lo  # (a row is listed twice for a switch between two of ours)
            j = np.repeat(np.arange(len(ins)), n_at)
            hit = np.repeat(lo, n_at) + (np.arange(len(j)) - np.repeat(np.cumsum(n_at) - n_at, n_at))
        if len(hit):
            src[hit] = 0  # (an inserted row may follow the last decoded one)
        return src, hit, j

    def col(self, name: str, rows=None, loc=None) -> np.ndarray:
        """Column `name` at `rows` (or at loc = locate(rows))."""
        return self.take(getattr(self.ev, name), self.ins.get(name), loc or self.locate(rows))

    @staticmethod
    def take(dec: np.ndarray, ins, loc) -> np.ndarray:
        """Values at located rows: from `dec` (per decoded row) or `ins` (per inserted switch)."""
        src, hit, j = loc
        out = dec[src]
        if hit is not None and len(hit):
            out[hit] = ins[j]
        return out

    def value(self, name: str, row: int):
        return self.col(name, np.array([row]))[0]

    def rows(self, dec_rows: np.ndarray, ins_mask=None, loc: bool = False):
        """Sorted rows of this table: decoded rows `dec_rows` (sorted) and inserted ones where
        ins_mask (all when None); with loc=True, (rows, locate(rows))."""
        ins = self.inf.row
        if not len(ins):
            return (dec_rows, (dec_rows, None, None)) if loc else dec_rows
        new = dec_rows + _steps(len(dec_rows), np.searchsorted(dec_rows, self.pos))  # the inserted before each
        j = np.arange(len(ins)) if ins_mask is None else np.flatnonzero(ins_mask)
        at = np.searchsorted(new, ins[j])
        out = np.insert(new, at, ins[j]) if len(j) else new
        if not loc:
            return out
        return out, (np.insert(dec_rows, at, 0), at + np.arange(len(j)), j)

    def switch_rows(self) -> np.ndarray:
        """The decoded rows of switches (kept: the comm look-ups and the CPU timelines use them)."""
        if not self._sw:
            sw = np.flatnonzero(self.ev.kind == P.K_SWITCH)
            self._sw.extend((sw, self.ev.tid[sw], self.ev.a[sw]))
        return self._sw[0]

    def last_other(self, row: int, cpu: int, tid: int) -> int:
        """The last row before `row` on `cpu` whose current task is not `tid` (-1: none): the
        decoded rows scanned backwards in growing chunks (the answer is usually a few rows back)
        and the inserted ones, whichever is later."""
        ev, ins = self.ev, self.inf.row
        best = -1
        if len(ins):
            c = np.flatnonzero((ins < row) & (self.ins["cpu"] == cpu) & (self.inf.x != tid))
            best = int(ins[c[-1]]) if len(c) else -1
        hi, step = row - int(np.searchsorted(ins, row)), 64  # decoded rows [0, hi) come before `row`
        while hi > 0:
            lo = max(0, hi - step)
            other = np.flatnonzero((ev.cpu[lo:hi] == cpu) & (ev.tid[lo:hi] != tid))
            if len(other):
                r = lo + int(other[-1])
                return max(best, r + int(np.searchsorted(self.pos, r, side="right")))
            hi, step = lo, step * 8
        return best

    def _comm(self, p_: int) -> str:
        """A pid's comm from a switch naming it (inserted rows carry none of their own): its first
        switch-out, else its first switch-in. Looked up per pid; all at once past a few."""
        names, ev = self._names, self.ev
        if p_ in names:
            return names[p_]
        self.switch_rows()
        sw, prev_, next_ = self._sw
        if len(names) < 16:
            r = np.flatnonzero(prev_ == p_)
            if len(r):
                names[p_] = ev.sa(int(sw[r[0]]))
            else:
                r = np.flatnonzero(next_ == p_)
                names[p_] = ev.sb(int(sw[r[0]])) if len(r) else ""
            return names[p_]
        pids = np.concatenate((prev_, next_))
        first = np.unique(pids, return_index=True)
        for q, fi in zip(first[0].tolist(), first[1].tolist()):
            if q not in names:
                r = int(sw[fi % len(sw)])
                names[q] = ev.sa(r) if fi < len(sw) else ev.sb(r)
        return names.setdefault(p_, "")

    def _src(self, i: int) -> int:
        """The decoded row of row i, or -1 - j for the j-th inserted one."""
        rows2 = self.inf.row
        j = int(np.searchsorted(rows2, i))
        return -1 - j if j < len(rows2) and rows2[j] == i else i - j

    def sa(self, i) -> str:
        s_ = self._src(int(i))
        return self.ev.sa(s_) if s_ >= 0 else self._comm(int(self.inf.x[-1 - s_]))

    def sb(self, i) -> str:
        s_ = self._src(int(i))
        return self.ev.sb(s_) if s_ >= 0 else self._comm(int(self.inf.y[-1 - s_]))


def _cpu_timelines(ev: _Table, inf: _Inferred):
    """cpu -> (switch times, next pids, row indices, pid running before the first switch).
    An inferred switch x -> y becomes two steps: UNKNOWN from x's last evidence, y from its first:
    nobody is charged for the gap in between."""
    sw, loc = ev.rows(ev.switch_rows(), loc=True)
    cpus = ev.col("cpu", loc=loc)
    del loc
    out = {}
    if len(cpus) and 0 <= int(cpus.min()) and int(cpus.max()) < 1 << 8:  # radix of one byte, counts per CPU
        c8 = cpus.astype(np.uint8)
        o = np.argsort(c8, kind="stable")
        bounds = np.cumsum(np.bincount(c8))[:-1]
        del c8
    else:
        o = np.argsort(cpus.astype(np.int16), kind="stable")  # radix: per CPU, in row order
        bounds = np.flatnonzero(np.diff(cpus[o])) + 1
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(o)]):
        if hi <= lo:
            continue
        rows = sw[o[lo:hi]]  # (ascending: the sort is stable)
        c = int(cpus[o[lo]])
        loc = ev.locate(rows, ascending=True)
        times, nxt = ev.col("ts", loc=loc), ev.col("a", loc=loc)
        syn = np.flatnonzero(ev.col("c", loc=loc) == INFERRED)
        first_tid = int(ev.value("tid", rows[0]))
        del loc
        if len(syn):
            j = np.searchsorted(inf.row, rows[syn])
            times[syn], nxt[syn] = inf.gap_start[j], UNKNOWN
            at = np.searchsorted(times, inf.gap_end[j], side="left")
            times, nxt, rows = np.insert(times, at, inf.gap_end[j]), np.insert(nxt, at, inf.y[j]), \
                np.insert(rows, at, rows[syn])
        out[c] = (times, nxt, rows, first_tid, int(rows[0]))
    return out


@dataclass
class _Pieces:
    """Stretches of another task running on the CPU where our thread sat runnable, as columns:
    segment index, pid (0 = the CPU was idle, UNKNOWN = the gap of an inferred switch), seconds,
    the task's comm (index into names), the switch row that began it, and its start time."""
    si: np.ndarray
    pid: np.ndarray
    dur: np.ndarray
    name: np.ndarray
    names: list
    row: np.ndarray
    start: np.ndarray


def _blocker_pieces(ev, inf, seg_tid, seg_st, seg_a, seg_b, seg_cpu) -> _Pieces:
    """Per CPU, vectorised: first the runnable segments with one task in the way (the next switch
    on that CPU is the one to us), then those in which several ran in turn, piece by piece."""
    tl = _cpu_timelines(ev, inf)
    si_l, pid_l, row_l, nxt_l, dur_l, st_l = [], [], [], [], [], []
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
        nxt_l.append(k[ok] >= 0), dur_l.append(b0[ok] - a0[ok]), st_l.append(a0[ok])
        several = np.flatnonzero(~single)
        walk = _walk_switches(times, nxt, rows, first_pid, first_row, several, k, k_end, a0, b0, tid_a)
        walk[0] = si_a[walk[0]]
        for lst, col in zip((si_l, pid_l, row_l, nxt_l, dur_l, st_l), walk):
            lst.append(col)
    cat = [np.concatenate(x) if x else np.zeros(0, dtype=dt)
           for x, dt in zip((si_l, pid_l, row_l, nxt_l, dur_l, st_l), _PIECE_TYPES)]
    si, pid, row, is_next, dur, start = cat
    name, names = _comm_names(ev, pid, row, is_next)
    return _Pieces(si, pid, dur, name, names, row, start)


def _walk_switches(times, nxt, rows, first_pid, first_row, several, k, k_end, a0, b0, tid_a) -> list:
    """Pieces of the segments `several` (indices into a0/b0/tid_a) in which tasks ran in turn: from
    each segment's start, every switch on the CPU up to its end begins a piece (a task other than
    the segment's own thread, for a positive time). Columns: segment, pid, row, is_next, seconds,
    start time."""
    if len(several) and np.all(times[1:] >= times[:-1]):
        cnt = k_end[several] - k[several]  # switches k .. k_end - 1 (times sorted)
        seg = np.repeat(several, cnt)
        step = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        kk = k[seg] + step
        at = np.maximum(kk, 0)
        pid = np.where(kk < 0, first_pid, nxt[at])
        row = np.where(kk < 0, first_row, rows[at])
        t_next = np.where(kk + 1 < len(times), times[np.minimum(kk + 1, len(times) - 1)], math.inf)
        t_cur = np.where(step == 0, a0[seg], times[at])
        t_end = np.minimum(t_next, b0[seg])
        keep = (pid != tid_a[seg]) & (t_end > t_cur)
        return [seg[keep], pid[keep], row[keep], (kk >= 0)[keep], (t_end - t_cur)[keep], t_cur[keep]]
    walk = ([], [], [], [], [], [])
    for j in several.tolist():  # (times out of order: the same, switch by switch)
        t_cur, kk, end, tid = float(a0[j]), int(k[j]), float(b0[j]), int(tid_a[j])
        while True:
            pid, row, is_next = (first_pid, first_row, False) if kk < 0 else (int(nxt[kk]), int(rows[kk]), True)
            t_next = float(times[kk + 1]) if kk + 1 < len(times) else math.inf
            t_end = min(t_next, end)
            if pid != tid and t_end > t_cur:
                for col, v in zip(walk, (j, pid, row, is_next, t_end - t_cur, t_cur)):
                    col.append(v)
            if t_next >= end:
                break
            t_cur, kk = t_next, kk + 1
    return [np.array(col, dtype=dt) for col, dt in zip(walk, _PIECE_TYPES)]


_PIECE_TYPES = (np.int64, np.int64, np.int64, bool, np.float64, np.float64)


def _comm_names(ev, pid, row, is_next):
    """The comm of each piece's task: read from its switch event (next_comm, or prev_comm for the
    task running before the CPU's first switch). A task's comm changes only on exec or a rename,
    so each pid's first and last piece are read, and every piece only when those two differ.
    The idle task and the unknown one (pid <= 0) are nobody's blockers: never named (-1); their
    comms differ per CPU (swapper/N), so reading them would read every idle piece."""
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
            if pid[grp[0]] <= 0:
                name[grp] = -1
                continue
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
        for side, name_of in (("tid", ev.sa), ("a", ev.sb)):  # the tasks before and after the gap
            pid_at = ev.col(side, pieces.row[gap])
            keep = pid_at != owner[gap]
            g, pid_at = gap[keep], pid_at[keep]
            r, d = pieces.row[g], pieces.dur[g]
            u, first, inv = np.unique(pid_at, return_index=True, return_inverse=True)
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
        # the `cap` longest, ties to the earlier segment: what a stable sort's first `cap` are
        d = seg_a - seg_b
        thr = np.partition(d, cap - 1)[cap - 1]
        below = np.flatnonzero(d < thr)
        keep = np.sort(np.concatenate((below, np.flatnonzero(d == thr)[:cap - len(below)])))
    blk = _main_blocker_by_seg(pieces, keep)
    held = _held_by(pieces, keep)
    out = [{"tid": t, "state": STATE_NAMES[st], "start_s": a, "end_s": b, "cpu": c, "blocker": blk.get(i)}
           for i, t, st, a, b, c in zip(keep.tolist(), seg_tid[keep].tolist(), seg_st[keep].tolist(),
                                        seg_a[keep].tolist(), seg_b[keep].tolist(), seg_cpu[keep].tolist())]
    for j, i in enumerate(keep.tolist()):
        if i in held:
            out[j]["held_by"] = held[i]
    return out
