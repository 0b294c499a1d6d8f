"""Machine-wide knobs a preset moves off the synthesis CPUs (its `away` field), and back.

Interference that no per-thread setting of ours can outrank runs *on* the synthesis CPUs: hardware
IRQ handlers (and the softirq work they raise), unbound kworkers (write-back flushes run there),
and the reclaim / compaction / journal kernel threads. tuned's cpu-partitioning profile and rtla's
housekeeping options move them away; so does a preset with
    away = ["irqs", "workqueues", "kthreads"]
  - irqs:       /proc/irq/<n>/smp_affinity_list of every IRQ the kernel lets us move; managed IRQs
                (multi-queue devices: their file is read-only) and IRQs that refuse (EIO) stay,
                named in the read-back with why;
  - workqueues: /sys/devices/virtual/workqueue/cpumask (every unbound workqueue) and
                .../workqueue/writeback/cpumask (the write-back flushers);
  - kthreads:   the CPU affinity of kswapd*, kcompactd* and jbd2/* (per-CPU kernel threads
                cannot be moved and are not touched).
Each knob is one get/set/restore unit (rtla's osnoise_{get,set,restore}_cpus, tuned's
@command_get/@command_set). `Housekeeping` saves a knob's value before its first change (first
value wins) and restores in reverse order.

These outlive the process: an IRQ stays where we put it after we exit. So while anything is moved,
the saved values are also kept in a state file (STATE_DIR/knobs-<pid>-<start>.json), and a new
Housekeeping restores the files of owners that died without restoring (kill -9) before it moves
anything (`restore_stale`), the way tracing/tracefs.py removes a dead owner's instances.
"""
from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass

from .kernel import format_cpu_list, parse_kernel_cpu_list

IRQ_ROOT = "/proc/irq"
WQ_ROOT = "/sys/devices/virtual/workqueue"
STATE_DIR = "/run/itts-launcher"
KTHREAD_RE = re.compile(r"^(kswapd\d+|kcompactd\d+|jbd2/.+)$")
_REFUSED = (errno.EIO, errno.EINVAL, errno.ENOSPC, errno.EBUSY, errno.ENOENT)  # the kernel keeps this one


class KnobError(OSError):
    """A knob could not be set or restored; the message names it and why."""


@dataclass(frozen=True)
class Knob:
    """One machine-wide setting. `key` is stable across processes (the state file uses it)."""

    kind: str   # "irqs" | "workqueues" | "kthreads"
    key: str    # "irq/36", "workqueue/cpumask", "workqueue/writeback/cpumask", "kthread/47:<start>"
    label: str  # what the read-back shows ("36 virtio1-req.0", "kswapd0")

    # -- get / set / restore: values are CPU sets written in the knob's own format ------------
    def get(self) -> str:
        if self.kind == "kthreads":
            return format_cpu_list(os.sched_getaffinity(_kthread_pid(self.key)))
        with open(self._path()) as f:
            return f.read().strip()

    def set_cpus(self, cpus: frozenset[int]) -> None:
        if self.kind == "kthreads":
            os.sched_setaffinity(_kthread_pid(self.key), cpus)
        elif self.kind == "irqs":
            self._write(format_cpu_list(cpus))
        else:
            self._write(cpu_mask(cpus))

    def restore(self, saved: str) -> None:
        if self.kind == "kthreads":
            os.sched_setaffinity(_kthread_pid(self.key), parse_kernel_cpu_list(saved))
        else:
            self._write(saved)

    def _path(self) -> str:
        if self.kind == "irqs":
            return f"{IRQ_ROOT}/{self.key.split('/', 1)[1]}/smp_affinity_list"
        return f"{WQ_ROOT}/{self.key.split('/', 1)[1]}"

    def _write(self, value: str) -> None:
        with open(self._path(), "w") as f:
            f.write(value)


def cpu_mask(cpus) -> str:
    """{0, 1} -> "3"; comma-separated 32-bit words past 32 CPUs, as the kernel prints them."""
    v = sum(1 << c for c in cpus)
    words = []
    while True:
        words.append(v & 0xFFFFFFFF)
        v >>= 32
        if not v:
            break
    return ",".join([f"{words[-1]:x}"] + [f"{w:08x}" for w in reversed(words[:-1])])


def _kthread_pid(key: str) -> int:
    return int(key.split("/", 1)[1].split(":")[0])


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: with the pid, it names one process across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def discover(kinds) -> tuple[list[Knob], dict[str, str]]:
    """The knobs of `kinds` on this machine, and the ones left alone with why (key -> reason)."""
    knobs: list[Knob] = []
    left: dict[str, str] = {}
    if "irqs" in kinds and os.path.isdir(IRQ_ROOT):
        for n in sorted((d for d in os.listdir(IRQ_ROOT) if d.isdigit()), key=int):
            path = f"{IRQ_ROOT}/{n}/smp_affinity_list"
            if not os.path.exists(path):
                continue
            names = [d for d in os.listdir(f"{IRQ_ROOT}/{n}") if os.path.isdir(f"{IRQ_ROOT}/{n}/{d}")]
            label = f"{n} {names[0]}" if names else n
            if not os.stat(path).st_mode & 0o222:
                left[f"irq/{n}"] = f"{label}: managed by the kernel (read-only affinity)"
                continue
            knobs.append(Knob("irqs", f"irq/{n}", label))
    if "workqueues" in kinds:
        for rel in ("cpumask", "writeback/cpumask"):
            if os.path.exists(f"{WQ_ROOT}/{rel}"):
                knobs.append(Knob("workqueues", f"workqueue/{rel}", f"workqueue {rel}"))
    if "kthreads" in kinds:
        for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if KTHREAD_RE.match(comm):
                knobs.append(Knob("kthreads", f"kthread/{pid}:{_start_time(pid)}", comm))
    return knobs, left


class Housekeeping:
    """What `away` has moved, with the values to put back. Not thread-safe: the Tuner's lock."""

    def __init__(self, state_dir: str | None = STATE_DIR, owner_pid: int | None = None):
        self.state_dir = state_dir
        self.pid = owner_pid or os.getpid()
        self.kinds: frozenset[str] = frozenset()
        self.cpus: frozenset[int] = frozenset()
        self.saved: dict[str, tuple[Knob, str]] = {}  # key -> (knob, value before our first change)
        self.left: dict[str, str] = {}  # key -> why it stays where it is

    # -- apply / restore ------------------------------------------------------------------------
    def apply(self, kinds, cpus) -> None:
        """Move the knobs of `kinds` to `cpus` (the CPUs the synthesis does not use); knobs of
        kinds no longer asked for go back. Empty kinds or cpus: everything goes back. On a
        failure everything goes back and KnobError says what failed."""
        kinds, cpus = frozenset(kinds), frozenset(cpus)
        if (kinds, cpus) == (self.kinds, self.cpus):
            return
        self.restore()
        if not kinds:
            return
        if not cpus:
            self.kinds, self.cpus = kinds, cpus
            self.left = {k: "no CPU is left outside the synthesis CPUs" for k in sorted(kinds)}
            return
        if os.geteuid() != 0:  # IRQs and workqueues need CAP_SYS_ADMIN; nothing is moved half-way
            raise KnobError(errno.EPERM, "moving IRQs, workqueues and kernel threads off the synthesis CPUs "
                                         "needs root")
        knobs, self.left = discover(kinds)
        try:
            for knob in knobs:
                self._move(knob, cpus)
        except KnobError:
            problems = self.restore()
            if problems:
                raise KnobError(errno.EIO, "; ".join(problems)) from None
            raise
        self.kinds, self.cpus = kinds, cpus

    def _move(self, knob: Knob, cpus: frozenset[int]) -> None:
        try:
            before = knob.get()
        except (ProcessLookupError, FileNotFoundError):
            return  # a kernel thread or IRQ that went away meanwhile
        except OSError as e:
            self.left[knob.key] = f"{knob.label}: unreadable ({e.strerror})"
            return
        self.saved.setdefault(knob.key, (knob, before))
        try:
            self._save_state()  # on disk before the change: a kill -9 right after still gets it back
        except OSError as e:
            self.saved.pop(knob.key, None)
            raise KnobError(e.errno, f"cannot keep the values to restore in {self.state_dir} ({e.strerror}), "
                                     "so nothing machine-wide is moved") from None
        try:
            knob.set_cpus(cpus)
        except (ProcessLookupError, FileNotFoundError):
            self.saved.pop(knob.key, None)
        except OSError as e:
            self.saved.pop(knob.key, None)
            if e.errno in (errno.EPERM, errno.EACCES):
                raise KnobError(e.errno, f"moving {knob.label} off the synthesis CPUs was refused: needs root "
                                         f"(CAP_SYS_ADMIN for IRQs and workqueues, CAP_SYS_NICE for kernel "
                                         f"threads)") from None
            if e.errno in _REFUSED:  # e.g. an IRQ chip that cannot route there, a per-CPU kthread
                self.left[knob.key] = f"{knob.label}: the kernel refused ({e.strerror})"
            else:
                raise KnobError(e.errno, f"moving {knob.label}: {e.strerror}") from None

    def restore(self) -> list[str]:
        """Put every saved knob back, last moved first. Returns what could not be (a failed step
        is reported and the rest still go back)."""
        problems = []
        for key, (knob, value) in reversed(list(self.saved.items())):
            try:
                knob.restore(value)
            except (ProcessLookupError, FileNotFoundError):
                pass  # gone: nothing to restore
            except OSError as e:
                problems.append(f"{knob.label} back to {value}: {e.strerror}")
        self.saved.clear()
        self.kinds, self.cpus, self.left = frozenset(), frozenset(), {}
        try:
            self._save_state()
        except OSError as e:
            problems.append(f"removing the state file: {e.strerror}")
        return problems

    def readback(self) -> dict:
        """What is moved now, to which CPUs, and what was left where it is (with why)."""
        moved: dict[str, list[str]] = {}
        for knob, _ in self.saved.values():
            moved.setdefault(knob.kind, []).append(knob.label)
        return {"kinds": sorted(self.kinds), "cpus": format_cpu_list(self.cpus), "moved": moved,
                "left": dict(self.left)}

    # -- the state file (crash safety) ---------------------------------------------------------
    def _state_path(self) -> str | None:
        if not self.state_dir:
            return None
        return os.path.join(self.state_dir, f"knobs-{self.pid}-{_start_time(self.pid)}.json")

    def _save_state(self) -> None:
        path = self._state_path()
        if path is None:
            return
        if not self.saved:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        rows = [{"kind": k.kind, "key": k.key, "label": k.label, "value": v} for k, v in self.saved.values()]
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rows, f)
        os.replace(tmp, path)

    def restore_stale(self) -> list[str]:
        """Restore the knobs of state files whose owner is gone; returns what was restored."""
        try:
            names = sorted(os.listdir(self.state_dir)) if self.state_dir else []
        except OSError:  # none yet, or not ours to read (a user who may not move knobs anyway)
            return []
        done = []
        for name in names:
            m = re.fullmatch(r"knobs-(\d+)-(\d+|None)\.json", name)
            if not m or _start_time(int(m.group(1))) == m.group(2):
                continue  # not ours, or its owner still runs
            path = os.path.join(self.state_dir, name)
            try:
                with open(path) as f:
                    rows = json.load(f)
            except (OSError, ValueError):
                continue
            for r in reversed(rows):
                knob = Knob(r["kind"], r["key"], r["label"])
                if knob.kind == "kthreads" and _start_time(_kthread_pid(knob.key)) != knob.key.split(":")[1]:
                    continue  # that kernel thread is gone (its pid may be another task's now)
                try:
                    knob.restore(r["value"])
                    done.append(f"{knob.label} -> {r['value']}")
                except OSError:
                    pass
            os.unlink(path)
        return done
