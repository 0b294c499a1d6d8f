"""models/indextts2.py against the v2.0.0-shaped stand-in (tests/standin/indextts): signatures
pinned, request mapping per emotion mode as IndexTTS2's webui does it, stage markers, model_dir
checks, engine selection."""
from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading

import numpy as np
import pytest
import soundfile as sf

from models.base import SAMPLE_RATE, InputError, SynthesisRequest

STANDIN = os.path.join(os.path.dirname(__file__), "standin")
from tests.standin.model_dir import REQUIRED, make_model_dir

# Read from index-tts/index-tts tag v2.0.0, indextts/infer_v2.py (as inspect renders them).
V200_INIT = ("(self, cfg_path='checkpoints/config.yaml', model_dir='checkpoints', use_fp16=False, "
             "device=None, use_cuda_kernel=None, use_deepspeed=False, use_accel=False, "
             "use_torch_compile=False)")
V200_INFER = ("(self, spk_audio_prompt, text, output_path, emo_audio_prompt=None, emo_alpha=1.0, "
              "emo_vector=None, use_emo_text=False, emo_text=None, use_random=False, "
              "interval_silence=200, verbose=False, max_text_tokens_per_segment=120, "
              "stream_return=False, more_segment_before=0, **generation_kwargs)")


@pytest.fixture
def standin_path(monkeypatch):
    """Make the stand-in `indextts` importable for this test only."""
    _drop_indextts(monkeypatch)
    # infer_v2 sets HF_HUB_CACHE at import: restore it after the test
    if "HF_HUB_CACHE" in os.environ:
        monkeypatch.setenv("HF_HUB_CACHE", os.environ["HF_HUB_CACHE"])
    else:
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.syspath_prepend(STANDIN)
    yield STANDIN
    for name in _indextts_modules():  # imported during the test: gone with the path
        sys.modules.pop(name, None)


def _indextts_modules():
    return [m for m in sys.modules if m == "indextts" or m.startswith("indextts.")]


def _drop_indextts(monkeypatch):
    for name in _indextts_modules():
        monkeypatch.delitem(sys.modules, name)


@pytest.fixture
def model_dir(tmp_path):
    return make_model_dir(str(tmp_path / "checkpoints"))


@pytest.fixture
def engine(standin_path, model_dir):
    from models.indextts2 import IndexTTS2Engine
    return IndexTTS2Engine(model_dir=model_dir, fp16=True, deepspeed=True, cuda_kernel=True)


def _voice(path, seconds=1.0, f0=150.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) / 1.5).astype(np.float32), sr)
    return str(path)


@pytest.fixture
def voices(tmp_path):
    return _voice(tmp_path / "spk.wav"), _voice(tmp_path / "emo.wav", f0=220.0)


class Recorder:
    """A StageSink that records (event, name, thread) in order."""

    def __init__(self):
        self.events: list[tuple[str, str, int]] = []

    @contextlib.contextmanager
    def stage(self, name):
        self.events.append(("B", name, threading.get_ident()))
        try:
            yield
        finally:
            self.events.append(("E", name, threading.get_ident()))

    def names(self):
        return [n for ev, n, _ in self.events if ev == "B"]


def test_standin_signatures_match_v200(standin_path):
    from indextts.infer_v2 import IndexTTS2
    assert str(inspect.signature(IndexTTS2.__init__)) == V200_INIT
    assert str(inspect.signature(IndexTTS2.infer)) == V200_INFER


def test_constructor_gets_webui_flags(engine, model_dir):
    assert engine.tts.init_args == dict(cfg_path=os.path.join(model_dir, "config.yaml"), model_dir=model_dir,
                                        use_fp16=True, device=None, use_cuda_kernel=True, use_deepspeed=True,
                                        use_accel=False, use_torch_compile=False)


def _run(engine, **fields):
    res = engine.synthesize(SynthesisRequest(**fields), Recorder())
    call = engine.tts.calls[-1]
    # what was sent binds to the pinned v2.0.0 signature (no unknown keyword)
    from indextts.infer_v2 import IndexTTS2
    sent = {k: v for k, v in call.items() if k != "generation_kwargs"} | call["generation_kwargs"]
    inspect.signature(IndexTTS2.infer).bind(None, **sent)
    return res, call


def test_mode0_same_as_speaker(engine, voices):
    spk, emo = voices
    res, call = _run(engine, text="Hello there.", spk_audio_prompt=spk, emo_control_method=0,
                     emo_audio_prompt=emo, emo_alpha=0.4, emo_vector=[0.5] * 8, emo_text="angry")
    assert call["spk_audio_prompt"] == spk and call["text"] == "Hello there."
    assert call["emo_audio_prompt"] is None  # webui drops the emotion audio in mode 0
    assert call["emo_vector"] is None and call["use_emo_text"] is False
    assert call["emo_alpha"] == 0.4 and call["emo_text"] == "angry"
    assert res.sample_rate == SAMPLE_RATE and res.audio.dtype == np.int16 and len(res.audio) > 1000
    assert np.abs(res.audio).max() > 0


def test_mode1_emotion_audio(engine, voices):
    spk, emo = voices
    _, call = _run(engine, text="Hello.", spk_audio_prompt=spk, emo_control_method=1, emo_audio_prompt=emo,
                   emo_alpha=0.65, emo_vector=[0.5] * 8)
    assert call["emo_audio_prompt"] == emo and call["emo_alpha"] == 0.65
    assert call["emo_vector"] is None and call["use_emo_text"] is False


def test_mode2_vector_normalised_as_webui(engine, voices):
    spk, emo = voices
    # happy 1.0 alone: bias 0.9375 -> sum 0.9375 > 0.8 -> scaled to 0.8
    _, call = _run(engine, text="Hi.", spk_audio_prompt=spk, emo_control_method=2,
                   emo_vector=[1.0, 0, 0, 0, 0, 0, 0, 0], emo_alpha=0.5)
    assert call["emo_vector"] == pytest.approx([0.8, 0, 0, 0, 0, 0, 0, 0])
    assert call["use_emo_text"] is False and call["emo_alpha"] == 0.5
    # small values stay under the cap: only the bias applies (calm 0.4 -> 0.225, surprised 0.2 -> 0.1375)
    _, call = _run(engine, text="Hi.", spk_audio_prompt=spk, emo_control_method=2,
                   emo_vector=[0, 0, 0, 0, 0, 0, 0.2, 0.4], emo_audio_prompt=emo)
    assert call["emo_vector"] == pytest.approx([0, 0, 0, 0, 0, 0, 0.1375, 0.225])
    assert call["emo_audio_prompt"] == emo  # passed through as the webui does; infer() ignores it


def test_module_normalisation_matches_standin():
    from models.indextts2 import normalize_emo_vec
    assert normalize_emo_vec([1.0] * 8) == pytest.approx([0.8 * b / 6.9375 for b in
                                                          (0.9375, 0.875, 1, 1, 0.9375, 0.9375, 0.6875, 0.5625)])
    assert normalize_emo_vec([0.2, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx([0.1875] + [0] * 7)


def test_mode3_emotion_text(engine, voices):
    spk, _ = voices
    rec = Recorder()
    engine.synthesize(SynthesisRequest(text="Hi.", spk_audio_prompt=spk, emo_control_method=3,
                                       emo_text="furious and scared"), rec)
    call = engine.tts.calls[-1]
    assert call["use_emo_text"] is True and call["emo_text"] == "furious and scared"
    assert call["emo_vector"] is None
    assert "emotion_text" in rec.names()
    # empty description -> None, so infer() uses the main text (webui behaviour)
    _, call = _run(engine, text="Hi.", spk_audio_prompt=spk, emo_control_method=3, emo_text="")
    assert call["emo_text"] is None and call["use_emo_text"] is True


def test_generation_kwargs_and_segmentation(engine, voices):
    spk, _ = voices
    gen = {"do_sample": 0, "top_p": 0.5, "top_k": 0, "temperature": 1.2, "length_penalty": 0.5,
           "num_beams": 2.0, "repetition_penalty": 7, "max_mel_tokens": 600.0}
    _, call = _run(engine, text="One two three four five six seven.", spk_audio_prompt=spk,
                   generation=gen, max_text_tokens_per_segment=40, interval_silence=300, use_random=True)
    assert call["generation_kwargs"] == {"do_sample": False, "top_p": 0.5, "top_k": None, "temperature": 1.2,
                                         "length_penalty": 0.5, "num_beams": 2, "repetition_penalty": 7.0,
                                         "max_mel_tokens": 600}
    assert call["max_text_tokens_per_segment"] == 40 and call["interval_silence"] == 300
    # upstream's own streaming path (segments handed over as they are made, docs/streaming.md)
    assert call["use_random"] is True and call["verbose"] is False and call["stream_return"] is True
    # defaults fill missing keys
    _, call = _run(engine, text="Hi.", spk_audio_prompt=spk, generation={})
    assert call["generation_kwargs"]["top_k"] == 30 and call["generation_kwargs"]["num_beams"] == 3


def test_segments_and_silence_lengthen_audio(engine, voices):
    spk, _ = voices
    text = " ".join(["word"] * 60)
    one, _ = _run(engine, text=text, spk_audio_prompt=spk, max_text_tokens_per_segment=600, interval_silence=0)
    three, call = _run(engine, text=text, spk_audio_prompt=spk, max_text_tokens_per_segment=20,
                       interval_silence=500)
    # 3 segments with 2 gaps of 0.5 s: at least 1 s more than the unsegmented clip
    assert three.duration_s > one.duration_s + 0.9


def test_speaker_prompt_required(engine):
    with pytest.raises(InputError, match="voice reference"):
        engine.synthesize(SynthesisRequest(text="Hi."), Recorder())
    with pytest.raises(InputError, match="not found"):
        engine.synthesize(SynthesisRequest(text="Hi.", spk_audio_prompt="/nonexistent/x.wav"), Recorder())


# tokenize and split_segments are two calls: two "text" stages (normalize nests in tokenize: none)
EXPECTED_ORDER = ["semantic_model", "semantic_codec", "campplus", "semantic_model", "text", "text",
                  "gpt_autoregressive", "gpt_latents", "semantic_codec", "cfm", "vocoder"]


def test_stage_markers_order_and_nesting(engine, voices):
    spk, emo = voices
    rec = Recorder()
    engine.synthesize(SynthesisRequest(text="Hello world.", spk_audio_prompt=spk, emo_control_method=1,
                                       emo_audio_prompt=emo), rec)
    assert rec.names() == EXPECTED_ORDER
    # normalizer inside tokenize: one "text" stage, and every B has its E on the same thread
    depth = 0
    for ev, _, tid in rec.events:
        assert tid == threading.get_ident()
        depth += 1 if ev == "B" else -1
        assert depth in (0, 1)  # these stages never nest
    assert depth == 0
    assert engine.hooks.missing == []
    # same prompts again: IndexTTS2's cache skips the prompt stages
    rec2 = Recorder()
    engine.synthesize(SynthesisRequest(text="Hello world.", spk_audio_prompt=spk, emo_control_method=1,
                                       emo_audio_prompt=emo), rec2)
    assert rec2.names() == ["text", "text", "gpt_autoregressive", "gpt_latents", "semantic_codec", "cfm", "vocoder"]
    assert set(rec.names()) <= set(engine.stages)


def test_hooks_silent_outside_requests_and_other_threads(engine, voices):
    spk, _ = voices
    rec = Recorder()
    # a UI preview tokenizing on another thread while a request is in flight must not mark
    other: list = []
    orig = engine.tts.bigvgan.forward

    def vocoder_and_preview(*a, **k):
        t = threading.Thread(target=lambda: other.append(engine.tts.tokenizer.tokenize("preview text")))
        t.start(), t.join()
        return orig(*a, **k)

    engine.tts.bigvgan.forward = vocoder_and_preview
    engine.synthesize(SynthesisRequest(text="Hi.", spk_audio_prompt=spk), rec)
    assert other == [["preview", "text"]]
    assert rec.names().count("text") == 2  # tokenize + split_segments of the request only
    n = len(rec.events)
    engine.tts.tokenizer.tokenize("outside")  # no request in flight
    assert len(rec.events) == n


def test_one_synthesis_at_a_time(engine, voices):
    spk, _ = voices
    active, peak = [0], [0]
    orig = engine.tts.infer

    def counting(**kw):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            return orig(**kw)
        finally:
            active[0] -= 1

    engine.tts.infer = counting
    errs = []

    def go():
        try:
            engine.synthesize(SynthesisRequest(text="Concurrent request.", spk_audio_prompt=spk), Recorder())
        except Exception as e:  # pragma: no cover - reported below
            errs.append(e)

    ts = [threading.Thread(target=go) for _ in range(3)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errs and peak[0] == 1


def test_markers_in_real_trace_window(engine, voices):
    window_mod = pytest.importorskip("tracing.window")
    spk, emo = voices
    if not os.path.isdir("/sys/kernel/tracing/instances"):
        pytest.skip("tracefs not mounted")
    prefix = "ittsw-a6"  # ours only: other helpers' windows come and go meanwhile
    with window_mod.TraceWindow(pid=os.getpid(), prefix=prefix) as w:
        engine.synthesize(SynthesisRequest(text="Traced.", spk_audio_prompt=spk, emo_control_method=1,
                                           emo_audio_prompt=emo), w)
    raw = w.capture.raw_text
    tgid = os.getpid()
    for stage in set(EXPECTED_ORDER):
        assert f"B|{tgid}|{stage}" in raw, stage
    assert not [n for n in os.listdir("/sys/kernel/tracing/instances") if n.startswith(prefix + "-")]


def test_check_model_dir(tmp_path):
    from models.indextts2 import check_model_dir
    assert check_model_dir(str(tmp_path / "absent")) == list(REQUIRED)
    d = make_model_dir(str(tmp_path / "partial"), skip=("s2mel.pth", "wav2vec2bert_stats.pt"))
    assert check_model_dir(d) == ["s2mel.pth", "wav2vec2bert_stats.pt"]
    assert check_model_dir(make_model_dir(str(tmp_path / "full"))) == []


def test_registry_indextts2_names_missing_files(tmp_path, standin_path):
    from models.indextts2 import ModelDirError
    from models.registry import create_engine
    d = make_model_dir(str(tmp_path / "partial"), skip=("gpt.pth",))
    with pytest.raises(ModelDirError, match=r"missing gpt\.pth\b"):
        create_engine("indextts2", model_dir=d)
    with pytest.raises(ValueError, match="Unknown engine"):
        create_engine("nope")


def test_registry_indextts2_and_auto_with_standin(standin_path, model_dir):
    from models.registry import create_engine
    eng = create_engine("indextts2", model_dir=model_dir, fp16=True)
    assert eng.name == "indextts2" and eng.tts.init_args["use_fp16"] is True
    auto = create_engine("auto", model_dir=model_dir)
    assert auto.name == "indextts2" and "IndexTTS-2 from" in auto.selection_note


def test_auto_falls_back_to_builtin(tmp_path, monkeypatch):
    pytest.importorskip("models.builtin")
    from models.registry import create_engine
    eng = create_engine("auto", model_dir=str(tmp_path / "none"))
    assert eng.name == "builtin" and "bpe.model" in eng.selection_note
    # complete model_dir but no `indextts` importable
    _drop_indextts(monkeypatch)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p) != os.path.abspath(STANDIN)])
    eng = create_engine("auto", model_dir=make_model_dir(str(tmp_path / "ck")))
    assert eng.name == "builtin" and "indextts" in eng.selection_note


def test_hub_cache_points_at_model_dir(standin_path, model_dir, monkeypatch):
    """IndexTTS2's import points HF_HUB_CACHE at ./checkpoints/hf_cache of the working directory;
    the adapter uses <model_dir>/hf_cache (where IndexTTS2's own webui keeps those downloads)."""
    import huggingface_hub.constants as hc
    from models.indextts2 import IndexTTS2Engine
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", hc.HF_HUB_CACHE)
    os.makedirs(os.path.join(model_dir, "hf_cache"))
    import indextts.infer_v2  # noqa: F401  the stand-in overrides HF_HUB_CACHE at import, as v2.0.0
    IndexTTS2Engine(model_dir=model_dir)
    want = os.path.abspath(os.path.join(model_dir, "hf_cache"))
    assert os.environ["HF_HUB_CACHE"] == want and hc.HF_HUB_CACHE == want


def test_do_sample_is_reported_as_ignored(engine, voices):
    """Upstream v2.0.0 pops do_sample and passes do_sample=True to the GPT (as the stand-in now
    does): the engine reads that from the installed code and the UI shows the note."""
    assert engine.ignored_generation == ("do_sample",)
    assert "do_sample=True" in engine.generation_note and "no effect" in engine.generation_note
    res, call = _run(engine, text="Hi.", spk_audio_prompt=voices[0], generation={"do_sample": False})
    assert call["generation_kwargs"]["do_sample"] is False  # sent as asked: upstream ignores it
    assert res.info["generation_ignored"] == ["do_sample"]


def test_standin_matches_upstream_where_it_differed(standin_path, model_dir):
    """Upstream facts the stand-in had wrong: semantic_codec.quantize returns (indices,
    quantized); cfg is an OmegaConf object (attribute access, not a dict)."""
    import torch
    from indextts.infer_v2 import IndexTTS2
    tts = IndexTTS2(cfg_path=os.path.join(model_dir, "config.yaml"), model_dir=model_dir)
    codes, quantized = tts.semantic_codec.quantize(torch.randn(1, 5, 32))
    assert codes.dtype == torch.int64 and codes.shape == (1, 5)
    assert quantized.is_floating_point() and quantized.shape == (1, 5, 32)
    assert not isinstance(tts.cfg, dict) and tts.cfg.gpt.stop_mel_token == 8193 and tts.cfg["gpt"]["stop_mel_token"] == 8193
    assert tts.model_version == 2.0


def test_segments_are_handed_over_while_upstream_makes_the_next(engine, voices):
    """infer(stream_return=True): each segment reaches the sink before the next segment's GPT
    decode starts (upstream's generator runs one segment per step); the silence upstream yields
    after a segment travels at the head of the next one, and joined the pieces are the file."""
    spk, _ = voices
    pieces = []

    class Sink(Recorder):
        def segment(self, audio, sample_rate):
            assert sample_rate == SAMPLE_RATE and audio.dtype == np.int16
            pieces.append((len(self.names()), audio.copy()))

    rec = Sink()
    text = " ".join(["word"] * 60)
    res = engine.synthesize(SynthesisRequest(text=text, spk_audio_prompt=spk, max_text_tokens_per_segment=20,
                                             interval_silence=100), rec)
    n = rec.names().count("gpt_autoregressive")
    assert n >= 3 and len(pieces) == n
    first_at = pieces[0][0]
    assert rec.names()[:first_at].count("gpt_autoregressive") == 1  # only the first segment made then
    gap = int(SAMPLE_RATE * 0.1)
    assert all(not p[:gap].any() for _, p in pieces[1:]) and pieces[0][1][:gap].any()
    assert np.array_equal(np.concatenate([p for _, p in pieces]), res.audio)
