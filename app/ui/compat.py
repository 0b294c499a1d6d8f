"""The one place that knows which Gradio generation serves: 5.x (5.45, what IndexTTS pins) or 6.x
(what requirements.txt pins). The UI code is written once, against this module.

What differs, and what this module does about it:
- private events: 6 takes `api_visibility="private"`; 5 has no such argument and spells the same
  thing `api_name=False, show_api=False` (not callable through the API, not in the docs): `PRIVATE`.
- launch(): 6 takes `footer_links=`; 5 has none (its footer shows the same links): `launch_kwargs`.
- page CSS: 6 takes `css=` in launch(), 5 in Blocks(): `launch_kwargs` drops it on 5 and
  `blocks_kwargs` adds it there.
- REST error text: the SSE stream of the REST API (`GET /gradio_api/call/<api>/<event_id>`) ends a
  failed call with `event: error`. 6 puts the error payload in its data
  (`{"error": "<text>", "title": ..., "duration": ..., "visible": ...}`); 5.x sends `data: null`,
  losing the text, because that route reads only the payload's "data" key. `install()` makes 5 send
  the same payload as 6: the queue's send_message, for a failed event that came in through the REST
  route (its body has `simple_format`, set only by that route), adds the payload under "data".
  Other events are untouched: gradio_client 1.x (which uses /queue/join) turns the payload's keys
  into AppError(**payload) and refuses an extra key.
- the idle queue: Gradio's queue loop looks for work every `sleep_when_free` (6.x on Linux: 1 ms,
  5.x: 50 ms) and its progress loop every `progress_update_sleep_when_free` (10 / 100 ms), busy
  or not: an idle launcher burned 4-8% of one CPU on 6.x (issue 25). `quiet_queue()` makes those
  two sleeps, when there is nothing to do, wait for the next event pushed instead (at most
  QUEUE_IDLE_CAP_S); while anything is queued or running they poll as before. Same on 5 and 6.
- an audio output's file: 6.x runs `ffprobe` (a child process) on every file an Audio output sends,
  to see whether the browser can play it (5.45 does not). A clip's audio is a PCM_16 WAV we wrote
  ourselves, a pair Gradio's own table calls playable: `own_wav_audio()` skips the probe for such
  files (measured: Audio's postprocess 66 ms of wall an update on the 2-vCPU VM, sent twice per
  clip: with the audio and with the complete clip).
"""
from __future__ import annotations

import asyncio
import functools
import types
import weakref
from pathlib import Path

import gradio as gr

SUPPORTED = ((5, 45), (7, 0))  # [from, to)
GRADIO_VERSION = gr.__version__
VERSION = tuple(int(x) for x in gr.__version__.split(".")[:2])
MAJOR = VERSION[0]

PRIVATE: dict = {"api_visibility": "private"} if MAJOR >= 6 else {"api_name": False, "show_api": False}


def queued(blocks, concurrency_id: str) -> int:
    """Events waiting (not yet running) in Gradio's queue for one concurrency id. Gradio has no
    public per-id count (/queue/status sums every id): both 5.45 and 6.x keep
    Queue.event_queue_per_concurrency_id[id].queue; 0 when that is not there."""
    try:
        return len(blocks._queue.event_queue_per_concurrency_id[concurrency_id].queue)
    except (AttributeError, KeyError, TypeError):
        return 0


def own_wav_audio(component):
    """Make an Audio output send a PCM_16 WAV file as it is, without 6.x's playability probe (what
    the probe would conclude: Gradio's PLAYABLE_AUDIO_CODECS holds (.wav, pcm_s16le)). Anything
    else (another format, a component converting to one) goes through Gradio's own postprocess.
    Returns the component."""
    from gradio.data_classes import FileData
    own = component.postprocess

    def postprocess(value):
        if isinstance(value, (str, Path)) and component.format in (None, "wav") and is_pcm16_wav(value):
            return FileData(path=str(value), orig_name=Path(value).name)
        return own(value)
    component.postprocess = postprocess
    return component


def is_pcm16_wav(path) -> bool:
    """A RIFF/WAVE file whose fmt chunk says PCM (format 1), 16 bits: read from its header."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if len(head) < 36 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    i = 12
    while i + 8 <= len(head):
        cid, size = head[i:i + 4], int.from_bytes(head[i + 4:i + 8], "little")
        if cid == b"fmt ":
            body = head[i + 8:i + 8 + 16]
            return len(body) >= 16 and int.from_bytes(body[0:2], "little") == 1 and \
                int.from_bytes(body[14:16], "little") == 16
        i += 8 + size + (size & 1)
    return False


def check_supported() -> None:
    """Refuse a Gradio this UI is not written for, naming the version and what is supported."""
    lo, hi = SUPPORTED
    if not lo <= VERSION < hi:
        raise RuntimeError(f"gradio {gr.__version__} is not supported: the launcher's UI runs on gradio "
                           f">= {lo[0]}.{lo[1]} and < {hi[0]} (IndexTTS pins 5.45.0; requirements.txt pins 6.x).")


def launch_kwargs(**kw) -> dict:
    """Blocks.launch() keyword arguments for this generation (drops what 5 does not take)."""
    if MAJOR < 6:
        kw.pop("footer_links", None)
        kw.pop("css", None)  # given to Blocks() instead (blocks_kwargs)
    return kw


def blocks_kwargs(css: str | None = None, **kw) -> dict:
    """gr.Blocks() keyword arguments for this generation (5 takes the page CSS here)."""
    if MAJOR < 6 and css:
        kw["css"] = css
    return kw


def install() -> None:
    """Call once before launch(): checks the version and, on 5.x, makes REST error events carry
    the error text (module docstring). Idempotent."""
    check_supported()
    if MAJOR >= 6:
        return
    import gradio.queueing as q
    from gradio.server_messages import ProcessCompletedMessage
    orig = q.Queue.send_message
    if getattr(orig, "_itts_rest_text", False):
        return

    @functools.wraps(orig)
    def send_message(self, event, event_message):
        if (isinstance(event_message, ProcessCompletedMessage) and not event_message.success
                and getattr(getattr(event, "data", None), "simple_format", False)
                and isinstance(event_message.output, dict) and "data" not in event_message.output):
            out = dict(event_message.output)
            event_message = event_message.model_copy(update={"output": {**out, "data": out}})
        return orig(self, event, event_message)
    send_message._itts_rest_text = True
    q.Queue.send_message = send_message


QUEUE_IDLE_CAP_S = 1.0  # an idle queue still looks once a second (say, for stop())


class _QueueAsyncio(types.ModuleType):
    """What gradio.queueing sees as `asyncio`: the real module, except that the queue's idle polls
    (nothing queued; no job running, for progress) wait for the next push instead of sleeping."""

    def __init__(self, queue):
        super().__init__("asyncio")
        self._queue = weakref.ref(queue)
        self._waiters: set = set()

    def __getattr__(self, name):
        return getattr(asyncio, name)

    async def sleep(self, delay, result=None):
        q = self._queue()
        if q is not None and self._idle(q, delay):
            fut = asyncio.get_running_loop().create_future()
            self._waiters.add(fut)
            try:
                await asyncio.wait({fut}, timeout=QUEUE_IDLE_CAP_S)
            finally:
                self._waiters.discard(fut)
            return result
        return await asyncio.sleep(delay, result)

    @staticmethod
    def _idle(q, delay) -> bool:
        queued = len(q) > 0
        running = any(job is not None for job in q.active_jobs)
        if delay == q.sleep_when_free:  # the event loop's "anything to start?"
            return not queued
        if delay == q.progress_update_sleep_when_free:  # the progress loop's "anything running?"
            return not queued and not running
        return False

    def wake(self) -> None:
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)


def quiet_queue(queue) -> None:
    """Call once after Blocks.queue(): an idle queue then costs no CPU (module docstring).
    Events start as soon as they are pushed, as before (on 5.x up to 50 ms sooner)."""
    import gradio.queueing as gq
    if isinstance(gq.asyncio, _QueueAsyncio):
        return
    proxy = _QueueAsyncio(queue)
    push = queue.push

    @functools.wraps(push)
    async def push_and_wake(*args, **kwargs):
        try:
            return await push(*args, **kwargs)
        finally:
            proxy.wake()
    queue.push = push_and_wake
    gq.asyncio = proxy
