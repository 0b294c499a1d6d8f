"""tracing/diff.py and tracing/plots.py on hand-made snapshots with planted regressions."""
import io
import math
from dataclasses import dataclass

import numpy as np

from breakdown_samples import contended, healthy, with_
from tracing import diff as D
from tracing import plots


@dataclass
class Snap:
    manifest: dict
    samples: dict


def _summary(bd, wall):
    return {"wall_s": wall, "breakdown": bd, "findings": [], "engine": "builtin"}


def quiet(n=5, seed=0, presets=("default", "pinned")):
    rng = np.random.default_rng(seed)
    s = {}
    for p in presets:
        s[p] = []
        for _ in range(n):
            w = 1.0 + rng.uniform(0, 0.03)
            bd = with_(healthy(wall=w), **{"totals.runqueue_wait_s": 0.02 + rng.uniform(0, 0.003)})
            s[p].append(_summary(bd, w))
    return Snap({"kernel": "6.1", "host": "a", "engine": "builtin"}, s)


def loaded(n=5, seed=1, presets=("default", "pinned")):
    """The planted regression: a CPU hog steals ~400 ms of run-queue time on 'pinned' only."""
    snap = quiet(n, seed, presets)
    rng = np.random.default_rng(seed + 100)
    out = []
    for s in snap.samples["pinned"]:
        bd = contended()
        extra = 0.4 + rng.uniform(0, 0.05)
        bd["totals"]["runqueue_wait_s"] = extra
        bd["blockers"][0]["comm"] = "stress-ng-cpu"
        out.append(_summary(bd, s["wall_s"] + extra))
    snap.samples["pinned"] = out
    return snap


def test_planted_regression_is_named_with_its_blocker():
    r = D.diff(quiet(), loaded())
    assert r.has_regression
    names = {(x["preset"], x["metric"]) for x in r.regressions}
    assert ("pinned", "runqueue_wait") in names and ("pinned", "wall") in names
    assert not any(p == "default" for p, _ in names)
    app = [b for b in r.blockers if b["change"] == "appeared"]
    assert app and app[0]["comm"] == "stress-ng-cpu" and app[0]["preset"] == "pinned"
    text = D.format_diff(r)
    assert "REGRESSION" in text and "run-queue wait" in text and "stress-ng-cpu" in text
    row = next(x for x in r.rows if x["preset"] == "pinned" and x["metric"] == "runqueue_wait")
    assert row["ratio"] > 10 and row["p_value"] <= 0.01 and row["new_p95"] > row["old_p95"]
    # reversed: the load went away -> improvement, and the blocker vanished
    back = D.diff(loaded(), quiet())
    assert not back.has_regression
    assert any(x["verdict"] == "improvement" for x in back.rows)
    assert any(b["change"] == "vanished" for b in back.blockers)


def test_quiet_vs_quiet_is_clean_and_context_changes_are_listed():
    r = D.diff(quiet(seed=3), quiet(seed=4))
    assert not r.has_regression, D.format_diff(r)
    assert "No significant regression" in D.format_diff(r)
    new = quiet(seed=4)
    new.manifest["kernel"] = "6.8"
    new.samples["extra"] = new.samples.pop("default")
    r = D.diff(quiet(seed=3), new)
    assert r.context == [{"field": "kernel", "old": "6.1", "new": "6.8"}]
    assert r.only_old == ["default"] and r.only_new == ["extra"]
    assert {x["preset"] for x in r.rows} == {"pinned"}


def test_metric_values_skip_missing_and_schedstat():
    s = [_summary(healthy(), 1.0), {"wall_s": 0.5, "breakdown": None}, _summary(None, 0.7)]
    assert D.metric_values(s, "wall") == [1.0, 0.5, 0.7]
    assert D.metric_values(s, "runqueue_wait") == [healthy()["totals"]["runqueue_wait_s"]]
    assert math.isclose(D.metric_values(s, "wakeup_p95")[0], 90e-6)
    assert D.blocker_key("kworker/1:2H") == "kworker/*H" and D.blocker_key("stress-ng-cpu") == "stress-ng-cpu"


def test_plots_render_png():
    from PIL import Image
    old, new = quiet(), loaded()
    r = D.diff(old, new)
    for png in (plots.summary_png(new), plots.diff_png(old, new, r)):
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        im = Image.open(io.BytesIO(png))
        assert im.size[0] > 600 and im.size[1] > 250
    fig = plots.diff_figure(old, new, r)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("REGRESSION" in t and "pinned" in t for t in titles)


def stalls(n=20, seed=5, every=4, factor=3.0):
    """Tail-only pressure on 'default': one request in `every` stalls `factor`x in wall and
    run-queue time (a hog that wakes now and then); the median barely moves."""
    snap = quiet(n, seed, presets=("default",))
    out = []
    for i, s in enumerate(snap.samples["default"]):
        if i % every == 0:
            bd = contended()
            bd["blockers"][0]["comm"] = "stress-ng-vm"
            bd["blockers"][0]["time_s"] = 0.04 * every  # 40 ms per request on average
            extra = s["wall_s"] * (factor - 1)
            bd["totals"]["runqueue_wait_s"] = extra
            out.append(_summary(bd, s["wall_s"] + extra))
        else:
            out.append(s)
    snap.samples["default"] = out
    return snap


def test_tail_regression_has_its_own_line_and_the_median_does_not_decide():
    old, new = quiet(20, seed=9, presets=("default",)), stalls()
    r = D.diff(old, new)
    assert r.has_regression and not r.regressions  # medians: "same"
    assert {(x["preset"], x["metric"]) for x in r.tail_regressions} == {("default", "wall"), ("default", "runqueue_wait")}
    text = D.format_diff(r)
    tail = [l for l in text.splitlines() if l.startswith("TAIL REGRESSION")]
    assert tail and "default: wall 5/20 new requests above OLD's p95" in tail[0], text
    assert not any(l.startswith("REGRESSION") for l in text.splitlines())
    assert "default: wall tail" in r.to_dict()["regressions"]
    row = D.diff_table(r)[0]
    assert row[D.DIFF_HEAD.index("tail verdict")] == "REGRESSION" and row[D.DIFF_HEAD.index("new above old p95")] == "5/20 (exp 1.0)"
    # the tail test can be switched off; then the same data passes
    assert not D.diff(old, new, tail_metrics=()).has_regression
    # quiet vs quiet at N = 20: clean on both tests
    q = D.diff(quiet(20, seed=9, presets=("default",)), quiet(20, seed=10, presets=("default",)))
    assert not q.has_regression, D.format_diff(q)
    fig = plots.diff_figure(old, new, r)
    assert any("TAIL REGRESSION" in ax.get_title() for ax in fig.axes)


def test_blocker_gate_decides_only_when_asked():
    old, new = quiet(20, seed=9, presets=("default",)), stalls(every=10, factor=1.05)  # 2 small stalls
    r = D.diff(old, new)
    assert not r.has_regression and [b["comm"] for b in r.blockers] == ["stress-ng-vm"]
    g = D.diff(old, new, blocker_gate_s=0.030)  # stress-ng-vm: 40 ms per request on average
    assert g.has_regression and g.blocker_regressions[0]["comm"] == "stress-ng-vm"
    assert "BLOCKER REGRESSION: default: stress-ng-vm appeared, 40.0 ms per request" in D.format_diff(g)
    assert not D.diff(old, new, blocker_gate_s=0.050).has_regression  # below the gate
    import pytest
    with pytest.raises(ValueError, match="Unknown metric"):
        D.diff(old, new, tail_metrics=("nope",))


def test_first_sound_is_gated_like_wall():
    """Same wall, a first sound 0.5 s later on 'pinned' (a stall before the first segment): a
    median and a tail regression of first_sound; snapshots made before first_sound existed (no
    values) are compared without it and raise nothing."""
    old, new = quiet(8), quiet(8, seed=3)
    for snap, late in ((old, 0.0), (new, 0.5)):
        for p, ss in snap.samples.items():
            for i, s in enumerate(ss):
                s["first_sound_s"] = 0.25 + 0.004 * i + (late if p == "pinned" else 0.0)
    r = D.diff(old, new)
    row = next(x for x in r.rows if x["preset"] == "pinned" and x["metric"] == "first_sound")
    assert row["verdict"] == "regression" and row["tail_verdict"] == "regression" and row["label"] == "time to first sound"
    assert not [x for x in r.regressions if x["preset"] == "default"]
    assert "time to first sound" in D.format_diff(r)
    bare_old, bare_new = quiet(8), quiet(8, seed=3)
    assert not D.diff(bare_old, bare_new).has_regression
