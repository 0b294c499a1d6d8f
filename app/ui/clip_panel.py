"""The clip panel (audio, request id, head line, breakdown, stages, blockers, findings, timeline,
attachment, JSON): one builder for the Synthesize and History tabs, one function turning a stored
clip record into its values (generate, history and the API return the same tuple).

A request's panel arrives in steps (Synthesize streams them): the audio with its request id and
engine/preset line as soon as synthesis ends (pending="analysis"), then the breakdown, findings,
stages, blockers and the timeline plot (pending="attachment"), then the complete clip (attachment).
The complete clip's values are what history and predict() return."""
from __future__ import annotations

import threading
from collections import OrderedDict

import gradio as gr
from gradio.components.plot import PlotData

from app.queue_time import queue_text
from app.ui.common import KERNEL_MD, preset_line
from app.ui.compat import own_wav_audio
from tracing.device_report import device_markdown
from tracing.mdsafe import md_text
from tracing.report import (BLOCKER_HEADERS, BREAKDOWN_HEADERS, STAGE_HEADERS, blocker_rows, fmt_ms,
                            format_breakdown_rows, latency_brief, lost_text, missing_events_text, overlap_text,
                            stage_rows)
from tracing.timeline_plot import timeline_json

ATTACHMENT_LABEL = ("Trace attachment (zip: trace.txt for ui.perfetto.dev, trace.dat for trace-cmd / KernelShark, "
                    "summary.json, report.txt, timeline.png)")
TIMELINE_LABEL = ("**Timeline** per thread (running / run-queue / blocked I/O / sleeping): drag to zoom, "
                  "double-click to reset, hover a segment for its details")


def build_clip_panel(prefix: str = "") -> list:
    """Create the panel's components in the current layout; returns them in clip_outputs' order.
    `prefix` keeps elem_ids unique when a second panel is on the page (History)."""
    def eid(name):
        return f"{prefix}{name}"
    out_audio = own_wav_audio(gr.Audio(label="生成结果 / Generated audio", type="filepath",
                                       elem_id=eid("out_audio"), interactive=False))
    clip_id = gr.Textbox(label="Request id", interactive=False, elem_id=eid("clip_id"))
    head = gr.Markdown(elem_id=eid("clip_head"), **KERNEL_MD)
    bd_table = gr.Dataframe(headers=BREAKDOWN_HEADERS, label="Kernel breakdown", elem_id=eid("breakdown"),
                            interactive=False)
    findings_md = gr.Markdown(elem_id=eid("findings"), **KERNEL_MD)
    gr.Markdown(TIMELINE_LABEL)
    timeline = gr.Plot(show_label=False, elem_id=eid("timeline_plot"), elem_classes=["itts-timeline"])
    stage_table = gr.Dataframe(headers=STAGE_HEADERS, label="Per stage", interactive=False, elem_id=eid("stages"))
    blk_table = gr.Dataframe(headers=BLOCKER_HEADERS, label="Who held our CPU (top blockers)",
                             interactive=False, elem_id=eid("blockers"))
    attach = gr.File(label=ATTACHMENT_LABEL, elem_id=eid("attachment"), interactive=False)
    bd_json = gr.JSON(label="Breakdown (JSON)", visible=False)
    return [out_audio, clip_id, head, bd_table, stage_table, blk_table, findings_md, timeline, attach, bd_json]


PENDING = ("analysis", "attachment")
PLOT_CACHE = 16  # clips whose timeline stays serialized (a request's last two updates, History views)
_plots: OrderedDict = OrderedDict()  # clip id -> PlotData
_plots_lock = threading.Lock()


def timeline_value(clip_id: str, bd: dict) -> PlotData:
    """The clip's timeline as gr.Plot's value, serialized once per clip: a request's breakdown
    update and its complete clip show the same figure (built and serialized per update, it cost
    more server CPU than builtin synthesis with four callers: issue 25). timeline_json writes
    Figure.to_json()'s JSON without building the Figure (3.5 against 14 ms for a builtin clip)."""
    with _plots_lock:
        if clip_id in _plots:
            _plots.move_to_end(clip_id)
            return _plots[clip_id]
    value = PlotData(type="plotly", plot=timeline_json(bd))
    with _plots_lock:
        _plots[clip_id] = value
        while len(_plots) > PLOT_CACHE:
            _plots.popitem(last=False)
    return value


def first_sound_line(rec: dict, bd: dict) -> str:
    """Time to first sound (server side: the first segment handed over), and once analysed what
    the kernel did before it (tracing.analysis first_sound). '' for records made before it existed."""
    fs_s, segs = rec.get("first_sound_s"), rec.get("segment_s") or []
    if fs_s is None:
        return ""
    out = (f"  \n**First sound** {fs_s * 1000:.0f} ms (the first of {len(segs)} segments handed over; "
           f"the whole clip {rec['wall_s'] * 1000:.0f} ms)") if len(segs) > 1 else \
        f"  \n**First sound** {fs_s * 1000:.0f} ms (the clip came in one piece)"
    before = (bd.get("first_sound") or {}).get("before")
    if before:
        top = (before.get("blockers") or [None])[0]
        out += (f"  \n**Before the first sound:** on CPU {fmt_ms(before.get('on_cpu_s'))} ms · run-queue "
                f"{fmt_ms(before.get('runqueue_wait_s'))} ms · blocked I/O {fmt_ms(before.get('blocked_io_s'))} ms"
                + (f" · most in the way: {md_text(str(top.get('comm')))} (pid {top.get('pid')}) "
                   f"{fmt_ms(top.get('time_s'))} ms" if top else ""))
    return out


_KEEP = object()
# The breakdown's per-thread slices: the timeline draws them (gr.Plot) and the attachment's
# summary.json keeps them. In the JSON output too they were two thirds of a complete update
# (~150 KB of ~230 KB for a builtin clip), which every client, browser or gradio_client, receives
# and parses: measured with four callers, the server's CPU per traced request 471 -> 362 ms and
# the callers' 385 -> 280 ms without them (issue 25).
API_OMITS = ("segments", "irq_segments")


def api_breakdown(bd: dict) -> dict:
    """The breakdown as the JSON output gives it: without API_OMITS, each replaced by its count
    under "omitted" (where to find them: the attachment's summary.json, /download)."""
    if not any(k in bd for k in API_OMITS):
        return bd
    out = {k: v for k, v in bd.items() if k not in API_OMITS}
    out["omitted"] = {k: len(bd.get(k) or []) for k in API_OMITS if k in bd}
    return out


def clip_outputs(rec: dict, pending: str | None = None, attachment=_KEEP):
    """A clip record -> the values of the clip panel (shared by generate, history, API).
    pending: None for the complete clip; "analysis" shows only what synthesis gave (audio, id,
    engine/preset line) and says the trace is being analysed; "attachment" adds the breakdown,
    findings, stages, blockers and timeline. Fields the step does not show are empty whatever the record
    holds meanwhile (the service fills it in on another thread). `attachment`: the trace attachment
    to hand out (None for callers who may not have it, see app/access.py). Findings carry names from
    the kernel (any local user names a process): they reach the Markdown view through md_text,
    never raw. (The latency-tracer line holds no task name.)"""
    if pending not in (None, *PENDING):
        raise ValueError(f"pending must be one of {PENDING} or None, not {pending!r}")
    analysing = pending == "analysis" and rec.get("tracing")
    bd = {} if pending == "analysis" else (rec.get("breakdown") or {})
    preset = rec.get("preset") or {}
    head = (f"**Request** `{rec['id']}` · **Engine:** {rec['engine_label']} · "
            f"**Preset in force:** {preset.get('preset', '?')} ({preset_line(preset)}) · "
            f"**Wall** {rec['wall_s'] * 1000:.0f} ms for {rec['duration_s']:.2f} s of audio "
            f"(RTF {rec['rtf']:.2f})")
    if queue_text(rec.get("queue_s"), rec.get("queue_ahead")):  # apart from the wall: time before synthesis
        head += f" · **Queue:** {queue_text(rec.get('queue_s'), rec.get('queue_ahead'))}"
    head += first_sound_line(rec, bd)
    if not rec.get("tracing"):
        head += "\n\n_Tracing was off for this request._"
    elif analysing:
        head += "\n\n_Analysing the kernel trace of this request…_"
    elif bd:
        mode = bd.get("mode", "?")
        lost = bd.get("lost_events") or {}
        src = {"pages": " (decoded from the ring-buffer pages)", "text": " (parsed from the text trace)"}.get(
            bd.get("source", ""), "")
        # unknown loss is said as unknown, never as "no events lost"
        head += f"\n\n**Trace mode:** {mode}{src}" + (
            f" · **lost events: {lost_text(bd)}**" if lost.get("total") or lost.get("unknown_cpus")
            else " · no events lost")
        tot = bd.get("totals") or {}
        if tot.get("inferred_switches"):
            head += (f" · **{tot['inferred_switches']} switches inferred** (the trace left them out; "
                     f"{fmt_ms(tot.get('uncertain_s') or 0)} ms uncertain)")
        if mode == "full" and missing_events_text(bd):
            head += f"  \n**Events not recorded:** {missing_events_text(bd)}"
        if bd.get("latency"):
            head += f"  \n**Kernel latency tracers:** {latency_brief(bd['latency'])}"
        if overlap_text(bd):  # (request ids and step names are ours: no kernel text in it)
            head += f"  \n**Overlap:** {overlap_text(bd)}"
        if bd.get("device"):  # GPU busy / idle / host_wait per stage, or why there is none
            head += "\n\n" + device_markdown(bd["device"], md_text)
    notes = [] if pending else [n for n in rec.get("notes") or [] if not n.startswith("Tracing was off")]
    if notes:  # what failed after synthesis: the clip keeps its audio
        head += "\n\n" + "  \n".join(f"**Note:** {n}" for n in notes)
    findings = [] if pending == "analysis" else (rec.get("findings") or [])
    fmd = "\n".join(f"- **{md_text(str(f['severity']).upper())}** {md_text(f['message'])}" for f in findings) or (
        "_Analysing the trace…_" if analysing else "_No findings._")
    json_out = {"breakdown": api_breakdown(bd), "findings": findings, "preset": preset, "engine": rec["engine"],
                "request_id": rec["id"], "queue": {"queue_s": rec.get("queue_s"), "ahead": rec.get("queue_ahead")},
                "first_sound_s": rec.get("first_sound_s"), "segment_s": rec.get("segment_s") or []}
    if pending:
        json_out["pending"] = pending  # only in the steps before the complete clip
    return (rec["audio_path"], rec["id"], head,
            format_breakdown_rows(bd) if bd else [], stage_rows(bd) if bd else [],
            blocker_rows(bd) if bd else [], fmd, timeline_value(rec["id"], bd) if bd else None,
            None if pending else (rec.get("attachment_path") if attachment is _KEEP else attachment), json_out)
