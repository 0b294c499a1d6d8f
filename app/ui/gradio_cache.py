"""Gradio's file cache, bounded and tied to clip retention.

Gradio copies every file it serves (each clip's audio, timeline and attachment) and every upload
into its cache (GRADIO_TEMP_DIR: webui.py points it at <outputs>/gradio-cache), as
<cache>/<sha256 of the content>/<name>, and serves them from there. Without this module that
cache grew without bound and a clip deleted by retention stayed downloadable from it. So:
- forget_clip(clip_dir): when retention deletes a clip, its cached copies go too (the store's
  on_remove hook; the hash is Gradio's own, so it finds exactly the copies Gradio made);
- prune(max_bytes): after each request, the oldest cache entries (uploads included) beyond the
  byte budget (the clip history's, --keep-mb) are deleted.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from gradio import processing_utils, utils
from gradio_client import utils as client_utils


def cache_dir() -> Path:
    return Path(utils.get_upload_folder())


def forget_clip(clip_dir: Path) -> int:
    """Delete Gradio's cached copies of the files of `clip_dir`. Returns how many went."""
    root, n = cache_dir(), 0
    for f in Path(clip_dir).iterdir():
        if not f.is_file() or f.name.startswith("."):
            continue
        d = root / processing_utils.hash_file(f)
        copy = d / client_utils.strip_invalid_filename_characters(f.name)
        if copy.is_file():
            copy.unlink()
            n += 1
        try:
            d.rmdir()  # only when nothing else is cached under that hash
        except OSError:
            pass
    return n


def prune(max_bytes: int) -> list[str]:
    """Delete the oldest cache entries (one directory per content hash) until the cache holds at
    most `max_bytes`. Returns the entries removed."""
    root = cache_dir()
    if not root.is_dir():
        return []
    entries = []
    for d in root.iterdir():
        if not d.is_dir():
            continue
        try:
            files = [f for f in d.rglob("*") if f.is_file()]
            size = sum(f.stat().st_size for f in files)
            newest = max((f.stat().st_mtime for f in files), default=d.stat().st_mtime)
        except OSError:
            continue  # removed meanwhile
        entries.append((newest, size, d))
    total = sum(s for _, s, _ in entries)
    removed = []
    for _, size, d in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        shutil.rmtree(d, ignore_errors=True)
        total -= size
        removed.append(d.name)
    return removed


def tie_to(ctx) -> None:
    """Wire both into the running service: clips removed by retention take their cached copies
    with them; after each request the cache is pruned to the history's byte budget."""
    ctx.store.on_remove.append(forget_clip)
    budget = ctx.store.max_bytes
    ctx.service.listeners.append(lambda _record: prune(budget))
