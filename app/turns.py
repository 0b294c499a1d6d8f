"""Who runs when: synthesis windows and our own post-processing. No Gradio here.

Two policies for the post-processing of one request (reading its trace, the analysis, saving the
clip, removing the instance) while the next request synthesizes (ARCHITECTURE.md, app/service.py,
says which is the default and why):
- "between": windows and post-processing take turns, first come first served (FifoLock). No
  window ever contains our post-processing: a request's analysis runs after the window that was
  open when it was released, before the next one opens.
- "overlap": the post-processing runs beside the next window; the window's breakdown then names
  what ran (`Turns.during()`: which request's which step, for how long) and the trace names the
  thread (`trace-aux`), so a finding can never blame the machine for it.
In both, the lazy attachment builds (timeline PNG, trace.dat, zip) take turns with windows: they
run `trace-cmd`, a child process that a window could not tell from a neighbour.
"""
from __future__ import annotations

import collections
import threading
import time
from contextlib import contextmanager

POLICIES = ("overlap", "between")
LOG_SIZE = 256  # post-processing steps remembered for during(): far more than run in one window


class FifoLock:
    """A mutex that serves waiters in arrival order. threading.Lock wakes an arbitrary waiter, so
    under four callers one request could lose the synthesizer several times in a row."""

    def __init__(self):
        self._cv = threading.Condition(threading.Lock())
        self._next = 0  # the next ticket handed out
        self._serving = 0  # the ticket that holds the lock

    def acquire(self) -> None:
        with self._cv:
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._cv.wait()

    def release(self) -> None:
        with self._cv:
            self._serving += 1
            self._cv.notify_all()

    def locked(self) -> bool:
        """Held, or waited for."""
        with self._cv:
            return self._next != self._serving

    def waiting(self) -> int:
        """Callers queued behind the holder."""
        with self._cv:
            return max(0, self._next - self._serving - 1)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False


class Turns:
    """The turn-taking of trace windows and post-processing steps under one policy (POLICIES)."""

    def __init__(self, policy: str = "overlap"):
        if policy not in POLICIES:
            raise ValueError(f"post-processing policy must be one of {POLICIES}, not {policy!r}")
        self.policy = policy
        self._turn = FifoLock()
        self._log_lock = threading.Lock()
        self._log: collections.deque = collections.deque(maxlen=LOG_SIZE)  # [request, step, start, end|None]

    @contextmanager
    def window(self):
        """Around a trace window (open to close)."""
        with self._turn:
            yield

    @contextmanager
    def step(self, request: str, step: str, exclusive: bool = False):
        """Around one post-processing step of `request`; it waits for its turn under "between",
        or when `exclusive` (the attachment builds), and is logged for during() under "overlap"."""
        if self.policy == "between" or exclusive:
            with self._turn:
                yield
            return
        entry = [request, step, time.monotonic(), None]
        with self._log_lock:
            self._log.append(entry)
        try:
            yield
        finally:
            entry[3] = time.monotonic()

    def during(self, start: float, end: float) -> list[dict]:
        """The logged steps that ran inside [start, end] (time.monotonic()): request, step and the
        overlapping seconds; a step still running counts up to `end`."""
        with self._log_lock:
            entries = list(self._log)
        out = []
        for request, step, t0, t1 in entries:
            overlap = min(end, t1 if t1 is not None else end) - max(start, t0)
            if overlap > 0:
                out.append({"request": request, "step": step, "wall_s": round(overlap, 6)})
        return out
