"""A clip's trace attachment, built when someone asks for it (issue 25): timeline PNG, trace.dat, zip.

Per request the service needs the breakdown and findings at once; the attachment is opened for a
few clips only, and drawing the PNG (matplotlib) and wrapping trace.dat (two `trace-cmd` runs)
cost more than the analysis itself. So after the analysis a traced clip keeps, in its own
directory, what only the window had and nothing could rebuild later (`keep()`):
- `.trace.txt`       the window's text `trace` as the kernel gave it, for a window that was read
                     as text (tracing.window: most windows are not, see `text` below);
- `.cpu<N>.raw`      its ring-buffer pages per CPU (what trace.dat wraps, and trace.txt is
                     written from);
- `.trace-meta.json` page size, tracefs root, saved_cmdlines as of the request (pid -> comm for
                     trace.dat and trace.txt), the synthesizing pid and the library versions
                     (summary.json); for a window not read as text, `text`: what
                     tracing.textformat needs to write it (the buffer's counts, the kernel's
                     header lines, and the event formats the pages were recorded with: a
                     reboot may number the events differently);
- `.device_profile.json` the request's device profile, where the device view exported one
                     (app/device_view.py writes it there during the analysis).
They are ordinary files of the clip: retention counts their bytes and removes them with the clip.
`build()` makes timeline.png, trace.dat and trace.zip from them and the clip's record, with the
contents the service used to make per request, then removes them (the zip holds them now); called
again, it returns the zip. An untraced clip keeps only the meta file and its zip says tracing was
off, as before. Failures become notes, never a lost zip: reporting never undoes collection.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import platform
from importlib import metadata
from pathlib import Path

from app.device_view import PROFILE_NAME
from tracing import rawparse, textformat, tracedat
from tracing.attachment import ATTACHMENT_NAME, build_attachment
from tracing.report import render_report
from tracing.timeline import render_timeline
from tracing.window import written_text

log = logging.getLogger("artifacts")

KEPT_TEXT = ".trace.txt"
KEPT_META = ".trace-meta.json"
KEPT_PROFILE = "." + PROFILE_NAME
TIMELINE = "timeline.png"
_DAT_TMP = ".trace.dat"


def _pages_file(cpu: int) -> str:
    return f".cpu{int(cpu)}.raw"


@functools.lru_cache(maxsize=1)
def _versions() -> tuple:
    """Read once: importlib.metadata parses each package's METADATA (~14 ms for three)."""
    out = {"python": platform.python_version(), "kernel": platform.release()}
    for pkg in ("torch", "gradio", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return tuple(out.items())


def versions() -> dict:
    """Python, kernel, torch, gradio, numpy versions (summary.json)."""
    return dict(_versions())


def keep(clip_dir, capture=None) -> None:
    """Write what build() will need into clip_dir: `capture` (tracing.window.Capture, None when
    the request was not traced or its window could not be read; its `cmdlines` are saved_cmdlines
    as the window closed). Raises OSError (the caller notes it)."""
    d = Path(clip_dir)
    meta = {"pid": os.getpid(), "versions": versions(), "cpus": [], "page_size": None, "root": None,
            "cmdlines": capture.cmdlines if capture is not None else None}
    if capture is not None:
        if capture.text:
            (d / KEPT_TEXT).write_text(capture.text, encoding="utf-8", errors="replace")
        elif capture.text_header is not None:  # not read: written from the pages (tracing.window)
            header_page, formats = capture.ring.sources
            meta["text"] = {**capture.text_meta.to_dict(), "header": capture.text_header,
                            "header_page": header_page, "formats": formats}
        if capture.pages and capture.ring is not None:
            for cpu, data in capture.pages.items():
                (d / _pages_file(cpu)).write_bytes(data)
            meta.update(cpus=sorted(capture.pages), page_size=capture.ring.page_size,
                        root=(capture.capabilities or {}).get("root"))
    (d / KEPT_META).write_text(json.dumps(meta))


def built(clip_dir) -> Path | None:
    """The clip's zip when it has been built, else None."""
    p = Path(clip_dir) / ATTACHMENT_NAME
    return p if p.is_file() else None


def build(clip_dir, record: dict, dat_pool=None) -> tuple[Path, list[str], Path | None]:
    """Build (once) the clip's attachment from its kept files and `record` (ClipRecord.to_dict()).
    Returns (zip path, notes to add to the record, timeline path or None). trace.dat is written on
    `dat_pool` (an executor) while the PNG is drawn, when one is given. Raises OSError only when
    the zip itself cannot be written (the kept files then stay for another try)."""
    d = Path(clip_dir)
    done = built(d)
    if done is not None:
        return done, [], (d / TIMELINE if (d / TIMELINE).is_file() else None)
    notes: list[str] = []
    meta = _read_json(d / KEPT_META)
    raw = (d / KEPT_TEXT).read_text(encoding="utf-8", errors="replace") if (d / KEPT_TEXT).is_file() else None
    if raw is None and meta.get("text"):
        try:
            raw = _written_text(d, meta)
        except (OSError, ValueError, KeyError, TypeError) as e:  # (textformat.FormatError is a ValueError)
            log.warning("no trace.txt for request %s: %s", record.get("id"), e)
            notes.append(f"No trace.txt in the attachment: {e}")
    dat_job = None
    if meta.get("cpus") and meta.get("root") and tracedat.trace_cmd():
        pages = {int(c): (d / _pages_file(c)).read_bytes() for c in meta["cpus"]}
        args = (tracedat.write_trace_dat, d / _DAT_TMP, pages, meta["root"], meta["page_size"], meta.get("cmdlines"))
        dat_job = dat_pool.submit(*args) if dat_pool is not None else _Now(*args)
    png = timeline = None
    bd = record.get("breakdown")
    if bd is not None:
        try:
            png = render_timeline(bd, None)
            (d / TIMELINE).write_bytes(png)
            timeline = d / TIMELINE
        except Exception as e:
            log.exception("timeline failed on request %s", record.get("id"))
            notes.append(f"The timeline picture could not be drawn ({type(e).__name__}: {e}).")
            png = None
    meta_line = {"request_id": record["id"], "created": record["created"], "engine": record["engine_label"],
                 "preset": record["preset"], "wall_s": record["wall_s"], "duration_s": record["duration_s"]}
    if bd is not None:
        report = render_report(bd, record.get("findings") or [], meta_line)
    elif not record.get("tracing"):
        report = "Tracing was off for this request.\n"
    else:
        report = "\n".join(record.get("notes") or []) + "\n"
    summary = {"request_id": record["id"], "created": record["created"], "engine": record["engine"],
               "engine_label": record["engine_label"], "engine_info": record.get("engine_info") or {},
               "preset": record["preset"], "request": record["params"], "wall_s": record["wall_s"],
               "first_sound_s": record.get("first_sound_s"), "segment_s": record.get("segment_s") or [],
               "duration_s": record["duration_s"], "breakdown": bd, "findings": record.get("findings") or [],
               "versions": meta.get("versions") or versions(), "pid": meta.get("pid", os.getpid())}
    dat = None
    if dat_job is not None:
        try:
            dat = dat_job.result()
        except Exception as e:  # reporting never undoes collection: the zip keeps the rest
            log.warning("no trace.dat for request %s: %s", record.get("id"), e)
            notes.append(f"No trace.dat in the attachment: {e}")
    profile = d / KEPT_PROFILE if (d / KEPT_PROFILE).is_file() else None
    try:
        zip_path = build_attachment(d / ATTACHMENT_NAME, raw, summary, report, png, trace_dat=dat,
                                    device_profile=profile)
    finally:
        (d / _DAT_TMP).unlink(missing_ok=True)
    for name in (KEPT_TEXT, KEPT_META, KEPT_PROFILE, *(_pages_file(c) for c in meta.get("cpus") or [])):
        (d / name).unlink(missing_ok=True)  # the zip holds them now
    return Path(zip_path), notes, timeline


def _written_text(d: Path, meta: dict) -> str:
    """trace.txt of a window kept without its text: written from its pages (tracing.textformat),
    with the event formats and pid -> comm table of the request's time."""
    t = meta["text"]
    ring = rawparse.ring_format(t["header_page"], t["formats"], meta["page_size"])
    pages = {int(c): (d / _pages_file(c)).read_bytes() for c in meta["cpus"]}
    return written_text(textformat.Formatter(ring, t["header"]), pages, textformat.TextMeta.from_dict(t),
                        meta.get("cmdlines"), meta.get("root"))


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


class _Now:
    """A finished job with the Future interface (no executor given)."""

    def __init__(self, fn, *args):
        try:
            self._value, self._error = fn(*args), None
        except Exception as e:
            self._value, self._error = None, e

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value
