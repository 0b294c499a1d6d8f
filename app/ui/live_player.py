"""The live player: the request's audio played while the rest is still being made (issue 23).

The Synthesize button's event (private: not in the API) yields each segment the engine hands over
to a Gradio streaming audio output (gr.Audio(streaming=True, autoplay=True)): the page's player
starts on the first segment. For API clients, /synthesize_stream yields each segment as a wav
file (the hidden gr.File), one update per segment, then the clip panel's steps exactly as
/synthesize gives them (docs/streaming.md); /synthesize itself is unchanged: the complete clip.
A streamed-audio output stays out of the API: gradio_client 1.x (Gradio 5) fails on its HLS
playlist (403), and its AAC encoding (an ffmpeg process per stream, 0.3-0.6 s for the first chunk
on a busy 2-CPU host) would only delay an API client's segment files.

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


def live_steps(ctx, req, start: dict, panel_steps, n_panel: int, player: bool):
    """The generator behind the button (player=True: live chunk, the file slot and the panel left
    as they are) and /synthesize_stream (player=False: segment file, the panel left as it is), one
    update per segment, then the panel's steps (panel_steps(job)) after the skipped slot(s). A
    refused request reaches the page as on /synthesize (user_error)."""
    feed = ctx.streamer.start(req, **start)
    files = SegmentFiles()
    live = live_available()
    # the page plays the chunks and has no use for the files (they would only fill Gradio's cache)
    lead = (lambda seg: (wav_bytes(seg.audio, seg.sample_rate) if live else gr.skip(), gr.skip())) \
        if player else (lambda seg: (files.write(seg),))
    skipped = (gr.skip(),) * (2 if player else 1)
    job = None
    try:
        for seg in feed:
            yield (*lead(seg), *[gr.skip()] * n_panel)
        try:
            job = feed.job()
        except (InputError, TuningError, ServiceError) as e:
            raise user_error(e)
        for out in panel_steps(job):
            yield (*skipped, *out)
    finally:
        files.remove()  # each file was copied into Gradio's cache when its update was processed
        if job is None:  # the client went away mid-stream: never hold the post-processing
            feed.future.add_done_callback(_release)


def _release(future) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().release()
