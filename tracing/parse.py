"""Parse the text `trace` of a tracefs instance into a columnar event table (pure, no I/O).

Why text and why numpy: the raw text is what we keep anyway (it opens in ui.perfetto.dev), and the
benchmark (benchmarks/analysis_speed.py) requires parse+analyze to be no slower than
`trace-cmd report` on the same events. A per-line regex costs ~1-2 us/line in CPython, which is
about trace-cmd's whole budget, so the common lines are parsed column-wise with numpy instead:

    <comm:16>-<pid:-7> (<tgid:7>) [<cpu:03>] <flags:5> <secs:5+>.<usecs:6>: <event>: <fields>

(`record-tgid` on, as TraceWindow sets it). The header has fixed columns (comm is right-justified
to 16, TASK_COMM_LEN-1 = 15 chars max) except the seconds, which widen after ~27.7 h of uptime;
that shift is detected per line. sched_switch / sched_waking / sched_wakeup(_new) fields are
located from the END of the line via the positions of '=' (comms may contain spaces and dashes).
Lines that do not fit (other layouts, odd comms, rare events such as markers, migrations, reclaim)
go through a per-line regex; they are few.

Event table columns (one row per event, file order = time order):
  ts (float s, trace clock), cpu, kind (K_* below), tid / tgid (the current task, from the header;
  tgid -1 when unknown), a, b, c (ints, per kind), sa(i) / sb(i) (strings, per kind):
  K_SWITCH      tid=prev_pid a=next_pid b=ord(prev_state[0]) c=1 if prev_state has '+'
                sa=prev_comm sb=next_comm
  K_WAKING/K_WAKEUP/K_WAKEUP_NEW  a=pid b=target_cpu sa=comm
  K_MIGRATE     a=pid b=orig_cpu c=dest_cpu sa=comm
  K_IRQ_ENTRY/K_IRQ_EXIT a=irq; K_SOFTIRQ_ENTRY/K_SOFTIRQ_EXIT a=vec
  K_RECLAIM_BEGIN/K_RECLAIM_END/K_KSWAPD_WAKE  (current task only)
  K_MARKER      sa=the text written to trace_marker
"""
from __future__ import annotations

import re

import numpy as np

K_OTHER, K_SWITCH, K_WAKING, K_WAKEUP, K_WAKEUP_NEW, K_MIGRATE = 0, 1, 2, 3, 4, 5
K_IRQ_ENTRY, K_IRQ_EXIT, K_SOFTIRQ_ENTRY, K_SOFTIRQ_EXIT = 6, 7, 8, 9
K_RECLAIM_BEGIN, K_RECLAIM_END, K_KSWAPD_WAKE, K_MARKER = 10, 11, 12, 13

EVENT_KINDS = {
    "sched_switch": K_SWITCH, "sched_waking": K_WAKING, "sched_wakeup": K_WAKEUP,
    "sched_wakeup_new": K_WAKEUP_NEW, "sched_migrate_task": K_MIGRATE,
    "irq_handler_entry": K_IRQ_ENTRY, "irq_handler_exit": K_IRQ_EXIT,
    "softirq_entry": K_SOFTIRQ_ENTRY, "softirq_exit": K_SOFTIRQ_EXIT,
    "mm_vmscan_direct_reclaim_begin": K_RECLAIM_BEGIN, "mm_vmscan_direct_reclaim_end": K_RECLAIM_END,
    "mm_vmscan_memcg_reclaim_begin": K_RECLAIM_BEGIN, "mm_vmscan_memcg_reclaim_end": K_RECLAIM_END,
    "mm_vmscan_kswapd_wake": K_KSWAPD_WAKE, "tracing_mark_write": K_MARKER,
}

# Header of any line, generic layout (with or without the tgid column); used for the slow path.
_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>[-\d]+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:\S+\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s?(?P<rest>.*)$")
_SWITCH = re.compile(r"prev_comm=(.*) prev_pid=(-?\d+) prev_prio=-?\d+ prev_state=(\S+) ==> "
                     r"next_comm=(.*) next_pid=(-?\d+) next_prio=-?\d+")
_WAKE = re.compile(r"comm=(.*) pid=(\d+) prio=-?\d+(?: success=\d+)? target_cpu=(\d+)")
_MIGRATE = re.compile(r"comm=(.*) pid=(\d+) prio=-?\d+ orig_cpu=(\d+) dest_cpu=(\d+)")
_NUM = re.compile(r"(?:irq|vec)=(\d+)")


def _u64(s: str) -> int:
    return int.from_bytes(s.encode()[:8].ljust(8, b"\0"), "little")


# 16 bytes from the event name's first char -> kind, for the vectorised path.
_FAST_KEYS = {
    (_u64("sched_sw"), _u64("itch: pr")): K_SWITCH,
    (_u64("sched_wa"), _u64("king: co")): K_WAKING,
    (_u64("sched_wa"), _u64("keup: co")): K_WAKEUP,
    (_u64("sched_wa"), _u64("keup_new")): K_WAKEUP_NEW,
    (_u64("irq_hand"), _u64("ler_entr")): K_IRQ_ENTRY,
    (_u64("irq_hand"), _u64("ler_exit")): K_IRQ_EXIT,
    (_u64("softirq_"), _u64("entry: v")): K_SOFTIRQ_ENTRY,
    (_u64("softirq_"), _u64("exit: ve")): K_SOFTIRQ_EXIT,
}


class Events:
    """Columnar events (see module docstring). Build with parse_trace() or from_rows()."""

    def __init__(self, ts, cpu, kind, tid, tgid, a, b, c, strs_a, strs_b):
        self.ts = np.asarray(ts, dtype=np.float64)
        self.cpu = np.asarray(cpu, dtype=np.int64)
        self.kind = np.asarray(kind, dtype=np.int64)
        self.tid = np.asarray(tid, dtype=np.int64)
        self.tgid = np.asarray(tgid, dtype=np.int64)
        self.a = np.asarray(a, dtype=np.int64)
        self.b = np.asarray(b, dtype=np.int64)
        self.c = np.asarray(c, dtype=np.int64)
        self._sa = strs_a  # callables i -> str
        self._sb = strs_b

    def __len__(self) -> int:
        return len(self.ts)

    def sa(self, i: int) -> str:
        return self._sa(i)

    def sb(self, i: int) -> str:
        return self._sb(i)

    def take(self, rows) -> "Events":
        """The events at `rows` (increasing indices): e.g. a capture with some events left out."""
        rows = np.asarray(rows, dtype=np.int64)
        sa, sb = self._sa, self._sb
        return Events(self.ts[rows], self.cpu[rows], self.kind[rows], self.tid[rows], self.tgid[rows], self.a[rows],
                      self.b[rows], self.c[rows], lambda i: sa(int(rows[i])), lambda i: sb(int(rows[i])))

    @classmethod
    def from_rows(cls, rows) -> "Events":
        """rows: tuples (ts, cpu, kind, tid, tgid, a, b, c, sa, sb); see the row helpers below."""
        rows = list(rows)
        cols = list(zip(*rows)) if rows else [()] * 10
        sa, sb = list(cols[8]), list(cols[9])
        return cls(*cols[:8], sa.__getitem__, sb.__getitem__)


# Row helpers: readable synthetic events for tests and tools.
def switch(ts, cpu, prev_comm, prev_pid, prev_state, next_comm, next_pid, tgid=-1):
    st = str(prev_state)
    return (ts, cpu, K_SWITCH, prev_pid, tgid, next_pid, ord(st[0]), int("+" in st), prev_comm, next_comm)


def wake(ts, cpu, comm, pid, target_cpu, kind=K_WAKING, cur_tid=0, cur_tgid=-1):
    return (ts, cpu, kind, cur_tid, cur_tgid, pid, target_cpu, 0, comm, "")


def migrate(ts, cpu, comm, pid, orig_cpu, dest_cpu, cur_tid=0, cur_tgid=-1):
    return (ts, cpu, K_MIGRATE, cur_tid, cur_tgid, pid, orig_cpu, dest_cpu, comm, "")


def simple(ts, cpu, kind, cur_tid, cur_tgid=-1, a=0):
    """irq/softirq entry/exit (a = irq/vec), reclaim begin/end, kswapd wake."""
    return (ts, cpu, kind, cur_tid, cur_tgid, a, 0, 0, "", "")


def marker(ts, cpu, text, cur_tid, cur_tgid=-1):
    return (ts, cpu, K_MARKER, cur_tid, cur_tgid, 0, 0, 0, text, "")


def _parse_line(line: str):
    """Slow path: one line -> row tuple, or None for non-event lines."""
    m = _LINE.match(line)
    if not m:
        return None
    kind = EVENT_KINDS.get(m["event"], K_OTHER)
    ts, cpu, tid = float(m["ts"]), int(m["cpu"]), int(m["pid"])
    tg = m["tgid"]
    tgid = int(tg) if tg and tg.lstrip("-").isdigit() else -1
    rest = m["rest"].lstrip()  # trace-cmd report pads the fields after the event name
    a = b = c = 0
    sa = sb = ""
    if kind == K_SWITCH:
        f = _SWITCH.match(rest)
        if not f:
            return None
        sa, tid, st, sb, a = f[1], int(f[2]), f[3], f[4], int(f[5])
        b, c = ord(st[0]), int("+" in st)
    elif kind in (K_WAKING, K_WAKEUP, K_WAKEUP_NEW):
        f = _WAKE.match(rest)
        if not f:
            return None
        sa, a, b = f[1], int(f[2]), int(f[3])
    elif kind == K_MIGRATE:
        f = _MIGRATE.match(rest)
        if not f:
            return None
        sa, a, b, c = f[1], int(f[2]), int(f[3]), int(f[4])
    elif kind in (K_IRQ_ENTRY, K_IRQ_EXIT, K_SOFTIRQ_ENTRY, K_SOFTIRQ_EXIT):
        f = _NUM.search(rest)
        a = int(f[1]) if f else -1
    elif kind == K_MARKER:
        sa = rest
    elif kind == K_OTHER:
        sa = m["event"]
    return (ts, cpu, kind, tid, tgid, a, b, c, sa, sb)


_POW10 = 10 ** np.arange(18, dtype=np.int64)


def _digits(mat: np.ndarray, left: bool) -> np.ndarray:
    """Integers from an (n, w) byte matrix of ASCII digits padded with spaces.
    left=False: right-justified digits (leading spaces), e.g. the seconds and tgid columns.
    left=True: the digits start at column 0 and end at the first non-digit (the pid column, or a
    number after '='); everything after it is ignored."""
    w = mat.shape[1]
    d = mat.astype(np.int64) - 48
    isd = (d >= 0) & (d <= 9)
    if left:
        isd = np.logical_and.accumulate(isd, axis=1)
    d *= isd
    v = d @ _POW10[w - 1::-1]
    if left:
        v //= _POW10[w - isd.sum(axis=1)]
    return v


_WIN = 80  # widest byte window gathered per line


def _gather(windows: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """(n, width) bytes starting at each pos; `windows` is a sliding-window view of the padded
    buffer (a fancy index into it copies only the rows, far cheaper than a 2-D index array)."""
    return windows[pos][:, :width]


def parse_trace(text: str) -> Events:
    """The text of an instance's `trace` file -> Events (time order as in the file)."""
    raw = text.encode("utf-8", "surrogateescape")
    buf = np.frombuffer(raw, dtype=np.uint8)
    n_bytes = len(buf)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [n_bytes]))
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if len(starts):
        keep = buf[starts] != ord("#")  # header comment lines
        starts, ends = starts[keep], ends[keep]
    n = len(starts)
    if n == 0:
        return Events.from_rows([])

    padded = np.concatenate((buf, np.zeros(2 * _WIN, dtype=np.uint8)))  # gathers past the end are safe
    windows = np.lib.stride_tricks.sliding_window_view(padded, _WIN)
    H = windows[starts]  # (n, 80): every line's first 80 bytes, header and event name
    # Fixed header checks; the seconds may be wider than 5 digits (shift 0..4 more columns).
    ok = ((ends - starts) > 70) & (H[:, 16] == ord("-")) & (H[:, 25] == ord("(")) \
        & (H[:, 33] == ord(")")) & (H[:, 35] == ord("[")) & (H[:, 39] == ord("]"))
    shift = np.full(n, -1, dtype=np.int64)
    for k in range(4, -1, -1):
        hit = (H[:, 52 + k] == ord(".")) & (H[:, 59 + k] == ord(":")) & (H[:, 60 + k] == ord(" "))
        shift[hit] = k
    ok &= shift >= 0
    kind = np.zeros(n, dtype=np.int64)
    secs = np.zeros(n, dtype=np.int64)
    frac = np.zeros(n, dtype=np.int64)
    for k in np.unique(shift[ok]).tolist():
        sel = ok & (shift == k)
        rows = np.flatnonzero(sel)
        Hk = H if len(rows) == n else H[rows]  # usual case: one layout for the whole file
        key = np.ascontiguousarray(Hk[:, 61 + k:77 + k]).view(np.uint64)  # two little-endian words
        kk = np.zeros(len(rows), dtype=np.int64)
        for (k0, k1), kd in _FAST_KEYS.items():
            kk[(key[:, 0] == np.uint64(k0)) & (key[:, 1] == np.uint64(k1))] = kd
        kind[rows] = kk
        secs[rows] = _digits(Hk[:, 47:52 + k], False)  # right-justified seconds
        frac[rows] = _digits(Hk[:, 53 + k:59 + k], False)  # microseconds (trace clocks print us)
    ts = secs + frac * 1e-6
    ev0 = starts + 61 + np.maximum(shift, 0)
    tid = _digits(H[:, 17:24], True)
    tgid_m = H[:, 26:33]
    tgid = np.where(tgid_m[:, -1] == ord("-"), -1, _digits(tgid_m, False))
    cpu = _digits(H[:, 36:39], False)
    fast = ok & (kind != K_OTHER)

    # '=' positions, to walk sched_* fields from the end of the line.
    eq = np.flatnonzero(buf == ord("="))
    if len(eq) == 0:
        eq = np.zeros(1, dtype=np.int64)
    last_eq = np.searchsorted(eq, ends) - 1  # index into eq of the line's last '='
    first_eq = np.searchsorted(eq, starts)
    n_eq = last_eq - first_eq + 1

    a = np.zeros(n, dtype=np.int64)
    b = np.zeros(n, dtype=np.int64)
    c = np.zeros(n, dtype=np.int64)
    sa0 = np.zeros(n, dtype=np.int64)
    sa1 = np.zeros(n, dtype=np.int64)
    sb0 = np.zeros(n, dtype=np.int64)
    sb1 = np.zeros(n, dtype=np.int64)

    def eqat(sel, back):
        return eq[np.clip(last_eq[sel] - back, 0, len(eq) - 1)]

    sw = np.flatnonzero(fast & (kind == K_SWITCH))
    if len(sw):
        # '=' of: prev_comm prev_pid prev_prio prev_state '=' '=' (of "==>") next_comm next_pid next_prio
        good = n_eq[sw] == 9
        e_npid, e_ncomm, e_arrow, e_pstate, e_ppid = eqat(sw, 1), eqat(sw, 2), eqat(sw, 3), eqat(sw, 5), eqat(sw, 7)
        good &= (padded[e_arrow + 1] == ord(">")) & (padded[e_npid - 1] == ord("d")) \
            & (padded[e_ncomm - 1] == ord("m")) & (padded[e_ppid - 1] == ord("d"))
        fast[sw[~good]] = False
        sw, e_npid, e_ncomm, e_pstate, e_ppid = sw[good], e_npid[good], e_ncomm[good], e_pstate[good], e_ppid[good]
        a[sw] = _digits(_gather(windows, e_npid + 1, 8), True)
        st = _gather(windows, e_pstate + 1, 2)
        b[sw] = st[:, 0]
        c[sw] = st[:, 1] == ord("+")
        sa0[sw] = ev0[sw] + len("sched_switch: prev_comm=")
        sa1[sw] = e_ppid - len(" prev_pid")
        sb0[sw] = e_ncomm + 1
        sb1[sw] = e_npid - len(" next_pid")
    wk = np.flatnonzero(fast & ((kind == K_WAKING) | (kind == K_WAKEUP) | (kind == K_WAKEUP_NEW)))
    if len(wk):
        good = n_eq[wk] == 4  # comm pid prio target_cpu
        e_cpu, e_pid, e_comm = eqat(wk, 0), eqat(wk, 2), eqat(wk, 3)
        good &= (padded[e_pid - 1] == ord("d")) & (padded[e_comm - 1] == ord("m")) \
            & (padded[e_cpu - 1] == ord("u"))
        fast[wk[~good]] = False
        wk, e_cpu, e_pid, e_comm = wk[good], e_cpu[good], e_pid[good], e_comm[good]
        a[wk] = _digits(_gather(windows, e_pid + 1, 8), True)
        b[wk] = _digits(_gather(windows, e_cpu + 1, 5), True)
        sa0[wk] = e_comm + 1
        sa1[wk] = e_pid - len(" pid")
    iq = np.flatnonzero(fast & (kind >= K_IRQ_ENTRY) & (kind <= K_SOFTIRQ_EXIT))
    if len(iq):
        # "irq_handler_entry: irq=N ..." / "softirq_entry: vec=N ...": the line's first '='.
        e0 = eq[np.clip(first_eq[iq], 0, len(eq) - 1)]
        a[iq] = np.where(n_eq[iq] > 0, _digits(_gather(windows, e0 + 1, 6), True), -1)

    def s_a(i):
        return raw[sa0[i]:sa1[i]].decode("utf-8", "replace")

    def s_b(i):
        return raw[sb0[i]:sb1[i]].decode("utf-8", "replace")

    slow = np.flatnonzero(~fast)
    if len(slow) == 0:
        return Events(ts, cpu, kind, tid, tgid, a, b, c, s_a, s_b)

    # Slow path lines: parse them one by one and splice their rows in place.
    extra_a: dict[int, str] = {}
    extra_b: dict[int, str] = {}
    valid = np.ones(n, dtype=bool)
    for i in slow.tolist():
        row = _parse_line(raw[starts[i]:ends[i]].decode("utf-8", "replace"))
        if row is None or row[2] == K_OTHER:
            valid[i] = False
            continue
        ts[i], cpu[i], kind[i], tid[i], tgid[i], a[i], b[i], c[i] = row[:8]
        extra_a[i], extra_b[i] = row[8], row[9]

    def s_a2(i):
        return extra_a[i] if i in extra_a else s_a(i)

    def s_b2(i):
        return extra_b[i] if i in extra_b else s_b(i)

    if valid.all():
        return Events(ts, cpu, kind, tid, tgid, a, b, c, s_a2, s_b2)
    idx = np.flatnonzero(valid)
    return Events(ts[idx], cpu[idx], kind[idx], tid[idx], tgid[idx], a[idx], b[idx], c[idx],
                  lambda i: s_a2(int(idx[i])), lambda i: s_b2(int(idx[i])))
