"""Pressure snapshots: N traced requests per preset, kept together as one directory.

Layout of a snapshot directory:
    manifest.json            schema, created, label, source (in-process | URL), host, kernel,
                             versions, engine, presets, n, text, cpus, capabilities,
                             latency_tracers ({tracer: "available" | "not available" | ...}),
                             requests [{preset, index, request_id, wall_s, dir}], complete
    <preset>/<i>/summary.json   the request's attachment summary (breakdown, findings, preset read
                                back, engine, wall_s, versions)
    <preset>/<i>/trace.zip      the request's attachment as the service built it

Runners (`run_in_process`, `run_remote`) produce one; `load_snapshot` reads one back for
tracing/diff.py and tracing/plots.py. Requests are interleaved across presets (round-robin) so a
slow drift of the machine's load hits every preset alike rather than the last one.

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
from typing import Callable

from tracing import stats
from tracing.diff import METRICS, blocker_means, metric_values
from tracing.tracefs import LATENCY_TRACERS

SCHEMA = 1
MANIFEST = "manifest.json"
SUMMARY = "summary.json"
ATTACHMENT = "trace.zip"
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog. 今天天气很好，我们去公园散步吧。"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Progress = Callable[[float, str], None]


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
                                          "wall_s": summary.get("wall_s"), "dir": f"{preset}/{i}"})
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


def summary_table(snap: Snapshot) -> list[list[str]]:
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
                     f"{top[0]} {top[1] * 1000:.1f} ms/req" if top else "none"])
    return rows


def format_summary(snap: Snapshot) -> str:
    m = snap.manifest
    lt = m.get("latency_tracers") or {}
    lines = [f"Snapshot {snap.path} ({m.get('label') or 'no label'}), {m.get('created')}",
             f"host {m.get('host')}, kernel {m.get('kernel')}, engine {m.get('engine')}, source {m.get('source')}, "
             f"N={m.get('n')} per preset" + ("" if m.get("complete") else " (INCOMPLETE)"),
             "latency tracers: " + (", ".join(f"{k} {v}" for k, v in lt.items()) or "unknown")]
    table = [SUMMARY_HEAD] + summary_table(snap)
    widths = [max(len(r[i]) for r in table) for i in range(len(SUMMARY_HEAD))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ runners ----
def _order(presets: list[str], n: int) -> list[tuple[str, int]]:
    return [(p, i) for i in range(n) for p in presets]


def run_in_process(dest, presets: list[str], n: int, text: str = DEFAULT_TEXT, engine: str = "auto",
                   model_dir: str = "./checkpoints", presets_file: str | None = None, label: str = "",
                   warmup: bool = True, workdir: str | None = None, progress: Progress | None = None) -> Snapshot:
    """Build engine, tuner and service in this process and run n traced requests per preset
    (preset scope: this request only). Clips are written to a temporary store (workdir) and
    removed; the snapshot keeps each request's summary and attachment."""
    # Imported here, not at module level: tracing/ must not import models/ (ARCHITECTURE.md); the
    # runner is the one place that wires the parts, like webui.py does.
    import tempfile
    from models.registry import create_engine
    from service import Service
    from store import ClipStore
    from tracing.tracefs import find_tracefs, probe
    from tuning.apply import Tuner
    from tuning.presets import load_presets

    n = _check_n(n)
    preset_table = load_presets(presets_file)
    unknown = [p for p in presets if p not in preset_table]
    if unknown:
        raise SnapshotError(f"Unknown preset(s) {', '.join(unknown)}; available: {', '.join(preset_table)}.")
    root = find_tracefs(None)
    caps = probe(root).to_dict()
    eng = create_engine(engine, model_dir=model_dir)
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="itts-snapshot-")) if own_tmp else Path(workdir)
    svc = Service(eng, Tuner(preset_table), ClipStore(work, max_clips=10_000, max_bytes=1 << 40),
                  tracing_enabled=True, trace_root=root)
    try:
        return run_service(svc, dest, presets, n, text, label=label, source="in-process", capabilities=caps,
                           latency_tracers=latency_tracer_status(caps, root), warmup=warmup, progress=progress)
    finally:
        svc.close()
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def run_service(svc, dest, presets: list[str], n: int, text: str = DEFAULT_TEXT, label: str = "",
                source: str = "in-process", capabilities: dict | None = None, latency_tracers: dict | None = None,
                warmup: bool = True, progress: Progress | None = None) -> Snapshot:
    """Run the snapshot on an existing service.Service (the web UI's, or run_in_process's)."""
    from models.base import NullStages, SynthesisRequest  # lazily: see run_in_process

    n = _check_n(n)
    unknown = [p for p in presets if p not in svc.tuner.presets]
    if unknown:
        raise SnapshotError(f"Unknown preset(s) {', '.join(unknown)}; available: {', '.join(svc.tuner.presets)}.")
    writer = SnapshotWriter(dest, new_manifest(source, presets, n, text, label, engine=svc.engine.name,
                                               capabilities=capabilities, latency_tracers=latency_tracers))
    if warmup:  # first-request costs (library load, torch kernels) are not what we measure
        if progress:
            progress(0.0, "warm-up")
        svc.engine.synthesize(SynthesisRequest(text=text), NullStages())
    order = _order(presets, n)
    for k, (p, i) in enumerate(order):
        if progress:
            progress(k / len(order), f"{p} {i + 1}/{n}")
        rec = svc.synthesize(SynthesisRequest(text=text), preset=p, scope="request", trace=True)
        summary = summary_from_attachment(rec.attachment_path)
        summary["preset_requested"] = p
        writer.add(p, summary, rec.attachment_path)
    writer.close()
    return load_snapshot(dest)


def run_remote(dest, url: str, presets: list[str], n: int, text: str = DEFAULT_TEXT, label: str = "",
               warmup: bool = True, progress: Progress | None = None) -> Snapshot:
    """Drive a running launcher through its API (/synthesize with preset=<name>, scope "this
    request only") and copy each clip's attachment (the 9th output) into the snapshot."""
    from urllib.parse import urlparse

    from gradio_client import Client

    n = _check_n(n)
    client = Client(url, verbose=False)
    host = urlparse(url).hostname or ""
    local = host in ("127.0.0.1", "localhost", "::1")
    # the server's kernel is ours only when it runs on this host
    lt = latency_tracer_status(None, "/sys/kernel/tracing") if local else {t: "unknown (remote)" for t in LATENCY_TRACERS}
    man = new_manifest(url, presets, n, text, label, latency_tracers=lt)
    if not local:
        man["host"] = host
        man["kernel"] = None
    writer = SnapshotWriter(dest, man)
    if warmup:
        if progress:
            progress(0.0, "warm-up")
        client.predict(text=text, preset=presets[0], scope="this request only", trace=False, api_name="/synthesize")
    order = _order(presets, n)
    for k, (p, i) in enumerate(order):
        if progress:
            progress(k / len(order), f"{p} {i + 1}/{n}")
        out = client.predict(text=text, preset=p, scope="this request only", trace=True, api_name="/synthesize")
        attachment = out[8]
        summary = summary_from_attachment(attachment)
        summary["preset_requested"] = p
        if not local and k == 0:  # the server's own kernel and versions, from its attachment
            writer.manifest["kernel"] = (summary.get("versions") or {}).get("kernel")
            writer.manifest["versions"] = summary.get("versions") or {}
        writer.add(p, summary, attachment)
    writer.close()
    return load_snapshot(dest)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
        raise SnapshotError(f"N must be an integer between 1 and 1000, got {n!r}.")
    return n


__all__ = ["Snapshot", "SnapshotError", "SnapshotWriter", "load_snapshot", "new_manifest", "run_in_process",
           "run_remote", "run_service", "summary_table", "format_summary", "latency_tracer_status", "METRICS"]


# ---------------------------------------------------------------------------------- CLI ----
def register_cli(sub) -> None:
    """Add the `snapshot` and `diff` subcommands to `python -m tracing` (an argparse subparsers
    object); each sets `func(args) -> exit code`."""
    import argparse

    from tracing import stats as _st

    s = sub.add_parser("snapshot", help="run N traced requests per preset and store them as one snapshot",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("out", help="snapshot directory to create (must not exist or be empty)")
    s.add_argument("--presets", default="default,pinned", help="comma-separated preset names")
    s.add_argument("-n", type=int, default=5, help="requests per preset (N >= 5 lets the diff resolve p < 0.05 "
                                                   "with one overlap; N = 3 needs complete separation)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--url", help="drive a running launcher, e.g. http://127.0.0.1:7860/")
    where.add_argument("--in-process", action="store_true", help="build engine/tuner/service here (the default)")
    s.add_argument("--engine", default="auto", help="in-process engine: auto | builtin | indextts2 | replica")
    s.add_argument("--model-dir", default="./checkpoints", help="in-process: IndexTTS2 checkpoints")
    s.add_argument("--presets-file", default=None, help="in-process: operator presets TOML")
    s.add_argument("--text", default=DEFAULT_TEXT, help="text every request speaks")
    s.add_argument("--label", default="", help="free text kept in the manifest (e.g. 'before upgrade')")
    s.add_argument("--no-warmup", action="store_true", help="skip the untraced warm-up request")
    s.add_argument("--no-plot", action="store_true", help="do not write <out>/summary.png")
    s.set_defaults(func=_cli_snapshot)

    d = sub.add_parser("diff", help="compare two snapshots; exit 1 on a significant regression",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("old")
    d.add_argument("new")
    d.add_argument("--alpha", type=float, default=_st.ALPHA, help="one-sided Mann-Whitney U significance level")
    d.add_argument("--min-ratio", type=float, default=_st.MIN_RATIO, help="minimum ratio of medians new/old")
    d.add_argument("--min-abs-ms", type=float, default=_st.MIN_ABS_S * 1000, help="minimum median difference, ms")
    d.add_argument("--plot", default=None, help="write the diff image here (PNG)")
    d.add_argument("--json", default=None, help="write the diff rows here (JSON)")
    d.set_defaults(func=_cli_diff)


def _progress(f: float, desc: str) -> None:
    import sys
    print(f"[{f * 100:3.0f}%] {desc}", file=sys.stderr, flush=True)


def _cli_snapshot(args) -> int:
    import sys
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if not presets:
        print("error: --presets is empty", file=sys.stderr)
        return 2
    try:
        if args.url:
            snap = run_remote(args.out, args.url, presets, args.n, text=args.text, label=args.label,
                              warmup=not args.no_warmup, progress=_progress)
        else:
            snap = run_in_process(args.out, presets, args.n, text=args.text, engine=args.engine,
                                  model_dir=args.model_dir, presets_file=args.presets_file, label=args.label,
                                  warmup=not args.no_warmup, progress=_progress)
    except SnapshotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.no_plot:
        from tracing.plots import summary_png
        (snap.path / "summary.png").write_bytes(summary_png(snap))
    print(format_summary(snap), end="")
    return 0


def _cli_diff(args) -> int:
    import sys

    from tracing import diff as D
    try:
        old, new = load_snapshot(args.old), load_snapshot(args.new)
    except SnapshotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    r = D.diff(old, new, alpha=args.alpha, min_ratio=args.min_ratio, min_abs=args.min_abs_ms / 1000)
    print(D.format_diff(r), end="")
    if args.plot:
        from tracing.plots import diff_png
        Path(args.plot).write_bytes(diff_png(old, new, r))
    if args.json:
        Path(args.json).write_text(json.dumps(r.to_dict(), indent=1, default=str))
    return 1 if r.has_regression else 0
