"""What every tab shares: the preset gate, the user-facing error, number checks, preset wording."""
from __future__ import annotations

import math

import gradio as gr

from models.base import InputError

SCOPES = ["service-wide", "this request only"]
# Gradio makes plotly figures responsive, and plotly then sizes them to their element (a figure's
# own height is dropped when it sets no width): the timeline plots get their height here.
CSS = """
.itts-timeline .js-plotly-plot { height: 460px; }
.itts-timeline-pair .js-plotly-plot { height: 680px; }
"""
SWITCHING_OFF = "Preset switching is disabled on this server (exposed without --auth)."


def user_error(e: Exception) -> gr.Error:
    """Turn any refusal into a Gradio error: shown in the UI, returned by the API, server stays up."""
    return gr.Error(str(e), duration=None)


def check_preset(ctx, name, switching: bool = True) -> None:
    """The one gate for a preset named by a client: it must be allowed, and choosing one other
    than the preset in force needs switching to be allowed on this server (`switching=False`
    for callers that only queue a choice, like "next request only", which is gated when used)."""
    if switching and name != ctx.tuner.current.name and not ctx.switching_allowed:
        raise gr.Error(SWITCHING_OFF)
    if name not in ctx.tuner.allowed:
        raise gr.Error(f"Unknown or not allowed preset {name!r}. Allowed: {', '.join(ctx.tuner.allowed)}.")


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
