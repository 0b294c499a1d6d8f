"""The per-request attachment: one zip a user downloads (by request id only) and can share.

Members:
- `trace.txt`    the raw ftrace text exactly as read from the instance (absent in schedstat mode).
                 It opens in ui.perfetto.dev: starts with the `# tracer:` header, has sched_waking
                 and the atrace `tracing_mark_write: B|tgid|stage` markers that Perfetto draws.
- `summary.json` whatever the caller's summary holds (breakdown, findings, preset, engine, request
                 parameters, versions) plus `schema` (SUMMARY_SCHEMA).
- `report.txt`   the human-readable report (tracing/report.py).
- `timeline.png` the timeline picture (tracing/timeline.py), when one was rendered.
- `device_profile.json`  the request's device profile (Kineto JSON from torch.profiler, CUDA
                 activity), when the engine ran on a GPU (app/device_view.py): opens in
                 ui.perfetto.dev and in Holistic Trace Analysis; `python -m tracing analyze
                 trace.zip` joins it with the kernel trace again.
- `trace.dat`    the same window for trace-cmd (`trace-cmd report -i trace.dat`) and KernelShark
                 (`kernelshark trace.dat`), made from the window's ring-buffer pages by
                 tracing/tracedat.py when trace-cmd is installed; absent otherwise.

The zip is written to a temporary name next to the destination and renamed, so a reader never sees
a half-written file.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
import tempfile
import zipfile
from pathlib import Path


SUMMARY_SCHEMA = 1
ATTACHMENT_NAME = "trace.zip"  # file name inside a clip directory (store.py looks it up by id)

TRACE = "trace.txt"
SUMMARY = "summary.json"
REPORT = "report.txt"
TIMELINE = "timeline.png"
TRACE_DAT = "trace.dat"
DEVICE_PROFILE = "device_profile.json"
MEMBERS = (TRACE, SUMMARY, REPORT, TIMELINE, TRACE_DAT, DEVICE_PROFILE)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DAT_MAGIC = b"\x17\x08\x44tracing"  # trace-cmd's file magic
# Generous cap for the sanity check: a 16 MB/CPU buffer on a big box renders to a few hundred MB.
MAX_MEMBER_BYTES = 2 << 30


def build_attachment(dest_zip_path, raw_trace_text: str | None, summary: dict, report_text: str,
                     timeline_png: bytes | None, trace_dat=None, device_profile=None) -> Path:
    """Write the zip atomically and return its path. `trace_dat` / `device_profile`: paths of a
    trace.dat / a Kineto JSON to include."""
    dest = Path(dest_zip_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(summary or {})
    doc["schema"] = SUMMARY_SCHEMA
    # NaN/inf are not JSON: they become null rather than failing the whole attachment
    body = json.dumps(_clean(doc), indent=2, default=_json_default, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=".attach-", suffix=".zip", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED,
                                                       compresslevel=6) as zf:
            if raw_trace_text is not None:
                # exactly as read: no newline translation, utf-8 (ftrace text is ASCII but comm may not be)
                zf.writestr(TRACE, raw_trace_text.encode("utf-8", "surrogateescape"))
            zf.writestr(SUMMARY, body)
            zf.writestr(REPORT, report_text or "")
            if timeline_png:
                # PNG is already compressed
                zf.writestr(zipfile.ZipInfo(TIMELINE, date_time=_now_tuple()), timeline_png,
                            compress_type=zipfile.ZIP_STORED)
            if trace_dat is not None:
                # mostly page headers and repeated fields: level 1 already shrinks it ~7x, at a
                # fraction of level 6's CPU time
                zf.write(trace_dat, TRACE_DAT, compresslevel=1)
            if device_profile is not None:  # JSON: repetitive, shrinks ~10x at level 1
                zf.write(device_profile, DEVICE_PROFILE, compresslevel=1)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def validate_attachment(zip_path) -> dict:
    """Sanity-check an attachment; returns {ok, problems: [str], members: {name: size}, schema, mode}.

    Checks: it is a zip with summary.json (JSON object with `schema`) and report.txt; trace.txt, when
    present, starts with the `# tracer:` header and has sched_waking and atrace B| markers (warned as
    problems only if the summary says mode "full"); timeline.png, when present, is a PNG; trace.dat,
    when present, starts with trace-cmd's magic; device_profile.json, when present, is a Kineto
    trace (a JSON object with traceEvents).
    """
    problems: list[str] = []
    members: dict[str, int] = {}
    schema = mode = None
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                members[info.filename] = info.file_size
                if info.file_size > MAX_MEMBER_BYTES:
                    problems.append(f"{info.filename} is {info.file_size} bytes, over the limit")
            bad = zf.testzip()
            if bad:
                problems.append(f"corrupt member {bad}")
            if set(members) - set(MEMBERS):
                problems.append(f"unexpected members {sorted(set(members) - set(MEMBERS))}")
            if SUMMARY not in members:
                problems.append("summary.json missing")
            else:
                try:
                    doc = json.loads(zf.read(SUMMARY))
                    if not isinstance(doc, dict):
                        raise ValueError("not an object")
                    schema = doc.get("schema")
                    if schema != SUMMARY_SCHEMA:
                        problems.append(f"summary.json schema {schema!r}, expected {SUMMARY_SCHEMA}")
                    mode = (doc.get("breakdown") or {}).get("mode") if isinstance(doc.get("breakdown"), dict) \
                        else doc.get("mode")
                except ValueError as e:
                    problems.append(f"summary.json is not valid JSON: {e}")
            if REPORT not in members:
                problems.append("report.txt missing")
            if TRACE in members and members[TRACE] <= MAX_MEMBER_BYTES:
                text = zf.read(TRACE)
                if not text.startswith(b"# tracer:"):
                    problems.append("trace.txt does not start with the '# tracer:' header")
                if b"sched_waking" not in text:
                    problems.append("trace.txt has no sched_waking events")
                if b"tracing_mark_write: B|" not in text:
                    problems.append("trace.txt has no atrace 'B|' stage markers")
            elif mode == "full":
                problems.append("trace.txt missing for a full-mode capture")
            if TIMELINE in members:
                with zf.open(TIMELINE) as fh:
                    if fh.read(8) != _PNG_MAGIC:
                        problems.append("timeline.png is not a PNG")
            if TRACE_DAT in members:
                with zf.open(TRACE_DAT) as fh:
                    if fh.read(len(_DAT_MAGIC)) != _DAT_MAGIC:
                        problems.append("trace.dat is not a trace-cmd file")
            if DEVICE_PROFILE in members and members[DEVICE_PROFILE] <= MAX_MEMBER_BYTES:
                try:
                    prof = json.loads(zf.read(DEVICE_PROFILE))
                    if not isinstance(prof, dict) or not isinstance(prof.get("traceEvents"), list):
                        problems.append("device_profile.json has no traceEvents list (not a Kineto trace)")
                except ValueError as e:
                    problems.append(f"device_profile.json is not valid JSON: {e}")
    except (zipfile.BadZipFile, OSError) as e:
        problems.append(f"not a readable zip: {e}")
    return {"ok": not problems, "problems": problems, "members": members, "schema": schema, "mode": mode}


def _json_default(o):
    # numpy scalars/arrays, Paths, sets and dataclasses end up in summaries
    if hasattr(o, "tolist"):
        return _clean(o.tolist())
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _now_tuple():
    return time.localtime()[:6]
