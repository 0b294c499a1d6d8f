"""trace.dat for trace-cmd and KernelShark, made from a window's own ring-buffer pages.

`trace-cmd record` cannot run on these machines (it writes /proc/sys/kernel/ftrace_enabled, which
is read-only here) and would be a second recording anyway. The pages a TraceWindow already read
(`per_cpu/cpuN/trace_pipe_raw`, `Capture.pages`) are exactly what trace-cmd keeps in its per-CPU
files, so `trace-cmd restore` wraps them into a trace.dat:

  1. `trace-cmd restore -c -t STUB -k KSYMS -o head.dat`: the file header (event formats, the
     pid -> comm table, kernel symbols) read from a tracing directory;
  2. `trace-cmd restore -i head.dat -o trace.dat cpu0.raw cpu1.raw ...`: that header plus the pages,
     one file per CPU number (empty for CPUs the window did not trace).

Cost (measured on the 2-vCPU VM this was built on): pointed at the real tracefs, step 1 stores
every event format of the kernel (~2 MB) and all of /proc/kallsyms (~5 MB): ~170 ms + ~220 ms
for step 2 and a 7.4 MB file per clip. STUB is instead a directory holding only what a window can
contain: the formats of the event systems we enable (sched, irq, vmscan) and ftrace's (the
`print` event is what a trace_marker write records), header_page/header_event, printk_formats,
and a fresh copy of saved_cmdlines (pid -> comm, so trace-cmd and KernelShark show the threads'
names as of this request). KSYMS holds the one kernel symbol the marker events print
(`tracing_mark_write`, so `trace-cmd report` shows `tracing_mark_write: B|tgid|stage` as the text
trace does) and the symbol after it (the resolver's upper bound). The file is then ~100 KB plus
the pages, and both steps take tens of ms (benchmarks/tracing_overhead.py prints the figure).
STUB and KSYMS are built once per process and tracefs root (`prepare()`), since event formats and
kernel text do not move while the kernel runs.

Note: trace-cmd 3.x raises /proc/sys/kernel/kptr_restrict around reading kallsyms even with -k,
and puts the old value back; nothing else on the system is touched.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SYSTEMS = ("sched", "irq", "vmscan", "ftrace")  # what a window enables, plus the marker event
TIMEOUT_S = 60
_MARK_SYMBOL = "tracing_mark_write"


class TraceDatError(RuntimeError):
    """No trace.dat could be made; the message says why (for the clip's notes)."""


def trace_cmd() -> str | None:
    """Path of the trace-cmd binary, or None when it is not installed."""
    return shutil.which("trace-cmd")


class _Stub:
    def __init__(self, root: Path):
        self.root = root
        self.dir = Path(tempfile.mkdtemp(prefix="ittsw-tracedat-"))
        events = self.dir / "events"
        events.mkdir()
        for name in ("header_page", "header_event"):
            shutil.copyfile(root / "events" / name, events / name)
        for system in SYSTEMS:
            sysdir = root / "events" / system
            if not sysdir.is_dir():
                continue
            for ev in sysdir.iterdir():
                fmt = ev / "format"
                if fmt.is_file():
                    (events / system / ev.name).mkdir(parents=True)
                    shutil.copyfile(fmt, events / system / ev.name / "format")
        try:
            shutil.copyfile(root / "printk_formats", self.dir / "printk_formats")
        except OSError:
            (self.dir / "printk_formats").write_text("")
        self.ksyms = self.dir / "kallsyms"
        self.ksyms.write_text(_marker_symbols())
        self.lock = threading.Lock()

    def head(self, out: Path, cmdlines: str | None = None) -> None:
        """Step 1 with a pid -> comm table: `cmdlines` (saved_cmdlines as read when the window
        closed: a clip's trace.dat may be built long after), else a fresh copy."""
        with self.lock:
            try:
                if cmdlines is not None:
                    (self.dir / "saved_cmdlines").write_text(cmdlines)
                else:
                    shutil.copyfile(self.root / "saved_cmdlines", self.dir / "saved_cmdlines")
            except OSError:
                (self.dir / "saved_cmdlines").write_text("")
            _run(["restore", "-c", "-t", str(self.dir), "-k", str(self.ksyms), "-o", str(out)])

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


_stubs: dict[str, _Stub] = {}
_stubs_lock = threading.Lock()


def prepare(root) -> None:
    """Build the per-root stub now (reads /proc/kallsyms once, ~65 ms), e.g. at service start on
    the aux thread, so that the first clip does not pay for it. Raises TraceDatError."""
    _stub(Path(root))


def _stub(root: Path) -> _Stub:
    if trace_cmd() is None:
        raise TraceDatError("trace-cmd is not installed: no trace.dat (install the trace-cmd package)")
    with _stubs_lock:
        st = _stubs.get(str(root))
        if st is None:
            try:
                st = _stubs[str(root)] = _Stub(root)
            except OSError as e:
                raise TraceDatError(f"cannot read the event formats under {root}: {e}") from None
        return st


def write_trace_dat(dest, pages: dict, root, page_size: int, cmdlines: str | None = None) -> Path:
    """Write `pages` (cpu -> raw ring-buffer pages, as read from trace_pipe_raw) as a trace.dat at
    `dest` (atomically: a temporary name next to it, then renamed). `cmdlines`: the pid -> comm
    table to name the threads with (the window's Capture.cmdlines), else the current one.
    Raises TraceDatError."""
    dest = Path(dest)
    if not pages:
        raise TraceDatError("no ring-buffer pages were read for this window: no trace.dat")
    sys_page = os.sysconf("SC_PAGE_SIZE")
    if page_size != sys_page:
        # trace-cmd restore assumes sub-buffers of the system page size
        raise TraceDatError(f"ring-buffer sub-buffers are {page_size} bytes, trace-cmd restore expects "
                            f"{sys_page}: no trace.dat")
    st = _stub(Path(root))
    with tempfile.TemporaryDirectory(prefix=".tracedat-", dir=dest.parent) as td:
        head = Path(td) / "head.dat"
        st.head(head, cmdlines)
        files = []
        for cpu in range(max(pages) + 1):
            f = Path(td) / f"cpu{cpu}.raw"
            f.write_bytes(pages.get(cpu, b""))
            files.append(str(f))
        out = Path(td) / "trace.dat"
        _run(["restore", "-i", str(head), "-o", str(out), *files])
        os.replace(out, dest)
    return dest


def _run(args: list[str]) -> None:
    try:
        p = subprocess.run([trace_cmd() or "trace-cmd", *args], capture_output=True, text=True,
                           errors="replace", timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TraceDatError(f"trace-cmd {args[0]} failed: {e}") from None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TraceDatError(f"trace-cmd {args[0]} failed (exit {p.returncode}): {tail[0]}")


def _marker_symbols() -> str:
    """The kallsyms lines for tracing_mark_write and the next symbol by address ("" when the
    addresses are hidden: the markers then print as a hex address, the rest is unaffected)."""
    try:
        lines = Path("/proc/kallsyms").read_text().splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) >= 3 and parts[2] == _MARK_SYMBOL:
            if int(parts[0], 16) == 0:
                return ""
            return "\n".join(lines[i:i + 2]) + "\n"
    return ""
