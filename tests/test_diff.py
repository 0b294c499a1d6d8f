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
