"""tracing/series.py: a pinned baseline, retention, verdicts and the series plot, on snapshot
directories written with the real SnapshotWriter from hand-made request summaries."""
import io
import json

import numpy as np
import pytest

from tracing import plots
from tracing.series import DIFF_FILE, Series, latest, load_series
from tracing.snapshot import SnapshotError, SnapshotWriter, new_manifest


def _write(dest, walls, rq=None):
    w = SnapshotWriter(dest, new_manifest("in-process", ["default"], len(walls), "t", label=dest.name))
    for i, x in enumerate(walls):
        w.add("default", {"wall_s": x, "engine": "builtin",
                          "breakdown": {"totals": {"runqueue_wait_s": (rq or walls)[i] / 2}}})
    w.manifest["idle"] = {"waited_s": 1.5, "waits": 1}
    w.close()
    return dest


def quiet(seed):
    return list(np.random.default_rng(seed).uniform(0.10, 0.14, 20))


def stalled(seed):
    v = quiet(seed)
    return [x * 3 if i % 4 == 0 else x for i, x in enumerate(v)]


def test_baseline_verdicts_retention_and_pin(tmp_path):
    s = Series(tmp_path / "series", keep=3)
    first = _write(s.next_dir(), quiet(1))
    e = s.record(first)
    assert e["verdict"] is None and load_series(s.path)["baseline"] == first.name
    assert e["idle"] == {"waited_s": 1.5, "waits": 1} and e["points"]["default"]["wall"]["n"] == 20

    q = _write(s.path / "q2", quiet(2))
    e = s.record(q)
    assert e["verdict"]["baseline"] == first.name and not e["verdict"]["has_regression"]
    assert "No significant regression" in (q / DIFF_FILE).read_text()

    bad = _write(s.path / "q3", stalled(3))
    e = s.record(bad)
    assert e["verdict"]["has_regression"] and e["verdict"]["tail"] >= 1
    assert "default: wall tail" in e["verdict"]["regressions"]
    assert "TAIL REGRESSION" in (bad / DIFF_FILE).read_text()

    # keep=3: the fourth entry pushes out the oldest that is not the baseline (q2), files and all
    q4 = _write(s.path / "q4", quiet(4))
    s.record(q4)
    data = load_series(s.path)
    assert [x["name"] for x in data["entries"]] == [first.name, "q3", "q4"]
    assert not (s.path / "q2").exists() and first.exists()
    assert latest(data)["name"] == "q4"

    s.pin("q4")
    assert load_series(s.path)["baseline"] == "q4"
    with pytest.raises(SnapshotError, match="not in the series"):
        s.pin("q2")
    # a snapshot outside the series directory is refused
    with pytest.raises(SnapshotError, match="not a directory of the series"):
        s.record(_write(tmp_path / "elsewhere", quiet(5)))
    with pytest.raises(SnapshotError, match="keep must be"):
        Series(tmp_path / "x", keep=1)


def test_series_plot(tmp_path):
    from PIL import Image
    s = Series(tmp_path / "series")
    for k, walls in enumerate((quiet(1), quiet(2), stalled(3))):
        d = _write(s.path / f"s{k}", walls)
        m = json.loads((d / "manifest.json").read_text())
        m["created"] = f"2026-11-28T0{k}:00:00+00:00"
        (d / "manifest.json").write_text(json.dumps(m))
        s.record(d)
    fig = plots.series_figure(load_series(s.path))
    assert [ax.get_title() for ax in fig.axes] == ["default: wall", "default: run-queue wait"]
    red = [l for l in fig.axes[0].get_lines() if l.get_marker() == "x"]
    assert len(red) == 1  # the stalled one
    png = plots.series_png(load_series(s.path))
    assert Image.open(io.BytesIO(png)).size[0] > 600
    assert plots.series_png(None)[:4] == b"\x89PNG"  # no series yet: an empty figure, not an error
