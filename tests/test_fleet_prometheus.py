"""A fleet watched by the real Prometheus: two live launchers (different presets) on loopback,
scraped by Debian's prometheus with the documented config (docs/prometheus/prometheus.yml) and the
alert rules loaded; PromQL answers checked against the launchers' own clip records. The Grafana
dashboard's queries run against the same server (docs/grafana/, test_every_panel_query_runs).
Marker fleet: its own .ci/run step (two servers, a Prometheus)."""
from __future__ import annotations

import json
import math
import re
import time

import pytest
import yaml
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import ROOT, Server
from tests.prometheus_server import BINARY, Prometheus

pytestmark = [pytest.mark.fleet,
              pytest.mark.skipif(BINARY is None, reason="prometheus missing (Debian package prometheus; "
                                 "run_tests.sh installs it as root)")]

PRESETS = {"a": "default", "b": "pinned"}
OK = {"a": 4, "b": 3}  # clips per launcher; b also gets one bad request


def records(server) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((server.outputs / "clips").glob("*/record.json"))]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    servers = {k: Server(tmp / k, "--preset", preset) for k, preset in PRESETS.items()}
    for k, s in servers.items():
        (tmp / k).mkdir()
    prom = None
    try:
        for s in servers.values():
            s.start()
        # a periodic-snapshot series on a, as the snapshot timer would leave it (its gauges)
        from tests.test_series import _write, quiet
        from tracing.series import Series
        series = Series(servers["a"].outputs / "snapshot-series")
        series.record(_write(series.path / "s1", quiet(1)))
        # a: concurrent callers (they queue); b: one after the other, then a bad request
        ca = Client(servers["a"].url, verbose=False)
        jobs = [ca.submit(text=f"Fleet host a, request {i}.", api_name="/synthesize") for i in range(OK["a"])]
        cb = Client(servers["b"].url, verbose=False)
        for i in range(OK["b"]):
            cb.predict(text=f"Fleet host b, request {i}.", api_name="/synthesize")
        with pytest.raises(AppError):
            cb.predict(text="", api_name="/synthesize")
        for j in jobs:
            j.result(timeout=300)
        config = yaml.safe_load((ROOT / "docs" / "prometheus" / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str((ROOT / "docs" / "prometheus" / f).resolve()) for f in config["rule_files"]]
        config["scrape_configs"][0]["static_configs"] = [{"targets": [s.url.split("//")[1].rstrip("/")
                                                                      for s in servers.values()]}]
        prom = Prometheus(tmp, config).start()
        instance = {k: s.url.split("//")[1].rstrip("/") for k, s in servers.items()}
        want = {instance["a"]: OK["a"], instance["b"]: OK["b"]}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until a scrape after the last clip is in
            got = {r["metric"]["instance"]: float(r["value"][1])
                   for r in prom.query('sum by (instance) (itts_requests_total{status="ok"})')}
            if got == want:
                break
            time.sleep(0.5)
        yield types_ns(servers=servers, prom=prom, instance=instance)
    finally:
        if prom:
            prom.stop()
        for s in servers.values():
            s.stop()


def types_ns(**kw):
    import types
    return types.SimpleNamespace(**kw)


def value(results, **labels) -> float:
    hits = [float(r["value"][1]) for r in results if all(r["metric"].get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (labels, results)
    return hits[0]


def test_request_counts_agree_with_the_clip_records(fleet):
    ok = fleet.prom.query('sum by (instance) (itts_requests_total{status="ok"})')
    err = fleet.prom.query('sum by (instance) (itts_requests_total{status="error"})')
    for k, s in fleet.servers.items():
        recs = records(s)
        assert len(recs) == OK[k]
        assert value(ok, instance=fleet.instance[k]) == len(recs)
        assert value(err, instance=fleet.instance[k]) == (1 if k == "b" else 0)
    # each host's series carry its preset, read back from the kernel
    by_preset = fleet.prom.query("sum by (instance, preset) (itts_request_wall_seconds_count)")
    for k, s in fleet.servers.items():
        assert {r["metric"]["preset"] for r in by_preset if r["metric"]["instance"] == fleet.instance[k]} \
            == {PRESETS[k]} == {r["preset"]["preset"] for r in records(s)}


def _p95_bucket(samples: list[float], bounds: list[float]) -> tuple[float, float]:
    """The histogram bucket (lower, upper] holding the nearest-rank p95 of the samples."""
    x = sorted(samples)[math.ceil(0.95 * len(samples)) - 1]
    lo = 0.0
    for b in bounds:
        if x <= b:
            return lo, b
        lo = b
    return lo, math.inf


@pytest.mark.parametrize("metric,field", [("itts_request_wall_seconds", "wall_s"), ("itts_queue_seconds", "queue_s")])
def test_p95_from_the_histogram_lies_in_the_records_p95_bucket(fleet, metric, field):
    est = fleet.prom.query(f"histogram_quantile(0.95, sum by (instance, le) ({metric}_bucket))")
    buckets = fleet.prom.query(f"sum by (le) ({metric}_bucket)")
    bounds = sorted(float(r["metric"]["le"]) for r in buckets if r["metric"]["le"] != "+Inf")
    for k, s in fleet.servers.items():
        samples = [r[field] for r in records(s)]
        lo, hi = _p95_bucket(samples, bounds)
        got = value(est, instance=fleet.instance[k])
        assert lo <= got <= hi, (k, field, sorted(samples), lo, hi, got)
    # a's callers came at once: each waited behind those served before it
    if field == "queue_s":
        assert sorted(r["queue_ahead"] for r in records(fleet.servers["a"])) == list(range(OK["a"]))


def test_alert_rules_evaluate_on_live_data(fleet):
    groups = fleet.prom.api("rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert {"TTSLauncherDown", "TTSQueueBacklog", "TTSPressureRegression"} <= set(rules)
    assert all(r["health"] == "ok" for r in rules.values()), {n: r.get("lastError") for n, r in rules.items()}
    assert rules["TTSLauncherDown"]["state"] == "inactive"  # both launchers answer
    assert fleet.prom.query('up{job="indextts"} == 1') and len(fleet.prom.query('up{job="indextts"}')) == 2


# ------------------------------------------------------------------ the Grafana dashboard ----
def panel_queries() -> list[tuple[str, str]]:
    board = json.loads((ROOT / "docs" / "grafana" / "itts-fleet.json").read_text())
    out = []
    for p in board["panels"]:
        for t in p.get("targets") or []:
            out.append((p["title"], t["expr"]))
    return out


def grafana_to_prometheus(expr: str) -> str:
    """Grafana's variables as Grafana sends them for 'All' and a 5-minute range."""
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "5m")
            .replace("$instance", ".*").replace("$preset", ".*"))


def test_every_panel_query_runs_against_the_real_prometheus(fleet):
    queries = panel_queries()
    assert len(queries) >= 10
    exported = set(fleet.prom.api("label/__name__/values")["data"])
    meta = fleet.prom.api("metadata")["data"]  # families with HELP/TYPE, samples or not (a counter not yet hit)
    for title, expr in queries:
        q = grafana_to_prometheus(expr)
        out = fleet.prom.api("query", query=q)
        assert out["status"] == "success", (title, q, out.get("error"))
        for name in set(re.findall(r"\b(itts_\w+)", q)):
            family = re.sub(r"_(bucket|count|sum|total)$", "", name)
            assert name in exported or family in meta or name in meta, \
                f"panel {title!r} reads {name}, which the launchers do not export"


def test_template_variables_list_both_launchers_and_presets(fleet):
    """label_values(metric, label) as Grafana's Prometheus data source runs it (/api/v1/series)."""
    board = json.loads((ROOT / "docs" / "grafana" / "itts-fleet.json").read_text())
    found = {}
    for v in board["templating"]["list"]:
        if v["type"] != "query":
            continue
        metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["query"]["query"]).groups()
        out = fleet.prom.api("series", **{"match[]": metric})
        assert out["status"] == "success", out
        found[v["name"]] = {s[label] for s in out["data"] if label in s}
    assert found["instance"] == set(fleet.instance.values())
    assert found["preset"] == set(PRESETS.values())
