"""What every tab shares: the preset and operator gates, the user-facing error, number checks,
preset wording."""
from __future__ import annotations

import math

import gradio as gr

from app.access import SWITCHING, TRACE_DOWNLOAD, AccessDenied
from app.service import ServiceClosed, ServiceError
from app.store import ClipNotFound
from models.base import InputError

# Markdown views that show names from the kernel (process and thread names any local user picks):
# no KaTeX. md_text escapes every ASCII punctuation character, but the browser looks for Gradio's
# default "$$" math delimiters in the text Markdown rendered, escapes consumed: a process named
# `$$x$$` was drawn as math.
KERNEL_MD = {"latex_delimiters": []}

SCOPES = ["service-wide", "this request only"]
# Gradio concurrency id of the events that run the service; /metrics counts its queue
SERVICE_QUEUE = "synth"
# Its events running at once (every event on it must say so: Gradio takes the smallest limit).
# The service synthesizes one request at a time (in arrival order) whatever this is; above 1, a
# request synthesizes while the previous ones deliver their audio and are analysed, instead of
# waiting in Gradio's queue for them. Beyond it, callers wait in Gradio's queue (their place shown).
SYNTH_CONCURRENCY = 4
# Gradio makes plotly figures responsive, and plotly then sizes them to their element (a figure's
# own height is dropped when it sets no width): the timeline plots get their height here.
CSS = """
.itts-timeline .js-plotly-plot { height: 460px; }
.itts-timeline-pair .js-plotly-plot { height: 680px; }
"""
# The Synthesize tab's preset choice that names none: the request runs under the preset in force.
# It is the dropdown's default, so a client that does not name a preset (gradio_client fills the
# endpoint's defaults, an older page sends what it was built with) keeps the service's preset,
# whatever it is ("launch" from raw launch flags included), instead of switching it back.
KEEP = "(keep the preset in force)"


def user_error(e: Exception) -> gr.Error:
    """Turn any refusal into a Gradio error: shown in the UI, returned by the API, server stays up."""
    return gr.Error(str(e), duration=None)


def named_preset(name) -> str | None:
    """A client's preset value -> the preset it names, or None for "keep the one in force"."""
    return None if name in (None, "", KEEP) else name


def require_operator(ctx, what: str, request) -> None:
    """The one gate for operator actions (app/access.py decides; this turns a refusal into the
    UI's error)."""
    try:
        ctx.access.require(what, request)
    except AccessDenied as e:
        raise gr.Error(str(e))


def check_preset(ctx, name, request=None, switching: bool = True) -> None:
    """The one gate for a preset named by a client: it must be allowed, and choosing one other
    than the preset in force is an operator action (`switching=False` for callers that only
    queue a choice, like "next request only", which is gated when used)."""
    if switching and name != ctx.tuner.current.name:
        require_operator(ctx, SWITCHING, request)
    refused = getattr(ctx.tuner.presets, "refused", {})
    if name in refused:
        raise gr.Error(f"Preset {name!r} refused: {refused[name]}.")
    if name not in ctx.tuner.allowed:
        raise gr.Error(f"Unknown or not allowed preset {name!r}. Allowed: {', '.join(ctx.tuner.allowed)}.")


def attachment_for(ctx, clip, request, panel: bool = True):
    """A clip's trace attachment for this caller: the owner's data, so operators only (None).
    `clip`: a ClipRecord or a request id. Built when first asked for (Service.attachment), so a
    caller who may not have it costs nothing. For a clip panel (`panel`) a launcher that is
    stopping shows the clip without it (None); a download says why there is none."""
    if clip is None or not ctx.access.operator(request):
        return None
    try:
        return ctx.service.attachment(clip)
    except ServiceClosed as e:
        if panel:
            return None
        raise user_error(e)
    except (ClipNotFound, ServiceError) as e:
        raise user_error(e)


def require_download(ctx, request) -> None:
    require_operator(ctx, TRACE_DOWNLOAD, request)


def num(v, what: str):
    """A finite int/float from a client (bools, strings, NaN and inf refused with a sentence)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{what} must be a finite number, got {v!r}.")
    return v


def preset_line(p: dict) -> str:
    bits = []
    for k in ("cpus", "nice", "policy", "rt_priority", "torch_threads"):
        if p.get(k) not in (None, ""):
            bits.append(f"{k}={p[k]}")
    return ", ".join(bits) or "inherited"
