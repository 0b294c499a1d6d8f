"""app/turns.py: the synthesis lock serves callers in arrival order; under "between" windows and
post-processing steps never run at once; under "overlap" they do, and during() says which ran."""
from __future__ import annotations

import threading
import time

import pytest

from app.turns import FifoLock, Turns


def _queue_up(lock: FifoLock, n: int, order: list) -> list[threading.Thread]:
    """n threads that take the lock one after another (each waits until the previous one is
    queued), note their number, and let go."""
    threads = []
    for i in range(n):
        def run(i=i):
            with lock:
                order.append(i)
        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 5
        while lock.waiting() < i + 1 and time.monotonic() < deadline:  # queued behind the holder
            time.sleep(0.001)
        threads.append(t)
    return threads


def test_fifo_lock_serves_callers_in_arrival_order():
    lock, order = FifoLock(), []
    lock.acquire()
    threads = _queue_up(lock, 8, order)
    assert lock.waiting() == 8 and lock.locked() and order == []
    lock.release()
    for t in threads:
        t.join(5)
    assert order == list(range(8)) and not lock.locked()


def _busy(turns: Turns, kind: str, log: list, hold_s: float = 0.05):
    cm = turns.window() if kind == "window" else turns.step("r1", "analysis")
    with cm:
        log.append((kind, "in", time.monotonic()))
        time.sleep(hold_s)
        log.append((kind, "out", time.monotonic()))


def _overlapped(log: list) -> bool:
    inside = 0
    for _, edge, _ in sorted(log, key=lambda e: e[2]):
        inside += 1 if edge == "in" else -1
        if inside > 1:
            return True
    return False


@pytest.mark.parametrize("policy, overlaps", [("between", False), ("overlap", True)])
def test_windows_and_steps_take_turns_only_under_between(policy, overlaps):
    turns, log = Turns(policy), []
    ts = [threading.Thread(target=_busy, args=(turns, kind, log)) for kind in ("window", "step", "window", "step")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    assert len(log) == 8 and _overlapped(log) is overlaps


def test_exclusive_steps_take_turns_even_under_overlap():
    turns, log = Turns("overlap"), []

    def build():
        with turns.step("r1", "attachment", exclusive=True):
            log.append(("attachment", "in", time.monotonic()))
            time.sleep(0.05)
            log.append(("attachment", "out", time.monotonic()))
    ts = [threading.Thread(target=_busy, args=(turns, "window", log)), threading.Thread(target=build)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    assert not _overlapped(log)


def test_during_reports_the_steps_inside_a_window_and_their_overlap():
    turns = Turns("overlap")
    with turns.step("a", "analysis"):
        time.sleep(0.02)
    t0 = time.monotonic()
    with turns.step("b", "analysis"):
        time.sleep(0.03)
    with turns.step("b", "complete"):
        time.sleep(0.01)
        running = turns.during(t0, time.monotonic())  # a step still running counts up to the end
    t1 = time.monotonic()
    got = turns.during(t0, t1)
    assert [(s["request"], s["step"]) for s in got] == [("b", "analysis"), ("b", "complete")]
    assert 0.025 < got[0]["wall_s"] < t1 - t0 and 0.005 < got[1]["wall_s"] < t1 - t0
    assert [(s["request"], s["step"]) for s in running] == [("b", "analysis"), ("b", "complete")]
    assert Turns("between").during(0, time.monotonic()) == []  # nothing can overlap: nothing logged


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        Turns("sometimes")
