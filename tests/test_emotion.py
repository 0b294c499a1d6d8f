"""Emotion encoding: sliders, text lexicon, prosody of reference audio, and the prosody table."""
import numpy as np
import pytest

from models import emotion as emo
from models import espeak
from models.base import EMOTIONS

SR = 22050


def idx(name):
    return EMOTIONS.index(name)


def test_sliders_capped_like_indextts2():
    v = emo.from_sliders([1, 1, 0, 0, 0, 0, 0, 0])
    assert sum(v) == pytest.approx(emo.VECTOR_CAP)
    assert v[0] == pytest.approx(v[1])
    small = [0.1, 0, 0.2, 0, 0, 0, 0, 0.3]
    assert emo.from_sliders(small) == pytest.approx(small)  # under the cap: unchanged


@pytest.mark.parametrize("text,expected", [
    ("I am so happy today", "happy"), ("今天真开心，太高兴了", "happy"),
    ("He was furious and angry", "angry"), ("我很生气", "angry"),
    ("She felt sad and cried", "sad"), ("我很难过，很伤心", "sad"), ("我不开心", "sad"), ("I am not happy", "sad"),
    ("I'm scared", "afraid"), ("我好害怕", "afraid"),
    ("That is disgusting", "disgusted"), ("真恶心", "disgusted"),
    ("a lonely gloomy evening", "melancholic"), ("心里很惆怅", "melancholic"),
    ("Wow, what a surprise", "surprised"), ("真没想到，太惊讶了", "surprised"),
    ("speak calmly", "calm"), ("请平静地说", "calm"),
])
def test_text_lexicon_zh_and_en(text, expected):
    v = emo.from_text(text)
    assert int(np.argmax(v)) == idx(expected), (text, v)


def test_text_without_keywords_is_calm():
    v = emo.from_text("The train leaves at noon.")
    assert int(np.argmax(v)) == idx("calm") and sum(v) <= emo.VECTOR_CAP + 1e-9


def _speech(prosody, lang="en"):
    text = {"en": "I cannot believe we finally made it here today, this is the best day of my life.",
            "zh": "我真不敢相信我们今天终于到了这里，这是我一生中最好的一天。"}[lang]
    return espeak.synthesize(text, lang, prosody).astype(np.float32) / 32768


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_prosody_of_reference_audio(lang):
    lively = emo.from_prosody(emo.prosody_features(_speech(espeak.Prosody(rate=230, pitch=75, range=99, volume=150), lang), SR))
    flat = emo.from_prosody(emo.prosody_features(_speech(espeak.Prosody(rate=110, pitch=30, range=5, volume=60), lang), SR))
    neutral = emo.from_prosody(emo.prosody_features(_speech(espeak.Prosody(), lang), SR))
    assert int(np.argmax(lively)) in (idx("happy"), idx("surprised"), idx("angry"))
    assert int(np.argmax(flat)) in (idx("sad"), idx("melancholic"))
    assert int(np.argmax(neutral)) == idx("calm")


def test_prosody_table_directions():
    neutral = emo.to_prosody([0] * 8, 1.0)
    assert (neutral.pitch_st, neutral.range_x, neutral.rate_x, neutral.volume_x, neutral.tilt_db) == (0, 1, 1, 1, 0)
    happy = emo.to_prosody([1, 0, 0, 0, 0, 0, 0, 0], 1.0)
    angry = emo.to_prosody([0, 1, 0, 0, 0, 0, 0, 0], 1.0)
    sad = emo.to_prosody([0, 0, 1, 0, 0, 0, 0, 0], 1.0)
    assert happy.pitch_st > 1 > -1 > sad.pitch_st
    assert happy.rate_x > 1 > sad.rate_x and angry.rate_x > 1
    assert angry.volume_x > happy.volume_x > 1 > sad.volume_x
    assert sad.range_x < 1 < happy.range_x


def test_alpha_scales_effect():
    v = [0, 0, 1, 0, 0, 0, 0, 0]
    assert emo.to_prosody(v, 0.0) == emo.to_prosody([0] * 8, 1.0)
    half, full = emo.to_prosody(v, 0.5), emo.to_prosody(v, 1.0)
    assert full.pitch_st == pytest.approx(2 * half.pitch_st)
    assert full.rate_x == pytest.approx(half.rate_x ** 2)
