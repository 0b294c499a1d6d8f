"""The Scheduling tab's advisor: a button that runs a short measured trial of the presets on the
serving engine (app/advisor.py) and shows the recommendation with its evidence. It puts the
recommended preset in the tab's preset choice but applies nothing: "Apply service-wide" stays the
operator's click. The trial switches presets per request, so it is an operator action itself."""
from __future__ import annotations

import gradio as gr

from app.access import SWITCHING
from app.advisor import DEFAULT_TRIAL_N, trial
from app.ui.common import KERNEL_MD, num, require_operator, user_error
from tracing.mdsafe import md_text

MAX_TRIAL_N = 20
ADVICE_HEAD = ["preset", "p50 ms", "p95 ms", "top blockers (ms per request)", "warn/crit findings (requests)"]


def advice_markdown(a) -> str:
    if not a.recommended:
        why = "; ".join(f"{md_text(p)}: {md_text(w)}" for p, w in a.refused.items()) or md_text(a.rule)
        return f"**No recommendation:** {why}"
    refused = "".join(f"  \n_{md_text(p)} not tried: {md_text(w)}_" for p, w in a.refused.items())
    # preset names are [A-Za-z0-9_.-] (tuning/presets.py): safe in a code span, where escapes would show
    return (f"**Recommended: `{a.recommended}`** — {md_text(a.rule)}; {a.n} requests per preset, "
            f"load average {md_text(' → '.join(a.load))}.  \n_{md_text(a.note)}_" + refused)


def advice_rows(a) -> list[list]:
    rows = []
    for p, r in sorted(a.rows.items(), key=lambda kv: kv[1]["p95_s"]):
        bl = ", ".join(f"{k} {v * 1000:.1f}" for k, v in a.blockers.get(p, [])) or "none"
        fk = ", ".join(f"{k} x{v}" for k, v in sorted(a.findings.get(p, {}).items())) or "none"
        rows.append([("★ " if p == a.recommended else "") + p, round(r["p50_s"] * 1000, 1),
                     round(r["p95_s"] * 1000, 1), bl, fk])
    return rows


def build(ctx, preset_choice) -> None:
    """Inside the Scheduling tab; `preset_choice` is its preset dropdown (set, never applied)."""
    def advise(n, request: gr.Request, progress=gr.Progress()):
        require_operator(ctx, SWITCHING, request)  # the trial switches presets request by request
        try:
            n = int(num(n, "Requests per preset"))
            if not 1 <= n <= MAX_TRIAL_N:
                raise ValueError(f"Requests per preset must be 1..{MAX_TRIAL_N}, got {n}.")
            a = trial(ctx.service, n=n, progress=lambda f, d: progress(f, desc=d))
        except Exception as e:  # a sentence for the user; the service's preset is back in force
            raise user_error(e)
        pick = gr.update(value=a.recommended) if a.recommended else gr.update()
        return advice_markdown(a), advice_rows(a), a.to_dict(), pick

    with gr.Accordion("Advisor: which preset holds up on this machine now?", open=False):
        gr.Markdown("Runs N traced requests per preset on the serving engine, interleaved, under whatever "
                    "the machine is doing now, and recommends the preset with the lowest p95 (the least "
                    "invasive of those within 5% of it). It applies nothing: the recommendation is put in "
                    "the preset choice above for you to apply. Same as `python -m app advise`.")
        with gr.Row():
            n = gr.Number(value=DEFAULT_TRIAL_N, precision=0, minimum=1, maximum=MAX_TRIAL_N,
                          label="Requests per preset", elem_id="advise_n")
            btn = gr.Button("Run the trial and recommend", elem_id="advise_run", interactive=ctx.access.anyone)
        md = gr.Markdown(elem_id="advise_md", **KERNEL_MD)
        rows = gr.Dataframe(headers=ADVICE_HEAD, interactive=False, elem_id="advise_table")
        raw = gr.JSON(visible=False)
        btn.click(advise, n, [md, rows, raw, preset_choice], api_name="advise_presets", concurrency_limit=1)
