"""One ftrace instance per request: TraceWindow brackets a synthesis call.

    with TraceWindow() as w:
        with w.stage("vocoder"):
            ...
    bd = w.analyze()            # Breakdown; w.capture holds the raw text and loss counters

Buffer size: DEFAULT_BUFFER_KB per CPU (8 MB). A busy 2-CPU machine writes roughly 0.3-1 M sched
events/s in the worst case (~70 bytes each in the ring), quiet synthesis far fewer; 8 MB/CPU holds
a few seconds of a busy CPU. When it overflows, the oldest events are overwritten and the
per-CPU `overrun` counts are reported in capture.lost / breakdown lost_events.
Trace clock: "mono" (CLOCK_MONOTONIC, the clock of time.monotonic()), so window bounds taken with
time.monotonic() line up with event timestamps.
Reading: the binary pages from per_cpu/cpuN/trace_pipe_raw (consuming), which is what analyze()
decodes (tracing.rawparse: several times faster than parsing the text), and saved_cmdlines (pid ->
comm as of the window). The text `trace` (the attachment's trace.txt; reading it does not consume)
is read before the pages only while it is needed: the kernel formats each event for it (~3.5 us
per event, issue 25), so once KERNEL_TEXT has checked that tracing.textformat writes this kernel's
text exactly (a window's text compared line for line with the same pages written by it), a
window's text is written from its pages when someone asks for it (Capture.raw_text). A window
that lost events is still read as text (its text carries the kernel's loss annotations). The text
parser is the fallback when the pages or their formats cannot be read.
"""
from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import analysis, instances, parse, rawparse, schedstat, textformat, tracefs
from .latency import LatencyProbe

DEFAULT_BUFFER_KB = 8192
EVENTS = tracefs.NEEDED_EVENTS
_counter = itertools.count()
_open: dict[str, "TraceWindow"] = {}  # instance path -> window, for SIGTERM/atexit cleanup
_lock = threading.Lock()
_handler_installed = False
_prev_sigterm = None
log = logging.getLogger("tracing.window")


@dataclass
class Capture:
    text: "str | None"  # the kernel's text `trace` as read; None: not read (see raw_text)
    mode: str  # "full" | "schedstat"
    lost: dict
    pid: int
    start_ts: float
    end_ts: float
    cpus: list
    events_enabled: list
    capabilities: dict
    duration: float
    tids: list = field(default_factory=list)
    pages: dict = field(default_factory=dict)  # cpu -> ring-buffer pages (bytes)
    ring: "rawparse.RingFormat | None" = None  # how to decode them
    tgids: "dict | tracefs.TgidLookup" = field(default_factory=dict)  # pid -> tgid, for the pages
    latency: dict = field(default_factory=dict)  # tracing.latency results per family
    events_missing: dict = field(default_factory=dict)  # event -> why it was not recorded
    cmdlines: "str | None" = None  # saved_cmdlines (pid -> comm) as the window closed
    text_meta: "textformat.TextMeta | None" = None  # the buffer's counts, for a text from the pages
    text_check: bool = False  # the text was read so that KERNEL_TEXT can check the formatter on it
    text_header: "str | None" = None  # the kernel's header lines, for a text written from the pages

    @property
    def raw_text(self) -> str:
        """The window's text `trace`: as the kernel gave it, or, when it was not read (KERNEL_TEXT
        trusts the formatter), written from the pages now (once). Raises textformat.FormatError
        when the pages cannot be written as text."""
        if self.text is None:
            self.text = KERNEL_TEXT.write(self)
        return self.text

    def events(self) -> "tuple[parse.Events, str]":
        """The window's events and where they came from: "pages" (binary) or "text"."""
        if self.pages and self.ring is not None:
            try:
                return rawparse.parse_pages(self.pages, self.ring, self.tgids), "pages"
            except (ValueError, KeyError, IndexError):
                if self.text is None:  # never read: the pages are all there is
                    raise
                # a layout we do not know: the text says the same, slower
        if self.text is None:
            raise ValueError("this window was not read as text and its pages cannot be decoded")
        return parse.parse_trace(self.text), "text"


class KernelText:
    """Whether this process writes windows' text `trace` from their pages (tracing.textformat)
    instead of having the kernel format every event. Untrusted at first: a window is read as text
    (Capture.text_check) and check() compares the formatter's text of its pages with it; the
    first match trusts the formatter for the process (the kernel's formats do not change while it
    runs), and CHECKS mismatches in a row (a pid's comm renamed between the two reads can make
    one) refuse it for good: windows are then read as text as before, and the first difference
    is logged."""
    CHECKS = 3

    def __init__(self):
        self.state = "unchecked"  # | "trusted" | "refused"
        self.failures = 0
        self.header: str | None = None  # the kernel's header lines (textformat.header_template)
        self.difference: str | None = None  # the last mismatch, for the log and the tests
        self._formatters: dict = {}
        self._lock = threading.Lock()

    def trusted(self) -> bool:
        return self.state == "trusted"

    def wanted(self) -> bool:
        """Whether the next eligible window should be read as text to check the formatter."""
        return self.state == "unchecked"

    def formatter(self, ring: rawparse.RingFormat, header: str) -> textformat.Formatter:
        key = (id(ring), header)
        with self._lock:
            f = self._formatters.get(key)
            if f is None:
                f = self._formatters[key] = textformat.Formatter(ring, header)
            return f

    def write(self, cap: Capture) -> str:
        """The text of a window that was not read as text."""
        if cap.text_header is None or cap.ring is None or cap.text_meta is None:
            raise textformat.FormatError("this window's text was not read and cannot be written")
        return _written(self.formatter(cap.ring, cap.text_header), cap)

    def check(self, cap: Capture) -> bool | None:
        """Compare the kernel's text of `cap` (read for this: cap.text_check) with the formatter's
        for its pages. True/False: matched or not; None: nothing to check. Costs the formatting
        of one window (~8 us per event), once or a few times per process: call it off the
        request's path (the service does, after the breakdown is out)."""
        if not cap.text_check or self.state != "unchecked" or cap.text is None:
            return None
        cap.text_check = False
        header = textformat.header_template(cap.text)
        diff = "the kernel's text has no header" if header is None else None
        if diff is None:
            try:
                diff = textformat.first_difference(_written(self.formatter(cap.ring, header), cap), cap.text)
            except (textformat.FormatError, ValueError, KeyError, IndexError) as e:
                diff = f"{type(e).__name__}: {e}"
        with self._lock:
            if self.state != "unchecked":
                return None
            if diff is None:
                self.header, self.state, self.failures = header, "trusted", 0
                log.info("trace text: written from the ring-buffer pages from now on (checked against "
                         "the kernel's text of a %d-event window)", cap.text_meta.entries)
                return True
            self.difference = diff
            self.failures += 1
            if self.failures >= self.CHECKS:
                self.state = "refused"
                log.warning("trace text: the kernel's own text differs from the one written from the "
                            "pages (%s); windows are read as text", diff)
            return False


def written_text(formatter: textformat.Formatter, pages: dict, meta: textformat.TextMeta,
                 cmdlines: str | None, root) -> str:
    """A window's text written by `formatter` from its pages: comms from `cmdlines` (saved_cmdlines
    as the window closed), tgids from the tracefs `root`'s saved_tgids as it is now (the table
    keeps a pid's tgid until the pid is reused)."""
    tgids = tracefs.read_saved_tgids(Path(root)) if root else {}
    return formatter.write(pages, meta, textformat.parse_cmdlines(cmdlines), tgids)


def _written(formatter: textformat.Formatter, cap: Capture) -> str:
    return written_text(formatter, cap.pages, cap.text_meta, cap.cmdlines, cap.capabilities.get("root"))


KERNEL_TEXT = KernelText()


def check_text(cap: Capture) -> bool | None:
    """KERNEL_TEXT.check(cap): see KernelText."""
    return KERNEL_TEXT.check(cap)


def _cleanup_open():
    with _lock:
        items = list(_open.items())
        _open.clear()
    for path, w in items:
        # No lock here: a signal handler may interrupt the thread that holds it.
        w._fd = None
        if w._lat is not None:
            w._lat.discard()
    for inst in instances.held():  # every window's and every pool's spare (closing its marker fd)
        instances.remove(inst)


def _on_sigterm(signum, frame):
    _cleanup_open()
    prev = _prev_sigterm
    if callable(prev):
        prev(signum, frame)
    else:  # default action: die of SIGTERM as if we had no handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _install_cleanup():
    """atexit always; SIGTERM only from the main thread, chaining to any previous handler."""
    global _handler_installed, _prev_sigterm
    if _handler_installed:
        return
    _handler_installed = True
    atexit.register(_cleanup_open)
    if threading.current_thread() is threading.main_thread():
        prev = signal.getsignal(signal.SIGTERM)
        if prev is not _on_sigterm:
            _prev_sigterm = prev if prev not in (signal.SIG_DFL, None) else None
            if prev == signal.SIG_IGN:
                return  # the process chose to ignore SIGTERM; atexit still covers normal exits
            signal.signal(signal.SIGTERM, _on_sigterm)


def instance_name(prefix: str) -> str:
    # <prefix>-<pid>-<start>-<n>: what cleanup_stale recognises after a kill -9 (see tracefs)
    return f"{prefix}-{tracefs.owner_token()}-{next(_counter)}"


class TraceWindow:
    def __init__(self, pid=None, cpus=None, buffer_kb=None, root=None, prefix="ittsw", latency=True,
                 pool: "instances.InstancePool | None" = None):
        """pool: where the instance comes from and goes back to (tracing.instances: the service
        keeps one, so windows reuse configured instances); default: one of its own, which
        creates the instance and removes it after the window."""
        self.pid = pid or os.getpid()
        self.cpus = sorted(cpus) if cpus is not None else process_cpus(self.pid)
        self.buffer_kb = buffer_kb or DEFAULT_BUFFER_KB
        self.root = root
        self.prefix = prefix
        self._capture: Capture | None = None
        self._t1: float | None = None
        self._tids1: set[int] = set()
        self.inst: Path | None = None
        self._pool = pool if pool is not None else instances.InstancePool(keep=0)
        self._held: instances.Instance | None = None
        self.events_enabled: list[str] = []
        self.events_missing: dict[str, str] = {}  # event -> "absent on this kernel" | "failed to enable: ..."
        self.caps: tracefs.Capabilities | None = None
        self._fd = None
        self._fd_lock = threading.Lock()
        self._snap = None
        self._t0 = 0.0
        self._tids0: set[int] = set()
        self._clock_mono = False
        self.latency = latency  # use the kernel's latency tracers when present and free
        self._lat: LatencyProbe | None = None

    # -- enter / exit --------------------------------------------------------------------------
    def prepare(self) -> "TraceWindow":
        """Take a configured instance from the pool without recording (tracing_on=0). A new one
        is costly (mkdir, buffer allocation, event enables: ~40 ms quiet, over 100 ms under load),
        so the service calls it ahead of time on its trace-prep thread; __enter__ then only flips
        tracing_on. Idempotent."""
        if self.caps is not None:
            return self
        self.caps = tracefs.probe(self.root)
        if self.caps.mode == "full":
            try:
                self._open_instance()
            except OSError as e:
                self._teardown()
                self.caps.mode, self.caps.reason = "schedstat", f"instance setup failed: {e}"
        if self.caps.mode == "full" and self.latency:
            # the probe gets a name maker without a reference back to this window: a cycle through
            # it kept each window's pages until the next full gc (+1-2 MB of RSS per request)
            self._lat = LatencyProbe(Path(self.caps.root), _cpumask(self.cpus),
                                     functools.partial(instance_name, self.prefix)).prepare()
        return self

    def retarget(self, cpus) -> bool:
        """Point a prepared window that has not opened at `cpus` (a preset changed the process's
        CPUs since it was prepared): one write to tracing_cpumask. False when it cannot be (it
        opened already, a latency probe was set up for the old CPUs, the write failed): then
        discard it and take a fresh one."""
        cpus = sorted(cpus)
        if cpus == self.cpus:
            return True
        if self._t0 or (self._lat is not None and self._lat.insts):
            return False
        if self._held is not None:
            mask = _cpumask(cpus)
            try:
                self._held.write("tracing_cpumask", mask)
            except OSError:
                return False
            self._held.cpumask = mask
        self.cpus = cpus
        return True

    def arm(self, on: bool) -> None:
        """A prepared window that has not opened: its instance's events on (armed: what prepare()
        leaves) or off (disarmed: an idle service's standby, which then adds no probe to any
        kernel event). Opening a disarmed window would record nothing: arm it first. Raises
        OSError (then discard it and take a fresh one)."""
        if self._t0:
            raise RuntimeError("arm() is for a window that has not opened")
        if self._held is not None:
            self._held.set_events(on)

    def _instance_name(self) -> str:
        return instance_name(self.prefix)

    def __enter__(self):
        self.prepare()
        if self.caps.mode != "full":
            self._snap = schedstat.snapshot(self.pid)
        self._tids0 = self._tids()
        if self.inst is not None:
            (self.inst / "tracing_on").write_text("1")
        if self._lat is not None:
            self._lat.start()
        self._t0 = time.monotonic()
        return self

    def _open_instance(self):
        # claimed from the start: the open trace_marker (our marker fd) keeps other launchers'
        # clean-up off it, and a leftover holding our next name costs a name, never the window
        inst = self._pool.acquire(Path(self.caps.root), self._instance_name, _cpumask(self.cpus), self.buffer_kb)
        self._held, self.inst, self._fd = inst, inst.path, inst.fd
        with _lock:
            _open[str(inst.path)] = self
        _install_cleanup()
        self._clock_mono = inst.clock_mono
        self.events_enabled = list(inst.events_enabled)
        self.events_missing = dict(inst.events_missing)

    def __exit__(self, et, ev, tb):
        """Stop recording and nothing more: reading the buffer and removing the instance
        (collect()) are left to the caller's aux thread, outside the synthesis path. When the
        body raised, collect at once so nothing outlives the failure."""
        self._t1 = time.monotonic()
        self._tids1 = self._tids()
        if self._lat is not None:
            self._lat.stop()
        if self.inst is not None:
            try:
                (self.inst / "tracing_on").write_text("0")
            except OSError:
                pass
        else:
            self._snap = (self._snap or {}, schedstat.snapshot(self.pid))
        if et is not None:
            self.collect()
        return False

    def collect(self, release: bool = True) -> "Capture":
        """Read the stopped window (lost-event counters, raw text, pages), remove the instance, and
        build the Capture. Idempotent; also removes a prepared window that was never entered.
        release=False keeps the (read, stopped) instance until discard(): removing it frees the
        ring buffers (or hands it back to its pool) after the breakdown has been shown."""
        if self._capture is not None:
            if release:
                self._teardown()
            return self._capture
        if self._t1 is None:  # prepared but never used: just discard it
            self._teardown()
            return None
        tids = sorted(self._tids0 | self._tids1)
        caps = self.caps.to_dict() if self.caps else {}
        t0, t1 = self._t0, self._t1
        if self.inst is not None:
            text, pages, ring, tgids, cmdlines, meta, header = "", {}, None, {}, None, None, None
            lost = {"total": 0, "per_cpu": {}, "unknown_cpus": list(self.cpus)}  # until read
            root = Path(self.caps.root)
            latency = self._lat.collect() if self._lat is not None else {}
            check = False
            try:
                stats = {c: tracefs.read_cpu_stats(self.inst, c) for c in self.cpus}
                lost = _read_lost(self.inst, self.cpus, self._held.base if self._held else None, stats)
                whole = lost["total"] == 0 and not lost["unknown_cpus"]
                ring = tracefs.read_ring_format(root, self.inst)
                meta = _text_meta(stats)
                # the text from the pages: a window that lost nothing (since the buffer's reset
                # too: the kernel then annotates where each CPU's buffer starts)
                from_pages = ring is not None and whole and meta is not None and meta.overrun == 0
                if from_pages and KERNEL_TEXT.trusted():
                    text, header = None, KERNEL_TEXT.header
                else:
                    text = (self.inst / "trace").read_text(errors="replace")
                    check = from_pages and KERNEL_TEXT.wanted()
                cmdlines = tracefs.read_saved_cmdlines(root)
                if ring is not None:
                    pages = tracefs.read_pages(self.inst, self.cpus, ring.page_size)
                    # read when the pages are decoded, for their pids; a window that lost events
                    # may have lost the wakeup_new of a thread of ours too: saved_tgids for every
                    # gone pid then (tracefs.TgidLookup)
                    tgids = tracefs.TgidLookup(root, owner=self.pid if whole else None, known=tids)
            except BaseException:
                self._teardown()
                raise
            if release:
                self._teardown()
            self._capture = Capture(text=text, mode="full", lost=lost, pid=self.pid, start_ts=t0,
                                    end_ts=t1, cpus=self.cpus, events_enabled=list(self.events_enabled),
                                    capabilities=caps, duration=t1 - t0, tids=tids, pages=pages, ring=ring,
                                    tgids=tgids, latency=latency, events_missing=dict(self.events_missing),
                                    cmdlines=cmdlines, text_meta=meta, text_check=check, text_header=header)
        else:
            self._capture = Capture(text="", mode="schedstat", lost=analysis.empty_lost(), pid=self.pid,
                                    start_ts=t0, end_ts=t1, cpus=self.cpus, events_enabled=[],
                                    capabilities=caps, duration=t1 - t0, tids=tids)
        return self._capture

    @property
    def collected(self) -> "Capture | None":
        """The capture if collect() has succeeded, else None (never reads)."""
        return self._capture

    @property
    def capture(self) -> "Capture | None":
        """The window's capture (collected on first access after exit); None before exit."""
        return self.collect() if self._t1 is not None else None

    def discard(self) -> None:
        """Give the instance back without reading it (a prepared window that will not be used, or
        one whose capture is read): to its pool, which keeps it as a spare or removes it."""
        self._teardown()

    def _teardown(self):
        if self._lat is not None:
            self._lat.discard()
        with self._fd_lock:  # the marker fd is the instance's: no marker of ours after this
            self._fd = None
        if self.inst is not None:
            with _lock:
                _open.pop(str(self.inst), None)
            held, self._held, self.inst = self._held, None, None
            if held is not None:
                self._pool.release(held)

    def _tids(self) -> set[int]:
        try:
            return {int(t) for t in os.listdir(f"/proc/{self.pid}/task")}
        except OSError:
            return set()

    # -- markers -------------------------------------------------------------------------------
    def marker(self, text: str) -> None:
        """Write one line to this window's trace_marker (no-op in schedstat mode or after exit)."""
        with self._fd_lock:
            if self._fd is not None:
                try:
                    os.write(self._fd, text.replace("\n", " ").encode()[:4000])
                except OSError:
                    pass

    @contextmanager
    def stage(self, name: str):
        """atrace slice `B|<tgid>|<name>` ... `E|<tgid>`, drawn as a slice by Perfetto."""
        tgid = os.getpid()
        self.marker(f"B|{tgid}|{name}")
        try:
            yield
        finally:
            self.marker(f"E|{tgid}")

    # -- results -------------------------------------------------------------------------------
    def analyze(self, release: bool = True) -> analysis.Breakdown:
        """The window's Breakdown (collects first; release as in collect())."""
        if self._t1 is None:
            raise RuntimeError("analyze() is available after the window has closed")
        c = self.collect(release)
        if c.mode != "full":
            before, after = self._snap
            return schedstat.breakdown(c.pid, before, after, c.start_ts, c.end_ts)
        events, source = c.events()
        start, end = c.start_ts, c.end_ts
        if not self._clock_mono and len(events):  # bounds not on the trace clock: use the events'
            start, end = float(events.ts[0]), float(events.ts[-1])
        bd = analysis.analyze(events, c.pid, start, end, lost=c.lost, tids=c.tids)
        bd.source = source
        bd.latency = c.latency
        bd.missing_events = dict(c.events_missing)
        return bd


def _cpu_list(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        elif part:
            out.add(int(part))
    return out


def process_cpus(pid: int) -> list[int]:
    """CPUs the process may use: its cpuset (a thread may widen its own affinity up to that, and
    threads born later inherit anything), else the online CPUs; plus every thread's affinity.
    One thread's os.sched_getaffinity alone is too narrow: a thread pinned to CPU 0 would blind
    the window to work its siblings do on CPU 1."""
    cpus: set[int] = set()
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            hier, ctrl, path = line.split(":", 2)
            for f in ([f"/sys/fs/cgroup{path}/cpuset.cpus.effective"] if hier == "0" else []) + \
                     ([f"/sys/fs/cgroup/cpuset{path}/cpuset.effective_cpus"] if "cpuset" in ctrl.split(",") else []):
                try:
                    cpus |= _cpu_list(Path(f).read_text())
                except (OSError, ValueError):
                    pass
    except (OSError, ValueError):
        pass
    if not cpus:
        try:
            cpus = _cpu_list(Path("/sys/devices/system/cpu/online").read_text())
        except (OSError, ValueError):
            cpus = set(range(os.cpu_count() or 1))
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            cpus |= os.sched_getaffinity(int(t))
    except OSError:
        pass
    return sorted(cpus)


def _cpumask(cpus) -> str:
    mask = 0
    for c in cpus:
        mask |= 1 << c
    h = f"{mask:x}"
    # tracefs wants comma-separated 32-bit groups for > 32 CPUs
    groups = [h[max(0, i - 8):i] for i in range(len(h), 0, -8)][::-1]
    return ",".join(groups)


def _text_meta(stats: dict) -> "textformat.TextMeta | None":
    """The counts the text's header shows (entries in the buffer, and written: those plus the
    overwritten), from the per-CPU stats; None when a CPU's are unreadable."""
    entries = overrun = 0
    for vals in stats.values():
        if "entries" not in vals or "overrun" not in vals:
            return None
        entries += vals["entries"]
        overrun += vals["overrun"]
    return textformat.TextMeta(entries, overrun, _online_cpus())


def _online_cpus() -> int:
    """The text header's "#P:" (num_online_cpus)."""
    try:
        return len(_cpu_list(Path("/sys/devices/system/cpu/online").read_text()))
    except (OSError, ValueError):
        return os.cpu_count() or 1


def _read_lost(inst: Path, cpus, base: dict | None = None, stats: dict | None = None) -> dict:
    """Per-CPU overrun (overwritten, ring full) and dropped events (not recorded) during this
    window, from each CPU's stats (`stats`: cpu -> tracefs.read_cpu_stats, read when not given):
    the counters count since the buffer's last reset, so `base` (cpu -> (overrun, dropped) when
    the window's instance was acquired: tracing.instances) is subtracted. A CPU whose counters
    cannot be read (or lack these lines) lost an unknown number: its values are None and it is
    listed in "unknown_cpus"; total sums what is known (a lower bound then)."""
    per = {}
    total = 0
    unknown = []
    if stats is None:
        stats = {c: tracefs.read_cpu_stats(inst, c) for c in cpus}
    for c, vals in stats.items():
        o, d = vals.get("overrun"), vals.get("dropped events")
        b_o, b_d = (base or {}).get(str(c), (0, 0))
        o = None if o is None else max(0, o - b_o)
        d = None if d is None else max(0, d - b_d)
        per[str(c)] = {"overrun": o, "dropped_events": d}
        if o is None or d is None:
            unknown.append(c)
        total += (o or 0) + (d or 0)
    return {"total": total, "per_cpu": per, "unknown_cpus": unknown}
