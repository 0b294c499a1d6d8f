"""Pressure snapshot runs: N traced requests per preset through the real service, stored in the
snapshot format of tracing/snapshot.py, and the `python -m app snapshot | diff` commands.

Two runners: `run_in_process` builds engine, tuner and service here; `run_remote` drives a
running launcher through its API. Requests are interleaved across presets (round-robin) so a slow
drift of the machine's load hits every preset alike rather than the last one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from app.access import TOKEN_ENV, TOKEN_HEADER
from app.periodic import IdleGate, metrics_busy, snapshot_into_series
from app.service import Service
from app.store import ClipStore
from models import limits
from models.base import NullStages, SynthesisRequest
from tracing import diff as D
from tracing import stats
from tracing.snapshot import (DEFAULT_TEXT, Snapshot, SnapshotError, SnapshotWriter, format_summary,
                              latency_tracer_status, load_snapshot, new_manifest, summary_from_attachment)
from tracing.series import DEFAULT_KEEP, DIFF_FILE, Series
from tracing.tracefs import LATENCY_TRACERS, find_tracefs, probe
from tuning.apply import Tuner
from tuning.presets import load_presets

Progress = Callable[[float, str], None]
DEFAULT_N = 20  # docs/snapshots.md "What N detects": the smallest N that catches the stress-ng tail


def _order(presets: list[str], n: int) -> list[tuple[str, int]]:
    return [(p, i) for i in range(n) for p in presets]


def plan(presets: list[str], n, max_n: int | None = None) -> tuple[list[str], int]:
    """The presets to run (a name repeated counts once, in first-seen order) and N, checked
    against models.limits: N per preset and the total presets x N. SnapshotError otherwise."""
    n = _check_n(n, max_n)
    folded = list(dict.fromkeys(presets))
    if not folded:
        raise SnapshotError("Pick at least one preset.")
    if len(folded) * n > limits.MAX_SNAPSHOT_REQUESTS:
        raise SnapshotError(f"{len(folded)} presets x N={n} is {len(folded) * n} requests; the limit is "
                            f"{limits.MAX_SNAPSHOT_REQUESTS} per snapshot. Use fewer presets or a smaller N.")
    return folded, n


def run_in_process(dest, presets: list[str], n: int, text: str = DEFAULT_TEXT, engine: str = "auto",
                   model_dir: str = "./checkpoints", presets_file: str | None = None, label: str = "",
                   warmup: bool = True, workdir: str | None = None, progress: Progress | None = None) -> Snapshot:
    """Build engine, tuner and service in this process and run n traced requests per preset
    (preset scope: this request only). Clips are written to a temporary store (workdir) and
    removed; the snapshot keeps each request's summary and attachment."""
    # Imported here: building an engine pulls in torch, which `diff` and `--url` do not need.
    from models.registry import create_engine

    presets, n = plan(presets, n, max_n=1000)  # the CLI's own N limit; the UI's is MAX_SNAPSHOT_N
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
                warmup: bool = True, progress: Progress | None = None, gate=None) -> Snapshot:
    """Run the snapshot on an existing app.service.Service (the web UI's, or run_in_process's).
    gate: an app.periodic.IdleGate whose wait() runs before each request (probe only when idle);
    what it waited is kept in the manifest (`idle`). Its requests are not kept as clips
    (history=False): a snapshot never pushes the user's clips out of retention. A snapshot that
    stops half-way is removed, not left incomplete."""
    presets, n = plan(presets, n, max_n=1000)
    unknown = [p for p in presets if p not in svc.tuner.presets]
    if unknown:
        raise SnapshotError(f"Unknown preset(s) {', '.join(unknown)}; available: {', '.join(svc.tuner.presets)}.")
    SynthesisRequest(text=text).validate()  # bad text: refused before anything is created
    existed = Path(dest).exists()
    writer = SnapshotWriter(dest, new_manifest(source, presets, n, text, label, engine=svc.engine.name,
                                               capabilities=capabilities, latency_tracers=latency_tracers))
    try:
        if warmup:  # first-request costs (library load, torch kernels) are not what we measure
            if progress:
                progress(0.0, "warm-up")
            _wait(gate, writer)
            svc.engine.synthesize(SynthesisRequest(text=text), NullStages())
        order = _order(presets, n)
        for k, (p, i) in enumerate(order):
            if progress:
                progress(k / len(order), f"{p} {i + 1}/{n}")
            _wait(gate, writer)
            rec = svc.synthesize(SynthesisRequest(text=text), preset=p, scope="request", trace=True, history=False)
            try:
                zip_path = svc.attachment(rec)  # the snapshot keeps each request's attachment
                summary = summary_from_attachment(zip_path)
                summary["preset_requested"] = p
                writer.add(p, summary, zip_path)
            finally:
                svc.store.discard(rec.id)
        writer.close()
    except BaseException:
        if not existed:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return load_snapshot(dest)


def run_remote(dest, url: str, presets: list[str], n: int, text: str = DEFAULT_TEXT, label: str = "",
               warmup: bool = True, progress: Progress | None = None, gate=None) -> Snapshot:
    """Drive a running launcher through its API (/synthesize with preset=<name>, scope "this
    request only") and copy each clip's attachment (the 9th output) into the snapshot. gate: as
    for run_service (app.periodic.metrics_busy reads the launcher's busy state)."""
    from urllib.parse import urlparse

    from gradio_client import Client

    presets, n = plan(presets, n, max_n=1000)
    # the attachment and request-scoped presets are operator actions (app/access.py)
    token = os.environ.get(TOKEN_ENV)
    client = Client(url, verbose=False, headers={TOKEN_HEADER: token} if token else None)
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
        _wait(gate, writer)
        client.predict(text=text, preset=presets[0], scope="this request only", trace=False, api_name="/synthesize")
    order = _order(presets, n)
    for k, (p, i) in enumerate(order):
        if progress:
            progress(k / len(order), f"{p} {i + 1}/{n}")
        _wait(gate, writer)
        out = client.predict(text=text, preset=p, scope="this request only", trace=True, api_name="/synthesize")
        attachment = out[8]
        if not attachment:
            raise SnapshotError(f"{url} hands out no trace attachments to this client (an operator action): "
                                f"set {TOKEN_ENV} to its operator token, or run it with --i-know-this-is-open.")
        summary = summary_from_attachment(attachment)
        summary["preset_requested"] = p
        if not local and k == 0:  # the server's own kernel and versions, from its attachment
            writer.manifest["kernel"] = (summary.get("versions") or {}).get("kernel")
            writer.manifest["versions"] = summary.get("versions") or {}
        writer.add(p, summary, attachment)
    writer.close()
    return load_snapshot(dest)


def _wait(gate, writer: SnapshotWriter) -> None:
    if gate is not None:
        gate.wait()
        writer.manifest["idle"] = {**gate.to_dict(), "note": gate.note()}


def _check_n(n, max_n: int | None = None) -> int:
    max_n = max_n or limits.MAX_SNAPSHOT_N
    if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or not 1 <= n <= max_n:
        raise SnapshotError(f"N must be a whole number between 1 and {max_n}, got {n!r}.")
    return int(n)


# ---------------------------------------------------------------------------------- CLI ----
def register_cli(sub) -> None:
    """Add the `snapshot` and `diff` subcommands to `python -m app` (an argparse subparsers
    object); each sets `func(args) -> exit code`."""
    s = sub.add_parser("snapshot", help="run N traced requests per preset and store them as one snapshot",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("out", nargs="?", help="snapshot directory to create (must not exist or be empty); "
                                          "with --series: leave out (a new directory of the series)")
    s.add_argument("--presets", default="default,pinned", help="comma-separated preset names")
    s.add_argument("-n", type=int, default=DEFAULT_N,
                   help="requests per preset (docs/snapshots.md, 'What N detects': N = 20 catches a sustained 3x "
                        "CPU-pressure stall every time and a stall in one request of four about half the time)")
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
    per = s.add_argument_group("periodic (a systemd timer runs this; docs/production.md)")
    per.add_argument("--series", default=None,
                     help="keep the snapshot in this series directory (the launcher's --snapshot-series), "
                          "diff it against the series' pinned baseline, exit 1 on a regression")
    per.add_argument("--keep", type=int, default=DEFAULT_KEEP, help="--series: snapshots kept (baseline included)")
    per.add_argument("--pin", action="store_true", help="--series: make this snapshot the new baseline")
    per.add_argument("--idle-settle-s", type=float, default=0.5,
                     help="probe only after the service was idle this long (--url: read from its /metrics)")
    per.add_argument("--idle-timeout-s", type=float, default=600.0,
                     help="give up (exit 2, nothing kept) when the service stays busy this long")
    _diff_gate_args(per)
    s.set_defaults(func=_cli_snapshot)

    d = sub.add_parser("diff", help="compare two snapshots; exit 1 on a significant regression",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("old")
    d.add_argument("new")
    d.add_argument("--alpha", type=float, default=stats.ALPHA, help="one-sided Mann-Whitney U significance level")
    d.add_argument("--min-ratio", type=float, default=stats.MIN_RATIO, help="minimum ratio of medians new/old")
    d.add_argument("--min-abs-ms", type=float, default=stats.MIN_ABS_S * 1000, help="minimum median difference, ms")
    _diff_gate_args(d)
    d.add_argument("--plot", default=None, help="write the diff image here (PNG)")
    d.add_argument("--json", default=None, help="write the diff rows here (JSON)")
    d.set_defaults(func=_cli_diff)


def _diff_gate_args(p) -> None:
    p.add_argument("--tail-metrics", default=",".join(D.TAIL_METRICS),
                   help="metrics whose tail is tested (NEW above OLD's p95); '' turns the tail test off")
    p.add_argument("--tail-min-ratio", type=float, default=stats.TAIL_MIN_RATIO, help="minimum ratio of p95 new/old")
    p.add_argument("--tail-min-ms", type=float, default=stats.TAIL_MIN_ABS_S * 1000, help="minimum p95 difference, ms")
    p.add_argument("--gate-blocker-ms", type=float, default=None,
                   help="also fail on a blocker task that appeared and holds our CPU >= this many ms per "
                        "request; unset, blockers explain a regression and do not decide one")


def _diff_kw(args) -> dict:
    kw = {"tail_metrics": tuple(m.strip() for m in args.tail_metrics.split(",") if m.strip()),
          "tail_min_ratio": args.tail_min_ratio, "tail_min_abs": args.tail_min_ms / 1000,
          "blocker_gate_s": None if args.gate_blocker_ms is None else args.gate_blocker_ms / 1000}
    for k in ("alpha", "min_ratio"):
        if hasattr(args, k):
            kw[k] = getattr(args, k)
    if hasattr(args, "min_abs_ms"):
        kw["min_abs"] = args.min_abs_ms / 1000
    bad = [m for m in kw["tail_metrics"] if m not in D.METRICS]
    if bad:
        raise SnapshotError(f"Unknown --tail-metrics {', '.join(bad)}; known: {', '.join(D.METRICS)}.")
    return kw


def _progress(f: float, desc: str) -> None:
    print(f"[{f * 100:3.0f}%] {desc}", file=sys.stderr, flush=True)


def _cli_snapshot(args) -> int:
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if not presets:
        print("error: --presets is empty", file=sys.stderr)
        return 2
    if bool(args.out) == bool(args.series):
        print("error: give a snapshot directory or --series DIR (not both)", file=sys.stderr)
        return 2
    gate = None
    if args.url:
        gate = IdleGate(metrics_busy(args.url), settle_s=args.idle_settle_s, timeout_s=args.idle_timeout_s)

    def run(dest):
        if args.url:
            return run_remote(dest, args.url, presets, args.n, text=args.text, label=args.label,
                              warmup=not args.no_warmup, progress=_progress, gate=gate)
        return run_in_process(dest, presets, args.n, text=args.text, engine=args.engine,
                              model_dir=args.model_dir, presets_file=args.presets_file, label=args.label,
                              warmup=not args.no_warmup, progress=_progress)

    try:
        if not args.series:
            snap = run(args.out)
        else:
            series = Series(args.series, keep=args.keep)
            entry = snapshot_into_series(series, run, pin=args.pin, **_diff_kw(args))
            snap = load_snapshot(series.path / entry["name"])
    except SnapshotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # launcher down, request refused...: 2, never 1 (1 means "regression")
        print(f"error: the snapshot failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if not args.no_plot:
        from tracing.plots import summary_png
        (snap.path / "summary.png").write_bytes(summary_png(snap))
    print(format_summary(snap), end="")
    if gate is not None:
        print(gate.note())
    if not args.series:
        return 0
    if entry["verdict"] is None:
        print(f"Pinned as the baseline of {args.series}.")
        return 0
    print(f"Against the baseline {entry['verdict']['baseline']}:")
    print((snap.path / DIFF_FILE).read_text(), end="")
    return 1 if entry["verdict"]["has_regression"] else 0


def _cli_diff(args) -> int:
    try:
        old, new = load_snapshot(args.old), load_snapshot(args.new)
    except SnapshotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        r = D.diff(old, new, **_diff_kw(args))
    except SnapshotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(D.format_diff(r), end="")
    if args.plot:
        from tracing.plots import diff_png
        Path(args.plot).write_bytes(diff_png(old, new, r))
    if args.json:
        Path(args.json).write_text(json.dumps(r.to_dict(), indent=1, default=str))
    return 1 if r.has_regression else 0
