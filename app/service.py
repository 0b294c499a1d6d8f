"""The per-request hook: preset -> trace window -> engine with stage markers -> analysis -> clip.

No Gradio here: the UI, the CLI snapshot and the tests call Service.start() (the clip as soon as
its audio exists, then its analysis) or Service.synthesize() (the complete clip).

Order matters and is the product's promise:
1. the scheduling preset is in force on every thread (tuner.ensure / request_scope) BEFORE the
   window opens, so the window's tracing_cpumask matches the CPUs synthesis may use;
2. only the engine runs inside the window (stage markers written by the sink);
3. the audio is written and handed back (Job.record) as soon as the engine returns; reading the
   buffer, analysis and saving the clip follow on the aux worker thread (held, when the caller
   asks, until it has delivered the audio: see Job), which the tuner runs at SCHED_BATCH off the
   synthesis CPUs when the preset leaves any free (not SCHED_IDLE: under a CPU hog an idle-class
   thread starved for seconds per request): Job.analysed() when the breakdown and findings are
   in, Job.result() when the clip is saved.
4. the attachment (timeline PNG, trace.dat, zip) is built when someone asks for it
   (Service.attachment(), app/artifacts.py): the clip keeps the window's text and pages for it.
One synthesis at a time per process (a FIFO lock: callers are served in arrival order):
IndexTTS2's caches are not thread-safe, and a request-scoped preset must not be undone under
another request's feet. The next request does not wait for the previous one's post-processing:
under the "overlap" policy (the default) it runs beside the next window, which says so
(breakdown["overlap"], the trace-aux threads named); under "between" the two take turns, so no
window contains it (app/turns.py; ARCHITECTURE.md says why overlap is the default).
A failure while post-processing never loses the clip: it keeps its audio, is saved, and its notes
say what failed.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import soundfile as sf

from models.base import InputError, SynthesisRequest
from app import artifacts, device_view
from app.artifacts import versions  # noqa: F401  (where it always was, for callers)
from app.queue_time import QueueClock
from app.store import ClipStore
from app.turns import FifoLock, Turns
from tracing import tracedat
from tracing.analysis import SEGMENT_COUNTER
from tracing.findings import findings as make_findings
from tracing.ids import new_request_id
from tracing.instances import InstancePool
from tracing.window import TraceWindow, check_text, process_cpus
from tuning.apply import Tuner, TuningError
from tuning.roles import TRACE_AUX, ThreadRoles

log = logging.getLogger("service")

Progress = Callable[[float, str], None]  # (fraction 0..1, description)
# (int16 audio, sample rate, segment index, time.monotonic() of the hand-off): called on the
# synthesis thread; must only queue the segment (app/streaming.py)
OnSegment = Callable[..., None]
# After this long with no request, the standby window (the next request's, prepared ahead: its
# events on, not recording) is disarmed. An instance with events on runs a probe on every one of
# those events on the whole machine even while it records nothing: one standby cost a
# `stress-ng --switch 2` neighbour 11% of its context switches here (docs/throughput.md). The
# first request after that waits for the re-arm (~10-20 ms of wall here, event enables).
STANDBY_IDLE_S = 10.0


class ServiceError(RuntimeError):
    """A request failed for a reason the user should read (engine failure, tuning refusal)."""


class ServiceClosed(ServiceError):
    """The service is closing (the launcher stops): no more aux work is taken."""


class _Stages:
    """StageSink handed to the engine: writes atrace markers into the window (when tracing),
    moves the progress bar stage by stage, and takes the engine's segments (segment())."""

    def __init__(self, window: TraceWindow | None, progress: Progress | None, names: tuple[str, ...],
                 on_segment: OnSegment | None = None):
        self.window, self.progress, self.names = window, progress, list(names)
        self.seen: list[str] = []
        self.on_segment = on_segment
        self.t0: float | None = None  # synthesis start (time.monotonic), set by the service
        self.segment_s: list[float] = []  # when each segment was handed over, seconds after t0

    def segment(self, audio, sample_rate: int) -> None:
        """On the synthesis thread, the moment a segment exists: note the time, mark it in the
        window (the analysis splits the breakdown at the first one, tracing.analysis
        SEGMENT_COUNTER), hand it on. Nothing here reads or writes the audio: the caller's
        callback only queues it (app/streaming.py), so no tracing work delays the sound."""
        t = time.monotonic()
        self.segment_s.append(round(t - (self.t0 if self.t0 is not None else t), 4))
        if self.window is not None:
            self.window.marker(f"C|{os.getpid()}|{SEGMENT_COUNTER}|{len(self.segment_s)}")
        if self.on_segment is not None:
            self.on_segment(audio, sample_rate, len(self.segment_s) - 1, t)

    @contextlib.contextmanager
    def stage(self, name: str):
        self.seen.append(name)
        if self.progress:
            i = self.names.index(name) if name in self.names else len(self.seen) - 1
            total = max(len(self.names), i + 1)
            self.progress(min(0.95, i / total), f"{name} ({i + 1}/{total})")
        cm = self.window.stage(name) if self.window is not None else contextlib.nullcontext()
        with cm:
            yield


@dataclass
class ClipRecord:
    id: str
    created: str
    engine: str
    engine_label: str
    text: str
    audio_path: str
    duration_s: float
    wall_s: float
    rtf: float
    preset: dict  # what was in force, read back from the kernel
    params: dict  # the request as the engine saw it
    tracing: bool
    breakdown: dict | None = None
    findings: list = field(default_factory=list)
    attachment_path: str | None = None
    timeline_path: str | None = None
    stages: list = field(default_factory=list)
    engine_info: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    roles: dict = field(default_factory=dict)  # tid -> role kind (tuning.roles) when synthesis ran
    queue_s: float | None = None  # arrival to synthesis start, apart from wall_s (app/queue_time.py)
    queue_ahead: int | None = None  # requests served before this one that were in when it arrived
    # time to first sound on the server: synthesis start -> the first segment handed over (the
    # engine's StageSink.segment); wall_s when the engine handed the clip over in one piece
    first_sound_s: float | None = None
    segment_s: list = field(default_factory=list)  # each segment's hand-off, seconds after the start

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# How long a held step waits for Job.release() at most: a caller that never says its update went
# out (a client gone mid-request) must not stall the post-processing.
HOLD_MAX_S = 2.0
HELD_STEPS = ("analysis", "complete")  # what Job.release() lets run, in the order they run


class Job:
    """One request after its synthesis: `record` has the audio, id, engine and preset in force;
    the analysis runs on the service's aux thread. Post-processing failures end up in
    record.notes, never as exceptions here.

    Started with hold=True, the post-processing waits for the caller: the analysis until
    release("analysis") (say it once the client has the audio), saving the clip until release()
    (once the breakdown went out), each at most HOLD_MAX_S. Run at once, the post-processing
    competed with delivering those updates for the GIL and the CPUs (issue 15, 2 vCPUs: time to
    audio traced/untraced 1.27, audio to breakdown 174 ms; held: 1.0, 111 ms). A held step is not
    queued until it is released, so it holds nothing else back: not the aux thread, not the
    next request."""

    def __init__(self, record: "ClipRecord", run_step: Callable[["Job", str], None]):
        self.record = record
        self._run_step = run_step  # queues a released step's work on the aux thread
        self._lock = threading.Lock()
        self._released: set[str] = set()
        self._queued: set[str] = set()
        self._timers: list[threading.Timer] = []
        self.analysed_future: Future = Future()  # set by the service when the step has run
        self.done_future: Future = Future()

    def release(self, step: str = "complete") -> None:
        """Let the post-processing run up to and including `step` (HELD_STEPS). Idempotent."""
        with self._lock:
            self._released.update(HELD_STEPS[:HELD_STEPS.index(step) + 1])
        self._advance()

    def hold(self, step: str) -> None:
        """Release `step` by itself after HOLD_MAX_S unless the caller does it first."""
        def expire():
            if step not in self._released:
                log.info("request %s: %s not released in %.1f s, running it anyway", self.record.id, step, HOLD_MAX_S)
            self.release(step)
        t = threading.Timer(HOLD_MAX_S, expire)
        t.daemon = True
        with self._lock:
            self._timers.append(t)
        t.start()

    def _advance(self) -> None:
        """Queue what is released and ready: the analysis, then (once it ran) the rest."""
        todo = []
        with self._lock:
            for step in HELD_STEPS:
                ready = step == "analysis" or self.analysed_future.done()
                if step in self._released and step not in self._queued and ready:
                    self._queued.add(step)
                    todo.append(step)
            if self._queued == set(HELD_STEPS):
                for t in self._timers:
                    t.cancel()
                self._timers.clear()  # (each timer's closure refers back to this job: a cycle)
        for step in todo:
            self._run_step(self, step)

    def analysed(self, timeout: float | None = None) -> "ClipRecord":
        """The record with its breakdown and findings (or a note saying why there are none)."""
        self.analysed_future.result(timeout)
        return self.record

    def result(self, timeout: float | None = None) -> "ClipRecord":
        """The saved record (breakdown, findings; the attachment is Service.attachment()'s),
        listeners told."""
        self.done_future.result(timeout)
        return self.record


class Service:
    def __init__(self, engine, tuner: Tuner, store: ClipStore, tracing_enabled: bool = True,
                 trace_root: str | None = None, buffer_kb: int | None = None, device_view: str = "auto",
                 post: str = "overlap", standby_idle_s: float = STANDBY_IDLE_S):
        """post: "overlap" | "between", how a request's post-processing shares the machine with
        the next request's window (app/turns.py). standby_idle_s: how long the next request's
        window stays armed once the service is idle (STANDBY_IDLE_S)."""
        self.engine = engine
        self.device_view = device_view  # app/device_view.py LEVELS
        self.tuner = tuner
        self.store = store
        self.tracing_enabled = tracing_enabled
        self.trace_root = trace_root
        self.buffer_kb = buffer_kb
        self.turns = Turns(post)
        self._lock = FifoLock()  # one synthesis at a time, in arrival order
        self.roles = ThreadRoles()  # threads named by role in the kernel, so traces say who is who
        # the aux worker: one thread, placed off the synthesis CPUs by the tuner when it starts
        self._aux = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-aux",
                                       initializer=self._place_aux)
        # trace.dat (two trace-cmd runs, tens of ms) overlaps the timeline picture on a second one
        self._dat = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-dat",
                                       initializer=self._place_aux)
        self._dat_ready: str | None = None  # tracefs root whose trace.dat stub is built
        # the next window's preparation (and discarding a prepared window nobody can use) on a
        # thread of its own: a request's analysis starts once the client has its audio, not after
        # the next window's preparation (~40 ms quiet, 50-140 ms under load: issue 25)
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-prep",
                                        initializer=self._place_aux)
        for ex in (self._aux, self._dat, self._prep):  # the threads exist, placed and named, before we serve
            ex.submit(lambda: None).result()
        self.requests = 0
        self.failures = 0
        self._counts_lock = threading.Lock()
        self.queue = QueueClock()  # queue time and requests ahead; waiting/running counts
        self.listeners: list[Callable[[dict], None]] = []  # e.g. Prometheus metrics
        self._jobs: set[Job] = set()  # requests whose post-processing has not finished
        self._jobs_lock = threading.Lock()
        # The next request's trace window, created and configured ahead of time on the trace-prep thread
        # (mkdir + buffer allocation + event enables cost ~40 ms), so that opening the window on
        # the synthesis path is one write to tracing_on. _next_ready: that preparation's future.
        self._next_window = None
        self._next_ready: Future | None = None
        # windows reuse configured instances: creating one and removing one each wait on the
        # kernel for tens to hundreds of ms under load (tracing/instances.py)
        self.instances = InstancePool()
        # disarming the standby when idle: _activity counts requests started, so a disarm planned
        # before one of them is dropped; _disarmed until the next start() re-arms it
        self.standby_idle_s = max(0.0, float(standby_idle_s))
        self._standby_lock = threading.Lock()
        self._idle = threading.Condition(self._standby_lock)  # wakes the watcher for a new plan
        self._activity = 0
        self._disarmed = False
        self._disarm_plan: tuple[float, int] | None = None  # (when, the _activity it was planned at)
        self._closing = False
        # one watcher for the whole service, not a timer thread per idle spell: a thread started by
        # an aux thread would inherit its name and SCHED_BATCH and pass for one of them
        self._watcher = threading.Thread(target=self._watch_idle, name="standby-watch", daemon=True)
        if self.tracing_enabled:
            self._watcher.start()
            self._next_ready = self._prep.submit(self._step, "-", "prepare", self._prepare_next)

    def _step(self, rid: str, step: str, fn, *args, exclusive: bool = False):
        """One piece of aux work, inside its turn (app/turns.py)."""
        with self.turns.step(rid, step, exclusive=exclusive):
            return fn(*args)

    def _prepare_next(self) -> None:
        try:
            self._next_window = self._window().prepare()
            root = self._next_window.caps.root if self._next_window.caps.mode == "full" else None
            if root and self._dat_ready != root and tracedat.trace_cmd():
                tracedat.prepare(root)  # once, here rather than in the first attachment's build
                self._dat_ready = root
        except Exception as e:
            log.warning("could not prepare a trace window ahead: %s", e)
            self._next_window = None

    def _take_window(self) -> TraceWindow:
        """The prepared window, pointed at the CPUs the process may use now (a preset may have
        changed them since it was prepared), else a fresh one. Called under self._lock: waits for
        the preparation queued after the previous window (never for other requests' analysis)."""
        ready, self._next_ready = self._next_ready, None
        if ready is not None:
            ready.exception()  # finished (its failure is logged there: a fresh window follows)
        w, self._next_window = self._next_window, None
        if w is not None and w.retarget(process_cpus(os.getpid())):
            return w
        if w is not None:
            self._prep.submit(self._step, "-", "discard", w.discard)
        return self._window()

    def wake(self) -> None:
        """A request is on its way (the HTTP layer saw it arrive: app.queue_time.ArrivalStamp):
        re-arm a disarmed standby now, so that Gradio's own dispatch (26-40 ms on 6.31) overlaps
        the re-arm instead of the request waiting for it in start(). Should no request follow, the
        standby is disarmed again after standby_idle_s. Cheap and non-blocking (event loop): an
        armed standby (the service busy, or idle for less than standby_idle_s) is left as it is."""
        with self._standby_lock:
            if not self._disarmed:
                return
        self._rearm()
        if not self.busy:
            self._disarm_later()

    def _rearm(self) -> None:
        """A request starts (or is on its way): a standby disarmed while idle gets its events back
        on the trace-prep thread (the request waits for it in _take_window, as for any preparation)."""
        with self._standby_lock:
            self._activity += 1
            if self._disarmed:
                self._disarmed = False
                self._next_ready = self._prep.submit(self._step, "-", "rearm", self._arm_next)

    def _arm_next(self) -> None:
        w = self._next_window
        if w is None:
            return self._prepare_next()
        try:
            w.arm(True)
        except (OSError, RuntimeError) as e:
            log.warning("could not re-arm the prepared trace window: %s", e)
            self._next_window = None
            w.discard()
            self._prepare_next()

    def _disarm_later(self) -> None:
        """The service went idle: disarm the standby after standby_idle_s unless a request starts
        meanwhile (the plan replaces any earlier one)."""
        if not self.tracing_enabled:
            return
        with self._idle:
            self._disarm_plan = (time.monotonic() + self.standby_idle_s, self._activity)
            self._idle.notify()

    def _watch_idle(self) -> None:
        """The watcher thread: hands a due disarm plan to the trace-prep thread."""
        with self._idle:
            while not self._closing:
                if self._disarm_plan is None:
                    self._idle.wait()
                    continue
                when, seen = self._disarm_plan
                left = when - time.monotonic()
                if left > 0:
                    self._idle.wait(left)
                    continue
                self._disarm_plan = None
                try:
                    self._prep.submit(self._step, "-", "disarm", self._disarm, seen)
                except RuntimeError:  # the service is closing
                    return

    def _disarm(self, seen: int) -> None:
        """On the trace-prep thread: the standby window's events off, and every spare's, if no
        request started since the disarm was planned (`seen`). The window stays prepared (no
        instance is made or removed while idle): _rearm() turns its events on again."""
        with self._standby_lock:
            if seen != self._activity or self._disarmed or self.busy:
                return
            self._disarmed = True
        w = self._next_window
        if w is not None:
            try:
                w.arm(False)
            except (OSError, RuntimeError) as e:  # _arm_next() re-arms or replaces it
                log.warning("could not disarm the prepared trace window: %s", e)
        self.instances.quiet()

    def _window(self) -> TraceWindow:
        return TraceWindow(root=self.trace_root, buffer_kb=self.buffer_kb, pool=self.instances)

    def _place_aux(self) -> None:
        self.roles.name_current(TRACE_AUX)
        try:
            self.tuner.place_aux_thread()
        except Exception as e:  # placement is best effort: never fail a request over it
            log.warning("could not place the trace-aux thread: %s", e)

    @property
    def busy(self) -> bool:
        """A request holds the service (synthesis, or waits for it) or its post-processing is not
        finished; periodic snapshot probes wait for this to clear (app/periodic.py,
        itts_service_busy at /metrics)."""
        with self._jobs_lock:
            pending = bool(self._jobs)
        return self._lock.locked() or pending

    @contextlib.contextmanager
    def exclusive(self):
        """Hold the synthesis lock (in arrival order): no request synthesizes inside. For changes
        that must not land under a running request, like switching the preset service-wide."""
        with self._lock:
            yield

    def close(self) -> None:
        with self._jobs_lock:
            jobs = list(self._jobs)
        for job in jobs:  # nobody will release them now: let them finish
            job.release()
        for job in jobs:
            with contextlib.suppress(Exception):
                job.result(timeout=60)
        with self._idle:
            self._closing = True
            self._idle.notify()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        self._dat.shutdown(wait=True)
        self._aux.shutdown(wait=True)
        self._prep.shutdown(wait=True)  # a preparation in flight finishes first...
        w, self._next_window = self._next_window, None
        if w is not None:
            w.discard()  # ...so that no prepared window outlives the service
        self.instances.close()
        self.roles.restore()  # threads get their own names back

    def synthesize(self, req: SynthesisRequest, preset: str | None = None, scope: str = "service",
                   trace: bool | None = None, progress: Progress | None = None,
                   history: bool = True) -> ClipRecord:
        """Run one request to the end (start() then Job.result()): the saved clip (its attachment:
        attachment(record)).
        `history=False`: the clip's files go to a scratch directory, not the history (no record, no
        retention: nothing of the user's is pushed out); the caller removes it with
        store.discard(record.id) once it has taken what it needs."""
        job = self.start(req, preset, scope, trace, progress, history)
        if progress and job.record.tracing:
            progress(0.97, "analysing the trace")
        return job.result()

    def refused(self) -> None:
        """Count a request refused for its input (text, scope, preset), here or by a handler
        before it reached the service: a failed request too (itts_requests_total{status="error"})."""
        self._failed()

    def _failed(self) -> None:
        with self._counts_lock:  # handlers refuse requests on their own threads, beside a synthesis
            self.failures += 1

    def start(self, req: SynthesisRequest, preset: str | None = None, scope: str = "service",
              trace: bool | None = None, progress: Progress | None = None, history: bool = True,
              hold: bool = False, arrived: float | None = None, on_segment: OnSegment | None = None,
              ticket=None) -> Job:
        """Synthesize; return as soon as the audio is written, with the post-processing queued
        (hold=True: each step waits for Job.release(), see Job). `arrived`: when the request reached
        the server (app.queue_time.arrival_of), for its queue time; default: now. on_segment(audio,
        sample_rate, index, t) gets each segment while synthesis goes on (app/streaming.py).
        `ticket`: the request's queue ticket when the caller took it already (self.queue.arrive():
        app/streaming.py does, before the request waits for its worker thread).
        Raises InputError (bad input), TuningError (preset refused; nothing changed) or
        ServiceError (engine failed; window closed, preset restored)."""
        try:
            req.validate()
            if scope not in ("service", "request"):
                raise InputError(f"Unknown preset scope {scope!r}: use 'service' or 'request'.")
            if preset is not None and preset not in self.tuner.presets:
                raise InputError(f"Unknown preset {preset!r}. Available: {', '.join(self.tuner.allowed)}.")
        except InputError:
            self.refused()
            if ticket is not None:
                self.queue.finish(ticket)
            raise
        trace = self.tracing_enabled if trace is None else bool(trace)
        self._rearm()
        ticket = ticket or self.queue.arrive(arrived)
        try:
            return self._start_locked(ticket, req, preset, scope, trace, progress, history, hold, on_segment)
        finally:  # later requests wait for its synthesis only, never for its post-processing
            self.queue.finish(ticket)

    def _start_locked(self, ticket, req, preset, scope, trace, progress, history, hold, on_segment=None) -> Job:
        with self._lock:
            self.requests += 1
            rid = new_request_id()
            try:
                clip_dir = self.store.new_dir(rid, scratch=not history)
            except OSError as e:
                self._failed()
                raise ServiceError(_storage_error("create the clip's directory", self.store.root, e)) from e
            try:
                record, window, dv = self._run(rid, clip_dir, req, preset, scope, trace, progress, ticket,
                                               on_segment)
            except BaseException:
                self._failed()
                self.store.discard(rid)  # nothing half-written stays in history (and its claim goes)
                raise
            if trace:  # the next request's window gets ready first: it waits for nothing else
                self._next_ready = self._prep.submit(self._step, "-", "prepare", self._prepare_next)
        post = {"window": window, "clip_dir": clip_dir, "history": history, "device": dv}
        job = Job(record, lambda j, step: self._aux.submit(self._post_step, j, step, post))
        with self._jobs_lock:
            self._jobs.add(job)
        if hold:
            job.hold("analysis")
        else:
            job.release()
        return job

    def _post_step(self, job: Job, step: str, post: dict) -> None:
        """On the aux thread: one released step of a request's post-processing, in its turn."""
        rid, future = job.record.id, job.analysed_future if step == "analysis" else job.done_future
        try:
            if step == "analysis":
                self._step(rid, step, self._analyse, job.record, post)
            else:
                self._step(rid, step, self._complete, job.record, post)
        except BaseException as e:  # the steps note their own failures: this is a bug, said so
            log.exception("post-processing step %s failed on request %s", step, rid)
            job.record.notes.append(f"Post-processing failed ({type(e).__name__}: {e}).")
        finally:
            future.set_result(job.record)
            if step == "analysis":
                if HELD_STEPS[-1] not in job._released:
                    job.hold(HELD_STEPS[-1])
                job._advance()
            else:
                with self._jobs_lock:
                    self._jobs.discard(job)
                if not self.busy:  # idle now: spare instances stop costing the system per event
                    self._prep.submit(self._step, "-", "quiet", self.instances.quiet)
                    self._disarm_later()
                # the window's pages, the device profile: freed now, not at the next full gc
                # collection (the job's step runner, which holds `post`, is in cycles through
                # futures and timers; measured: +2.4 MB of RSS per request until one ran)
                post.clear()

    def _run(self, rid, clip_dir, req, preset, scope, trace, progress, ticket, on_segment=None) -> tuple:
        if scope == "request" and preset:
            scope_cm = self.tuner.request_scope(preset)
        else:
            if preset and preset != self.tuner.current.name:
                self.tuner.apply(preset)
            self.tuner.ensure()  # threads created since the last request get the preset too
            scope_cm = contextlib.nullcontext()
        window = None
        with scope_cm:
            # name this thread, its torch team and the server's threads before the window opens,
            # so every event of the window carries the role names
            roles = self.roles.name_synthesis_thread(sys.modules.get("torch"))
            in_force = self.tuner.readback()
            window = self._take_window() if trace else None  # before the clock: not synthesis
            dv = device_view.DeviceCapture(self.engine, window, self.device_view)  # GPU side, on CUDA
            sink = _Stages(window, progress, self.engine.stages, on_segment)
            t0 = sink.t0 = time.monotonic()
            queued = None
            try:
                # real-time presets: this request's RLIMIT_RTTIME budget (tuning/rtbudget.py), taken
                # once its turn came (a turn waited for would size the next budgets)
                if trace:
                    with self.turns.window():  # (a turn waited for is queue time, not synthesis)
                        t0 = sink.t0 = time.monotonic()
                        queued = self.queue.start(ticket, t0)
                        with self.tuner.rt_request(len(req.text)) as rt, window, dv:
                            result = self.engine.synthesize(req, sink)
                else:
                    queued = self.queue.start(ticket, t0)
                    with self.tuner.rt_request(len(req.text)) as rt:
                        result = self.engine.synthesize(req, sink)
                in_force.update(rt.to_readback())  # a demotion during the request is the clip's to say
            except (InputError, TuningError):
                raise
            except Exception as e:  # (the window gave its instance back on the way out)
                log.exception("engine failed on request %s", rid)
                raise ServiceError(f"Synthesis failed in the {self.engine.name} engine: {e}") from e
            wall = time.monotonic() - t0
        try:
            record = self._audio(rid, clip_dir, req, result, wall, in_force, trace, roles)
            record.queue_s, record.queue_ahead = round(queued[0], 4), queued[1]
            record.segment_s = list(sink.segment_s)
            record.first_sound_s = sink.segment_s[0] if sink.segment_s else record.wall_s
            return record, window, dv
        except BaseException as e:
            if window is not None:
                window.discard()  # never keep an instance from the pool
            if isinstance(e, OSError):
                raise ServiceError(_storage_error("write the clip's audio", self.store.root, e)) from e
            raise

    def _audio(self, rid, clip_dir, req, result, wall, in_force, trace, roles) -> ClipRecord:
        """Write the audio; the record as the first update shows it."""
        audio_path = clip_dir / "audio.wav"
        sf.write(audio_path, result.audio, result.sample_rate, subtype="PCM_16")
        return ClipRecord(
            id=rid, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            engine=self.engine.name, engine_label=self.engine.label, text=req.text,
            audio_path=str(audio_path), duration_s=round(result.duration_s, 3), wall_s=round(wall, 4),
            rtf=round(wall / result.duration_s, 4) if result.duration_s else 0.0,
            preset=in_force, params=req.to_dict(), tracing=trace,
            stages=list(self.engine.stages), engine_info=_jsonable(result.info), roles=dict(roles))

    # -- post-processing, on the aux thread, in this order -------------------------------------
    def _analyse(self, record: ClipRecord, post: dict) -> None:
        """Breakdown and findings. The window (read, stopped) gives its instance back to the pool in
        _complete()."""
        window = post["window"]
        if window is None:
            record.notes.append("Tracing was off for this request: no kernel breakdown.")
            return
        try:
            cap = window.collect(release=False)
            bd = window.analyze(release=False).to_dict()
            for t in bd.get("threads") or []:
                t["role"] = record.roles.get(t.get("tid"))
            bd["overlap"] = overlap_of(bd, self.turns.during(cap.start_ts, cap.end_ts), self.turns.policy)
            # bd["device"]; the exported profile stays a hidden file of the clip for its attachment
            device_view.attach(post.get("device"), bd, post["clip_dir"])
            record.findings = make_findings(bd, {"preset": record.preset, "roles": record.roles})
            record.breakdown = bd
        except Exception as e:
            log.exception("analysis failed on request %s", record.id)
            record.notes.append(f"The kernel trace could not be analysed ({type(e).__name__}: {e}); "
                                "the audio is fine.")

    def _complete(self, record: ClipRecord, post: dict) -> None:
        """Keep what the attachment will need, give the instance back to the pool, save the record,
        tell the listeners. Each step that fails adds a note and the next still runs: reporting never
        undoes collection."""
        window = post["window"]
        try:
            cap = window.collected if window is not None else None
            if cap is not None and cap.text_check:  # once per process (tracing.window.KernelText)
                check_text(cap)
            artifacts.keep(post["clip_dir"], cap)
        except Exception as e:
            log.exception("could not keep the trace of request %s", record.id)
            record.notes.append(f"The raw trace could not be kept for the attachment ({e}).")
        finally:
            if window is not None:
                window.discard()  # never keep an instance from the pool
        try:
            if post["history"]:  # a snapshot's requests are not clips (see synthesize)
                self.store.save_record(record.to_dict())
        except Exception as e:
            log.exception("could not save the record of request %s", record.id)
            record.notes.append(f"The clip could not be saved to the history ({e}).")
        for fn in self.listeners:
            try:
                fn(record.to_dict())
            except Exception:
                log.exception("listener failed")

    # -- the attachment, when asked for ----------------------------------------------------------
    def attachment(self, clip: "ClipRecord | str") -> str:
        """The clip's attachment zip, built on the first call and cached (app/artifacts.py): a
        record this service returned (complete: Job.result()) or a request id from the history.
        The build takes its turn with the trace windows (it runs trace-cmd, which a window could
        not tell from a neighbour). Raises ClipNotFound (no such clip) or ServiceError (the zip
        could not be written)."""
        if isinstance(clip, ClipRecord):
            rec, clip_dir = clip, Path(clip.audio_path).parent
        else:
            stored = self.store.get(clip)
            rec, clip_dir = None, self.store.path(clip, "record").parent
        done = artifacts.built(clip_dir)
        if done is not None:
            return str(done)
        try:
            build = self._aux.submit(self._step, clip if rec is None else rec.id, "attachment", self._build,
                                     rec, None if rec is not None else stored, clip_dir, exclusive=True)
        except RuntimeError as e:  # close() shut the aux thread down: the launcher is stopping
            raise ServiceClosed("The launcher is shutting down: download this clip's trace attachment "
                                "from History once it is back.") from e
        return build.result()

    def _build(self, rec: "ClipRecord | None", stored: dict | None, clip_dir: Path) -> str:
        record = rec.to_dict() if rec is not None else stored
        try:
            zip_path, notes, timeline = artifacts.build(clip_dir, record, self._dat)
        except OSError as e:
            raise ServiceError(_storage_error("write the trace attachment", self.store.root, e)) from e
        record["notes"] = [*(record.get("notes") or []), *notes]
        record["attachment_path"], record["timeline_path"] = str(zip_path), str(timeline) if timeline else None
        if rec is not None:
            rec.notes, rec.attachment_path, rec.timeline_path = record["notes"], str(zip_path), record["timeline_path"]
        self.store.update_record(record)  # the history's copy says the same (order kept)
        return str(zip_path)


def overlap_of(bd: dict, steps: list[dict], policy: str) -> dict:
    """breakdown["overlap"]: our own post-processing of other requests that ran inside this window.
    steps: Turns.during() (request, step, wall_s inside the window); wall_s: their sum (seconds
    of the window during which a step ran, counted per step); on_cpu_s: the trace-aux threads'
    on-CPU time in this window, as the trace measured it (their role names them in `threads`)."""
    aux = [t for t in bd.get("threads") or [] if t.get("role") == TRACE_AUX]
    return {"policy": policy, "steps": steps, "wall_s": round(sum(s["wall_s"] for s in steps), 6),
            "on_cpu_s": round(sum(t.get("on_cpu_s") or 0.0 for t in aux), 6)}


def _storage_error(what: str, root, e: OSError) -> str:
    return (f"Could not {what} under {root}: {e.strerror or e}. Nothing was kept; check that the "
            f"--outputs directory exists, is writable and has space, then try again.")


def _jsonable(obj):
    """Engine info may carry numpy scalars/arrays; make it JSON-safe."""
    import numpy as np
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
