"""Timeline PNG: decodes, sized to the lanes, lanes and states drawn; schedstat summary; GPU lanes
from the hand-laid device request (tests/device_samples.py), read back from the figure's artists;
task names that would be mathtext draw as written."""
from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

from matplotlib.colors import to_hex

from breakdown_samples import contended, healthy, many_segments, schedstat
from tests import device_samples as S
from tracing import clock as C
from tracing import device as D
from tracing import kineto as K
from tracing import timeline as T
from tracing.timeline_gpu import GPU_COLORS


def _img(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    im = Image.open(io.BytesIO(data))
    im.load()
    return np.asarray(im.convert("RGB"))


def _has_color(a: np.ndarray, hex_color: str, min_px: int = 50) -> bool:
    rgb = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return int((np.abs(a.astype(int) - rgb).sum(axis=2) < 12).sum()) >= min_px


def test_png_decodes_with_states_and_writes_file(tmp_path):
    out = tmp_path / "t.png"
    data = T.render_timeline(contended(), out)
    assert out.read_bytes() == data
    a = _img(data)
    assert a.shape[1] == int(T.WIDTH_IN * T.DPI) and 150 < a.shape[0] < 600
    assert _has_color(a, T.STATE_COLORS["running"])
    assert _has_color(a, T.STATE_COLORS["runnable_blocked"])  # the noisyneighbour wait
    assert _has_color(a, T.STATE_COLORS["sleep"])


def test_lanes_grow_and_fold():
    h2 = _img(T.render_timeline(healthy(), None)).shape[0]
    many = many_segments(n_threads=12)
    h8 = _img(T.render_timeline(many, None)).shape[0]
    assert h8 > h2 + 100  # one lane per thread, capped
    lanes = T._lanes(many, T.MAX_LANES)
    assert len(lanes) == T.MAX_LANES
    assert lanes[-1][0] == "5 other threads" and len(lanes[-1][1]) == 5
    assert lanes[0][0] == "worker-11 4253"  # busiest first
    assert len(T._lanes(healthy(), T.MAX_LANES)) == 2


def test_blocker_formats():
    assert T._blocker_label("kworker/0:1:12") == "kworker/0:1:12"
    assert T._blocker_label({"comm": "noisy", "pid": 7}) == "noisy:7"
    assert T._blocker_label(None) is None
    bd = contended()
    bd["segments"][1]["blocker"] = {"comm": "noisyneighbour", "pid": 777}
    assert _has_color(_img(T.render_timeline(bd, None)), T.STATE_COLORS["runnable_blocked"])


def test_schedstat_mode():
    a = _img(T.render_timeline(schedstat(), None))
    assert _has_color(a, T.STATE_COLORS["running"]) and _has_color(a, T.STATE_COLORS["runnable"], 10)
    assert not _has_color(a, T.STATE_COLORS["runnable_blocked"], 1)


def test_empty_and_partial():
    _img(T.render_timeline({}, None))
    bd = healthy()
    bd["segments"] = []
    bd["stages"] = []
    _img(T.render_timeline(bd, None))


def test_concurrent_renders_do_not_interfere():
    results, errors = {}, []

    def run(i):
        try:
            results[i] = T.render_timeline(contended() if i % 2 else schedstat(), None)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert results[1] == results[3] and results[0] == results[2]


# --- GPU lanes ---------------------------------------------------------------------------------

def _with_device(bd=None) -> dict:
    bd = bd or S.breakdown()
    bd["device"] = D.device_section(K.parse_profile(S.profile(), {S.NS_TID: S.TID}), bd, C.alignment(bd["markers"]))
    return bd


def _bars(ax) -> dict[str, list[tuple[float, float, float]]]:
    """{colour: [(x0 ms, x1 ms, y centre)]} of the broken_barh rectangles drawn on ax."""
    out: dict[str, list] = {}
    for coll in ax.collections:
        color = to_hex(coll.get_facecolor()[0])
        for path in coll.get_paths():
            v = path.vertices
            out.setdefault(color, []).append((v[:, 0].min(), v[:, 0].max(), (v[:, 1].min() + v[:, 1].max()) / 2))
    return out


def _spans(bars, color, y):
    return sorted((round(a, 3), round(b, 3)) for a, b, yc in bars.get(color, []) if abs(yc - y) < 0.3)


def test_gpu_lanes_on_the_threads_time_axis():
    fig = T._timeline_figure(_with_device(), T.MAX_LANES)
    ax_st, ax_gpu, ax = fig.axes[:3]
    assert [t.get_text() for t in ax_gpu.get_yticklabels()] == ["GPU 0 idle", "GPU 0 busy"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tts-synth 500"]
    assert ax_gpu.get_xlim() == ax.get_xlim() == (0.0, 1000.0)  # one time axis, ms from the window start
    g = _bars(ax_gpu)
    # the sample's truth (device_samples docstring), ms from 100.0: busy lane at y=1, idle at y=0
    assert _spans(g, GPU_COLORS["busy"], 1) == [(50, 300), (520, 550), (550.01, 600), (650, 750)]
    assert _spans(g, GPU_COLORS["host_wait"], 0) == [(0, 50), (300, 520)]
    assert _spans(g, GPU_COLORS["kernel_wait"], 0) == [(550, 550.01)]
    assert _spans(g, GPU_COLORS["other"], 0) == [(600, 650)]
    assert _spans(g, GPU_COLORS["no_gpu_work"], 0) == [(750, 1000)]
    # the thread's wait inside cudaStreamSynchronize: a strip over its own lane, above its sleep
    t = _bars(ax)
    assert [(round(a, 3), round(b, 3)) for a, b, _ in t[GPU_COLORS["gpu_wait"]]] == [(600, 800)]
    assert _spans(t, T.STATE_COLORS["runnable_blocked"], 0) == [(300, 500)]  # the hog, under the host_wait gap
    texts = [x.get_text() for x in fig.texts]
    assert any("270 ms of it waited for the host" in x and "hog:77" in x for x in texts)  # the headline
    legend = {x.get_text() for lg in fig.legends for x in lg.get_texts()}
    assert {"GPU busy", "GPU idle: waiting for the host", "thread waiting for the GPU", "running (on CPU)"} <= legend
    a = _img(T.render_timeline(_with_device(), None))
    assert _has_color(a, GPU_COLORS["busy"]) and _has_color(a, GPU_COLORS["host_wait"])
    assert a.shape[0] > _img(T.render_timeline(S.breakdown(), None)).shape[0]  # the lanes take room


def test_no_device_view_draws_as_before():
    plain = T._timeline_figure(S.breakdown(), T.MAX_LANES)
    assert len(plain.axes) == 2 and [t.get_text() for t in plain.axes[1].get_yticklabels()] == ["tts-synth 500"]
    assert not set(_bars(plain.axes[1])) & set(GPU_COLORS.values())
    assert not {x.get_text() for lg in plain.legends for x in lg.get_texts()} & {"GPU busy"}
    before = T.render_timeline(S.breakdown(), None)
    for dv in (D.absent("the serving engine runs on cpu: there is no GPU side to profile"),
               {"status": "failed", "why": "x"}, dict(_with_device()["device"], device=None)):  # cpu activity
        bd = S.breakdown()
        bd["device"] = dv
        assert T.render_timeline(bd, None) == before


def test_task_names_are_not_mathtext():
    """A task may name itself 'a$x^{$' (prctl): matplotlib would parse it as mathtext and the
    whole render failed. Lane labels, blocker labels, stage names and the GPU headline draw as written."""
    evil = "a$x^{$"
    bd = _with_device()
    bd["threads"][0]["comm"] = evil
    bd["segments"][1]["blocker"] = evil + ":77"
    bd["stages"][0]["name"] = evil
    bd["device"]["headline"] += " " + evil
    _img(T.render_timeline(bd, None))
    fig = T._timeline_figure(bd, T.MAX_LANES)
    drawn = [t._preprocess_math(t.get_text()) for ax in fig.axes for t in ax.get_yticklabels() + ax.texts]
    drawn += [t._preprocess_math(t.get_text()) for t in fig.texts]
    assert (evil + " 500", False) in drawn and (evil + " 500 ms", False) in drawn  # literal text, not math
    assert any(s.startswith(evil + ":77") and not m for s, m in drawn)
    assert any(s.endswith(" " + evil) and not m for s, m in drawn)
    st = schedstat()
    st["threads"][0]["comm"] = evil
    _img(T.render_timeline(st, None))
