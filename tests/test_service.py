"""The per-request hook without Gradio: preset -> window -> engine -> analysis -> clip."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

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
    with zipfile.ZipFile(svc.attachment(rec)) as z:
        raw = z.read("trace.txt").decode()
        summary = json.loads(z.read("summary.json"))
    assert raw.startswith("# tracer:") and f"B|{os.getpid()}|acoustic" in raw and "sched_waking" in raw
    assert summary["preset"]["preset"] == "default" and summary["request"]["text"] == rec.text
    assert summary["pid"] == os.getpid() and summary["breakdown"] == json.loads(json.dumps(bd))
    assert os.path.getsize(rec.timeline_path) > 1000
    assert svc.store.get(rec.id)["id"] == rec.id


def test_requests_reuse_instances_and_each_window_holds_only_its_own_request(svc):
    """Windows record into reused instances (tracing/instances.py): after the first two requests
    no instance is made, and each request's trace holds its own stage markers only, never the
    previous request's (its pages were read and tracing was off between the windows)."""
    recs = [svc.synthesize(SynthesisRequest(text=f"Request number {i}. 第{i}个请求。")) for i in range(4)]
    assert svc.instances.created <= 2, svc.instances.created  # the first window's and the next one's
    for prev, rec in zip(recs, recs[1:]):
        bd = rec.breakdown
        assert [s["name"] for s in bd["stages"]] == list(svc.engine.stages)  # each stage once
        assert bd["window"]["start_s"] >= prev.breakdown["window"]["end_s"]
        assert bd["lost_events"]["total"] == 0
        with zipfile.ZipFile(svc.attachment(rec)) as z:
            raw = z.read("trace.txt").decode()
        stamps = [float(line.split(": ", 1)[0].split()[-1]) for line in raw.splitlines()
                  if not line.startswith("#") and ": " in line]
        assert stamps and min(stamps) >= prev.breakdown["window"]["end_s"] - 1e-6


def test_untraced_request_still_makes_a_clip(svc):
    rec = svc.synthesize(SynthesisRequest(text="No trace."), trace=False)
    assert rec.breakdown is None and os.path.exists(rec.audio_path)
    with zipfile.ZipFile(svc.attachment(rec)) as z:
        assert "trace.txt" not in z.namelist() and z.read("report.txt") == b"Tracing was off for this request.\n"


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


def test_start_hands_back_the_audio_and_the_next_request_does_not_wait_for_its_analysis(svc):
    """Job.record has the audio when start() returns; the analysis and the saved record follow on
    the aux thread, and the next request synthesizes meanwhile."""
    import time
    done = []
    svc.listeners.append(lambda rec: done.append((rec["id"], time.monotonic())))
    job1 = svc.start(SynthesisRequest(text="First of two. 第一个。"), hold=True)  # held: not analysed yet
    returned = time.monotonic()
    assert os.path.getsize(job1.record.audio_path) > 1000 and job1.record.tracing
    rec2 = svc.synthesize(SynthesisRequest(text="Second of two. 第二个。"))  # not behind job1's analysis
    assert job1.record.breakdown is None and not job1.analysed_future.done()
    job1.release()
    rec1 = job1.result(timeout=30)
    assert [i for i, _ in done] == [rec2.id, rec1.id]
    assert returned < done[1][1] and rec1.breakdown["mode"] == "full" and rec2.breakdown["mode"] == "full"
    assert svc.store.get(rec1.id)["breakdown"]["mode"] == "full"
    assert rec1.attachment_path is None and not list(Path(rec1.audio_path).parent.glob("*.zip"))  # not asked for


class Releasing:
    """The real builtin engine; halfway through its synthesis it calls `during()` (say, releasing
    another request's analysis) and waits `wait_s`, so that work lands inside this window."""

    def __init__(self, inner, during, wait_s=0.4):
        self.inner, self.during, self.wait_s = inner, during, wait_s
        self.name, self.label, self.stages, self.sample_rate = inner.name, inner.label, inner.stages, inner.sample_rate

    def synthesize(self, req, stages):
        import time
        fn, self.during = self.during, None
        if fn is not None:
            fn()
            time.sleep(self.wait_s)
        return self.inner.synthesize(req, stages)


def released_inside_the_next(svc, engine, first: str) -> tuple:
    """A request held after its synthesis, released from inside the next request's synthesis (so
    its analysis is queued while that window is open); both records, the service closed."""
    try:
        job1 = svc.start(SynthesisRequest(text=first), hold=True)
        svc.engine = Releasing(engine, lambda: job1.release())
        rec2 = svc.synthesize(SynthesisRequest(text="The next one. 下一个。"))
        rec1 = job1.result(timeout=30)
    finally:
        svc.close()
    return rec1, rec2


def test_overlap_policy_names_our_post_processing_inside_the_next_window(engine, tmp_path):
    """Under "overlap" (the default) a request's analysis may run inside the next window: that
    window's breakdown names it (overlap.steps, the trace-aux thread's on-CPU time, role
    trace-aux), and no finding blames another task for it."""
    svc = Service(engine, Tuner(load_presets()), ClipStore(tmp_path / "out"))
    rec1, rec2 = released_inside_the_next(svc, engine, "Analysed during the next one. 下一个期间分析。")
    ov = rec2.breakdown["overlap"]
    assert ov["policy"] == "overlap" and rec1.breakdown["overlap"]["steps"] == []
    steps = [s for s in ov["steps"] if s["request"] == rec1.id]
    assert steps and steps[0]["step"] == "analysis" and steps[0]["wall_s"] > 0, ov
    aux = [t for t in rec2.breakdown["threads"] if t["role"] == "trace-aux"]
    assert aux and ov["on_cpu_s"] == pytest.approx(sum(t["on_cpu_s"] for t in aux), abs=1e-6) and ov["on_cpu_s"] > 0
    from app.ui.clip_panel import clip_outputs
    from tracing.report import render_report
    said = "our own post-processing (analysis"  # the panel and the report say so, in words
    assert said in clip_outputs(rec2.to_dict())[2] and said in render_report(rec2.breakdown, rec2.findings)
    assert "Overlap" not in clip_outputs(rec1.to_dict())[2]
    ours = {t["tid"] for t in rec2.breakdown["threads"]} | {int(t) for t in rec2.roles}
    for f in rec2.findings:  # our own work is never "another task" holding our CPU
        if f["kind"] == "cpu_contention":
            assert f["evidence"]["pid"] not in ours and all(o["pid"] not in ours for o in f["evidence"]["others"])
    assert settled_instances(os.getpid()) == []


def test_between_policy_keeps_every_window_free_of_post_processing(engine, tmp_path, monkeypatch):
    """Under "between" the same sequence runs the analysis only once the window has closed: no
    window holds a post-processing step, and the trace shows no trace-aux time inside it."""
    import time
    import app.service as service_mod
    ran = []
    for name in ("_analyse", "_complete", "_prepare_next"):
        orig = getattr(service_mod.Service, name)

        def timed(self, *a, _orig=orig, _name=name):
            t0 = time.monotonic()
            try:
                return _orig(self, *a)
            finally:
                ran.append((_name, t0, time.monotonic()))
        monkeypatch.setattr(service_mod.Service, name, timed)
    svc = Service(engine, Tuner(load_presets()), ClipStore(tmp_path / "out"), post="between")
    rec1, rec2 = released_inside_the_next(svc, engine, "Analysed after the next window. 之后分析。")
    w = rec2.breakdown["window"]
    ov = rec2.breakdown["overlap"]
    assert rec1.breakdown["mode"] == "full" and ov["policy"] == "between" and ov["steps"] == [] and ov["wall_s"] == 0
    assert ov["on_cpu_s"] < 0.002, ov  # the aux thread taking the work and queueing for its turn, no more
    assert ran and all(end <= w["start_s"] or start >= w["end_s"] for _, start, end in ran), (ran, w)
    assert any(name == "_analyse" and start >= w["end_s"] for name, start, _ in ran)  # it was held back


def test_held_job_post_processes_only_as_far_as_released(svc):
    """hold=True: nothing after the audio runs until release("analysis"); saving the clip waits
    for release() (the Synthesize handler says when each update went out)."""
    from concurrent.futures import TimeoutError as FutureTimeout
    job = svc.start(SynthesisRequest(text="Held until the audio is out. 等声音送到。"), hold=True)
    assert os.path.getsize(job.record.audio_path) > 1000
    with pytest.raises(FutureTimeout):
        job.analysed(timeout=0.5)
    assert job.record.breakdown is None and svc.busy  # held: still this request's
    job.release("analysis")
    assert job.analysed(timeout=30).breakdown["mode"] == "full"
    with pytest.raises(FutureTimeout):
        job.result(timeout=0.5)
    with pytest.raises(Exception):
        svc.store.get(job.record.id)  # not saved yet
    job.release()
    rec = job.result(timeout=30)
    assert svc.store.get(rec.id)["breakdown"]["mode"] == "full" and not svc.busy
    assert settled_instances(os.getpid()) == []


def test_a_job_never_released_still_completes_and_frees_the_service(svc, monkeypatch):
    """A caller that never releases (a client gone) holds each step HOLD_MAX_S at most."""
    import app.service as service_mod
    monkeypatch.setattr(service_mod, "HOLD_MAX_S", 0.3)
    job = svc.start(SynthesisRequest(text="Nobody says the audio went out."), hold=True)
    rec = job.result(timeout=30)
    assert rec.breakdown["mode"] == "full" and svc.store.get(rec.id)
    assert svc.synthesize(SynthesisRequest(text="The next one runs.")).breakdown["mode"] == "full"
    assert settled_instances(os.getpid()) == []


def test_attachment_is_built_when_asked_cached_and_keeps_the_history_order(svc):
    """The clip keeps the window's pages (and its text, or what writes it: tracing.window
    KernelText) until its attachment is asked for; then the zip (and timeline.png) are built once,
    the kept files go, and the history's order stays."""
    recs = [svc.synthesize(SynthesisRequest(text=f"Clip {i}. 第{i}个。")) for i in range(3)]
    d = Path(recs[-1].audio_path).parent
    kept = {p.name for p in d.iterdir()}
    assert {".trace-meta.json", "audio.wav", "record.json"} <= kept and not {"trace.zip", "timeline.png"} & kept
    assert any(n.startswith(".cpu") and n.endswith(".raw") for n in kept)
    # by the third window the formatter has been checked against the kernel's text: not kept
    assert ".trace.txt" not in kept and "text" in json.loads((d / ".trace-meta.json").read_text())
    d = Path(recs[0].audio_path).parent
    order = svc.store.ids()
    zip_path = svc.attachment(recs[0].id)  # by id, as the History tab asks
    assert {p.name for p in d.iterdir()} == {"audio.wav", "record.json", "trace.zip", "timeline.png"}
    with zipfile.ZipFile(zip_path) as z:
        assert {"trace.txt", "summary.json", "report.txt", "timeline.png"} <= set(z.namelist())
    for r in (recs[0], recs[-1]):  # read as text, and written from the pages
        with zipfile.ZipFile(svc.attachment(r.id)) as z:
            text = z.read("trace.txt").decode()
        assert text.startswith("# tracer:") and "tracing_mark_write: B|" in text
    mtime = os.stat(zip_path).st_mtime_ns
    assert svc.attachment(recs[0].id) == zip_path and os.stat(zip_path).st_mtime_ns == mtime  # cached
    assert svc.store.ids() == order and svc.store.get(recs[0].id)["attachment_path"] == zip_path
    from app.store import ClipNotFound
    with pytest.raises(ClipNotFound):
        svc.attachment("20260101T000000-deadbeef")


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

    import app.artifacts as artifacts_mod

    def broken(bd, path=None):
        raise RuntimeError("no fonts left")
    monkeypatch.setattr(artifacts_mod, "render_timeline", broken)
    rec = svc.synthesize(SynthesisRequest(text="The picture fails. 图片失败。"))
    assert os.path.getsize(rec.audio_path) > 1000 and rec.breakdown["mode"] == "full"
    svc.attachment(rec)
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
    with zipfile.ZipFile(svc.attachment(rec)) as z:  # the raw trace is kept for the user
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


def test_the_standby_is_disarmed_only_when_no_request_started_since_it_was_planned(engine, tmp_path):
    """The idle disarm (Service._disarm, planned standby_idle_s after the service went idle) is
    dropped when a request started since it was planned; otherwise the standby stays prepared
    with its events off, as every spare, and no instance is made or removed; the next request
    re-arms it and is traced in full."""
    from tests.test_idle import _armed
    s = Service(engine, Tuner(load_presets()), ClipStore(tmp_path / "out"), standby_idle_s=3600)
    try:
        s.synthesize(SynthesisRequest(text="Planned while idle."))
        planned = s._activity
        s.synthesize(SynthesisRequest(text="A request starts after the plan."))
        s._prep.submit(s._disarm, planned).result()  # (after the pending preparation: one thread)
        assert s._next_window is not None and not s._disarmed and _armed(os.getpid())
        standby, made = s._next_window, s.instances.created
        s._prep.submit(s._disarm, s._activity).result()
        assert s._next_window is standby and s._disarmed and not _armed(os.getpid())
        rec = s.synthesize(SynthesisRequest(text="The next request re-arms it."))
        bd = rec.breakdown
        assert bd["mode"] == "full" and bd["lost_events"]["total"] == 0
        assert [st["name"] for st in bd["stages"]] == list(engine.stages) and bd["totals"]["on_cpu_s"] > 0.01
        assert not s._disarmed and _armed(os.getpid()) and s.instances.created == made
    finally:
        s.close()


def test_an_attachment_asked_for_while_the_service_closes_says_so(svc):
    """A handler that asks for a clip's attachment after close() shut the aux thread down gets
    ServiceClosed (a sentence; app.ui.common shows the clip without it), not a RuntimeError."""
    from app.service import ServiceClosed
    rec = svc.synthesize(SynthesisRequest(text="Done just before the launcher stops."))
    svc.close()
    with pytest.raises(ServiceClosed, match="shutting down"):
        svc.attachment(rec)
