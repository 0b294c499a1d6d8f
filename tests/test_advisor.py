"""The preset advisor (app/advisor.py): the rule on known samples (pure), and the trial for real
through the shared server's API and the command line (marker presets_live: they run dozens of
traced requests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.advisor import advice_from, candidates, format_advice, invasiveness, percentile, recommend
from tuning.apply import Tuner
from tuning.presets import Preset, load_presets

ROOT = Path(__file__).resolve().parents[1]


def test_nearest_rank_percentile():
    assert percentile([5, 1, 4, 2, 3], 50) == 3 and percentile([5, 1, 4, 2, 3], 95) == 5
    assert percentile(range(1, 21), 95) == 19


def test_recommend_lowest_p95_and_least_invasive_among_ties():
    samples = {"default": [1.0, 1.1, 3.0], "pinned": [1.2, 1.25, 1.3], "realtime": [0.9, 1.0, 1.26]}
    costs = {"default": 0, "pinned": 1, "realtime": 8}
    r = recommend(samples, costs)
    # realtime's p95 1.26 is the lowest; pinned's 1.30 is within 5% of it, and less invasive
    assert r["tied"] == ["pinned", "realtime"] and r["preset"] == "pinned"
    assert r["rows"]["default"]["p95_s"] == 3.0 and r["rows"]["pinned"]["p50_s"] == 1.25
    r = recommend({"default": [1.0], "realtime": [0.5]}, costs)  # far apart: the fastest, invasive or not
    assert r["preset"] == "realtime"
    assert recommend({"x": []})["preset"] is None


def test_invasiveness_orders_the_shipped_presets():
    t = load_presets()
    score = {n: invasiveness(t[n]) for n in ("default", "pinned", "priority", "pinned-priority", "realtime",
                                              "isolated")}
    assert score["default"] == 0 < score["pinned"] < score["priority"] < score["pinned-priority"]
    assert score["pinned-priority"] < score["isolated"] < score["realtime"]
    assert invasiveness(t["realtime"].to_dict()) == score["realtime"]  # dicts too (a remote read-back)


def test_candidates_skip_what_yields_by_design_and_unallowed_realtime():
    names, skipped = candidates(Tuner(load_presets(), knob_state_dir=None))
    assert "background" in skipped and "realtime" in skipped and "realtime" not in names
    assert names[0] == "default" and "pinned" in names
    t = Tuner(load_presets(), allow_realtime=True, knob_state_dir=None)  # installs the SIGXCPU net...
    try:
        names, _ = candidates(t)
    finally:
        t.close()  # ...which the process must get back (other tests install their own)
    assert "realtime" in names


def test_advice_from_summaries_names_blockers_and_findings():
    def s(wall, blocker_ms, kinds):
        return {"wall_s": wall, "breakdown": {"blockers": [{"comm": "stress-ng-cpu", "time_s": blocker_ms / 1e3}]},
                "findings": [{"kind": k, "severity": "warn"} for k in kinds] + [{"kind": "healthy", "severity": "info"}]}
    samples = {"default": [s(1.0, 300, ["cpu_contention"]), s(2.0, 600, ["cpu_contention", "cpu_contention"])],
               "pinned": [s(0.5, 0.1, []), s(0.6, 0.2, [])]}
    a = advice_from(samples, 2, {"default": Preset("default"), "pinned": Preset("pinned", cpus="last:1")},
                    {"realtime": "needs --allow-realtime"}, ["1.0 1.0 1.0", "1.0 1.0 1.0"])
    assert a.recommended == "pinned"
    assert a.blockers["default"] == [["stress-ng-cpu", 0.45]] and a.blockers["pinned"] == []  # < 0.5 ms: no evidence
    assert a.findings["default"] == {"cpu_contention": 2} and a.findings["pinned"] == {}
    text = format_advice(a)
    assert "* pinned" in text and "realtime         not tried: needs --allow-realtime" in text
    assert "Nothing was applied" in text
    json.dumps(a.to_dict())


@pytest.mark.presets_live
def test_advise_through_the_server_recommends_and_applies_nothing(server, client):
    """The Scheduling tab's endpoint on the shared (opened) server: a recommendation among the
    presets tried, p50/p95 for each, the dropdown set to it, and the preset in force untouched."""
    before = client.predict(api_name="/scheduling_state")[2]["preset"]
    md, rows, raw, pick = client.predict(2, api_name="/advise_presets")
    pick = pick.get("value") if isinstance(pick, dict) else pick  # the dropdown's update
    assert raw["recommended"] in raw["rows"] and pick == raw["recommended"]
    assert f"Recommended: `{raw['recommended']}`" in md and "Nothing was applied" in md
    assert set(raw["rows"]) >= {"default", "pinned"} and all(r["n"] == 2 for r in raw["rows"].values())
    assert "realtime" in raw["refused"] or "realtime" not in raw["rows"]  # the shared server has no --allow-realtime
    assert len(rows["data"]) == len(raw["rows"])
    assert client.predict(api_name="/scheduling_state")[2]["preset"] == before


@pytest.mark.presets_live
@pytest.mark.parametrize("bad", [0, 99])
def test_advise_bad_n_is_a_clear_error(server, client, bad):
    with pytest.raises(Exception, match="minimum|maximum|Requests per preset"):
        client.predict(bad, api_name="/advise_presets")
    assert client.predict(api_name="/scheduling_state")[2]["preset"]  # still serving


@pytest.mark.presets_live
def test_advise_command_line(tmp_path):
    out = tmp_path / "advice.json"
    r = subprocess.run([sys.executable, "-m", "app", "advise", "-n", "2", "--engine", "builtin",
                        "--presets", "default,pinned,nope", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads(out.read_text())
    assert a["recommended"] in ("default", "pinned") and set(a["rows"]) == {"default", "pinned"}
    assert "nope" in a["refused"] and "Unknown preset" in a["refused"]["nope"]
    assert f"Recommended: {a['recommended']}" in r.stdout and "Nothing was applied" in r.stdout


def test_advise_help_ends_with_examples():
    r = subprocess.run([sys.executable, "-m", "app", "advise", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "examples:" in r.stdout and "python -m app advise --url" in r.stdout
