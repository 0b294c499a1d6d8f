"""Images of a snapshot summary and of a diff: per-metric distributions side by side.

One panel per metric (values in ms); in each panel a box plot per preset (summary) or per
preset x {old, new} (diff), with every request drawn as a dot over its box, since N is small and
the individual requests are the evidence. Diff panels whose metric regressed (median or tail)
are titled in red.

Uses matplotlib's object API (`Figure` + Agg canvas, no pyplot): no global state, safe in the
web server's worker threads.
"""
from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tracing.diff import METRICS, DiffResult, metric_values

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
    rows, cols = _grid(len(metrics))
    fig = Figure(figsize=(3.4 * cols, 2.9 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    title = snap.manifest.get("label") or str(getattr(snap, "path", ""))
    fig.suptitle(f"Snapshot {title}: per-request distributions (ms)", fontsize=10)
    for k, m in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, k + 1)
        data = [[v * 1000 for v in metric_values(snap.samples[p], m)] for p in presets]
        pos = list(range(1, len(presets) + 1))
        _box(ax, data, pos, [NEW_COLOR] * len(presets))
        for d, p in zip(data, pos):
            _strip(ax, p, d, NEW_COLOR)
        ax.set_xticks(pos, presets, rotation=20, fontsize=7)
        ax.set_title(METRICS[m][0], fontsize=9)
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


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def summary_png(snap) -> bytes:
    return to_png(summary_figure(snap))


def diff_png(old, new, result: DiffResult) -> bytes:
    return to_png(diff_figure(old, new, result))
