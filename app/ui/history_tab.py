"""The History tab: the stored clips (newest first), one clip's panel by request id, and the
attachment download endpoint (by request id only, never by path)."""
from __future__ import annotations

import gradio as gr

from app.store import ClipNotFound
from app.ui.clip_panel import build_clip_panel, clip_outputs
from app.ui.common import attachment_for, require_download, user_error
from models.base import drop_surrogates
from tracing.ids import REQUEST_ID_RE
from app.ui.compat import PRIVATE

HISTORY_HEADERS = ["request id", "created (UTC)", "preset", "engine", "wall ms", "run-queue ms", "text"]


def build(ctx) -> tuple:
    """The tab. Returns (event handler, outputs) for the page's load event."""
    store = ctx.store

    def history():
        rows = []
        for r in store.list(100):
            totals = (r.get("breakdown") or {}).get("totals") or {}
            rows.append([r["id"], r["created"], (r.get("preset") or {}).get("preset", "?"), r["engine"],
                         round(r["wall_s"] * 1000), round(totals.get("runqueue_wait_s", 0) * 1000, 1),
                         drop_surrogates(r["text"])[:60]])  # records written before the input rule
        return rows

    def load_clip(request_id, request: gr.Request):
        try:
            rec = store.get((request_id or "").strip())
        except ClipNotFound as e:
            raise user_error(e)
        return clip_outputs(rec, attachment=attachment_for(ctx, rec["id"], request))

    def download(request_id, request: gr.Request):
        require_download(ctx, request)
        rid = (request_id or "").strip()
        try:
            store.path(rid, "record")  # a stored clip has an attachment: built on the first download
        except ClipNotFound as e:  # a well-formed id of no (or no longer any) clip: say what is missing
            raise user_error(ClipNotFound(f"No attachment stored for request {rid}.") if REQUEST_ID_RE.fullmatch(rid) else e)
        return attachment_for(ctx, rid, request, panel=False)

    def pick_row(evt: gr.SelectData):
        return evt.row_value[0] if evt.row_value else ""

    with gr.Tab("历史 / History"):
        hist = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, elem_id="history")
        with gr.Row():
            hist_id = gr.Textbox(label="Request id", elem_id="hist_id")
            hist_load = gr.Button("Show clip", elem_id="hist_load")
            hist_refresh = gr.Button("Refresh", elem_id="hist_refresh")
        panel = build_clip_panel(prefix="hist_")
        hist_refresh.click(history, None, hist, api_name="history")
        hist_load.click(load_clip, hist_id, panel, api_name="clip")
        hist.select(pick_row, None, hist_id, **PRIVATE)
        dl_id = gr.Textbox(visible=False)
        dl_file = gr.File(visible=False)
        dl_btn = gr.Button(visible=False)
        dl_btn.click(download, dl_id, dl_file, api_name="download")
    return history, hist
