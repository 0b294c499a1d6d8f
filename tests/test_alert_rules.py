"""The alert rules in docs/alerts/ under Prometheus's own promtool (Debian's `prometheus` package,
installed by run_tests.sh): `check rules`, `test rules` with docs/alerts/tests.yml, a firing and a
silent case for every alert, and every metric a rule reads is one the launcher exports."""
from __future__ import annotations

import re
import shutil
import subprocess
import types

import pytest
import yaml

from tests.conftest import ROOT

ALERTS = ROOT / "docs" / "alerts"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (Debian package prometheus; "
                                    "run_tests.sh installs it as root)")


def rule_files():
    return sorted(ALERTS.glob("*.rules.yml"))


def alerts() -> dict[str, str]:
    """alert name -> expression, over every rules file."""
    out = {}
    for f in rule_files():
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                if "alert" in r:
                    out[r["alert"]] = r["expr"]
    return out


def promtool(*args, cwd=ALERTS):
    return subprocess.run([PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_rules_pass_promtool_check():
    r = promtool("check", "rules", *rule_files())
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(alerts()) >= 7


@needs_promtool
def test_every_alert_fires_and_stays_silent_in_the_unit_tests():
    r = promtool("test", "rules", "tests.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    spec = yaml.safe_load((ALERTS / "tests.yml").read_text())
    assert {f.name for f in rule_files()} == set(spec["rule_files"]), "a rules file without unit tests"
    fires, silent = set(), set()
    for t in spec["tests"]:
        for case in t.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    assert set(alerts()) <= fires, f"no firing case for {set(alerts()) - fires}"
    assert set(alerts()) <= silent, f"no silent case for {set(alerts()) - silent}"


@needs_promtool
def test_the_unit_tests_catch_a_changed_threshold(tmp_path):
    """The tests pin each rule's behaviour: a backlog threshold raised from 4 to 6 fails them."""
    for f in (*rule_files(), ALERTS / "tests.yml"):
        shutil.copy(f, tmp_path / f.name)
    p = tmp_path / "fleet.rules.yml"
    p.write_text(p.read_text().replace("itts_requests_waiting >= 4", "itts_requests_waiting >= 6"))
    r = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert r.returncode != 0 and "TTSQueueBacklog" in r.stdout + r.stderr


def exported_families() -> set[str]:
    """Metric family names a launcher exports once it has served a clip and has a snapshot series
    (the real app.metrics code on a recorded series and a sample breakdown)."""
    import tempfile

    from app.metrics import Metrics, SeriesCollector, install
    from app.queue_time import QueueClock
    from breakdown_samples import contended
    from tests.test_series import _write, quiet
    from tracing.series import Series

    with tempfile.TemporaryDirectory() as d:
        s = Series(f"{d}/series")
        s.record(_write(s.path / "a", quiet(1)))
        svc = types.SimpleNamespace(engine=types.SimpleNamespace(name="builtin"), failures=0, listeners=[],
                                    busy=False, queue=QueueClock())
        ctx = types.SimpleNamespace(service=svc, delivery=types.SimpleNamespace(outcomes={"fetched": 1}))
        m = install(ctx, types.SimpleNamespace(router=types.SimpleNamespace(routes=[])))
        m.registry.register(SeriesCollector(s.path))
        m.observe({"engine": "builtin", "preset": {"preset": "default"}, "wall_s": 0.3, "queue_s": 0.1,
                   "breakdown": contended(), "findings": [{"kind": "cpu_contention", "severity": "warning"}]})
        text = m.exposition().decode()
    return set(re.findall(r"^# TYPE (\w+) ", text, re.M)) | set(re.findall(r"^(\w+)[{ ]", text, re.M))


def test_rules_read_only_metrics_the_launcher_exports():
    exported = exported_families() | {"up"}
    for name, expr in alerts().items():
        for metric in set(re.findall(r"\b(itts_\w+|up)\b", expr)):
            assert metric in exported, f"{name} reads {metric}, which the launcher does not export"
