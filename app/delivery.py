"""When has a clip's audio reached its client? ASGI middleware on Gradio's app. No Gradio here.

Why (issue 15): the Synthesize handler yields the audio first; the trace's post-processing
(analysis, trace.dat, timeline, zip, instance removal) should start only once the user has it.
Gradio resumes the handler as soon as the update is *queued*, before the event stream carries it
and before the client fetches the wav (gradio_client downloads it; the browser's player fetches
it to draw the waveform). Started at that point the post-processing competed with both for the
GIL and the CPUs: time to audio traced/untraced 1.23 on 2 vCPUs; 1.0 when started here.

So the handler takes a ticket before it yields (Watch.expect()) and waits on it (Watch.wait())
before it lets the analysis run: the ticket is punched when a response for a file named
AUDIO_NAME (the clip's wav, served by Gradio's /file= route) has been sent to the end. A client
that never fetches the audio (an API client with download_files=False, one that went away) costs
the breakdown at most WAIT_S, never the audio. Any wav download punches every ticket waiting:
synthesis runs one request at a time, so the only effect of another client's download (say, of
a History clip) is an early start. Outcomes are counted for /metrics (app/metrics.py).
"""
from __future__ import annotations

import threading

# How long the handler waits for the download before it starts the post-processing anyway: what a
# client that never fetches the audio pays on its breakdown (the browser fetches at once). Here the
# download is served 75-125 ms after the update is queued; a slow link does not need more: the
# analysis only competes with a download that is CPU-bound on this host. Kept short because on one
# H200 machine updates reached the client 0.1-9 s late whatever we did (docs/benchmarks.md), and
# there every request paid the whole wait. The launcher's --audio-wait-s (0: no wait, for A/B runs).
WAIT_S = 0.5
MAX_WAIT_S = 2.0  # the flag's bound: the service runs a held step anyway after HOLD_MAX_S
AUDIO_NAME = "audio.wav"  # ClipStore's name for a clip's audio (Gradio's cache keeps the basename)


class Watch:
    """Tickets (threading.Event) waiting for an audio download; the middleware punches them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiting: list[threading.Event] = []
        self.active = False  # set by the middleware: without it nobody punches, so nobody waits
        self.outcomes = {"fetched": 0, "timeout": 0}

    def expect(self) -> threading.Event:
        """A ticket for the next audio download; take it before the update is sent."""
        ticket = threading.Event()
        if not self.active:
            ticket.set()
            return ticket
        with self._lock:
            self._waiting.append(ticket)
        return ticket

    def wait(self, ticket: threading.Event, timeout: float = WAIT_S) -> bool:
        """Until the audio was fetched (True) or `timeout` passed (False); the ticket is done.
        timeout <= 0 (--audio-wait-s 0): no wait, nothing counted."""
        fetched = ticket.wait(timeout) if timeout > 0 else ticket.is_set()
        with self._lock:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            if self.active and timeout > 0:
                self.outcomes["fetched" if fetched else "timeout"] += 1
        return fetched

    def drop(self, ticket: threading.Event) -> None:
        """Forget a ticket not waited for (the request ended before its audio went out)."""
        with self._lock:
            if ticket in self._waiting:
                self._waiting.remove(ticket)

    def punch(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for ticket in waiting:
            ticket.set()


def is_audio_fetch(scope) -> bool:
    path = scope.get("path") or ""
    return (scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD")
            and "/file=" in path and path.endswith("/" + AUDIO_NAME))


class AudioDelivered:
    """Middleware(AudioDelivered, watch=w): punches w's tickets once an audio response has been
    sent in full (its last body chunk handed to the server) or has ended otherwise."""

    def __init__(self, app, watch: Watch):
        self.app, self.watch = app, watch
        watch.active = True

    async def __call__(self, scope, receive, send):
        if not is_audio_fetch(scope):
            return await self.app(scope, receive, send)

        async def send_and_watch(message):
            await send(message)
            if message.get("type") == "http.response.body" and not message.get("more_body", False):
                self.watch.punch()
        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self.watch.punch()  # an aborted download still means the client had the update
