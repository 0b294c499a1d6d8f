"""analysis.analyze on hand-made event lists where every number can be computed by hand."""
import pytest

from tracing import parse as P
from tracing.analysis import analyze

PID = 100  # our process; thread 101 is ours too, 555 is a hog, 0 is idle


def ev(*rows):
    return P.Events.from_rows(rows)


def thread(bd, tid):
    return next(t for t in bd["threads"] if t["tid"] == tid)


def states_sum(t):
    return t["on_cpu_s"] + t["runqueue_wait_s"] + t["blocked_io_s"] + t["sleep_s"]


def test_preemption_blocker_and_states():
    e = ev(
        P.marker(10.0, 0, f"B|{PID}|gen", 100, PID),
        # 100 runs from the window start (first event on cpu0 is its switch-out) until preempted at 10.1
        P.switch(10.1, 0, "py", 100, "R+", "hog", 555, tgid=PID),
        P.switch(10.3, 0, "hog", 555, "S", "py", 100, tgid=555),          # 0.2 s runnable behind hog
        P.switch(10.4, 0, "py", 100, "D", "swapper/0", 0, tgid=PID),      # 0.1 s more on cpu, then D
        P.wake(10.6, 1, "py", 100, 0, cur_tid=0),                          # 0.2 s blocked_io
        P.wake(10.6, 1, "py", 100, 0, kind=P.K_WAKEUP, cur_tid=0),
        P.switch(10.6005, 0, "swapper/0", 0, "R", "py", 100, tgid=-1),    # 500 us wakeup latency
        P.switch(10.7, 0, "py", 100, "S", "swapper/0", 0, tgid=PID),      # sleep until the end
        P.marker(10.8, 1, f"E|{PID}", 101, PID),  # 101 is current on cpu1; idle was at 10.6
    )
    bd = analyze(e, PID, 10.0, 11.0).to_dict()
    t = thread(bd, 100)
    assert t["on_cpu_s"] == pytest.approx(0.1 + 0.1 + 0.0995)
    assert t["runqueue_wait_s"] == pytest.approx(0.2 + 0.0005)
    assert t["blocked_io_s"] == pytest.approx(0.2)
    assert t["sleep_s"] == pytest.approx(0.3)
    assert t["observed_s"] == pytest.approx(1.0) == pytest.approx(states_sum(t))
    assert (t["voluntary_switches"], t["involuntary_switches"]) == (2, 1)
    assert bd["blockers"][0] == {"comm": "hog", "pid": 555, "time_s": pytest.approx(0.2), "preemptions": 1,
                                 "uncertain_s": 0.0}
    assert bd["wakeup_latency"]["count"] == 1
    assert bd["wakeup_latency"]["max_us"] == pytest.approx(500, abs=0.01)
    assert bd["wakeup_latency"]["hist_log2_us"] == {"256": 1}
    (st,) = bd["stages"]
    assert st["name"] == "gen" and st["wall_s"] == pytest.approx(0.8)
    assert st["sleep_s"] == pytest.approx(0.1) and st["blocked_io_s"] == pytest.approx(0.2)
    # 101 never switched: running after cpu1's last event with another current task (10.6)
    t101 = thread(bd, 101)
    assert t101["on_cpu_s"] == pytest.approx(0.4) == pytest.approx(t101["observed_s"])
    assert t101["voluntary_switches"] + t101["involuntary_switches"] == 0
    assert st["on_cpu_s"] + st["runqueue_wait_s"] + st["blocked_io_s"] + st["sleep_s"] == pytest.approx(0.8 + 0.2)
    assert bd["totals"]["threads"] == len(bd["threads"]) == 2
    seg_states = [s["state"] for s in bd["segments"] if s["tid"] == 100]
    assert seg_states == ["running", "runnable", "running", "blocked_io", "runnable", "running", "sleep"]
    assert bd["segments"][1]["blocker"] == "hog:555"


def test_thread_that_never_switches_is_running_from_its_cpus_first_event():
    # A CPU-bound thread alone on an idle CPU is never switched: its markers are its only events.
    e = ev(
        P.marker(10.2, 1, f"B|{PID}|gen", 100, PID),
        P.simple(10.5, 1, P.K_IRQ_ENTRY, 100, PID, a=30),
        P.simple(10.501, 1, P.K_IRQ_EXIT, 100, PID, a=30),
        P.marker(10.9, 1, f"E|{PID}", 100, PID),
    )
    bd = analyze(e, PID, 10.0, 11.0).to_dict()
    t = thread(bd, 100)
    # nothing is known before cpu1's first event (10.2): running from there to the window end
    assert t["on_cpu_s"] == pytest.approx(0.8) == pytest.approx(t["observed_s"])
    assert t["irq_s"] == pytest.approx(0.001)
    (st,) = bd["stages"]
    assert st["on_cpu_s"] == pytest.approx(0.7) and st["runqueue_wait_s"] == 0


def test_irq_softirq_reclaim_migration_nested_stages():
    e = ev(
        P.marker(1.0, 0, f"B|{PID}|outer", 100, PID),
        P.marker(1.1, 0, f"B|{PID}|inner", 100, PID),
        P.simple(1.2, 0, P.K_SOFTIRQ_ENTRY, 100, PID, a=1),
        P.simple(1.21, 0, P.K_IRQ_ENTRY, 100, PID, a=30),
        P.simple(1.22, 0, P.K_IRQ_EXIT, 100, PID, a=30),   # 10 ms hard irq nested in softirq
        P.simple(1.25, 0, P.K_SOFTIRQ_EXIT, 100, PID, a=1),  # softirq 50 ms - 10 ms nested
        P.simple(1.3, 0, P.K_IRQ_ENTRY, 777, 777, a=31),   # someone else's irq: not ours
        P.simple(1.31, 0, P.K_IRQ_EXIT, 777, 777, a=31),
        P.simple(1.4, 0, P.K_RECLAIM_BEGIN, 100, PID),
        P.simple(1.45, 0, P.K_RECLAIM_END, 100, PID),
        P.migrate(1.5, 1, "py", 101, 1, 0, cur_tid=17),
        P.marker(1.6, 0, f"E|{PID}", 100, PID),
        P.marker(1.7, 0, f"E|{PID}", 100, PID),
        P.marker(1.7, 0, "B|999|other-process", 100, PID),
    )
    bd = analyze(e, PID, 1.0, 2.0, tids=[101]).to_dict()
    t = thread(bd, 100)
    assert t["irq_s"] == pytest.approx(0.01) and t["softirq_s"] == pytest.approx(0.04)
    assert t["reclaim_s"] == pytest.approx(0.05)
    assert thread(bd, 101)["migrations"] == 1 and bd["totals"]["migrations"] == 1
    names = {s["name"]: s for s in bd["stages"]}
    assert set(names) == {"outer", "inner"}
    assert names["inner"]["wall_s"] == pytest.approx(0.5) and names["outer"]["wall_s"] == pytest.approx(0.7)
    assert names["inner"]["softirq_s"] == pytest.approx(0.04) and names["inner"]["migrations"] == 1


def test_blockers_sum_over_several_tasks_and_migration_of_runnable_thread():
    e = ev(
        P.switch(5.0, 0, "a", 201, "S", "hogA", 301, tgid=201),
        P.wake(5.1, 1, "py", 100, 0, cur_tid=0),            # 100 runnable on cpu0 behind hogA
        P.switch(5.2, 0, "hogA", 301, "R", "hogB", 302, tgid=301),  # then hogB
        P.migrate(5.3, 1, "py", 100, 0, 1, cur_tid=0),      # moved to cpu1 (idle, not a blocker)
        P.switch(5.35, 1, "swapper/1", 0, "R", "py", 100),
        P.switch(5.5, 1, "py", 100, "S", "swapper/1", 0, tgid=PID),
    )
    bd = analyze(e, PID, 5.0, 6.0).to_dict()
    bl = {(b["comm"], b["pid"]): b["time_s"] for b in bd["blockers"]}
    assert bl == {("hogA", 301): pytest.approx(0.1), ("hogB", 302): pytest.approx(0.1)}
    # 5.3..5.35 runnable on cpu1 while it ran its idle task: nobody to blame, a slow wakeup
    assert bd["totals"]["idle_wait_s"] == pytest.approx(0.05)
    t = thread(bd, 100)
    assert t["runqueue_wait_s"] == pytest.approx(0.25) and t["on_cpu_s"] == pytest.approx(0.15)
    assert t["sleep_s"] == pytest.approx(0.5) and t["observed_s"] == pytest.approx(0.9)
    assert t["migrations"] == 1
    assert bd["wakeup_latency"]["max_us"] == pytest.approx(250000, rel=1e-6)


def test_parse_text_round_trip_with_odd_comms():
    text = "\n".join([
        "# tracer: nop",
        "#",
        "     Web Content-4242    (   4200) [001] d..2.   100.000100: sched_switch: prev_comm=Web Content prev_pid=4242 prev_prio=120 prev_state=R+ ==> next_comm=kworker/1:1-ev next_pid=77 next_prio=120",
        "  kworker/1:1-ev-77      (     77) [001] d..3.   100.000200: sched_waking: comm=a-b c pid=4243 prio=120 target_cpu=000",
        "          <idle>-0       (-------) [000] d.h1.   100.000300: irq_handler_entry: irq=36 name=virtio1-req.0",
        "     Web Content-4242    (   4200) [001] ...1. 123456.000400: tracing_mark_write: B|4200|stage a|b",
        "            x=y-9        (      9) [000] d..2.   100.000500: sched_switch: prev_comm=x=y prev_pid=9 prev_prio=120 prev_state=D ==> next_comm=swapper/0 next_pid=0 next_prio=120",
    ])
    e = P.parse_trace(text)
    assert len(e) == 5
    assert e.kind.tolist() == [P.K_SWITCH, P.K_WAKING, P.K_IRQ_ENTRY, P.K_MARKER, P.K_SWITCH]
    assert (e.tid[0], e.tgid[0], e.a[0], chr(e.b[0]), e.c[0]) == (4242, 4200, 77, "R", 1)
    assert (e.sa(0), e.sb(0)) == ("Web Content", "kworker/1:1-ev")
    assert (e.a[1], e.b[1], e.sa(1)) == (4243, 0, "a-b c")
    assert (e.cpu[2], e.tgid[2], e.a[2]) == (0, -1, 36)
    assert e.ts[3] == pytest.approx(123456.0004) and e.sa(3) == "B|4200|stage a|b"
    assert (e.sa(4), chr(e.b[4]), e.a[4]) == ("x=y", "D", 0)  # '=' in a comm takes the slow path
    assert e.ts[0] == pytest.approx(100.0001)


def test_invariant_on_random_schedule():
    import random
    rng = random.Random(7)
    rows, t, running = [], 0.0, {0: 0, 1: 0}
    waiting = set()
    state = {100: "S", 101: "S", 102: "S"}
    for _ in range(3000):
        t += rng.uniform(1e-5, 1e-3)
        cpu = rng.randrange(2)
        tid = rng.choice([100, 101, 102, 555])
        if tid != 555 and state[tid] == "S" and rng.random() < 0.5:
            rows.append(P.wake(t, cpu, "w", tid, cpu)); state[tid] = "W"; continue
        cur = running[cpu]
        nxt = tid if (tid == 555 or state[tid] == "W") and tid not in running.values() else 0
        if nxt == cur:
            continue
        st = rng.choice(["R", "S", "D"]) if cur else "R"
        rows.append(P.switch(t, cpu, "c", cur, st, "n", nxt, tgid=PID if cur in state else cur))
        if cur in state:
            state[cur] = "W" if st == "R" else "S"
        if nxt in state:
            state[nxt] = "X"
        running[cpu] = nxt
    bd = analyze(P.Events.from_rows(rows), PID, 0.0, t + 0.01).to_dict()
    assert bd["threads"]
    for th in bd["threads"]:
        assert states_sum(th) == pytest.approx(th["observed_s"], abs=1e-9)
        assert th["observed_s"] <= t + 0.01


def test_missing_switch_outs_of_another_task():
    # The case of issue 17: tokio-rt-worker's switch-outs never reach the trace. py (ours) is
    # preempted by it at 1.000; the switch back is missing, but softirqs show py current from 1.006.
    e = ev(
        P.switch(1.000, 0, "py", 100, "R+", "tokio", 75, tgid=PID),
        P.simple(1.002, 0, P.K_SOFTIRQ_ENTRY, 75, 75, a=1),   # tokio's last evidence
        P.simple(1.0021, 0, P.K_SOFTIRQ_EXIT, 75, 75, a=1),
        P.simple(1.006, 0, P.K_SOFTIRQ_ENTRY, 100, PID, a=1),  # py current: it was switched in
        P.simple(1.0061, 0, P.K_SOFTIRQ_EXIT, 100, PID, a=1),
        P.marker(1.020, 0, "x", 100, PID),
        P.switch(1.040, 0, "py", 100, "S", "swapper/0", 0, tgid=PID),
    )
    bd = analyze(e, PID, 1.0, 1.05).to_dict()
    t = thread(bd, 100)
    # switched in at tokio's last evidence (the start of the gap 1.0021..1.006): tokio is not charged past it
    assert t["runqueue_wait_s"] == pytest.approx(0.0021)
    assert t["on_cpu_s"] == pytest.approx(1.040 - 1.0021) and t["sleep_s"] == pytest.approx(0.01)
    assert (t["inferred_switches"], t["involuntary_switches"], t["voluntary_switches"]) == (1, 1, 1)
    assert t["uncertain_s"] == pytest.approx(1.006 - 1.0021)  # the truth is within this of the split
    assert bd["totals"]["inferred_switches"] == 1 and bd["totals"]["uncertain_s"] == pytest.approx(0.0039)
    (b,) = bd["blockers"]
    assert (b["comm"], b["pid"], b["preemptions"]) == ("tokio", 75, 1) and b["time_s"] == pytest.approx(0.0021)
    assert b["uncertain_s"] == pytest.approx(0.0039)  # it may have held the CPU up to py's first evidence
    assert bd["wakeup_latency"]["count"] == 0  # an inferred switch-in is no latency sample
    assert [s["state"] for s in bd["segments"]] == ["runnable", "running", "sleep"]


def test_inferred_switch_outs_of_our_thread_resolve_by_the_next_event():
    e = ev(
        P.marker(2.0, 0, "a", 100, PID),                       # py current on cpu0
        P.simple(2.010, 0, P.K_IRQ_ENTRY, 0, -1, a=5),          # idle current: py left in 2.0..2.01
        P.simple(2.0101, 0, P.K_IRQ_EXIT, 0, -1, a=5),
        P.wake(2.050, 1, "py", 100, 0, cur_tid=0),              # woken: it slept since 2.0
        P.switch(2.0502, 0, "swapper/0", 0, "R", "py", 100),
        P.marker(2.060, 0, "b", 100, PID),                      # last evidence before hog ran
        P.simple(2.065, 0, P.K_IRQ_ENTRY, 555, 555, a=5),       # hog current: py -> hog missing
        P.simple(2.0651, 0, P.K_IRQ_EXIT, 555, 555, a=5),
        P.switch(2.070, 0, "hog", 555, "S", "py", 100, tgid=555),  # switched back in: it was runnable
        P.marker(2.080, 0, "c", 100, PID),
        P.simple(2.090, 0, P.K_SOFTIRQ_ENTRY, 0, -1, a=1),      # idle again; nothing resolves it
        P.simple(2.0901, 0, P.K_SOFTIRQ_EXIT, 0, -1, a=1),
    )
    bd = analyze(e, PID, 2.0, 2.1).to_dict()
    t = thread(bd, 100)
    assert t["sleep_s"] == pytest.approx(0.05 + 0.02)  # 2.0..2.05, and 2.08..2.1 (unresolved: sleep)
    assert t["runqueue_wait_s"] == pytest.approx(0.0002 + 0.01)  # wakeup, then 2.06..2.07 behind hog
    assert t["on_cpu_s"] == pytest.approx(0.0098 + 0.01)
    assert t["observed_s"] == pytest.approx(0.1) == pytest.approx(states_sum(t))
    assert t["inferred_switches"] == 3 and t["voluntary_switches"] + t["involuntary_switches"] == 0
    # gaps 2.0..2.01, 2.06..2.065, 2.08..2.09, then 2.09..2.1 where asleep/runnable is unknown
    assert t["uncertain_s"] == pytest.approx(0.01 + 0.005 + 0.01 + 0.01)
    (b,) = bd["blockers"]  # hog from its first evidence; the gap before it is nobody's
    assert (b["pid"], b["time_s"], b["uncertain_s"]) == (555, pytest.approx(0.005), pytest.approx(0.005))
    assert bd["wakeup_latency"]["count"] == 1


def test_woken_thread_is_not_switched_in_before_its_wakeup():
    # cpu0 idle since 3.0 (its last event); py woken at 3.08; the idle -> py switch is missing
    e = ev(
        P.switch(3.0, 0, "py", 100, "S", "swapper/0", 0, tgid=PID),
        P.wake(3.08, 1, "py", 100, 0, cur_tid=0),
        P.marker(3.09, 0, "x", 100, PID),
    )
    bd = analyze(e, PID, 3.0, 3.1).to_dict()
    t = thread(bd, 100)
    assert t["sleep_s"] == pytest.approx(0.08) and t["runqueue_wait_s"] == 0
    assert t["on_cpu_s"] == pytest.approx(0.02) and t["uncertain_s"] == pytest.approx(0.01)
    assert bd["totals"]["idle_wait_s"] == 0
