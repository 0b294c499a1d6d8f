"""Interactive timeline of one request (or two, on one time scale): breakdown dict -> Plotly figure.

The PNG (tracing/timeline.py) stays for the attachment and snapshot reports; this is the view to
explore in the browser (Gradio's gr.Plot draws Plotly figures with plotly.js): zoom by dragging,
pan from the mode bar, double-click to reset, hover a segment for its thread, state, start,
duration, CPU and blocker.

- One lane per thread (every thread in the breakdown, ordered: synthesis thread, torch workers,
  then by on-CPU + run-queue time), labelled `comm tid`; the comm is the role name when the service
  named the thread (tuning.roles), else the kernel's.
- Segments are horizontal bars coloured by state (running / runnable / blocked I/O / sleep), with
  the PNG's colours; runnable segments whose CPU was held by another task are red (a trace of their
  own, "runnable, CPU held by another task") and their hover names the blocker.
- Pipeline stages are bands across the lanes with their names on top.
- Time is in ms from the window start, so two clips compare on one scale (`compare_figure`).
- With a device view (breakdown "device"), GPU lanes on top: busy, idle gaps by class, and each
  thread's "waiting for the GPU" (tracing/timeline_gpu.py).

Responsiveness: a breakdown carries up to 4000 segments. One bar trace per state (at most five
traces; a point carries its lane, start, duration and CPU, the state is its trace's), never one
trace per segment: plotly.js then lays out 4000 bars in one pass.

Every string from the kernel (comm, blocker) or the request (stage names) is HTML-escaped: Plotly
renders hover text and tick labels as a subset of HTML.
"""
from __future__ import annotations

import html
import math

import numpy as np
import orjson
import plotly.graph_objects as go
import plotly.io as pio
from _plotly_utils.utils import to_typed_array_spec
from plotly.subplots import make_subplots

from .timeline import STATE_COLORS, STATE_LABELS, _STAGE_COLORS
from .timeline_gpu import gpu_lane_labels, gpu_traces

_STATES = ("sleep", "blocked_io", "running", "runnable", "runnable_blocked")  # drawing order
_ROLE_ORDER = {"synthesis": 0, "torch-intra": 1, "torch-interop": 2}
LANE_PX = 26
# legend on top of the figure (the x axis keeps the bottom), stage names between it and the lanes
_LEGEND = {"orientation": "h", "x": 0, "y": 1, "yref": "container", "yanchor": "top", "font": {"size": 11}}
# A plain look without a named template: plotly deep-copies a named template (~100 ms here).
_TEMPLATE = {"layout": {"plot_bgcolor": "#ffffff", "paper_bgcolor": "#ffffff",
                        "xaxis": {"gridcolor": "#e5e5e5"}, "yaxis": {"gridcolor": "#ffffff"}}}
# Hover text per state trace: the lane from y and the start from base (plotly.js hands every array
# attribute of a point to the template; its `x` is the bar's end, not its length), the state
# written in; per segment its duration and CPU ride along as numbers (customdata, a typed array),
# and for a held-CPU segment its blocker. Segments under load number 2000-4000 per clip and every
# update carries them: a segment costs ~60 bytes of JSON so (it was ~110 with the lane, state,
# start and duration as strings in customdata).
_HOVER_HEAD = "%{y}<br>state: {state}<br>start: %{base:.3f} ms<br>duration: %{customdata[0]:.3f} ms"
HOVER = _HOVER_HEAD + "<br>CPU: %{customdata[1]}<br>blocker: -<extra></extra>"
HOVER_BLOCKED = _HOVER_HEAD + "<br>CPU: %{customdata[1]}<br>blocker: %{customdata[2]}<extra></extra>"


def _num(d, key) -> float:
    v = d.get(key) if isinstance(d, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else 0.0


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _lanes(bd: dict) -> list[tuple[int, str]]:
    """[(tid, label)] top to bottom."""
    threads = [t for t in bd.get("threads") or [] if isinstance(t, dict) and isinstance(t.get("tid"), int)]
    seen = {t["tid"] for t in threads}
    for sg in bd.get("segments") or []:  # a segment of a thread the table left out still gets a lane
        if isinstance(sg.get("tid"), int) and sg["tid"] not in seen:
            seen.add(sg["tid"])
            threads.append({"tid": sg["tid"], "comm": "?"})
    threads.sort(key=lambda t: (_ROLE_ORDER.get(t.get("role"), 9), _worker_index(t),
                                -(_num(t, "on_cpu_s") + _num(t, "runqueue_wait_s")), t["tid"]))
    return [(t["tid"], f"{_esc(t.get('comm', '?'))} {t['tid']}") for t in threads]


def _worker_index(t: dict) -> int:
    """torch-intra-3 -> 3, so a team's lanes come in order; 0 for everything else."""
    tail = str(t.get("comm", "")).rsplit("-", 1)[-1]
    return int(tail) if t.get("role") in _ROLE_ORDER and tail.isdigit() else 0


def _blocker(b) -> str | None:
    if b is None or b == "" or b is False:
        return None
    if isinstance(b, dict):
        return f"{b.get('comm', '?')}:{b.get('pid', '?')}"
    return str(b)


def _traces(bd: dict, lanes: dict[int, str], prefix: str = "", legend: set | None = None) -> list:
    """One bar trace per state present, bars positioned by base (start) and x (duration) in ms.
    `legend`: states already in the legend (a state gets one entry across both compared clips).
    y, and customdata where it holds strings, are plain lists (timeline_json writes them as they
    are; the Figure paths make string arrays of them, _as_arrays); numeric customdata is the
    (duration, CPU) float array of _hover_numbers. Column-wise: a breakdown under load carries
    2000-4000 segments and this runs on the handler thread per traced request (issue 25)."""
    legend = set() if legend is None else legend
    t0 = _num(bd.get("window") or {}, "start_s")
    segs = [sg for sg in bd.get("segments") or [] if sg.get("tid") in lanes and sg.get("state") in STATE_COLORS]
    if not segs:
        return []
    start_s, end_s = _column(segs, "start_s"), _column(segs, "end_s")
    start_ms = (start_s - t0) * 1000.0
    dur_ms = np.maximum(0.0, (end_s - start_s) * 1000.0)
    by_state: dict[str, list[int]] = {}
    blockers: dict[int, str] = {}  # segment -> its blocker (held-CPU runnable segments)
    cpus = []
    for i, sg in enumerate(segs):
        state = sg["state"]
        blk = _blocker(sg.get("blocker")) if state == "runnable" else None
        if blk:
            blockers[i] = _esc(blk)
        by_state.setdefault("runnable_blocked" if blk else state, []).append(i)
        cpu = sg.get("cpu")
        cpus.append(cpu if cpu.__class__ is int else None)
    out = []
    for state in _STATES:
        idx = by_state.get(state)
        if not idx:
            continue
        label = _esc(STATE_LABELS.get(state, state))
        x = np.round(dur_ms[idx], 4)
        if state == "runnable_blocked":
            cd = [(f"{d:.3f}", _cpu_text(cpus[i]), blockers[i]) for d, i in zip(x.tolist(), idx)]
            hover = HOVER_BLOCKED
        else:
            cd, hover = _hover_numbers(x, [cpus[i] for i in idx]), HOVER
        out.append(dict(  # a dict, not go.Bar: go.Figure would deep-copy a built trace's arrays
            type="bar", name=STATE_LABELS[state], legendgroup=state, showlegend=state not in legend, orientation="h",
            y=[lanes[segs[i]["tid"]] for i in idx], x=x,
            base=np.round(start_ms[idx], 4).tolist(), customdata=cd, hovertemplate=hover.replace("{state}", label),
            marker={"color": STATE_COLORS[state], "line": {"width": 0}}, width=0.8, meta=f"{prefix}{state}",
        ))
        legend.add(state)
    return out


def _cpu_text(cpu) -> str:
    return "?" if cpu is None else str(cpu)


def _hover_numbers(dur: np.ndarray, cpus: list):
    """customdata of the segments of one state: (duration ms, CPU) as an n x 2 float array
    (plotly's typed array: ~21 bytes of JSON a segment), or as strings where a CPU is unknown
    ("?")."""
    if None in cpus:
        return [(f"{d:.3f}", _cpu_text(c)) for d, c in zip(dur.tolist(), cpus)]
    return np.column_stack((dur, np.array(cpus, dtype=float)))


def _column(segs: list[dict], key: str) -> np.ndarray:
    """segs' `key` as floats, 0.0 where it is missing or not a finite number (as _num)."""
    vals = [sg.get(key) for sg in segs]
    try:
        if any(v.__class__ is bool for v in vals):  # _num counts a bool as 0.0, numpy as 0/1
            raise TypeError
        col = np.array(vals, dtype=float)
    except (TypeError, ValueError):  # a None, a bool or a string somewhere: the slow way
        return np.array([_num(sg, key) for sg in segs])
    col[~np.isfinite(col)] = 0.0
    return col


def _as_arrays(traces: list) -> list:
    """The traces for go.Figure: y and customdata as string arrays (plotly copies those in one
    block; lists it walks element by element)."""
    for tr in traces:
        for k in ("y", "customdata"):
            if isinstance(tr.get(k), list):
                tr[k] = np.array(tr[k], dtype=str)
    return traces


def _stage_shapes(bd: dict, yref: str = "y", xref: str = "x") -> tuple[list, list]:
    """Stage bands across the lanes, names above them; names of narrow stages (< 15% of the window)
    are staggered over three heights so neighbours do not print over each other."""
    t0 = _num(bd.get("window") or {}, "start_s")
    span = _window_ms(bd) or 1.0
    shapes, notes = [], []
    narrow = 0
    for i, st in enumerate(s for s in bd.get("stages") or [] if isinstance(s, dict)):
        a, b = (_num(st, "start_s") - t0) * 1000.0, (_num(st, "end_s") - t0) * 1000.0
        if b <= a:
            continue
        shapes.append({"type": "rect", "xref": xref, "yref": f"{yref} domain", "x0": a, "x1": b, "y0": 0, "y1": 1,
                       "fillcolor": _STAGE_COLORS[i % len(_STAGE_COLORS)], "opacity": 0.35, "layer": "below",
                       "line": {"width": 0}})
        shift = 0
        if b - a < 0.15 * span:
            shift, narrow = 11 * (narrow % 3), narrow + 1
        name = _esc(st.get("name", "?"))
        notes.append({"xref": xref, "yref": f"{yref} domain", "x": (a + b) / 2, "y": 1.0, "yanchor": "bottom",
                      "yshift": shift, "text": name, "hovertext": f"stage {name}: {a:.1f}-{b:.1f} ms",
                      "showarrow": False, "font": {"size": 10}})
    fs = bd.get("first_sound") or {}
    if fs.get("at_s") is not None:  # the instant the first audio segment was handed over
        x = (_num(fs, "at_s") - t0) * 1000.0
        shapes.append({"type": "line", "xref": xref, "yref": f"{yref} domain", "x0": x, "x1": x, "y0": 0, "y1": 1,
                       "line": {"width": 2, "dash": "dash", "color": "#2ca02c"}})
        notes.append({"xref": xref, "yref": f"{yref} domain", "x": x, "y": 0.0, "yanchor": "top", "xanchor": "left",
                      "text": "first sound", "hovertext": f"first segment handed over at {x:.1f} ms",
                      "showarrow": False, "font": {"size": 10, "color": "#2ca02c"}})
    return shapes, notes


def _left_margin(labels) -> int:
    """Room for the lane labels (plotly's automargin cuts them in subplots): ~6.5 px a character."""
    return int(min(260, 16 + 6.5 * max((len(html.unescape(x)) for x in labels), default=8)))


def _window_ms(bd: dict) -> float:
    w = bd.get("window") or {}
    return max(0.0, (_num(w, "end_s") - _num(w, "start_s")) * 1000.0)


def timeline_figure(breakdown: dict, title: str | None = None) -> go.Figure:
    """The interactive timeline of one request. Schedstat mode (no segments) says so."""
    bd = breakdown or {}
    if bd.get("mode") == "schedstat" or not bd.get("segments"):
        fig = go.Figure()
        fig.add_annotation(text="No per-thread timeline: " + (
            "schedstat mode (no writable tracefs) has counters only" if bd.get("mode") == "schedstat"
            else "no segments in this window"), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(height=160, xaxis={"visible": False}, yaxis={"visible": False}, template=_TEMPLATE)
        return fig
    parts = _figure_parts(bd, title)
    return go.Figure(data=_as_arrays(parts["data"]), layout=parts["layout"])


def _figure_parts(bd: dict, title: str | None) -> dict:
    """timeline_figure's data (trace dicts) and layout, as plain values."""
    lanes = dict(_lanes(bd))
    shapes, notes = _stage_shapes(bd)
    order = gpu_lane_labels(bd) + list(lanes.values())
    return dict(data=_traces(bd, lanes) + gpu_traces(bd, lanes), layout=dict(
        title=_esc(title) if title else None, barmode="overlay", template=_TEMPLATE,
        height=140 + LANE_PX * len(order), margin={"l": _left_margin(order), "r": 10, "t": 104 if title else 84, "b": 40},
        shapes=shapes, annotations=notes, hovermode="closest", dragmode="zoom",
        legend=_LEGEND,
        xaxis={"title": {"text": "ms since the trace window opened"}, "range": [0, _window_ms(bd) or None],
               "showgrid": True, "zeroline": False},
        yaxis={"categoryorder": "array", "categoryarray": order[::-1], "fixedrange": True, "automargin": True},
    ))


def timeline_json(breakdown: dict) -> str:
    """timeline_figure(breakdown) as plotly's JSON (what gr.Plot sends), written from the plain
    values without building the Figure: plotly validates every property and copies every array
    on the way (22 ms against 7 for a builtin clip, on the handler thread, per request: issue 25).
    The same JSON: numeric arrays as plotly's typed-array spec, as Figure.to_json() writes them
    (tests/test_timeline_plot.py compares the two)."""
    bd = breakdown or {}
    if bd.get("mode") == "schedstat" or not bd.get("segments"):
        return pio.to_json(timeline_figure(bd), engine="json", validate=False)
    parts = _figure_parts(bd, None)
    parts["layout"] = {k: v for k, v in parts["layout"].items() if v is not None}
    parts["data"] = [{k: _typed(v) if k in _DATA_ARRAYS else v for k, v in tr.items()} for tr in parts["data"]]
    return orjson.dumps(parts, default=_json_array).decode()


# the trace properties plotly writes as typed arrays when numeric (its data-array validators); the
# others (bar `base`) stay lists
_DATA_ARRAYS = frozenset({"x", "y", "customdata", "ids"})


def _typed(v):
    if isinstance(v, np.ndarray) and v.dtype.kind in "iuf":
        return to_typed_array_spec(v)
    return v


def _json_array(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def compare_figure(a: dict, b: dict, label_a: str = "A", label_b: str = "B") -> go.Figure:
    """Two requests stacked on one time axis (ms from each window's start), zoom shared."""
    la, lb = dict(_lanes(a or {})), dict(_lanes(b or {}))
    rows = [max(1, len(la) + len(gpu_lane_labels(a or {}))), max(1, len(lb) + len(gpu_lane_labels(b or {})))]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.16,
                        row_heights=[r / sum(rows) for r in rows],
                        subplot_titles=(_esc(label_a), _esc(label_b)))
    for t in fig.layout.annotations:  # the clip names go left, above the stage names
        t.update(x=0, xanchor="left", yshift=34, font={"size": 12})
    shown: set = set()
    for i, (bd, lanes) in enumerate(((a or {}, la), (b or {}, lb)), start=1):
        for tr in _as_arrays(_traces(bd, lanes, prefix=f"{i}:", legend=shown) + gpu_traces(bd, lanes, f"{i}:", shown)):
            fig.add_trace(tr, row=i, col=1)
        order = gpu_lane_labels(bd) + list(lanes.values())
        fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], fixedrange=True,
                         automargin=True, row=i, col=1)
    shapes, notes = [], []
    for i, bd in ((1, a or {}), (2, b or {})):
        s, n = _stage_shapes(bd, yref="y" if i == 1 else "y2", xref="x" if i == 1 else "x2")
        shapes += s
        notes += n
    end = max(_window_ms(a or {}), _window_ms(b or {}))
    labels = [*la.values(), *lb.values()]
    fig.update_layout(barmode="overlay", template=_TEMPLATE, height=200 + LANE_PX * sum(rows),
                      margin={"l": _left_margin(labels), "r": 10, "t": 120, "b": 40}, hovermode="closest", dragmode="zoom",
                      legend=_LEGEND)
    for s in shapes:
        fig.add_shape(s)
    for n in notes:
        fig.add_annotation(n)
    fig.update_xaxes(range=[0, end or None], showgrid=True, zeroline=False)
    fig.update_xaxes(title_text="ms since each trace window opened", row=2, col=1)
    return fig
