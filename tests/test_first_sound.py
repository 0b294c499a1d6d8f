"""The breakdown split at the first sound (tracing.analysis first_sound) and the finding that names
what delayed it: on hand-made events where every number is computed by hand, and on a real trace
window with a planted SCHED_FIFO hog of known length that runs before the first segment only."""
import os
import threading
import time

import pytest

from tests.test_ground_truth import TR, fifo_hog, spin
from tracing import parse as P
from tracing import tracefs
from tracing.analysis import SEGMENT_COUNTER, analyze
from tracing.findings import FIRST_SOUND, findings
from tracing.window import TraceWindow

PID = 100


def ev(*rows):
    return P.Events.from_rows(rows)


def test_split_before_and_after_the_first_segment():
    e = ev(
        # 100 runs from 10.0, a hog preempts it at 10.1 for 0.2 s, 100 runs again from 10.3
        P.marker(10.0, 0, f"B|{PID}|synthesis", 100, PID),
        P.switch(10.1, 0, "py", 100, "R+", "hog", 555, tgid=PID),
        P.switch(10.3, 0, "hog", 555, "S", "py", 100, tgid=555),
        P.marker(10.4, 0, f"C|{PID}|{SEGMENT_COUNTER}|1", 100, PID),  # the first segment is out
        # after it: kswapd0 takes the CPU for 0.05 s, then 100 runs to the end
        P.switch(10.6, 0, "py", 100, "R+", "kswapd0", 77, tgid=PID),
        P.switch(10.65, 0, "kswapd0", 77, "S", "py", 100, tgid=77),
        P.marker(10.8, 0, f"C|{PID}|{SEGMENT_COUNTER}|2", 100, PID),  # a later segment: no new split
    )
    bd = analyze(e, PID, 10.0, 11.0).to_dict()
    fs = bd["first_sound"]
    assert fs["at_s"] == pytest.approx(10.4)
    b, a = fs["before"], fs["after"]
    assert (b["start_s"], b["end_s"], a["start_s"], a["end_s"]) == pytest.approx((10.0, 10.4, 10.4, 11.0))
    assert b["wall_s"] == pytest.approx(0.4) and a["wall_s"] == pytest.approx(0.6)
    assert b["on_cpu_s"] == pytest.approx(0.2) and b["runqueue_wait_s"] == pytest.approx(0.2)
    assert a["on_cpu_s"] == pytest.approx(0.55) and a["runqueue_wait_s"] == pytest.approx(0.05)
    assert b["blockers"] == [{"comm": "hog", "pid": 555, "time_s": pytest.approx(0.2)}]
    assert a["blockers"] == [{"comm": "kswapd0", "pid": 77, "time_s": pytest.approx(0.05)}]
    # the two slices add up to the whole window
    assert b["on_cpu_s"] + a["on_cpu_s"] == pytest.approx(bd["totals"]["on_cpu_s"])
    assert b["runqueue_wait_s"] + a["runqueue_wait_s"] == pytest.approx(bd["totals"]["runqueue_wait_s"])
    # the finding names the hog, with the share of the time to first sound, not of the request
    f = [x for x in findings(bd) if x["kind"] == FIRST_SOUND]
    assert len(f) == 1 and f[0]["severity"] == "crit"
    assert f[0]["message"].startswith("First sound was delayed 200 ms by hog (pid 555)")
    assert f[0]["evidence"]["share"] == pytest.approx(0.5) and f[0]["evidence"]["pid"] == 555


def test_blocker_hold_across_the_first_sound_is_cut_at_it():
    e = ev(
        P.marker(10.0, 1, f"B|{PID}|synthesis", 101, PID),
        P.switch(10.1, 1, "py", 101, "R+", "hog", 555, tgid=PID),
        P.marker(10.2, 0, f"C|{PID}|{SEGMENT_COUNTER}|1", 100, PID),  # written by thread 100 on cpu0
        P.switch(10.5, 1, "hog", 555, "S", "py", 101, tgid=555),
    )
    fs = analyze(e, PID, 10.0, 11.0).to_dict()["first_sound"]
    assert fs["before"]["blockers"][0]["time_s"] == pytest.approx(0.1)
    assert fs["after"]["blockers"][0]["time_s"] == pytest.approx(0.3)


def test_no_segment_no_split_and_no_finding():
    e = ev(P.switch(10.1, 0, "py", 100, "R+", "hog", 555, tgid=PID),
           P.switch(10.3, 0, "hog", 555, "S", "py", 100, tgid=555),
           P.marker(10.4, 0, f"C|999|{SEGMENT_COUNTER}|1", 100, PID))  # another process's counter
    bd = analyze(e, PID, 10.0, 11.0).to_dict()
    assert bd["first_sound"] == {}
    assert not [x for x in findings(bd) if x["kind"] == FIRST_SOUND]


def test_a_short_hold_before_the_first_sound_is_no_finding():
    bd = {"first_sound": {"before": {"wall_s": 1.0, "blockers": [{"comm": "x", "pid": 9, "time_s": 0.02}],
                                     "reclaim_s": 0.0, "blocked_io_s": 0.0}}}
    assert not [x for x in findings(bd) if x["kind"] == FIRST_SOUND]
    bd["first_sound"]["before"]["reclaim_s"] = 0.3  # direct reclaim: 30% of the time to first sound
    (f,) = [x for x in findings(bd) if x["kind"] == FIRST_SOUND]
    assert f["severity"] == "crit" and "direct memory reclaim" in f["message"] and "swap" in f["message"]


@pytest.mark.skipif(TR is None or not os.access(TR / "instances", os.W_OK), reason="no writable tracefs")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_planted_fifo_hog_before_the_first_segment():
    """A real window: the victim thread spins on one CPU, a SCHED_FIFO hog takes that CPU for
    200 ms, then the victim marks its first segment (as the service does) and spins 200 ms more.
    The hog is the first sound's blocker at ~200 ms and absent after it."""
    released, hog_done = threading.Event(), threading.Event()
    try:
        with fifo_hog(0.2) as (hog, victim_cpu, release):
            def victim(w):
                os.sched_setaffinity(0, {victim_cpu})
                released.set()
                end = time.monotonic() + 5
                while not hog_done.is_set() and time.monotonic() < end:
                    pass  # runnable throughout: the hog's 200 ms on this CPU are its wait
                spin(0.05)  # a little own work, then the first segment
                w.marker(f"C|{os.getpid()}|{SEGMENT_COUNTER}|1")
                spin(0.2)

            with TraceWindow() as w:
                t = threading.Thread(target=victim, args=(w,))
                t.start()
                released.wait(5)
                time.sleep(0.05)
                release()
                hog_done.set()
                t.join()
    finally:
        for p in (TR / "instances").iterdir():
            if p.name.startswith(f"ittsw-{os.getpid()}-"):
                tracefs.quiesce_and_remove(p)
    bd = w.analyze().to_dict()
    fs = bd["first_sound"]
    assert fs, "the counter marker was not found in the window"
    before = [b for b in fs["before"]["blockers"] if b["pid"] == hog.pid]
    after = [b for b in fs["after"]["blockers"] if b["pid"] == hog.pid]
    assert before and before[0]["time_s"] == pytest.approx(0.2, rel=0.1) and not after
    # the finding names the largest hold before the first sound: the hog, unless another helper's
    # load on this shared machine held the victim's CPU even longer (then that one, by name)
    (f,) = [x for x in findings(bd) if x["kind"] == FIRST_SOUND]
    top = max(fs["before"]["blockers"], key=lambda b: b["time_s"])
    assert f["evidence"]["pid"] == top["pid"] and f"{top['comm']} (pid {top['pid']})" in f["message"]
    assert f["evidence"]["delay_s"] >= before[0]["time_s"]

