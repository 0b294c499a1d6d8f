"""GPU share columns of a snapshot's summary table and picture (tracing/snapshot_gpu.py), from
request summaries whose device sections the real analysis computed on the hand-laid request
(tests/device_samples.py): GPU idle 570 of 1000 ms, host_wait 270 ms; the same request with its
window 500 ms longer (no more GPU work after 750 ms) is idle 1070 of 1500 ms, host_wait 270 ms.
Presets without a device view show "-"; a snapshot without one has neither columns nor panels."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests import device_samples as S
from tracing import clock as C
from tracing import device as D
from tracing import kineto as K
from tracing import plots
from tracing import snapshot as SN
from tracing import snapshot_gpu as G


def _record(window_end=101.0, device=True) -> dict:
    bd = S.breakdown()
    bd["window"].update(end_s=window_end, duration_s=window_end - 100.0)
    if device:
        bd["device"] = D.device_section(K.parse_profile(S.profile(), {S.NS_TID: S.TID}), bd, C.alignment(bd["markers"]))
    else:
        bd["device"] = D.absent("the serving engine runs on cpu: there is no GPU side to profile")
    return {"wall_s": window_end - 100.0, "breakdown": bd, "findings": []}


def _snap(samples) -> SimpleNamespace:
    return SimpleNamespace(path="snap", manifest={"label": "gpu"}, samples=samples)


IDLE = [0.57, 1.07 / 1.5, 0.57]     # planted: per request, GPU idle / window
HOST = [0.27, 0.27 / 1.5, 0.27]     # host_wait / window


def test_share_values_are_the_planted_shares():
    rs = [_record(), _record(101.5), _record()]
    assert G.share_values(rs, "gpu_idle_share") == pytest.approx(IDLE, abs=1e-4)
    assert G.share_values(rs, "gpu_host_wait_share") == pytest.approx(HOST, abs=1e-4)
    cpu_view = _record()
    cpu_view["breakdown"]["device"]["device"] = None  # --device-view cpu: captured, no GPU activity
    assert G.share_values([_record(device=False), cpu_view, {"wall_s": 1.0, "breakdown": None}],
                          "gpu_idle_share") == []


def test_summary_table_has_gpu_columns_per_preset():
    snap = _snap({"cuda": [_record(), _record(101.5), _record()], "cpu": [_record(device=False)] * 2})
    head = SN.summary_head(snap)
    assert head == SN.SUMMARY_HEAD + ["GPU idle p50 %", "GPU idle p95 %", "host_wait p50 %", "host_wait p95 %"]
    rows = {r[0]: r for r in SN.summary_table(snap)}
    assert all(len(r) == len(head) for r in rows.values())
    gpu = dict(zip(head, rows["cuda"]))
    want = {"GPU idle p50 %": np.percentile(IDLE, 50), "GPU idle p95 %": np.percentile(IDLE, 95),
            "host_wait p50 %": np.percentile(HOST, 50), "host_wait p95 %": np.percentile(HOST, 95)}
    for col, v in want.items():
        assert float(gpu[col]) == pytest.approx(v * 100, abs=0.051), col
    assert gpu["GPU idle p50 %"] == "57.0" and gpu["host_wait p95 %"] == "27.0"
    assert rows["cpu"][-4:] == ["-"] * 4  # no device view in that preset: no value, not 0
    text = SN.format_summary(snap)
    assert "host_wait p95 %" in text.splitlines()[3]
    cuda_line = next(line for line in text.splitlines() if line.startswith("cuda"))
    assert cuda_line.split()[-4:] == [rows["cuda"][i] for i in range(-4, 0)]


def test_no_device_view_no_gpu_columns():
    cpu_view = _record()
    cpu_view["breakdown"]["device"]["device"] = None
    snap = _snap({"default": [_record(device=False)] * 3, "pinned": [cpu_view]})
    assert SN.summary_head(snap) == SN.SUMMARY_HEAD
    assert all(len(r) == len(SN.SUMMARY_HEAD) for r in SN.summary_table(snap))
    assert "GPU" not in SN.format_summary(snap)
    titles = [ax.get_title() for ax in plots.summary_figure(snap).axes]
    assert not [t for t in titles if "GPU" in t]


def test_summary_picture_has_gpu_share_panels():
    snap = _snap({"cuda": [_record(), _record(101.5), _record()], "cpu": [_record(device=False)] * 2})
    fig = plots.summary_figure(snap)
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert {"GPU idle (% of window)", "GPU host_wait (% of window)"} <= set(axes)
    assert "GPU shares in %" in fig.get_suptitle()
    for title, want in (("GPU idle (% of window)", IDLE), ("GPU host_wait (% of window)", HOST)):
        dots = np.concatenate([c.get_offsets()[:, 1] for c in axes[title].collections if len(c.get_offsets())])
        assert sorted(dots) == pytest.approx(sorted(v * 100 for v in want), abs=0.01)  # the cpu preset has none
    assert plots.summary_png(snap)[:8] == b"\x89PNG\r\n\x1a\n"
