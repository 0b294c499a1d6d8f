"""The kernel's text `trace`, written from a window's ring-buffer pages (pure: no I/O).

Why (issue 25): reading an instance's text `trace` makes the kernel format every event, ~3.5 us
each, on the aux thread: ~10 ms of CPU per builtin request, ~350 ms per replica request (~100k
events), for a file only the few people who download an attachment open. The pages hold the same
events (the analysis decodes them, tracing.rawparse), so the attachment's trace.txt is written from
them when it is built, and the text is not read per request.

Same contents: each line is what the kernel's `trace` prints for the options tracing.instances
sets (record-tgid, irq-info, context-info; not latency-format):

    <comm:%16s>-<pid:%-7d> (<tgid:%7d>|-------) [<cpu:%03d>] <flags:5 chars> <sec:%5lu>.<usec:%06lu>: <event>: <body>

- comm: the kernel's pid -> comm cache (saved_cmdlines) as read when the window closed; "<idle>"
  for pid 0, "<...>" for a pid it no longer holds. tgid: saved_tgids ("-------" when unknown).
- flags (trace_print_lat_fmt): irqs-off/BH-off, need-resched, hardirq/softirq/NMI, preempt depth,
  migrate-disable depth, from the record's common_flags / common_preempt_count.
- time: CLOCK_MONOTONIC ns rounded to us, as the kernel's ns2usecs.
- body: the event's own `print fmt` from its format file, interpreted here (C printf conversions
  over REC->field, __get_str, __print_flags, __print_symbolic, ternaries and integer arithmetic:
  what the events tracing.tracefs enables use); a marker (ftrace `print`) prints as
  `tracing_mark_write: <text>` (the symbol of its ip), as the kernel does.
- header: the kernel's own header lines, learned from its text (see check()), with this window's
  entries-in-buffer/entries-written and online CPU count.

Trusted only once checked: tracing.window reads the kernel's text for a service's first traced
windows and compares it with this formatter's output for the same pages (check()); only after a
window matched line for line does it stop reading the text, and a kernel whose text differs keeps
being read as before. Windows that lost events (their text carries LOST / "buffer started"
annotations) are always read as text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from . import rawparse

MARKER_SYMBOL = b"tracing_mark_write"  # the symbol %ps gives a trace_marker write's ip
_ENTRIES = re.compile(r"^(# entries-in-buffer/entries-written: )\d+/\d+(\s+#P:)\d+$")
_U64 = (1 << 64) - 1


class FormatError(ValueError):
    """A print fmt or record this formatter cannot write as the kernel would."""


@dataclass
class TextMeta:
    """What the text needs beyond the pages, read when the window closed (tracing.window)."""
    entries: int  # events in the buffer (per-CPU stats "entries", summed)
    overrun: int  # events overwritten since the buffer's reset (summed)
    online_cpus: int  # "#P:" (num_online_cpus)

    def to_dict(self) -> dict:
        return {"entries": self.entries, "overrun": self.overrun, "online_cpus": self.online_cpus}

    @classmethod
    def from_dict(cls, d: dict) -> "TextMeta":
        return cls(int(d["entries"]), int(d["overrun"]), int(d["online_cpus"]))


# -- the print fmt interpreter --------------------------------------------------------------------
_TOKEN = re.compile(r"""\s*(?:
    (?P<num>0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!?:(),{}<>])
)""", re.X)
_ESC = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_TYPE_WORDS = {"unsigned", "signed", "long", "int", "short", "char", "void", "const", "bool", "size_t",
               "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "pid_t", "gfp_t", "__u64", "__u32"}
_CONV = re.compile(rb"%(?P<flags>[-+ #0]*)(?P<width>\d+)?(?:\.(?P<prec>\d+))?(?P<len>hh|h|ll|l|z|j|t)?"
                   rb"(?P<conv>[diouxXcsp%])(?P<ext>[sSfFbB])?")


def _unescape(lit: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESC.get(m[1], m[1]), lit[1:-1])


class _Parser:
    """A C expression over REC->field (the part of a print fmt after its format string) -> a
    closure (blob, data start) -> int or bytes."""

    def __init__(self, text: str, ef: rawparse.EventFormat):
        self.ef = ef
        self.toks = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise FormatError(f"{ef.name}: cannot read its print fmt at {text[pos:pos + 30]!r}")
            pos = m.end()
            kind = m.lastgroup
            self.toks.append((kind, m[kind]))
        self.i = 0

    def peek(self, k=0):
        return self.toks[self.i + k] if self.i + k < len(self.toks) else (None, None)

    def take(self, want=None):
        tok = self.peek()
        if want is not None and tok[1] != want:
            raise FormatError(f"{self.ef.name}: expected {want!r}, found {tok[1]!r} in its print fmt")
        self.i += 1
        return tok

    def args(self) -> list:
        out = []
        while self.peek()[0] is not None:
            out.append(self.expr())
            if self.peek()[1] == ",":
                self.take()
        return out

    def expr(self):
        cond = self.binary(0)
        if self.peek()[1] == "?":
            self.take()
            yes = self.expr()
            self.take(":")
            no = self.expr()
            return lambda b, d: yes(b, d) if cond(b, d) else no(b, d)
        return cond

    _LEVELS = (("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", ">", "<=", ">="), ("<<", ">>"),
               ("+", "-"), ("*", "/", "%"))
    _OPS = {"||": lambda x, y: int(bool(x) or bool(y)), "&&": lambda x, y: int(bool(x) and bool(y)),
            "|": lambda x, y: x | y, "^": lambda x, y: x ^ y, "&": lambda x, y: x & y,
            "==": lambda x, y: int(x == y), "!=": lambda x, y: int(x != y), "<": lambda x, y: int(x < y),
            ">": lambda x, y: int(x > y), "<=": lambda x, y: int(x <= y), ">=": lambda x, y: int(x >= y),
            "<<": lambda x, y: (x << y) & _U64, ">>": lambda x, y: x >> y, "+": lambda x, y: x + y,
            "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: _cdiv(x, y),
            "%": lambda x, y: x - _cdiv(x, y) * y}

    def binary(self, level: int):
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self._LEVELS[level]:
            op = self._OPS[self.take()[1]]
            right = self.binary(level + 1)
            left = (lambda lf, rf, o: lambda b, d: o(lf(b, d), rf(b, d)))(left, right, op)
        return left

    def unary(self):
        kind, tok = self.peek()
        if tok in ("~", "!", "-", "+"):
            self.take()
            v = self.unary()
            return {"~": lambda b, d: ~v(b, d) & _U64, "!": lambda b, d: int(not v(b, d)),
                    "-": lambda b, d: -v(b, d), "+": v}[tok]
        if tok == "(" and self._is_cast():
            while self.take()[1] != ")":
                pass
            return self.unary()  # the value is kept as an unbounded int; printing masks it
        return self.primary()

    def _is_cast(self) -> bool:
        j, seen = 1, False
        while True:
            kind, tok = self.peek(j)
            if kind == "id" and (tok in _TYPE_WORDS or tok.endswith("_t")):
                seen = True
            elif tok == "*" and seen:
                pass
            elif tok == ")":
                return seen
            else:
                return False
            j += 1

    def primary(self):
        kind, tok = self.take()
        if kind == "num":
            v = int(tok.rstrip("uUlL"), 0)
            return lambda b, d: v
        if kind == "str":
            s = _unescape(tok).encode()
            return lambda b, d: s
        if tok == "(":
            v = self.expr()
            self.take(")")
            return v
        if kind == "id" and tok == "REC":
            self.take("->")
            return self.field(self.take()[1])
        if kind == "id" and tok == "__get_str":
            self.take("(")
            name = self.take()[1]
            self.take(")")
            return self.field(name, string=True)
        if kind == "id" and tok in ("__print_flags", "__print_symbolic"):
            return self.table(tok == "__print_flags")
        raise FormatError(f"{self.ef.name}: {tok!r} in its print fmt is not handled here")

    def table(self, flags: bool):
        self.take("(")
        value = self.expr()
        delim = b""
        if flags:
            self.take(",")
            delim = self.expr()(b"", 0)
        pairs = []
        while self.peek()[1] == ",":
            self.take()
            self.take("{")
            key = self.expr()(b"", 0)
            self.take(",")
            name = self.expr()(b"", 0)
            self.take("}")
            if isinstance(name, bytes):  # { 0, NULL } ends the kernel's array
                pairs.append((key & _U64, name))
        self.take(")")
        if flags:
            return lambda b, d: _print_flags(value(b, d) & _U64, delim, pairs)
        names = dict(reversed(pairs))  # the first listed wins
        return lambda b, d: names.get(value(b, d) & _U64) or b"0x%x" % (value(b, d) & _U64)

    def field(self, name: str, string: bool = False):
        f = self.ef.fields.get(name)
        if f is None:
            raise FormatError(f"{self.ef.name}: its print fmt reads {name!r}, which its format lacks")
        off, size = f.offset, f.size
        if f.loc:
            rel = f.loc == "rel"

            def loc_str(b, d):
                loc = int.from_bytes(b[d + off:d + off + 4], "little")
                s = (d + off + 4 if rel else d) + (loc & 0xFFFF)
                return b[s:s + (loc >> 16)].split(b"\0", 1)[0]
            return loc_str
        if string or f.text:
            if size == 0:  # char buf[]: to the record's end, read by the caller (markers only)
                raise FormatError(f"{self.ef.name}: a variable-length {name!r} is not handled here")
            return lambda b, d: b[d + off:d + off + size].split(b"\0", 1)[0]
        signed = f.signed
        return lambda b, d: int.from_bytes(b[d + off:d + off + size], "little", signed=signed)


def _cdiv(x: int, y: int) -> int:
    """C's integer division: truncated toward zero."""
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


def _print_flags(v: int, delim: bytes, pairs) -> bytes:
    """The kernel's trace_print_flags_seq: each listed mask wholly set, in order, then what is left."""
    out = []
    for mask, name in pairs:
        if not v:
            break
        if mask and v & mask == mask:
            out.append(name)
            v &= ~mask
    if v:
        out.append(b"0x%x" % v)
    return delim.join(out)


def _conversion(spec: re.Match):
    """One printf conversion -> (bytes % template, value -> what the template takes)."""
    conv, ln = spec["conv"], spec["len"] or b""
    bits = 64 if ln in (b"l", b"ll", b"z", b"j", b"t") else 8 if ln == b"hh" else 16 if ln == b"h" else 32
    tmpl = b"%" + spec["flags"] + (spec["width"] or b"") + (b"." + spec["prec"] if spec["prec"] else b"")
    mask = (1 << bits) - 1
    if conv in (b"d", b"i"):
        half = 1 << (bits - 1)
        return tmpl + b"d", lambda v: ((v & mask) ^ half) - half
    if conv in (b"o", b"u", b"x", b"X"):
        return tmpl + (b"d" if conv == b"u" else conv), lambda v: v & mask
    if conv == b"s":
        return tmpl + b"s", lambda v: v if isinstance(v, bytes) else str(v).encode()
    if conv == b"c":
        return tmpl + b"c", lambda v: v & 0xFF
    raise FormatError(f"printf conversion {spec[0]!r} is not handled here")


def compile_body(ef: rawparse.EventFormat):
    """An event's print fmt -> (blob, data start) -> the body bytes, as the kernel prints it."""
    m = re.match(r'\s*("(?:[^"\\]|\\.)*")\s*(?:,(.*))?$', ef.print_fmt, re.S)
    if not m:
        raise FormatError(f"{ef.name}: its print fmt has no format string")
    fmt = _unescape(m[1]).encode()
    args = _Parser(m[2] or "", ef).args()
    pieces, ai, pos = [], 0, 0  # literal bytes, or (template, cast, arg)
    for spec in _CONV.finditer(fmt):
        pieces.append(fmt[pos:spec.start()])
        pos = spec.end()
        if spec["conv"] == b"%":
            pieces.append(b"%")
            continue
        if spec["conv"] == b"p" or spec["width"] == b"*":
            raise FormatError(f"{ef.name}: printf conversion {spec[0]!r} is not handled here")
        if ai >= len(args):
            raise FormatError(f"{ef.name}: its print fmt has more conversions than arguments")
        tmpl, cast = _conversion(spec)
        pieces.append((tmpl, cast, args[ai]))
        ai += 1
    pieces.append(fmt[pos:])
    if ai != len(args):
        raise FormatError(f"{ef.name}: its print fmt has more arguments than conversions")
    pieces = [p for p in pieces if p != b""]

    def body(b, d) -> bytes:
        return b"".join(p if isinstance(p, bytes) else p[0] % p[1](p[2](b, d)) for p in pieces)
    return body


# -- the line prefix ------------------------------------------------------------------------------
# trace_entry.flags (include/linux/trace_events.h, kernels 6.12+; 0x02 was IRQS_NOSUPPORT before)
_IRQS_OFF, _RESCHED_LAZY, _RESCHED, _HARDIRQ, _SOFTIRQ, _PREEMPT_RESCHED, _NMI, _BH_OFF = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)
_NEED_RESCHED = {_RESCHED | _RESCHED_LAZY | _PREEMPT_RESCHED: "B", _RESCHED | _PREEMPT_RESCHED: "N",
                 _RESCHED_LAZY | _PREEMPT_RESCHED: "L", _RESCHED | _RESCHED_LAZY: "b", _RESCHED: "n",
                 _PREEMPT_RESCHED: "p", _RESCHED_LAZY: "l"}


def lat_flags(flags: int, preempt: int) -> bytes:
    """The five context characters (trace_print_lat_fmt) of one record."""
    bh = flags & _BH_OFF
    irqs = "D" if flags & _IRQS_OFF and bh else "d" if flags & _IRQS_OFF else "b" if bh else "."
    nr = _NEED_RESCHED.get(flags & (_RESCHED | _RESCHED_LAZY | _PREEMPT_RESCHED), ".")
    nmi, hard, soft = flags & _NMI, flags & _HARDIRQ, flags & _SOFTIRQ
    ctx = "Z" if nmi and hard else "z" if nmi else "H" if hard and soft else "h" if hard else "s" if soft else "."
    depth = f"{preempt & 0xF:x}" if preempt & 0xF else "."
    migrate = f"{preempt >> 4:x}" if preempt & 0xF0 else "."
    return (irqs + nr + ctx + depth + migrate).encode()


def parse_cmdlines(text: str | None) -> dict:
    """saved_cmdlines ("pid comm" lines) -> pid -> comm bytes."""
    out = {}
    for line in (text or "").splitlines():
        pid, _, comm = line.partition(" ")
        if pid.isdigit():
            out[int(pid)] = comm.encode("utf-8", "surrogateescape")
    return out


def header_template(kernel_text: str) -> str | None:
    """The kernel's header lines (up to the first event line) with the entries line's numbers as
    placeholders: {entries}, {written}, {cpus}. None when the text has no such header."""
    head = []
    for line in kernel_text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        head.append(line)
    out, found = [], False
    for line in head:
        m = _ENTRIES.match(line.rstrip("\n"))
        if m:
            line = f"{m[1]}{{entries}}/{{written}}{m[2]}{{cpus}}\n"
            found = True
        else:
            line = line.replace("{", "{{").replace("}", "}}")
        out.append(line)
    return "".join(out) if found else None


class Formatter:
    """The text of windows recorded with one ring format (one per tracefs root and page size)."""

    def __init__(self, ring: rawparse.RingFormat, header: str):
        self.ring, self.header = ring, header
        self.bodies = {}
        for ev_id, (_, ef) in ring.events.items():
            if ef.name == "print":
                self.bodies[ev_id] = None  # a marker: written apart (write())
            else:
                self.bodies[ev_id] = (ef.name.encode() + b": ", compile_body(ef))
        self._flags: dict = {}

    def write(self, pages: dict, meta: TextMeta, comms: dict, tgids) -> str:
        """The text `trace` of these pages. comms: pid -> comm bytes (parse_cmdlines); tgids: pid
        -> tgid (saved_tgids; a missing pid prints as '-------'). Raises FormatError when the pages
        do not hold the events the buffer counted (a page left unread)."""
        blobs, grp, ds, pos, ts, type_id, cpu = rawparse.records(pages, self.ring)
        if len(ts) != meta.entries:
            raise FormatError(f"the pages hold {len(ts)} events, the buffer counted {meta.entries}")
        out = [self.header.format(entries=meta.entries, written=meta.entries + meta.overrun,
                                  cpus=meta.online_cpus).encode()]
        usec = (ts + 500) // 1000
        secs, rem = np.divmod(usec, 1_000_000)
        who: dict = {}
        flags_of = self._flags
        bodies = self.bodies
        for b_i, d, p, t_id, c, s, r in zip(grp.tolist(), ds.tolist(), pos.tolist(), type_id.tolist(),
                                             cpu.tolist(), secs.tolist(), rem.tolist()):
            b = blobs[b_i]
            fl = b[d + 2] | b[d + 3] << 8
            pid = int.from_bytes(b[d + 4:d + 8], "little", signed=True)
            head = who.get(pid)
            if head is None:
                comm = b"<idle>" if pid == 0 else b"<XXX>" if pid < 0 else comms.get(pid, b"<...>")
                tg = tgids.get(pid) if pid > 0 else None
                head = who[pid] = b"%16s-%-7d " % (comm, pid) + (b"(%7d) " % tg if tg else b"(-------) ")
            lf = flags_of.get(fl)
            if lf is None:
                lf = flags_of[fl] = lat_flags(fl & 0xFF, fl >> 8)
            ev = bodies[t_id]  # (records() gives only the ids of the ring's formats)
            if ev is None:  # a marker: its ip's symbol, then the text written (with its newline)
                tl = b[p] & 31
                end = p + (int.from_bytes(b[p + 4:p + 8], "little") if tl == 0 else 4 + tl * 4)
                text = b[d + 16:end].split(b"\0", 1)[0]
                body = MARKER_SYMBOL + b": " + text
                if not body.endswith(b"\n"):
                    body += b"\n"
            else:
                try:
                    body = ev[0] + ev[1](b, d) + b"\n"
                except (TypeError, ValueError, ZeroDivisionError) as e:  # a print fmt mixing strings and numbers
                    raise FormatError(f"{ev[0][:-2].decode()}: {e}") from e
            out.append(b"%s[%03d] %s %5d.%06d: %s" % (head, c, lf, s, r, body))
        return b"".join(out).decode("utf-8", "replace")


def first_difference(ours: str, kernel: str) -> str | None:
    """None when equal, else where they first differ (line number and both lines)."""
    if ours == kernel:
        return None
    a, k = ours.splitlines(), kernel.splitlines()
    for i, (x, y) in enumerate(zip(a, k)):
        if x != y:
            return f"line {i + 1}: ours {x!r}, the kernel's {y!r}"
    return f"ours has {len(a)} lines, the kernel's {len(k)}"
