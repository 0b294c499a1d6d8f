"""The live player: the request's audio played while the rest is still being made (issue 23).

The Synthesize button's event (/synthesize_stream) yields each segment the engine hands over to
a Gradio streaming audio output (gr.Audio(streaming=True, autoplay=True)): the page's player
starts on the first segment. Each update also carries the segment as a wav file (a hidden
gr.File) for API clients: `client.submit(..., api_name="/synthesize_stream")` sees one update per
segment, then the clip panel's steps exactly as /synthesize gives them (docs/streaming.md). The
page sends live_player=True; an API client gets the player's chunks only if it does too.
/synthesize itself is unchanged: it returns the complete clip.

Gradio (5.45 and 6.x alike) encodes streamed audio with ffmpeg. Without ffmpeg on PATH the
player stays hidden and says why; the segment files, the clip and its first-sound time are the
same.
"""
from __future__ import annotations

import shutil

import gradio as gr

from app.service import ServiceError
from app.streaming import SegmentFiles, wav_bytes
from app.ui.common import user_error
from models.base import InputError
from tuning.apply import TuningError

LIVE_LABEL = "实时播放 / Live playback (starts with the first segment while the rest is made)"
NO_FFMPEG = ("Live playback needs ffmpeg (Gradio encodes streamed audio with it): install it "
             "(apt install ffmpeg) and restart; the clip below still arrives whole.")


def live_available() -> bool:
    return shutil.which("ffmpeg") is not None


def build_live() -> list:
    """The live player and the (hidden) per-segment file, in the order live_steps yields them."""
    ok = live_available()
    live = gr.Audio(label=LIVE_LABEL, streaming=True, autoplay=True, interactive=False, elem_id="live_audio",
                    visible=ok)
    if not ok:
        gr.Markdown(f"_{NO_FFMPEG}_", elem_id="live_missing")
    segment = gr.File(label="Segment (API)", visible=False, elem_id="segment_file", interactive=False)
    return [live, segment]


def live_steps(ctx, req, start: dict, panel_steps, n_panel: int, player: bool = True):
    """The generator behind /synthesize_stream: per segment (live chunk, segment file, the panel
    left as it is), then the panel's steps (panel_steps(job)) after two skipped slots. A refused
    request reaches the page as on /synthesize (user_error). player=False (an API client that
    does not ask for it): no live chunks, so no AAC encoding (an ffmpeg process Gradio starts per
    stream, 0.3-0.6 s on a busy 2-CPU host) delays its segment files."""
    feed = ctx.streamer.start(req, **start)
    files = SegmentFiles()
    live = player and live_available()
    job = None
    try:
        for seg in feed:
            yield (wav_bytes(seg.audio, seg.sample_rate) if live else gr.skip(), files.write(seg),
                   *[gr.skip()] * n_panel)
        try:
            job = feed.job()
        except (InputError, TuningError, ServiceError) as e:
            raise user_error(e)
        for out in panel_steps(job):
            yield (gr.skip(), gr.skip(), *out)
    finally:
        files.remove()  # each file was copied into Gradio's cache when its update was processed
        if job is None:  # the client went away mid-stream: never hold the post-processing
            feed.future.add_done_callback(_release)


def _release(future) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().release()
