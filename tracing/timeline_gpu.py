"""GPU lanes of the timelines, from the breakdown's `device` section (tracing/device.py), on the
threads' time axis (ms since the window opened). `gpu_bars` says what is drawn, once, for both
pictures: the interactive one (`gpu_traces` here, for tracing/timeline_plot.py) and the PNG
(tracing/timeline_gpu_png.py):

- lane "GPU <n> busy": the merged kernel/memcpy intervals;
- lane "GPU <n> idle": the idle gaps coloured by class (host_wait, kernel_wait, other, no_gpu_work);
  a host_wait gap's hover says what the launching thread was doing meanwhile (the kernel's reason);
- "waiting for the GPU": a thin bar over a thread's own lane for its time inside a synchronizing
  CUDA call (cudaStreamSynchronize, ...), drawn over the thread's state (spinning shows green under it).
Same conventions as the thread lanes: one bar trace per kind, details in customdata, strings escaped.
"""
from __future__ import annotations

import html

import numpy as np

GPU_COLORS = {"busy": "#1f5fa8", "host_wait": "#e4572e", "kernel_wait": "#9aa5b1", "other": "#c9b8e8",
              "no_gpu_work": "#eeeeee", "gpu_wait": "#17becf"}
GPU_LABELS = {"busy": "GPU busy (kernels, copies)", "host_wait": "GPU idle: waiting for the host",
              "kernel_wait": "GPU idle: between queued kernels", "other": "GPU idle: other",
              "no_gpu_work": "GPU idle: no more GPU work", "gpu_wait": "thread waiting for the GPU (synchronize)"}


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def gpu_lane_labels(bd: dict) -> list[str]:
    """The GPU lanes' labels (top of the figure), [] without a captured device view."""
    dv = (bd or {}).get("device") or {}
    if dv.get("status") != "captured" or dv.get("device") is None:
        return []
    return [f"GPU {dv['device']} busy", f"GPU {dv['device']} idle"]


def _host_text(g: dict) -> str:
    h = g.get("host") or {}
    parts = [f"{k[:-2].replace('_', ' ')} {h[k] * 1e3:.2f} ms" for k in
             ("running_s", "runnable_s", "blocked_io_s", "sleep_s", "irq_s", "softirq_s") if h.get(k)]
    who = f"; CPU held by {h['blocker']}" if h.get("blocker") else ""
    return f"launch tid {g.get('tid')}: " + (", ".join(parts) or "not seen") + who


def gpu_bars(bd: dict, lanes: dict) -> dict[str, list[tuple]]:
    """{kind: [(lane, start_ms, dur_ms, detail)]} for every kind of GPU_COLORS that has bars, in
    GPU_COLORS order; {} without a captured device view. `lanes`: tid -> the thread's lane
    (any key: a label here, an index in the PNG); a "waiting for the GPU" interval goes on its
    thread's lane, the rest on the lanes named by gpu_lane_labels (busy, idle)."""
    dv = (bd or {}).get("device") or {}
    labels = gpu_lane_labels(bd)
    if not labels:
        return {}
    t0 = float(((bd.get("window") or {}).get("start_s")) or 0.0)
    out: dict[str, list[tuple]] = {k: [] for k in GPU_COLORS}

    def add(kind, lane, a, b, detail):
        out[kind].append((lane, (a - t0) * 1e3, max(0.0, (b - a) * 1e3), detail))
    for a, b in dv.get("busy") or []:
        add("busy", labels[0], a, b, "-")
    for g in dv.get("gaps") or []:
        if g.get("class") in GPU_COLORS:
            add(g["class"], labels[1], g["start_s"], g["end_s"], _host_text(g) if g["class"] == "host_wait" else "-")
    for w in (dv.get("gpu_waits") or {}).get("intervals") or []:
        if w.get("tid") in lanes:
            add("gpu_wait", lanes[w["tid"]], w["start_s"], w["end_s"], w.get("call", "?"))
    return {k: v for k, v in out.items() if v}


def gpu_traces(bd: dict, lanes: dict, prefix: str = "", legend: set | None = None) -> list:
    """Bar traces of the GPU lanes and the threads' GPU waits. `lanes`: tid -> thread lane label."""
    legend = set() if legend is None else legend
    cols: dict[str, dict] = {}
    for kind, bars in gpu_bars(bd, lanes).items():
        c = cols[kind] = {"y": [], "base": [], "x": [], "cd": []}
        for lane, start, dur, detail in bars:
            c["y"].append(lane), c["base"].append(round(start, 4)), c["x"].append(round(dur, 4))
            c["cd"].append((lane, GPU_LABELS[kind], f"{start:.3f}", f"{dur:.3f}", "-", _esc(detail)))
    out = []
    for kind, c in cols.items():
        if not c["x"]:
            continue
        out.append(dict(type="bar", name=GPU_LABELS[kind], legendgroup=f"gpu-{kind}",
                        showlegend=f"gpu-{kind}" not in legend, orientation="h", y=np.array(c["y"], dtype=str),
                        x=np.array(c["x"]), base=np.array(c["base"]), customdata=np.array(c["cd"], dtype=str),
                        hovertemplate=("%{customdata[0]}<br>%{customdata[1]}<br>start: %{customdata[2]} ms"
                                       "<br>duration: %{customdata[3]} ms<br>%{customdata[5]}<extra></extra>"),
                        marker={"color": GPU_COLORS[kind], "line": {"width": 0}},
                        width=0.3 if kind == "gpu_wait" else 0.8, meta=f"{prefix}gpu-{kind}"))
        legend.add(f"gpu-{kind}")
    return out
