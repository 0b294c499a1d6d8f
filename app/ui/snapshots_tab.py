"""The Snapshots tab: run a pressure snapshot on the serving engine, diff two.

No logic lives here beyond wiring: app/snapshot_runs.py runs, tracing/snapshot.py stores and
reads, tracing/diff.py compares, tracing/plots.py draws.
Snapshots are kept under <outputs>/snapshots/<name>/ and are chosen from a list, never by a path
typed by the client.
"""
from __future__ import annotations

import datetime as dt
import io
import re
import shutil
from pathlib import Path

import gradio as gr
from PIL import Image

from app.periodic import series_dir
from app.snapshot_runs import DEFAULT_N, plan, run_service
from app.ui.common import check_preset
from app.ui.compat import PRIVATE
from models import limits
from tracing import diff as D
from tracing import plots
from tracing.series import DIFF_FILE, format_series, latest, load_series
from tracing.snapshot import (DEFAULT_TEXT, SUMMARY_HEAD, SnapshotError, format_summary, latency_tracer_status,
                              load_snapshot, summary_head, summary_table)

SNAP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")
MAX_N = limits.MAX_SNAPSHOT_N  # the UI's cap; the CLI allows more


def snapshots_dir(ctx) -> Path:
    return Path(ctx.args.outputs).resolve() / "snapshots"


def list_snapshots(ctx) -> list[str]:
    d = snapshots_dir(ctx)
    if not d.is_dir():
        return []
    names = [p.name for p in d.iterdir() if (p / "manifest.json").is_file() and SNAP_NAME_RE.fullmatch(p.name)]
    return sorted(names, reverse=True)  # names start with a UTC timestamp: newest first


def _resolve(ctx, name: str) -> Path:
    if not isinstance(name, str) or not SNAP_NAME_RE.fullmatch(name) or name not in list_snapshots(ctx):
        raise ValueError(f"No snapshot named {name!r}.")
    return snapshots_dir(ctx) / name


def enforce_retention(ctx) -> list[str]:
    """Keep the newest limits.MAX_SNAPSHOTS_KEPT snapshots under <outputs>/snapshots (by the
    directory's time; names start with a UTC timestamp). Returns the names removed."""
    d = snapshots_dir(ctx)
    if not d.is_dir():
        return []
    snaps = sorted((p for p in d.iterdir() if p.is_dir() and SNAP_NAME_RE.fullmatch(p.name)),
                   key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    gone = snaps[limits.MAX_SNAPSHOTS_KEPT:]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in gone]


def build(ctx) -> None:
    svc, tuner = ctx.service, ctx.tuner
    allowed = list(tuner.allowed)

    def out_png(path: Path, png: bytes) -> str:
        path.write_bytes(png)
        return str(path)

    def run(presets, n, text, label, request: gr.Request = None, progress=gr.Progress()):
        try:  # every limit before anything is created: a refusal leaves no directory
            presets, n = plan([p for p in (presets or []) if p], n, max_n=MAX_N)
        except SnapshotError as e:
            raise gr.Error(str(e))
        for p in presets:
            check_preset(ctx, p, request)  # only the preset in force for a non-operator
        label = (label or "").strip()
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label)[:40].strip("-.")
        name = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + (f"-{slug}" if slug else "")
        dest = snapshots_dir(ctx) / name
        root = getattr(ctx, "trace_root", None)
        caps = getattr(ctx, "capabilities", {}) or {}
        try:
            snap = run_service(svc, dest, presets, int(n), (text or "").strip() or DEFAULT_TEXT, label=label,
                               source="web UI", capabilities=caps, latency_tracers=latency_tracer_status(caps, root),
                               progress=lambda f, d: progress(f, desc=d))
        except SnapshotError as e:
            raise gr.Error(str(e))
        except Exception as e:  # InputError/TuningError/ServiceError: a sentence for the user
            raise gr.Error(f"Snapshot stopped: {e}")
        img = out_png(dest / "summary.png", plots.summary_png(snap))
        enforce_retention(ctx)
        names = list_snapshots(ctx)
        table = {"headers": summary_head(snap), "data": summary_table(snap)}  # GPU columns only with a GPU
        return (format_summary(snap), table, img,
                gr.update(choices=names), gr.update(choices=names, value=name))

    def do_diff(old, new, alpha, min_ratio, min_abs_ms):
        try:
            a, b = load_snapshot(_resolve(ctx, old)), load_snapshot(_resolve(ctx, new))
        except (ValueError, SnapshotError) as e:
            raise gr.Error(str(e))
        r = D.diff(a, b, alpha=float(alpha), min_ratio=float(min_ratio), min_abs=float(min_abs_ms) / 1000)
        img = out_png(snapshots_dir(ctx) / new / f"diff-vs-{old}.png", plots.diff_png(a, b, r))
        return D.format_diff(r), D.diff_table(r), img, r.to_dict()

    def refresh():
        names = list_snapshots(ctx)
        return gr.update(choices=names), gr.update(choices=names)

    with gr.Tab("快照 / Snapshots"):
        gr.Markdown("A **pressure snapshot** runs N traced requests per preset on the serving engine and keeps "
                    "their breakdowns and traces together; **diff** two snapshots (e.g. before/after an upgrade) "
                    "to catch regressions. Same as `python -m app snapshot` / `diff`.")
        with gr.Row():
            presets = gr.Dropdown(allowed, value=[tuner.current.name], multiselect=True, label="Presets",
                                  elem_id="snap_presets")
            n = gr.Number(value=DEFAULT_N, precision=0, minimum=1, maximum=MAX_N, label="Requests per preset (N)",
                          elem_id="snap_n")
            label = gr.Textbox(label="Label", placeholder="e.g. before-kernel-upgrade", elem_id="snap_label")
        text = gr.Textbox(value=DEFAULT_TEXT, label="Text", elem_id="snap_text")
        run_btn = gr.Button("Run snapshot", variant="primary", elem_id="snap_run")
        summary_md = gr.Textbox(label="Summary", lines=6, interactive=False, elem_id="snap_summary")
        summary_rows = gr.Dataframe(headers=SUMMARY_HEAD, interactive=False, elem_id="snap_table")
        summary_img = gr.Image(type="filepath", label="Per-request distributions", interactive=False,
                               elem_id="snap_image")
        gr.Markdown("### Diff two snapshots")
        with gr.Row():
            names = list_snapshots(ctx)
            old = gr.Dropdown(names, label="Old (baseline)", elem_id="snap_old")
            new = gr.Dropdown(names, label="New", elem_id="snap_new")
            refresh_btn = gr.Button("Refresh list", elem_id="snap_refresh")
        with gr.Row():
            alpha = gr.Number(value=D.stats.ALPHA, label="alpha (one-sided Mann-Whitney U)")
            min_ratio = gr.Number(value=D.stats.MIN_RATIO, label="min ratio of medians")
            min_abs = gr.Number(value=D.stats.MIN_ABS_S * 1000, label="min difference (ms)")
        diff_btn = gr.Button("Diff", elem_id="snap_diff")
        diff_text = gr.Textbox(label="Diff", lines=8, interactive=False, elem_id="snap_diff_text")
        diff_rows = gr.Dataframe(headers=D.DIFF_HEAD, interactive=False, elem_id="snap_diff_table")
        diff_img = gr.Image(type="filepath", label="Old vs new", interactive=False, elem_id="snap_diff_image")
        diff_json = gr.JSON(visible=False)
        run_btn.click(run, [presets, n, text, label], [summary_md, summary_rows, summary_img, old, new],
                      api_name="snapshot", concurrency_limit=1)
        diff_btn.click(do_diff, [old, new, alpha, min_ratio, min_abs], [diff_text, diff_rows, diff_img, diff_json],
                       api_name="snapshot_diff")
        refresh_btn.click(refresh, None, [old, new], **PRIVATE)
        _series_section(ctx)


def _series_section(ctx) -> None:
    """The periodic series (app/periodic.py): p50/p95 over time per preset and the latest verdict."""
    where = series_dir(ctx.args)

    def show():
        try:
            series = load_series(where)
        except SnapshotError as e:
            raise gr.Error(str(e))
        text = format_series(series, str(where))
        last = latest(series)
        if last and (where / last["name"] / DIFF_FILE).is_file():
            text += "\n" + (where / last["name"] / DIFF_FILE).read_text()
        # an image, not a file in the series directory: it may be read-only to the launcher or
        # outside what Gradio serves
        return text, Image.open(io.BytesIO(plots.series_png(series)))

    gr.Markdown("### Periodic series\nSnapshots taken on a schedule (`python -m app snapshot --url URL --series "
                "DIR`, run by a systemd timer: docs/production.md), each diffed against the pinned baseline; "
                "/metrics exports the latest verdict (`itts_snapshot_regression`). Probes wait until the "
                "service is idle and say so.")
    series_btn = gr.Button("Refresh series", elem_id="snap_series_refresh")
    series_text = gr.Textbox(label="Latest verdict", lines=8, interactive=False, elem_id="snap_series_text")
    series_img = gr.Image(type="pil", format="png", label="p50 / p95 over time", interactive=False,
                          elem_id="snap_series_image")
    series_btn.click(show, None, [series_text, series_img], api_name="snapshot_series")
