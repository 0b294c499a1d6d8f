"""Clip history on disk: one directory per request under outputs/clips/<request id>/.

Each directory holds audio.wav and record.json (what the UI/API show); trace.zip (the attachment)
and timeline.png once someone asked for the attachment, and until then the window's raw trace they
are built from (app/artifacts.py: hidden files, counted and removed like the rest). Clips are found only by their request id (tracing.ids.REQUEST_ID_RE); no path from a
client ever reaches the filesystem. Retention keeps the newest clips within a count and a byte
budget that the operator sets (--keep-clips, --keep-mb).

Several launchers may share one outputs directory. A clip in flight has no record yet; it is
marked by an flock held on its `.inflight` file from the moment its directory appears (created
under a dot-name with the lock inside, then renamed into place) until its record is written, and
the kernel drops the lock if the process dies. So start-up clean-up removes only directories
nobody holds (a request killed mid-way), never another launcher's request in flight.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
from pathlib import Path

import orjson

from tracing.attachment import ATTACHMENT_NAME
from tracing.ids import REQUEST_ID_RE

RECORD = "record.json"
INFLIGHT = ".inflight"  # flock held while the clip's request runs
FILES = {"audio": "audio.wav", "attachment": ATTACHMENT_NAME, "timeline": "timeline.png", "record": RECORD}


class ClipNotFound(LookupError):
    """No clip with that id (or the id is not a valid request id)."""


class ClipStore:
    def __init__(self, root: str | os.PathLike = "outputs", max_clips: int = 200, max_bytes: int = 500 * 2**20):
        if max_clips < 1 or max_bytes < 1:
            raise ValueError("retention limits must be positive")
        self.root = Path(root).resolve()
        self.clips = self.root / "clips"
        self.scratch = self.root / ".scratch"
        self.clips.mkdir(parents=True, exist_ok=True)
        self.max_clips = max_clips
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._last_ns = 0
        self._inflight: dict[str, int] = {}  # request id -> fd holding the flock
        self.on_remove: list = []  # callables(clip_dir) run before retention deletes a clip

    def _dir(self, request_id: str) -> Path:
        if not isinstance(request_id, str) or not REQUEST_ID_RE.fullmatch(request_id):
            raise ClipNotFound(f"{request_id!r} is not a request id (expected e.g. 20261125T061500-1a2b3c4d).")
        d = (self.clips / request_id).resolve()
        if d.parent != self.clips:  # belt and braces: the pattern already forbids separators
            raise ClipNotFound(f"{request_id!r} is not a request id.")
        return d

    def new_dir(self, request_id: str, scratch: bool = False) -> Path:
        """The clip's directory, claimed (see the module docstring) until release()/save_record().
        `scratch`: outside the history (under .scratch/, never listed, never counted by retention):
        for requests whose files only pass through, like a snapshot's; discard() removes it."""
        d = self._dir(request_id)
        if scratch:
            d = self.scratch / request_id
            self.scratch.mkdir(exist_ok=True)
        if d.exists():
            raise FileExistsError(f"clip {request_id} exists")
        tmp = d.parent / f".{request_id}.new"
        d.parent.mkdir(parents=True, exist_ok=True)  # outputs/clips removed under a running server
        tmp.mkdir()
        fd = os.open(tmp / INFLIGHT, os.O_CREAT | os.O_WRONLY, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(tmp, d)  # appears with its lock already held
        self._inflight[request_id] = (fd, d)
        return d

    def release(self, request_id: str) -> None:
        """The request is over (record written, or the directory removed): drop the claim."""
        fd, d = self._inflight.pop(request_id, (None, None))
        if fd is not None:
            try:
                os.unlink(d / INFLIGHT)
            except OSError:
                pass
            os.close(fd)

    def discard(self, request_id: str) -> None:
        """Remove a request's directory (failed, or scratch) and drop its claim."""
        d = self._inflight.get(request_id, (None, None))[1]
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)
        self.release(request_id)

    def path(self, request_id: str, kind: str) -> Path:
        """Path of one artefact of an existing clip; ClipNotFound when it does not exist."""
        if kind not in FILES:
            raise ValueError(f"unknown artefact {kind!r}")
        p = self._dir(request_id) / FILES[kind]
        if not p.is_file():
            raise ClipNotFound(f"No {kind} stored for request {request_id}.")
        return p

    def save_record(self, record: dict) -> None:
        d = self._dir(record["id"])
        tmp = d / (RECORD + ".tmp")
        tmp.write_bytes(_dumps(record))
        os.replace(tmp, d / RECORD)  # atomic: a crash never leaves a half record
        with self._lock:  # the record's mtime orders the history: make it strictly increasing,
            self._last_ns = max(time.time_ns(), self._last_ns + 1)  # finer than the fs clock tick
            os.utime(d / RECORD, ns=(self._last_ns, self._last_ns))
        self.release(record["id"])
        self.enforce_retention()

    def update_record(self, record: dict) -> None:
        """Rewrite a stored clip's record (say, once its attachment was built) without moving it
        in the history (the record's mtime orders it). A clip not in the history (a scratch one,
        or one removed meanwhile) is left alone."""
        try:
            d = self._dir(record["id"])
            st = (d / RECORD).stat()
        except (ClipNotFound, OSError):
            return
        tmp = d / (RECORD + ".tmp")
        tmp.write_bytes(_dumps(record))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, d / RECORD)

    def get(self, request_id: str) -> dict:
        p = self.path(request_id, "record")
        return json.loads(p.read_text())

    def ids(self) -> list[str]:
        """Request ids, newest first: by the record's write time (ids only sort to the second)."""
        keyed = []
        for p in self.clips.iterdir():
            rec = p / RECORD
            if REQUEST_ID_RE.fullmatch(p.name):
                try:
                    keyed.append((rec.stat().st_mtime_ns, p.name))
                except FileNotFoundError:
                    continue  # no record yet (request in flight) or removed meanwhile
        return [rid for _, rid in sorted(keyed, reverse=True)]

    def list(self, limit: int = 50) -> list[dict]:
        out = []
        for rid in self.ids()[:limit]:
            try:
                out.append(self.get(rid))
            except (ClipNotFound, ValueError, OSError):
                continue  # a clip removed by retention meanwhile, or a corrupt record
        return out

    def remove_incomplete(self) -> int:
        """Drop directories without a record that no process holds (a request killed mid-way);
        another launcher's request in flight holds its lock and is left alone. Returns how many."""
        n = 0
        scratch = list(self.scratch.iterdir()) if self.scratch.is_dir() else []
        for p in [*self.clips.iterdir(), *scratch]:
            if not p.is_dir() or (p.parent == self.clips and (p / RECORD).is_file()) or not _unclaimed(p):
                continue
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        return n

    def enforce_retention(self) -> list[str]:
        """Delete the oldest clips beyond max_clips or max_bytes. Returns the removed ids."""
        with self._lock:
            ids = self.ids()
            sizes = {rid: sum(f.stat().st_size for f in (self.clips / rid).iterdir() if f.is_file())
                     for rid in ids}
            removed, total = [], 0
            for i, rid in enumerate(ids):
                total += sizes[rid]
                # the newest clip is always kept, even when it alone is over the byte budget
                if i > 0 and (i >= self.max_clips or total > self.max_bytes):
                    for fn in self.on_remove:  # e.g. the UI's cached copies of its files
                        try:
                            fn(self.clips / rid)
                        except Exception:
                            pass  # a clean-up hook must not keep a clip on disk
                    shutil.rmtree(self.clips / rid, ignore_errors=True)
                    removed.append(rid)
            return removed


def _dumps(record: dict) -> bytes:
    """A record as JSON. orjson (pinned, Gradio's own): a breakdown holds up to 4000 segments, and
    json.dumps(indent=1) took ~150 ms a record under load (its pure-Python encoder), the C encoder
    ~40 ms, orjson a few ms. NaN/inf become null (orjson), as json.dumps would not."""
    return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _unclaimed(d: Path) -> bool:
    """True unless a live process holds the directory's in-flight lock. A directory without the
    lock file was left by a request whose process died before the claim went away (or by an older
    version): unclaimed."""
    try:
        fd = os.open(d / INFLIGHT, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
