"""A request's audio to its caller segment by segment while the rest is still being made. No Gradio.

Why (issue 23): the complaint behind this product is the stall before any sound. Engines hand each
text segment's audio to the service the moment it exists (models.base StageSink.segment); the
service notes the time, marks it in the trace window and calls `on_segment`. Here that call only
queues the segment: the synthesis thread never waits for the client, nor for any tracing work.

    feed = streamer.start(req, preset=..., trace=..., progress=..., hold=True)
    for seg in feed:            # Segment(index, audio int16, sample_rate, t), as they are made
        ...send seg...
    job = feed.job()            # the service's Job (the clip written), or the request's error

Service.start() runs on one long-lived worker thread ("tts-stream"): the handler's thread must
stay free to pass segments on, and one persistent thread keeps one torch/OpenMP team across
requests (a thread per request would grow a fresh team inside every trace window). The caller's
contextvars travel with the call (Gradio's progress bar reads them). One synthesis runs at a time
anyway (the service's lock); a second request waits for this thread, its queue ticket taken
before (so it counts as waiting). /synthesize runs here too: the Synthesize handlers run several
at once (issue 25), and each on its own thread would grow its own torch/OpenMP team.
"""
from __future__ import annotations

import contextvars
import io
import os
import queue
import shutil
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import soundfile as sf

_DONE = object()


@dataclass
class Segment:
    index: int  # 0 for the first sound
    audio: np.ndarray  # int16 mono; the silence before it (between two segments) at its head
    sample_rate: int
    t: float  # time.monotonic() when the engine handed it over


class Feed:
    """One request's segments as they come (iterate), then its Job (job())."""

    def __init__(self):
        self._q: queue.Queue = queue.Queue()
        self.future: Future | None = None

    def _put(self, audio, sample_rate, index, t) -> None:  # Service's on_segment: queue, nothing else
        self._q.put(Segment(index, audio, sample_rate, t))

    def __iter__(self):
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            yield item

    def job(self, timeout: float | None = None):
        """The service's Job once synthesis is over; raises what Service.start() raised."""
        return self.future.result(timeout)


class Streamer:
    """Runs Service.start() on the streaming worker thread with on_segment feeding a Feed."""

    def __init__(self, service):
        self.service = service
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts-stream")

    def start(self, req, **start_kwargs) -> Feed:
        feed = Feed()
        ctx = contextvars.copy_context()
        # the request is waiting from now (itts_requests_waiting), also while it waits for the worker
        start_kwargs["ticket"] = self.service.queue.arrive(start_kwargs.pop("arrived", None))

        def run():
            try:
                return ctx.run(self.service.start, req, on_segment=feed._put, **start_kwargs)
            finally:
                feed._q.put(_DONE)

        feed.future = self._pool.submit(run)
        return feed

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """A segment as a complete 16-bit WAV in memory (what a streaming player is fed: no file,
    and no peak normalisation as a numpy value would get)."""
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class SegmentFiles:
    """Each segment as its own wav file for API clients (segment-NN.wav: never the clip's name,
    so fetching one does not count as the clip's download, app/delivery.py). The directory goes
    when the request ends (the server has copied what it sent by then)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="itts-segments-")
        self._lock = threading.Lock()

    def write(self, seg: Segment) -> str:
        path = os.path.join(self.dir, f"segment-{seg.index:02d}.wav")
        with self._lock:
            sf.write(path, seg.audio, seg.sample_rate, subtype="PCM_16")
        return path

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
