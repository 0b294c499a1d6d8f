"""IndexTTS-2.5's inputs (language, duration factor) on the Synthesize tab and /synthesize: shown and
passed through when the serving engine reads them, hidden (same API fields) when it does not, and
refused with a sentence when an API client sets them for an engine that would ignore them.

The 2.5-reading server here is the real launcher page (webui.build_app on a real Context, Service,
tracing) whose engine is the builtin one declaring 2.5's inputs and recording what reached it: the
real IndexTTS-2.5 serves in tests/real_indextts (upstream code, shrunk weights)."""
from __future__ import annotations

import json
import urllib.request

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import free_port


def _components(url) -> dict:
    cfg = json.load(urllib.request.urlopen(url + "config", timeout=10))
    return {c["props"].get("elem_id"): c["props"] for c in cfg["components"] if c["props"].get("elem_id")}


def test_builtin_hides_them_and_keeps_the_fields(server, client):
    comps = _components(server.url)
    assert comps["lang"]["visible"] is False and comps["duration_factor"]["visible"] is False
    assert comps["lang"]["choices"] == [["ZH", "ZH"], ["EN", "EN"], ["JA", "JA"], ["AR", "AR"], ["ES", "ES"]]
    audio = client.predict(text="Hello.", lang="ZH", duration_factor=1.0, api_name="/synthesize")[0]
    assert audio.endswith(".wav")  # the UI's own (hidden) defaults are accepted
    with pytest.raises(AppError, match=r"lang='EN': the serving engine \(builtin\) has no such input"):
        client.predict(text="Hello.", lang="EN", api_name="/synthesize")
    with pytest.raises(AppError, match="duration_factor=1.5: the serving engine"):
        client.predict(text="Hello.", duration_factor=1.5, api_name="/synthesize")


@pytest.fixture(scope="module")
def v25_server(tmp_path_factory):
    import webui
    from app import context as context_mod
    from models.builtin import BuiltinEngine
    from tuning.presets import load_presets

    class Reads25(BuiltinEngine):
        inputs = ("lang", "duration_factor")
        seen: list = []

        def synthesize(self, req, stages=None):
            self.seen.append((req.lang, req.duration_factor))
            return super().synthesize(req, stages)

    eng = Reads25()
    eng.selection_note = "test: builtin declaring IndexTTS-2.5's inputs"
    port = free_port()
    args = webui.parse_args(["--no-warmup", "--port", str(port), "--outputs", str(tmp_path_factory.mktemp("v25"))])
    mp = pytest.MonkeyPatch()
    mp.setattr(context_mod, "create_engine", lambda *a, **k: eng)
    ctx = context_mod.Context(args, load_presets(), None)
    mp.undo()
    app = webui.build_app(ctx)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True)
    try:
        yield f"http://127.0.0.1:{port}/", eng
    finally:
        app.close()
        ctx.service.close()


def test_shown_and_passed_when_the_engine_reads_them(v25_server):
    url, eng = v25_server
    comps = _components(url)
    assert comps["lang"]["visible"] is True and comps["lang"]["value"] == "ZH"
    assert comps["duration_factor"]["visible"] is True
    assert (comps["duration_factor"]["minimum"], comps["duration_factor"]["maximum"]) == (0.5, 2.0)
    client = Client(url, verbose=False)
    eng.seen.clear()
    client.predict(text="Hello in Japanese mode.", lang="JA", duration_factor=1.5, api_name="/synthesize")
    client.predict(text="Hello.", api_name="/synthesize")  # not given: gradio_client sends the UI's defaults
    assert eng.seen == [("JA", 1.5), ("ZH", 1.0)]
    # the dropdown's and slider's own checks answer first (SynthesisRequest.validate would say the same)
    with pytest.raises(AppError, match=r"XX is not in the list of choices: \['ZH', 'EN', 'JA', 'AR', 'ES'\]"):
        client.predict(text="Hello.", lang="XX", api_name="/synthesize")
    with pytest.raises(AppError, match="Value 3 is greater than maximum value 2.0"):
        client.predict(text="Hello.", duration_factor=3, api_name="/synthesize")
    assert len(eng.seen) == 2  # refused before the engine
