"""Images of a snapshot summary and of a diff: per-metric distributions side by side.

One panel per metric (values in ms; a snapshot whose requests have a device view adds the GPU
idle and host_wait shares in %, tracing/snapshot_gpu.py); in each panel a box plot per preset
(summary) or per preset x {old, new} (diff), with every request drawn as a dot over its box, since
N is small and the individual requests are the evidence. Diff panels whose metric regressed
(median or tail) are titled in red.

Uses matplotlib's object API (`Figure` + Agg canvas, no pyplot): no global state, safe in the
web server's worker threads.
"""
from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tracing.diff import METRICS, DiffResult, metric_values
from tracing.snapshot_gpu import share_panels

PLOTTED = ("wall", "runqueue_wait", "on_cpu", "blocked_io", "sleep", "irq", "softirq", "wakeup_p95")
OLD_COLOR, NEW_COLOR, BAD = "#7f8c8d", "#2e86c1", "#c0392b"


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return (n + cols - 1) // cols, cols


def _strip(ax, pos: float, vals, color) -> None:
    if not vals:
        return
    rng = np.random.default_rng(len(vals))  # fixed jitter: the same data draws the same picture
    x = pos + rng.uniform(-0.12, 0.12, len(vals))
    ax.scatter(x, vals, s=12, color=color, alpha=0.8, zorder=3, edgecolors="none")


def _box(ax, data, positions, colors) -> None:
    keep = [(d, p, c) for d, p, c in zip(data, positions, colors) if d]
    if not keep:
        return
    bp = ax.boxplot([d for d, _, _ in keep], positions=[p for _, p, _ in keep], widths=0.5,
                    patch_artist=True, showfliers=False, medianprops={"color": "black"})
    for patch, (_, _, c) in zip(bp["boxes"], keep):
        patch.set_facecolor(c)
        patch.set_alpha(0.35)


def summary_figure(snap, metrics=PLOTTED) -> Figure:
    presets = list(snap.samples)
    metrics = [m for m in metrics if any(metric_values(snap.samples[p], m) for p in presets)] or ["wall"]
    panels = [(METRICS[m][0], lambda ss, m=m: [v * 1000 for v in metric_values(ss, m)]) for m in metrics]
    gpu = share_panels(snap.samples)  # GPU idle / host_wait shares in %, only with a device view
    panels += gpu
    rows, cols = _grid(len(panels))
    fig = Figure(figsize=(3.4 * cols, 2.9 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    title = snap.manifest.get("label") or str(getattr(snap, "path", ""))
    fig.suptitle(f"Snapshot {title}: per-request distributions (ms{'; GPU shares in %' if gpu else ''})",
                 fontsize=10)
    for k, (label, values) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        data = [values(snap.samples[p]) for p in presets]
        pos = list(range(1, len(presets) + 1))
        _box(ax, data, pos, [NEW_COLOR] * len(presets))
        for d, p in zip(data, pos):
            _strip(ax, p, d, NEW_COLOR)
        ax.set_xticks(pos, presets, rotation=20, fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    return fig


def diff_figure(old, new, result: DiffResult, metrics=PLOTTED) -> Figure:
    presets = [p for p in old.samples if p in new.samples]
    verdict = {(r["preset"], r["metric"]): r["verdict"] for r in result.rows}
    tail = {(r["preset"], r["metric"]): r.get("tail_verdict") for r in result.rows}
    metrics = [m for m in metrics if any(metric_values(s.samples[p], m) for s in (old, new) for p in presets)] or ["wall"]
    rows, cols = _grid(len(metrics))
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    bad = "REGRESSION" if result.has_regression else "no significant regression"
    fig.suptitle(f"Diff: old (grey) vs new (blue), ms per request: {bad}", fontsize=10,
                 color=BAD if result.has_regression else "black")
    for k, m in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, k + 1)
        data, pos, colors, ticks = [], [], [], []
        for j, p in enumerate(presets):
            base = 1 + 3 * j
            for off, snap, c in ((0, old, OLD_COLOR), (1, new, NEW_COLOR)):
                data.append([v * 1000 for v in metric_values(snap.samples[p], m)])
                pos.append(base + off)
                colors.append(c)
            ticks.append(base + 0.5)
        _box(ax, data, pos, colors)
        for d, p, c in zip(data, pos, colors):
            _strip(ax, p, d, c)
        ax.set_xticks(ticks, presets, rotation=20, fontsize=7)
        regressed = [p for p in presets if verdict.get((p, m)) == "regression"]
        tailed = [p for p in presets if tail.get((p, m)) == "regression"]
        title = METRICS[m][0] + (" (REGRESSION: " + ", ".join(regressed) + ")" if regressed else "")
        title += " (TAIL REGRESSION: " + ", ".join(tailed) + ")" if tailed else ""
        ax.set_title(title, fontsize=9 if len(title) < 40 else 7, color=BAD if regressed or tailed else "black")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    return fig


def series_figure(series: dict | None, metrics=("wall", "runqueue_wait")) -> Figure:
    """A periodic series (tracing/series.py): p50 and p95 over time, one panel per preset x
    metric; the pinned baseline is a dashed line, snapshots whose verdict flagged that preset and
    metric (median or tail) are red crosses."""
    import datetime as dt

    entries = (series or {}).get("entries") or []
    presets = sorted({p for e in entries for p in (e.get("points") or {})}) or ["(none)"]
    fig = Figure(figsize=(4.2 * len(metrics), 2.6 * len(presets) + 0.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    base = (series or {}).get("baseline")
    fig.suptitle(f"Snapshot series: {len(entries)} snapshot(s), baseline {base or '-'} (ms)", fontsize=10)

    def when(e):
        try:
            return dt.datetime.fromisoformat(e.get("created") or "")
        except ValueError:
            return None

    for i, p in enumerate(presets):
        for j, m in enumerate(metrics):
            ax = fig.add_subplot(len(presets), len(metrics), i * len(metrics) + j + 1)
            pts = [(when(e), ((e.get("points") or {}).get(p) or {}).get(m), e) for e in entries]
            pts = [(t, v, e) for t, v, e in pts if t is not None and v]
            for q, style in (("p50", "-o"), ("p95", "--s")):
                xs = [t for t, v, _ in pts if v.get(q) is not None]
                ys = [v[q] * 1000 for _, v, _ in pts if v.get(q) is not None]
                if xs:
                    ax.plot(xs, ys, style, ms=3, lw=1, color=NEW_COLOR if q == "p50" else OLD_COLOR, label=q)
            for t, v, e in pts:
                rows = ((e.get("verdict") or {}).get("rows") or [])
                if any(r["preset"] == p and r["metric"] == m and "regression" in (r["verdict"], r["tail_verdict"])
                       for r in rows) and v.get("p95") is not None:
                    ax.plot([t], [v["p95"] * 1000], "x", color=BAD, ms=9, mew=2)
                if e.get("name") == base:
                    ax.axvline(t, color="black", ls=":", lw=1)
            ax.set_title(f"{p}: {METRICS[m][0]}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if pts:
                ax.legend(fontsize=7, loc="upper left")
            for lab in ax.get_xticklabels():
                lab.set_rotation(20)
    return fig


def series_png(series: dict | None) -> bytes:
    return to_png(series_figure(series))


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def summary_png(snap) -> bytes:
    return to_png(summary_figure(snap))


def diff_png(old, new, result: DiffResult) -> bytes:
    return to_png(diff_figure(old, new, result))
