"""tracing.rawparse: binary ring-buffer pages -> Events.

Two kinds of evidence: (1) a real window on this machine's tracefs, decoded from its pages and
from its text `trace`, must give the same events, field for field (the text parser is itself
checked against planted ground truth in test_ground_truth.py); (2) hand-built pages for the record
types a short capture may not contain (long records, time extends, absolute stamps, padding,
lost-event flags, garbage), encoded as events/header_event documents them. The formats used for
(2) are this kernel's (tests/data/*-6.18.txt, copied from /sys/kernel/tracing/events).
"""
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tracing import parse as P
from tracing import rawparse as R
from tracing import tracefs
from tracing.analysis import analyze
from tracing.report import render_report
from tracing.window import TraceWindow

DATA = Path(__file__).parent / "data"
TR = tracefs.find_tracefs(mount=False)
needs_tracefs = pytest.mark.skipif(TR is None or not os.access(TR / "instances", os.W_OK),
                                   reason="no writable tracefs")


def ring():
    formats = (DATA / "formats-6.18.txt").read_text().split("%%\n")
    return R.ring_format((DATA / "header_page-6.18.txt").read_text(), [f for f in formats if f.strip()], 4096)


# -- a real window, decoded both ways ------------------------------------------------------------
def _workload(stop_at):
    """Switches, wakeups, migrations (affinity flips), a long sleep (time extends)."""
    cpus = sorted(os.sched_getaffinity(0))

    def hopper():
        i = 0
        while time.monotonic() < stop_at:
            if len(cpus) > 1:
                os.sched_setaffinity(0, {cpus[i % len(cpus)]})
            i += 1
            time.sleep(0.002)

    ts = [threading.Thread(target=hopper) for _ in range(2)]
    for t in ts:
        t.start()
    return ts


@needs_tracefs
def test_real_window_pages_equal_text_field_for_field(kernel_text):
    long_marker = "x" * 300  # longer than 112 bytes: a type_len 0 record
    with TraceWindow() as w:
        ts = _workload(time.monotonic() + 0.4)
        with w.stage("合成 stage"):
            time.sleep(0.3)  # a quiet stretch: the kernel writes time-extend records after gaps
        w.marker(long_marker)
        for t in ts:
            t.join()
    c = w.capture
    # the text prints every task's tgid (saved_tgids): ask for all of them, not just the owner's
    c.tgids = tracefs.TgidLookup(c.capabilities["root"])
    eb, src = c.events()
    assert src == "pages" and c.ring is not None and sum(map(len, c.pages.values())) > 0
    et = P.parse_trace(c.raw_text)
    assert len(eb) == len(et) > 200
    for col in ("cpu", "kind", "tid", "tgid", "a", "b", "c"):
        x, y = getattr(eb, col), getattr(et, col)
        bad = np.flatnonzero(x != y)
        assert len(bad) == 0, f"{col} differs at rows {bad[:5]}: {x[bad[:5]]} vs {y[bad[:5]]}"
    # the text prints ns rounded to us
    assert np.array_equal(np.floor(eb.ts * 1e6 + 0.5).astype(np.int64), np.round(et.ts * 1e6).astype(np.int64))
    for i in range(len(eb)):
        assert eb.sa(i) == et.sa(i), i
        if eb.kind[i] == P.K_SWITCH:
            assert eb.sb(i) == et.sb(i), i
    marks = [eb.sa(i) for i in np.flatnonzero(eb.kind == P.K_MARKER)]
    assert f"B|{os.getpid()}|合成 stage" in marks and long_marker in marks
    if len(os.sched_getaffinity(0)) > 1:
        mig = np.flatnonzero((eb.kind == P.K_MIGRATE) & np.isin(eb.a, [t.native_id for t in ts]))
        comm = Path("/proc/self/comm").read_text().strip()  # Python threads keep the process's
        assert len(mig) > 0 and all(eb.sa(i) == comm for i in mig)  # a __data_loc string
    # and the analysis cannot tell them apart
    ba = analyze(eb, os.getpid(), c.start_ts, c.end_ts, tids=c.tids).to_dict()
    bt = analyze(et, os.getpid(), c.start_ts, c.end_ts, tids=c.tids).to_dict()
    for k in ("on_cpu_s", "runqueue_wait_s", "blocked_io_s", "sleep_s", "migrations", "voluntary_switches"):
        assert ba["totals"][k] == pytest.approx(bt["totals"][k], abs=1e-4), k
    bd = w.analyze().to_dict()
    assert bd["events"] == len(eb) and bd["source"] == "pages"
    assert "decoded from the ring-buffer pages" in render_report(bd, [])


@needs_tracefs
def test_window_falls_back_to_text_when_pages_cannot_be_decoded(kernel_text):
    with TraceWindow() as w:
        w.marker("fallback")
    c = w.capture
    c.pages = {0: b"\xff" * 100}  # not even one page: nothing decodable
    c.ring = None
    ev, src = c.events()
    assert src == "text" and any(ev.sa(i) == "fallback" for i in np.flatnonzero(ev.kind == P.K_MARKER))


# -- hand-built pages ------------------------------------------------------------------------------
SWITCH_ID, PRINT_ID, MIGRATE_ID, WAKING_ID = 372, 5, 371, 375


def rec(payload: bytes, delta: int) -> bytes:
    """A data record as the ring buffer writes it (4-byte aligned)."""
    payload += b"\0" * (-len(payload) % 4)
    if len(payload) <= 112:
        return struct.pack("<I", (len(payload) // 4) | (delta << 5)) + payload
    return struct.pack("<II", 0 | (delta << 5), len(payload) + 4) + payload


def extend(delta: int) -> bytes:
    return struct.pack("<II", 30 | ((delta & ((1 << 27) - 1)) << 5), delta >> 27)


def absolute(ts: int) -> bytes:
    return struct.pack("<II", 31 | ((ts & ((1 << 27) - 1)) << 5), (ts >> 27) & 0xFFFFFFFF)


def padding(body: int) -> bytes:
    return struct.pack("<II", 29 | (1 << 5), body) + b"\0" * (body - 4)


def common(ev_id, pid):
    return struct.pack("<HBBi", ev_id, 0, 0, pid)


def switch(prev_comm, prev_pid, prev_state, next_comm, next_pid):
    return common(SWITCH_ID, prev_pid) + struct.pack(
        "<16siiq16sii", prev_comm.encode(), prev_pid, 120, prev_state, next_comm.encode(), next_pid, 120)


def waking(cur, comm, pid, target):
    return common(WAKING_ID, cur) + struct.pack("<16siii", comm.encode(), pid, 120, target)


def migrate(cur, comm, pid, orig, dest):
    name = comm.encode() + b"\0"
    return common(MIGRATE_ID, cur) + struct.pack("<Iiiii", 28 | (len(name) << 16), pid, 120, orig, dest) + name


def mark(cur, text):
    return common(PRINT_ID, cur) + struct.pack("<Q", 0) + text.encode() + b"\n\0"


def page(ts: int, records: bytes, flags: int = 0) -> bytes:
    assert len(records) <= 4080
    commit = len(records) | flags
    return struct.pack("<Qq", ts, commit) + records + b"\0" * (4080 - len(records))


def test_record_types_and_timestamps():
    body = (rec(switch("py", 100, 0x100, "hog", 555), 100)       # R+ (preempted), ts = base + 100
            + extend((1 << 30) + 5) + rec(switch("hog", 555, 1, "py", 100), 0)  # +2^30+5 ns
            + rec(mark(100, "B|100|" + "y" * 200), 7)             # a long record (type_len 0)
            + padding(12)                                          # a discarded event: no time
            + rec(waking(100, "w", 7, 1), 3)
            + rec(migrate(100, "kworker/1:0", 8, 1, 0), 1)
            + rec(switch("py", 100, 0x402, "swapper/0", 0), 2))   # D|... first listed bit wins
    base = 5_000_000_000
    ev = R.parse_pages({0: page(base, body)}, ring(), {100: 100, 555: 555})
    assert ev.kind.tolist() == [P.K_SWITCH, P.K_SWITCH, P.K_MARKER, P.K_WAKING, P.K_MIGRATE, P.K_SWITCH]
    t = [base + 100, base + 100 + (1 << 30) + 5]
    t += [t[-1] + 7, t[-1] + 10, t[-1] + 11, t[-1] + 13]
    assert np.round(ev.ts * 1e9).astype(np.int64).tolist() == t
    assert (ev.tid[0], ev.a[0], chr(ev.b[0]), ev.c[0], ev.sa(0), ev.sb(0)) == (100, 555, "R", 1, "py", "hog")
    assert (chr(ev.b[1]), ev.c[1], ev.tgid[1]) == ("S", 0, 555)
    assert ev.sa(2) == "B|100|" + "y" * 200  # the kernel's trailing newline is dropped
    assert (ev.a[3], ev.b[3], ev.sa(3), ev.tgid[3]) == (7, 1, "w", 100)
    assert (ev.a[4], ev.b[4], ev.c[4], ev.sa(4)) == (8, 1, 0, "kworker/1:0")
    assert chr(ev.b[5]) == "D" and ev.cpu.tolist() == [0] * 6


def test_cpus_merge_in_time_order_lower_cpu_first_on_ties():
    p0 = page(1000, rec(switch("a", 1, 1, "b", 2), 0) + rec(switch("b", 2, 1, "a", 1), 20))
    p1 = page(1010, rec(switch("c", 3, 1, "d", 4), 0) + rec(switch("d", 4, 1, "c", 3), 10))
    ev = R.parse_pages({1: p1, 0: p0}, ring())
    assert np.round(ev.ts * 1e9).astype(int).tolist() == [1000, 1010, 1020, 1020]
    assert ev.cpu.tolist() == [0, 1, 0, 1] and ev.tid.tolist() == [1, 3, 2, 4]
    assert (ev.tgid == -1).all()  # no saved tgids: unknown, as the text prints it


def test_several_pages_absolute_stamp_and_lost_event_flags():
    p1 = page(2000, rec(switch("a", 1, 1, "b", 2), 5), flags=-(1 << 31) | (1 << 30))  # events lost before
    p2 = page(9000, rec(switch("b", 2, 1, "a", 1), 5) + absolute(20000) + rec(switch("a", 1, 1, "b", 2), 4))
    ev = R.parse_pages({0: p1 + p2}, ring())
    assert np.round(ev.ts * 1e9).astype(int).tolist() == [2005, 9005, 20004]


def test_garbage_and_truncated_pages_do_not_hang_or_crash():
    rng = np.random.default_rng(1)
    for _ in range(20):
        junk = rng.integers(0, 256, 4096 * 3, dtype=np.uint8).tobytes()
        ev = R.parse_pages({0: junk}, ring())
        assert set(np.unique(ev.kind).tolist()) <= {P.K_SWITCH, P.K_WAKING, P.K_MIGRATE, P.K_MARKER}
        for i in range(min(len(ev), 50)):
            ev.sa(i), ev.sb(i)
    assert len(R.parse_pages({0: b"\0" * 4000}, ring())) == 0  # less than a page
    assert len(R.parse_pages({0: page(1, b"")}, ring())) == 0  # an empty page


def test_formats_and_saved_tgids():
    rf = ring()
    assert (rf.data_offset, rf.page_size) == (16, 4096)
    assert rf.state_flags[:2] == [(1, "S"), (2, "D")] and rf.state_flags[-1] == (128, "I")
    assert rf.preempt_bit == 0x100
    kinds = {k for k, _ in rf.events.values()}
    assert kinds == {P.K_SWITCH, P.K_WAKING, P.K_MIGRATE, P.K_MARKER}
    mig = rf.events[MIGRATE_ID][1].fields["comm"]
    assert (mig.offset, mig.loc) == (8, "data")
    with pytest.raises(ValueError):
        R.ring_format("nothing here", [])
    with pytest.raises(ValueError):
        R.parse_format("name: x\n")
    assert R.parse_saved_tgids("1 1\n905 905\n1680 905\n") == {1: 1, 905: 905, 1680: 905}


@needs_tracefs
def test_formats_read_from_this_kernel():
    rf = tracefs.read_ring_format(TR)
    assert rf is not None and rf.page_size >= 4096
    names = {ef.name for _, ef in rf.events.values()}
    assert {"sched_switch", "sched_waking", "print"} <= names


@needs_tracefs
def test_gone_tasks_tgid_is_read_only_when_it_may_have_been_ours(monkeypatch):
    """The window's lookup (tracefs.TgidLookup with the owner) gives a thread of ours that was
    born and died inside the window our tgid (so the breakdown counts it), a process we forked
    its own, and leaves a foreign task that is gone unknown, without reading saved_tgids for it."""
    import subprocess
    foreign = subprocess.Popen(["bash", "-c", "sleep 0.15; /bin/true; sleep 0.3"])  # forks inside the window
    time.sleep(0.05)
    with TraceWindow() as w:
        t = threading.Thread(target=lambda: _spin_for(0.05), name="born-and-gone")
        t.start()
        t.join()
        child = subprocess.run(["/bin/true"])  # a process of our own: its tgid is its pid
        time.sleep(0.25)
    foreign.wait()
    c = w.capture
    reads = []
    real = R.saved_tgid_pairs
    monkeypatch.setattr(R, "saved_tgid_pairs", lambda text: reads.append(1) or real(text))
    ev, src = c.events()
    assert src == "pages" and child.returncode == 0
    new = ev.kind == P.K_WAKEUP_NEW
    born = dict(zip(ev.a[new].tolist(), ev.tid[new].tolist()))
    pid_tgid = dict(zip(ev.tid.tolist(), ev.tgid.tolist()))
    ours_born = [p for p, parent in born.items() if parent in set(c.tids) | {c.pid} and p not in c.tids]
    assert ours_born, "the window saw our thread and our child born"
    gone_thread = [p for p in ours_born if pid_tgid.get(p) == c.pid]
    assert gone_thread, "the thread born and gone inside the window is ours"
    assert any(pid_tgid.get(p) == p for p in ours_born), "the process we forked has its own tgid"
    assert reads, "our gone children were looked up in saved_tgids"
    foreign_born = [p for p, parent in born.items() if parent == foreign.pid]  # bash's /bin/true and sleep
    assert foreign_born and all(pid_tgid.get(p, -1) == -1 for p in foreign_born), \
        "a foreign task gone by the analysis is left unknown"
    bd = analyze(ev, c.pid, c.start_ts, c.end_ts, tids=c.tids).to_dict()
    assert any(th["tid"] in gone_thread for th in bd["threads"])


def _spin_for(s):
    end = time.monotonic() + s
    while time.monotonic() < end:
        pass
