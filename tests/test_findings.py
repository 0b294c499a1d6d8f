"""Findings rules on hand-made breakdowns: each fires when it should, and not otherwise."""
from __future__ import annotations

import json

import pytest

from breakdown_samples import contended, healthy, schedstat, with_
from tracing import findings as F


def kinds(items):
    return [f["kind"] for f in items]


def by_kind(items, kind):
    found = [f for f in items if f["kind"] == kind]
    assert found, f"no {kind} finding in {kinds(items)}"
    return found[0]


def test_healthy_only():
    out = F.findings(healthy())
    assert kinds(out) == [F.HEALTHY]
    f = out[0]
    assert f["severity"] == "info"
    assert "python3" in f["message"] and "4242" in f["message"]


def test_shape_and_kinds_are_stable():
    for bd in (healthy(), contended(), schedstat()):
        for f in F.findings(bd):
            assert set(f) == {"kind", "severity", "message", "evidence"}
            assert f["kind"] in F.KINDS
            assert f["severity"] in ("info", "warn", "crit")
            json.dumps(f["evidence"])  # serialisable
            assert f["message"].endswith(".") and "\n" not in f["message"]


def test_contention_names_task_and_pid():
    out = F.findings(contended())
    f = out[0]
    assert f["kind"] == F.CPU_CONTENTION
    assert f["severity"] == "crit"  # 400 ms of 1 s
    assert "noisyneighbour" in f["message"] and "777" in f["message"]
    assert "pinned" in f["message"]
    assert "400 ms" in f["message"] and "37" in f["message"]
    assert f["evidence"]["pid"] == 777 and f["evidence"]["share"] == pytest.approx(0.4)
    assert F.HEALTHY not in kinds(out)
    # the tiny sshd blocker is not named
    assert "sshd" not in f["message"]


def test_contention_thresholds():
    bd = contended()
    bd["blockers"][0]["time_s"] = 0.06  # 6%: warn
    assert by_kind(F.findings(bd), F.CPU_CONTENTION)["severity"] == "warn"
    bd["blockers"][0]["time_s"] = 0.03  # 3%: not worth naming
    assert F.CPU_CONTENTION not in kinds(F.findings(bd))


def test_contention_mentions_preset_from_context():
    f = by_kind(F.findings(contended(), {"preset": {"name": "default", "policy": "other"}}), F.CPU_CONTENTION)
    assert "default" in f["message"]


def test_own_threads_are_self_contention_not_contention():
    bd = healthy()
    bd["blockers"] = [{"comm": "worker-1", "pid": 4243, "time_s": 0.3, "preemptions": 20}]
    out = F.findings(bd)
    assert F.CPU_CONTENTION not in kinds(out)
    f = by_kind(out, F.SELF_CONTENTION)
    assert "worker-1" in f["message"] and "4243" in f["message"] and "torch threads" in f["message"]


def test_runqueue_without_named_blocker():
    bd = with_(healthy(), **{"totals.runqueue_wait_s": 0.5})
    f = by_kind(F.findings(bd), F.RUNQUEUE_WAIT)
    assert f["severity"] == "warn"  # 0.5 of 2.0 s observed = 25%
    assert "python3" in f["message"] or "4242" in f["message"]
    # with a named blocker explaining it, the contention rule speaks instead
    assert F.RUNQUEUE_WAIT not in kinds(F.findings(contended()))


@pytest.mark.parametrize("reclaim,kswapd,sev", [(0.02, 0.0, "warn"), (0.0, 0.05, "warn"), (0.1, 0.1, "crit")])
def test_memory_pressure(reclaim, kswapd, sev):
    bd = with_(healthy(), **{"totals.reclaim_s": reclaim})
    bd["threads"][1]["reclaim_s"] = reclaim
    if kswapd:
        bd["blockers"] = [{"comm": "kswapd0", "pid": 91, "time_s": kswapd, "preemptions": 3}]
    out = F.findings(bd)
    f = by_kind(out, F.MEMORY_PRESSURE)
    assert f["severity"] == sev
    if kswapd:
        assert "kswapd0" in f["message"] and "91" in f["message"]
    if reclaim:
        assert "direct reclaim" in f["message"] and "worker-1" in f["message"] and "4243" in f["message"]
    assert "swap" in f["message"]
    # kswapd is memory pressure, not generic contention
    assert F.CPU_CONTENTION not in kinds(out)


def test_no_memory_finding_without_reclaim():
    assert F.MEMORY_PRESSURE not in kinds(F.findings(healthy()))


@pytest.mark.parametrize("comm", ["kworker/u4:2", "jbd2/sda1-8", "systemd-journal", "flush-8:0"])
def test_writeback_flushers(comm):
    bd = healthy()
    bd["blockers"] = [{"comm": comm, "pid": 321, "time_s": 0.05, "preemptions": 4}]
    out = F.findings(bd)
    f = by_kind(out, F.WRITEBACK)
    assert comm in f["message"] and "321" in f["message"]
    assert F.CPU_CONTENTION not in kinds(out)


def test_writeback_below_threshold_silent():
    bd = healthy()
    bd["blockers"] = [{"comm": "kworker/0:1", "pid": 321, "time_s": 0.004, "preemptions": 1}]
    assert kinds(F.findings(bd)) == [F.HEALTHY]


def test_io_wait():
    bd = with_(healthy(), **{"totals.blocked_io_s": 0.3})
    bd["threads"][0]["blocked_io_s"] = 0.3
    f = by_kind(F.findings(bd), F.IO_WAIT)
    assert f["severity"] == "warn" and "D state" in f["message"] and "python3" in f["message"]
    assert "4242" in f["message"]
    bd = with_(healthy(), **{"totals.blocked_io_s": 0.05})  # 2.5% of observed
    assert F.IO_WAIT not in kinds(F.findings(bd))


def test_irq():
    bd = with_(healthy(), **{"totals.irq_s": 0.02, "totals.softirq_s": 0.03})
    bd["threads"][0]["softirq_s"] = 0.03
    f = by_kind(F.findings(bd), F.IRQ)
    assert f["severity"] == "warn"  # 50 ms of 1.4 s on-CPU = 3.6%
    assert "smp_affinity" in f["message"] and "python3" in f["message"]
    bd = with_(healthy(), **{"totals.irq_s": 0.005})
    assert F.IRQ not in kinds(F.findings(bd))


def test_migrations():
    bd = with_(healthy(), **{"totals.migrations": 300})
    bd["threads"][1]["migrations"] = 250
    f = by_kind(F.findings(bd), F.MIGRATIONS)
    assert "300" in f["message"] and "worker-1" in f["message"] and "pinned" in f["message"]
    assert F.MIGRATIONS not in kinds(F.findings(with_(healthy(), **{"totals.migrations": 30})))


def test_rt_blocker():
    bd = healthy()
    bd["blockers"] = [{"comm": "rtspin", "pid": 888, "time_s": 0.6, "preemptions": 2, "prio": 49}]
    out = F.findings(bd)
    f = by_kind(out, F.RT_THROTTLING)
    assert "rtspin" in f["message"] and "888" in f["message"] and f["severity"] == "crit"
    assert by_kind(out, F.CPU_CONTENTION)["severity"] == "crit"
    bd["blockers"][0]["prio"] = 120  # normal task: contention only
    assert F.RT_THROTTLING not in kinds(F.findings(bd))


def test_rt_preset_waiting_means_throttling():
    bd = with_(healthy(), **{"totals.runqueue_wait_s": 0.2})
    ctx = {"preset": {"name": "realtime", "policy": "fifo"}, "rt_runtime_us": 950000}
    f = by_kind(F.findings(bd, ctx), F.RT_THROTTLING)
    assert "realtime" in f["message"] and "950000" in f["message"]
    assert F.RT_THROTTLING not in kinds(F.findings(bd, {"preset": {"name": "default", "policy": "other"}}))


def test_lost_events():
    bd = healthy()
    bd["lost_events"] = {"total": 500, "per_cpu": {"0": {"overrun": 500, "dropped_events": 0},
                                                   "1": {"overrun": 0, "dropped_events": 0}}}
    out = F.findings(bd)
    f = by_kind(out, F.LOST_EVENTS)
    assert f["severity"] == "crit"  # 500 of 1734
    assert "incomplete" in f["message"] and "CPU 0" in f["message"] and "4242" in f["message"]
    assert F.HEALTHY not in kinds(out)
    bd["lost_events"]["total"] = 10
    bd["events"] = 100000
    assert by_kind(F.findings(bd), F.LOST_EVENTS)["severity"] == "warn"


def test_degraded_mode():
    out = F.findings(schedstat())
    f = by_kind(out, F.DEGRADED_MODE)
    assert f["severity"] == "info" and "schedstat" in f["message"] and "missing" in f["message"]
    assert F.HEALTHY in kinds(out)
    # run-queue wait still flagged in schedstat mode, even without blockers
    out = F.findings(with_(schedstat(), **{"totals.runqueue_wait_s": 0.9}))
    assert by_kind(out, F.RUNQUEUE_WAIT)["severity"] == "crit"
    assert out[0]["kind"] == F.RUNQUEUE_WAIT


def test_severity_ordering():
    bd = contended()
    bd["totals"]["migrations"] = 100  # warn
    bd["lost_events"]["total"] = 1  # warn
    out = F.findings(bd)
    sev = [F.SEVERITY_ORDER[f["severity"]] for f in out]
    assert sev == sorted(sev)
    assert out[0]["severity"] == "crit"
    assert F.worst_severity(out) == "crit"
    assert F.worst_severity([]) == "info"


def test_robust_to_missing_keys():
    assert kinds(F.findings({})) == [F.HEALTHY]
    assert kinds(F.findings({"mode": "full", "totals": {}, "blockers": None})) == [F.HEALTHY]


def test_idle_wakeup_named_when_waiting_for_idle_cpus():
    from tracing.findings import IDLE_WAKEUP, findings
    bd = {"mode": "full", "window": {"duration_s": 1.0}, "totals": {"wall_s": 1.0, "idle_wait_s": 0.3,
          "runqueue_wait_s": 0.3, "on_cpu_s": 0.7}, "threads": [], "blockers": []}
    f = [x for x in findings(bd) if x["kind"] == IDLE_WAKEUP]
    assert f and f[0]["severity"] == "crit" and "300 ms" in f[0]["message"]
    bd["totals"]["idle_wait_s"] = 0.004  # a few ms of wakeup latency is normal
    assert not [x for x in findings(bd) if x["kind"] == IDLE_WAKEUP]


def test_inferred_switches_named_when_a_noticeable_share():
    bd = healthy()  # 2 s of observed thread time
    bd["totals"].update(inferred_switches=7, uncertain_s=0.004)
    assert F.INFERRED_SWITCHES not in kinds(F.findings(bd))  # below MIN_UNCERTAIN_S: the report's count is enough
    bd["totals"]["uncertain_s"] = 0.08  # 4% of 2 s
    assert F.INFERRED_SWITCHES not in kinds(F.findings(bd))
    bd["totals"]["uncertain_s"] = 0.2  # 10%
    bd["threads"][0]["uncertain_s"] = 0.2
    f = by_kind(F.findings(bd), F.INFERRED_SWITCHES)
    assert f["severity"] == "warn" and "7 context switch" in f["message"] and "200 ms" in f["message"]
    assert f["evidence"]["share"] == pytest.approx(0.1) and f["evidence"]["top_tid"] == 4242
    bd["totals"]["uncertain_s"] = 0.6
    assert by_kind(F.findings(bd), F.INFERRED_SWITCHES)["severity"] == "crit"


def test_unknown_loss_is_not_zero():
    bd = healthy()
    bd["lost_events"] = {"total": 0, "per_cpu": {"0": {"overrun": 0, "dropped_events": 0},
                                                 "1": {"overrun": None, "dropped_events": None}},
                         "unknown_cpus": [1]}
    out = F.findings(bd)
    f = by_kind(out, F.LOST_EVENTS)
    assert f["severity"] == "warn" and "unknown" in f["message"] and "CPU 1" in f["message"]
    assert F.HEALTHY not in kinds(out)
    bd["lost_events"]["total"] = 3  # known loss on another CPU as well
    assert by_kind(F.findings(bd), F.LOST_EVENTS)["severity"] == "crit"


def test_event_that_failed_to_enable_is_flagged_not_healthy():
    bd = healthy()
    bd["missing_events"] = {"sched/sched_switch": "failed to enable: Invalid argument"}
    out = F.findings(bd)
    f = by_kind(out, F.MISSING_EVENTS)
    assert f["severity"] == "crit" and "sched/sched_switch" in f["message"] and "Invalid argument" in f["message"]
    assert F.HEALTHY not in kinds(out) and out[0]["kind"] == F.MISSING_EVENTS
    bd["missing_events"] = {"sched/sched_waking": "failed to enable: Device or resource busy",
                            "irq/softirq_entry": "failed to enable: Invalid argument",
                            "vmscan/mm_vmscan_memcg_reclaim_begin": "absent on this kernel"}
    sev = {f["evidence"]["event"]: f["severity"] for f in F.findings(bd) if f["kind"] == F.MISSING_EVENTS}
    assert sev == {"sched/sched_waking": "warn", "irq/softirq_entry": "info"}  # an optional absent one: no finding


def _self_contended(pid=4242):
    """tts-synth (pid) waited behind its own torch worker and the web loop."""
    bd = healthy(pid=pid)
    bd["threads"][0]["comm"] = "tts-synth"
    bd["threads"][1]["comm"] = "torch-intra-1"
    bd["threads"].append({**bd["threads"][1], "tid": pid + 2, "comm": "web-loop"})
    bd["blockers"] = [{"comm": "torch-intra-1", "pid": pid + 1, "time_s": 0.2, "preemptions": 9},
                      {"comm": "web-loop", "pid": pid + 2, "time_s": 0.1, "preemptions": 3}]
    t0 = bd["window"]["start_s"]
    bd["segments"] += [
        {"tid": pid, "state": "runnable", "start_s": t0 + 0.1, "end_s": t0 + 0.3, "cpu": 0,
         "blocker": f"torch-intra-1:{pid + 1}"},
        {"tid": pid + 1, "state": "runnable", "start_s": t0 + 0.4, "end_s": t0 + 0.5, "cpu": 0,
         "blocker": f"web-loop:{pid + 2}"},
    ]
    roles = {pid: "synthesis", pid + 1: "torch-intra", pid + 2: "web-loop"}
    return bd, roles


def test_self_contention_names_the_roles_and_follows_the_readback():
    bd, roles = _self_contended()
    # torch threads already match the CPUs: no "set torch threads to 2"
    ctx = {"preset": {"name": "default", "cpus": "0-1", "torch_threads": 2}, "roles": roles}
    f = by_kind(F.findings(bd, ctx), F.SELF_CONTENTION)
    m = f["message"]
    assert "tts-synth waited 200 ms behind torch-intra-1" in m
    assert "torch-intra-1 waited 100 ms behind web-loop" in m
    assert "set torch threads to" not in m
    assert "already match the 2 CPU(s)" in m and "torch threads 1" in m and "web server" in m
    assert f["evidence"]["roles"] == ["synthesis", "torch-intra", "web-loop"]
    c = f["evidence"]["collisions"][0]
    assert (c["waiter_role"], c["holder_role"], c["waiter"], c["holder"]) == \
        ("synthesis", "torch-intra", "tts-synth", "torch-intra-1")
    # JSON round trip turns tids into strings: still understood
    ctx2 = {**ctx, "roles": {str(k): v for k, v in roles.items()}}
    assert by_kind(F.findings(bd, ctx2), F.SELF_CONTENTION)["evidence"]["roles"] == f["evidence"]["roles"]


def test_self_contention_too_many_torch_threads():
    bd, roles = _self_contended()
    ctx = {"preset": {"name": "pinned", "cpus": "1", "torch_threads": 4}, "roles": roles}
    m = by_kind(F.findings(bd, ctx), F.SELF_CONTENTION)["message"]
    assert "torch runs 4 intra-op threads on the preset's 1 CPU(s): set torch threads to 1" in m


def test_self_contention_with_the_trace_worker_and_one_cpu():
    bd, roles = _self_contended()
    roles[4244] = "trace-aux"
    ctx = {"preset": {"name": "pinned", "cpus": "1", "torch_threads": 1}, "roles": roles}
    m = by_kind(F.findings(bd, ctx), F.SELF_CONTENTION)["message"]
    assert "trace worker (trace-aux)" in m and "one CPU" in m and "set torch threads" not in m
