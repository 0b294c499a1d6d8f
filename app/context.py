"""The wired parts of a running launcher (engine, tuner, store, service, tracing capabilities).

Built by webui.py after the launch preset is in force (so every thread created here inherits it);
the UI tabs (app/ui/) and metrics read from it. No Gradio here.
"""
from __future__ import annotations

import logging
import time

from app.access import AccessPolicy
from app.device_view import offer_gpu_local
from app.delivery import Watch
from app.service import STANDBY_IDLE_S, Service
from app.store import ClipStore
from app.streaming import Streamer
from models.base import NullStages, SynthesisRequest
from models.registry import create_engine
from tracing.tracefs import cleanup_stale, find_tracefs, probe
from tuning.apply import Tuner


class Context:
    """The wired parts the UI calls."""

    def __init__(self, args, presets, launch_preset):
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
        self.engine = create_engine(args.engine, model_dir=args.model_dir, version=args.version, fp16=args.fp16,
                                    deepspeed=args.deepspeed, cuda_kernel=args.cuda_kernel, accel=args.accel,
                                    torch_compile=args.torch_compile, qwen_emo=args.qwen_emo,
                                    replica_scale=args.replica_scale, verbose=args.verbose)
        print(f"* Engine selection: {self.engine.selection_note}", flush=True)
        self.gpu_local = offer_gpu_local(self.engine, presets, self.tuner.launch_cpus)  # tuning/gpu_local.py
        print(f"* GPU-local preset: {self.gpu_local.line().replace('**', '')}", flush=True)
        self.store = ClipStore(args.outputs, max_clips=args.keep_clips, max_bytes=args.keep_mb * 2**20)
        self.store.remove_incomplete()
        self.service = Service(self.engine, self.tuner, self.store, tracing_enabled=not args.no_trace,
                               trace_root=self.trace_root, buffer_kb=args.trace_buffer_kb,
                               device_view=getattr(args, "device_view", "auto"),
                               post=getattr(args, "post_processing", "overlap"),
                               standby_idle_s=getattr(args, "trace_standby_s", STANDBY_IDLE_S))
        self.streamer = Streamer(self.service)  # segments to the caller as they are made (app/streaming.py)
        self.delivery = Watch()  # punched when a clip's audio has been downloaded (app/delivery.py)
        self.access = AccessPolicy.from_args(args)  # who may switch presets and download traces
        print(f"* {self.access.describe()}", flush=True)
        if not args.no_warmup:
            self.warmup()

    def warmup(self) -> None:
        """One synthesis at start-up, outside any trace window, so the first user request does
        not pay for lazy initialisation (library load, torch kernels, caches)."""
        t = time.monotonic()
        try:
            # observed: it sizes the first real-time budgets (tuning/rtbudget.py); the engines'
            # warm-up texts are 6-11 characters ("Hello.", "你好, hello."): counting 6 overstates the
            # rate, which only widens a budget
            with self.tuner.rt_request(units=6):
                if hasattr(self.engine, "warmup"):
                    self.engine.warmup()
                else:
                    self.engine.synthesize(SynthesisRequest(text="Hello. 你好。"), NullStages())
            print(f"* Warm-up synthesis took {time.monotonic() - t:.2f} s", flush=True)
        except Exception as e:  # the engine may need a speaker prompt (indextts2): not fatal
            print(f"* Warm-up skipped: {e}", flush=True)
