"""The per-request hook without Gradio: preset -> window -> engine -> analysis -> clip."""
from __future__ import annotations

import json
import os
import zipfile

import pytest

from models.base import SynthesisRequest
from app.service import Service, ServiceError
from app.store import ClipStore
from tests.conftest import settled_instances
from tuning.apply import Tuner, TuningError
from tuning.presets import load_presets


@pytest.fixture(scope="module")
def engine():
    from models.builtin import BuiltinEngine
    return BuiltinEngine()


@pytest.fixture
def svc(engine, tmp_path):
    tuner = Tuner(load_presets())
    s = Service(engine, tuner, ClipStore(tmp_path / "out"))
    before = tuner.readback()
    yield s
    tuner.apply("default")
    s.close()
    assert _same(tuner.readback(), before), "the test left the process's scheduling changed"


def _same(a, b) -> bool:
    """Threads present in both read-backs hold the same scheduling (torch may add threads)."""
    sa, sb = {r[0]: r for r in _sched(a)}, {r[0]: r for r in _sched(b)}
    common = sa.keys() & sb.keys()
    return bool(common) and all(sa[t] == sb[t] for t in common)


def _sched(rb):
    return sorted((t["tid"], t["cpus"], t["nice"], t["policy"], t["rt_priority"]) for t in rb["threads"]
                  if t["tid"] in {int(x) for x in os.listdir(f"/proc/{os.getpid()}/task")} and not t.get("aux"))


def test_traced_request_has_breakdown_sliced_by_engine_stages(svc):
    rec = svc.synthesize(SynthesisRequest(text="Tracing every request. 每个请求都有追踪。"))
    bd = rec.breakdown
    assert bd["mode"] == "full"
    names = [s["name"] for s in bd["stages"]]
    assert names == list(svc.engine.stages)
    assert bd["totals"]["on_cpu_s"] > 0.05
    # the window brackets the synthesis: its wall is close to the request's wall
    assert 0.5 * rec.wall_s <= bd["totals"]["wall_s"] <= rec.wall_s * 1.2 + 0.05
    with zipfile.ZipFile(rec.attachment_path) as z:
        raw = z.read("trace.txt").decode()
        summary = json.loads(z.read("summary.json"))
    assert raw.startswith("# tracer:") and f"B|{os.getpid()}|acoustic" in raw and "sched_waking" in raw
    assert summary["preset"]["preset"] == "default" and summary["request"]["text"] == rec.text
    assert os.path.getsize(rec.timeline_path) > 1000
    assert svc.store.get(rec.id)["id"] == rec.id


def test_untraced_request_still_makes_a_clip(svc):
    rec = svc.synthesize(SynthesisRequest(text="No trace."), trace=False)
    assert rec.breakdown is None and rec.attachment_path and os.path.exists(rec.audio_path)


def test_request_scope_applies_then_restores(svc):
    before = svc.tuner.readback()
    rec = svc.synthesize(SynthesisRequest(text="Pinned for one request."), preset="pinned", scope="request")
    assert rec.preset["preset"] == "pinned"
    pinned_cpus = {t["cpus"] for t in rec.preset["threads"] if not t.get("aux")}
    assert len(pinned_cpus) == 1
    assert _same(svc.tuner.readback(), before)
    assert svc.tuner.current.name == "default"


class Exploding:
    """Fault injection: the real builtin engine, failing inside its acoustic stage."""

    def __init__(self, inner):
        self.inner, self.name, self.label, self.stages = inner, "builtin", inner.label, inner.stages
        self.sample_rate = inner.sample_rate

    def synthesize(self, req, stages):
        with stages.stage("text"):
            pass
        with stages.stage("acoustic"):
            raise RuntimeError("simulated engine crash")


def test_engine_failure_closes_window_restores_preset_and_keeps_history_clean(engine, tmp_path):
    tuner = Tuner(load_presets())
    s = Service(Exploding(engine), tuner, ClipStore(tmp_path / "out"))
    before = tuner.readback()
    with pytest.raises(ServiceError, match="simulated engine crash"):
        s.synthesize(SynthesisRequest(text="boom"), preset="pinned", scope="request")
    assert settled_instances(os.getpid()) == []
    assert _same(tuner.readback(), before)
    assert s.store.ids() == [] and list((tmp_path / "out" / "clips").iterdir()) == []
    s.close()


def test_refused_preset_changes_nothing(svc):
    before = svc.tuner.readback()
    with pytest.raises(TuningError):
        svc.synthesize(SynthesisRequest(text="rt please"), preset="realtime")  # no --allow-realtime
    assert _same(svc.tuner.readback(), before)
    assert settled_instances(os.getpid()) == []


def test_start_hands_back_the_audio_then_post_processing_ends_before_the_next_window(svc):
    """Job.record has the audio when start() returns; the analysis, timeline and attachment
    follow on the aux thread, and the next request's trace window opens only after they end."""
    import time
    done = []
    svc.listeners.append(lambda rec: done.append((rec["id"], time.monotonic())))
    job1 = svc.start(SynthesisRequest(text="First of two. 第一个。"))
    returned = time.monotonic()
    assert os.path.getsize(job1.record.audio_path) > 1000 and job1.record.tracing
    job2 = svc.start(SynthesisRequest(text="Second of two. 第二个。"))
    rec1, rec2 = job1.result(), job2.result()
    assert [i for i, _ in done] == [rec1.id, rec2.id]
    t_done1 = done[0][1]
    assert returned < t_done1  # start() did not wait for the post-processing
    assert rec1.breakdown["mode"] == "full" and rec1.attachment_path and rec1.timeline_path
    # request 2's window opened after request 1's post-processing had finished
    assert rec2.breakdown["window"]["start_s"] > t_done1
    assert job2.analysed() is rec2 and svc.store.get(rec2.id)["breakdown"]["mode"] == "full"


def test_held_job_post_processes_only_as_far_as_released(svc):
    """hold=True: nothing after the audio runs until release("analysis"); the timeline and the
    attachment wait for release() (the Synthesize handler says when each update went out)."""
    from concurrent.futures import TimeoutError as FutureTimeout
    job = svc.start(SynthesisRequest(text="Held until the audio is out. 等声音送到。"), hold=True)
    assert os.path.getsize(job.record.audio_path) > 1000
    with pytest.raises(FutureTimeout):
        job.analysed(timeout=0.5)
    assert job.record.breakdown is None and svc.busy  # held: the next request would wait for it
    job.release("analysis")
    assert job.analysed(timeout=30).breakdown["mode"] == "full"
    with pytest.raises(FutureTimeout):
        job.result(timeout=0.5)
    assert job.record.attachment_path is None and job.record.timeline_path is None
    job.release()
    rec = job.result(timeout=30)
    assert rec.attachment_path and rec.timeline_path and svc.store.get(rec.id)
    assert settled_instances(os.getpid()) == []


def test_a_job_never_released_still_completes_and_frees_the_service(svc, monkeypatch):
    """A caller that never releases (a client gone) holds each step HOLD_MAX_S at most."""
    import app.service as service_mod
    monkeypatch.setattr(service_mod, "HOLD_MAX_S", 0.3)
    job = svc.start(SynthesisRequest(text="Nobody says the audio went out."), hold=True)
    rec = job.result(timeout=30)
    assert rec.breakdown["mode"] == "full" and rec.attachment_path
    assert svc.synthesize(SynthesisRequest(text="The next one runs.")).breakdown["mode"] == "full"
    assert settled_instances(os.getpid()) == []


def test_storage_failures_are_said_plainly_and_leave_nothing_behind(svc, monkeypatch):
    """outputs/clips removed under a running service: recreated. Unusable (a file in its place) or
    full: a ServiceError that names the directory and the cause; no instance, no half clip."""
    import errno
    import shutil

    import app.service as service_mod
    shutil.rmtree(svc.store.clips)
    assert svc.synthesize(SynthesisRequest(text="The clips directory was removed.")).audio_path
    shutil.rmtree(svc.store.clips)
    svc.store.clips.write_text("not a directory")
    with pytest.raises(ServiceError, match=r"create the clip's directory under .*--outputs"):
        svc.synthesize(SynthesisRequest(text="Nowhere to put it."))
    svc.store.clips.unlink()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(service_mod.sf, "write", full)
    failures = svc.failures
    with pytest.raises(ServiceError, match="write the clip's audio .*No space left on device"):
        svc.synthesize(SynthesisRequest(text="The disk is full."))
    assert svc.failures == failures + 1 and settled_instances(os.getpid()) == []
    assert list(svc.store.clips.iterdir()) == []  # no half clip left


def test_post_processing_failure_keeps_the_clip_and_says_what_failed(svc, monkeypatch):
    import app.service as service_mod

    def broken(bd, path=None):
        raise RuntimeError("no fonts left")
    monkeypatch.setattr(service_mod, "render_timeline", broken)
    rec = svc.synthesize(SynthesisRequest(text="The picture fails. 图片失败。"))
    assert os.path.getsize(rec.audio_path) > 1000 and rec.breakdown["mode"] == "full"
    assert rec.timeline_path is None
    assert any("timeline picture could not be drawn" in n and "no fonts left" in n for n in rec.notes)
    with zipfile.ZipFile(rec.attachment_path) as z:  # the rest of the attachment is there
        names = set(z.namelist())
        assert {"trace.txt", "summary.json", "report.txt"} <= names and "timeline.png" not in names
    saved = svc.store.get(rec.id)
    assert saved["notes"] == rec.notes and saved["audio_path"] == rec.audio_path

    def no_analysis(*a, **k):
        raise ValueError("unreadable pages")
    monkeypatch.setattr(service_mod, "make_findings", no_analysis)
    rec = svc.synthesize(SynthesisRequest(text="The analysis fails. 分析失败。"))
    assert os.path.getsize(rec.audio_path) > 1000 and rec.breakdown is None
    assert any("could not be analysed" in n and "unreadable pages" in n for n in rec.notes)
    with zipfile.ZipFile(rec.attachment_path) as z:  # the raw trace is kept for the user
        assert z.read("trace.txt").startswith(b"# tracer:")
        assert "unreadable pages" in z.read("report.txt").decode()
    assert svc.store.get(rec.id)["breakdown"] is None
    assert settled_instances(os.getpid()) == []  # nothing left behind by the failures


def test_the_longest_audio_wait_fits_inside_the_services_hold():
    """--audio-wait-s is bounded by delivery.MAX_WAIT_S; a held step runs anyway after
    HOLD_MAX_S, so a longer wait would no longer hold anything back."""
    import webui
    from app import delivery, service
    assert delivery.WAIT_S <= delivery.MAX_WAIT_S <= service.HOLD_MAX_S
    with pytest.raises(SystemExit):
        webui.parse_args(["--audio-wait-s", str(delivery.MAX_WAIT_S + 0.5)])
    assert webui.parse_args(["--audio-wait-s", "0"]).audio_wait_s == 0


LONG = ("The first sentence is long enough to fill a segment on its own today. "
        "The second sentence is also long enough to stand alone as a segment. "
        "A third sentence follows here and it is as long as the other two. "
        "The fourth and last sentence closes the text and ends the clip now.")


def test_segments_reach_the_caller_during_synthesis_and_first_sound_is_recorded(svc):
    """on_segment gets each segment on the synthesis thread while synthesis goes on; the record
    keeps the hand-off times (first_sound_s = the first), and the breakdown splits there."""
    import threading
    import time as _t
    got = []
    t_start = _t.monotonic()
    job = svc.start(SynthesisRequest(text=LONG, max_text_tokens_per_segment=20),
                    on_segment=lambda a, sr, i, t: got.append((i, len(a), sr, t, threading.get_native_id())))
    t_back = _t.monotonic()
    rec = job.result()
    assert [g[0] for g in got] == [0, 1, 2, 3] and all(g[2] == 22050 for g in got)
    import soundfile as sf
    assert sum(g[1] for g in got) == sf.info(rec.audio_path).frames  # the pieces are the clip
    assert got[0][3] < got[-1][3] <= t_back and t_start < got[0][3]  # before start() returned
    assert len({g[4] for g in got}) == 1  # all on the synthesis thread
    assert rec.segment_s == sorted(rec.segment_s) and len(rec.segment_s) == 4
    assert rec.first_sound_s == rec.segment_s[0] and 0 < rec.first_sound_s < 0.6 * rec.wall_s
    fs = rec.breakdown["first_sound"]
    w = rec.breakdown["window"]
    assert w["start_s"] < fs["at_s"] < w["end_s"]
    assert fs["before"]["wall_s"] == pytest.approx(fs["at_s"] - w["start_s"])
    assert fs["before"]["wall_s"] == pytest.approx(rec.first_sound_s, abs=0.05)
    assert fs["before"]["on_cpu_s"] > 0 and fs["after"]["on_cpu_s"] > 0


def test_untraced_request_records_first_sound_too(svc):
    rec = svc.synthesize(SynthesisRequest(text=LONG, max_text_tokens_per_segment=20), trace=False)
    assert len(rec.segment_s) == 4 and 0 < rec.first_sound_s < rec.wall_s
