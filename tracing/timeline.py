"""Timeline picture of one request: breakdown dict -> PNG bytes.

One lane per thread of ours (the busiest `max_lanes - 1` by on-CPU + run-queue time; the rest
folded into one lane), segments coloured by state (running / runnable / blocked I/O / sleeping),
runnable time whose CPU was held by another task in a stronger colour and the longest of those
labelled with the blocker's `comm:pid`; pipeline stages as a band across the top; time in ms from
the window start. With a captured device view (a CUDA engine), GPU lanes under the stage band and
the threads' waits for the GPU (tracing/timeline_gpu_png.py). In schedstat mode there are no
segments: per-thread stacked bars of the /proc counters instead, with a note saying so.

Uses matplotlib's object API (Figure + Agg canvas), never pyplot, so no global figure state is
shared between the threads that render concurrently.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .mdsafe import mpl_text
from .timeline_gpu_png import draw_gpu, extra_height_in

STATE_COLORS = {
    "running": "#2e9e44",
    "runnable": "#f2a541",           # waiting in the run queue
    "runnable_blocked": "#d62728",   # waiting while a named other task held the CPU
    "blocked_io": "#7b4fb3",
    "sleep": "#dcdcdc",
}
STATE_LABELS = {
    "running": "running (on CPU)",
    "runnable": "runnable (run-queue wait)",
    "runnable_blocked": "runnable, CPU held by another task",
    "blocked_io": "blocked I/O (D)",
    "sleep": "sleeping (S)",
}
# Drawing order: long background states first so short important ones stay visible on top.
_DRAW_ORDER = ("sleep", "blocked_io", "running", "runnable", "runnable_blocked")
_STAGE_COLORS = ("#cfe3f7", "#f7e3cf", "#dff2d8", "#f2d8ec", "#e8e8c8", "#d8f0f0")

MAX_LANES = 8          # beyond this the picture stops being readable on a laptop screen
MAX_ANNOTATIONS = 6    # blocker labels on the longest runnable-because-blocked segments
DPI = 100
_CHAR_PX = 5.4         # mean glyph width of the 7 pt label font at DPI, for overlap checks
WIDTH_IN = 12.0
MAX_LABEL_CHARS = 24   # lane labels ("<comm> <tid>") are cut to this: the left margin is fixed
LEFT_IN = 1.2          # room for MAX_LABEL_CHARS at 8 pt
BOTTOM_IN = 0.75       # tick labels, "ms from window start", the legend row


def render_timeline(breakdown: dict, path_or_none=None, max_lanes: int = MAX_LANES) -> bytes:
    """Render the PNG; also write it to path_or_none when given. Returns the PNG bytes."""
    bd = breakdown or {}
    if bd.get("mode") == "schedstat":
        fig = _schedstat_figure(bd)
    else:
        fig = _timeline_figure(bd, max(2, int(max_lanes)))
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=DPI)
    data = buf.getvalue()
    if path_or_none is not None:
        Path(path_or_none).write_bytes(data)
    return data


# --- helpers ---------------------------------------------------------------------------------

def _margins(height_in: float, top_in: float = 0.35, bottom_in: float = BOTTOM_IN) -> dict:
    """Fixed margins in inches (lane labels left; title on top; axis label and legend below).
    Matplotlib's constrained layout measured every text to find them: ~40% of the render time,
    for margins that only change with the lane-label width, which MAX_LABEL_CHARS bounds."""
    return {"left": LEFT_IN / WIDTH_IN, "right": 1 - 0.15 / WIDTH_IN,
            "top": 1 - top_in / height_in, "bottom": bottom_in / height_in}


def _num(d, key) -> float:
    v = d.get(key) if isinstance(d, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else 0.0


def _busy(t: dict) -> float:
    return _num(t, "on_cpu_s") + _num(t, "runqueue_wait_s")


def _blocker_label(b) -> str | None:
    """Segments carry the blocker as 'comm:pid', a {comm, pid} dict, or a bare pid."""
    if b is None or b == "" or b is False:
        return None
    if isinstance(b, dict):
        return f"{b.get('comm', '?')}:{b.get('pid', '?')}"
    return str(b)


def _lanes(bd: dict, max_lanes: int):
    """[(label, set_of_tids)] busiest first, the tail folded into one lane."""
    threads = list(bd.get("threads") or [])
    known = {t.get("tid") for t in threads}
    for s in bd.get("segments") or []:  # threads seen only in segments still get a lane
        if s.get("tid") not in known:
            known.add(s.get("tid"))
            threads.append({"tid": s.get("tid"), "comm": "?"})
    threads.sort(key=lambda t: -_busy(t))
    if len(threads) <= max_lanes:
        head, tail = threads, []
    else:
        head, tail = threads[:max_lanes - 1], threads[max_lanes - 1:]
    lanes = [(_cut(f"{t.get('comm', '?')} {t.get('tid')}"), {t.get("tid")}) for t in head]
    if tail:
        lanes.append((f"{len(tail)} other threads", {t.get("tid") for t in tail}))
    return lanes


def _cut(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[:MAX_LABEL_CHARS - 1] + "…"


def _origin(bd: dict) -> float:
    w = bd.get("window") or {}
    if "start_s" in w:
        return _num(w, "start_s")
    starts = [_num(s, "start_s") for s in bd.get("segments") or []]
    return min(starts) if starts else 0.0


def _title(bd: dict) -> str:
    tot = bd.get("totals") or {}
    wall = _num(tot, "wall_s") or _num(bd.get("window") or {}, "duration_s")
    lost = _num(bd.get("lost_events") or {}, "total")
    t = (f"pid {bd.get('pid', '?')} — wall {wall * 1000:.0f} ms, on-CPU {_num(tot, 'on_cpu_s') * 1000:.0f} ms, "
         f"run-queue wait {_num(tot, 'runqueue_wait_s') * 1000:.0f} ms, blocked I/O "
         f"{_num(tot, 'blocked_io_s') * 1000:.0f} ms")
    if lost:
        t += f" — {int(lost)} EVENTS LOST (incomplete)"
    return t


# --- full mode -------------------------------------------------------------------------------

def _timeline_figure(bd: dict, max_lanes: int) -> Figure:
    lanes = _lanes(bd, max_lanes)
    n = max(1, len(lanes))
    t0 = _origin(bd)
    win = bd.get("window") or {}
    span_ms = max(_num(win, "duration_s") * 1000.0,
                  max((_num(s, "end_s") - t0) * 1000.0 for s in bd.get("segments") or [{}]) if bd.get("segments") else 0.0,
                  1e-3)

    gpu_in, top_extra, bottom_extra = extra_height_in(bd)  # zeros without a device view: the figure as before
    height = 1.5 + 0.3 + 0.42 * n + gpu_in + top_extra + bottom_extra
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    ratios = [0.3] + ([gpu_in] if gpu_in else []) + [0.42 * n]
    gs = fig.add_gridspec(len(ratios), 1, height_ratios=ratios, hspace=0.08 * 2 * len(ratios) / sum(ratios),
                          **_margins(height, 0.35 + top_extra, BOTTOM_IN + bottom_extra))
    ax_st = fig.add_subplot(gs[0])
    ax_gpu = fig.add_subplot(gs[1], sharex=ax_st) if gpu_in else None
    ax = fig.add_subplot(gs[-1], sharex=ax_st)
    fig.suptitle("Request timeline — " + _title(bd), fontsize=9.5, x=0.01, ha="left")

    # stage band
    stages = [s for s in bd.get("stages") or [] if _num(s, "end_s") > _num(s, "start_s")]
    for i, s in enumerate(stages):
        x0 = (_num(s, "start_s") - t0) * 1000.0
        w = (_num(s, "end_s") - _num(s, "start_s")) * 1000.0
        color = _STAGE_COLORS[i % len(_STAGE_COLORS)]
        ax_st.broken_barh([(x0, w)], (0, 1), facecolors=color, edgecolors="#888888", linewidth=0.5)
        for a in (ax, ax_gpu) if ax_gpu else (ax,):
            a.axvspan(x0, x0 + w, color=color, alpha=0.25, linewidth=0, zorder=0)
        if w / span_ms > 0.03:
            label = f"{s.get('name', '?')} {w:.0f} ms" if w / span_ms > 0.12 else str(s.get("name", "?"))
            ax_st.text(x0 + w / 2, 0.5, mpl_text(label), ha="center", va="center", fontsize=7.5, clip_on=True)
    ax_st.set_ylim(0, 1)
    ax_st.set_yticks([0.5], ["stages" if stages else "(no stage markers)"], fontsize=8)
    ax_st.tick_params(axis="x", labelbottom=False, length=0)
    for side in ("top", "right", "bottom"):
        ax_st.spines[side].set_visible(False)

    # segments, batched per (lane, colour) into one broken_barh call each
    lane_of = {}
    for i, (_, tids) in enumerate(lanes):
        for tid in tids:
            lane_of[tid] = i
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    blocked: list[tuple[float, float, int, str]] = []
    for s in bd.get("segments") or []:
        lane = lane_of.get(s.get("tid"))
        if lane is None:
            continue
        x0 = (_num(s, "start_s") - t0) * 1000.0
        w = (_num(s, "end_s") - _num(s, "start_s")) * 1000.0
        if w <= 0:
            continue
        state = s.get("state", "sleep")
        who = _blocker_label(s.get("blocker")) if state == "runnable" else None
        key = "runnable_blocked" if who else (state if state in STATE_COLORS else "sleep")
        bars.setdefault((lane, key), []).append((x0, w))
        if who:
            blocked.append((w, x0, lane, who))
    for key in _DRAW_ORDER:
        for lane in range(n):
            xs = bars.get((lane, key))
            if xs:
                y = n - 1 - lane  # busiest lane on top
                h = 0.7 if key != "sleep" else 0.36
                ax.broken_barh(xs, (y - h / 2, h), facecolors=STATE_COLORS[key], edgecolors="none", zorder=2)
    if ax_gpu is not None:
        draw_gpu(fig, ax_gpu, ax, bd, lane_of, n, height)

    # blocker labels on the longest blocked runnable segments, never overlapping within a lane
    blocked.sort(reverse=True)
    placed: list[tuple[int, float, float]] = []
    ms_per_char = span_ms * _CHAR_PX / (WIDTH_IN * DPI * 0.85)  # label width estimate in data units
    for w, x0, lane, who in blocked:
        if len(placed) >= MAX_ANNOTATIONS:
            break
        xc = x0 + w / 2
        ms = f"{w:.0f} ms" if w >= 10 else f"{w:.1f} ms"
        width = (len(who) + len(ms) + 3) * ms_per_char
        # keep labels inside the axes near the edges
        if xc - width / 2 < 0:
            ha, lo = "left", xc
        elif xc + width / 2 > span_ms:
            ha, lo = "right", xc - width
        else:
            ha, lo = "center", xc - width / 2
        if any(l == lane and lo < r and lo + width > left for l, left, r in placed):
            continue
        placed.append((lane, lo, lo + width))
        y = n - 1 - lane
        ax.text(xc, y + 0.4, mpl_text(f"{who} {ms}"), ha=ha, va="bottom", fontsize=7, color="#8b0000", zorder=4,
                    clip_on=True, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#d62728", "lw": 0.5, "alpha": 0.9})

    ax.set_ylim(-0.6, n - 0.4 + 0.35)
    ax.set_yticks(range(n), [mpl_text(lanes[n - 1 - i][0]) for i in range(n)] if lanes else [""], fontsize=8)
    ax.set_xlim(0, span_ms)
    ax.set_xlabel("ms from window start", fontsize=8.5)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="#bbbbbb", linewidth=0.4, zorder=1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if not bd.get("segments"):
        ax.text(0.5, 0.5, "no scheduler events captured for our threads", transform=ax.transAxes,
                ha="center", va="center", fontsize=10, color="#555555")

    handles = [Patch(facecolor=STATE_COLORS[k], label=STATE_LABELS[k]) for k in
               ("running", "runnable", "runnable_blocked", "blocked_io", "sleep")]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    return fig


# --- schedstat mode --------------------------------------------------------------------------

def _schedstat_figure(bd: dict) -> Figure:
    threads = sorted(bd.get("threads") or [], key=lambda t: -_busy(t))[:MAX_LANES * 2]
    n = max(1, len(threads))
    height = 1.6 + 0.34 * n
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    ax = fig.add_subplot(fig.add_gridspec(1, 1, **_margins(height, top_in=0.55))[0])
    fig.suptitle("Request summary (schedstat mode) — " + _title(bd).split(", blocked I/O")[0], fontsize=9.5,
                 x=0.01, ha="left")
    labels = []
    for i, t in enumerate(threads):
        y = n - 1 - i
        on = _num(t, "on_cpu_s") * 1000
        rq = _num(t, "runqueue_wait_s") * 1000
        off = max(0.0, _num(t, "observed_s") * 1000 - on - rq)
        ax.barh(y, on, color=STATE_COLORS["running"], height=0.6)
        ax.barh(y, rq, left=on, color=STATE_COLORS["runnable"], height=0.6)
        ax.barh(y, off, left=on + rq, color=STATE_COLORS["sleep"], height=0.6)
        labels.append(_cut(f"{t.get('comm', '?')} {t.get('tid')}"))
    ax.set_yticks(range(n), [mpl_text(x) for x in reversed(labels)] if labels else [""], fontsize=8)
    ax.set_xlabel("ms (totals per thread over the window, not a timeline)", fontsize=8.5)
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title("Degraded: tracefs is not writable, so there is no per-event timeline, stage band or blocker; "
                 "per-thread totals from /proc/<pid>/task/*/schedstat", fontsize=8, color="#8b0000", loc="left")
    handles = [Patch(facecolor=STATE_COLORS["running"], label="on CPU"),
               Patch(facecolor=STATE_COLORS["runnable"], label="run-queue wait"),
               Patch(facecolor=STATE_COLORS["sleep"], label="off CPU (sleep or I/O, not separable)")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    return fig
