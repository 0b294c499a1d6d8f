"""Pressure snapshots: N traced requests per preset, kept together as one directory.

Layout of a snapshot directory:
    manifest.json            schema, created, label, source (in-process | URL), host, kernel,
                             versions, engine, presets, n, text, cpus, capabilities,
                             latency_tracers ({tracer: "available" | "not available" | ...}),
                             requests [{preset, index, request_id, wall_s, first_sound_s, dir}], complete
    <preset>/<i>/summary.json   the request's attachment summary (breakdown, findings, preset read
                                back, engine, wall_s, first_sound_s, segment_s, versions)
    <preset>/<i>/trace.zip      the request's attachment as the service built it

This module is the format only: `SnapshotWriter` writes one, `load_snapshot` reads one back for
tracing/diff.py and tracing/plots.py. The runners that make requests (in process, or against a
running launcher) and the CLI live in the wiring wing: app/snapshot_runs.py.

Latency tracers (irqsoff, preemptoff, wakeup*) are system-wide singletons the per-request window
does not drive; the manifest records whether the kernel has them so that two snapshots from
different kernels are not compared blindly. On kernels without them (this CI box) it says
"not available".
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tracing import snapshot_gpu, stats
from tracing.diff import METRICS, blocker_means, metric_values
from tracing.tracefs import LATENCY_TRACERS

SCHEMA = 1
MANIFEST = "manifest.json"
SUMMARY = "summary.json"
ATTACHMENT = "trace.zip"
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog. 今天天气很好，我们去公园散步吧。"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SnapshotError(RuntimeError):
    """A snapshot cannot be written or read (message names the path and what is wrong)."""


@dataclass
class Snapshot:
    path: Path
    manifest: dict
    samples: dict[str, list[dict]]  # preset -> request summaries, in request order

    @property
    def presets(self) -> list[str]:
        return list(self.samples)


# ------------------------------------------------------------------------------ writing ----
def latency_tracer_status(capabilities: dict | None, root: str | os.PathLike | None = None) -> dict:
    """{tracer: "available" | "not available"} from the probe's capabilities (any key holding a
    list of tracer names), else from <root>/available_tracers; "unknown" when neither says."""
    names = None
    for key in ("latency_tracers", "available_tracers", "tracers"):
        v = (capabilities or {}).get(key)
        if isinstance(v, dict):
            names = [k for k, ok in v.items() if ok]
            break
        if isinstance(v, (list, tuple)):
            names = list(v)
            break
    if names is None and root is not None:
        try:
            names = (Path(root) / "available_tracers").read_text().split()
        except OSError:
            names = None
    if names is None:
        return {t: "unknown" for t in LATENCY_TRACERS}
    return {t: ("available" if t in names else "not available") for t in LATENCY_TRACERS}


def _versions() -> dict:
    from importlib import metadata
    out = {"python": platform.python_version()}
    for pkg in ("torch", "gradio", "numpy", "scipy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def new_manifest(source: str, presets: list[str], n: int, text: str, label: str = "",
                 engine: str | None = None, capabilities: dict | None = None,
                 latency_tracers: dict | None = None) -> dict:
    return {"schema": SCHEMA, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "label": label, "source": source, "host": socket.gethostname(), "kernel": platform.release(),
            "versions": _versions(), "cpus": sorted(os.sched_getaffinity(0)), "engine": engine,
            "presets": list(presets), "n": int(n), "text": text, "capabilities": capabilities or {},
            "latency_tracers": latency_tracers or {t: "unknown" for t in LATENCY_TRACERS},
            "requests": [], "complete": False}


class SnapshotWriter:
    """Creates the directory (which must not exist, or be empty) and adds requests one by one.
    The manifest is rewritten after every request, so an interrupted run is still loadable
    (with complete=false)."""

    def __init__(self, dest: str | os.PathLike, manifest: dict):
        self.path = Path(dest)
        if self.path.exists() and any(self.path.iterdir()):
            raise SnapshotError(f"{self.path} exists and is not empty: choose a new snapshot directory.")
        for p in manifest.get("presets", []):
            if not _NAME_RE.fullmatch(p):
                raise SnapshotError(f"Preset name {p!r} cannot be a directory name in a snapshot.")
        self.path.mkdir(parents=True, exist_ok=True)
        self.manifest = manifest
        self._count: dict[str, int] = {}
        self._write_manifest()

    def add(self, preset: str, summary: dict, attachment: str | os.PathLike | None = None) -> Path:
        if not _NAME_RE.fullmatch(preset):
            raise SnapshotError(f"Preset name {preset!r} cannot be a directory name in a snapshot.")
        i = self._count.get(preset, 0)
        self._count[preset] = i + 1
        d = self.path / preset / str(i)
        d.mkdir(parents=True)
        (d / SUMMARY).write_text(json.dumps(summary, indent=1, default=str))
        if attachment:
            shutil.copyfile(attachment, d / ATTACHMENT)
        if self.manifest.get("engine") is None and summary.get("engine"):
            self.manifest["engine"] = summary["engine"]
        self.manifest["requests"].append({"preset": preset, "index": i, "request_id": summary.get("request_id"),
                                          "wall_s": summary.get("wall_s"),
                                          "first_sound_s": summary.get("first_sound_s"), "dir": f"{preset}/{i}"})
        self._write_manifest()
        return d

    def close(self) -> Path:
        self.manifest["complete"] = True
        self._write_manifest()
        return self.path

    def _write_manifest(self) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=1, default=str))
        os.replace(tmp, self.path / MANIFEST)


def summary_from_attachment(zip_path: str | os.PathLike) -> dict:
    """The summary.json inside a request's attachment (the one record of a request we keep)."""
    with zipfile.ZipFile(zip_path) as zf:
        return json.loads(zf.read("summary.json"))


# ------------------------------------------------------------------------------ reading ----
def load_snapshot(path: str | os.PathLike) -> Snapshot:
    p = Path(path)
    try:
        manifest = json.loads((p / MANIFEST).read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{p} is not a snapshot: no {MANIFEST}.") from None
    except ValueError as e:
        raise SnapshotError(f"{p / MANIFEST} is not valid JSON: {e}") from None
    if manifest.get("schema") != SCHEMA:
        raise SnapshotError(f"{p / MANIFEST}: schema {manifest.get('schema')!r}, expected {SCHEMA}.")
    samples: dict[str, list[dict]] = {name: [] for name in manifest.get("presets", [])}
    for r in manifest.get("requests", []):
        f = p / r["dir"] / SUMMARY
        try:
            samples.setdefault(r["preset"], []).append(json.loads(f.read_text()))
        except (OSError, ValueError) as e:
            raise SnapshotError(f"{f}: {e}") from None
    samples = {k: v for k, v in samples.items() if v}
    return Snapshot(p, manifest, samples)


# ------------------------------------------------------------------------------ summary ----
SUMMARY_HEAD = ["preset", "n", "wall p50 ms", "wall p95 ms", "run-queue p50 ms", "run-queue p95 ms",
                "blocked I/O p95 ms", "IRQ+softirq p95 ms", "lost events", "findings", "top blocker"]


def _ms(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v * 1000:.1f}"


def summary_head(snap: Snapshot) -> list[str]:
    """SUMMARY_HEAD, then the GPU share columns when the snapshot's requests have a device view
    (tracing/snapshot_gpu.py)."""
    return SUMMARY_HEAD + snapshot_gpu.head(snap.samples)


def summary_table(snap: Snapshot) -> list[list[str]]:
    """One row per preset under summary_head(snap)."""
    gpu = snapshot_gpu.has_device(snap.samples)
    rows = []
    for preset, ss in snap.samples.items():
        w = stats.summarize(metric_values(ss, "wall"))
        rq = stats.summarize(metric_values(ss, "runqueue_wait"))
        io = stats.summarize(metric_values(ss, "blocked_io"))
        irq = stats.summarize([a + b for a, b in zip(metric_values(ss, "irq"), metric_values(ss, "softirq"))])
        lost = sum(int(((s.get("breakdown") or {}).get("lost_events") or {}).get("total") or 0) for s in ss)
        nf = sum(len(s.get("findings") or []) for s in ss)
        bl = blocker_means(ss)
        top = next(iter(bl.items()), None)
        rows.append([preset, str(len(ss)), _ms(w["p50"]), _ms(w["p95"]), _ms(rq["p50"]), _ms(rq["p95"]),
                     _ms(io["p95"]), _ms(irq["p95"]), str(lost), str(nf),
                     f"{top[0]} {top[1] * 1000:.1f} ms/req" if top else "none"]
                    + (snapshot_gpu.cells(ss) if gpu else []))
    return rows


def format_summary(snap: Snapshot) -> str:
    m = snap.manifest
    lt = m.get("latency_tracers") or {}
    lines = [f"Snapshot {snap.path} ({m.get('label') or 'no label'}), {m.get('created')}",
             f"host {m.get('host')}, kernel {m.get('kernel')}, engine {m.get('engine')}, source {m.get('source')}, "
             f"N={m.get('n')} per preset" + ("" if m.get("complete") else " (INCOMPLETE)"),
             "latency tracers: " + (", ".join(f"{k} {v}" for k, v in lt.items()) or "unknown")]
    table = [summary_head(snap)] + summary_table(snap)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    return "\n".join(lines) + "\n"


__all__ = ["Snapshot", "SnapshotError", "SnapshotWriter", "load_snapshot", "new_manifest", "summary_head",
           "summary_table", "format_summary", "latency_tracer_status", "summary_from_attachment", "METRICS"]
