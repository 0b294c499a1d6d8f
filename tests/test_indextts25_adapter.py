"""models/indextts25.py against the signatures of BOTH codes it may drive, recorded as facts:
upstream index-tts main ee40fa7 `indextts/infer_v2_5.py` (read from the tag, rendered with
ast.unparse) and the registry's `indextts25-inference` 0.2.0 `indextts25/infer_v2_5.py` (rendered
by inspect.signature in its env). A class is built per signature whose methods have exactly that
signature and record the call; the adapter must bind to it (no unknown keyword, nothing required
missing), map the request as upstream's gen_single does, and refuse clearly what a code lacks.
The real runs of both codes are tests/real_indextts (marker real_indextts)."""
from __future__ import annotations

import contextlib
import inspect
import threading

import numpy as np
import pytest
import soundfile as sf

from models.base import SAMPLE_RATE, InputError, SynthesisRequest
from models.indextts2 import streaming_entry
from models.indextts25 import IndexTTS25Engine, infer_parameters

UPSTREAM_EE40FA7 = {
    "__init__": "(self, cfg_path='checkpoints/config.yaml', model_dir='checkpoints', use_bf16=False, device=None, "
                "use_cuda_kernel=None, use_deepspeed=False, use_accel=False, use_torch_compile=False, "
                "use_qwen_emo=False)",
    "infer": "(self, spk_audio_prompt, text, output_path, lang, emo_audio_prompt=None, emo_alpha=1.0, "
             "emo_vector=None, use_emo_text=False, emo_text=None, use_random=False, interval_silence=200, "
             "verbose=False, max_text_tokens_per_segment=120, stream_return=False, more_segment_before=0, "
             "duration_factor=1.0, text_normalization=True, **generation_kwargs)",
    "infer_generator": "(self, spk_audio_prompt, text, output_path, lang, emo_audio_prompt=None, emo_alpha=1.0, "
                       "emo_vector=None, use_emo_text=False, emo_text=None, use_random=False, "
                       "interval_silence=200, verbose=False, max_text_tokens_per_segment=120, "
                       "stream_return=False, quick_streaming_tokens=0, duration_factor=1.0, "
                       "text_normalization=True, **generation_kwargs)",
}
INDEXTTS25_020 = {
    "__init__": "(self, cfg_path='checkpoints/config.yaml', model_dir='checkpoints', use_bf16=False, device=None, "
                "use_accel=False)",
    "infer": "(self, spk_audio_prompt, text, output_path, lang, **kwargs)",
    "infer_generator": "(self, spk_audio_prompt, text, output_path, lang, emo_audio_prompt=None, emo_alpha=1.0, "
                       "emo_vector=None, use_random=False, interval_silence=200, verbose=False, "
                       "max_text_tokens_per_segment=120, stream_return=False, duration_factor=1.0, "
                       "text_normalization=True, emit_text=False, **generation_kwargs)",
}
# Upstream passes `do_sample=True` to gpt.inference_speech; indextts25 passes the caller's value.
GPT_CALL = {"upstream": "codes = self.gpt.inference_speech(x, do_sample=True, top_p=top_p)",
            "indextts25": "codes = self.gpt.inference_speech(x, do_sample=do_sample, top_p=top_p)"}


def fake_class(sigs: dict, gpt_call: str):
    """A class whose __init__/infer/infer_generator have exactly the recorded signatures. infer
    records what it got (bound against its own signature: an unknown keyword is a TypeError, as
    on the real object) and writes a short wav to output_path."""
    ns: dict = {"np": np, "sf": sf, "SR": SAMPLE_RATE}
    body = {
        "__init__": "    self.init_args = {k: v for k, v in locals().items() if k != 'self'}\n    self.calls = []\n",
        "infer": ("    args = {k: v for k, v in locals().items() if k != 'self'}\n"
                  "    self.calls.append(args)\n"
                  "    sf.write(output_path, (np.sin(np.arange(SR // 10) / 5.0) * 3000).astype(np.int16), SR)\n"
                  "    return output_path\n"),
        # as the real ones: with stream_return, each segment's wav (float, [1, N]) and the silence
        # between two; the whole clip written to output_path at the end (gpt_call: read, not run)
        "infer_generator": ("    args = {k: v for k, v in locals().items() if k != 'self'}\n"
                            "    self.calls.append(args)\n"
                            "    if args is None:\n"
                            f"        {gpt_call}\n"
                            "    seg = (np.sin(np.arange(SR // 20) / 5.0) * 3000)[None, :]\n"
                            "    parts = [seg, np.zeros((1, SR // 50)), -seg]\n"
                            "    if stream_return:\n"
                            "        yield from parts\n"
                            "    sf.write(output_path, np.concatenate(parts, 1)[0].astype(np.int16), SR)\n"
                            "    if not stream_return:\n"
                            "        yield output_path\n"),
    }
    src = "class IndexTTS2:\n" + "".join(f"  def {name}{sig}:\n" + "\n".join("  " + ln for ln in body[name].splitlines())
                                        + "\n" for name, sig in sigs.items())
    exec(src, ns)
    return ns["IndexTTS2"], src


@pytest.fixture(params=["upstream", "indextts25"])
def code(request, tmp_path, monkeypatch):
    sigs = UPSTREAM_EE40FA7 if request.param == "upstream" else INDEXTTS25_020
    cls, src = fake_class(sigs, GPT_CALL[request.param])
    # inspect.getsource needs a file: ignored_generation_params reads the installed code's source
    path = tmp_path / f"fake_{request.param}.py"
    path.write_text(src)
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"fake_{request.param}", path)
    mod = importlib.util.module_from_spec(spec)
    mod.__dict__.update(np=np, sf=sf, SR=SAMPLE_RATE)
    monkeypatch.setitem(__import__("sys").modules, mod.__name__, mod)  # inspect finds class source via it
    spec.loader.exec_module(mod)
    return request.param, mod.IndexTTS2, sigs


def _voice(path, f0=150.0, sr=16000):
    t = np.arange(sr) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), sr)
    return str(path)


def test_recorded_signatures_render_as_recorded(code):
    _, cls, sigs = code
    for name, sig in sigs.items():
        assert str(inspect.signature(getattr(cls, name))) == sig


def test_constructor_gets_only_what_the_code_takes(code, tmp_path):
    which, cls, _ = code
    eng = IndexTTS25Engine.__new__(IndexTTS25Engine)
    kw = eng._init_kwargs(cls, str(tmp_path), fp16=False, deepspeed=True, cuda_kernel=True, accel=True,
                          torch_compile=True, qwen_emo=True)
    inspect.signature(cls).bind(**kw)  # binds: nothing unknown
    if which == "upstream":
        assert kw["use_deepspeed"] and kw["use_torch_compile"] and kw["use_qwen_emo"] and eng.dropped_init == []
    else:  # indextts25 has no such flags: dropped and said, never silently "on"
        assert set(kw) == {"cfg_path", "model_dir", "use_bf16", "use_accel"}
        assert sorted(eng.dropped_init) == ["use_cuda_kernel", "use_deepspeed", "use_qwen_emo", "use_torch_compile"]


class Recorder:
    def __init__(self):
        self.names = []

    @contextlib.contextmanager
    def stage(self, name):
        self.names.append(name)
        yield


def _engine(cls):
    tts = cls()
    return IndexTTS25Engine(tts=tts), tts


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_request_binds_and_maps_like_gen_single(code, tmp_path, mode):
    which, cls, sigs = code
    eng, tts = _engine(cls)
    spk, emo = _voice(tmp_path / "s.wav"), _voice(tmp_path / "e.wav", 220.0)
    res = eng.synthesize(SynthesisRequest(text="Hola.", spk_audio_prompt=spk, emo_control_method=mode,
                                          emo_audio_prompt=emo, emo_vector=[0.5] + [0.0] * 7, lang="es",
                                          duration_factor=1.5, generation={"max_mel_tokens": 60}), Recorder())
    got = tts.calls[-1]
    extra = got.pop("kwargs", {}) | got.pop("generation_kwargs", {})
    sent = got | extra
    # what the engine sent binds to the recorded signature of the code that receives it
    target = "infer" if which == "upstream" else "infer_generator"
    inspect.signature(getattr(cls, target)).bind(None, **{k: v for k, v in sent.items()})
    assert sent["lang"] == "ES" and sent["duration_factor"] == 1.5 and sent["max_mel_tokens"] == 60
    assert sent["emo_audio_prompt"] == (None if mode == 0 else emo)
    assert (sent["emo_vector"] is None) == (mode != 2)
    if which == "upstream":
        assert sent["use_emo_text"] is False
    else:
        assert "use_emo_text" not in sent and "emo_text" not in sent
    assert res.info["lang"] == "ES" and res.sample_rate == SAMPLE_RATE and len(res.audio) > 0


def test_lang_defaults_to_zh_as_upstream(code, tmp_path):
    _, cls, _ = code
    eng, tts = _engine(cls)
    eng.synthesize(SynthesisRequest(text="你好。", spk_audio_prompt=_voice(tmp_path / "s.wav")))
    call = tts.calls[-1]
    assert (call.get("lang") or call["kwargs"].get("lang")) == "ZH"


def test_emotion_text_where_the_code_has_none(code, tmp_path):
    which, cls, _ = code
    eng, tts = _engine(cls)
    req = SynthesisRequest(text="Hi.", spk_audio_prompt=_voice(tmp_path / "s.wav"), emo_control_method=3,
                           emo_text="happy")
    if which == "upstream":
        eng.synthesize(req)
        assert tts.calls[-1]["use_emo_text"] is True and tts.calls[-1]["emo_text"] == "happy"
    else:
        with pytest.raises(InputError, match="not available with this IndexTTS-2.5 install"):
            eng.synthesize(req)
        assert tts.calls == []


def test_do_sample_ignored_only_where_the_code_hard_codes_it(code):
    which, cls, _ = code
    eng, _ = _engine(cls)
    if which == "upstream":
        assert eng.ignored_generation == ("do_sample",)
        assert "do_sample" in eng.generation_note and "no effect" in eng.generation_note
    else:
        assert eng.ignored_generation == () and eng.generation_note == ""


def test_accepted_parameters(code):
    which, cls, _ = code
    acc = infer_parameters(cls())
    assert {"lang", "duration_factor", "emo_vector", "text_normalization"} <= acc
    assert ("use_emo_text" in acc) == (which == "upstream")


@pytest.mark.parametrize("bad", [{"lang": "FR"}, {"duration_factor": 0.1}, {"duration_factor": 2.5},
                                 {"duration_factor": float("nan")}, {"lang": 3}])
def test_bad_lang_and_duration_refused(bad):
    with pytest.raises(InputError):
        SynthesisRequest(text="x", **bad).validate()


def test_one_synthesis_at_a_time(code, tmp_path):
    _, cls, _ = code
    eng, tts = _engine(cls)
    spk = _voice(tmp_path / "s.wav")
    inside, overlap = [0], []
    entry = streaming_entry(tts) or "infer"  # the method the adapter calls
    orig = getattr(tts, entry)

    def slow(**kw):
        inside[0] += 1
        overlap.append(inside[0])
        import time
        time.sleep(0.05)
        try:
            return orig(**kw)
        finally:
            inside[0] -= 1

    setattr(tts, entry, slow)
    th = [threading.Thread(target=eng.synthesize, args=(SynthesisRequest(text="a", spk_audio_prompt=spk),))
          for _ in range(3)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert max(overlap) == 1


def test_segments_stream_through_the_method_each_code_streams_with(code, tmp_path):
    """upstream: infer(stream_return=True) (infer_generator behind it); indextts25: infer_generator
    (its infer() returns the first item only). The fake indextts25 yields two segments with a
    silence between: handed over as two pieces (the silence at the head of the second), joined
    they are the file the code wrote."""
    which, cls, _ = code
    eng, tts = _engine(cls)
    pieces = []

    class Sink(Recorder):
        def segment(self, audio, sample_rate):
            pieces.append(audio.copy())

    res = eng.synthesize(SynthesisRequest(text="Hola.", spk_audio_prompt=_voice(tmp_path / "s.wav")), Sink())
    assert streaming_entry(tts) == ("infer" if which == "upstream" else "infer_generator")
    assert tts.calls[-1].get("stream_return", tts.calls[-1].get("kwargs", {}).get("stream_return")) is True
    if which == "upstream":  # this fake's infer() does not stream: the whole clip is one piece
        assert len(pieces) == 1
    else:
        assert len(pieces) == 2 and not pieces[1][:SAMPLE_RATE // 50].any() and pieces[0][:100].any()
    assert np.array_equal(np.concatenate(pieces), res.audio)
