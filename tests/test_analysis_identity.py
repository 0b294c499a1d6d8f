"""The vectorised window analysis gives the very Breakdown of the event-by-event one it replaced.

tests/reference/{rawparse,analysis}_loop.py are the code as it was before issue 25's rewrite (main
at 9903978; rawparse unchanged since 3bf7abf), kept as the oracle: a walk over the events, one at a
time, that the metric definitions were written against (tracing/analysis.py docstring). The rewrite (tracing/rawparse.py decodes
per CPU group and reads fields in time order; tracing/analysis.py runs the per-thread state
machine as whole-column passes) must give the same events, column by column and string by string,
and the same Breakdown dict, field by field, down to the last float bit (same sums in the same
order), on:
  - a real window recorded on this machine (tests/data/window-switch/: stress-ng --switch with
    our own threads, stages and markers, a small buffer so events were lost and switches go
    missing), for our process and for the busiest other tasks, whole and with switch events
    taken out at random (missing switches, the inference paths);
  - random event tables from a small scheduler simulation (consistent traces, then thinned, then
    with junk rows: every branch of the walk, including the rare ones);
  - hand-built and garbage ring-buffer pages over several CPUs, with the CPU grouping varied;
  - live windows (marker slow, ~20 s): stress-ng --switch with a small buffer (lost events), and a
    SCHED_FIFO hog with its switch-outs taken out; and (slow) the committed window analysed inside
    an IndexTTS user's environment (Python 3.10, numpy 1.26: tests/userenvs.py).
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.reference import analysis_loop as REF_A
from tests.reference.compare import first_difference
from tests.reference import rawparse_loop as REF_R
from tests.test_missing_switches import caps  # noqa: F401 (the real windows of issue 17, a fixture)
from tests.test_rawparse import absolute, extend, mark, migrate, padding, page, rec, ring, switch, waking
from tracing import analysis as A
from tracing import parse as P
from tracing import rawparse as R
from tracing import tracefs

DATA = Path(__file__).parent / "data" / "window-switch"
TR = tracefs.find_tracefs(mount=False)


def assert_same_events(new, ref, strings=None):
    assert len(new) == len(ref)
    for col in ("ts", "cpu", "kind", "tid", "tgid", "a", "b", "c"):
        x, y = getattr(new, col), getattr(ref, col)
        bad = np.flatnonzero(x != y)
        assert x.dtype == y.dtype and len(bad) == 0, f"{col} differs at rows {bad[:5]}"
    rows = range(len(new)) if strings is None else strings
    for i in rows:
        assert (new.sa(i), new.sb(i)) == (ref.sa(i), ref.sb(i)), i


def assert_same_breakdown(events, pid, start, end, what, **kw):
    new = A.analyze(events, pid, start, end, **kw).to_dict()
    new.pop("first_sound", None)  # newer than the reference (issue 23; tests/test_first_sound.py)
    ref = REF_A.analyze(events, pid, start, end, **kw).to_dict()
    diff = first_difference(new, ref)
    assert diff is None, f"{what}: {diff}"
    return new


def thin(events, frac, seed, kinds=(P.K_SWITCH,)):
    """The table less a random `frac` of its rows of `kinds` (the kernel's missing switches)."""
    rng = np.random.default_rng(seed)
    drop = np.isin(events.kind, kinds) & (rng.random(len(events)) < frac)
    return events.take(np.flatnonzero(~drop))


def busiest(events, n):
    """The n pids (not idle) with the most switch-outs."""
    pids, counts = np.unique(events.tid[events.kind == P.K_SWITCH], return_counts=True)
    return [p for p in pids[np.argsort(-counts, kind="stable")].tolist() if p > 0][:n]


# -- a real window, committed --------------------------------------------------------------------
def load_window(d: Path):
    m = json.loads((d / "meta.json").read_text())
    fmt = R.ring_format((d / "header_page").read_text(), (d / "formats").read_text().split("%%\n"), m["page_size"])
    pages = {int(c): gzip.decompress((d / f"cpu{c}.raw.gz").read_bytes()) for c in m["cpus"]}
    return pages, fmt, {int(k): v for k, v in m["tgids"].items()}, m


def test_committed_window_decodes_identically():
    pages, fmt, tgids, m = load_window(DATA)
    new, ref = R.parse_pages(pages, fmt, tgids), REF_R.parse_pages(pages, fmt, tgids)
    assert len(new) > 20000 and sum(m["lost"].values()) > 0  # a lossy window, as recorded
    assert_same_events(new, ref)


def test_committed_window_breakdowns_identical():
    pages, fmt, tgids, m = load_window(DATA)
    ev = R.parse_pages(pages, fmt, tgids)
    start, end = m["start"], m["end"]
    bd = assert_same_breakdown(ev, m["pid"], start, end, "our process", tids=m["tids"])
    assert bd["totals"]["threads"] >= 3 and len(bd["stages"]) >= 2 and bd["totals"]["inferred_switches"] > 0
    top = busiest(ev, 3)
    for p in top:
        assert_same_breakdown(ev, p, start, end, f"pid {p}")
    for frac, seed in ((0.02, 1), (0.4, 3)):
        thinned = thin(ev, frac, seed)
        assert_same_breakdown(thinned, m["pid"], start, end, f"our process, {frac} of switches out", tids=m["tids"])
        for p in top[:2]:
            assert_same_breakdown(thinned, p, start, end, f"pid {p}, {frac} of switches out")
    # wakeups and migrations missing too; and a window cut short at both ends
    thinned = thin(ev, 0.2, 4, kinds=(P.K_SWITCH, P.K_WAKING, P.K_WAKEUP, P.K_MIGRATE))
    assert_same_breakdown(thinned, m["pid"], start, end, "wakeups out too", tids=m["tids"])
    mid = (start + end) / 2
    assert_same_breakdown(ev, m["pid"], mid - (end - start) / 5, mid, "a sub-window", tids=m["tids"])


# -- random event tables -------------------------------------------------------------------------
def simulate(rng, n_cpus=3, n_ours=4, n_others=4, steps=400):
    """A consistent trace from a toy scheduler: our process (pid 100, threads 100..) and others
    (200..), switches in every state, wakeups (waking + wakeup, sometimes a second waking),
    migrations, IRQs / softirqs / reclaim on whoever runs, atrace markers. Rows as tracing.parse's."""
    ours = list(range(100, 100 + n_ours))
    tasks = ours + list(range(200, 200 + n_others))
    cur = {c: 0 for c in range(n_cpus)}
    state = {t: "S" for t in tasks}  # R (runnable), S/D (asleep), X (running)
    where = {t: int(rng.integers(n_cpus)) for t in tasks}
    rows, t = [], 1.0
    depth = 0
    name = lambda p: f"w{p}" if p else "swapper"  # noqa: E731

    def tg(p):
        return 100 if 100 <= p < 200 else (p if p else -1)

    for _ in range(steps):
        t += float(rng.exponential(1e-4))
        c = int(rng.integers(n_cpus))
        x = cur[c]
        r = rng.random()
        if r < 0.35:  # a switch on c
            runnable = [p for p in tasks if state[p] == "R" and where[p] == c]
            nxt = int(rng.choice(runnable)) if runnable and rng.random() < 0.85 else 0
            if nxt == x:
                continue
            st = "R" if x == 0 else str(rng.choice(["R", "R+", "S", "D", "I"]))
            rows.append(P.switch(t, c, name(x), x, st, name(nxt), nxt, tgid=tg(x)))
            if x:
                state[x] = "R" if st.startswith("R") else "S"
            if nxt:
                state[nxt] = "X"
                where[nxt] = c
            cur[c] = nxt
        elif r < 0.6:  # wake a sleeper (onto some CPU)
            asleep = [p for p in tasks if state[p] in "SD"]
            if not asleep:
                continue
            p = int(rng.choice(asleep))
            dest = int(rng.integers(n_cpus))
            rows.append(P.wake(t, c, name(p), p, dest, P.K_WAKING, x, tg(x)))
            if rng.random() < 0.1:
                rows.append(P.wake(t + 1e-7, c, name(p), p, dest, P.K_WAKING, x, tg(x)))  # woken twice
            if rng.random() < 0.05:
                rows.append(P.wake(t + 2e-7, c, name(p), p, dest, P.K_WAKEUP_NEW, x, tg(x)))
            else:
                rows.append(P.wake(t + 2e-7, c, name(p), p, dest, P.K_WAKEUP, x, tg(x)))
            state[p], where[p] = "R", dest
        elif r < 0.68:  # migrate a waiting (or sleeping) task
            cand = [p for p in tasks if state[p] != "X"]
            if not cand:
                continue
            p = int(rng.choice(cand))
            dest = int(rng.integers(n_cpus))
            rows.append(P.migrate(t, c, name(p), p, where[p], dest, x, tg(x)))
            where[p] = dest
        elif r < 0.8:  # an IRQ (sometimes inside a softirq) on whoever runs
            soft = rng.random() < 0.4
            if soft:
                rows.append(P.simple(t, c, P.K_SOFTIRQ_ENTRY, x, tg(x), 3))
            rows.append(P.simple(t + 1e-6, c, P.K_IRQ_ENTRY, x, tg(x), 11))
            rows.append(P.simple(t + 3e-6, c, P.K_IRQ_EXIT, x, tg(x), 11))
            if soft:
                rows.append(P.simple(t + 5e-6, c, P.K_SOFTIRQ_EXIT, x, tg(x), 3))
        elif r < 0.85:
            rows.append(P.simple(t, c, P.K_RECLAIM_BEGIN, x, tg(x)))
            rows.append(P.simple(t + 4e-6, c, P.K_RECLAIM_END, x, tg(x)))
        elif r < 0.95 and x in ours:  # stage markers (nested)
            if depth and rng.random() < 0.5:
                rows.append(P.marker(t, c, "E|100", x, 100))
                depth -= 1
            else:
                rows.append(P.marker(t, c, f"B|100|stage {depth}", x, 100))
                depth += 1
        else:
            rows.append(P.simple(t, c, P.K_KSWAPD_WAKE, x, tg(x)))
    return P.Events.from_rows(rows)


def junk(rng, events, n):
    """`n` rows of nonsense spliced in (pids, CPUs, states the trace did not earn)."""
    rows = [(float(rng.uniform(events.ts.min(), events.ts.max())) if len(events) else 1.0,
             int(rng.integers(3)), int(rng.integers(1, 14)), int(rng.choice([0, 100, 101, 200, 201, 999])),
             int(rng.choice([-1, 100, 200])), int(rng.choice([0, 100, 101, 102, 200, 201])), int(rng.choice([82, 83, 68, 0, 1])),
             int(rng.integers(0, 2)), "j", "k") for _ in range(n)]  # (c 2 = inferred: never decoded)
    old = [(float(events.ts[i]), int(events.cpu[i]), int(events.kind[i]), int(events.tid[i]), int(events.tgid[i]),
            int(events.a[i]), int(events.b[i]), int(events.c[i]), events.sa(i), events.sb(i)) for i in range(len(events))]
    return P.Events.from_rows(sorted(old + rows, key=lambda r_: r_[0]))


def test_random_event_tables_identical():
    rng = np.random.default_rng(25)
    checked = 0
    for trial in range(30):
        ev = simulate(rng, n_cpus=int(rng.integers(1, 4)), n_ours=int(rng.integers(1, 5)),
                      steps=int(rng.integers(20, 400)))
        if len(ev) < 2:
            continue
        lo, hi = float(ev.ts.min()), float(ev.ts.max())
        variants = [ev, thin(ev, 0.2, trial), thin(ev, 0.6, trial + 1000, kinds=(P.K_SWITCH, P.K_WAKING, P.K_MIGRATE)),
                    junk(rng, ev, 8)]
        for j, e in enumerate(variants):
            # the whole trace, or a window inside it (threads already running, stages open)
            start, end = (lo - 0.01, hi + 0.01) if (trial + j) % 2 else (lo + (hi - lo) / 3, hi - (hi - lo) / 4)
            assert_same_breakdown(e, 100, start, end, f"trial {trial} variant {j}", tids=[103] if j == 3 else None)
            checked += 1
        assert_same_breakdown(variants[trial % 4], 200, lo, hi, f"trial {trial}, pid 200")
    assert checked > 100
    assert len(A.analyze(P.Events.from_rows([]), 1, 0.0, 1.0).to_dict()["threads"]) == 0


# -- pages ---------------------------------------------------------------------------------------
def _pages(rng, nrec):
    body, out, ts = b"", [], 1000
    for _ in range(nrec):
        k = int(rng.integers(0, 8))
        if k == 0:
            r = rec(switch("a" * int(rng.integers(1, 16)), int(rng.integers(1, 50)),
                           int(rng.choice([0, 1, 2, 0x100, 0x402])), "b", int(rng.integers(0, 50))), int(rng.integers(0, 1000)))
        elif k == 1:
            r = rec(waking(int(rng.integers(0, 50)), "w", int(rng.integers(1, 50)), int(rng.integers(0, 4))), 9)
        elif k == 2:
            r = rec(migrate(int(rng.integers(0, 50)), "kworker/1:0", int(rng.integers(1, 50)), 1, 0), 3)
        elif k == 3:
            r = rec(mark(int(rng.integers(0, 50)), "B|1|" + "y" * int(rng.integers(0, 200))), 7)
        elif k == 4:
            r = extend(int(rng.integers(1 << 27, 1 << 40)))
        elif k == 5:
            r = padding(12)
        elif k == 6:
            r = absolute(int(rng.integers(1, 1 << 50)))
        else:
            r = rng.integers(0, 256, 4 * int(rng.integers(1, 6)), dtype=np.uint8).tobytes()  # garbage
        if len(body) + len(r) > 4080:
            out.append(page(ts, body))
            ts += 10 ** 6
            body = b""
        body += r
    out.append(page(ts, body))
    return b"".join(out)


def test_pages_decode_identically(monkeypatch):
    rng = np.random.default_rng(3)
    fmt = ring()
    decoded = 0
    for group_bytes in (R.GROUP_BYTES, 4096, 3 * 4096):
        monkeypatch.setattr(R, "GROUP_BYTES", group_bytes)
        for _ in range(12):
            pages = {}
            for c in range(int(rng.integers(1, 6))):
                if rng.random() < 0.3:
                    pages[c] = rng.integers(0, 256, 4096 * int(rng.integers(1, 4)) + int(rng.integers(0, 99)),
                                            dtype=np.uint8).tobytes()
                else:
                    pages[c] = _pages(rng, int(rng.integers(1, 300)))
            tgids = {int(k): int(v) for k, v in zip(rng.integers(0, 60, 20), rng.integers(0, 60, 20))}
            outcome = []
            for impl in (R, REF_R):
                try:
                    outcome.append(impl.parse_pages(pages, fmt, tgids))
                except (ValueError, KeyError, IndexError) as e:  # what Capture.events() falls back on
                    outcome.append(type(e))
            if isinstance(outcome[0], type) or isinstance(outcome[1], type):
                assert outcome[0] is outcome[1]
                continue
            assert_same_events(*outcome)
            decoded += len(outcome[0])
    assert decoded > 500


# -- live windows (marker slow: `./run_tests.sh -q -m slow tests/test_analysis_identity.py`) -----
live = [pytest.mark.slow,
        pytest.mark.skipif(TR is None or not os.access(TR / "instances", os.W_OK), reason="no writable tracefs"),
        pytest.mark.skipif(shutil.which("stress-ng") is None, reason="no stress-ng"),
        pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")]


def _live(f):
    for m in live:
        f = m(f)
    return f


def record_window(buffer_kb: int, seconds: float, stress=("--switch", "2")):
    """A window of our own process (threads spinning, sleeping; stages and a long marker near the
    end, so an overflowing buffer keeps them) under stress-ng; returns the TraceWindow (its
    capture holds the pages, their formats and the loss counters)."""
    from tracing.window import TraceWindow
    stop = time.monotonic() + seconds

    def spinner():
        while time.monotonic() < stop:
            sum(range(2000))

    def sleeper():
        while time.monotonic() < stop:
            time.sleep(0.001)

    st = subprocess.Popen(["stress-ng", *stress, "--timeout", "600", "-q"])
    try:
        time.sleep(0.2)
        with TraceWindow(buffer_kb=buffer_kb) as w:
            stop = time.monotonic() + seconds
            threads = [threading.Thread(target=f) for f in (spinner, sleeper, sleeper)]
            for t in threads:
                t.start()
            time.sleep(seconds * 0.6)
            with w.stage("outer"):
                with w.stage("inner"):
                    time.sleep(seconds * 0.2)
                w.marker("x" * 200)
            for t in threads:
                t.join()
    finally:
        st.terminate()
        st.wait(timeout=30)
    return w


@_live
@pytest.mark.parametrize("buffer_kb", [256, 4096])
def test_live_windows_identical(buffer_kb):
    w = record_window(buffer_kb, 0.6)
    c = w.capture
    given = {}  # the tgids our decode got from the window's lookup (tracefs.TgidLookup): the oracle's too

    def recording(pids, born=None, lookup=c.tgids):
        given.update(lookup(pids, born))
        return given
    c.tgids = recording
    ev, src = c.events()
    assert src == "pages" and given
    assert_same_events(ev, REF_R.parse_pages(c.pages, c.ring, given), strings=range(0, len(ev), 7))
    if buffer_kb == 256:
        assert c.lost["total"] > 0  # the small buffer overflowed
    assert_same_breakdown(ev, c.pid, c.start_ts, c.end_ts, "our process", lost=c.lost, tids=c.tids)
    for p in busiest(ev, 4):
        assert_same_breakdown(ev, p, c.start_ts, c.end_ts, f"pid {p}")
        assert_same_breakdown(thin(ev, 0.05, p), p, c.start_ts, c.end_ts, f"pid {p}, switches out")
    assert_same_breakdown(thin(ev, 0.3, 7), c.pid, c.start_ts, c.end_ts, "our process, switches out", tids=c.tids)


@_live
def test_live_hog_with_switch_outs_missing(caps):
    """test_missing_switches's real windows (a SCHED_FIFO hog, a stress-ng CPU worker, sleeps),
    whole and with every switch-out of the hog (or the victim) taken out, as this kernel does to
    some tasks."""
    for name, cap in caps.items():
        assert_same_breakdown(cap.events, cap.pid, cap.start, cap.end, name, tids=cap.tids)
        gone = cap.named.get("hog") or cap.named["victim"]
        ev = cap.events
        out = np.flatnonzero((ev.kind == P.K_SWITCH) & (ev.tid == gone))
        thinned = ev.take(np.setdiff1d(np.arange(len(ev)), out))
        assert_same_breakdown(thinned, cap.pid, cap.start, cap.end, f"{name} without {gone}'s switch-outs",
                              tids=cap.tids)


USER_ENV_SCRIPT = """
import gzip, json, sys
from pathlib import Path
root, d = sys.argv[1], Path(sys.argv[2])
sys.path.insert(0, root)
import numpy
from tracing import analysis, rawparse
m = json.loads((d / "meta.json").read_text())
fmt = rawparse.ring_format((d / "header_page").read_text(), (d / "formats").read_text().split("%%\\n"), m["page_size"])
pages = {int(c): gzip.decompress((d / f"cpu{c}.raw.gz").read_bytes()) for c in m["cpus"]}
ev = rawparse.parse_pages(pages, fmt, {int(k): v for k, v in m["tgids"].items()})
bd = analysis.analyze(ev, m["pid"], m["start"], m["end"], tids=m["tids"]).to_dict()
print(json.dumps({"numpy": numpy.__version__, "python": sys.version.split()[0], "breakdown": bd}))
"""


@pytest.mark.slow
def test_user_env_numpy_gives_the_same_breakdown():
    """In an IndexTTS user's environment (tests/userenvs.py: Python 3.10, numpy 1.26) the analysis
    of the committed window is the oracle's, bit for bit (JSON of the dicts)."""
    from tests import userenvs
    try:
        env, _, _ = userenvs.build("gradio5")
    except userenvs.Unavailable as e:
        pytest.skip(f"IndexTTS-like env not buildable here: {e}")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([str(env / "bin" / "python"), "-c", USER_ENV_SCRIPT, str(root), str(DATA)],
                         capture_output=True, text=True, timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["numpy"].startswith("1.") and got["python"].startswith("3.10")
    pages, fmt, tgids, m = load_window(DATA)
    ref = REF_A.analyze(REF_R.parse_pages(pages, fmt, tgids), m["pid"], m["start"], m["end"], tids=m["tids"])
    want = json.loads(json.dumps(ref.to_dict()))
    got["breakdown"].pop("first_sound", None)  # newer than the reference (issue 23), as in assert_same_breakdown
    assert first_difference(got["breakdown"], want) is None, first_difference(got["breakdown"], want)


def write_fixture(d: Path = DATA, buffer_kb: int = 1024, seconds: float = 0.6) -> None:
    """Record tests/data/window-switch/ again (a stress-ng CPU hog per CPU and a short switch
    storm: contention, and a buffer that overflows):
    `python -c "from tests.test_analysis_identity import write_fixture; write_fixture()"`."""
    w = record_window(buffer_kb, seconds, stress=("--cpu", "2", "--switch", "1", "--switch-freq", "30000"))
    c = w.capture
    root = tracefs.find_tracefs()
    d.mkdir(parents=True, exist_ok=True)
    for cpu, b in c.pages.items():
        (d / f"cpu{cpu}.raw.gz").write_bytes(gzip.compress(b, 9))
    formats = [tracefs._read(root / "events" / e / "format") for e in (*tracefs.NEEDED_EVENTS, tracefs.MARKER_EVENT)]
    (d / "formats").write_text("%%\n".join(f for f in formats if f))
    (d / "header_page").write_text(tracefs._read(root / "events" / "header_page"))
    ev, _ = c.events()
    seen = set(np.unique(np.concatenate((ev.tid, ev.a))).tolist())
    tgids = c.tgids(sorted(seen)) if callable(c.tgids) else c.tgids  # (a tracefs.TgidLookup: ask it)
    (d / "meta.json").write_text(json.dumps({
        "pid": c.pid, "tids": c.tids, "start": c.start_ts, "end": c.end_ts, "cpus": sorted(c.pages),
        "page_size": c.ring.page_size, "lost": {str(k): v["overrun"] for k, v in c.lost["per_cpu"].items()},
        "tgids": {str(k): v for k, v in tgids.items() if k in seen}}, indent=0))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    write_fixture()
