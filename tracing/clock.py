"""Putting a device profile (CLOCK_REALTIME ns, tracing/kineto.py) on the kernel trace's clock (pure).

The trace window runs on the "mono" trace clock (CLOCK_MONOTONIC, tracing/window.py); Kineto stamps
in CLOCK_REALTIME. Their difference is not a constant one can assume (NTP slews REALTIME, an admin
can step it), so it is measured per request and carried in the trace itself, where an attachment
re-read on another machine finds it:

    clock marker   `itts_clock rt=<REALTIME ns> mono=<MONOTONIC ns> half=<ns>` written to the
                   window's trace_marker by the capture (app/device_view.py) at the window's start
                   and end: REALTIME read between two MONOTONIC reads (the narrowest of a few
                   tries), mono = their midpoint, half = half their distance.
    probe marker   `itts_clock probe` written right before a cudaDeviceSynchronize (on CUDA only):
                   the profile records that call too, so the two timelines meet at a known point.

Alignment (`alignment(markers)`): offset(t) = rt - mono per clock marker, linear between markers
(drift = its change over the window). Error budget, all measured, in `error_us`:
    bracket_us     the widest `half`: how uncertain each REALTIME/MONOTONIC pair is;
    drift_us       |offset change| / 2 over the window: we interpolate, so at most half of it;
    marker_lag_us  the marker's trace timestamp minus the MONOTONIC read just before the write:
                   the trace clock agrees with CLOCK_MONOTONIC to within this (it includes the
                   write's own latency). Over MAX_MONO_LAG_US the trace clock is not MONOTONIC
                   (a "global"/"boot" clock): the marker timestamps themselves anchor the offset
                   then, and the lag, unknown, is not in error_us (method "marker_ts").
`probe_residual_us(...)`: with a profile, the aligned start of the probe's runtime call minus
the probe marker: the end-to-end check of the alignment (a few us of write+call latency when
the alignment is right). No probe on CPU: None.
"""
from __future__ import annotations

import re

import numpy as np

PREFIX = "itts_clock"
PROBE_TEXT = f"{PREFIX} probe"
MAX_MONO_LAG_US = 1000.0  # a write to trace_marker takes microseconds; more: another clock
_CLOCK = re.compile(rf"^{PREFIX} rt=(\d+) mono=(\d+) half=(\d+)")


def clock_marker(rt_ns: int, mono_ns: int, half_ns: int) -> str:
    """The marker text the capture writes (parsed back by `alignment`)."""
    return f"{PREFIX} rt={int(rt_ns)} mono={int(mono_ns)} half={int(half_ns)}"


def best_sample(samples) -> tuple[int, int, int]:
    """[(mono_before_ns, rt_ns, mono_after_ns), ...] -> (rt, mono midpoint, half width) of the
    narrowest bracket (the read least disturbed by preemption)."""
    m0, rt, m1 = min(samples, key=lambda s: s[2] - s[0])
    return int(rt), int((m0 + m1) // 2), int((m1 - m0 + 1) // 2)


def _parsed(markers) -> list[tuple[float, int, int, int]]:
    """[(trace ts s, rt, mono, half)] of the clock markers among {ts_s, text} dicts, by time."""
    out = []
    for m in markers or []:
        hit = _CLOCK.match(str(m.get("text", ""))) if isinstance(m, dict) else None
        if hit and isinstance(m.get("ts_s"), (int, float)):
            out.append((float(m["ts_s"]), int(hit[1]), int(hit[2]), int(hit[3])))
    return sorted(out)


def alignment(markers) -> dict | None:
    """The REALTIME -> trace clock map from the window's clock markers (breakdown["markers"]),
    with its measured error; None when the window holds no clock marker."""
    pts = _parsed(markers)
    if not pts:
        return None
    lag_us = [(ts * 1e9 - mono) / 1e3 for ts, _, mono, _ in pts]
    mono_ok = max(abs(x) for x in lag_us) <= MAX_MONO_LAG_US
    if mono_ok:  # trace clock == CLOCK_MONOTONIC: anchor on the bracketed pairs
        anchors_rt = [rt for _, rt, _, _ in pts]
        offsets = [rt - mono for _, rt, mono, _ in pts]
    else:  # another trace clock: anchor on the markers' own timestamps
        anchors_rt = [rt for _, rt, _, _ in pts]
        offsets = [rt - int(round(ts * 1e9)) for ts, rt, _, _ in pts]
    bracket_us = max(h for *_, h in pts) / 1e3
    drift_ns = offsets[-1] - offsets[0]
    err = bracket_us + abs(drift_ns) / 2e3 + (0.0 if mono_ok else max(lag_us) - min(lag_us))
    return {"method": "clock_markers" if mono_ok else "marker_ts", "markers": len(pts),
            "anchors_rt_ns": anchors_rt, "offsets_ns": offsets,
            "offset_ns": offsets[0], "drift_us": round(drift_ns / 1e3, 3), "bracket_us": round(bracket_us, 3),
            "marker_lag_us": round(max(lag_us), 3) if mono_ok else None, "error_us": round(err, 3)}


def to_trace_s(rt_ns, align: dict) -> np.ndarray:
    """CLOCK_REALTIME ns (array) -> trace-clock seconds, by the offset interpolated between the
    anchors (held constant outside them)."""
    rt = np.asarray(rt_ns, dtype=np.int64)
    a = np.asarray(align["anchors_rt_ns"], dtype=np.int64)
    off = np.asarray(align["offsets_ns"], dtype=np.int64)
    if len(a) == 1 or a[-1] == a[0]:
        o = np.full(rt.shape, off[0], dtype=np.int64)
    else:  # interpolate in float only the (small) offset change, not the 1e18-sized times
        frac = np.clip((rt - a[0]).astype(np.float64) / float(a[-1] - a[0]), 0.0, 1.0)
        o = off[0] + np.round(frac * float(off[-1] - off[0])).astype(np.int64)
    return (rt - o).astype(np.float64) / 1e9


def probe_residual_us(markers, align: dict, call_start_rt_ns, call_names, call_tids, tid: int | None = None):
    """Aligned start of the first cudaDeviceSynchronize at/after the probe marker minus the
    marker's trace time, in us; None without a probe marker or a matching call."""
    probes = sorted(float(m["ts_s"]) for m in markers or []
                    if isinstance(m, dict) and m.get("text") == PROBE_TEXT and isinstance(m.get("ts_s"), (int, float)))
    if not probes or not len(call_start_rt_ns):
        return None
    starts = to_trace_s(call_start_rt_ns, align)
    ok = np.array([n in ("cudaDeviceSynchronize", "cuCtxSynchronize") for n in call_names], dtype=bool)
    if tid is not None:
        ok &= np.asarray(call_tids) == tid
    best = None
    for p in probes:
        # the call comes after the marker; allow for the alignment's own error before it
        cand = starts[ok & (starts >= p - 0.005)]
        if len(cand):
            r = (float(cand.min()) - p) * 1e6
            best = r if best is None or abs(r) < abs(best) else best
    return None if best is None else round(best, 3)
