"""The text report and the row helpers the UI tables use."""
from __future__ import annotations

from breakdown_samples import contended, healthy, schedstat
from tracing import report as R
from tracing.findings import findings


META = {"request_id": "20250101T120000-0badf00d", "created": "2025-01-01T12:00:00+00:00", "engine": "builtin (DSP)",
        "preset": {"preset": "pinned", "cpus": [1], "nice": -5, "policy": "other"}, "wall_s": 1.0,
        "duration_s": 2.5}


def test_fmt_ms_precision():
    assert R.fmt_ms(1.2345) == "1234" or R.fmt_ms(1.2345) == "1235"
    assert R.fmt_ms(0.01234) == "12.3"
    assert R.fmt_ms(0.000123) == "0.12"
    assert R.fmt_ms(0) == "0"
    assert R.fmt_ms(None) == "-"


def test_rows_match_headers():
    bd = contended()
    for rows, headers in ((R.format_breakdown_rows(bd), R.BREAKDOWN_HEADERS), (R.stage_rows(bd), R.STAGE_HEADERS),
                          (R.blocker_rows(bd), R.BLOCKER_HEADERS), (R.thread_rows(bd), R.THREAD_HEADERS)):
        assert rows
        assert all(len(r) == len(headers) for r in rows), (headers, rows[0])


def test_breakdown_rows_values():
    rows = dict(map(tuple, R.format_breakdown_rows(contended())))
    assert rows["wall time"] == "1000 ms"
    assert rows["run-queue wait"] == "420 ms (21%)"  # of 2 s summed observed thread time
    assert rows["migrations"].startswith("3")
    assert rows["lost events"] == "0"
    sched = dict(map(tuple, R.format_breakdown_rows(schedstat())))
    assert "n/a" in sched["blocked I/O (D)"] and "n/a" not in sched["on-CPU"]


def test_blocker_and_stage_rows():
    assert R.blocker_rows(contended())[0] == ["noisyneighbour", 777, "400", 37]
    assert R.blocker_rows(contended(), share=True)[0][-1] == "40%"
    st = R.stage_rows(healthy())
    assert [r[0] for r in st] == ["text", "vocoder"] and st[0][1] == "200"
    assert len(R.stage_rows(healthy(), reclaim=True)[0]) == len(R.STAGE_HEADERS) + 1


def test_thread_rows_fold_the_rest():
    bd = healthy()
    rows = R.thread_rows(bd, limit=1)
    assert rows[0][0] == "python3" and rows[1][0] == "(1 more threads)"


def test_report_sections():
    bd = contended()
    text = R.render_report(bd, findings(bd), META)
    for needle in ("20250101T120000-0badf00d", "2025-01-01T12:00:00", "builtin (DSP)", "pinned", "full (ftrace)",
                   "RTF 0.40", "Findings", "[CRIT] cpu_contention", "noisyneighbour", "Stages", "vocoder",
                   "Threads", "worker-1", "Top blockers", "777", "Wakeup latency", "p95 90 us", "#"):
        assert needle in text, needle
    # histogram bars: the biggest bucket gets the longest bar
    bars = {ln.split("|")[0].strip(): ln.split("|")[1].count("#") for ln in text.splitlines() if " | " in ln}
    assert bars["8us-15us"] == max(bars.values()) and bars["128us-255us"] < bars["4us-7us"]


def test_report_schedstat_and_lost():
    text = R.render_report(schedstat(), findings(schedstat()), {})
    assert "DEGRADED" in text and "not available in schedstat mode" in text
    bd = healthy()
    bd["lost_events"]["total"] = 12
    text = R.render_report(bd, findings(bd), META)
    assert "12 events were lost" in text and "lost_events" in text


def test_report_survives_empty():
    assert "Request -" in R.render_report({}, [], {})


def test_schedstat_none_values_show_na():
    from tracing.schedstat import NONE_KEYS
    bd = schedstat()
    for t in bd["threads"]:
        t.update({k: None for k in NONE_KEYS})
    for k in NONE_KEYS:
        bd["totals"][k] = None
    rows = R.thread_rows(bd)
    assert rows[0][5] == "n/a" and rows[0][3] == "900"
    text = R.render_report(bd, findings(bd), {})
    assert "n/a" in text


def test_report_says_inferred_unknown_and_missing():
    bd = contended()
    bd["totals"].update(inferred_switches=4, uncertain_s=0.0123)
    bd["blockers"][0]["uncertain_s"] = 0.005
    bd["lost_events"] = {"total": 0, "per_cpu": {"1": {"overrun": None, "dropped_events": None}},
                         "unknown_cpus": [1]}
    bd["missing_events"] = {"sched/sched_switch": "failed to enable: Invalid argument"}
    rows = dict(map(tuple, R.format_breakdown_rows(bd)))
    assert rows["inferred switches"] == "4 (12.3 ms in uncertain gaps)"
    assert rows["lost events"].startswith("unknown on CPU 1") and "0" != rows["lost events"]
    assert rows["events not recorded"] == "sched/sched_switch (failed to enable: Invalid argument)"
    text = R.render_report(bd, findings(bd), META)
    assert "inferred switches" in text and "12.3 ms in uncertain gaps" in text
    assert "+ up to ms (uncertain)" in text and "WARNING: lost events unknown on CPU 1" in text
    assert "WARNING: events not recorded: sched/sched_switch" in text and "[CRIT] missing_events" in text
    assert dict(map(tuple, R.format_breakdown_rows(contended())))["inferred switches"] == "0"


def test_clip_panel_head_says_unknown_loss_and_inferred_switches():
    from app.ui.clip_panel import clip_outputs
    bd = contended()
    bd["lost_events"] = {"total": 0, "per_cpu": {"1": {"overrun": None, "dropped_events": None}}, "unknown_cpus": [1]}
    bd["totals"].update(inferred_switches=3, uncertain_s=0.012)
    bd["missing_events"] = {"sched/sched_switch": "failed to enable: Invalid argument"}
    rec = {"id": "r1", "engine_label": "builtin", "preset": {}, "wall_s": 1.0, "duration_s": 1.0, "rtf": 1.0,
           "tracing": True, "audio_path": None, "engine": "builtin", "breakdown": bd, "findings": findings(bd)}
    head = clip_outputs(rec)[2]
    assert "lost events: unknown on CPU 1" in head and "no events lost" not in head
    assert "3 switches inferred" in head and "12.0 ms uncertain" in head
    assert "Events not recorded:** sched/sched_switch (failed to enable: Invalid argument)" in head
    rows = dict(map(tuple, clip_outputs(rec)[3]))
    assert rows["inferred switches"] == "3 (12.0 ms in uncertain gaps)"
