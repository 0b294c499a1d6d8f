"""The device side of one request (pure: a Profile + the breakdown dict -> its `device` section).

Put on the kernel trace's clock (tracing/clock.py), the profile's GPU activity (kernels, memcpys,
memsets: tracing/kineto.py) answers, per request and per stage:

  busy_s         time the device ran something: kernel + memcpy + memset intervals merged per
                 device (overlapping streams count once), clipped to the trace window.
  idle_s         window (or stage) wall time minus busy_s.
  idle gaps      each stretch between two busy intervals, classified as Holistic Trace Analysis
                 classifies them (hta/analyzers/breakdown_analysis.py), from the activity that
                 ends the gap and its launch call (matched by correlation id):
    host_wait    the launch call started after the gap began: the GPU waited for the host.
                 The idle stretch before the window's first activity counts too (its launch
                 came after the window opened).
    kernel_wait  otherwise, a gap shorter than KERNEL_WAIT_MAX_US: the device's own overhead
                 between back-to-back queued work. (HTA's `consecutive_kernel_delay` is
                 documented in ns but compared with microsecond data: its default 30 acts as
                 30 us, the value taken here, with the unit in the name.)
    other        the rest (launched in time, yet the device idled: a wait on an event, another
                 stream's dependency), and gaps whose activity has no launch in the profile.
    no_gpu_work  after the window's last activity: no launch was coming (CPU-only work such as
                 the replica's builtin speech); idle, but not the GPU waiting for the host.
  launch delay   activity start minus its launch call's end, us (HTA; 5-20 us is typical,
                 LAUNCH_DELAY_OUTLIER_US and over are outliers).
  short kernels  kernels that ran shorter than their own launch call took (HTA's launch-stats
                 rule): the host cannot launch them as fast as the device retires them.
  host cause     for every host_wait gap, what the launching thread (the tid of the launch call
                 that ended it) was doing in the kernel trace during the gap, from the breakdown's
                 `segments` and `irq_segments`: running, runnable (and who held its CPU: the
                 segment's blocker), blocked_io, sleep, irq/softirq (inside running), and
                 unobserved (no segment: the timeline's 4000-segment cap, or the thread had no
                 event). Per gap, summed per request, and per blocker.
  gpu waits      runtime calls in which the calling thread waits for the device (kineto.SYNC_CALLS:
                 cudaStreamSynchronize, cudaDeviceSynchronize, a synchronous cudaMemcpy, ...):
                 per thread the time inside them ("waiting for the GPU"), split by what the
                 thread's segments say it did meanwhile: running = spinning in the driver
                 (cudaDeviceScheduleAuto spins), sleep = blocked in the driver.
All times in seconds on the trace clock (window, stages and segments of the breakdown); the
alignment and its measured error are in `clock`.
"""
from __future__ import annotations

import numpy as np

from . import clock as C
from .kineto import Profile

KERNEL_WAIT_MAX_US = 30.0
LAUNCH_DELAY_OUTLIER_US = 100.0
MAX_BARS = 2000  # gaps / busy intervals / waits kept for the timeline (the longest)
CLASSES = ("host_wait", "kernel_wait", "other", "no_gpu_work")
HOST_STATES = ("running", "runnable", "blocked_io", "sleep")


def absent(why: str) -> dict:
    """The section when there is no device view for a request, with the reason."""
    return {"status": "absent", "why": why}


class _Cum:
    """Time covered by disjoint sorted intervals up to t (vectorised), each interval counted at its
    weight (default 1: a share of a stretch several tasks held); overlap(a, b) = F(b) - F(a)."""

    def __init__(self, a, b, w=None):
        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.w = np.ones(len(self.a)) if w is None or len(w) != len(self.a) else np.asarray(w, dtype=np.float64)
        self.cum = np.concatenate(([0.0], np.cumsum((self.b - self.a) * self.w)))

    def at(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if not len(self.a):
            return np.zeros(t.shape)
        k = np.searchsorted(self.a, t, side="right") - 1
        kk = np.maximum(k, 0)
        inside = np.clip(t - self.a[kk], 0.0, self.b[kk] - self.a[kk]) * self.w[kk]
        return np.where(k >= 0, self.cum[kk] + inside, 0.0)

    def overlap(self, a, b) -> np.ndarray:
        return self.at(b) - self.at(a)


def _disjoint(pairs) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, merged version of possibly overlapping intervals (for _Cum)."""
    if not len(pairs):
        return np.zeros(0), np.zeros(0)
    p = np.asarray(sorted(pairs), dtype=np.float64)
    a, b = p[:, 0], np.maximum.accumulate(p[:, 1])
    new = np.r_[True, a[1:] > b[:-1]]
    s = np.flatnonzero(new)
    e = np.r_[s[1:] - 1, len(a) - 1]
    return a[s], b[e]


def _thread_states(bd: dict, tid: int) -> dict:
    """state -> _Cum of that thread's segments; plus blocker -> _Cum of its runnable segments
    (key "comm:pid"), the CPU of each blocker, and hard/soft IRQ handler intervals."""
    segs = [s for s in bd.get("segments") or [] if s.get("tid") == tid]
    out = {st: _Cum(*_disjoint([(s["start_s"], s["end_s"]) for s in segs if s.get("state") == st]))
           for st in HOST_STATES}
    blk: dict[str, list] = {}
    cpus: dict[str, set] = {}
    for s in segs:
        if s.get("state") == "runnable":
            # several tasks in turn (held_by): each gets its share of the stretch; which part of it
            # a gap covers is not known, so a gap covering part of such a stretch is apportioned
            held = s.get("held_by") or {s.get("blocker") or "(CPU idle or unknown)": 1.0}
            tot = sum(held.values()) or 1.0
            for k, v in held.items():
                blk.setdefault(k, []).append((s["start_s"], s["end_s"], v / tot))
                if isinstance(s.get("cpu"), int):
                    cpus.setdefault(k, set()).add(s["cpu"])
    # (one thread's segments never overlap: sorted, they are disjoint as they are)
    out["_blockers"] = {k: _Cum(*zip(*sorted(v))) for k, v in blk.items()}
    out["_cpus"] = cpus
    irqs = [q for q in bd.get("irq_segments") or [] if q.get("tid") == tid]
    out["irq"] = _Cum(*_disjoint([(q["start_s"], q["end_s"]) for q in irqs if not q.get("soft")]))
    out["softirq"] = _Cum(*_disjoint([(q["start_s"], q["end_s"]) for q in irqs if q.get("soft")]))
    return out


def _join(bd: dict, tids: np.ndarray, g0: np.ndarray, g1: np.ndarray, cache: dict) -> dict:
    """Per gap (arrays), what the given thread did: {state_s arrays, irq_s, softirq_s, top blocker}
    plus per-blocker totals {blocker: [seconds, cpus]}."""
    n = len(g0)
    res = {f"{st}_s": np.zeros(n) for st in (*HOST_STATES, "irq", "softirq")}
    top = [None] * n
    each: list[dict] = [{} for _ in range(n)]  # per gap: blocker -> seconds
    per_blocker: dict[str, list] = {}
    for tid in np.unique(tids).tolist():
        m = np.flatnonzero(tids == tid)
        if tid not in cache:
            cache[tid] = _thread_states(bd, tid)
        ts = cache[tid]
        for st in (*HOST_STATES, "irq", "softirq"):
            res[f"{st}_s"][m] = ts[st].overlap(g0[m], g1[m])
        best = np.zeros(len(m))
        for k, cum in ts["_blockers"].items():
            ov = cum.overlap(g0[m], g1[m])
            tot = float(ov.sum())
            if tot > 0:
                e = per_blocker.setdefault(k, [0.0, set()])
                e[0] += tot
                e[1] |= ts["_cpus"].get(k, set())
            for j in np.flatnonzero(ov > 0).tolist():
                each[m[j]][k] = float(ov[j])
            win = ov > best
            for j in np.flatnonzero(win).tolist():
                top[m[j]] = k
            best = np.maximum(best, ov)
    res["blocker"] = top
    res["blockers"] = each
    res["per_blocker"] = per_blocker
    return res


def _merge(a: np.ndarray, b: np.ndarray):
    """Activities sorted by start -> (first activity index of each busy interval, its start, end)."""
    cm = np.maximum.accumulate(b)
    new = np.r_[True, a[1:] > cm[:-1]]
    s = np.flatnonzero(new)
    e = np.r_[s[1:] - 1, len(a) - 1]
    return s, a[s], cm[e]


def _stats_us(x: np.ndarray) -> dict:
    if not len(x):
        return {"count": 0, "p50_us": None, "p95_us": None, "max_us": None, "outliers": 0}
    return {"count": int(len(x)), "p50_us": round(float(np.percentile(x, 50)), 3),
            "p95_us": round(float(np.percentile(x, 95)), 3), "max_us": round(float(x.max()), 3),
            "outliers": int((x >= LAUNCH_DELAY_OUTLIER_US).sum())}


def _keep_longest(rows: list[dict], cap: int = MAX_BARS) -> list[dict]:
    if len(rows) > cap:
        rows = sorted(rows, key=lambda r: r["end_s"] - r["start_s"], reverse=True)[:cap]
    return sorted(rows, key=lambda r: r["start_s"])


def device_section(profile: Profile, bd: dict, align: dict | None,
                   kernel_wait_max_us: float = KERNEL_WAIT_MAX_US) -> dict:
    """The breakdown's `device` section for one request (see the module docstring)."""
    w = bd.get("window") or {}
    w0, w1 = float(w.get("start_s", 0.0)), float(w.get("end_s", 0.0))
    if align is None:
        return absent("the trace window holds no clock marker, so the profile cannot be put on the kernel "
                      "trace's clock (a trace from before the device view, or its markers were lost)")
    pinfo = {"time_format": profile.time_format, "dropped_before_launch": profile.dropped_before_launch,
             "kernels": profile.gpu_kind.count("kernel"), "memcpys": profile.gpu_kind.count("memcpy"),
             "memsets": profile.gpu_kind.count("memset"), "runtime_calls": len(profile.call_name),
             "devices": [str(d.get("name", "?")) for d in profile.devices]}
    clock = {k: v for k, v in align.items() if k not in ("anchors_rt_ns", "offsets_ns")}
    clock["probe_residual_us"] = C.probe_residual_us(bd.get("markers"), align, profile.call_start,
                                                     profile.call_name, profile.call_tid)
    ga, gb = C.to_trace_s(profile.gpu_start, align), C.to_trace_s(profile.gpu_end, align)
    ca, cb = C.to_trace_s(profile.call_start, align), C.to_trace_s(profile.call_end, align)
    inwin = (gb > w0) & (ga < w1)
    wall = max(0.0, w1 - w0)
    devs = {}
    for d in np.unique(profile.gpu_device[inwin]).tolist():
        m = inwin & (profile.gpu_device == d)
        devs[d] = float(np.sum(np.clip(gb[m], w0, w1) - np.clip(ga[m], w0, w1)))
    cache: dict = {}
    out = {"status": "captured", "clock": clock, "profile": pinfo, "kernel_wait_max_us": kernel_wait_max_us,
           "window_s": wall, "gpu_waits": _gpu_waits(profile, ca, cb, w0, w1, bd, cache)}
    if not devs:
        out.update(device=None, totals=_empty_totals(wall), stages=[_empty_stage(s) for s in bd.get("stages") or []],
                   gaps=[], busy=[], other_devices=[])
        out["headline"] = f"No GPU activity in this request's window ({wall * 1e3:.0f} ms)."
        return out
    d = max(devs, key=devs.get)  # the serving device: the busiest one
    m = np.flatnonzero(inwin & (profile.gpu_device == d))
    a, b = np.clip(ga[m], w0, w1), np.clip(gb[m], w0, w1)
    first, ba, bb = _merge(a, b)
    # gaps: before the first busy interval, between them, after the last
    g0 = np.r_[w0, bb]
    g1 = np.r_[ba, w1]
    nxt = np.r_[first, -1]  # the activity ending each gap (none after the last)
    launch = np.where(nxt >= 0, profile.gpu_launch_idx[m][np.maximum(nxt, 0)], -1)
    l_start = np.where(launch >= 0, ca[np.maximum(launch, 0)], np.inf)
    tid = np.where(launch >= 0, profile.call_tid[np.maximum(launch, 0)], -1)
    cls = np.full(len(g0), "other", dtype=object)
    host = (launch >= 0) & (l_start > g0)
    cls[host] = "host_wait"
    cls[~host & ((g1 - g0) * 1e6 < kernel_wait_max_us) & (np.arange(len(g0)) > 0)] = "kernel_wait"
    cls[nxt < 0] = "no_gpu_work"
    keep = g1 > g0
    g0, g1, cls, tid = g0[keep], g1[keep], cls[keep], tid[keep]
    hw = cls == "host_wait"
    j = _join(bd, tid[hw], g0[hw], g1[hw], cache)
    totals = _totals(wall, bb - ba, g0, g1, cls, j)
    # launch delay and short kernels over the device's activities in the window
    lm = profile.gpu_launch_idx[m]
    has = lm >= 0
    delay_us = (ga[m][has] - cb[lm[has]]) * 1e6
    kern = np.array([profile.gpu_kind[i] == "kernel" for i in m.tolist()], dtype=bool)
    short = kern & has & ((gb[m] - ga[m]) < np.where(has, cb[np.maximum(lm, 0)] - ca[np.maximum(lm, 0)], 0.0))
    totals.update(kernels=int(kern.sum()), memcpys=int(len(m) - kern.sum()), short_kernels=int(short.sum()),
                  launch_delay=_stats_us(delay_us))
    busy_cum = _Cum(ba, bb)
    stages = []
    for st in bd.get("stages") or []:
        s0, s1 = float(st.get("start_s", 0.0)), float(st.get("end_s", 0.0))
        busy = float(busy_cum.overlap(s0, s1))
        row = {"name": st.get("name"), "start_s": s0, "end_s": s1, "wall_s": s1 - s0, "busy_s": busy,
               "idle_s": max(0.0, (s1 - s0) - busy)}
        for c in CLASSES:
            sel = cls == c
            row[f"{c}_s"] = float(np.sum(np.clip(np.minimum(g1[sel], s1) - np.maximum(g0[sel], s0), 0, None)))
        ins = (a >= s0) & (a < s1)
        row["kernels"], row["short_kernels"] = int((kern & ins).sum()), int((short & ins).sum())
        stages.append(row)
    gaps = [{"start_s": float(x0), "end_s": float(x1), "class": str(c), "tid": int(t) if t >= 0 else None}
            for x0, x1, c, t in zip(g0.tolist(), g1.tolist(), cls.tolist(), tid.tolist())]
    for k, i in enumerate(np.flatnonzero(hw).tolist()):
        gaps[i]["host"] = {f"{s}_s": float(j[f"{s}_s"][k]) for s in (*HOST_STATES, "irq", "softirq")}
        gaps[i]["host"]["blocker"] = j["blocker"][k]
        gaps[i]["host"]["blockers"] = j["blockers"][k]
    out.update(device=int(d), totals=totals, stages=stages, gaps=_keep_longest(gaps),
               busy=[[float(x), float(y)] for x, y in zip(ba.tolist(), bb.tolist())],
               other_devices=[{"device": int(k), "busy_s": v} for k, v in devs.items() if k != d])
    if len(out["busy"]) > MAX_BARS:
        out["busy"] = sorted(sorted(out["busy"], key=lambda p: p[0] - p[1])[:MAX_BARS])
    out["headline"] = headline(out)
    return out


def _empty_totals(wall: float) -> dict:
    t = {"busy_s": 0.0, "idle_s": wall, "host_wait_s": 0.0, "kernel_wait_s": 0.0, "other_s": 0.0,
         "no_gpu_work_s": wall, "kernels": 0, "memcpys": 0, "short_kernels": 0, "launch_delay": _stats_us(np.zeros(0)),
         "idle_share": 1.0 if wall > 0 else 0.0, "host_wait_share": 0.0, "host_wait_gaps": 0}
    t["host_cause"] = {f"{s}_s": 0.0 for s in (*HOST_STATES, "irq", "softirq", "unobserved")}
    t["host_cause"]["blockers"] = []
    return t


def _empty_stage(st: dict) -> dict:
    s0, s1 = float(st.get("start_s", 0.0)), float(st.get("end_s", 0.0))
    row = {"name": st.get("name"), "start_s": s0, "end_s": s1, "wall_s": s1 - s0, "busy_s": 0.0, "idle_s": s1 - s0,
           "kernels": 0, "short_kernels": 0}
    row.update({f"{c}_s": 0.0 for c in CLASSES})
    row["no_gpu_work_s"] = s1 - s0
    return row


def _totals(wall, busy_lens, g0, g1, cls, j) -> dict:
    busy = float(np.sum(busy_lens))
    t = {"busy_s": busy, "idle_s": max(0.0, wall - busy)}
    for c in CLASSES:
        t[f"{c}_s"] = float(np.sum((g1 - g0)[cls == c]))
    t["idle_share"] = t["idle_s"] / wall if wall > 0 else 0.0
    t["host_wait_share"] = t["host_wait_s"] / wall if wall > 0 else 0.0
    t["host_wait_gaps"] = int((cls == "host_wait").sum())
    hc = {f"{s}_s": float(np.sum(j[f"{s}_s"])) for s in (*HOST_STATES, "irq", "softirq")}
    hc["unobserved_s"] = max(0.0, t["host_wait_s"] - sum(hc[f"{s}_s"] for s in HOST_STATES))
    hc["blockers"] = sorted(({"blocker": k, "time_s": v[0], "cpus": sorted(v[1])}
                             for k, v in j["per_blocker"].items()), key=lambda r: -r["time_s"])
    t["host_cause"] = hc
    return t


def _gpu_waits(profile: Profile, ca, cb, w0, w1, bd, cache) -> dict:
    """Per thread: time inside synchronizing runtime calls and what its segments say meanwhile."""
    sync = profile.is_sync() & (cb > w0) & (ca < w1) if len(ca) else np.zeros(0, dtype=bool)
    idx = np.flatnonzero(sync)
    a, b = np.clip(ca[idx], w0, w1), np.clip(cb[idx], w0, w1)
    tids = profile.call_tid[idx]
    threads = []
    for t in np.unique(tids).tolist():
        m = tids == t
        ia, ib = _disjoint(list(zip(a[m].tolist(), b[m].tolist())))
        if t not in cache:
            cache[t] = _thread_states(bd, t)
        row = {"tid": int(t), "wait_s": float(np.sum(ib - ia)), "calls": int(m.sum())}
        for st in HOST_STATES:
            row[f"{st}_s"] = float(np.sum(cache[t][st].overlap(ia, ib)))
        row["spinning_s"] = row["running_s"]
        threads.append(row)
    threads.sort(key=lambda r: -r["wait_s"])
    ivs = [{"tid": int(t), "start_s": float(x), "end_s": float(y), "call": profile.call_name[i]}
           for t, x, y, i in zip(tids.tolist(), a.tolist(), b.tolist(), idx.tolist()) if y > x]
    return {"threads": threads, "intervals": _keep_longest(ivs)}


def annotate_threads(bd: dict) -> None:
    """Name the GPU wait in the thread table: each thread row gets gpu_wait_s (and its spinning
    part) from bd["device"]; None for every row when there is no device view."""
    dv = bd.get("device") or {}
    per = {r["tid"]: r for r in ((dv.get("gpu_waits") or {}).get("threads") or [])}
    captured = dv.get("status") == "captured"
    for t in bd.get("threads") or []:
        r = per.get(t.get("tid"))
        t["gpu_wait_s"] = (r["wait_s"] if r else 0.0) if captured else None
        t["gpu_wait_spinning_s"] = (r["spinning_s"] if r else 0.0) if captured else None


def _ms(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s >= 0.1 else f"{s * 1e3:.1f} ms"


def headline(dv: dict) -> str:
    """One sentence: how idle the GPU was, how much of it waited for the host, and why."""
    t = dv.get("totals") or {}
    wall = dv.get("window_s") or 0.0
    idle, hw = t.get("idle_s", 0.0), t.get("host_wait_s", 0.0)
    s = f"GPU idle {_ms(idle)} ({100 * idle / wall:.0f}%) of synthesis" if wall > 0 else "GPU idle"
    if hw <= 0:
        return s + "; it never waited for the host."
    s += f"; {_ms(hw)} of it waited for the host"
    hc = t.get("host_cause") or {}
    blk = [b for b in hc.get("blockers") or [] if not str(b["blocker"]).startswith("(")]
    parts = []
    if blk and blk[0]["time_s"] > 0:
        b = blk[0]
        cpus = ",".join(str(c) for c in b.get("cpus") or [])
        parts.append(f"{_ms(b['time_s'])} of that the launch thread was runnable behind {b['blocker']}"
                     + (f" on CPU {cpus}" if cpus else ""))
    for key, what in (("running_s", "on-CPU (host code between launches)"), ("sleep_s", "asleep"),
                      ("blocked_io_s", "blocked on I/O"), ("irq_s", "in IRQ handlers"),
                      ("softirq_s", "in softirq handlers")):
        if hc.get(key, 0.0) >= 0.1 * hw:
            parts.append(f"{_ms(hc[key])} {what}")
    return s + ("; " + "; ".join(parts) if parts else "") + "."
