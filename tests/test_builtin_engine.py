"""The builtin engine end to end: real eSpeak NG, real torch voice stage, real files."""
import numpy as np
import pytest
import soundfile as sf

from models import espeak
from models.audio_io import median_f0, speaking_rate
from models.base import EMOTIONS, InputError, SynthesisRequest
from models.builtin import BuiltinEngine

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
