"""Emotion encoding for the builtin engine: the 8-dim vector in IndexTTS2's order
(models.base.EMOTIONS) from each of the four control modes, and the vector -> prosody table.

Modes (models.base.EMO_MODES):
  0 same_as_speaker: the vector measured from the speaker prompt's prosody (neutral without one)
  1 emotion_audio:   the vector measured from the emotion reference audio's prosody
  2 emotion_vector:  the sliders, normalised like IndexTTS2's webui (sum capped at VECTOR_CAP)
  3 emotion_text:    a zh/en keyword lexicon over emo_text (the synthesis text when empty)

This is a rule-based stand-in for IndexTTS2's emotion encoders (Qwen for text, a conditioner
for audio): honest keyword and prosody rules, not a model.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, asdict

import numpy as np

from models.base import EMOTIONS

VECTOR_CAP = 0.8  # IndexTTS2's webui scales the slider vector down when its sum exceeds 0.8


def normalize_vector(vec) -> list[float]:
    """Clamp each slider to [0, 1]; if the sum exceeds VECTOR_CAP scale all down to it."""
    v = [min(max(float(x), 0.0), 1.0) if math.isfinite(float(x)) else 0.0 for x in vec]
    if len(v) != len(EMOTIONS):
        raise ValueError(f"emotion vector needs {len(EMOTIONS)} values")
    s = sum(v)
    if s > VECTOR_CAP:
        v = [x * VECTOR_CAP / s for x in v]
    return v


def from_sliders(vec) -> list[float]:
    """Mode 2."""
    return normalize_vector(vec)


# Keyword lexicon: lower-case English words (matched as whole words, with simple suffixes) and
# Chinese words (substring match). Index into EMOTIONS.
LEXICON: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "happy": (("happy", "happily", "joy", "joyful", "glad", "cheerful", "delighted", "excited", "great",
               "wonderful", "love", "laugh", "fun", "yay", "smile"),
              ("开心", "高兴", "快乐", "愉快", "喜悦", "兴奋", "欢乐", "太好了", "哈哈", "幸福", "喜欢", "笑")),
    "angry": (("angry", "anger", "furious", "mad", "rage", "annoyed", "outraged", "hate", "damn"),
              ("生气", "愤怒", "气死", "恼火", "发火", "讨厌死", "可恶", "火大", "怒")),
    "sad": (("sad", "sadly", "unhappy", "cry", "crying", "tears", "sorrow", "heartbroken", "upset", "miss"),
            ("伤心", "难过", "悲伤", "哭", "心碎", "痛苦", "不开心", "不高兴", "委屈")),
    "afraid": (("afraid", "scared", "fear", "frightened", "terrified", "nervous", "anxious", "worried", "panic"),
               ("害怕", "恐惧", "担心", "紧张", "吓", "怕", "惊恐", "不安")),
    "disgusted": (("disgusted", "disgusting", "gross", "yuck", "nasty", "sick of", "revolting"),
                  ("恶心", "厌恶", "讨厌", "反感", "嫌弃")),
    "melancholic": (("melancholy", "melancholic", "gloomy", "lonely", "nostalgic", "wistful", "depressed", "blue"),
                    ("忧郁", "惆怅", "孤独", "寂寞", "失落", "沮丧", "怀念", "郁闷", "低落")),
    "surprised": (("surprised", "surprise", "amazing", "wow", "astonished", "unbelievable", "shocked", "incredible"),
                  ("惊讶", "吃惊", "没想到", "竟然", "居然", "天哪", "哇", "震惊", "不敢相信")),
    "calm": (("calm", "calmly", "peaceful", "relaxed", "quiet", "gentle", "serene", "neutral", "steady"),
             ("平静", "冷静", "安静", "淡定", "温柔", "放松", "平和", "平稳")),
}
# A negated happy word reads as sad ("not happy", "不开心" is listed under sad directly).
_EN_NEGATION = re.compile(r"\b(?:not|never|no longer|isn't|wasn't|don't|doesn't|am not) (?:very )?$")
# The negation is looked for only in this many characters before a match (whitespace runs are
# folded to one space first, so the longest negation, "doesn't very ", fits): the check costs the
# same for every match, and from_text stays linear in the length of the text. Searching the whole
# prefix instead made it quadratic (80 KB of emotion text took 9 s).
_NEGATION_REACH = 24


def from_text(text: str) -> list[float]:
    """Mode 3: count lexicon hits per emotion (longest Chinese words first, so 不开心 is not
    also counted as 开心); vector = hits / max hits, then normalised. No hit: calm = 1 (the
    neutral reading), normalised to the cap. Linear in len(text): a fixed number of passes (one
    per lexicon word) and a bounded look-back per match."""
    hits = np.zeros(len(EMOTIONS))
    s = re.sub(r"\s+", " ", (text or "").lower())
    zh_words = sorted(((w, i) for i, e in enumerate(EMOTIONS) for w in LEXICON[e][1]), key=lambda t: -len(t[0]))
    for w, i in zh_words:
        n = s.count(w)
        if n:
            hits[i] += n
            s = s.replace(w, " ")
    for i, e in enumerate(EMOTIONS):
        for w in LEXICON[e][0]:
            for m in re.finditer(rf"\b{re.escape(w)}(?:s|ed|ly|ness)?\b", s):
                if e == "happy" and _EN_NEGATION.search(s, max(0, m.start() - _NEGATION_REACH), m.start()):
                    hits[EMOTIONS.index("sad")] += 1
                else:
                    hits[i] += 1
    if hits.sum() == 0:
        hits[EMOTIONS.index("calm")] = 1.0
    return normalize_vector(list(hits / hits.max()))


@dataclass
class ProsodyFeatures:
    """What mode 0/1 read from a reference clip (see models.audio_io for the definitions)."""
    f0_median_hz: float  # NaN when unvoiced
    f0_spread_st: float  # robust std of voiced F0 in semitones: (p90 - p10) / 2.56
    level_db: float  # RMS dBFS of the active frames
    rate_sps: float  # syllable-like peaks per second of active speech

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else round(v, 3))
                for k, v in asdict(self).items()}


def prosody_features(audio: np.ndarray, sr: int) -> ProsodyFeatures:
    from models.audio_io import f0_track, speaking_rate

    f0 = f0_track(audio, sr)
    v = f0[np.isfinite(f0)]
    med = float(np.median(v)) if len(v) >= 5 else float("nan")
    st = 12 * np.log2(v / med) if len(v) >= 5 else np.zeros(1)
    spread = float(np.percentile(st, 90) - np.percentile(st, 10)) / 2.56
    x = np.asarray(audio, dtype=np.float64)
    hop = max(1, int(sr * 0.01))
    fr = x[: len(x) // hop * hop].reshape(-1, hop)
    e = np.sqrt(np.mean(fr ** 2, axis=1)) if len(fr) else np.zeros(1)
    active = e[e > e.max() * 10 ** (-35 / 20)] if e.max() > 0 else e
    level = 20 * math.log10(max(float(np.sqrt(np.mean(active ** 2))), 1e-6))
    return ProsodyFeatures(med, spread, level, speaking_rate(audio, sr))


# Neutral read speech, the reference point of from_prosody (eSpeak's default voice is close).
# Scales: how far from neutral counts as one unit of arousal. Level gets a wide scale because
# recording gain says little about emotion.
NEUTRAL_SPREAD_ST, SPREAD_SCALE_ST = 1.5, 0.6
NEUTRAL_RATE_SPS, RATE_SCALE_SPS = 4.5, 1.5  # en read speech ~5.5, zh ~3.6 peaks/s here
NEUTRAL_LEVEL_DB, LEVEL_SCALE_DB = -19.0, 8.0


def from_prosody(feat: ProsodyFeatures, speaker_f0_hz: float | None = None) -> list[float]:
    """Modes 0/1: arousal from pitch spread, level and rate (each as a z-like score against
    neutral read speech), pitch height against the speaker's F0 when known. High arousal with
    high pitch -> happy/surprised; high arousal with low pitch or loud -> angry; low arousal
    with slow rate -> sad/melancholic; near neutral -> calm."""
    spread = (feat.f0_spread_st - NEUTRAL_SPREAD_ST) / SPREAD_SCALE_ST
    rate = (feat.rate_sps - NEUTRAL_RATE_SPS) / RATE_SCALE_SPS
    level = (feat.level_db - NEUTRAL_LEVEL_DB) / LEVEL_SCALE_DB
    arousal = float(np.clip((spread + rate + level) / 3.0, -1.5, 1.5))
    height = 0.0
    if speaker_f0_hz and math.isfinite(feat.f0_median_hz) and math.isfinite(speaker_f0_hz) and speaker_f0_hz > 0:
        height = float(np.clip(12 * math.log2(feat.f0_median_hz / speaker_f0_hz) / 3.0, -1.5, 1.5))
    v = dict.fromkeys(EMOTIONS, 0.0)
    if arousal > 0.2:
        a = min(arousal, 1.0)
        if height >= 0 or spread > level:
            v["happy"] = a * 0.7
            v["surprised"] = a * 0.3 * max(0.0, height)
        else:
            v["angry"] = a * 0.8
    elif arousal < -0.2:
        a = min(-arousal, 1.0)
        v["sad"] = a * 0.6
        v["melancholic"] = a * 0.4
    v["calm"] = max(0.0, 1.0 - abs(arousal) * 2) * 0.5
    return normalize_vector([v[e] for e in EMOTIONS])


# ---------------------------------------------------------------- vector -> prosody
# Per-emotion prosody at full strength (vector component 1, emo_alpha 1):
#   pitch_st: F0 shift in semitones (applied by the voice stage)
#   range_x:  pitch-range factor (eSpeak "range", 50 = voice default)
#   rate_x:   speaking-rate factor (eSpeak words per minute)
#   volume_x: loudness factor (output RMS)
#   tilt_db:  spectral tilt in dB per octave above 1 kHz (voice stage: + brighter, - darker)
PROSODY_TABLE: dict[str, dict[str, float]] = {
    #               pitch_st range_x rate_x volume_x tilt_db
    "happy":       dict(pitch_st=+4.0, range_x=1.8, rate_x=1.15, volume_x=1.15, tilt_db=+2.0),
    "angry":       dict(pitch_st=+1.5, range_x=1.6, rate_x=1.20, volume_x=1.50, tilt_db=+3.0),
    "sad":         dict(pitch_st=-3.0, range_x=0.5, rate_x=0.75, volume_x=0.75, tilt_db=-3.0),
    "afraid":      dict(pitch_st=+3.5, range_x=1.4, rate_x=1.25, volume_x=0.85, tilt_db=-1.0),
    "disgusted":   dict(pitch_st=-1.5, range_x=0.9, rate_x=0.85, volume_x=1.00, tilt_db=-1.0),
    "melancholic": dict(pitch_st=-2.5, range_x=0.6, rate_x=0.80, volume_x=0.80, tilt_db=-2.0),
    "surprised":   dict(pitch_st=+5.0, range_x=2.0, rate_x=1.05, volume_x=1.15, tilt_db=+1.5),
    "calm":        dict(pitch_st=-0.5, range_x=0.8, rate_x=0.92, volume_x=0.95, tilt_db=-0.5),
}


@dataclass
class EmotionProsody:
    """Prosody the acoustic and voice stages apply. Additive quantities (pitch_st, tilt_db) are
    alpha * sum_i v_i * table_i; factors are exp(alpha * sum_i v_i * ln table_i), so a zero vector
    or alpha = 0 gives exactly neutral (0, 1, 1, 1, 0)."""
    pitch_st: float = 0.0
    range_x: float = 1.0
    rate_x: float = 1.0
    volume_x: float = 1.0
    tilt_db: float = 0.0

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def to_prosody(vec, alpha: float) -> EmotionProsody:
    a = min(max(float(alpha), 0.0), 1.0)
    v = normalize_vector(vec)
    out = {}
    for key in ("pitch_st", "tilt_db"):
        out[key] = a * sum(w * PROSODY_TABLE[e][key] for w, e in zip(v, EMOTIONS))
    for key in ("range_x", "rate_x", "volume_x"):
        out[key] = math.exp(a * sum(w * math.log(PROSODY_TABLE[e][key]) for w, e in zip(v, EMOTIONS)))
    return EmotionProsody(**out)
