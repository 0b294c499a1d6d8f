"""The Grafana dashboard as code (docs/grafana/make_dashboard.py, grafana-foundation-sdk): the
committed JSON is what the generator writes, and it has the panels and variables docs/fleet.md
promises. Its queries run against a real Prometheus in tests/test_fleet_prometheus.py (fleet)."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

from tests.conftest import ROOT

GRAFANA = ROOT / "docs" / "grafana"


def generator():
    spec = importlib.util.spec_from_file_location("make_dashboard", GRAFANA / "make_dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_json_is_the_generated_one():
    assert (GRAFANA / "itts-fleet.json").read_text() == generator().render(), \
        "docs/grafana/itts-fleet.json is stale: run .venv/bin/python docs/grafana/make_dashboard.py"
    r = subprocess.run([sys.executable, str(GRAFANA / "make_dashboard.py"), "--check"], capture_output=True)
    assert r.returncode == 0


def test_panels_and_variables():
    board = json.loads((GRAFANA / "itts-fleet.json").read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    for want in ("Time to audio", "Synthesis (wall)", "Queue time", "Requests by status", "Running / waiting",
                 "Breakdown shares by preset", "Top blockers (who held our CPU)", "Lost trace events",
                 "Findings by kind"):
        assert want in titles
    assert any(t.startswith("Periodic snapshot verdict") for t in titles)
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])  # ids unique
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    for q in ("0.5", "0.9", "0.95", "0.99"):  # the serving dashboards' percentiles
        assert any(e.startswith(f"histogram_quantile({q}, ") and "itts_queue_seconds_bucket" in e for e in exprs)
    assert all('instance=~"$instance"' in e for e in exprs), "every panel follows the instance variable"
    names = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "instance", "preset"} <= set(names)
    assert names["instance"]["includeAll"] and names["instance"]["multi"]
    assert all(t["datasource"]["uid"] == "${datasource}" for p in panels for t in p["targets"])
    # the provisioning files the docs tell operators to copy are where the docs say
    assert re.search(r"url: http://", (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert "type: file" in (GRAFANA / "provisioning" / "dashboards" / "indextts.yml").read_text()
