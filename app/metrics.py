"""Prometheus metrics of the launcher: GET /metrics, fed by Service.listeners (one call per clip).

This is how a fleet of launchers (one per GPU host) is watched with Prometheus/Grafana. All
metrics live in this module's own CollectorRegistry (not the process-global one), so nothing a
library registers leaks in and tests can build several side by side.

Metrics (times in seconds; labels: preset = the preset in force as read back, engine = engine name):
- itts_request_wall_seconds{preset,engine}            histogram: wall time of the synthesis window
- itts_queue_seconds{preset,engine}                   histogram: queue time, from the request's
      arrival at the server to its synthesis start, never part of the wall time (app/queue_time.py;
      QUEUE_BUCKETS reach 300 s: MAX_QUEUED requests of several seconds each)
- itts_breakdown_seconds{component,preset,engine}     histogram: the clip's breakdown totals,
      component in on_cpu, runqueue_wait, blocked_io, sleep, irq, softirq, reclaim (definitions:
      ARCHITECTURE.md; summed over the request's threads, so on_cpu can exceed wall)
- itts_stage_seconds{stage,component,preset,engine}   histogram: the same per pipeline stage
      (breakdown["stages"]), plus component="wall" for the stage's own duration
- itts_time_to_audio_seconds{preset,engine}          histogram: queue_s + wall_s, the request's
      arrival at the server to the end of its synthesis (the audio is written and sent right after)
- itts_blocker_seconds_total{comm,preset,engine}      counter: time other tasks ran on a CPU where
      one of our threads sat runnable (the breakdown's blockers, each clip's top TOP_BLOCKERS),
      comm as the kernel names the task with its instance number dropped (kworker/1:2 -> kworker,
      stress-ng-cpu) so the label stays bounded; beyond MAX_COMMS names, "other"
- itts_gpu_idle_share{preset,engine}                  histogram: the share of the synthesis window the
      serving GPU sat idle (device view, tracing/device.py; only requests that have one)
- itts_gpu_host_wait_share{preset,engine}             histogram: the share it sat idle waiting for the
      host (HTA's host_wait: the next launch came after the GPU went idle)
- itts_first_sound_seconds{preset,engine}            histogram: time to first sound on the server
      (synthesis start -> the first audio segment handed over; ClipRecord.first_sound_s)
- itts_first_sound_breakdown_seconds{component,preset,engine}  histogram: the breakdown of the time
      before the first sound (breakdown["first_sound"]["before"]), components as above
- itts_lost_events_total{preset,engine}               counter: trace events the kernel dropped
      (a non-zero rate means breakdowns are incomplete: enlarge --trace-buffer-kb)
- itts_findings_total{kind,severity}                  counter: diagnosis findings by kind
- itts_requests_total{engine,status}                  counter: status "ok" (a clip was produced)
      or "error" (Service.failures: bad input, refused preset, engine failure)
- itts_requests_running                               gauge: requests synthesizing (later requests
      wait for a request's synthesis only, not for its post-processing)
- itts_requests_waiting                               gauge: requests accepted and not started: in
      Gradio's queue of the service's events (Synthesize, Compare, Apply preset) or waiting for the
      service's lock
- itts_service_busy                                   gauge: 1 while a request holds or waits for
      the service, or its post-processing runs, else 0; periodic snapshot probes wait for 0 (app/periodic.py)
- itts_audio_delivery_total{outcome}                  counter: Synthesize requests whose audio the
      client fetched ("fetched") before the post-processing started, or not within
      --audio-wait-s ("timeout": an API client that does not download files, a proxy that
      rewrites the /file= route, or updates that reach the client late; each such breakdown came
      that much later)
Periodic snapshots (the launcher's --snapshot-series directory, read at each scrape; absent
until the first snapshot is recorded; tracing/series.py, tracing/diff.py for the tests):
- itts_snapshot_regression{kind}                      gauge 0/1: the latest snapshot against the
      pinned baseline, kind in any, median, tail, blocker (0 while the latest is the baseline)
- itts_snapshot_metric_regression{preset,metric,kind}  gauge 0/1 per preset x metric, kind
      median | tail
- itts_snapshot_seconds{preset,metric,quantile,snapshot}  gauge: p50 (quantile "0.5") and p95
      ("0.95") of wall and runqueue_wait, snapshot "latest" | "baseline"
- itts_snapshot_timestamp_seconds{snapshot}           gauge: when the latest / baseline started
      (Unix time; alert when the series goes stale)
- itts_snapshot_idle_wait_seconds                     gauge: how long the latest run waited for the
      service to be idle before its probes
- itts_snapshot_series_entries                        gauge: snapshots kept in the series
Untraced requests (tracing off) count in requests and wall only.
Buckets span 1 ms .. 30 s (BUCKETS); anything above lands in +Inf.
"""
from __future__ import annotations

import logging
import re
import threading

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from tracing.series import POINT_METRICS, latest, load_series

log = logging.getLogger("metrics")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
QUEUE_BUCKETS = (*BUCKETS, 60.0, 120.0, 300.0)
TOP_BLOCKERS = 5
MAX_COMMS = 50
COMPONENTS = ("on_cpu", "runqueue_wait", "blocked_io", "sleep", "irq", "softirq", "reclaim")
SHARE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
_MAX_LABEL = 64  # stage/kind names come from code, but a label must never grow without bound


def _label(v, default: str = "unknown") -> str:
    s = str(v) if v not in (None, "") else default
    return s[:_MAX_LABEL]


def _num(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0:
        return None
    return float(v)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.wall = Histogram("itts_request_wall_seconds", "Wall time of the synthesis window per request",
                              ["preset", "engine"], buckets=BUCKETS, registry=r)
        self.queue = Histogram("itts_queue_seconds", "Queue time: arrival at the server to synthesis start",
                               ["preset", "engine"], buckets=QUEUE_BUCKETS, registry=r)
        self.to_audio = Histogram("itts_time_to_audio_seconds", "Arrival at the server to the end of synthesis "
                                  "(queue + wall)", ["preset", "engine"], buckets=QUEUE_BUCKETS, registry=r)
        self.blockers = Counter("itts_blocker_seconds", "Time other tasks held a CPU where our thread was runnable",
                                ["comm", "preset", "engine"], registry=r)
        self._comms: set[str] = set()
        self.breakdown = Histogram("itts_breakdown_seconds",
                                   "Per-request kernel breakdown totals (summed over the request's threads)",
                                   ["component", "preset", "engine"], buckets=BUCKETS, registry=r)
        self.stage = Histogram("itts_stage_seconds", "Per-stage kernel breakdown; component=wall is the stage duration",
                               ["stage", "component", "preset", "engine"], buckets=BUCKETS, registry=r)
        self.gpu_idle = Histogram("itts_gpu_idle_share", "Share of the synthesis window the serving GPU was idle",
                                  ["preset", "engine"], buckets=SHARE_BUCKETS, registry=r)
        self.gpu_host_wait = Histogram("itts_gpu_host_wait_share",
                                       "Share of the synthesis window the serving GPU waited for the host (host_wait)",
                                       ["preset", "engine"], buckets=SHARE_BUCKETS, registry=r)
        self.first_sound = Histogram("itts_first_sound_seconds",
                                     "Time to first sound: synthesis start -> first audio segment handed over",
                                     ["preset", "engine"], buckets=BUCKETS, registry=r)
        self.first_sound_bd = Histogram("itts_first_sound_breakdown_seconds",
                                        "Kernel breakdown of the time before the first sound",
                                        ["component", "preset", "engine"], buckets=BUCKETS, registry=r)
        self.lost = Counter("itts_lost_events_total", "Trace events lost (ring buffer overrun or dropped)",
                            ["preset", "engine"], registry=r)
        self.findings = Counter("itts_findings_total", "Diagnosis findings by kind and severity",
                                ["kind", "severity"], registry=r)
        self.requests = Counter("itts_requests_total", "Requests by outcome", ["engine", "status"], registry=r)
        self._lock = threading.Lock()
        self._failures_seen = 0

    def observe(self, record: dict) -> None:
        """Service listener: one finished clip record (ClipRecord.to_dict())."""
        engine = _label(record.get("engine"))
        preset = _label((record.get("preset") or {}).get("preset"))
        self.requests.labels(engine, "ok").inc()
        wall = _num(record.get("wall_s"))
        if wall is not None:
            self.wall.labels(preset, engine).observe(wall)
        queue = _num(record.get("queue_s"))
        if queue is not None:
            self.queue.labels(preset, engine).observe(queue)
            if wall is not None:
                self.to_audio.labels(preset, engine).observe(queue + wall)
        bd = record.get("breakdown") or {}
        totals = bd.get("totals") or {}
        for c in COMPONENTS:
            v = _num(totals.get(c + "_s"))
            if v is not None:
                self.breakdown.labels(c, preset, engine).observe(v)
        for st in bd.get("stages") or []:
            name = _label(st.get("name"))
            for c in ("wall", *COMPONENTS):
                v = _num(st.get(c + "_s"))
                if v is not None:
                    self.stage.labels(name, c, preset, engine).observe(v)
        for b in (bd.get("blockers") or [])[:TOP_BLOCKERS]:
            t = _num(b.get("time_s"))
            if t:
                self.blockers.labels(self._comm(b.get("comm")), preset, engine).inc(t)
        dv = bd.get("device") or {}
        if dv.get("status") == "captured" and dv.get("device") is not None:
            t = dv.get("totals") or {}
            for hist, key in ((self.gpu_idle, "idle_share"), (self.gpu_host_wait, "host_wait_share")):
                v = _num(t.get(key))
                if v is not None:
                    hist.labels(preset, engine).observe(v)
        self._observe_first_sound(record, bd, preset, engine)
        lost = _num((bd.get("lost_events") or {}).get("total"))
        if bd:
            self.lost.labels(preset, engine).inc(lost or 0)  # inc(0) makes the series exist at 0
        for f in record.get("findings") or []:
            self.findings.labels(_label(f.get("kind")), _label(f.get("severity"))).inc()

    def _comm(self, comm) -> str:
        """A task's comm as a bounded label: the instance number dropped (kworker/u4:2 -> kworker,
        ksoftirqd/1 -> ksoftirqd), at most MAX_COMMS distinct values, then "other"."""
        name = re.sub(r"(/.*|[-_:.]\d+)$", "", str(comm or "")) or "unknown"
        with self._lock:
            if name not in self._comms and len(self._comms) >= MAX_COMMS:
                return "other"
            self._comms.add(name)
        return _label(name)

    def _observe_first_sound(self, record: dict, bd: dict, preset: str, engine: str) -> None:
        fs = _num(record.get("first_sound_s"))
        if fs is not None:
            self.first_sound.labels(preset, engine).observe(fs)
        before = (bd.get("first_sound") or {}).get("before") or {}
        for c in COMPONENTS:
            v = _num(before.get(c + "_s"))
            if v is not None:
                self.first_sound_bd.labels(c, preset, engine).observe(v)

    def sync_failures(self, engine: str, failures: int) -> None:
        """Bring itts_requests_total{status="error"} up to the service's failure count (failed
        requests never reach the listeners, so they are counted from Service.failures at scrape)."""
        with self._lock:
            c = self.requests.labels(_label(engine), "error")
            if failures > self._failures_seen:
                c.inc(failures - self._failures_seen)
                self._failures_seen = failures

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class DeliveryCollector:
    """app.delivery.Watch's outcome counts, read at each scrape."""

    def __init__(self, watch):
        self.watch = watch

    def collect(self):
        c = CounterMetricFamily("itts_audio_delivery", "Synthesize requests by how their audio reached "
                                "the client before post-processing (fetched, or timeout)", labels=["outcome"])
        for outcome, n in sorted(self.watch.outcomes.items()):
            c.add_metric([outcome], n)
        yield c


def delivery_outcomes(url: str, timeout: float = 10.0) -> dict[str, int]:
    """itts_audio_delivery_total by outcome, scraped from a launcher's /metrics (benchmarks, tests)."""
    import urllib.request
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as r:
        text = r.read().decode("utf-8", "replace")
    return {line.split('outcome="', 1)[1].split('"', 1)[0]: int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines() if line.startswith("itts_audio_delivery_total{")}


class SeriesCollector:
    """The periodic series' latest verdict as gauges, read from series.json at each scrape (the
    snapshot CLI writes it from another process: nothing to keep in sync here)."""

    def __init__(self, path):
        self.path = path

    def collect(self):
        import datetime as dt

        try:
            series = load_series(self.path)
        except Exception as e:  # a broken series.json must not break the scrape
            log.warning("snapshot series %s: %s", self.path, e)
            return
        last = latest(series)
        if last is None:
            return
        v = last.get("verdict") or {}
        reg = GaugeMetricFamily("itts_snapshot_regression",
                                "Latest periodic snapshot vs the pinned baseline: 1 = regression", labels=["kind"])
        reg.add_metric(["any"], 1.0 if v.get("has_regression") else 0.0)
        for k in ("median", "tail", "blocker"):
            reg.add_metric([k], 1.0 if v.get(k) else 0.0)
        yield reg
        per = GaugeMetricFamily("itts_snapshot_metric_regression", "Latest snapshot: 1 = this metric regressed",
                                labels=["preset", "metric", "kind"])
        for r in v.get("rows") or []:
            if r["metric"] in POINT_METRICS:
                per.add_metric([_label(r["preset"]), r["metric"], "median"], 1.0 if r["verdict"] == "regression" else 0.0)
                if r.get("tail_verdict"):
                    per.add_metric([_label(r["preset"]), r["metric"], "tail"],
                                   1.0 if r["tail_verdict"] == "regression" else 0.0)
        yield per
        base = next((e for e in series["entries"] if e["name"] == series.get("baseline")), None)
        sec = GaugeMetricFamily("itts_snapshot_seconds", "p50/p95 of the latest and the baseline snapshot",
                                labels=["preset", "metric", "quantile", "snapshot"])
        ts = GaugeMetricFamily("itts_snapshot_timestamp_seconds", "When the snapshot started (Unix time)",
                               labels=["snapshot"])
        for which, e in (("latest", last), ("baseline", base)):
            if e is None:
                continue
            for preset, ms in (e.get("points") or {}).items():
                for m, q in ms.items():
                    for qname, key in (("0.5", "p50"), ("0.95", "p95")):
                        if _num(q.get(key)) is not None:
                            sec.add_metric([_label(preset), m, qname, which], q[key])
            try:
                ts.add_metric([which], dt.datetime.fromisoformat(e.get("created") or "").timestamp())
            except ValueError:
                pass
        yield sec
        yield ts
        idle = GaugeMetricFamily("itts_snapshot_idle_wait_seconds",
                                 "How long the latest snapshot waited for the service to be idle")
        idle.add_metric([], float((last.get("idle") or {}).get("waited_s") or 0.0))
        yield idle
        n = GaugeMetricFamily("itts_snapshot_series_entries", "Snapshots kept in the periodic series")
        n.add_metric([], float(len(series["entries"])))
        yield n


def mount_metrics(fastapi_app, metrics: Metrics, before_scrape=None, path: str = "/metrics") -> None:
    """Add GET /metrics (Prometheus text format) to a FastAPI/Starlette app. Works on a running
    app too (Gradio's, after launch(prevent_thread_lock=True)): the route is put first so no
    catch-all route registered earlier can shadow it."""
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request):
        if before_scrape is not None:
            try:
                before_scrape()
            except Exception:
                log.exception("before_scrape failed")
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    fastapi_app.router.routes.insert(0, Route(path, endpoint, methods=["GET"], name="prometheus_metrics"))


def install(ctx, fastapi_app, gradio_waiting=None) -> Metrics:
    """Wire metrics into the launcher: listener on ctx.service, GET /metrics on fastapi_app.
    `gradio_waiting()`: requests in Gradio's queue for the service (app.ui.compat.queued), added to
    the service's own waiting count. Returns the Metrics (also kept as ctx.metrics)."""
    svc = ctx.service
    m = Metrics()
    engine = getattr(svc.engine, "name", "unknown")
    m.requests.labels(_label(engine), "ok")  # both series exist from the first scrape
    m.requests.labels(_label(engine), "error")
    svc.listeners.append(m.observe)
    busy = Gauge("itts_service_busy", "1 while a request holds the service (synthesis or its analysis)",
                 registry=m.registry)
    busy.set_function(lambda: 1.0 if svc.busy else 0.0)
    Gauge("itts_requests_running", "Requests started and not yet done (synthesis or post-processing)",
          registry=m.registry).set_function(lambda: float(svc.queue.running))
    Gauge("itts_requests_waiting", "Requests accepted and not yet started (Gradio's queue or the service's)",
          registry=m.registry).set_function(lambda: float(svc.queue.waiting + (gradio_waiting() if gradio_waiting else 0)))
    if getattr(ctx, "delivery", None) is not None:
        m.registry.register(DeliveryCollector(ctx.delivery))
    if getattr(ctx, "args", None) is not None:  # the launcher's; a bare service has no series
        from app.periodic import series_dir
        m.registry.register(SeriesCollector(series_dir(ctx.args)))
    mount_metrics(fastapi_app, m, before_scrape=lambda: m.sync_failures(engine, svc.failures))
    ctx.metrics = m
    return m
