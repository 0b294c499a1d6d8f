"""Web UI and CLI of the launcher: IndexTTS2's inputs plus a per-clip kernel latency breakdown.

Builds the Gradio Blocks UI and wires the parts (models/, tuning/, tracing/, service.py); it holds
no logic of its own. The launch preset is applied before gradio/torch are imported, so every
thread the process creates inherits it (taskset/nice/chrt semantics).
"""
import argparse
import ipaddress
import os
import signal
import sys

from tuning.launch import add_launch_args, apply_launch
from tuning.presets import PresetError, load_presets


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="IndexTTS2-compatible WebUI with a per-request kernel latency breakdown",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("IndexTTS2 webui flags (same meaning)")
    g.add_argument("--verbose", action="store_true", help="verbose logging and engine output")
    g.add_argument("--port", type=int, default=7860, help="port to serve on")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to bind; IndexTTS2 binds 0.0.0.0, we default to loopback so the "
                        "scheduling controls are not exposed to the network by accident")
    g.add_argument("--model_dir", default="./checkpoints", help="IndexTTS2 checkpoints directory")
    g.add_argument("--fp16", action="store_true", help="IndexTTS2: fp16 inference")
    g.add_argument("--deepspeed", action="store_true", help="IndexTTS2: use DeepSpeed")
    g.add_argument("--cuda_kernel", action="store_true", help="IndexTTS2: BigVGAN CUDA kernel")
    g.add_argument("--gui_seg_tokens", type=int, default=120, help="default max tokens per segment in the UI")
    o = p.add_argument_group("engine, tracing, history")
    o.add_argument("--engine", choices=("auto", "builtin", "indextts2", "replica"), default="auto",
                   help="auto: indextts2 when model_dir is complete and `indextts` imports, else builtin")
    o.add_argument("--replica-scale", type=float, default=None, help="size factor of the replica engine")
    o.add_argument("--no-trace", action="store_true", help="start with per-request tracing off")
    o.add_argument("--trace-buffer-kb", type=int, default=None, help="ring buffer per CPU per window")
    o.add_argument("--tracefs", default=None, help="tracefs path (default: find or mount it)")
    o.add_argument("--outputs", default="outputs", help="where clips and their traces are kept")
    o.add_argument("--keep-clips", type=int, default=200, help="history retention: number of clips")
    o.add_argument("--keep-mb", type=int, default=500, help="history retention: total size in MB")
    o.add_argument("--no-warmup", action="store_true", help="skip the warm-up synthesis at start")
    s = p.add_argument_group("security")
    s.add_argument("--auth", default=None, metavar="USER:PASS", help="require this login (Gradio auth)")
    s.add_argument("--i-know-this-is-open", action="store_true",
                   help="allow preset switching on a non-loopback host without --auth")
    add_launch_args(p)
    args = p.parse_args(argv)
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth takes USER:PASS")
    return args


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None) -> int:
    args = parse_args(argv)
    # SIGTERM (systemd stop, docker stop) exits cleanly: SystemExit unwinds the main thread, and
    # trace windows still open are removed by their own chained handler first.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        presets = load_presets(args.presets)
    except PresetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        launch_preset = apply_launch(args, presets)  # before torch/gradio create their threads
    except Exception as e:
        print(f"error: launch preset refused: {e}", file=sys.stderr)
        return 2
    try:
        ctx = make_context(args, presets, launch_preset)  # heavy imports only after the preset
    except (ValueError, ImportError, RuntimeError, OSError) as e:  # e.g. model_dir lacks files
        print(f"error: {e}", file=sys.stderr)
        return 2
    app = build_app(ctx)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    print(f"* Engine: {ctx.engine.label}", flush=True)
    print(f"* Tracing: {ctx.capabilities.get('mode', '?')} mode", flush=True)
    app.queue(default_concurrency_limit=1)
    fastapi_app, _, _ = app.launch(server_name=args.host, server_port=args.port, auth=auth, show_error=True,
                                   footer_links=["api", "gradio", "settings"], prevent_thread_lock=True)
    import metrics
    metrics.install(ctx, fastapi_app)  # GET /metrics for Prometheus
    print(f"* Prometheus metrics at http://{args.host}:{args.port}/metrics", flush=True)
    try:
        app.block_thread()
    finally:
        ctx.service.close()
    return 0


# ---------------------------------------------------------------------------------------------
# everything below imports gradio/torch lazily: main() must apply the launch preset first

class Context:
    """The wired parts the UI calls."""

    def __init__(self, args, presets, launch_preset):
        import logging
        from models.registry import create_engine
        from service import Service
        from store import ClipStore
        from tracing.tracefs import cleanup_stale, find_tracefs, probe
        from tuning.apply import Tuner

        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
        self.args = args
        root = find_tracefs(args.tracefs)
        # an explicit --tracefs that is not tracefs degrades to schedstat mode; falling back to
        # the system's tracefs (what root=None means below) would ignore the operator's choice
        self.trace_root = root if root is not None else args.tracefs
        if root is not None:
            removed = cleanup_stale(root=root)  # instances of our dead processes (kill -9)
            if removed:
                print(f"* Removed stale trace instances: {', '.join(removed)}", flush=True)
        self.capabilities = probe(self.trace_root).to_dict()
        self.tuner = Tuner(presets, allow_realtime=args.allow_realtime, force_realtime=args.force_realtime)
        if launch_preset is not None:
            self.tuner.adopt(launch_preset)
        self.engine = create_engine(args.engine, model_dir=args.model_dir, fp16=args.fp16,
                                    deepspeed=args.deepspeed, cuda_kernel=args.cuda_kernel,
                                    replica_scale=args.replica_scale)
        self.store = ClipStore(args.outputs, max_clips=args.keep_clips, max_bytes=args.keep_mb * 2**20)
        self.store.remove_incomplete()
        self.service = Service(self.engine, self.tuner, self.store, tracing_enabled=not args.no_trace,
                               trace_root=self.trace_root, buffer_kb=args.trace_buffer_kb)
        self.switching_allowed = is_loopback(args.host) or bool(args.auth) or args.i_know_this_is_open
        if not self.switching_allowed:
            print("* Preset switching is disabled: the UI is exposed on a non-loopback host without "
                  "--auth (pass --auth USER:PASS, or --i-know-this-is-open).", flush=True)
        if not args.no_warmup:
            self.warmup()

    def warmup(self) -> None:
        """One synthesis at start-up, outside any trace window, so the first user request does
        not pay for lazy initialisation (library load, torch kernels, caches)."""
        import time
        from models.base import NullStages, SynthesisRequest
        t = time.monotonic()
        try:
            if hasattr(self.engine, "warmup"):
                self.engine.warmup()
            else:
                self.engine.synthesize(SynthesisRequest(text="Hello. 你好。"), NullStages())
            print(f"* Warm-up synthesis took {time.monotonic() - t:.2f} s", flush=True)
        except Exception as e:  # the engine may need a speaker prompt (indextts2): not fatal
            print(f"* Warm-up skipped: {e}", flush=True)


def make_context(args, presets, launch_preset) -> Context:
    return Context(args, presets, launch_preset)


# --------------------------------------------------------------------------------- the UI ----
EMO_CHOICES = [  # IndexTTS2's emotion control radio, index = mode
    "与音色参考音频相同 / Same as the voice reference",
    "使用情感参考音频 / Use emotion reference audio",
    "使用情感向量控制 / Use emotion vectors",
    "使用情感描述文本控制 / Use text description to control emotion",
]
EMO_LABELS = ["喜 Happy", "怒 Angry", "哀 Sad", "惧 Afraid", "厌恶 Disgusted", "低落 Melancholic",
              "惊喜 Surprised", "平静 Calm"]
SCOPES = ["service-wide", "this request only"]


def _user_error(e: Exception):
    """Turn any refusal into a Gradio error: shown in the UI, returned by the API, server stays up."""
    import gradio as gr
    return gr.Error(str(e), duration=None)


def clip_outputs(rec: dict):
    """A stored clip record -> the values of the clip panel (shared by generate, history, API)."""
    from tracing.report import blocker_rows, format_breakdown_rows, latency_brief, stage_rows
    bd = rec.get("breakdown") or {}
    preset = rec.get("preset") or {}
    head = (f"**Request** `{rec['id']}` · **Engine:** {rec['engine_label']} · "
            f"**Preset in force:** {preset.get('preset', '?')} ({_preset_line(preset)}) · "
            f"**Wall** {rec['wall_s'] * 1000:.0f} ms for {rec['duration_s']:.2f} s of audio "
            f"(RTF {rec['rtf']:.2f})")
    if not rec.get("tracing"):
        head += "\n\n_Tracing was off for this request._"
    else:
        mode = bd.get("mode", "?")
        lost = (bd.get("lost_events") or {}).get("total", 0)
        src = {"pages": " (decoded from the ring-buffer pages)", "text": " (parsed from the text trace)"}.get(
            bd.get("source", ""), "")
        head += f"\n\n**Trace mode:** {mode}{src}" + (f" · **lost events: {lost}** (breakdown incomplete)" if lost else " · no events lost")
        if bd.get("latency"):
            head += f"  \n**Kernel latency tracers:** {latency_brief(bd['latency'])}"
    findings = rec.get("findings") or []
    fmd = "\n".join(f"- **{f['severity'].upper()}** {f['message']}" for f in findings) or "_No findings._"
    return (rec["audio_path"], rec["id"], head,
            format_breakdown_rows(bd) if bd else [], stage_rows(bd) if bd else [],
            blocker_rows(bd) if bd else [], fmd, rec.get("timeline_path"),
            rec.get("attachment_path"), {"breakdown": bd, "findings": findings, "preset": preset,
                                         "engine": rec["engine"], "request_id": rec["id"]})


def _preset_line(p: dict) -> str:
    bits = []
    for k in ("cpus", "nice", "policy", "rt_priority", "torch_threads"):
        if p.get(k) not in (None, ""):
            bits.append(f"{k}={p[k]}")
    return ", ".join(bits) or "inherited"


def build_app(ctx: Context):
    import gradio as gr
    from models.base import DEFAULT_GENERATION, InputError, SynthesisRequest
    from service import ServiceError
    from store import ClipNotFound
    from tuning.apply import TuningError

    svc, tuner, store = ctx.service, ctx.tuner, ctx.store
    allowed = list(tuner.allowed)
    from tracing.report import BLOCKER_HEADERS as BL_HEAD, BREAKDOWN_HEADERS as BD_HEAD, STAGE_HEADERS as ST_HEAD
    TH_HEAD = ["tid", "thread", "CPUs", "nice", "policy", "rt prio"]

    # Every argument after text defaults to None (= the UI's default) so API clients may pass
    # only what they change, by name: client.predict(text=..., api_name="/synthesize").
    def run_request(text, spk=None, emo_mode=None, emo_ref=None, emo_weight=None, v1=None, v2=None,
                    v3=None, v4=None, v5=None, v6=None, v7=None, v8=None, emo_text=None,
                    use_random=None, do_sample=None, top_p=None, top_k=None, temperature=None,
                    length_penalty=None, num_beams=None, repetition_penalty=None,
                    max_mel_tokens=None, max_tokens_seg=None, preset=None, scope=None, trace=None,
                    progress=gr.Progress()):
        d = DEFAULT_GENERATION
        dflt = lambda v, default: default if v is None else v  # noqa: E731
        emo_weight, use_random = dflt(emo_weight, 0.65), dflt(use_random, False)
        v1, v2, v3, v4, v5, v6, v7, v8 = (dflt(v, 0.0) for v in (v1, v2, v3, v4, v5, v6, v7, v8))
        do_sample, top_p, top_k = dflt(do_sample, d["do_sample"]), dflt(top_p, d["top_p"]), dflt(top_k, d["top_k"])
        temperature, length_penalty = dflt(temperature, d["temperature"]), dflt(length_penalty, d["length_penalty"])
        num_beams, repetition_penalty = dflt(num_beams, d["num_beams"]), dflt(repetition_penalty, d["repetition_penalty"])
        max_mel_tokens, max_tokens_seg = dflt(max_mel_tokens, d["max_mel_tokens"]), dflt(max_tokens_seg, ctx.args.gui_seg_tokens)
        trace = svc.tracing_enabled if trace is None else trace
        if scope not in (None, *SCOPES):
            raise gr.Error(f"Unknown scope {scope!r}: use one of {SCOPES}.")
        if preset and preset != tuner.current.name and not ctx.switching_allowed:
            raise gr.Error("Preset switching is disabled on this server (exposed without --auth).")
        if preset and preset not in allowed:
            raise gr.Error(f"Unknown or not allowed preset {preset!r}. Allowed: {', '.join(allowed)}.")
        try:
            req = SynthesisRequest(
                text=text,
                spk_audio_prompt=spk or None,
                emo_control_method=emo_mode if emo_mode is not None else 0,
                emo_audio_prompt=emo_ref or None, emo_alpha=_num(emo_weight, "Emotion weight"),
                emo_vector=[_num(v, "Emotion value") for v in (v1, v2, v3, v4, v5, v6, v7, v8)],
                emo_text=emo_text or None, use_random=bool(use_random),
                max_text_tokens_per_segment=_num(max_tokens_seg, "Max tokens per segment"),
                generation={"do_sample": bool(do_sample), "top_p": _num(top_p, "top_p"),
                            "top_k": int(_num(top_k, "top_k")), "temperature": _num(temperature, "temperature"),
                            "length_penalty": _num(length_penalty, "length_penalty"),
                            "num_beams": int(_num(num_beams, "num_beams")),
                            "repetition_penalty": _num(repetition_penalty, "repetition_penalty"),
                            "max_mel_tokens": int(_num(max_mel_tokens, "max_mel_tokens"))})
            rec = svc.synthesize(req, preset=preset or None,
                                 scope="request" if scope == SCOPES[1] else "service",
                                 trace=bool(trace), progress=lambda f, d: progress(f, desc=d))
        except (InputError, TuningError, ServiceError) as e:
            raise _user_error(e)
        return clip_outputs(rec.to_dict())

    def _num(v, what):
        import math
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{what} must be a finite number, got {v!r}.")
        return v

    def scheduling_state():
        rb = tuner.readback()
        rows = [[t["tid"], t["comm"], t["cpus"], t["nice"], t["policy"], t["rt_priority"]]
                for t in rb.get("threads", [])]
        md = (f"**In force:** `{rb.get('preset')}` · {_preset_line(rb)} · torch threads: "
              f"{rb.get('torch_threads', '?')} intra-op / {rb.get('torch_interop_threads', '?')} inter-op"
              + (f" · autogroup nice {rb['autogroup_nice']}" + ("" if rb.get("autogroup_owned") else
                 " (the launching shell's session: not changed by presets; nice only orders threads "
                 "inside it — run under systemd or `setsid` for nice presets to count)")
                 if rb.get("autogroup_nice") is not None else "")
              + ("" if rb.get("matches", True) else " · **read-back differs from the preset**"))
        return md, rows, rb

    def apply_service(name):
        if not ctx.switching_allowed:
            raise gr.Error("Preset switching is disabled on this server (exposed without --auth).")
        if name not in allowed:
            raise gr.Error(f"Unknown or not allowed preset {name!r}. Allowed: {', '.join(allowed)}.")
        try:
            tuner.apply(name)
        except TuningError as e:
            raise _user_error(e)
        return (*scheduling_state(), name, SCOPES[0])

    def apply_request_only(name):
        if name not in allowed:
            raise gr.Error(f"Unknown or not allowed preset {name!r}. Allowed: {', '.join(allowed)}.")
        gr.Info(f"The next request will run under '{name}' and then restore the service preset.")
        return name, SCOPES[1]

    def history():
        return [[r["id"], r["created"], (r.get("preset") or {}).get("preset", "?"), r["engine"],
                 round(r["wall_s"] * 1000), round(((r.get("breakdown") or {}).get("totals") or {}).get("runqueue_wait_s", 0) * 1000, 1),
                 r["text"][:60]] for r in store.list(100)]

    def load_clip(request_id):
        try:
            return clip_outputs(store.get((request_id or "").strip()))
        except ClipNotFound as e:
            raise _user_error(e)

    def download(request_id):
        try:
            return str(store.path((request_id or "").strip(), "attachment"))
        except ClipNotFound as e:
            raise _user_error(e)

    def compare(text, spk=None, preset_a=None, preset_b=None, progress=gr.Progress()):
        if not ctx.switching_allowed:
            raise gr.Error("Preset switching is disabled on this server (exposed without --auth).")
        outs = []
        for i, name in enumerate((preset_a, preset_b)):
            if name not in allowed:
                raise gr.Error(f"Unknown or not allowed preset {name!r}.")
            try:
                req = SynthesisRequest(text=text, spk_audio_prompt=spk or None)
                rec = svc.synthesize(req, preset=name, scope="request", trace=True,
                                     progress=lambda f, d, i=i: progress((i + f) / 2, desc=f"{name}: {d}"))
            except (InputError, TuningError, ServiceError) as e:
                raise _user_error(e)
            outs.append(rec.to_dict())
        from tracing.compare import compare_rows
        a, b = outs
        return (a["audio_path"], b["audio_path"], compare_rows(a["breakdown"], b["breakdown"], preset_a, preset_b),
                a["timeline_path"], b["timeline_path"], a["attachment_path"], b["attachment_path"],
                a["id"], b["id"])

    with gr.Blocks(title="IndexTTS2 launcher · kernel latency") as app:
        gr.Markdown(f"## IndexTTS2 launcher with per-request kernel latency breakdown\n"
                    f"**Engine serving:** {ctx.engine.label}"
                    + (f"  \n_{ctx.engine.selection_note}_" if getattr(ctx.engine, "selection_note", "") else "")
                    + f"  \n**Tracing:** {ctx.capabilities.get('mode')} mode")
        pending_preset = gr.State(None)
        with gr.Tab("合成 / Synthesize"):
            with gr.Row():
                with gr.Column():
                    spk = gr.Audio(label="音色参考音频 / Voice reference", sources=["upload", "microphone"],
                                   type="filepath", elem_id="spk")
                    text = gr.Textbox(label="文本 / Text", lines=4, elem_id="text",
                                      placeholder="请输入目标文本 / Enter the text to speak")
                    with gr.Row():
                        preset = gr.Dropdown(allowed, value=tuner.current.name, label="调度预设 / Scheduling preset",
                                             elem_id="preset", interactive=ctx.switching_allowed)
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
                        do_sample = gr.Checkbox(value=DEFAULT_GENERATION["do_sample"], label="do_sample")
                        top_p = gr.Slider(0.0, 1.0, value=DEFAULT_GENERATION["top_p"], step=0.01, label="top_p")
                        top_k = gr.Slider(0, 100, value=DEFAULT_GENERATION["top_k"], step=1, label="top_k")
                        temperature = gr.Slider(0.1, 2.0, value=DEFAULT_GENERATION["temperature"], step=0.1, label="temperature")
                        length_penalty = gr.Number(value=DEFAULT_GENERATION["length_penalty"], label="length_penalty")
                        num_beams = gr.Slider(1, 10, value=DEFAULT_GENERATION["num_beams"], step=1, label="num_beams")
                        repetition_penalty = gr.Number(value=DEFAULT_GENERATION["repetition_penalty"], label="repetition_penalty")
                        max_mel_tokens = gr.Slider(50, 1815, value=DEFAULT_GENERATION["max_mel_tokens"], step=10, label="max_mel_tokens")
                        max_tokens_seg = gr.Slider(20, 600, value=ctx.args.gui_seg_tokens, step=2,
                                                   label="分句最大Token数 / Max tokens per segment")
                with gr.Column():
                    out_audio = gr.Audio(label="生成结果 / Generated audio", type="filepath", elem_id="out_audio",
                                         interactive=False)
                    clip_id = gr.Textbox(label="Request id", interactive=False, elem_id="clip_id")
                    head = gr.Markdown(elem_id="clip_head")
                    bd_table = gr.Dataframe(headers=BD_HEAD, label="Kernel breakdown", elem_id="breakdown",
                                            interactive=False)
                    findings_md = gr.Markdown(elem_id="findings")
                    timeline = gr.Image(label="Timeline (per thread: running / waiting / blocked / sleeping)",
                                        type="filepath", elem_id="timeline", interactive=False)
                    stage_table = gr.Dataframe(headers=ST_HEAD, label="Per stage", interactive=False, elem_id="stages")
                    blk_table = gr.Dataframe(headers=BL_HEAD, label="Who held our CPU (top blockers)",
                                             interactive=False, elem_id="blockers")
                    attach = gr.File(label="Trace attachment (zip: trace.txt for ui.perfetto.dev, summary.json, report.txt)",
                                     elem_id="attachment", interactive=False)
                    bd_json = gr.JSON(label="Breakdown (JSON)", visible=False)
            clip_panel = [out_audio, clip_id, head, bd_table, stage_table, blk_table, findings_md,
                          timeline, attach, bd_json]

            def show_mode(m):
                return (gr.update(visible=m == 1), gr.update(visible=m == 2), gr.update(visible=m == 3))
            emo_mode.change(show_mode, emo_mode, [emo_ref, vec_group, emo_text], api_visibility="private")
            gen.click(run_request,
                      [text, spk, emo_mode, emo_ref, emo_weight, *vecs, emo_text, use_random, do_sample, top_p,
                       top_k, temperature, length_penalty, num_beams, repetition_penalty, max_mel_tokens,
                       max_tokens_seg, preset, scope, trace],
                      clip_panel, api_name="synthesize", concurrency_limit=1, concurrency_id="synth")

        with gr.Tab("调度 / Scheduling"):
            gr.Markdown("Presets set CPU affinity, nice and scheduling policy on **every thread** of the "
                        "service (like `taskset`, `nice`, `chrt`). What is shown is read back from the kernel.")
            with gr.Row():
                sched_preset = gr.Dropdown(allowed, value=tuner.current.name, label="Preset",
                                           elem_id="sched_preset", interactive=ctx.switching_allowed)
                apply_btn = gr.Button("Apply service-wide", elem_id="apply_service",
                                      interactive=ctx.switching_allowed)
                once_btn = gr.Button("Use for the next request only", elem_id="apply_request",
                                     interactive=ctx.switching_allowed)
                refresh_btn = gr.Button("Refresh", elem_id="refresh_sched")
            descr = gr.Markdown("\n".join(f"- **{n}**: {tuner.presets[n].description}" for n in allowed))
            sched_md = gr.Markdown(elem_id="sched_state")
            sched_rows = gr.Dataframe(headers=TH_HEAD, label="Threads (read back from /proc)",
                                      interactive=False, elem_id="threads")
            sched_json = gr.JSON(visible=False)
            apply_btn.click(apply_service, sched_preset, [sched_md, sched_rows, sched_json, preset, scope],
                            api_name="apply_preset", concurrency_id="synth")
            once_btn.click(apply_request_only, sched_preset, [preset, scope], api_name="preset_for_next_request")
            refresh_btn.click(scheduling_state, None, [sched_md, sched_rows, sched_json], api_name="scheduling_state")

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
            with gr.Row():
                with gr.Column():
                    cmp_audio_a = gr.Audio(label="A", type="filepath", interactive=False)
                    cmp_tl_a = gr.Image(label="Timeline A", type="filepath", interactive=False)
                    cmp_att_a = gr.File(label="Attachment A", interactive=False, elem_id="cmp_att_a")
                    cmp_id_a = gr.Textbox(label="Request id A", interactive=False)
                with gr.Column():
                    cmp_audio_b = gr.Audio(label="B", type="filepath", interactive=False)
                    cmp_tl_b = gr.Image(label="Timeline B", type="filepath", interactive=False)
                    cmp_att_b = gr.File(label="Attachment B", interactive=False, elem_id="cmp_att_b")
                    cmp_id_b = gr.Textbox(label="Request id B", interactive=False)
            cmp_btn.click(compare, [cmp_text, cmp_spk, cmp_a, cmp_b],
                          [cmp_audio_a, cmp_audio_b, cmp_table, cmp_tl_a, cmp_tl_b, cmp_att_a, cmp_att_b,
                           cmp_id_a, cmp_id_b], api_name="compare", concurrency_id="synth")

        with gr.Tab("历史 / History"):
            hist = gr.Dataframe(headers=["request id", "created (UTC)", "preset", "engine", "wall ms",
                                         "run-queue ms", "text"], interactive=False, elem_id="history")
            with gr.Row():
                hist_id = gr.Textbox(label="Request id", elem_id="hist_id")
                hist_load = gr.Button("Show clip", elem_id="hist_load")
                hist_refresh = gr.Button("Refresh", elem_id="hist_refresh")
            h_audio = gr.Audio(label="Audio", type="filepath", interactive=False)
            h_id = gr.Textbox(visible=False)
            h_head = gr.Markdown()
            h_bd = gr.Dataframe(headers=BD_HEAD, interactive=False)
            h_st = gr.Dataframe(headers=ST_HEAD, interactive=False)
            h_bl = gr.Dataframe(headers=BL_HEAD, interactive=False)
            h_find = gr.Markdown()
            h_tl = gr.Image(type="filepath", interactive=False)
            h_att = gr.File(label="Attachment", interactive=False)
            h_json = gr.JSON(visible=False)
            hist_refresh.click(history, None, hist, api_name="history")
            hist_load.click(load_clip, hist_id, [h_audio, h_id, h_head, h_bd, h_st, h_bl, h_find, h_tl, h_att, h_json],
                            api_name="clip")

            def pick_row(evt: gr.SelectData):
                return evt.row_value[0] if evt.row_value else ""
            hist.select(pick_row, None, hist_id, api_visibility="private")
            dl_id = gr.Textbox(visible=False)
            dl_file = gr.File(visible=False)
            dl_btn = gr.Button(visible=False)
            dl_btn.click(download, dl_id, dl_file, api_name="download")

        with gr.Tab("快照 / Snapshots"):
            from webui_snapshot import build_snapshot_tab
            build_snapshot_tab(ctx, gr)

        with gr.Tab("系统 / System"):
            gr.Markdown("**Tracing capabilities** (as `python -m tracing doctor` prints them)")
            gr.JSON(value=ctx.capabilities, elem_id="capabilities")
            gr.Markdown(f"**Engine:** {ctx.engine.label}")

        app.load(scheduling_state, None, [sched_md, sched_rows, sched_json], api_visibility="private")
        app.load(history, None, hist, api_visibility="private")
    return app


if __name__ == "__main__":
    sys.exit(main())
