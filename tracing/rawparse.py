"""Parse the binary ring-buffer pages of a tracefs instance into the Events table of tracing.parse
(pure, no I/O of its own: tracing.window reads per_cpu/cpuN/trace_pipe_raw and the format files,
and hands in the tgids, or tracefs.TgidLookup to be asked for the pids the pages carry).

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

import bisect
import re
from dataclasses import dataclass, field

import numpy as np

from . import parse as P

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
    text: bool = False  # a char array (printed as a string)


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
        chars = bool(re.search(r"\bchar\b", decl)) and ("[" in decl or bool(loc))
        fields[fname] = Field(int(m["off"]), int(m["size"]), m["signed"] == "1", loc, chars)
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
    sources: tuple = ()  # (header_page, [format texts]) it was made from: to make it again later


def ring_format(header_page: str, formats, subbuf_size: int | None = None) -> RingFormat:
    """header_page: events/header_page; formats: texts of the events' format files (any order).
    subbuf_size: bytes per page (buffer_subbuf_size_kb * 1024) when the kernel has that knob."""
    hp = {}
    for m in _FIELD.finditer(header_page):
        hp[m["decl"].split()[-1]] = Field(int(m["off"]), int(m["size"]), m["signed"] == "1")
    if not {"timestamp", "commit", "data"} <= set(hp):
        raise ValueError("events/header_page lacks timestamp/commit/data")
    data = hp["data"]
    formats = list(formats)
    rf = RingFormat(hp["timestamp"], hp["commit"], data.offset, subbuf_size or data.offset + data.size,
                    sources=(header_page, formats))
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


# record length by type_len, where the header alone tells it (0 and 29 read the next word)
_LEN = np.array([0] + [4 + 4 * t for t in range(1, 29)] + [0, 8, 8], dtype=np.int64)
GROUP_BYTES = 8 << 20  # CPUs with less than this many bytes of pages are decoded together (one walk)


def _walk(w: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Where every record of every page starts, as byte positions in buffer order. starts/ends:
    byte offsets of each page's data. All pages advance one record per step (the header word
    tells the length; the next word only for type_len 0/29/30/31, which need it), each step
    marking its records in a bitmap of the buffer's words, which then lists them in buffer order:
    no per-step lists to keep, no sort. (Records advance by 4 bytes or more, so each has a word of
    its own; a position off the 4-byte grid, which only garbage padding makes, is kept aside.)
    The page's empty rest (padding with time_delta 0) is marked too: the caller drops it."""
    at = np.zeros(len(w), dtype=bool)
    act = np.flatnonzero(ends > starts)
    p, end = starts[act].astype(np.int64), ends[act]
    last = len(w) - 1
    off_grid = []  # (word, low bits) of positions off the 4-byte grid
    while len(p):
        wi = p >> 2
        hdr = w[wi]
        at[wi] = True
        if off_grid:
            low = np.flatnonzero(p & 3)
            off_grid.append((wi[low], p[low] & 3))
        tl = hdr & 31
        ln = _LEN[tl]
        odd = np.flatnonzero((tl == 0) | (tl >= _T_PAD))
        if len(odd):
            a0 = w[np.minimum(wi[odd] + 1, last)].astype(np.int64)
            t_odd = tl[odd]
            ln[odd] = np.where(t_odd == 0, 4 + ((a0 + 3) & ~3), np.where(t_odd == _T_PAD, 4 + a0, 8))
            if not off_grid and (ln[odd] & 3).any():
                off_grid.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
        nxt = p + ln
        cont = (hdr != _T_PAD) & (nxt < end)  # type_len 29 with time_delta 0: the page's empty rest
        p, end = nxt[cont], end[cont]
    pos = np.flatnonzero(at) << 2
    if off_grid:
        words, low = (np.concatenate(x) for x in zip(*off_grid))
        pos[np.searchsorted(pos, words << 2)] += low
    return pos


def _timestamps(tl, hdr, odd, a0, page, page_ts):
    """ns time of every record (see the module docstring): tl/hdr: each record's type_len and
    header word; odd/a0: the records of type_len 0/29/30/31 and their next word; page: each
    record's page index. Computed in place in one int64 column."""
    ts = (hdr >> 5).astype(np.int64)  # time_delta: what each record adds (data records, long ones too)
    t_odd = tl[odd]
    ext = odd[t_odd == _T_EXTEND]
    ts[ext] = (a0[t_odd == _T_EXTEND] << 27) + ts[ext]
    ts[odd[(t_odd == _T_PAD) | (t_odd == _T_ABS)]] = 0  # (padding and absolute stamps add nothing)
    first = np.flatnonzero(np.concatenate(([True], page[1:] != page[:-1])))
    step_first = ts[first]
    np.cumsum(ts, out=ts)
    base = page_ts.copy()  # per page: its stamp less the running sum before its first record
    base[page[first]] -= ts[first] - step_first
    absl = odd[t_odd == _T_ABS]  # rare: only in abs-timestamp mode
    cs = ts.copy() if len(absl) else None
    ts += base[page]
    for i, a0_i in zip(absl.tolist(), a0[t_odd == _T_ABS].tolist()):
        pg = page[i]
        j = i
        while j + 1 < len(ts) and page[j + 1] == pg:
            j += 1
        before = (int(ts[i - 1]) if i > 0 and page[i - 1] == pg else int(page_ts[pg])) & _U64
        stamp = (a0_i << 27) + (int(hdr[i]) >> 5)
        if before & _TS_MSB:
            stamp |= before & _TS_MSB
            if stamp < before:
                stamp += 1 << 59
        stamp = (stamp + (1 << 63)) % (1 << 64) - (1 << 63)  # as int64 (only garbage overflows)
        ts[i:j + 1] = stamp + (cs[i:j + 1] - cs[i])
    return ts


def _tables(fmt: RingFormat):
    """Lookup tables by event id: the kind, and the record length its fields need."""
    kind_of = np.full(65536, P.K_OTHER, dtype=np.int8)
    need_of = np.zeros(65536, dtype=np.int64)
    for ev_id, (kind, ef) in fmt.events.items():
        if 0 <= ev_id < 65536:
            kind_of[ev_id] = kind
            need_of[ev_id] = max((f.offset + f.size for f in ef.fields.values()), default=8)
    return kind_of, need_of


def _state_letters(st: np.ndarray, fmt: RingFormat) -> np.ndarray:
    """prev_state -> the letter of its first listed set bit ('R' when none): a table over the
    listed bits when they are small (always, on kernels so far), else one pass per flag."""
    mask = 0
    for bit, _ in fmt.state_flags:
        mask |= bit
    if 0 < mask < 1 << 16:
        tab = np.full(mask + 1, ord("R"), dtype=np.int64)
        idx = np.arange(mask + 1)
        for bit, ch in reversed(fmt.state_flags):  # the first listed set bit wins
            tab[(idx & bit) != 0] = ord(ch)
        return tab[st & mask]
    letter = np.full(len(st), ord("R"), dtype=np.int64)
    for bit, ch in reversed(fmt.state_flags):
        letter[(st & bit) != 0] = ord(ch)
    return letter


@dataclass
class _Group:
    """Some CPUs' pages as one buffer (a big CPU's own bytes, uncopied; small ones joined) and
    its records of the events we read, in buffer order (positions in int32 below 2 GB)."""
    blob: bytes
    u8: np.ndarray
    w: np.ndarray
    pos: np.ndarray  # record start
    ds: np.ndarray  # data start
    ts: np.ndarray  # ns
    type_id: np.ndarray  # uint16
    cpu: np.ndarray


def _groups(pages: dict, ps: int) -> list:
    """[(cpus, [their page bytes])] in CPU order: one per CPU of GROUP_BYTES or more (its bytes
    are used in place: no copy of a big buffer), the rest joined up to GROUP_BYTES (one walk
    for many small CPUs)."""
    out, cur, size = [], [], 0
    for c in sorted(c for c, b in pages.items() if len(b) >= ps):
        b = pages[c]
        chunk = b[:len(b) // ps * ps]
        if len(chunk) >= GROUP_BYTES or (cur and size + len(chunk) > GROUP_BYTES):
            if cur:
                out.append(cur)
            cur, size = [], 0
        cur.append((c, chunk))
        size += len(chunk)
        if size >= GROUP_BYTES:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


def _decode_group(chunks: list, fmt: RingFormat, kind_of, need_of) -> _Group:
    ps = fmt.page_size
    blob = chunks[0][1] if len(chunks) == 1 else b"".join(ch for _, ch in chunks)
    u8 = np.frombuffer(blob, dtype=np.uint8)
    w = np.frombuffer(blob, dtype="<u4")
    n_pages = len(blob) // ps
    page0 = np.arange(n_pages, dtype=np.int64) * ps
    cpus = [c for c, _ in chunks]
    page_cpu = np.repeat(np.array(cpus, dtype=np.int16 if max(cpus) < 1 << 15 else np.int64),
                         [len(ch) // ps for _, ch in chunks])
    page_ts = _read_int(u8, w, page0, fmt.ts_field).astype(np.int64)
    commit = _read_int(u8, w, page0, fmt.commit_field) & _COMMIT_MASK
    starts = page0 + fmt.data_offset
    ends = np.minimum(starts + commit, page0 + ps)
    pos = _walk(w, starts, ends)
    hdr = w[pos >> 2]
    real = hdr != _T_PAD  # type_len 29 with time_delta 0: the page's empty rest
    if not real.all():
        pos, hdr = pos[real], hdr[real]
    del real
    if not len(pos):
        e = np.zeros(0, dtype=np.int64)
        return _Group(blob, u8, w, e, e, e, e.astype(np.uint16), e)
    tl = (hdr & 31).astype(np.uint8)
    odd = np.flatnonzero((tl == 0) | (tl >= _T_PAD))
    a0 = w[np.minimum((pos[odd] >> 2) + 1, len(w) - 1)].astype(np.int64)
    page = pos >> (ps.bit_length() - 1) if ps & (ps - 1) == 0 else pos // ps
    ts = _timestamps(tl, hdr, odd, a0, page, page_ts)
    del hdr
    # whole data records (common header) of the events we read; a record too short for its
    # format is not ours
    dlen = tl.astype(np.int64) << 2  # data length: type_len words, or the next word less 4 (long records)
    long_ = odd[tl[odd] == 0]
    dlen[long_] = a0[tl[odd] == 0] - 4
    ds = pos + 4
    ds[long_] += 4
    keep = np.flatnonzero((tl <= 28) & (dlen >= 8) & (ds + dlen <= (page + 1) * ps))
    del tl, odd, a0, long_
    it = np.int32 if len(blob) < 1 << 31 else np.int64
    ds_k, dlen = ds[keep], dlen[keep]
    del ds
    type_id = w[ds_k >> 2].astype(np.uint16)  # common_type: u16 at offset 0
    ours = np.flatnonzero((kind_of[type_id] != P.K_OTHER) & (dlen >= need_of[type_id]))
    del dlen
    keep = keep[ours]
    return _Group(blob, u8, w, pos[keep].astype(it), ds_k[ours].astype(it), ts[keep], type_id[ours],
                  page_cpu[page[keep]])


def parse_pages(pages: dict, fmt: RingFormat, tgids: dict | None = None) -> P.Events:
    """pages: cpu -> the bytes read from that CPU's trace_pipe_raw (whole pages).
    tgids: pid -> tgid (tracefs saved_tgids, or a tracefs.TgidLookup), for the tgid column as the
    text shows it.
    Each group of CPUs (see _groups) is walked on its own buffer; the rows are put in time order
    from the records' stamps alone, and every field is then read straight into its row. Each
    group's columns are let go once read: the peak is the table plus one group's reading."""
    kind_of, need_of = _tables(fmt)
    groups = [_decode_group(chunks, fmt, kind_of, need_of) for chunks in _groups(pages, fmt.page_size)]
    sizes = [len(g.ts) for g in groups]
    n = sum(sizes)
    if not n:
        return P.Events.from_rows([])
    # time order: groups (and the CPUs in each) are in CPU order, so a stable sort keeps the lower
    # CPU first on ties, as the kernel's `trace` does
    ts_all = np.concatenate([g.ts for g in groups])
    for g in groups:
        g.ts = None
    order = np.argsort(ts_all, kind="stable")
    ts_ns = ts_all[order]
    del ts_all
    ts = ts_ns * 1e-9
    del ts_ns
    it = np.int32 if n < 1 << 31 else np.int64
    row_of = np.empty(n, dtype=it)  # buffer order -> time order
    row_of[order] = np.arange(n, dtype=it)
    del order
    blobs = [g.blob for g in groups]
    base = np.cumsum([0] + [len(b) for b in blobs])
    kind, tid, cpu = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    gpos = np.empty(n, np.int32 if base[-1] < 1 << 31 else np.int64)
    a, b, c = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    for gi, lo, g_base in zip(range(len(groups)), np.cumsum([0] + sizes[:-1]).tolist(), base.tolist()):
        g, groups[gi] = groups[gi], None  # (its columns go once read)
        dest = row_of[lo:lo + sizes[gi]]
        kind[dest] = kind_of[g.type_id]
        cpu[dest] = g.cpu
        gpos[dest] = g.pos + gpos.dtype.type(g_base)  # (int64 past 2 GB of pages: no int32 overflow)
        _read_fields(g, dest, fmt, tid, a, b, c)
        del g
    del row_of
    born = None
    if callable(tgids):  # child (a) -> the task that woke it new (tid): the lookup's `born`
        new = kind == P.K_WAKEUP_NEW
        born = dict(zip(a[new].tolist(), tid[new].tolist()))
    tgid = _tgids(tid, tgids, born)
    strings = _Strings(blobs, base, fmt, gpos)
    return P.Events(ts, cpu, kind, tid, tgid, a, b, c, strings.sa, strings.sb)


def records(pages: dict, fmt: RingFormat):
    """Every record of the events `fmt` knows, in time order (as parse_pages orders its rows), for
    a reader that needs each record's bytes (tracing.textformat): (blobs, blob index, data start,
    record start, ns time, event id, cpu), the last six as arrays."""
    kind_of, need_of = _tables(fmt)
    groups = [_decode_group(chunks, fmt, kind_of, need_of) for chunks in _groups(pages, fmt.page_size)]
    if not groups:
        e = np.zeros(0, dtype=np.int64)
        return [], e, e, e, e, e, e
    cat = np.concatenate
    ts = cat([g.ts for g in groups])
    order = np.argsort(ts, kind="stable")  # groups are in CPU order: ties keep the lower CPU first
    grp = cat([np.full(len(g.ts), i, dtype=np.int64) for i, g in enumerate(groups)])
    return ([g.blob for g in groups], grp[order], cat([g.ds for g in groups]).astype(np.int64)[order],
            cat([g.pos for g in groups]).astype(np.int64)[order], ts[order],
            cat([g.type_id for g in groups])[order], cat([g.cpu for g in groups]).astype(np.int64)[order])


def _read_fields(g: _Group, dest: np.ndarray, fmt: RingFormat, tid, a, b, c) -> None:
    """The fields of one group's records, read per event id and written to their rows `dest`
    of the tid/a/b/c columns (see tracing.parse for what each kind keeps where)."""
    u8, w, ds = g.u8, g.w, g.ds
    aligned = not (ds & 3).any()  # (always, unless the pages are garbage)
    wd = ds >> 2
    by_type = np.argsort(g.type_id, kind="stable")  # radix (uint16): rows by event id
    ids = sorted(fmt.events)
    bounds = np.searchsorted(g.type_id[by_type], ids)
    for ev_id, b_lo, b_hi in zip(ids, bounds.tolist(), [*bounds[1:].tolist(), len(by_type)]):
        if b_hi <= b_lo:
            continue
        rows = by_type[b_lo:b_hi]
        k, ef = fmt.events[ev_id]
        dw, to = wd[rows], dest[rows]
        f = ef.fields

        def rd(name, wide=False):
            """The field at each record: a 4-byte one as read (the int64 column takes it as it
            is assigned: no int64 copy), unless `wide`."""
            fl = f[name]
            if aligned and fl.offset % 4 == 0 and fl.size in (4, 8):
                v = w[dw + fl.offset // 4]
                if fl.size == 8:  # (wraps to negative for u64 >= 2**63, which no field here reaches)
                    return v.astype(np.int64) | (w[dw + fl.offset // 4 + 1].astype(np.int64) << 32)
                v = v.view(np.int32) if fl.signed else v
                return v.astype(np.int64) if wide else v
            return _read_int(u8, w, ds[rows], fl)

        if k == P.K_SWITCH:
            tid[to] = rd("prev_pid")
            a[to] = rd("next_pid")
            st = rd("prev_state", wide=True)
            b[to], c[to] = _state_letters(st, fmt), (st & fmt.preempt_bit) != 0
            del st
        else:
            tid[to] = w[dw + 1].view(np.int32)  # common_pid
        if k in (P.K_WAKING, P.K_WAKEUP, P.K_WAKEUP_NEW):
            a[to] = rd("pid")
            b[to] = rd("target_cpu") if "target_cpu" in f else g.cpu[rows]
        elif k == P.K_MIGRATE:
            a[to] = rd("pid")
            b[to] = rd("orig_cpu")
            c[to] = rd("dest_cpu")
        elif k in (P.K_IRQ_ENTRY, P.K_IRQ_EXIT):
            a[to] = rd("irq")
        elif k in (P.K_SOFTIRQ_ENTRY, P.K_SOFTIRQ_EXIT):
            a[to] = rd("vec")
        for name in _STRINGS.get(k, ()):  # a layout we do not know fails here, not on reading
            f[name]  # noqa: B018


# kind -> the fields of (sa, sb), the string columns of tracing.parse's table (markers: "buf")
_STRINGS = {P.K_SWITCH: ("prev_comm", "next_comm"), P.K_WAKING: ("comm",), P.K_WAKEUP: ("comm",),
            P.K_WAKEUP_NEW: ("comm",), P.K_MIGRATE: ("comm",), P.K_MARKER: ("buf",)}


class _Strings:
    """sa(i) / sb(i), read from the record when asked (the analysis reads a few hundred strings of
    millions of events). The buffers are read as one: their concatenation in CPU order."""

    def __init__(self, blobs: list, base, fmt: RingFormat, gpos: np.ndarray):
        self.blobs, self.base, self.fmt, self.gpos = blobs, [int(x) for x in base], fmt, gpos

    def _bytes(self, s: int, e: int) -> bytes:
        """Bytes [s, e) of the concatenated buffers (a string never crosses one, garbage may)."""
        g = bisect.bisect_right(self.base, s) - 1
        out = []
        while s < e and 0 <= g < len(self.blobs):
            lo = s - self.base[g]
            piece = self.blobs[g][lo:lo + (e - s)]
            out.append(piece)
            s += len(piece)
            g += 1
            if not piece:
                break
        return b"".join(out)

    def _word(self, at: int) -> int:
        """The aligned u32 holding byte `at`, as the decoder's word view reads it."""
        at &= ~3
        return int.from_bytes(self._bytes(at, at + 4), "little")

    def _get(self, i, which: int) -> str:
        pos = int(self.gpos[i])
        tl = self._word(pos) & 31
        ds = pos + 8 if tl == 0 else pos + 4
        kind, ef = self.fmt.events[self._word(ds) & 0xFFFF]
        names = _STRINGS.get(kind, ())
        if which >= len(names):
            return ""
        f = ef.fields[names[which]]
        if kind == P.K_MARKER:  # the rest of the record
            rlen = self._word(pos + 4) - 4 if tl == 0 else tl * 4
            return _cstr(self._bytes(ds + f.offset, ds + rlen), True)
        if not f.loc:
            s = ds + f.offset
            return _cstr(self._bytes(s, s + f.size), False)
        loc = int.from_bytes(self._bytes(ds + f.offset, ds + f.offset + 4), "little")
        s = (ds if f.loc == "data" else ds + f.offset + f.size) + (loc & 0xFFFF)
        return _cstr(self._bytes(s, s + (loc >> 16)), False)

    def sa(self, i) -> str:
        return self._get(i, 0)

    def sb(self, i) -> str:
        return self._get(i, 1)


def _tgids(tid: np.ndarray, tgids, born: dict | None = None) -> np.ndarray:
    """pid -> tgid column (-1 when unknown): a table indexed by pid where pids are small enough
    (pid_max is at most 2^22), else a binary search. `tgids`: a dict, or a callable that gives one
    for the distinct pids of the column and `born` (tracefs.TgidLookup)."""
    if callable(tgids):
        tgids = tgids(np.unique(tid).tolist(), born=born)
    if not tgids:
        return np.full(len(tid), -1, dtype=np.int64)
    keys = np.fromiter(tgids.keys(), dtype=np.int64, count=len(tgids))
    vals = np.fromiter(tgids.values(), dtype=np.int64, count=len(tgids))
    lo_t, hi_t = (int(tid.min()), int(tid.max())) if len(tid) else (0, 0)
    if 0 <= keys.min() and keys.max() < 1 << 23:
        size = int(keys.max()) + 1
        if 0 <= lo_t and hi_t < 1 << 23:
            size = max(size, hi_t + 1)  # every tid indexes the table: one gather, no copies
        tab = np.zeros(size, dtype=np.int64)  # tgid + 1; 0 = unknown (calloc: lazy)
        tab[keys] = vals + 1
        if 0 <= lo_t and hi_t < size:
            tgid = tab[tid]
        else:
            tgid = np.zeros(len(tid), dtype=np.int64)
            ok = (tid >= 0) & (tid < size)
            tgid[ok] = tab[tid[ok]]
        tgid -= 1
        return tgid
    tgid = np.full(len(tid), -1, dtype=np.int64)
    hit, found = _sorted_lookup(keys, vals, tid)
    tgid[hit] = found
    return tgid


def _sorted_lookup(keys: np.ndarray, vals: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Look `want` up in the table keys -> vals by binary search: (mask of `want` found, their
    values). keys are sorted here unless they already are."""
    if (np.diff(keys) < 0).any():
        o = np.argsort(keys, kind="stable")
        keys, vals = keys[o], vals[o]
    j = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    hit = keys[j] == want
    return hit, vals[j[hit]]


def _cstr(raw: bytes, marker: bool) -> str:
    raw = raw.split(b"\0", 1)[0]
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


def saved_tgid_pairs(text: str) -> np.ndarray:
    """tracefs saved_tgids ("pid tgid" lines) -> an (n, 2) int64 array, in the file's pid order.
    (np.fromstring's text mode: 1.2 ms for 27k lines against 7.9 ms for split + array.)"""
    nums = np.fromstring(text, dtype=np.int64, sep=" ") if text.strip() else np.zeros(0, np.int64)
    if len(nums) % 2:
        nums = nums[:-1]
    return nums.reshape(-1, 2)


def parse_saved_tgids(text: str) -> dict:
    """tracefs saved_tgids ("pid tgid" lines) -> {pid: tgid}."""
    pairs = saved_tgid_pairs(text)
    return dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist()))


def tgids_of(pairs: np.ndarray, pids) -> dict:
    """{pid: tgid} for just `pids` from saved_tgid_pairs (no dict of every pid the machine ran)."""
    want = np.asarray(sorted(pids), dtype=np.int64)
    if not len(want) or not len(pairs):
        return {}
    hit, found = _sorted_lookup(pairs[:, 0], pairs[:, 1], want)
    return dict(zip(want[hit].tolist(), found.tolist()))