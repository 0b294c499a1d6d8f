"""The Compare tab: the same input under two presets back to back (each for its request only),
breakdowns side by side: did pinning help?"""
from __future__ import annotations

import gradio as gr

from app.service import ServiceError
from app.access import SWITCHING
from app.ui.common import SERVICE_QUEUE, SYNTH_CONCURRENCY, attachment_for, check_preset, require_operator, user_error
from app.ui.compat import own_wav_audio
from models.base import InputError, SynthesisRequest
from tracing.compare import compare_rows
from tracing.timeline_plot import compare_figure
from tuning.apply import TuningError


def build(ctx) -> None:
    svc = ctx.service
    allowed = list(ctx.tuner.allowed)

    def compare(text, spk=None, preset_a=None, preset_b=None, request: gr.Request = None, progress=gr.Progress()):
        require_operator(ctx, SWITCHING, request)  # two request-scoped presets
        for name in (preset_a, preset_b):
            check_preset(ctx, name, request, switching=False)
        outs = []
        for i, name in enumerate((preset_a, preset_b)):
            try:
                req = SynthesisRequest(text=text, spk_audio_prompt=spk or None)
                rec = svc.synthesize(req, preset=name, scope="request", trace=True,
                                     progress=lambda f, d, i=i, name=name: progress((i + f) / 2, desc=f"{name}: {d}"))
            except (InputError, TuningError, ServiceError) as e:
                raise user_error(e)
            outs.append(rec.to_dict())
        a, b = outs
        fig = compare_figure(a["breakdown"] or {}, b["breakdown"] or {}, f"A: {preset_a} ({a['id']})",
                             f"B: {preset_b} ({b['id']})")
        return (a["audio_path"], b["audio_path"], compare_rows(a["breakdown"], b["breakdown"], preset_a, preset_b),
                fig, attachment_for(ctx, a["id"], request), attachment_for(ctx, b["id"], request), a["id"], b["id"])

    with gr.Tab("对比 / Compare"):
        gr.Markdown("Synthesize the same input under two presets back to back (each applied for its "
                    "request only) and compare the kernel breakdowns: did pinning help?")
        with gr.Row():
            cmp_text = gr.Textbox(label="Text", value="This is a latency comparison. 这是一个对比测试。",
                                  elem_id="cmp_text")
            cmp_a = gr.Dropdown(allowed, value=allowed[0], label="Preset A", elem_id="cmp_a")
            cmp_b = gr.Dropdown(allowed, value=("pinned" if "pinned" in allowed else allowed[-1]),
                                label="Preset B", elem_id="cmp_b")
        cmp_spk = gr.Audio(label="Voice reference (optional)", type="filepath", sources=["upload"])
        cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare")
        cmp_table = gr.Dataframe(headers=["metric", "A", "B", "B/A"], label="A vs B", interactive=False,
                                 elem_id="cmp_table")
        gr.Markdown("**Timelines** of both clips on one time scale (ms from each trace window's start): "
                    "drag to zoom both, double-click to reset, hover a segment for its details")
        cmp_plot = gr.Plot(show_label=False, elem_id="cmp_timeline", elem_classes=["itts-timeline-pair"])
        sides = {}
        with gr.Row():
            for side in ("a", "b"):
                with gr.Column():
                    up = side.upper()
                    sides[side] = (own_wav_audio(gr.Audio(label=up, type="filepath", interactive=False)),
                                   gr.File(label=f"Attachment {up}", interactive=False, elem_id=f"cmp_att_{side}"),
                                   gr.Textbox(label=f"Request id {up}", interactive=False))
        (au_a, att_a, id_a), (au_b, att_b, id_b) = sides["a"], sides["b"]
        cmp_btn.click(compare, [cmp_text, cmp_spk, cmp_a, cmp_b],
                      [au_a, au_b, cmp_table, cmp_plot, att_a, att_b, id_a, id_b],
                      api_name="compare", concurrency_id=SERVICE_QUEUE,
                      concurrency_limit=SYNTH_CONCURRENCY)
