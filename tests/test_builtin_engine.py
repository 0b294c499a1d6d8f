"""The builtin engine end to end: real eSpeak NG, real torch voice stage, real files."""
import numpy as np
import pytest
import soundfile as sf

from models import espeak
from models.audio_io import median_f0, speaking_rate
from models.base import EMOTIONS, InputError, SynthesisRequest
from models.builtin import BuiltinEngine
from models.emotion import to_prosody
from models.text import prepare


def emo_neutral():
    return to_prosody([0.0] * 8, 1.0).to_dict()

SR = 22050


class RecordingStages:
    def __init__(self):
        self.names = []

    def stage(self, name):
        import contextlib
        self.names.append(name)
        return contextlib.nullcontext()


@pytest.fixture(scope="module")
def engine():
    e = BuiltinEngine()
    e.warmup()
    return e


def f0_of(res):
    return median_f0(res.audio.astype(np.float32) / 32768, res.sample_rate)


def test_protocol_fields_and_stage_order(engine):
    assert engine.name == "builtin" and "not a neural model" in engine.label
    assert engine.sample_rate == SR and engine.stages == ("text", "emotion", "acoustic", "voice")
    st = RecordingStages()
    res = engine.synthesize(SynthesisRequest(text="Hello there."), st)
    assert st.names == list(engine.stages)
    assert res.audio.dtype == np.int16 and res.audio.ndim == 1 and res.sample_rate == SR
    assert res.info["segments"] == 1 and set(res.info["emotion"]["vector"]) == set(EMOTIONS)


def test_chinese_length_plausible(engine):
    text = "今天天气很好我们去公园散步吧"  # 14 characters
    res = engine.synthesize(SynthesisRequest(text=text), None)
    assert 0.15 * len(text) <= res.duration_s <= 0.6 * len(text)
    assert np.abs(res.audio).max() > 3000  # not near-silent


def test_english_length_plausible(engine):
    text = "The quick brown fox jumps over the lazy dog near the river bank"  # 13 words
    res = engine.synthesize(SynthesisRequest(text=text), None)
    assert 0.15 * 13 <= res.duration_s <= 0.8 * 13


def _prompt(tmp_path, name, pitch, variant=None):
    pcm = espeak.synthesize("Hello, this is my voice. I like to read books in the evening.", "en",
                            espeak.Prosody(pitch=pitch), variant)
    p = tmp_path / name
    sf.write(p, pcm, SR)
    return str(p)


def test_speaker_prompt_pitch_moves_output(engine, tmp_path):
    hi = _prompt(tmp_path, "hi.wav", 80, "f3")  # ~280 Hz
    lo = _prompt(tmp_path, "lo.wav", 10)  # ~75 Hz
    for text in ("今天天气很好，我们去公园散步吧。", "Reading aloud is a good habit."):
        r_hi = engine.synthesize(SynthesisRequest(text=text, spk_audio_prompt=hi), None)
        r_lo = engine.synthesize(SynthesisRequest(text=text, spk_audio_prompt=lo), None)
        f_hi, f_lo = f0_of(r_hi), f0_of(r_lo)
        assert f_hi > 2.5 * f_lo, (f_hi, f_lo)
        # output lands near the prompt's pitch (within 3 semitones)
        for f, r in ((f_hi, r_hi), (f_lo, r_lo)):
            target = r.info["target_f0_hz"][0]
            assert abs(12 * np.log2(f / target)) < 3, (f, target)
        assert r_hi.info["voice_variant"] == "f3" and r_lo.info["voice_variant"] == "default"


def _vec(name):
    v = [0.0] * 8
    v[EMOTIONS.index(name)] = 1.0
    return v


def test_emotion_vector_moves_pitch_and_rate(engine):
    text = "I went to the market this morning and bought some fresh bread."
    res = {e: engine.synthesize(SynthesisRequest(text=text, emo_control_method=2, emo_vector=_vec(e), emo_alpha=1.0), None)
           for e in ("happy", "angry", "sad")}
    f = {e: f0_of(r) for e, r in res.items()}
    d = {e: r.duration_s for e, r in res.items()}
    assert f["happy"] > f["sad"] * 2 ** (3 / 12)  # > 3 semitones apart (table: +3.2 vs -2.4)
    assert f["angry"] > f["sad"]
    assert d["sad"] > d["happy"] * 1.2 and d["sad"] > d["angry"] * 1.2  # sad is slower


def test_emo_alpha_zero_is_neutral(engine):
    text = "今天下午我们一起去看电影吧。"
    base = engine.synthesize(SynthesisRequest(text=text), None)
    a0 = engine.synthesize(SynthesisRequest(text=text, emo_control_method=2, emo_vector=_vec("sad"), emo_alpha=0.0), None)
    a1 = engine.synthesize(SynthesisRequest(text=text, emo_control_method=2, emo_vector=_vec("sad"), emo_alpha=1.0), None)
    # alpha 0 is exactly neutral prosody (eSpeak itself varies by a few samples between calls)
    assert a0.info["prosody"] == base.info["prosody"] == emo_neutral()
    assert abs(len(a0.audio) - len(base.audio)) < 0.01 * len(base.audio)
    assert a1.duration_s > a0.duration_s * 1.15
    assert f0_of(a1) < f0_of(a0) * 2 ** (-1 / 12)


def test_emotion_from_text_and_from_synthesis_text(engine):
    r = engine.synthesize(SynthesisRequest(text="Let's go.", emo_control_method=3, emo_text="我很伤心"), None)
    assert max(r.info["emotion"]["vector"], key=r.info["emotion"]["vector"].get) == "sad"
    r2 = engine.synthesize(SynthesisRequest(text="I am so happy to see you!", emo_control_method=3, emo_text=""), None)
    assert r2.info["emotion"]["text_source"] == "synthesis text"
    assert max(r2.info["emotion"]["vector"], key=r2.info["emotion"]["vector"].get) == "happy"


def test_emotion_reference_audio(engine, tmp_path):
    flat = espeak.synthesize("I do not know what to say anymore, it is all over now.", "en",
                             espeak.Prosody(rate=110, pitch=30, range=5, volume=60))
    p = tmp_path / "flat.wav"
    sf.write(p, flat, SR)
    r = engine.synthesize(SynthesisRequest(text="See you tomorrow.", emo_control_method=1, emo_audio_prompt=str(p)), None)
    vec = r.info["emotion"]["vector"]
    assert vec["sad"] + vec["melancholic"] > 0.5 and r.info["prosody"]["pitch_st"] < 0


def test_segments_and_interval_silence(engine):
    text = "这是第一句话，内容比较长一些。" * 4 + "这是最后一句话。"
    short = engine.synthesize(SynthesisRequest(text=text, max_text_tokens_per_segment=20, interval_silence=0), None)
    gap = engine.synthesize(SynthesisRequest(text=text, max_text_tokens_per_segment=20, interval_silence=500), None)
    one = engine.synthesize(SynthesisRequest(text=text, max_text_tokens_per_segment=200), None)
    assert one.info["segments"] == 1 and short.info["segments"] >= 4
    assert all(n <= 20 for n in short.info["segment_tokens"])
    extra = gap.duration_s - short.duration_s
    assert extra == pytest.approx(0.5 * (short.info["segments"] - 1), abs=0.02)


def test_random_varies_and_default_is_deterministic(engine):
    req = lambda **k: SynthesisRequest(text="Hello world, nice day.", **k)  # noqa: E731
    a, b = engine.synthesize(req(), None), engine.synthesize(req(), None)
    assert a.info["prosody"] == b.info["prosody"] == emo_neutral()
    assert abs(len(a.audio) - len(b.audio)) < 0.01 * len(a.audio)
    outs = [engine.synthesize(req(use_random=True), None).info["prosody"]["pitch_st"] for _ in range(4)]
    assert len(set(outs)) > 1 and all(abs(p) <= 0.61 for p in outs)


def test_bad_inputs_raise_input_error(engine, tmp_path):
    with pytest.raises(InputError):
        engine.synthesize(SynthesisRequest(text="hi", emo_control_method=2, emo_vector=[float("nan")] + [0.0] * 7), None)
    with pytest.raises(InputError):
        engine.synthesize(SynthesisRequest(text="   "), None)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(InputError, match="Speaker prompt"):
        engine.synthesize(SynthesisRequest(text="hi", spk_audio_prompt=str(bad)), None)
    with pytest.raises(InputError, match="nothing to speak"):
        engine.synthesize(SynthesisRequest(text="!!! ……"), None)


def test_multichannel_96k_speaker_prompt(engine, tmp_path):
    pcm = espeak.synthesize("Hello, this is my voice.", "en", espeak.Prosody(pitch=80), "f3").astype(np.float32) / 32768
    from models.audio_io import resample
    x96 = resample(pcm, SR, 96000)
    p = tmp_path / "mc.wav"
    sf.write(p, np.stack([x96] * 8, 1).astype(np.float32), 96000)
    r = engine.synthesize(SynthesisRequest(text="你好", spk_audio_prompt=str(p)), None)
    assert r.info["speaker_f0_hz"] > 200 and len(r.audio) > 0


class SegmentStages(RecordingStages):
    """Also takes the segment hand-off (StageSink.segment), noting the stages seen before each."""

    def __init__(self):
        super().__init__()
        self.segments = []

    def segment(self, audio, sample_rate):
        assert sample_rate == SR and audio.dtype == np.int16
        self.segments.append((len(self.names), audio.copy()))


def test_each_segment_is_handed_off_before_the_next_is_made(engine):
    """Three sentences above the segment budget: a piece per segment, each handed over right after its
    own voice stage and before the next segment's eSpeak run; joined (the silence between two
    segments travels at the head of the later one) they are exactly the returned clip."""
    rec = SegmentStages()
    text = ("The first sentence is long enough to fill a segment on its own today. "
            "第二句话也足够长，可以自己成为一个分段，对不对呢朋友们。 "
            "The third and last sentence closes the text and ends the clip now.")
    res = engine.synthesize(SynthesisRequest(text=text, max_text_tokens_per_segment=20, interval_silence=200), rec)
    n = len(prepare(text, 20))
    assert n >= 3 and len(rec.segments) == n == res.info["segments"]
    assert [rec.names[at - 1] for at, _ in rec.segments] == ["voice"] * n
    assert rec.names[rec.segments[0][0]:].count("acoustic") == n - 1  # the other segments still to make
    assert np.array_equal(np.concatenate([a for _, a in rec.segments]), res.audio)
    gap = int(SR * 0.2)
    assert not rec.segments[1][1][:gap].any() and rec.segments[0][1][:gap].any()  # silence leads the later one
    # a sink without segment() (written before the hand-off) still gets the whole clip (eSpeak's
    # output differs by up to ~15 ms from run to run: the length is compared, not the samples)
    plain = engine.synthesize(SynthesisRequest(text=text, max_text_tokens_per_segment=20), RecordingStages())
    assert abs(len(plain.audio) - len(res.audio)) < 0.05 * SR
