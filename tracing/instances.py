"""The ftrace instances that trace windows record into, configured once and reused (issue 25).

Creating an instance allocates its ring buffers (buffer_size_kb on every CPU) and removing one
frees them, and both wait on the kernel (buffer allocation, RCU grace periods). Measured on the
2-vCPU VM under four concurrent callers (builtin engine): preparing the next window took 105 ms
of wall time median (11 ms of CPU) and the next synthesis waited for it under the synthesis
lock (66 ms median, 112 ms mean); removing the last window's instance took ~200 ms more before
its clip was complete. A window whose pages have been read leaves its instance as clean as a
new one: reading per_cpu/cpuN/trace_pipe_raw consumed every event, tracing is off, and the
options, clock and buffer size stay as configured. So a pool hands instances from window to
window:

- acquire(): a spare instance when there is one (cpumask rewritten if the window's CPUs
  changed; its buffer emptied if anything is left in it, which a read that failed half-way
  could leave; its events back on if quiet() turned them off), else a new one, created and
  configured as before;
- release(): tracing off, kept as a spare (at most `keep` of them, within `keep_mb` of ring
  buffer); any other is removed;
- quiet(): the spares' events off, called when the caller goes idle.

Events and their cost: an instance with events enabled, even with tracing off, has a probe on
each of those tracepoints that runs on every event system-wide and finds its buffer off
(measured: two such instances cut stress-ng --switch's context switches by 15% here), so idle
spares must have their events off. But turning an event on or off changes the tracepoint's
probe list, which waits on the kernel (RCU, code patching: ~50 ms of wall per spare under four
callers, and the next window waited for it), so under load spares keep them on and only quiet()
(no request in flight) turns them off.

What a reused instance carries over and how each is handled: the per-CPU `overrun` and
`dropped events` counters in per_cpu/cpuN/stats count since the buffer's last reset, so each
acquire() notes them (`Instance.base`) and a window reports only what it lost itself
(tracing.window._read_lost). The trace_marker fd stays open for the instance's whole life: it
claims the instance (tracefs.create_instance) between windows as well, so no other launcher's
clean-up can take a spare. Every instance held (in a window or spare) is in the registry that the
SIGTERM/atexit clean-up of tracing.window empties (`held()`, `remove()`).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import tracefs

EVENTS = tracefs.NEEDED_EVENTS
SPARES = 2  # spares kept per pool at most (4 callers on 2 vCPUs: a third was rarely wanted)
SPARES_MB = 64  # ...and at most this much ring buffer between them (buffer_size_kb x possible CPUs
# each: 16 MB on a 2-CPU VM, 512 MB on 64 CPUs, where no spare is kept and every window makes its own)
OPTIONS = (("record-tgid", 1), ("record-cmd", 1), ("irq-info", 1), ("context-info", 1),
           ("overwrite", 1), ("markers", 1), ("event-fork", 0), ("latency-format", 0))

_held: dict[str, "Instance"] = {}  # path -> every instance a pool holds (in a window or spare)
_held_lock = threading.Lock()


@dataclass
class Instance:
    path: Path
    fd: int | None  # the open trace_marker: claims the instance for its whole life
    buffer_kb: int
    total_kb: int = 0  # ring buffer over every possible CPU (buffer_total_size_kb)
    cpumask: str = ""
    clock_mono: bool = False
    events_enabled: list = field(default_factory=list)
    events_missing: dict = field(default_factory=dict)  # event -> "absent on this kernel" | "failed to enable: ..."
    base: dict = field(default_factory=dict)  # cpu (str) -> (overrun, dropped events) when acquired
    events_on: bool = True  # its events are enabled (a spare's go off in InstancePool.quiet())
    reused: int = 0  # times a window took it as a spare

    def write(self, name: str, value) -> None:
        (self.path / name).write_text(str(value))

    def set_events(self, on: bool) -> None:
        """Its events on (those it enabled when created) or all off. Each toggle changes the
        tracepoints' probe lists, which waits on the kernel (~10-20 ms of wall idle, ~50 ms under
        load, here). Raises OSError."""
        if on == self.events_on:
            return
        if on:
            for ev in self.events_enabled:
                (self.path / "events" / ev / "enable").write_text("1")
            self.events_on = True
        else:
            self.events_on = False  # first: after a failed write the next set_events(True) redoes them all
            self.write("events/enable", 0)


def held() -> list["Instance"]:
    with _held_lock:
        return list(_held.values())


def remove(inst: Instance) -> None:
    """Close the instance's marker fd and remove it (the open fd would keep it busy)."""
    with _held_lock:
        _held.pop(str(inst.path), None)
    fd, inst.fd = inst.fd, None
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    tracefs.quiesce_and_remove(inst.path)


class InstancePool:
    """Instances for the trace windows of one process (or of one service). Thread-safe."""

    def __init__(self, keep: int = SPARES, keep_mb: int = SPARES_MB):
        self.keep, self.keep_kb = keep, keep_mb * 1024
        self._spares: list[Instance] = []
        self._lock = threading.Lock()
        self.created = 0  # instances made (the rest of the windows reused one)

    def acquire(self, root: Path, name_fn, cpumask: str, buffer_kb: int) -> Instance:
        """An instance configured for a window on `cpumask`, not recording (tracing_on 0), with its
        events on and its buffer empty. Raises OSError when no instance can be set up."""
        while True:
            with self._lock:
                inst = next((i for i in self._spares if i.buffer_kb == buffer_kb), None)
                if inst is not None:
                    self._spares.remove(inst)
            if inst is None:
                break
            try:
                self._reuse(inst, cpumask)
                return inst
            except OSError:
                remove(inst)  # a spare the kernel no longer lets us configure: take another
        return self._create(root, name_fn, cpumask, buffer_kb)

    def release(self, inst: Instance) -> None:
        """Take back an instance whose window has been read (or was never used): it stays as a
        spare, events still on, while there are fewer than `keep` (and within `keep_mb`); else
        it is removed. quiet() turns the spares' events off once the caller is idle."""
        try:
            inst.write("tracing_on", 0)
        except OSError:
            remove(inst)
            return
        with self._lock:
            kb = sum(i.total_kb for i in self._spares) + inst.total_kb
            if len(self._spares) < self.keep and kb <= self.keep_kb and inst.fd is not None:
                self._spares.append(inst)
                return
        remove(inst)

    def quiet(self) -> None:
        """Turn every spare's events off: call it when no window is wanted soon (the service: no
        request in flight), so that idle spares cost the system nothing per event. Under load
        spares keep their events on: turning an event on or off changes its tracepoint's probe
        list, which waits for the kernel (measured: ~50 ms of wall per toggle under four callers,
        which the next window then waited for)."""
        with self._lock:  # (held throughout: acquire() must not take a spare half-way)
            for inst in self._spares:
                try:
                    inst.set_events(False)
                except OSError:
                    pass  # acquire() turns them on again anyway

    def close(self) -> None:
        """Remove the spares (the windows in flight remove or release theirs)."""
        with self._lock:
            spares, self._spares = self._spares, []
        for inst in spares:
            remove(inst)

    def spares(self) -> int:
        with self._lock:
            return len(self._spares)

    # -- how --------------------------------------------------------------------------------------
    def _create(self, root: Path, name_fn, cpumask: str, buffer_kb: int) -> Instance:
        path, fd = tracefs.create_instance(root, name_fn)
        inst = Instance(path=path, fd=fd, buffer_kb=buffer_kb)
        with _held_lock:
            _held[str(path)] = inst
        try:
            inst.write("tracing_on", 0)  # a new instance starts on: configure first
            inst.write("tracing_cpumask", cpumask)
            inst.cpumask = cpumask
            inst.write("buffer_size_kb", buffer_kb)
            try:
                inst.total_kb = int((path / "buffer_total_size_kb").read_text().split()[0])
            except (OSError, ValueError, IndexError):  # older kernels: per CPU x possible CPUs
                inst.total_kb = buffer_kb * (os.cpu_count() or 1)
            clocks = (path / "trace_clock").read_text().replace("[", "").replace("]", "").split()
            clock = "mono" if "mono" in clocks else ("boot" if "boot" in clocks else "global")
            inst.write("trace_clock", clock)
            inst.clock_mono = clock == "mono"
            # instances start with most options off; set what the parser relies on explicitly
            for opt, v in OPTIONS:
                try:
                    inst.write(f"options/{opt}", v)
                except OSError:
                    pass
            for ev in EVENTS:
                if not (path / "events" / ev).is_dir():
                    inst.events_missing[ev] = "absent on this kernel"
                    continue
                try:
                    self._enable_event(path, ev)
                    inst.events_enabled.append(ev)
                except OSError as e:  # the breakdown says so (a missing sched_switch empties it)
                    inst.events_missing[ev] = f"failed to enable: {e.strerror or e}"
        except OSError:
            remove(inst)
            raise
        self.created += 1
        return inst

    def _reuse(self, inst: Instance, cpumask: str) -> None:
        # (tracing is off: release() made sure of it)
        if inst.cpumask != cpumask:
            inst.write("tracing_cpumask", cpumask)
            inst.cpumask = cpumask
        stats = _stats(inst.path)
        if any(s.get("entries") or s.get("overrun") for s in stats.values()):
            # events left unread (a read that failed half-way), or a ring that overran once (the
            # kernel then annotates the text of every later window, so it cannot be written from
            # the pages: tracing.window): open(trace, O_TRUNC) empties every CPU's buffer and
            # zeroes its counters
            with open(inst.path / "trace", "w"):
                pass
            stats = _stats(inst.path)
        inst.base = {cpu: (s.get("overrun") or 0, s.get("dropped events") or 0) for cpu, s in stats.items()}
        inst.set_events(True)
        inst.reused += 1

    def _enable_event(self, path: Path, ev: str) -> None:
        (path / "events" / ev / "enable").write_text("1")


def _stats(path: Path) -> dict:
    """cpu (str) -> {counter name: int} from per_cpu/cpuN/stats, for every CPU directory."""
    try:
        cpus = [d.name[3:] for d in (path / "per_cpu").iterdir() if d.name.startswith("cpu")]
    except OSError:
        return {}
    return {c: vals for c in cpus if (vals := tracefs.read_cpu_stats(path, c))}
