"""Timeline PNG: decodes, sized to the lanes, lanes and states drawn; schedstat summary."""
from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

from breakdown_samples import contended, healthy, many_segments, schedstat
from tracing import timeline as T


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


def test_task_names_are_not_mathtext():
    """A task may name itself 'a$x^{$' (prctl): matplotlib would parse it as mathtext and the
    whole render failed. Lane labels, blocker labels and stage names draw as written."""
    evil = "a$x^{$"
    bd = contended()
    bd["threads"][0]["comm"] = evil
    bd["segments"][1]["blocker"] = evil + ":77"
    bd["stages"][0]["name"] = evil
    _img(T.render_timeline(bd, None))
    fig = T._timeline_figure(bd, T.MAX_LANES)
    drawn = [t._preprocess_math(t.get_text()) for ax in fig.axes for t in ax.get_yticklabels() + ax.texts]
    assert (evil + " 4242", False) in drawn and any(s.startswith(evil) and not m for s, m in drawn if "ms" in s)
    assert any(s.startswith(evil + ":77") and not m for s, m in drawn)
    st = schedstat()
    st["threads"][0]["comm"] = evil
    _img(T.render_timeline(st, None))
