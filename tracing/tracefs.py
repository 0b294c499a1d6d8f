"""Finding, mounting and probing tracefs; removing instances left behind by dead processes;
reading an instance's binary ring-buffer pages and what it takes to decode them."""
from __future__ import annotations

import errno
import os
import re
import subprocess
from dataclasses import dataclass, field, asdict
from pathlib import Path

from . import rawparse

CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
NEEDED_EVENTS = (
    "sched/sched_switch", "sched/sched_waking", "sched/sched_wakeup", "sched/sched_wakeup_new",
    "sched/sched_migrate_task", "irq/irq_handler_entry", "irq/irq_handler_exit", "irq/softirq_entry",
    "irq/softirq_exit", "vmscan/mm_vmscan_direct_reclaim_begin", "vmscan/mm_vmscan_direct_reclaim_end",
    "vmscan/mm_vmscan_kswapd_wake",
    # reclaim forced by a memory cgroup's limit (containers): the same stall as direct reclaim
    "vmscan/mm_vmscan_memcg_reclaim_begin", "vmscan/mm_vmscan_memcg_reclaim_end",
)
MARKER_EVENT = "ftrace/print"  # what a trace_marker write records (the text says tracing_mark_write)
LATENCY_TRACERS = ("irqsoff", "preemptoff", "preemptirqsoff", "wakeup", "wakeup_rt", "wakeup_dl")


def _is_tracefs(p: Path) -> bool:
    try:  # a tracefs we may not enter (mode 700, not root) is unusable, not an error
        return (p / "trace").exists() and (p / "events").is_dir()
    except PermissionError:
        return False


def find_tracefs(root=None, mount: bool = True) -> Path | None:
    """The tracefs directory, or None. An explicit `root` is used as is (None if it is not tracefs),
    so tests can force degraded mode. Otherwise: the usual paths, /proc/mounts, then (as root) mount."""
    if root is not None:
        p = Path(root)
        return p if _is_tracefs(p) else None
    for c in CANDIDATES:
        if _is_tracefs(Path(c)):
            return Path(c)
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "tracefs" and _is_tracefs(Path(parts[1])):
                return Path(parts[1])
    except OSError:
        pass
    if mount and os.geteuid() == 0 and Path(CANDIDATES[0]).is_dir():
        r = subprocess.run(["mount", "-t", "tracefs", "nodev", CANDIDATES[0]], capture_output=True)
        if r.returncode == 0 and _is_tracefs(Path(CANDIDATES[0])):
            return Path(CANDIDATES[0])
    return None


def _read(p: Path) -> str | None:
    try:
        return p.read_text()
    except OSError:
        return None


@dataclass
class Capabilities:
    root: str | None
    writable: bool = False
    instances: bool = False
    events: dict = field(default_factory=dict)  # "group/name" -> present
    latency_tracers: list = field(default_factory=list)  # available ones among LATENCY_TRACERS
    current_tracer: str | None = None
    tracer_free: bool = False  # current_tracer is nop: a latency tracer could be used
    trace_marker: bool = False
    per_cpu_stats: bool = False
    raw_pages: bool = False  # ring-buffer pages decodable (formats readable): the fast analysis path
    clocks: list = field(default_factory=list)
    mode: str = "schedstat"  # "full" when per-request windows can be traced
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if self.root is None:
            return f"tracefs: not found ({self.reason}); mode: schedstat (degraded: /proc counters only)"
        missing = [e for e, ok in self.events.items() if not ok]
        lines = [
            f"tracefs: {self.root} ({'writable' if self.writable else 'read-only'})",
            f"mode: {self.mode}" + ("" if self.mode == "full" else f" (degraded: {self.reason})"),
            f"instances: {'yes' if self.instances else 'no'}; trace_marker: {'yes' if self.trace_marker else 'no'};"
            f" per-CPU stats: {'yes' if self.per_cpu_stats else 'no'}",
            "analysis reads: " + ("binary ring-buffer pages (per_cpu/cpuN/trace_pipe_raw)" if self.raw_pages
                                  else "the text trace (page formats unreadable)"),
            f"events: {sum(self.events.values())}/{len(self.events)} present"
            + (f"; missing: {', '.join(missing)}" if missing else ""),
            "latency tracers: " + (", ".join(self.latency_tracers) or "none available")
            + f"; current_tracer: {self.current_tracer} ({'free' if self.tracer_free else 'in use'})",
            "trace clocks: " + " ".join(self.clocks),
        ]
        return "\n".join(lines)


def probe(root=None) -> Capabilities:
    """What this machine's tracefs can do for per-request windows (reads only, creates nothing)."""
    r = find_tracefs(root, mount=root is None)
    if r is None:
        return Capabilities(root=None, reason=f"no tracefs at {root}" if root else "no tracefs mounted")
    cap = Capabilities(root=str(r))
    inst = r / "instances"
    # effective ids: the kernel checks writes with the effective credentials and capabilities
    # (CAP_DAC_OVERRIDE for a non-root service); plain access() asks about the real uid
    cap.writable = os.access(r / "tracing_on", os.W_OK, effective_ids=True) and \
        os.access(inst, os.W_OK, effective_ids=True)
    try:  # a read-only bind mount still passes access() for root: ask the mount flags
        if os.statvfs(r).f_flag & os.ST_RDONLY:
            cap.writable = False
    except OSError:
        cap.writable = False
    cap.instances = inst.is_dir()
    cap.events = {e: (r / "events" / e / "enable").exists() for e in NEEDED_EVENTS}
    avail = (_read(r / "available_tracers") or "").split()
    cap.latency_tracers = [t for t in LATENCY_TRACERS if t in avail]
    cap.current_tracer = (_read(r / "current_tracer") or "").strip() or None
    cap.tracer_free = cap.current_tracer == "nop"
    cap.trace_marker = (r / "trace_marker").exists()
    cap.per_cpu_stats = (r / "per_cpu" / "cpu0" / "stats").exists()
    cap.clocks = (_read(r / "trace_clock") or "").split()
    ring = read_ring_format(r)
    cap.raw_pages = ring is not None and any(ef.name == "sched_switch" for _, ef in ring.events.values())
    sched_ok = cap.events.get("sched/sched_switch") and cap.events.get("sched/sched_waking")
    if not cap.writable:
        cap.reason = "tracefs is not writable (need root / CAP_SYS_ADMIN)"
    elif not cap.instances:
        cap.reason = "kernel has no tracefs instances"
    elif not sched_ok:
        cap.reason = "sched_switch/sched_waking events missing"
    else:
        cap.mode = "full"
    return cap


# Instance names: <prefix>-<pid>-<start>-<n>, start = the owner's start time (clock ticks since
# boot, /proc/<pid>/stat field 22). The pid alone does not identify a process: in containers the
# launcher is pid 1 after every restart, and a launcher in another pid namespace has a pid that
# means nothing (or another process) here. Names without <start> come from older versions.
INSTANCE_RE = re.compile(r"^(?P<prefix>.+?)-(?P<pid>\d+)-(?:(?P<start>\d+)-)?(?P<n>\d+)$")


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22; comm may contain spaces and ")"


def owner_token(pid: int | None = None) -> str:
    """<pid>-<start> of this (or another) process: the owner part of an instance name."""
    pid = pid or os.getpid()
    return f"{pid}-{process_start(pid) or 0}"


def create_instance(root: Path, name_fn, tries: int = 16) -> tuple[Path, int]:
    """mkdir a fresh instance and claim it at once by opening its trace_marker: while any file of
    an instance is open, the kernel refuses to remove it (EBUSY), so no other launcher's
    clean-up can take it from us, whatever pid namespace it runs in. Returns (path, the open
    trace_marker fd: keep it open for the instance's life). A name already taken (a leftover, or
    another process's) is never reused or touched: the next name from `name_fn` is tried."""
    last: OSError | None = None
    for _ in range(tries):
        inst = Path(root) / "instances" / name_fn()
        try:
            os.mkdir(inst)
        except FileExistsError as e:
            last = e
            continue
        try:
            return inst, os.open(inst / "trace_marker", os.O_WRONLY)
        except FileNotFoundError as e:  # removed between our mkdir and open: take another name
            last = e
    raise OSError(errno.EEXIST, f"no free instance name after {tries} tries ({last})")


def quiesce_and_remove(inst: Path) -> bool:
    """Stop and remove one instance. Removing fails with EBUSY while events are enabled or a
    reader holds it open, so tracing and events are switched off first."""
    for name, value in (("tracing_on", "0"), ("events/enable", "0"), ("current_tracer", "nop")):
        try:
            (inst / name).write_text(value)
        except OSError:
            pass
    for _ in range(3):
        try:
            os.rmdir(inst)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY:
                return False
            try:
                (inst / "events/enable").write_text("0")
            except OSError:
                pass
    return False


def hold(inst: Path) -> int | None:
    """Claim an instance made with a plain mkdir (see create_instance): its trace_marker fd, or
    None where there is none (a stand-in directory in tests)."""
    try:
        return os.open(inst / "trace_marker", os.O_WRONLY)
    except OSError:
        return None


def cleanup_stale(prefix: str = "ittsw", root=None) -> list[str]:
    """Remove instances named <prefix>-<pid>[-<start>]-<n> left by processes that are gone;
    returns the names removed.

    Nothing of a live owner's instance is touched, not even its events or tracing_on: an
    instance whose <pid>-<start> is a running process here is skipped outright; any other one is
    removed with a bare rmdir, which the kernel refuses (EBUSY) while a live owner holds it open
    (create_instance), so owners in other pid namespaces, or ours under a reused pid, keep theirs.
    An unheld instance with events on and tracing on is removable as it is (no quiescing needed)."""
    r = find_tracefs(root, mount=False)
    if r is None or not (r / "instances").is_dir():
        return []
    removed = []
    for d in (r / "instances").iterdir():
        m = INSTANCE_RE.match(d.name)
        if not m or m["prefix"] != prefix:
            continue
        if m["start"] is not None and process_start(int(m["pid"])) == int(m["start"]):
            continue  # its owner runs (this process included)
        try:
            os.rmdir(d)
        except FileNotFoundError:
            continue  # its owner removed it meanwhile
        except OSError:
            continue  # EBUSY: held open by a live owner (or a reader such as trace-cmd): not stale
        removed.append(d.name)
    return removed


_ring_cache: dict = {}


def read_ring_format(root: Path, inst: Path | None = None):
    """The formats rawparse needs: events/header_page, our events' format files, the instance's
    sub-buffer size. None when any is unreadable (the caller then parses the text instead).
    Event formats do not change while the kernel runs, so they are read once per root and
    sub-buffer size (probe() and every window's collect() ask)."""
    sub = _read((inst or root) / "buffer_subbuf_size_kb")
    page = int(sub) * 1024 if sub and sub.strip().isdigit() else None
    key = (str(root), page)
    if key not in _ring_cache:
        texts = [t for t in (_read(root / "events" / ev / "format") for ev in (*NEEDED_EVENTS, MARKER_EVENT))
                 if t is not None]
        header = _read(root / "events" / "header_page")
        ring = None
        if header is not None and texts:
            try:
                ring = rawparse.ring_format(header, texts, page)
            except ValueError:
                pass
        _ring_cache[key] = ring
    return _ring_cache[key]


def read_pages(inst: Path, cpus, page_size: int) -> dict:
    """cpu -> every page in the instance's ring buffer for that CPU (per_cpu/cpuN/trace_pipe_raw).
    Consuming: it empties the buffer, so read the text `trace` first. Non-blocking: the reads end
    when the buffer is empty instead of waiting for new events."""
    out = {}
    for c in cpus:
        try:
            fd = os.open(inst / "per_cpu" / f"cpu{c}" / "trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        chunks = []
        try:
            while True:
                try:
                    b = os.read(fd, page_size)
                except BlockingIOError:
                    break
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
        out[c] = b"".join(chunks)
    return out


def read_cpu_stats(inst: Path, cpu) -> dict:
    """An instance's per_cpu/cpu<N>/stats as {counter name: int} ("entries", "overrun",
    "dropped events", ...); {} when it cannot be read."""
    vals = {}
    try:
        text = (Path(inst) / "per_cpu" / f"cpu{cpu}" / "stats").read_text()
    except OSError:
        return vals
    for line in text.splitlines():
        k, _, v = line.partition(":")
        try:
            vals[k.strip()] = int(v.strip().split()[0])
        except (ValueError, IndexError):
            pass
    return vals


def read_saved_cmdlines(root: Path) -> str | None:
    """saved_cmdlines ("pid comm" lines: the kernel's pid -> comm cache, what the text output
    names tasks by) as it is now; None when unreadable. A comm is any bytes: invalid UTF-8 is
    replaced, as reading the text `trace` replaces it."""
    try:
        return (Path(root) / "saved_cmdlines").read_text(errors="replace")
    except OSError:
        return None


def read_saved_tgids(root: Path) -> dict:
    """pid -> tgid as the kernel saved them (record-tgid): what the text output prints."""
    return rawparse.parse_saved_tgids(_read(root / "saved_tgids") or "")


class TgidLookup:
    """pid -> tgid for just the pids a window's events carry, asked for when its pages are decoded
    (rawparse.parse_pages calls it with them): a live task's Tgid from /proc/<pid>/status, and
    saved_tgids (the kernel's record-tgid table, what the text output prints) only for pids that
    are gone by then. saved_tgids lists every pid the machine has run (24k lines here): read
    and parsed it costs ~15 ms of CPU (issue 25), and on a busy machine nearly every window holds
    some task that has exited since (a client's short-lived thread, a cron job).
    With `owner` (the window's process) and `known` (its threads at the window's start and end),
    a gone pid is looked up in saved_tgids only when it may have been the owner's: the analysis
    asks the tgid column one thing, whether a task was the owner's. A gone task was if it is in
    `known`, or if it was born inside the window (`born`: child -> the task that woke it new,
    sched_wakeup_new's pid and current task) to one of the owner's threads (a thread of ours, or
    a process it forked: saved_tgids tells). Any other gone pid was not the owner's, and its tgid
    is left unknown (-1) instead of read. (A thread of ours born between the window's listing of
    threads and tracing on, and gone before its end, would be missed: a few microseconds.) A
    window that lost events may have lost that wakeup_new too: its lookup is made without an
    owner (tracing.window), and every gone pid is read from saved_tgids as before.
    Both sources give a task's tgid; a pid reused between the window and its analysis (ms to a
    few s; pids cycle through pid_max) would be read as its new owner's, as saved_tgids would once
    the new task had run."""

    def __init__(self, root: Path, owner: int | None = None, known=()):
        self.root = Path(root)
        self.owner = owner
        self.known = set(known)

    def __call__(self, pids, born: dict | None = None) -> dict:
        out, gone = {}, []
        for pid in pids:
            if pid <= 0:  # the idle task: no tgid in either source
                continue
            tgid = _proc_tgid(pid)
            if tgid is None:
                gone.append(pid)
            else:
                out[pid] = tgid
        if gone and self.owner is not None and born is not None:
            for pid in [p for p in gone if p in self.known]:
                out[pid] = self.owner
            gone = [p for p in gone if p not in self.known and self._owners(born.get(p), out)]
        if gone:
            out.update(rawparse.tgids_of(rawparse.saved_tgid_pairs(_read(self.root / "saved_tgids") or ""), gone))
        return out

    def _owners(self, parent, out: dict) -> bool:
        """Whether `parent` (the task that woke a gone one new) was the owner's."""
        if parent is None or parent <= 0:
            return False
        if parent in self.known:
            return True
        return (out[parent] if parent in out else _proc_tgid(parent)) == self.owner


def _proc_tgid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read(1024)  # Tgid is the fourth line
    except OSError:
        return None
    i = text.find(b"\nTgid:")
    if i < 0:
        return None
    return int(text[i + 6:text.index(b"\n", i + 1)])
