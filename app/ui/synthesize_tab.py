"""The Synthesize tab: IndexTTS2's inputs (speaker prompt, text, emotion control, advanced
generation kwargs), IndexTTS-2.5's language and duration factor (shown when the serving engine reads
them), plus preset / scope / trace, and the clip panel. Its click is the /synthesize API endpoint."""
from __future__ import annotations

import gradio as gr

from app.queue_time import arrival_of
from app.service import ServiceError
from app.ui.clip_panel import build_clip_panel, clip_outputs
from app.ui.common import (KEEP, SCOPES, SERVICE_QUEUE, SYNTH_CONCURRENCY, attachment_for, check_preset, named_preset,
                           num, user_error)
from app.ui.compat import PRIVATE
from app.ui.live_player import build_live, live_steps
from models.base import DEFAULT_GENERATION, DURATION_FACTOR_RANGE, LANGUAGES_25, InputError, SynthesisRequest
from tuning.apply import TuningError

EMO_CHOICES = [  # IndexTTS2's emotion control radio, index = mode
    "与音色参考音频相同 / Same as the voice reference",
    "使用情感参考音频 / Use emotion reference audio",
    "使用情感向量控制 / Use emotion vectors",
    "使用情感描述文本控制 / Use text description to control emotion",
]
V25_INPUTS = ("lang", "duration_factor")  # SynthesisRequest fields only IndexTTS-2.5 reads
V25_DEFAULTS = {"lang": "ZH", "duration_factor": 1.0}  # upstream webui (main): dropdown ZH, slider 1.0
EMO_LABELS = ["喜 Happy", "怒 Angry", "哀 Sad", "惧 Afraid", "厌恶 Disgusted", "低落 Melancholic",
              "惊喜 Surprised", "平静 Calm"]


def make_run_request(ctx, segments: bool = False, player: bool = False):
    """The /synthesize handler (segments=True: /synthesize_stream; player=True too: the button's
    private event, which also feeds the live player). Every argument after text defaults to None
    (= the UI's default) so API clients may pass only what they change, by name:
    client.predict(text=..., api_name="/synthesize").
    A generator: the audio goes out the moment synthesis ends, the complete clip (breakdown,
    findings, timeline) once the trace is analysed (for an operator: the breakdown, then the
    complete clip with its attachment); predict() returns the last update, submit() sees each
    (clip_panel.clip_outputs says what each step holds). With segments, each
    segment goes out first (as a file, and to the live player with player), while synthesis goes
    on (app/ui/live_player.py)."""
    svc = ctx.service

    def run_request(text, spk=None, emo_mode=None, emo_ref=None, emo_weight=None, v1=None, v2=None,
                    v3=None, v4=None, v5=None, v6=None, v7=None, v8=None, emo_text=None,
                    use_random=None, do_sample=None, top_p=None, top_k=None, temperature=None,
                    length_penalty=None, num_beams=None, repetition_penalty=None,
                    max_mel_tokens=None, max_tokens_seg=None, preset=None, scope=None, trace=None,
                    lang=None, duration_factor=None, request: gr.Request = None, progress=gr.Progress()):
        try:  # refused before the service sees it: a failed request all the same (its metric)
            d = DEFAULT_GENERATION

            def dflt(v, default):
                return default if v is None else v
            vec = [dflt(v, 0.0) for v in (v1, v2, v3, v4, v5, v6, v7, v8)]
            trace = svc.tracing_enabled if trace is None else trace
            if scope not in (None, *SCOPES):
                raise gr.Error(f"Unknown scope {scope!r}: use one of {SCOPES}.")
            preset = named_preset(preset)  # not naming one keeps what is in force
            if preset:
                check_preset(ctx, preset, request)
            try:
                v25 = v25_fields(ctx.engine, lang=lang, duration_factor=duration_factor)
                req = SynthesisRequest(
                    text=text,
                    spk_audio_prompt=spk or None,
                    emo_control_method=emo_mode if emo_mode is not None else 0,
                    emo_audio_prompt=emo_ref or None, emo_alpha=num(dflt(emo_weight, 0.65), "Emotion weight"),
                    emo_vector=[num(v, "Emotion value") for v in vec],
                    emo_text=emo_text or None, use_random=bool(dflt(use_random, False)),
                    max_text_tokens_per_segment=num(dflt(max_tokens_seg, ctx.args.gui_seg_tokens),
                                                    "Max tokens per segment"),
                    generation={
                        "do_sample": bool(dflt(do_sample, d["do_sample"])),
                        "top_p": num(dflt(top_p, d["top_p"]), "top_p"),
                        "top_k": int(num(dflt(top_k, d["top_k"]), "top_k")),
                        "temperature": num(dflt(temperature, d["temperature"]), "temperature"),
                        "length_penalty": num(dflt(length_penalty, d["length_penalty"]), "length_penalty"),
                        "num_beams": int(num(dflt(num_beams, d["num_beams"]), "num_beams")),
                        "repetition_penalty": num(dflt(repetition_penalty, d["repetition_penalty"]),
                                                  "repetition_penalty"),
                        "max_mel_tokens": int(num(dflt(max_mel_tokens, d["max_mel_tokens"]), "max_mel_tokens"))},
                    **v25)
                req.validate()  # refused here, before a live request starts its worker
            except (InputError, TuningError, ServiceError) as e:
                raise user_error(e)
        except gr.Error:
            svc.refused()
            raise
        start = dict(preset=preset or None, scope="request" if scope == SCOPES[1] else "service",
                     trace=bool(trace), progress=lambda f, desc: progress(f, desc=desc), hold=True,
                     arrived=arrival_of(request))  # queue time from the HTTP arrival
        steps = panel_steps(ctx, request, progress)
        if segments:
            yield from live_steps(ctx, req, start, steps, N_PANEL, player=player)
            return
        try:  # on the one synthesis thread, as the streamed events (one torch/OpenMP team, app/streaming.py)
            job = ctx.streamer.start(req, **start).job()
        except (InputError, TuningError, ServiceError) as e:
            raise user_error(e)
        yield from steps(job)

    return run_request


N_PANEL = 10  # clip_panel.build_clip_panel's components


def panel_steps(ctx, request, progress):
    """job -> the clip panel's updates after synthesis: the audio, then the complete clip (for an
    operator, traced: the breakdown with the audio slot skipped first, then the complete clip with
    its attachment, built here). The post-processing is released once the audio has reached the
    client (app/delivery.py, Job)."""
    def steps(job):
        ticket = ctx.delivery.expect()  # before the yield: the download may beat our resumption
        try:
            yield clip_outputs(job.record.to_dict(), pending="analysis")
            # Gradio resumes us when the update is queued, not delivered: the post-processing
            # starts once the client has fetched the audio (app/delivery.py, Job)
            ctx.delivery.wait(ticket, ctx.args.audio_wait_s)
            operator = ctx.access.operator(request)
            if job.record.tracing:
                progress(0.97, desc="analysing the trace")
            if job.record.tracing and operator:  # an attachment is due: the breakdown goes out first
                job.release("analysis")
                # the audio slot is skipped: resent, it would make every client fetch the wav
                # again before it could show the breakdown
                yield (gr.skip(), *clip_outputs(job.analysed().to_dict(), pending="attachment")[1:])
                progress(0.99, desc="packing the trace attachment")
            # Nothing else to wait for: the complete clip is the breakdown's update (a breakdown
            # update of its own cost as much server and client CPU again: issue 25)
            job.release()
            rec = job.result()
            yield clip_outputs(rec.to_dict(), attachment=attachment_for(ctx, rec, request) if operator else None)
        finally:
            ctx.delivery.drop(ticket)
            job.release()  # a client gone (generator closed) or an error: never hold the next request
    return steps


def engine_inputs(engine) -> tuple:
    """The optional inputs the serving engine reads beyond IndexTTS2's (an engine declares them in
    `inputs`; IndexTTS-2.5's are V25_INPUTS)."""
    return tuple(getattr(engine, "inputs", ()) or ())


def v25_fields(engine, lang=None, duration_factor=None) -> dict:
    """SynthesisRequest keywords for the 2.5 inputs. None means the default. An engine that does
    not read them gets its defaults; a value other than the default is refused there instead of
    being dropped silently (the UI sends the hidden defaults, so only API clients can hit this)."""
    reads = engine_inputs(engine)
    given = {"lang": lang, "duration_factor": duration_factor}
    out = {}
    for name, value in given.items():
        if value is None:
            continue
        if name in reads:
            out[name] = num(value, "Duration factor") if name == "duration_factor" else value
        elif value != V25_DEFAULTS[name]:
            raise InputError(f"{name}={value!r}: the serving engine ({engine.name}) has no such input; "
                             f"language and duration factor are IndexTTS-2.5's (--version 2.5).")
    return out


def _show_mode(m):
    return gr.update(visible=m == 1), gr.update(visible=m == 2), gr.update(visible=m == 3)


def build(ctx) -> dict:
    """The tab in the current Blocks. Returns the components other tabs write to (preset, scope)."""
    svc, tuner = ctx.service, ctx.tuner
    allowed = list(tuner.allowed)
    d = DEFAULT_GENERATION
    with gr.Tab("合成 / Synthesize"):
        with gr.Row():
            with gr.Column():
                spk = gr.Audio(label="音色参考音频 / Voice reference", sources=["upload", "microphone"],
                               type="filepath", elem_id="spk")
                text = gr.Textbox(label="文本 / Text", lines=4, elem_id="text",
                                  placeholder="请输入目标文本 / Enter the text to speak")
                reads = engine_inputs(ctx.engine)  # hidden, not absent: the API's fields stay the same
                lang = gr.Dropdown(list(LANGUAGES_25), value=V25_DEFAULTS["lang"], label="语言 / Language",
                                   elem_id="lang", visible="lang" in reads)
                duration = gr.Slider(*DURATION_FACTOR_RANGE, value=V25_DEFAULTS["duration_factor"], step=0.01,
                                     label="时长系数 / Duration factor (快 faster ← 1.0 → 慢 slower)",
                                     elem_id="duration_factor", visible="duration_factor" in reads)
                with gr.Row():
                    preset = gr.Dropdown([KEEP, *allowed], value=KEEP, label="调度预设 / Scheduling preset",
                                         elem_id="preset", interactive=ctx.access.anyone)
                    scope = gr.Radio(SCOPES, value=SCOPES[0], label="预设范围 / Preset scope", elem_id="scope")
                    trace = gr.Checkbox(value=svc.tracing_enabled, label="内核追踪 / Kernel trace", elem_id="trace")
                gen = gr.Button("生成语音 / Synthesize", variant="primary", elem_id="generate")
                with gr.Accordion("情感控制 / Emotion control", open=True):
                    emo_mode = gr.Radio(EMO_CHOICES, type="index", value=EMO_CHOICES[0],
                                        label="情感控制方式 / Emotion control method", elem_id="emo_mode")
                    emo_ref = gr.Audio(label="情感参考音频 / Emotion reference audio", type="filepath",
                                       sources=["upload", "microphone"], visible=False)
                    emo_weight = gr.Slider(0.0, 1.0, value=0.65, step=0.01, label="情感权重 / Emotion weight")
                    with gr.Group(visible=False) as vec_group:
                        vecs = [gr.Slider(0.0, 1.0, value=0.0, step=0.05, label=lab) for lab in EMO_LABELS]
                    emo_text = gr.Textbox(label="情感描述文本 / Emotion description", visible=False,
                                          placeholder="例如：高兴 / e.g. happy, excited")
                    use_random = gr.Checkbox(value=False, label="情感随机采样 / Random emotion sampling")
                with gr.Accordion("高级生成参数 / Advanced generation parameters", open=False):
                    gen_inputs = [
                        # the real IndexTTS hard-codes do_sample=True: say so instead of a dead toggle
                        gr.Checkbox(value=d["do_sample"], label="do_sample",
                                    info=getattr(ctx.engine, "generation_note", "") or None),
                        gr.Slider(0.0, 1.0, value=d["top_p"], step=0.01, label="top_p"),
                        gr.Slider(0, 100, value=d["top_k"], step=1, label="top_k"),
                        gr.Slider(0.1, 2.0, value=d["temperature"], step=0.1, label="temperature"),
                        gr.Number(value=d["length_penalty"], label="length_penalty"),
                        gr.Slider(1, 10, value=d["num_beams"], step=1, label="num_beams"),
                        gr.Number(value=d["repetition_penalty"], label="repetition_penalty"),
                        gr.Slider(50, 1815, value=d["max_mel_tokens"], step=10, label="max_mel_tokens"),
                        gr.Slider(20, 600, value=ctx.args.gui_seg_tokens, step=2,
                                  label="分句最大Token数 / Max tokens per segment")]
            with gr.Column():
                live = build_live()
                clip_panel = build_clip_panel()
        emo_mode.change(_show_mode, emo_mode, [emo_ref, vec_group, emo_text], **PRIVATE)
        inputs = [text, spk, emo_mode, emo_ref, emo_weight, *vecs, emo_text, use_random, *gen_inputs,
                  preset, scope, trace, lang, duration]
        # the button streams (live player + segment files, then the panel); /synthesize, the API's
        # complete-clip endpoint, is the same request without the segments (a hidden trigger)
        # the button: segments to the live player (and as files), then the panel; a private event,
        # because an API client cannot take a streamed-audio output (gradio_client 1.x fails on its
        # HLS playlist) and must not pay for its AAC encoding. The API has, on hidden triggers,
        # /synthesize (the complete clip, as ever) and /synthesize_stream (a wav per segment first).
        gen.click(make_run_request(ctx, segments=True, player=True), inputs, [*live, *clip_panel],
                  concurrency_limit=SYNTH_CONCURRENCY, concurrency_id=SERVICE_QUEUE, **PRIVATE)
        api_stream = gr.Button(visible=False, elem_id="synthesize_stream_api")
        api_stream.click(make_run_request(ctx, segments=True), inputs, [live[1], *clip_panel],
                         api_name="synthesize_stream", concurrency_limit=SYNTH_CONCURRENCY,
                         concurrency_id=SERVICE_QUEUE)
        api_only = gr.Button(visible=False, elem_id="synthesize_api")
        api_only.click(make_run_request(ctx), inputs, clip_panel, api_name="synthesize",
                       concurrency_limit=SYNTH_CONCURRENCY, concurrency_id=SERVICE_QUEUE)
    return {"preset": preset, "scope": scope}
