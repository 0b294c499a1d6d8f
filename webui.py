"""The door: CLI flags, start-up, and the page assembled from its tabs (app/ui/, one module each).

Holds no logic of its own: app/context.py wires the parts (models/, tuning/, tracing/, app/). The
launch preset is applied before gradio/torch are imported, so every thread the process creates
inherits it (taskset/nice/chrt semantics).
"""
import argparse
import os
import platform
import signal
import sys

from tuning.launch import add_launch_args, apply_launch, deferred_preset
from tuning.presets import PresetError, load_presets


EXAMPLES = """examples:
  ./start_app.sh                                  builtin engine without weights; IndexTTS when ./checkpoints has them
  ./start_app.sh --version 2 --accel --torch_compile --qwen_emo      upstream's own launch line
  PYTHON=/path/to/index-tts/.venv/bin/python ./start_app.sh --model_dir /path/to/index-tts/checkpoints
                                                  run inside IndexTTS's env (adds only what it lacks, in .userenv/)
  ./start_app.sh --preset pinned --host 0.0.0.0 --auth me:secret --allowed-hosts tts.example.org
                                                  one host of a fleet, also reached by its DNS name (docs/fleet.md)
"""


def parse_args(argv=None) -> argparse.Namespace:
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass
    p = argparse.ArgumentParser(
        description="IndexTTS-compatible WebUI with a per-request kernel latency breakdown",
        formatter_class=Formatter, epilog=EXAMPLES)
    g = p.add_argument_group("IndexTTS webui flags (upstream main's and v2.0.0's, same meaning)")
    g.add_argument("--verbose", action="store_true", help="verbose logging and engine output")
    g.add_argument("--port", type=int, default=7860, help="port to serve on")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to bind; IndexTTS2 binds 0.0.0.0, we default to loopback so the "
                        "scheduling controls are not exposed to the network by accident")
    g.add_argument("--model_dir", default="./checkpoints", help="IndexTTS2 checkpoints directory")
    g.add_argument("--version", choices=("2", "2.5"), default=argparse.SUPPRESS,
                   help="IndexTTS model version (default: 2.5; when not given, --engine auto serves 2 if "
                        "--model_dir holds only IndexTTS-2's files)")
    g.add_argument("--fp16", action="store_true", help="half precision (2.5: bf16 where supported)")
    g.add_argument("--deepspeed", action="store_true", help="use DeepSpeed to accelerate if available")
    g.add_argument("--cuda_kernel", action="store_true", help="BigVGAN CUDA kernel if available")
    g.add_argument("--accel", action="store_true", help="GPT2 acceleration engine (needs flash_attn)")
    g.add_argument("--torch_compile", action="store_true", help="torch.compile the s2mel stage (needs triton)")
    g.add_argument("--qwen_emo", action="store_true",
                   help="load QwenEmotion even on a low-VRAM (< 10 GB) GPU, where it is skipped by default")
    g.add_argument("--gui_seg_tokens", type=int, default=120, help="default max tokens per segment in the UI")
    o = p.add_argument_group("engine, tracing, history")
    o.add_argument("--engine", choices=("auto", "builtin", "indextts2", "indextts25", "replica"), default="auto",
                   help="auto: the IndexTTS version of --version (indextts2 = 2, indextts25 = 2.5) when "
                        "--model_dir holds its files and `indextts` imports, else builtin (the reason is printed)")
    o.add_argument("--replica-scale", type=float, default=None, help="size factor of the replica engine")
    o.add_argument("--no-trace", action="store_true", help="start with per-request tracing off")
    o.add_argument("--trace-buffer-kb", type=int, default=None, help="ring buffer per CPU per window")
    o.add_argument("--trace-standby-s", type=float, default=10.0, metavar="S",  # app.service.STANDBY_IDLE_S
                   help="idle for S, the next request's window turns its events off (no probe on any kernel event)")
    o.add_argument("--device-view", choices=("auto", "off", "cpu"), default="auto",
                   help="GPU side of each traced request (torch.profiler, CUDA activity) when the engine runs on "
                        "CUDA; off: never; cpu: CPU activity only, to try the path without a GPU (docs/gpu.md)")
    o.add_argument("--audio-wait-s", type=float, default=0.5, metavar="S",
                   help="the trace's analysis waits at most S for the client to fetch the audio (0: no wait)")
    o.add_argument("--post-processing", choices=("overlap", "between"), default="overlap",
                   help="a request's trace analysis runs beside the next request's window, which names it "
                        "(overlap), or the two take turns (between): docs/throughput.md")
    o.add_argument("--tracefs", default=None, help="tracefs path (default: find or mount it)")
    o.add_argument("--outputs", default="outputs", help="where clips and their traces are kept")
    o.add_argument("--keep-clips", type=int, default=200, help="history retention: number of clips")
    o.add_argument("--keep-mb", type=int, default=500, help="history retention: total size in MB")
    o.add_argument("--no-warmup", action="store_true", help="skip the warm-up synthesis at start")
    o.add_argument("--snapshot-series", default=None, metavar="DIR",
                   help="periodic snapshots (`python -m app snapshot --series DIR`, e.g. from a systemd timer): "
                        "the Snapshots tab plots them and /metrics exports the latest verdict "
                        "(default: <outputs>/snapshot-series)")
    s = p.add_argument_group("security")
    s.add_argument("--auth", default=None, metavar="USER:PASS",
                   help="require this login (Gradio auth); logged-in users may switch presets and download traces")
    s.add_argument("--operator-token-file", default=None, metavar="PATH",
                   help="API calls carrying this file's token in the X-Operator-Token header may switch presets "
                        "and download traces (also: ITTS_OPERATOR_TOKEN)")
    s.add_argument("--i-know-this-is-open", action="store_true",
                   help="let everyone who can reach the port switch presets and download traces (loopback "
                        "is not trusted by itself: every local user can reach it)")
    s.add_argument("--allowed-hosts", action="append", default=[], metavar="NAMES",
                   help="more names (comma-separated; .example.org = it and its subdomains) in the Host header this "
                        "launcher answers to, e.g. a reverse proxy's or a fleet's name; others get 403 (DNS rebinding)")
    add_launch_args(p)
    args = p.parse_args(argv)
    args.version = getattr(args, "version", None)  # None: not given (see --engine auto)
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth takes USER:PASS")
    for f, v, top in (("--audio-wait-s", args.audio_wait_s, 2.0), ("--trace-standby-s", args.trace_standby_s, 86400)):
        if not 0 <= v <= top:  # 2.0: app.delivery.MAX_WAIT_S, light to import here
            p.error(f"{f} takes 0 to {top:g} seconds")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.environ.get("GRADIO_SHARE", "").lower() in ("1", "true", "yes") and not args.auth:
        print("error: GRADIO_SHARE would publish this UI on a public link; that needs --auth USER:PASS",
              file=sys.stderr)
        return 2
    # Gradio's file cache (uploads, served clip files) under --outputs, where retention bounds it
    # (app/ui/gradio_cache.py); set before gradio is imported
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(os.path.abspath(args.outputs), "gradio-cache")
    # SIGTERM (systemd stop, docker stop) exits cleanly: SystemExit unwinds the main thread, and
    # trace windows still open are removed by their own chained handler first.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        presets = load_presets(args.presets)
    except PresetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        later = deferred_preset(args)  # gpu-local: applied once the engine knows its GPU
        launch_preset = apply_launch(args, presets)  # before torch/gradio create their threads
    except Exception as e:
        print(f"error: launch preset refused: {e}", file=sys.stderr)
        return 2
    try:
        from app.ui import compat  # heavy imports (torch, gradio) only after the preset
        compat.check_supported()  # before the engine loads (minutes for IndexTTS), not after
        from app.context import Context
        ctx = Context(args, presets, launch_preset)
        if later:
            ctx.tuner.apply(later)  # refused (no GPU): says why, and the launch stops
    except (ValueError, ImportError, RuntimeError, OSError) as e:  # e.g. model_dir lacks files
        print(f"error: {e}", file=sys.stderr)
        return 2
    app = build_app(ctx)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    print(f"* Engine: {ctx.engine.label}", flush=True)
    print(f"* Tracing: {ctx.capabilities.get('mode', '?')} mode", flush=True)
    from starlette.middleware import Middleware

    from app.allowed_hosts import AllowedHosts, HostPolicy
    from app.delivery import AudioDelivered
    from app.queue_time import ArrivalStamp
    from app.login_guard import LoginPageNoSchema, LoginRateLimit
    from app.ui.common import CSS, SERVICE_QUEUE
    from models.limits import MAX_QUEUED, MAX_UPLOAD_MB
    app.queue(default_concurrency_limit=1, max_size=MAX_QUEUED)  # beyond: "queue is full" at once
    if os.environ.get("ITTS_GRADIO_POLLING") != "1":  # "1": Gradio's own polling (benchmarks/idle_cost.py's A/B)
        compat.quiet_queue(app._queue)  # idle: no polling (docs/throughput.md)
    hosts = HostPolicy.from_args(args)
    print(f"* {hosts.describe()}", flush=True)
    print(f"* UI: Gradio {compat.GRADIO_VERSION}, Python {platform.python_version()}", flush=True)
    fastapi_app, _, _ = app.launch(**compat.launch_kwargs(
        server_name=args.host, server_port=args.port, auth=auth, show_error=True, share=None if auth else False,
        footer_links=["api", "gradio", "settings"], prevent_thread_lock=True, css=CSS,
        max_file_size=f"{MAX_UPLOAD_MB}mb",
        app_kwargs={"middleware": [Middleware(ArrivalStamp, wake=ctx.service.wake),  # re-arms an idle standby
                                   Middleware(AllowedHosts, policy=hosts), Middleware(LoginRateLimit),
                                   Middleware(LoginPageNoSchema), Middleware(AudioDelivered, watch=ctx.delivery)]}))
    from app import metrics
    metrics.install(ctx, fastapi_app, gradio_waiting=lambda: compat.queued(app, SERVICE_QUEUE))  # GET /metrics
    print(f"* Prometheus metrics at http://{args.host}:{args.port}/metrics", flush=True)
    try:
        app.block_thread()
    finally:
        ctx.streamer.close()  # its worker ends with the request in flight, then the service
        ctx.service.close()
        ctx.tuner.close()  # what a preset moved machine-wide (its `away`) goes back
    return 0


def build_app(ctx):
    """The page: header, then the tabs in order; each tab module builds its own gr.Tab."""
    import gradio as gr
    from app.ui import (compare_tab, compat, gradio_cache, history_tab, scheduling_tab, snapshots_tab,
                        synthesize_tab, system_tab)
    from app.ui.common import CSS
    from app.ui.compat import PRIVATE
    compat.install()  # refuses an unsupported Gradio; REST error text on Gradio 5

    with gr.Blocks(title="IndexTTS2 launcher · kernel latency", **compat.blocks_kwargs(css=CSS)) as app:
        note = getattr(ctx.engine, "selection_note", "")
        gen_note = getattr(ctx.engine, "generation_note", "")  # e.g. IndexTTS hard-codes do_sample
        gr.Markdown(f"## IndexTTS2 launcher with per-request kernel latency breakdown\n"
                    f"**Engine serving:** {ctx.engine.label}" + (f"  \n_{note}_" if note else "")
                    + (f"  \n_{gen_note}_" if gen_note else "")
                    + f"  \n**Tracing:** {ctx.capabilities.get('mode')} mode"
                    + f"  \n**Access:** {ctx.access.describe()}")  # why a download or switch is refused
        gradio_cache.tie_to(ctx)  # Gradio's copies of clip files follow the clips' retention
        synth = synthesize_tab.build(ctx)
        sched_state, sched_outputs = scheduling_tab.build(ctx, synth)
        compare_tab.build(ctx)
        history, history_table = history_tab.build(ctx)
        snapshots_tab.build(ctx)
        system_tab.build(ctx)
        app.load(sched_state, None, sched_outputs, **PRIVATE)
        app.load(history, None, history_table, **PRIVATE)
    return app


if __name__ == "__main__":
    sys.exit(main())
