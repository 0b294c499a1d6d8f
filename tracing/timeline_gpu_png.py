"""GPU lanes of the PNG timeline (tracing/timeline.py), drawn with matplotlib from the same bars as
the interactive picture's (tracing/timeline_gpu.gpu_bars, from the breakdown's `device` section),
on the threads' time axis (ms since the window opened):

- an axis of two lanes between the stage band and the threads: "GPU <n> busy" (kernel, memcpy and
  memset intervals merged across streams) and "GPU <n> idle" (the idle gaps coloured by class:
  host_wait, kernel_wait, other, no_gpu_work; tracing/device.py defines them);
- a strip along the top of a thread's own lane for its time inside a synchronizing CUDA call
  ("waiting for the GPU"), over the thread's state, so spinning shows green under it;
- the device headline (how idle, how much of it waited for the host, and the kernel's reason)
  under the title, and a legend row for the GPU colours.
A breakdown without a captured device view (a CPU engine, --device-view off or cpu, a window with
no GPU activity) gets none of these: tracing/timeline.py then draws the figure it drew before.
"""
from __future__ import annotations

from matplotlib.patches import Patch

from .mdsafe import mpl_text
from .timeline_gpu import GPU_COLORS, gpu_bars, gpu_lane_labels

GPU_LANE_IN = 0.3      # one GPU lane's height in inches (a thread lane is 0.42)
HEADLINE_IN = 0.2      # the headline line under the title
HEADLINE_TOP_IN = 0.27  # where it starts, from the figure's top: under the 9.5 pt suptitle
LEGEND_ROW_IN = 0.22   # the GPU legend row above the states' legend
_WAIT_STRIP = (0.2, 0.15)  # (offset from the lane's centre, height): the top of a thread's 0.7 bar
# GPU_LABELS cut to fit one legend row of the 12 in figure (the interactive legend has room for them)
SHORT_LABELS = {"busy": "GPU busy", "host_wait": "GPU idle: waiting for the host",
                "kernel_wait": "idle: between queued kernels", "other": "idle: other",
                "no_gpu_work": "idle: no more GPU work", "gpu_wait": "thread waiting for the GPU"}


def extra_height_in(bd: dict) -> tuple[float, float, float]:
    """(GPU axis, top, bottom) inches the GPU parts add to the figure; zeros without them."""
    n = len(gpu_lane_labels(bd))
    return (GPU_LANE_IN * n, HEADLINE_IN, LEGEND_ROW_IN) if n else (0.0, 0.0, 0.0)


def draw_gpu(fig, ax_gpu, ax, bd: dict, lane_of: dict, n: int, height_in: float) -> None:
    """Draw the GPU lanes on ax_gpu, the threads' GPU waits on ax (thread lane i at y = n - 1 - i,
    `lane_of`: tid -> i), the headline under the title and the legend row. Call only when
    gpu_lane_labels(bd) is not empty."""
    labels = gpu_lane_labels(bd)
    bars = gpu_bars(bd, lane_of)
    y_of = {labels[0]: 1, labels[1]: 0}  # busy on top, idle next to the threads
    for kind, rows in bars.items():
        if kind == "gpu_wait":
            off, h = _WAIT_STRIP
            by_lane: dict[int, list] = {}
            for lane, x0, w, _ in rows:
                by_lane.setdefault(lane, []).append((x0, w))
            for lane, xs in by_lane.items():
                ax.broken_barh(xs, (n - 1 - lane + off, h), facecolors=GPU_COLORS[kind], edgecolors="none",
                               zorder=3)
            continue
        for lane in (labels[0], labels[1]):
            xs = [(x0, w) for ln, x0, w, _ in rows if ln == lane and w > 0]
            if xs:
                ax_gpu.broken_barh(xs, (y_of[lane] - 0.35, 0.7), facecolors=GPU_COLORS[kind], edgecolors="none",
                                   zorder=2)
    ax_gpu.set_ylim(-0.6, 1.6)
    ax_gpu.set_yticks([0, 1], [mpl_text(labels[1]), mpl_text(labels[0])], fontsize=8)
    ax_gpu.tick_params(axis="x", labelbottom=False)
    ax_gpu.grid(axis="x", color="#bbbbbb", linewidth=0.4, zorder=1)
    for side in ("top", "right"):
        ax_gpu.spines[side].set_visible(False)
    dv = bd.get("device") or {}
    if dv.get("headline"):
        fig.text(0.01, 1 - HEADLINE_TOP_IN / height_in, mpl_text(dv["headline"]), fontsize=7.5, ha="left", va="top",
                 color="#333333")
    handles = [Patch(facecolor=GPU_COLORS[k], edgecolor="#999999" if k == "no_gpu_work" else "none",
                     label=SHORT_LABELS[k]) for k in GPU_COLORS if k in bars]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, LEGEND_ROW_IN / height_in))
