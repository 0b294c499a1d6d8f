# Frozen copy of tracing/rawparse.py at main 9903978 (unchanged since 3bf7abf; before issue 25's
# rewrite): the event-by-event oracle of tests/test_analysis_identity.py and the reference arm of
# benchmarks/analysis_speed.py.
# Keep it as it is (only its import of tracing.parse differs); fix a bug in both or in neither.
"""Parse the binary ring-buffer pages of a tracefs instance into the Events table of tracing.parse
(pure, no I/O: tracing.window reads per_cpu/cpuN/trace_pipe_raw, the format files and saved_tgids).

Why: the text `trace` costs the kernel ~3.5 us per event to format and us ~2 us to parse back;
the pages hold the same events in a fixed binary layout that numpy reads column-wise
(benchmarks/analysis_speed.py). The text stays the attachment; this is what the analysis reads.

Layout, all described by tracefs itself and read from it (never assumed):
  events/header_page    a page (sub-buffer) = u64 timestamp, local_t commit (data length in its
                        low 27 bits; bit 31/30 = events were lost before this page), then data.
  events/header_event   each record starts with a u32: type_len (5 low bits) and time_delta (27).
                        type_len 1..28: a data record of type_len*4 bytes follows;
                        0: the next u32 holds the length (+4), then the data;
                        29: padding (time_delta 0: the rest of the page is empty);
                        30: time extend, delta = (next u32 << 27) + time_delta;
                        31: absolute time stamp (only in abs-timestamp mode; top 5 bits from before).
                        An event's time is the page timestamp plus every delta up to and including
                        its own (the kernel's rb_update_read_stamp).
  events/<sys>/<ev>/format  the event id and each field's offset/size (`__data_loc` strings hold
                        offset | length << 16 from the record start; `__rel_loc` from the field end).
Records are 4-byte aligned, so records are found by walking all pages in lock step: one numpy
step advances every page by one record (~100 steps for a 4 KB page of small events).
Rows are merged across CPUs in time order (ties: lower CPU first, as the kernel's `trace` does).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from tracing import parse as P

# Event name (as in tracefs events/<sys>/<name>) -> kind; markers are ftrace's `print` event
# (the text shows it as tracing_mark_write).
RAW_KINDS = {**{k: v for k, v in P.EVENT_KINDS.items() if k != "tracing_mark_write"}, "print": P.K_MARKER}
_COMMIT_MASK = (1 << 27) - 1
_T_PAD, _T_EXTEND, _T_ABS = 29, 30, 31
_TS_MSB = 0xF8 << 56  # rb_fix_abs_ts: the bits an absolute stamp lacks
_U64 = (1 << 64) - 1
_FIELD = re.compile(r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                    r"(?:\s*signed:(?P<signed>\d+);)?")
_FLAG = re.compile(r"\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*\"(\w)\"\s*\}")


@dataclass(frozen=True)
class Field:
    offset: int
    size: int
    signed: bool
    loc: str = ""  # "" | "data" (__data_loc) | "rel" (__rel_loc)


@dataclass
class EventFormat:
    name: str
    id: int
    fields: dict
    print_fmt: str = ""


def parse_format(text: str) -> EventFormat:
    """One events/<sys>/<name>/format file."""
    name = re.search(r"^name:\s*(\S+)", text, re.M)
    ev_id = re.search(r"^ID:\s*(\d+)", text, re.M)
    if not name or not ev_id:
        raise ValueError("not an event format (no name/ID)")
    fields = {}
    for m in _FIELD.finditer(text):
        decl = m["decl"].strip()
        fname = re.sub(r"\[.*\]$", "", decl.split()[-1])
        loc = "data" if decl.startswith("__data_loc") else "rel" if decl.startswith("__rel_loc") else ""
        fields[fname] = Field(int(m["off"]), int(m["size"]), m["signed"] == "1", loc)
    pf = re.search(r"^print fmt:\s*(.*)$", text, re.M | re.S)
    return EventFormat(name[1], int(ev_id[1]), fields, pf[1] if pf else "")


@dataclass
class RingFormat:
    """What the page walker needs: the page header and the formats of the events we read."""
    ts_field: Field
    commit_field: Field
    data_offset: int
    page_size: int
    events: dict = field(default_factory=dict)  # id -> (kind, EventFormat)
    state_flags: list = field(default_factory=list)  # [(bit, letter)] in print order
    preempt_bit: int = 0x100


def ring_format(header_page: str, formats, subbuf_size: int | None = None) -> RingFormat:
    """header_page: events/header_page; formats: texts of the events' format files (any order).
    subbuf_size: bytes per page (buffer_subbuf_size_kb * 1024) when the kernel has that knob."""
    hp = {}
    for m in _FIELD.finditer(header_page):
        hp[m["decl"].split()[-1]] = Field(int(m["off"]), int(m["size"]), m["signed"] == "1")
    if not {"timestamp", "commit", "data"} <= set(hp):
        raise ValueError("events/header_page lacks timestamp/commit/data")
    data = hp["data"]
    rf = RingFormat(hp["timestamp"], hp["commit"], data.offset, subbuf_size or data.offset + data.size)
    for text in formats:
        ef = parse_format(text)
        kind = RAW_KINDS.get(ef.name)
        if kind is not None:
            rf.events[ef.id] = (kind, ef)
        if ef.name == "sched_switch":
            # prev_state letters as __print_flags lists them; the bit above the highest is "+"
            # (preempted while runnable): TASK_REPORT_MAX in the kernel.
            flags = [(int(v, 0), ch) for v, ch in _FLAG.findall(ef.print_fmt)]
            if flags:
                rf.state_flags = flags
                rf.preempt_bit = max(v for v, _ in flags) << 1
    if not rf.state_flags:
        rf.state_flags = [(1, "S"), (2, "D"), (4, "T"), (8, "t"), (16, "X"), (32, "Z"), (64, "P"), (128, "I")]
    return rf


def _walk(w: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """Every record of every page, in buffer order: (byte position, type_len, time_delta, array[0]).
    starts/ends: byte offsets of each page's data. All pages advance one record per step."""
    pos_l, tl_l, dt_l, a0_l = [], [], [], []
    act = np.flatnonzero(ends > starts)
    pos = starts.astype(np.int64).copy()
    last = len(w) - 1
    while len(act):
        p = pos[act]
        hdr = w[p >> 2].astype(np.int64)
        tl = hdr & 31
        dt = hdr >> 5
        a0 = w[np.minimum((p >> 2) + 1, last)].astype(np.int64)
        null = (tl == _T_PAD) & (dt == 0)
        ln = np.where(tl == 0, 4 + ((a0 + 3) & ~3),
                      np.where(tl <= 28, 4 + 4 * tl, np.where(tl == _T_PAD, 4 + a0, 8))).astype(np.int64)
        pos_l.append(p[~null]), tl_l.append(tl[~null]), dt_l.append(dt[~null]), a0_l.append(a0[~null])
        nxt = p + ln
        pos[act] = nxt
        act = act[~null & (nxt < ends[act])]
    if not pos_l:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e, e
    pos, tl, dt, a0 = (np.concatenate(x) for x in (pos_l, tl_l, dt_l, a0_l))
    order = np.argsort(pos, kind="stable")
    return pos[order], tl[order], dt[order], a0[order]


def _timestamps(pos, tl, dt, a0, page_of_byte, page_ts):
    """ns time of every record (see the module docstring)."""
    step = np.where(tl <= 28, dt, 0)
    step = np.where(tl == _T_EXTEND, (a0 << 27) + dt, step)
    page = page_of_byte(pos)
    first = np.flatnonzero(np.concatenate(([True], page[1:] != page[:-1])))
    cs = np.cumsum(step)
    base = np.repeat(cs[first] - step[first], np.diff(np.concatenate((first, [len(pos)]))))
    ts = page_ts[page] + (cs - base)
    for i in np.flatnonzero(tl == _T_ABS).tolist():  # rare: only in abs-timestamp mode
        pg = page[i]
        j = i
        while j + 1 < len(pos) and page[j + 1] == pg:
            j += 1
        before = (int(ts[i - 1]) if i > 0 and page[i - 1] == pg else int(page_ts[pg])) & _U64
        stamp = (int(a0[i]) << 27) + int(dt[i])
        if before & _TS_MSB:
            stamp |= before & _TS_MSB
            if stamp < before:
                stamp += 1 << 59
        stamp = (stamp + (1 << 63)) % (1 << 64) - (1 << 63)  # as int64 (only garbage overflows)
        ts[i:j + 1] = stamp + (cs[i:j + 1] - cs[i])
    return ts


def parse_pages(pages: dict, fmt: RingFormat, tgids: dict | None = None) -> P.Events:
    """pages: cpu -> the bytes read from that CPU's trace_pipe_raw (whole pages).
    tgids: pid -> tgid (tracefs saved_tgids), for the tgid column as the text shows it."""
    cpus = sorted(c for c, b in pages.items() if len(b) >= fmt.page_size)
    chunks = [pages[c][:len(pages[c]) // fmt.page_size * fmt.page_size] for c in cpus]
    blob = b"".join(chunks)
    if not blob:
        return P.Events.from_rows([])
    u8 = np.frombuffer(blob, dtype=np.uint8)
    w = np.frombuffer(blob, dtype="<u4")
    n_pages = len(blob) // fmt.page_size
    page0 = np.arange(n_pages, dtype=np.int64) * fmt.page_size
    page_cpu = np.repeat(np.array(cpus, dtype=np.int64), [len(c) // fmt.page_size for c in chunks])
    page_ts = _read_int(u8, w, page0, fmt.ts_field).astype(np.int64)
    commit = _read_int(u8, w, page0, fmt.commit_field) & _COMMIT_MASK
    starts = page0 + fmt.data_offset
    ends = np.minimum(starts + commit, page0 + fmt.page_size)

    pos, tl, dt, a0 = _walk(w, starts, ends)
    if not len(pos):
        return P.Events.from_rows([])
    ts_ns = _timestamps(pos, tl, dt, a0, lambda b: b // fmt.page_size, page_ts)
    ds = np.where(tl == 0, pos + 8, pos + 4)  # data start
    rlen = np.where(tl == 0, a0 - 4, tl * 4)
    page_end = (pos // fmt.page_size) * fmt.page_size + fmt.page_size
    rec = (tl <= 28) & (rlen >= 8) & (ds + rlen <= page_end)  # whole data records (common header)
    ds, rlen = ds[rec], rlen[rec]
    ts_ns = ts_ns[rec]
    cpu = page_cpu[pos[rec] // fmt.page_size]

    max_id = max(fmt.events, default=0)
    kind_of = np.full(max(max_id + 1, 65536), P.K_OTHER, dtype=np.int64)
    for ev_id, (kind, _ef) in fmt.events.items():
        kind_of[ev_id] = kind
    type_id = (w[ds >> 2] & 0xFFFF).astype(np.int64)  # common_type: u16 at offset 0
    kind = kind_of[type_id]
    for ev_id, (_k, ef) in fmt.events.items():  # a record too short for its format is not ours
        need = max((f.offset + f.size for f in ef.fields.values()), default=8)
        kind[(type_id == ev_id) & (rlen < need)] = P.K_OTHER
    keep = np.flatnonzero(kind != P.K_OTHER)
    ds, rlen, ts_ns, cpu, kind, type_id = ds[keep], rlen[keep], ts_ns[keep], cpu[keep], kind[keep], type_id[keep]
    n = len(ds)
    tid = w[(ds + 4) >> 2].view(np.int32).astype(np.int64)  # common_pid
    a, b, c = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    sa0, sa1, sb0, sb1 = (np.zeros(n, np.int64) for _ in range(4))

    for ev_id, (k, ef) in fmt.events.items():
        rows = np.flatnonzero(type_id == ev_id)
        if not len(rows):
            continue
        d = ds[rows]
        f = ef.fields
        if k == P.K_SWITCH:
            tid[rows] = _read_int(u8, w, d, f["prev_pid"])
            a[rows] = _read_int(u8, w, d, f["next_pid"])
            st = _read_int(u8, w, d, f["prev_state"])
            letter = np.full(len(rows), ord("R"), dtype=np.int64)
            for bit, ch in reversed(fmt.state_flags):  # the first listed set bit wins
                letter[(st & bit) != 0] = ord(ch)
            b[rows], c[rows] = letter, (st & fmt.preempt_bit) != 0
            sa0[rows], sa1[rows] = _str_span(u8, w, d, f["prev_comm"])
            sb0[rows], sb1[rows] = _str_span(u8, w, d, f["next_comm"])
        elif k in (P.K_WAKING, P.K_WAKEUP, P.K_WAKEUP_NEW):
            a[rows] = _read_int(u8, w, d, f["pid"])
            b[rows] = _read_int(u8, w, d, f["target_cpu"]) if "target_cpu" in f else cpu[rows]
            sa0[rows], sa1[rows] = _str_span(u8, w, d, f["comm"])
        elif k == P.K_MIGRATE:
            a[rows] = _read_int(u8, w, d, f["pid"])
            b[rows] = _read_int(u8, w, d, f["orig_cpu"])
            c[rows] = _read_int(u8, w, d, f["dest_cpu"])
            sa0[rows], sa1[rows] = _str_span(u8, w, d, f["comm"])
        elif k in (P.K_IRQ_ENTRY, P.K_IRQ_EXIT):
            a[rows] = _read_int(u8, w, d, f["irq"])
        elif k in (P.K_SOFTIRQ_ENTRY, P.K_SOFTIRQ_EXIT):
            a[rows] = _read_int(u8, w, d, f["vec"])
        elif k == P.K_MARKER:
            bf = f["buf"]
            sa0[rows], sa1[rows] = d + bf.offset, d + rlen[rows]

    tgid = np.full(n, -1, dtype=np.int64)
    if tgids:
        keys = np.fromiter(tgids.keys(), dtype=np.int64, count=len(tgids))
        vals = np.fromiter(tgids.values(), dtype=np.int64, count=len(tgids))
        o = np.argsort(keys)
        keys, vals = keys[o], vals[o]
        j = np.minimum(np.searchsorted(keys, tid), len(keys) - 1)
        hit = keys[j] == tid
        tgid[hit] = vals[j[hit]]

    order = np.argsort(ts_ns, kind="stable")  # blob order is cpu-major: ties keep the lower cpu first
    cols = [x[order] for x in (ts_ns, cpu, kind, tid, tgid, a, b, c, sa0, sa1, sb0, sb1)]
    ts_ns, cpu, kind, tid, tgid, a, b, c, sa0, sa1, sb0, sb1 = cols

    def s_a(i):
        return _cstr(blob, sa0[i], sa1[i], kind[i] == P.K_MARKER)

    def s_b(i):
        return _cstr(blob, sb0[i], sb1[i], False)

    return P.Events(ts_ns * 1e-9, cpu, kind, tid, tgid, a, b, c, s_a, s_b)


def _cstr(blob: bytes, s: int, e: int, marker: bool) -> str:
    raw = blob[s:e].split(b"\0", 1)[0]
    out = raw.decode("utf-8", "replace")
    return out.rstrip("\n") if marker else out  # the kernel appends a newline to marker text


def _read_int(u8: np.ndarray, w: np.ndarray, at: np.ndarray, f: Field) -> np.ndarray:
    """Integer field `f` of the records whose data start at byte offsets `at` (little endian)."""
    off = at + f.offset
    if f.size == 4 and f.offset % 4 == 0 and not (at & 3).any():
        v = w[off >> 2]
        return (v.view(np.int32) if f.signed else v).astype(np.int64)
    if f.size == 8 and f.offset % 4 == 0 and not (at & 3).any():
        lo, hi = w[off >> 2].astype(np.int64), w[(off >> 2) + 1].astype(np.int64)
        return lo | (hi << 32)  # wraps to negative for u64 >= 2**63, which no field here reaches
    by = u8[off[:, None] + np.arange(f.size)].astype(np.int64)
    v = (by << (8 * np.arange(f.size))).sum(axis=1)
    if f.signed and f.size < 8:
        v = np.where(v >= 1 << (8 * f.size - 1), v - (1 << (8 * f.size)), v)
    return v


def _str_span(u8, w, at, f: Field):
    """[start, end) byte offsets of a string field: inline char[N], or __data_loc / __rel_loc."""
    if not f.loc:
        s = at + f.offset
        return s, s + f.size
    loc = _read_int(u8, w, at, Field(f.offset, 4, False))
    base = at if f.loc == "data" else at + f.offset + f.size
    s = base + (loc & 0xFFFF)
    return s, s + (loc >> 16)


def parse_saved_tgids(text: str) -> dict:
    """tracefs saved_tgids ("pid tgid" lines) -> {pid: tgid}."""
    nums = np.array(text.split(), dtype=np.int64)
    if len(nums) % 2:
        nums = nums[:-1]
    pairs = nums.reshape(-1, 2)
    return dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist()))
