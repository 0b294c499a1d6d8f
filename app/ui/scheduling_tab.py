"""The Scheduling tab: apply a preset service-wide or for the next request only, and show what is
in force per thread, read back from the kernel (not what was asked)."""
from __future__ import annotations

import gradio as gr

from app.access import SWITCHING
from app.ui import advisor_panel
from app.ui.common import (KEEP, KERNEL_MD, SCOPES, SERVICE_QUEUE, SYNTH_CONCURRENCY, check_preset, preset_line,
                           require_operator, user_error)
from tracing.mdsafe import md_text
from tuning.apply import TuningError

THREAD_HEADERS = ["tid", "thread", "role", "CPUs", "nice", "policy", "rt prio"]


def scheduling_state(ctx):
    """(markdown line, per-thread rows, raw read-back) of what the kernel has in force now.
    Threads born since the preset was applied get it first, as the next synthesis would give them
    (Gradio starts workers on demand, and RT presets set reset-on-fork, so a new worker started
    at SCHED_OTHER and the page said "mixed" right after "realtime" was applied)."""
    try:
        ctx.tuner.ensure()
    except TuningError:
        pass  # nothing was changed (all-or-nothing): the read-back below shows the difference
    roles = ctx.service.roles.refresh()  # threads named by role, as the clips name them
    rb = ctx.tuner.readback()
    for t in rb.get("threads", []):
        t["role"] = roles.get(t["tid"])
    rows = [[t["tid"], t["comm"], t["role"] or "", t["cpus"], t["nice"], t["policy"], t["rt_priority"]]
            for t in rb.get("threads", [])]
    autogroup = ""
    if rb.get("autogroup_nice") is not None:
        autogroup = f" · autogroup nice {rb['autogroup_nice']}" + (
            "" if rb.get("autogroup_owned") else
            " (the launching shell's session: not changed by presets; nice only orders threads "
            "inside it — run under systemd or `setsid` for nice presets to count)")
    md = (f"**In force:** `{rb.get('preset')}` · {preset_line(rb)} · torch threads: "
          f"{rb.get('torch_threads', '?')} intra-op / {rb.get('torch_interop_threads', '?')} inter-op"
          + autogroup + ("" if rb.get("matches", True) else " · **read-back differs from the preset**")
          + away_line(rb.get("away") or {}) + rt_line(rb))
    return md, rows, rb


def away_line(away: dict) -> str:
    """What a preset's `away` moved machine-wide, and what stayed with why (tuning/knobs.py)."""
    if not away.get("kinds"):
        return ""
    moved = "; ".join(f"{k}: {', '.join(md_text(x) for x in v)}" for k, v in away.get("moved", {}).items()) or "nothing"
    left = "; ".join(md_text(w) for w in away.get("left", {}).values())
    return (f"  \n**Moved off the synthesis CPUs** (to CPU {away.get('cpus') or 'none'}): {moved}"
            + (f"  \n**Left in place:** {left}" if left else ""))


def rt_line(rb: dict) -> str:
    if rb.get("policy") not in ("fifo", "rr") or not rb.get("rlimit_rttime_us"):
        return ""
    return (f" · RLIMIT_RTTIME {rb['rlimit_rttime_us'] / 1e6:g} s (per-request budget)"
            + (" · **demoted by RLIMIT_RTTIME since real-time was applied**" if rb.get("rt_demoted") else ""))


def build(ctx, synth: dict) -> tuple:
    """The tab; `synth` holds the Synthesize tab's preset/scope components, which applying updates.
    Returns (event handler, outputs) for the page's load event."""
    tuner = ctx.tuner
    allowed = list(tuner.allowed)

    def state():
        return scheduling_state(ctx)

    def apply_service(name, request: gr.Request):
        require_operator(ctx, SWITCHING, request)  # even re-applying the one in force re-sets every thread
        check_preset(ctx, name, request, switching=False)
        try:
            with ctx.service.exclusive():  # never under a running synthesis
                tuner.apply(name)
        except TuningError as e:
            raise user_error(e)
        return (*state(), KEEP, SCOPES[0])  # the Synthesize tab then keeps what is now in force

    def apply_request_only(name, request: gr.Request):
        check_preset(ctx, name, request, switching=False)
        gr.Info(f"The next request will run under '{name}' and then restore the service preset.")
        return name, SCOPES[1]

    with gr.Tab("调度 / Scheduling"):
        gr.Markdown("Presets set CPU affinity, nice and scheduling policy on **every thread** of the "
                    "service (like `taskset`, `nice`, `chrt`). What is shown is read back from the kernel.")
        with gr.Row():
            open_ = ctx.access.anyone  # browsers send no operator token: controls for --auth / opened
            # a computed preset refused here (gpu-local without a GPU) stays listed: choosing it says why
            refused = [n for n in getattr(tuner.presets, "refused", {}) if n not in allowed]
            sched_preset = gr.Dropdown(allowed + refused, value=tuner.current.name if tuner.current.name in allowed
                                       else allowed[0], label="Preset", elem_id="sched_preset", interactive=open_)
            apply_btn = gr.Button("Apply service-wide", elem_id="apply_service", interactive=open_)
            once_btn = gr.Button("Use for the next request only", elem_id="apply_request", interactive=open_)
            refresh_btn = gr.Button("Refresh", elem_id="refresh_sched")
        gr.Markdown("\n".join(f"- **{n}**: {tuner.presets[n].description}" for n in allowed))
        if getattr(ctx, "gpu_local", None) is not None:  # computed at launch, or why not (tuning/gpu_local.py)
            gr.Markdown(ctx.gpu_local.line(), elem_id="gpu_local")
        sched_md = gr.Markdown(elem_id="sched_state", **KERNEL_MD)
        sched_rows = gr.Dataframe(headers=THREAD_HEADERS, label="Threads (read back from /proc)",
                                  interactive=False, elem_id="threads")
        sched_json = gr.JSON(visible=False)
        outputs = [sched_md, sched_rows, sched_json]
        apply_btn.click(apply_service, sched_preset, [*outputs, synth["preset"], synth["scope"]],
                        api_name="apply_preset", concurrency_id=SERVICE_QUEUE, concurrency_limit=SYNTH_CONCURRENCY)
        once_btn.click(apply_request_only, sched_preset, [synth["preset"], synth["scope"]],
                       api_name="preset_for_next_request")
        refresh_btn.click(state, None, outputs, api_name="scheduling_state")
        advisor_panel.build(ctx, sched_preset)  # recommends a preset from a short trial; applies nothing
    return state, outputs
