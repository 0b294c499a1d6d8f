"""Kernel latency tracers for one request window, when the kernel has them and they are free.

The irqsoff family (preemptirqsoff, irqsoff, preemptoff) records the longest stretch with
interrupts and/or preemption off; the wakeup family (wakeup, wakeup_rt, wakeup_dl) the longest
wait of the highest-priority task from its wakeup to running. Each family is a system-wide
singleton in the kernel (irqsoff_busy / wakeup_busy: a second user gets EBUSY), and a latency
tracer switches its trace array to latency format with a max-snapshot `trace`, so each tracer
gets an instance of its own, never the events instance. Per window: the best available tracer of
each family, if no other trace array (the top level or another instance) runs one of that family.

Lifecycle (the perf-tools discipline: undo exactly what was set): prepare() creates the instance
(named like the window's, so stale-instance cleanup covers it), tracing_on 0, cpumask,
function-trace off (only the critical section's start/end, not every function: far cheaper),
current_tracer (its init zeroes tracing_max_latency); start()/stop() flip tracing_on; collect() reads
tracing_max_latency and the max trace, sets current_tracer back to nop and removes the instance.

The kernels this was built on have no latency tracer (CONFIG_TRACER_MAX_TRACE off): there the
probe reports each family "not available" and creates nothing. The present-and-free path is
tested against a stand-in directory with tracefs's file names and formats (tests/test_latency.py).
"""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from . import tracefs

FAMILIES = {
    "irqs/preemption off": ("preemptirqsoff", "irqsoff", "preemptoff"),
    "wakeup": ("wakeup", "wakeup_rt", "wakeup_dl"),
}
_LAT = re.compile(r"latency:\s*(?P<us>\d+)\s*us(?:,\s*#(?P<ev>\d+)/(?P<ent>\d+))?(?:,\s*CPU#(?P<cpu>\d+))?")
_TASK = re.compile(r"task:\s*(?P<comm>.+)-(?P<pid>\d+)\s*\((?P<rest>[^)]*)\)")
_AT = re.compile(r"=>\s*(?P<which>started|ended) at:\s*(?P<fn>\S+)")
TRACE_KEEP = 16000  # characters of the max trace kept for the attachment


def parse_latency_trace(text: str) -> dict:
    """The header of a latency tracer's `trace` (latency format) -> {latency_us, cpu, task, pid,
    started_at, ended_at}; keys absent when the header lacks them."""
    out: dict = {}
    m = _LAT.search(text)
    if m:
        out["latency_us"] = int(m["us"])
        if m["cpu"] is not None:
            out["cpu"] = int(m["cpu"])
    m = _TASK.search(text)
    if m:
        out["task"], out["pid"] = m["comm"].strip(), int(m["pid"])
        out["task_info"] = m["rest"].strip()
    for m in _AT.finditer(text):
        out[f"{m['which']}_at"] = m["fn"]
    return out


def choose(available, in_use) -> dict:
    """family -> the tracer to use, or a reason string starting with "not available"/"in use".
    available: tracer names of available_tracers; in_use: {trace array name: its current_tracer}."""
    out = {}
    for fam, names in FAMILIES.items():
        users = [f"{arr} ({t})" for arr, t in sorted(in_use.items()) if t in names]
        pick = next((t for t in names if t in available), None)
        if pick is None:
            out[fam] = "not available on this kernel"
        elif users:
            out[fam] = "in use by " + ", ".join(users)
        else:
            out[fam] = pick
    return out


def current_tracers(root: Path) -> dict:
    """{"top": tracer, "<instance>": tracer} for every trace array whose tracer is not nop."""
    out = {}
    for name, d in [("top", root), *[(p.name, p) for p in sorted((root / "instances").glob("*"))]]:
        try:
            t = (d / "current_tracer").read_text().strip()
        except OSError:
            continue
        if t and t != "nop":
            out[name] = t
    return out


class LatencyProbe:
    """The latency tracers of one window. `status` holds, per family, what happened (a dict
    once used, else a sentence); nothing here raises for a tracer that cannot be had."""

    def __init__(self, root: Path, cpumask: str, name_fn):
        self.root = Path(root)
        self.cpumask = cpumask
        self.name_fn = name_fn  # () -> a fresh instance name
        self.insts: dict[str, tuple[str, Path]] = {}  # family -> (tracer, instance)
        self.status: dict = {}
        self._held: dict[Path, int | None] = {}  # instance -> its open trace_marker (the claim)

    def prepare(self) -> "LatencyProbe":
        try:
            available = (self.root / "available_tracers").read_text().split()
        except OSError:
            available = []
        for fam, pick in choose(available, current_tracers(self.root)).items():
            if pick not in FAMILIES[fam]:
                self.status[fam] = pick
                continue
            inst = self.root / "instances" / self.name_fn()
            try:
                os.mkdir(inst)
            except OSError as e:
                self.status[fam] = f"could not create an instance: {e.strerror}"
                continue
            self._held[inst] = tracefs.hold(inst)  # other launchers' clean-up leaves it alone
            try:
                # the tracer's init zeroes tracing_max_latency and resets the buffer itself
                for f, v in (("tracing_on", "0"), ("tracing_cpumask", self.cpumask),
                             ("options/function-trace", "0"), ("current_tracer", pick)):
                    if f.startswith("options/") and not (inst / f).exists():
                        continue  # kernels without function tracing have no such option
                    (inst / f).write_text(v)
            except OSError as e:
                self._remove(inst)
                self.status[fam] = ("in use by another trace array" if e.errno == errno.EBUSY
                                    else "not available on this kernel" if e.errno == errno.EINVAL
                                    else f"could not be set up: {e.strerror}")
                continue
            self.insts[fam] = (pick, inst)
            self.status[fam] = f"{pick}: prepared"
        return self

    def start(self) -> None:
        self._flip("1")

    def stop(self) -> None:
        self._flip("0")

    def _flip(self, v: str) -> None:
        for _tracer, inst in self.insts.values():
            try:
                (inst / "tracing_on").write_text(v)
            except OSError:
                pass

    def collect(self) -> dict:
        """Read each tracer's max latency and trace, undo the tracer, remove the instances."""
        for fam, (tracer, inst) in list(self.insts.items()):
            res: dict = {"tracer": tracer}
            try:
                res["max_latency_us"] = int((inst / "tracing_max_latency").read_text().split()[0])
                text = (inst / "trace").read_text(errors="replace")
                res.update({k: v for k, v in parse_latency_trace(text).items() if k != "latency_us"})
                res["trace"] = text[:TRACE_KEEP]
            except (OSError, ValueError, IndexError) as e:
                res["error"] = f"could not read: {e}"
            self._remove(inst)
            self.status[fam] = res
        self.insts.clear()
        return dict(self.status)

    def discard(self) -> None:
        """Undo without reading (a window that was never used, or SIGTERM)."""
        for _tracer, inst in list(self.insts.values()):
            self._remove(inst)
        self.insts.clear()

    def _remove(self, inst: Path) -> None:
        fd = self._held.pop(inst, None)
        if fd is not None:
            os.close(fd)
        try:
            (inst / "current_tracer").write_text("nop")  # releases the family's singleton
        except OSError:
            pass
        tracefs.quiesce_and_remove(inst)
