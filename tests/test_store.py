"""Clip history: ids only, atomic records, retention by count and size."""
import json
import os

import pytest

from app.store import ClipNotFound, ClipStore
from tests.test_attachment import BAD, GOOD
from tracing.ids import new_request_id


def _clip(store, size=10):
    rid = new_request_id()
    d = store.new_dir(rid)
    (d / "audio.wav").write_bytes(b"x" * size)
    store.save_record({"id": rid, "text": "t"})
    return rid


def test_roundtrip_and_listing_newest_first(tmp_path):
    s = ClipStore(tmp_path)
    ids = [_clip(s) for _ in range(3)]
    assert [r["id"] for r in s.list()] == ids[::-1]
    assert s.get(ids[0])["text"] == "t"
    assert s.path(ids[0], "audio").read_bytes() == b"x" * 10


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "", "..", "20261125T061500-1a2b3c4d/../../x",
                                 "20261125T061500-1a2b3c4d\x00", "a" * 300, None, 5] + BAD)
def test_only_request_ids_reach_the_filesystem(tmp_path, bad):
    s = ClipStore(tmp_path)
    with pytest.raises(ClipNotFound):
        s.get(bad)
    with pytest.raises(ClipNotFound):
        s.path(bad, "attachment")


def test_retention_by_count_and_bytes(tmp_path):
    s = ClipStore(tmp_path, max_clips=3)
    ids = [_clip(s) for _ in range(5)]
    assert s.ids() == ids[::-1][:3]
    s2 = ClipStore(tmp_path / "b", max_clips=100, max_bytes=2500)
    ids2 = [_clip(s2, size=1000) for _ in range(4)]
    kept = s2.ids()
    assert kept == ids2[::-1][:len(kept)] and 1 <= len(kept) <= 2


def test_incomplete_clip_dirs_are_removed(tmp_path):
    s = ClipStore(tmp_path)
    rid = new_request_id()
    s.new_dir(rid)  # a request killed before its record was written...
    os.close(s._inflight.pop(rid)[0])  # ...its process gone: the kernel dropped its lock
    keep = _clip(s)
    assert s.remove_incomplete() == 1
    assert s.ids() == [keep]


def test_symlinked_clip_dir_cannot_escape_the_store(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "trace.zip").write_bytes(b"secret")
    s = ClipStore(tmp_path / "out")
    (s.clips / GOOD).symlink_to(outside, target_is_directory=True)
    with pytest.raises(ClipNotFound):
        s.path(GOOD, "attachment")
