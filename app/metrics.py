"""Prometheus metrics of the launcher: GET /metrics, fed by Service.listeners (one call per clip).

This is how a fleet of launchers (one per GPU host) is watched with Prometheus/Grafana. All
metrics live in this module's own CollectorRegistry (not the process-global one), so nothing a
library registers leaks in and tests can build several side by side.

Metrics (times in seconds; labels: preset = the preset in force as read back, engine = engine name):
- itts_request_wall_seconds{preset,engine}            histogram: wall time of the synthesis window
- itts_breakdown_seconds{component,preset,engine}     histogram: the clip's breakdown totals,
      component in on_cpu, runqueue_wait, blocked_io, sleep, irq, softirq, reclaim (definitions:
      ARCHITECTURE.md; summed over the request's threads, so on_cpu can exceed wall)
- itts_stage_seconds{stage,component,preset,engine}   histogram: the same per pipeline stage
      (breakdown["stages"]), plus component="wall" for the stage's own duration
- itts_lost_events_total{preset,engine}               counter: trace events the kernel dropped
      (a non-zero rate means breakdowns are incomplete: enlarge --trace-buffer-kb)
- itts_findings_total{kind,severity}                  counter: diagnosis findings by kind
- itts_requests_total{engine,status}                  counter: status "ok" (a clip was produced)
      or "error" (Service.failures: bad input, refused preset, engine failure)
Untraced requests (tracing off) count in requests and wall only.
Buckets span 1 ms .. 30 s (BUCKETS); anything above lands in +Inf.
"""
from __future__ import annotations

import logging
import threading

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

log = logging.getLogger("metrics")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
COMPONENTS = ("on_cpu", "runqueue_wait", "blocked_io", "sleep", "irq", "softirq", "reclaim")
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
        self.breakdown = Histogram("itts_breakdown_seconds",
                                   "Per-request kernel breakdown totals (summed over the request's threads)",
                                   ["component", "preset", "engine"], buckets=BUCKETS, registry=r)
        self.stage = Histogram("itts_stage_seconds", "Per-stage kernel breakdown; component=wall is the stage duration",
                               ["stage", "component", "preset", "engine"], buckets=BUCKETS, registry=r)
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
        lost = _num((bd.get("lost_events") or {}).get("total"))
        if bd:
            self.lost.labels(preset, engine).inc(lost or 0)  # inc(0) makes the series exist at 0
        for f in record.get("findings") or []:
            self.findings.labels(_label(f.get("kind")), _label(f.get("severity"))).inc()

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


def install(ctx, fastapi_app) -> Metrics:
    """Wire metrics into the launcher: listener on ctx.service, GET /metrics on fastapi_app.
    Returns the Metrics (also kept as ctx.metrics)."""
    svc = ctx.service
    m = Metrics()
    engine = getattr(svc.engine, "name", "unknown")
    m.requests.labels(_label(engine), "ok")  # both series exist from the first scrape
    m.requests.labels(_label(engine), "error")
    svc.listeners.append(m.observe)
    mount_metrics(fastapi_app, m, before_scrape=lambda: m.sync_failures(engine, svc.failures))
    ctx.metrics = m
    return m
