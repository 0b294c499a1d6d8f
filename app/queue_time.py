"""Queue time: how long a request waited before its synthesis started, and behind how many. No Gradio.

Definitions (times are time.monotonic() seconds, the trace clock):
- arrival: when the request reached the server. Through the UI or the API that is the moment its
  HTTP request (Gradio's /queue/join, or the REST /call/<api>) came in, stamped by the ArrivalStamp
  middleware into the ASGI scope, which Gradio hands to the handler as gr.Request.request; for
  in-process callers (snapshots, tests) the moment they called Service.start().
- start: the moment the service's clock for the synthesis starts (just before the trace window
  opens): the lock is held, the preset is in force (and, under --post-processing between, no
  post-processing step runs).
- queue_s = start - arrival: waiting in Gradio's queue (beyond the service's 4 events at once),
  for the service's lock (one synthesis at a time; never for other requests' post-processing,
  issue 25), plus this request's own set-up before its window (preset check and read-back, a few
  ms). It is never part of wall_s. With nothing ahead it is mostly Gradio's own dispatch, from
  the HTTP arrival to the handler: measured 26-40 ms on Gradio 6.31 and 115-270 ms on Gradio 5.45
  (the same with Gradio's own queue polling, ITTS_GRADIO_POLLING=1: not app/ui/compat.py's).
- ahead: the requests this one waited out: started before it and not yet released (see
  QueueClock.finish: the service releases a request when its synthesis ends) when it arrived (in FIFO order: those ahead of it in the queue or in the
  service; a request that overtook it at the lock counts too). Counted when the request starts,
  from the tickets of those already served, so it is right wherever the waiting happened (Gradio's
  queue or the service's lock) and needs nothing from Gradio.
- waiting / running (gauges): tickets arrived and not started / started and not released. Requests
  still in Gradio's queue have no ticket yet: app/metrics.py adds Gradio's count for those.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("queue_time")

ARRIVAL_KEY = "itts.arrival"  # the ASGI scope key the middleware stamps
KEEP = 512  # released tickets remembered for counting; Gradio's queue holds at most MAX_QUEUED (16)


@dataclass
class Ticket:
    arrived: float
    started: float | None = None
    released: float | None = None


class QueueClock:
    def __init__(self, keep: int = KEEP, clock=time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._served: deque[Ticket] = deque(maxlen=keep)  # started, in start order
        self._waiting: set[int] = set()
        self._running: set[int] = set()

    def arrive(self, arrived: float | None = None) -> Ticket:
        """A ticket for a request that wants the service; `arrived` from arrival_of(), else now.
        An arrival stamp from the future (another clock) is taken as now."""
        now = self.clock()
        t = Ticket(arrived=now if arrived is None or arrived > now else float(arrived))
        with self._lock:
            self._waiting.add(id(t))
        return t

    def start(self, t: Ticket, at: float | None = None) -> tuple[float, int]:
        """The request's synthesis starts: (queue_s, ahead)."""
        t.started = self.clock() if at is None else at
        with self._lock:
            ahead = sum(1 for j in self._served if j.released is None or j.released > t.arrived)
            self._served.append(t)
            self._waiting.discard(id(t))
            self._running.add(id(t))
        return max(0.0, t.started - t.arrived), ahead

    def finish(self, t: Ticket, at: float | None = None) -> None:
        """The request no longer holds later ones back (its post-processing is over, or it failed).
        Idempotent; also for a ticket that never started."""
        with self._lock:
            if t.released is None:
                t.released = self.clock() if at is None else at
            self._waiting.discard(id(t))
            self._running.discard(id(t))

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)


def arrival_of(request) -> float | None:
    """The arrival stamp of the HTTP request behind a gr.Request (None when there is none)."""
    raw = getattr(request, "__dict__", {}).get("request") if request is not None else None
    scope = getattr(raw, "scope", None)
    v = scope.get(ARRIVAL_KEY) if isinstance(scope, dict) else None
    return float(v) if isinstance(v, (int, float)) else None


class ArrivalStamp:
    """Middleware(ArrivalStamp, wake=None): stamps each HTTP request's arrival into its scope
    (outermost, so the stamp is taken before any other middleware's work). `wake()`, when given,
    is called as an event is submitted (a POST to Gradio's queue/join or call/<api>): the service
    re-arms an idle launcher's standby trace window while Gradio dispatches the event."""

    def __init__(self, app, wake: Callable[[], None] | None = None):
        self.app = app
        self.wake = wake

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            scope[ARRIVAL_KEY] = time.monotonic()
            if self.wake is not None and scope.get("method") == "POST" and _submits(scope.get("path", "")):
                try:
                    self.wake()
                except Exception:  # never fail a request over it: start() re-arms anyway
                    log.exception("wake failed")
        return await self.app(scope, receive, send)


def _submits(path: str) -> bool:
    """An event submission: .../queue/join (the browser, gradio_client) or .../call/<api> (REST)."""
    return path.endswith("/queue/join") or "/call/" in path


def queue_text(queue_s, ahead) -> str:
    """The clip's line: 'waited 1.2 s behind 2 requests' ('' when the record has no queue time)."""
    if not isinstance(queue_s, (int, float)):
        return ""
    if not ahead:
        return f"no request ahead (started {queue_s * 1000:.0f} ms after arrival)"
    return f"waited {queue_s:.1f} s behind {ahead} request{'s' if ahead != 1 else ''}"
