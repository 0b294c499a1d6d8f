"""The GPU-local preset: synthesis pinned to the CPUs that the serving GPU's PCI device calls local.

On a multi-socket (or multi-die) machine the thread that feeds a GPU should run on the CPUs of the
GPU's own NUMA node: its launches and copies then cross no inter-socket link, and its memory is
local. The kernel says which CPUs those are, per PCI device:

    /sys/bus/pci/devices/<domain:bus:dev.fn>/local_cpulist   e.g. "0-15,32-47"
    /sys/bus/pci/devices/<domain:bus:dev.fn>/numa_node       e.g. "0" (-1: the platform does not say)

`gpu_local(bus_id, ...)` reads them (under `sysfs_root`, so a test can lay out a fake /sys) and
builds the preset, computed at launch once the engine knows its CUDA device; the wiring maps that
device to its PCI bus id (torch's device properties or nvidia-smi). Where there is no GPU, or sysfs
does not say, the preset is refused with that reason (`GpuLocal.reason`), which the Scheduling tab
and a request for it show. `offer(presets, gl)` puts either into a PresetSet.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .presets import Preset, parse_cpu_list

NAME = "gpu-local"
_BDF = re.compile(r"^(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")


@dataclass
class GpuLocal:
    preset: Preset | None  # None: refused
    reason: str | None  # why it is refused
    source: str  # where the CPUs came from (the sysfs file), or ""
    bdf: str | None = None
    cpus: tuple = ()
    numa_node: int | None = None
    bus_from: str = ""  # how the GPU's PCI bus id was found (torch, nvidia-smi)

    def line(self) -> str:
        """One sentence for the Scheduling tab."""
        if self.preset is None:
            return f"**{NAME}**: not offered: {self.reason}"
        node = f"NUMA node {self.numa_node}" if self.numa_node is not None else "NUMA node unknown"
        how = f"; bus id from {self.bus_from}" if self.bus_from else ""
        return f"**{NAME}**: CPUs {self.preset.cpus} ({node}) of GPU {self.bdf}, read at launch from `{self.source}`{how}"


def normalize_bdf(bus_id: str) -> str:
    """A PCI bus id as CUDA / nvidia-smi print it ("00000000:3B:00.0") -> sysfs form ("0000:3b:00.0")."""
    m = _BDF.match(str(bus_id).strip())
    if not m:
        raise ValueError(f"not a PCI bus id: {bus_id!r}")
    dom = int(m.group(1) or "0", 16)
    return f"{dom:04x}:{m.group(2).lower()}:{m.group(3).lower()}.{m.group(4)}"


def gpu_local(bus_id: str | None, sysfs_root: str = "/sys", allowed_cpus=None, no_gpu_reason: str = "") -> GpuLocal:
    """The preset for the GPU at `bus_id` (None: no GPU, refused with no_gpu_reason). allowed_cpus:
    the CPUs this process may use (its launch affinity): the preset keeps the local ones among them."""
    if not bus_id:
        return GpuLocal(None, no_gpu_reason or "no GPU serves this launcher", "")
    try:
        bdf = normalize_bdf(bus_id)
    except ValueError as e:
        return GpuLocal(None, str(e), "")
    dev = Path(sysfs_root) / "bus" / "pci" / "devices" / bdf
    src = dev / "local_cpulist"
    try:
        local = parse_cpu_list(src.read_text().strip())
    except FileNotFoundError:
        return GpuLocal(None, f"{src} does not exist (is {bdf} the GPU's PCI address?)", str(src), bdf)
    except (OSError, ValueError) as e:
        return GpuLocal(None, f"cannot read {src}: {e}", str(src), bdf)
    node = None
    try:
        n = int((dev / "numa_node").read_text().strip())
        node = n if n >= 0 else None
    except (OSError, ValueError):
        pass
    cpus = sorted(local if allowed_cpus is None else local & frozenset(allowed_cpus))
    if not cpus:
        return GpuLocal(None, f"none of GPU {bdf}'s local CPUs ({_fmt(local)}) are allowed for this process "
                              f"({_fmt(allowed_cpus)})", str(src), bdf, (), node)
    spec = _fmt(cpus)
    where = f"NUMA node {node}" if node is not None else "its NUMA node unknown"
    p = Preset(NAME, cpus=spec, description=f"Synthesis pinned to CPUs {spec}, local to the serving GPU {bdf} "
               f"({where}); computed at launch from {src}.", source=str(src))
    return GpuLocal(p, None, str(src), bdf, tuple(cpus), node)


def offer(presets, gl: GpuLocal) -> None:
    """Add the preset to a PresetSet (offered unless the operator's `allowed` list leaves it out),
    or record the refusal (presets.refused) so that asking for it says why."""
    presets.refused.pop(NAME, None)
    if gl.preset is None:
        presets.pop(NAME, None)
        presets.refused[NAME] = gl.reason
        if NAME in presets.allowed:
            presets.allowed.remove(NAME)
        return
    presets[NAME] = gl.preset
    if not presets.restricted and NAME not in presets.allowed:
        presets.allowed.append(NAME)


def _fmt(cpus) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    out, run = [], []
    for c in sorted(cpus or ()):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
