"""The device view's pure parts on a hand-laid request (tests/device_samples.py): Kineto parsing
(both time forms, namespace tids, stale records), clock alignment, gap classes, the join with the
thread's kernel states, per-stage slicing, thread annotation, findings, report and timeline lanes.
Planted truth on a real kernel trace is tests/test_device_planted.py."""
from __future__ import annotations

import json

import pytest

from tests import device_samples as S
from tracing import clock as C
from tracing import device as D
from tracing import findings as F
from tracing import kineto as K
from tracing.device_report import device_markdown, device_stage_rows
from tracing.report import THREAD_HEADERS, render_report, thread_rows
from tracing.timeline_plot import compare_figure, timeline_figure


def section(doc=None, bd=None, **kw):
    bd = bd or S.breakdown()
    prof = K.parse_profile(doc or S.profile(), {S.NS_TID: S.TID})
    return D.device_section(prof, bd, C.alignment(bd["markers"]), **kw), bd


def test_kineto_both_time_forms_land_on_the_same_realtime_ns():
    a = K.parse_profile(S.profile())
    b = K.parse_profile(S.profile(absolute=True))
    assert a.time_format == "base" and b.time_format == "absolute"
    assert len(a.gpu_start) == 4 and len(a.call_start) == 5
    # the absolute form carries float rounding of ~1.7e18 ns: within a microsecond
    assert abs(a.gpu_start - b.gpu_start).max() < 1000 and abs(a.call_end - b.call_end).max() < 1000
    assert a.gpu_start[0] == int(round(100.05e9)) + S.OFFSET_NS
    assert list(a.gpu_launch_idx) == [0, 2, 1, 3]  # launches by correlation (K3 launched before K2's call)


def test_kineto_namespace_tids_and_stale_records():
    doc = S.profile()
    # pytorch#192021: a record stamped before its own launch (stale data) is dropped and counted
    doc["traceEvents"].append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "tid": S.NS_TID,
                               "ts": S.rt_us(100.9, doc["baseTimeNanoseconds"]), "dur": 5, "args": {"correlation": 50}})
    doc["traceEvents"].append({"ph": "X", "cat": "kernel", "name": "stale", "pid": 0, "tid": "stream 7",
                               "ts": S.rt_us(100.2, doc["baseTimeNanoseconds"]), "dur": 10, "args": {"correlation": 50}})
    p = K.parse_profile(doc, {S.NS_TID: S.TID})
    assert p.dropped_before_launch == 1 and "stale" not in p.gpu_name
    assert set(p.call_tid.tolist()) == {S.TID}
    status = {48211: "Name:\tx\nNSpid:\t48211\t17\n", 600: "NSpid:\t600\n", 601: "no such line"}
    assert K.nspid_map(status) == {17: 48211}
    with pytest.raises(K.ProfileError):
        K.parse_profile({"no": "events"})


def test_clock_alignment_from_markers_and_its_error():
    bd = S.breakdown()
    al = C.alignment(bd["markers"])
    assert al["offset_ns"] == S.OFFSET_NS and al["method"] == "clock_markers"
    assert al["bracket_us"] == 0.15 and al["drift_us"] == 0 and al["error_us"] == 0.15
    assert C.to_trace_s([int(100.25e9) + S.OFFSET_NS], al)[0] == pytest.approx(100.25, abs=1e-9)
    # a REALTIME step of +2 ms between the markers: interpolated, and half of it is error
    bd["markers"][1]["text"] = C.clock_marker(int(101e9) + S.OFFSET_NS + 2_000_000, int(101e9), 150)
    al = C.alignment(bd["markers"])
    assert al["drift_us"] == 2000 and al["error_us"] == pytest.approx(1000.15)
    assert C.alignment([{"ts_s": 1.0, "text": "B|1|stage"}]) is None
    assert C.best_sample([(0, 50, 100), (10, 15, 20), (0, 5, 1000)]) == (15, 15, 5)


def test_gap_classes_busy_and_host_cause():
    dv, _ = section()
    t = dv["totals"]
    assert dv["status"] == "captured" and dv["device"] == 0
    assert t["busy_s"] == pytest.approx(0.25 + 0.03 + 0.04999 + 0.1)
    assert t["host_wait_s"] == pytest.approx(0.05 + 0.22)
    assert t["kernel_wait_s"] == pytest.approx(10e-6)
    assert t["other_s"] == pytest.approx(0.05)
    assert t["no_gpu_work_s"] == pytest.approx(0.25)
    assert t["idle_s"] == pytest.approx(1.0 - t["busy_s"])
    assert t["host_wait_gaps"] == 2
    hc = t["host_cause"]
    assert hc["runnable_s"] == pytest.approx(0.2) and hc["running_s"] == pytest.approx(0.07)
    assert hc["irq_s"] == pytest.approx(0.001) and hc["unobserved_s"] == pytest.approx(0.0, abs=1e-9)
    assert hc["blockers"][0] == {"blocker": "hog:77", "time_s": pytest.approx(0.2), "cpus": [1]}
    classes = [g["class"] for g in dv["gaps"]]
    assert classes == ["host_wait", "host_wait", "kernel_wait", "other", "no_gpu_work"]
    assert dv["gaps"][1]["tid"] == S.TID and dv["gaps"][1]["host"]["blocker"] == "hog:77"
    assert "runnable behind hog:77 on CPU 1" in dv["headline"] and "GPU idle 570 ms (57%)" in dv["headline"]
    # the threshold's unit is in its name: at 5 us the 10 us gap is no longer kernel_wait
    dv5, _ = section(kernel_wait_max_us=5.0)
    assert dv5["totals"]["kernel_wait_s"] == 0 and dv5["totals"]["other_s"] == pytest.approx(0.05 + 10e-6)


def test_stages_waits_and_thread_table():
    dv, bd = section()
    gpt, voc = dv["stages"]
    assert gpt["busy_s"] == pytest.approx(0.25) and gpt["host_wait_s"] == pytest.approx(0.25)
    assert voc["busy_s"] == pytest.approx(0.17999) and voc["host_wait_s"] == pytest.approx(0.02)
    assert voc["no_gpu_work_s"] == pytest.approx(0.25) and gpt["kernels"] == 1 and voc["kernels"] == 3
    w = dv["gpu_waits"]["threads"][0]
    assert w["tid"] == S.TID and w["wait_s"] == pytest.approx(0.2) and w["sleep_s"] == pytest.approx(0.2)
    assert w["spinning_s"] == 0
    bd["device"] = dv
    D.annotate_threads(bd)
    assert bd["threads"][0]["gpu_wait_s"] == pytest.approx(0.2)
    row = thread_rows(bd)[0]
    assert len(row) == len(THREAD_HEADERS) and row[-1] == "200"
    rows = device_stage_rows(dv)
    assert [r[0] for r in rows] == ["gpt", "vocoder", "(request)"] and rows[0][4] == "250"
    text = render_report(bd, F.findings(bd))
    assert "GPU (device view)" in text and "runnable behind hog:77" in text and "waiting for the GPU" in text
    assert "| host_wait ms |" in device_markdown(dv)


def test_no_clock_marker_no_activity_and_absent():
    bd = S.breakdown()
    bd["markers"] = []
    dv, _ = section(bd=bd)
    assert dv["status"] == "absent" and "clock marker" in dv["why"]
    doc = S.profile()
    doc["traceEvents"] = [e for e in doc["traceEvents"] if e.get("cat") != "kernel"]
    dv, bd = section(doc)
    assert dv["device"] is None and dv["totals"]["idle_s"] == 1.0 and "No GPU activity" in dv["headline"]
    bd = {"threads": [{"tid": 1}], "device": D.absent("the serving engine runs on cpu")}
    D.annotate_threads(bd)
    assert bd["threads"][0]["gpu_wait_s"] is None and thread_rows(bd)[0][-1] == "-"


def test_findings_name_the_blocker_spin_and_launch_bound():
    dv, bd = section()
    bd["device"] = dv
    f = {x["kind"]: x for x in F.findings(bd)}
    st = f[F.GPU_STARVED]
    assert st["severity"] == "warn" and "hog:77 on CPU 1" in st["message"] and "200 ms" in st["message"]
    assert st["evidence"]["host_wait_s"] == pytest.approx(0.27)
    assert F.GPU_SYNC_SPIN not in f  # the wait slept: no spinning
    # the same wait spent on-CPU: spinning in synchronize
    for s in bd["segments"]:
        if s["state"] == "sleep":
            s["state"] = "running"
    dv2, _ = section(bd=bd)
    bd["device"] = dv2
    f = {x["kind"]: x for x in F.findings(bd)}
    assert f[F.GPU_SYNC_SPIN]["evidence"]["spinning_s"] == pytest.approx(0.2)
    # 200 kernels of 2 us launched by 5 us calls with 3 us between them: launch-bound
    doc = S.profile()
    base = doc["baseTimeNanoseconds"]
    for i in range(200):
        t = 100.6 + i * 5e-6
        doc["traceEvents"].append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "tid": S.NS_TID,
                                   "ts": S.rt_us(t, base), "dur": 5.0, "args": {"correlation": 1000 + i}})
        doc["traceEvents"].append({"ph": "X", "cat": "kernel", "name": "tiny", "pid": 0, "tid": 7,
                                   "ts": S.rt_us(t + 6e-6, base), "dur": 2.0, "args": {"correlation": 1000 + i}})
    dv3, bd3 = section(doc)
    bd3["device"] = dv3
    lb = [x for x in F.findings(bd3) if x["kind"] == F.GPU_LAUNCH_BOUND]
    assert lb and lb[0]["evidence"]["stage"] == "vocoder" and lb[0]["evidence"]["short_kernels"] == 200
    assert all(k in F.KINDS for k in (F.GPU_STARVED, F.GPU_SYNC_SPIN, F.GPU_LAUNCH_BOUND))


def test_timeline_gpu_lanes_and_json_roundtrip():
    dv, bd = section()
    bd["device"] = dv
    json.loads(json.dumps(bd))  # the section is plain JSON (it goes into summary.json)
    fig = timeline_figure(bd)
    names = {t.name for t in fig.data}
    assert {"GPU busy (kernels, copies)", "GPU idle: waiting for the host",
            "thread waiting for the GPU (synchronize)"} <= names
    lanes = list(fig.layout.yaxis.categoryarray)
    assert lanes == ["tts-synth 500", "GPU 0 idle", "GPU 0 busy"]  # (bottom to top)
    hw = next(t for t in fig.data if t.name == "GPU idle: waiting for the host")
    assert any("CPU held by hog:77" in c[5] for c in hw.customdata)  # (the GPU lanes' own hover fields)
    assert len(compare_figure(bd, S.breakdown()).data) > len(compare_figure(S.breakdown(), S.breakdown()).data)


def test_metrics_histograms_and_diff_rows():
    from types import SimpleNamespace

    from app.metrics import Metrics
    from tracing.diff import diff
    dv, bd = section()
    bd["device"] = dv
    m = Metrics()
    m.observe({"engine": "replica", "preset": {"preset": "default"}, "wall_s": 1.0, "breakdown": bd})
    m.observe({"engine": "builtin", "preset": {"preset": "default"}, "wall_s": 1.0,
               "breakdown": {"device": D.absent("the serving engine runs on cpu")}})
    from prometheus_client.parser import text_string_to_metric_families
    got = {(smp.name, smp.labels.get("engine")): smp.value
           for fam in text_string_to_metric_families(m.exposition().decode()) for smp in fam.samples}
    assert got[("itts_gpu_idle_share_sum", "replica")] == pytest.approx(0.57001)
    assert got[("itts_gpu_host_wait_share_sum", "replica")] == pytest.approx(0.27)
    assert got[("itts_gpu_idle_share_count", "replica")] == 1
    assert ("itts_gpu_idle_share_count", "builtin") not in got  # no device view, no sample
    snap = lambda bds: SimpleNamespace(manifest={}, samples={"default": [{"wall_s": 1.0, "breakdown": b}  # noqa: E731
                                                                      for b in bds]})
    with_gpu = diff(snap([bd] * 5), snap([bd] * 5))
    assert {r["metric"] for r in with_gpu.rows} >= {"gpu_idle", "gpu_host_wait"}
    row = next(r for r in with_gpu.rows if r["metric"] == "gpu_host_wait")
    assert row["old_p50"] == pytest.approx(0.27) and row["verdict"] == "same"
    cpu = diff(snap([S.breakdown()] * 5), snap([S.breakdown()] * 5))
    assert not {r["metric"] for r in cpu.rows} & {"gpu_idle", "gpu_host_wait"}


def test_a_stretch_held_by_several_tasks_is_shared_between_them():
    from tracing import parse as P
    from tracing.analysis import analyze
    # our 500 (tgid 500) is preempted on CPU 1 by A (30 ms), then B (10 ms) runs, then 500 again
    ev = P.Events.from_rows([
        P.switch(100.0, 1, "idle", 0, "R", "tts-synth", 500, tgid=-1),
        P.marker(100.001, 1, "x", 500, 500),
        P.switch(100.30, 1, "tts-synth", 500, "R", "taskA", 61),
        P.switch(100.33, 1, "taskA", 61, "S", "taskB", 62),
        P.switch(100.34, 1, "taskB", 62, "S", "tts-synth", 500),
        P.marker(100.9, 1, "y", 500, 500)])
    bd = analyze(ev, 500, 100.0, 101.0).to_dict()
    seg = next(s for s in bd["segments"] if s["state"] == "runnable")
    assert seg["blocker"] == "taskA:61" and seg["held_by"] == {"taskA:61": pytest.approx(0.03),
                                                                "taskB:62": pytest.approx(0.01)}
    bd["markers"] = S.breakdown()["markers"]
    dv = D.device_section(K.parse_profile(S.profile(), {S.NS_TID: 500}), bd, C.alignment(bd["markers"]))
    per = {b["blocker"]: b["time_s"] for b in dv["totals"]["host_cause"]["blockers"]}
    # the 100.30-100.52 host_wait gap covers the whole stretch: each task its own share
    assert per == {"taskA:61": pytest.approx(0.03), "taskB:62": pytest.approx(0.01)}
    gap = next(g for g in dv["gaps"] if g["start_s"] == pytest.approx(100.3))
    assert gap["host"]["blockers"] == {"taskA:61": pytest.approx(0.03), "taskB:62": pytest.approx(0.01)}
