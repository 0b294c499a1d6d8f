"""Interactive timeline (Plotly): lanes, states, blockers, stage bands, hover fields, escaping, size."""
from __future__ import annotations

import json

from breakdown_samples import contended, healthy, many_segments, schedstat, with_
from tracing import timeline_plot as P


def _bars(fig):
    return {tr.meta: tr for tr in fig.data}


def test_one_clip_lanes_states_blocker_and_stages():
    bd = contended()
    bd["threads"][0]["role"] = "synthesis"
    fig = P.timeline_figure(bd, "clip 1")
    bars = _bars(fig)
    assert set(bars) == {"running", "sleep", "runnable_blocked"}
    # lanes: one per thread, synthesis on top (categoryarray is bottom-to-top)
    assert list(fig.layout.yaxis.categoryarray) == ["worker-1 4243", "python3 4242"]
    rb = bars["runnable_blocked"]
    assert list(rb.base) == [300.0] and list(rb.x) == [400.0]  # ms from the window start
    assert list(rb.y) == ["python3 4242"] and list(rb.customdata[0]) == ["400.000", "0", "noisyneighbour:777"]
    assert rb.marker.color == "#d62728"
    assert rb.hovertemplate == ("%{y}<br>state: runnable, CPU held by another task<br>start: %{base:.3f} ms"
                                "<br>duration: %{customdata[0]:.3f} ms<br>CPU: %{customdata[1]}"
                                "<br>blocker: %{customdata[2]}<extra></extra>")
    run = bars["running"]  # a segment's duration and CPU as numbers; the state is the trace's
    assert run.customdata.dtype.kind == "f" and run.customdata.tolist() == [[900.0, 0.0], [500.0, 0.0]]
    assert "state: running (on CPU)" in run.hovertemplate and "CPU: %{customdata[1]}<br>blocker: -" in run.hovertemplate
    # stage bands with their names
    band = fig.layout.shapes[0]
    assert [round(band.x0), round(band.x1)] == [0, 200] and len(fig.layout.shapes) == 2
    assert [a.text for a in fig.layout.annotations] == ["text", "vocoder"]
    assert list(fig.layout.xaxis.range) == [0, 1000.0]
    assert fig.layout.dragmode == "zoom" and fig.layout.hovermode == "closest"


def test_kernel_strings_are_escaped():
    bad = "<img src=x onerror=alert(1)>"
    bd = contended()
    bd["threads"][1]["comm"] = bad
    bd["segments"][1]["blocker"] = f"{bad}:777"
    bd["stages"][0]["name"] = "<b>x</b>"
    doc = json.dumps(P.timeline_figure(bd).to_plotly_json(), default=str)
    assert "<img" not in doc and "&lt;img src=x onerror=alert(1)&gt;" in doc
    assert "&lt;b&gt;x&lt;/b&gt;" in doc


def test_4000_segments_in_few_traces():
    bd = many_segments(n_threads=12, n_segments=4000)
    fig = P.timeline_figure(bd)
    assert len(fig.data) <= 5
    assert sum(len(tr.x) for tr in fig.data) == len(bd["segments"]) == 3996
    assert len(fig.layout.yaxis.categoryarray) == 12
    assert len(fig.to_json()) < 1_000_000


def test_compare_puts_both_on_one_time_scale():
    a = healthy(wall=0.5)
    b = with_(contended(), **{"window.start_s": 5000.0, "window.end_s": 5001.0})
    t = 5000.0 - 1000.0  # b's segments move with its window: same relative times
    for sg in b["segments"]:
        sg["start_s"] += t
        sg["end_s"] += t
    for st in b["stages"]:
        st["start_s"] += t
        st["end_s"] += t
    fig = P.compare_figure(a, b, "clip A", "clip B")
    assert fig.layout.xaxis.matches == "x2"  # zooming one zooms both
    assert list(fig.layout.xaxis2.range) == [0, 1000.0]
    rb = [tr for tr in fig.data if tr.meta == "2:runnable_blocked"][0]
    assert list(rb.base) == [300.0]  # relative to clip B's own window start
    assert {a.text for a in fig.layout.annotations} >= {"clip A", "clip B", "text", "vocoder"}
    # one legend entry per state, wherever it first appears
    shown = [tr.meta.split(":")[1] for tr in fig.data if tr.showlegend is not False]
    assert sorted(shown) == sorted({tr.meta.split(":")[1] for tr in fig.data})


def test_schedstat_says_why_there_is_no_timeline():
    fig = P.timeline_figure(schedstat())
    assert not fig.data and "schedstat" in fig.layout.annotations[0].text


def test_first_sound_is_marked_on_the_timeline():
    bd = contended()
    t0 = bd["window"]["start_s"]
    bd["first_sound"] = {"at_s": t0 + 0.25, "before": {}, "after": {}}
    fig = P.timeline_figure(bd)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1 and lines[0].x0 == lines[0].x1 == 250.0
    assert any(a.text == "first sound" for a in fig.layout.annotations)
    assert not [s for s in P.timeline_figure(contended()).layout.shapes if s.type == "line"]


def test_timeline_json_is_what_plotly_writes():
    """clip_panel sends timeline_json (no Figure built): the same JSON as Figure.to_json() for
    plain, contended, escaped, first-sound, GPU-lane, schedstat and 4000-segment breakdowns."""
    import plotly.io as pio

    from tests.test_device import section
    dv, gpu = section()
    gpu["device"] = dv
    odd = contended()
    odd["threads"][0]["comm"] = "<b>$x$</b> & co"
    first = with_(healthy(), first_sound={"at_s": 0.4, "before": {}, "after": {}})
    cases = [healthy(), contended(), odd, first, gpu, schedstat(), many_segments(), {}]
    for bd in cases:
        want = json.loads(pio.to_json(P.timeline_figure(bd), engine="json", validate=False))
        assert json.loads(P.timeline_json(bd)) == want
