"""Bad input through the real API: each kind is a clear error, and the server shrugs it off.

For every kind, against the shared real server (tests/conftest.py `server`):
- the call fails with a message a user can act on (no traceback, not empty);
- the server process is alive and serves the next normal, traced request;
- no trace instance of the server is left recording (the one idle standby is allowed);
- the scheduling state of every server thread present before and after is unchanged.

Most kinds go through gradio_client, as an API user would send them. A few cannot: gradio_client
refuses to serialise NaN/inf and lone surrogates, and cannot send bytes that are not UTF-8. Those go
as raw HTTP to Gradio's /gradio_api/call/ endpoint, which is what any other client could send.
"""
from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from tests.conftest import settled_instances
from tests.proc_state import sched_changes, thread_sched

EMO_CHOICES = ["与音色参考音频相同 / Same as the voice reference", "使用情感参考音频 / Use emotion reference audio",
               "使用情感向量控制 / Use emotion vectors", "使用情感描述文本控制 / Use text description to control emotion"]
SR = 22050


# ------------------------------------------------------------------------------- helpers ----
def raw_call(server, api: str, values: dict | None = None, body: bytes | None = None) -> tuple[str, str]:
    """POST one call to /gradio_api/call/<api> and read its SSE result.
    `values` by parameter name (the rest take the endpoint's defaults), or a ready `body`.
    Returns (outcome, message): ("error", msg) for a Gradio error event, ("http", msg) for an
    HTTP error status, ("complete", data) when the call succeeded."""
    url = server.url + f"gradio_api/call/{api}"
    if body is None:
        info = json.loads(urllib.request.urlopen(server.url + "gradio_api/info", timeout=30).read())
        params = info["named_endpoints"][f"/{api}"]["parameters"]
        data = [values.get(p["parameter_name"], p.get("parameter_default")) for p in params]
        body = json.dumps({"data": data}, allow_nan=True).encode()  # NaN/Infinity literals on purpose
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        event_id = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    except urllib.error.HTTPError as e:
        return "http", f"{e.code} {e.read().decode(errors='replace')}"
    stream = urllib.request.urlopen(f"{url}/{event_id}", timeout=120).read().decode()
    event, data = None, None
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = line.split(":", 1)[1].strip()
    if event == "error":
        msg = json.loads(data)["error"] if data and data != "null" else ""
        return "error", msg or ""
    return event or "?", data or ""


def normal_request(client) -> str:
    out = client.predict(text="Ok, still here.", api_name="/synthesize")
    assert sf.info(out[0]).duration > 0.2 and out[9]["breakdown"]["totals"]["on_cpu_s"] > 0
    return out[1]


def _tone(seconds: float, sr: int, channels: int = 1, f0: float = 140.0) -> np.ndarray:
    """A voiced-like signal (harmonics of f0 with vibrato): passes the prompt checks."""
    t = np.arange(int(seconds * sr)) / sr
    ph = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 8)) * 0.2
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


@pytest.fixture(scope="module")
def files(tmp_path_factory, client):
    d = tmp_path_factory.mktemp("badin")
    (d / "notaudio.wav").write_bytes(b"RIFF but then just text, not a wave file\n" * 30)
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "zero.wav", np.zeros((0,), dtype=np.int16), SR)
    sf.write(d / "silent.wav", np.zeros(SR, dtype=np.int16), SR)
    sf.write(d / "long.wav", _tone(61, SR), SR, subtype="PCM_16")  # over the 60 s prompt limit
    nan = _tone(1, SR).astype(np.float32)
    nan[100:200] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    speech = d / "speech.wav"  # real speech: a clip the server itself made
    shutil.copy(client.predict(text="This is my voice prompt.", api_name="/synthesize")[0], speech)
    whole = speech.read_bytes()
    (d / "header_only.wav").write_bytes(whole[:30])  # truncated inside the RIFF header
    (d / "half.wav").write_bytes(whole[:len(whole) // 2])  # truncated inside the data chunk
    x, sr = sf.read(speech)
    sf.write(d / "eight_channels.wav", np.repeat(x[:, None], 8, axis=1), sr, subtype="PCM_16")
    from scipy.signal import resample_poly
    sf.write(d / "96k.wav", resample_poly(x, 320, 147), 96000, subtype="PCM_24")
    sf.write(d / "noise_8ch.wav", np.random.default_rng(0).normal(0, 0.1, (SR, 8)), SR)
    return d


@pytest.fixture
def guard(server, client):
    """Before/after checks shared by every case."""
    pid = server.proc.pid
    before = thread_sched(pid)
    yield
    assert server.proc.poll() is None, "the server died"
    normal_request(client)  # the next normal request is served
    assert settled_instances(pid) == [], "a trace instance is left recording"
    assert sched_changes(before, thread_sched(pid)) == {}, "scheduling state changed"


def assert_clear(msg: str):
    assert msg and len(msg) >= 15, f"unclear error: {msg!r}"
    assert "Traceback" not in msg and "Exception" not in msg, msg
    assert "object at 0x" not in msg, f"error leaks internals: {msg[:200]!r}"


# --------------------------------------------------------------------- through gradio_client --
F = "file:"  # value prefix: a file from the `files` fixture, uploaded with handle_file
SYNTH_CASES = [
    # text
    ("empty text", dict(text=""), "empty"),
    ("whitespace-only text", dict(text=" \n\t\u3000 "), "empty"),
    ("text one over the limit", dict(text="a" * 2001), "limit"),
    ("huge text (200k chars)", dict(text="长" * 200_000), "limit"),
    ("control characters only", dict(text="\x00\x01\x07\x1b\x7f"), "nothing to speak"),
    ("punctuation only", dict(text="。。。!!!???"), "nothing to speak"),
    ("zero-width/format characters only", dict(text="\u200b\u200d\ufeff\u2060"), "nothing to speak"),
    # speaker prompt audio
    ("non-audio prompt", dict(text="hello", spk=F + "notaudio.wav"), "not an audio file"),
    ("0-byte prompt", dict(text="hello", spk=F + "empty.wav"), ""),
    ("0-length prompt", dict(text="hello", spk=F + "zero.wav"), "empty"),
    ("silent prompt", dict(text="hello", spk=F + "silent.wav"), "silent"),
    ("prompt over 60 s", dict(text="hello", spk=F + "long.wav"), "limit"),
    ("prompt truncated in its header", dict(text="hello", spk=F + "header_only.wav"), ""),
    ("prompt with NaN samples", dict(text="hello", spk=F + "nan.wav"), "nan"),
    ("8-channel noise prompt (no voice)", dict(text="hello", spk=F + "noise_8ch.wav"), "voiced"),
    # emotion
    ("emotion weight above 1", dict(text="hello", emo_weight=3.0), ""),
    ("negative emotion weight", dict(text="hello", emo_weight=-0.1), ""),
    ("negative emotion vector value", dict(text="hello", v1=-0.5), ""),
    ("emotion vector value above 1", dict(text="hello", v8=1.5), ""),
    ("emotion weight as a word", dict(text="hello", emo_weight="high"), ""),
    ("unknown emotion mode name", dict(text="hello", emo_mode="dance"), ""),
    ("emotion mode as an out-of-range index", dict(text="hello", emo_mode=7), ""),
    ("emotion reference mode without audio", dict(text="hello", emo_mode=EMO_CHOICES[1]), "emotion reference"),
    ("emotion reference that is not audio", dict(text="hello", emo_mode=EMO_CHOICES[1], emo_ref=F + "notaudio.wav"),
     "not an audio file"),
    # generation parameters, preset, scope
    ("top_k as a word", dict(text="hello", top_k="many"), ""),
    ("max tokens per segment too small", dict(text="hello", max_tokens_seg=5), ""),
    ("max tokens per segment too large", dict(text="hello", max_tokens_seg=10_000), ""),
    ("temperature below its range", dict(text="hello", temperature=-1.0), ""),
    ("unknown preset name", dict(text="hello", preset="turbo"), "turbo"),
    ("preset name that is a path", dict(text="hello", preset="../../tuning/presets.toml"), ""),
    ("unknown preset scope", dict(text="hello", scope="forever"), "forever"),
]


def _resolve(kw, files):
    out = {}
    for k, v in kw.items():
        out[k] = handle_file(str(files / v[len(F):])) if isinstance(v, str) and v.startswith(F) else v
    return out


@pytest.mark.parametrize("name,kw,hint", SYNTH_CASES, ids=[c[0] for c in SYNTH_CASES])
def test_bad_synthesis_input_is_a_clear_error(client, files, guard, name, kw, hint):
    with pytest.raises(AppError) as ei:
        client.predict(api_name="/synthesize", **_resolve(kw, files))
    msg = str(ei.value)
    assert_clear(msg)
    assert hint.lower() in msg.lower(), f"{name}: {msg!r}"


OTHER_CASES = [  # (endpoint, kwargs, hint)
    ("/download", dict(request_id="../../etc/passwd"), "not a request id"),
    ("/download", dict(request_id="/etc/passwd"), "not a request id"),
    ("/download", dict(request_id="20260101T000000-deadbeef"), "no attachment"),  # valid form, no such clip
    ("/download", dict(request_id="20260101T000000-deadbeef/../../x"), "not a request id"),
    ("/download", dict(request_id="a\x00b"), "not a request id"),
    ("/download", dict(request_id=""), "not a request id"),
    ("/clip", dict(request_id="../clips"), "not a request id"),
    ("/clip", dict(request_id="%2e%2e%2f%2e%2e%2fetc"), "not a request id"),
    ("/apply_preset", dict(name="turbo"), "turbo"),
    ("/preset_for_next_request", dict(name="x/../y"), ""),
    ("/compare", dict(text="hello", preset_a="turbo", preset_b="default"), "turbo"),
]


@pytest.mark.parametrize("api,kw,hint", OTHER_CASES, ids=[f"{a} {list(k.values())[-1]!r}"[:60] for a, k, _ in OTHER_CASES])
def test_bad_ids_and_presets_are_clear_errors(client, guard, api, kw, hint):
    params = {"/download": "request_id", "/clip": "request_id"}
    args = list(kw.values()) if api in params else []
    with pytest.raises(AppError) as ei:
        client.predict(*args, api_name=api, **({} if api in params else kw))
    assert_clear(str(ei.value))
    assert hint.lower() in str(ei.value).lower()


def test_absolute_path_of_a_real_attachment_is_refused(client, server, guard):
    """The attachment exists on disk, but only its id may name it."""
    rid = normal_request(client)
    real = server.outputs / "clips" / rid / "trace.zip"
    assert real.is_file()
    for ident in (str(real), str(real.parent), f"{rid}/trace.zip", f"../clips/{rid}"):
        with pytest.raises(AppError) as ei:
            client.predict(ident, api_name="/download")
        assert "not a request id" in str(ei.value)
    assert Path(client.predict(rid, api_name="/download")).read_bytes() == real.read_bytes()


# ---------------------------------------------------------- what gradio_client cannot send ----
RAW_CASES = [  # (name, values by parameter name, hint)
    ("NaN emotion weight", dict(text="hello", emo_weight=float("nan")), "finite"),
    ("+inf emotion vector value", dict(text="hello", v2=float("inf")), "maximum"),
    ("-inf emotion vector value", dict(text="hello", v3=float("-inf")), "minimum"),
    ("NaN num_beams", dict(text="hello", num_beams=float("nan")), "finite"),
    ("lone surrogates only (not encodable as UTF-8)", dict(text="\ud800\udfff\ud83d"), "nothing to speak"),
]


@pytest.mark.parametrize("name,values,hint", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_non_json_numbers_and_surrogates_are_clear_errors(server, guard, name, values, hint):
    outcome, msg = raw_call(server, "synthesize", values)
    assert outcome == "error", (outcome, msg[:300])
    assert_clear(msg)
    assert hint.lower() in msg.lower(), msg


def test_invalid_utf8_body_is_refused(server, guard):
    body = json.dumps({"data": ["Hello XX world"]}).encode().replace(b"XX", b"\xff\xfe\xc3")
    outcome, msg = raw_call(server, "synthesize", body=body)
    assert outcome == "http" and msg.startswith("400"), (outcome, msg)


# ------------------------------------------------- odd but valid: accepted, not an error ----
ACCEPTED = [  # the product handles these rather than refusing them (documented behaviour)
    ("8-channel speech prompt (downmixed)", dict(text="hello there", spk=F + "eight_channels.wav")),
    ("96 kHz speech prompt (resampled)", dict(text="hello there", spk=F + "96k.wav")),
    ("prompt truncated in its data chunk (the readable part is used)", dict(text="hello there", spk=F + "half.wav")),
    ("control characters inside text (removed)", dict(text="Hello\x00 wor\x07ld\x1b[31m again")),
    ("text as a number (Gradio's textbox makes it a string)", dict(text=12345)),
]


@pytest.mark.parametrize("name,kw", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_odd_but_valid_input_gives_a_normal_clip(client, files, guard, name, kw):
    out = client.predict(api_name="/synthesize", **_resolve(kw, files))
    assert sf.info(out[0]).duration > 0.2
    assert out[9]["breakdown"]["totals"]["on_cpu_s"] > 0


def test_lone_surrogate_inside_text_is_dropped_not_crashing(server, client, guard):
    outcome, data = raw_call(server, "synthesize", dict(text="Hello \ud800 world"))
    assert outcome == "complete", data[:300]
    rid = json.loads(data)[1]
    assert client.predict(rid, api_name="/clip")[1] == rid  # its record reads back


def test_at_least_30_kinds():
    assert len(SYNTH_CASES) + len(OTHER_CASES) + len(RAW_CASES) + 2 >= 30
