"""The System tab: tracing capabilities (what `python -m tracing doctor` prints) and the engine."""
from __future__ import annotations

import gradio as gr


def build(ctx) -> None:
    with gr.Tab("系统 / System"):
        gr.Markdown("**Tracing capabilities** (as `python -m tracing doctor` prints them)")
        gr.JSON(value=ctx.capabilities, elem_id="capabilities")
        gr.Markdown(f"**Engine:** {ctx.engine.label}")
