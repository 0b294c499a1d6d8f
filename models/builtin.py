"""The builtin engine: an honest DSP pipeline (eSpeak NG + a PyTorch voice stage), not a neural
model. It needs nothing beyond the pip requirements and speaks Chinese and English.

Stages (marked through the StageSink, in order):
  text     models.text.prepare: normalisation, numbers, segmentation, language runs
  emotion  load prompts (models.audio_io), 8-dim vector (models.emotion) -> EmotionProsody
  acoustic eSpeak NG per language run; rate/range from the emotion, base pitch and voice variant
           chosen so the eSpeak output is already near the target F0
  voice    models.voice.VoiceStage per segment: residual pitch shift to the target F0, EQ toward
           the speaker prompt's spectrum, emotion tilt, loudness; segments joined with silence
acoustic and voice run segment by segment, and each segment's audio is handed to the sink as soon
as it exists (StageSink.segment): the first sound waits for the first segment only.

Target F0 = speaker prompt median F0 (or the default voice's F0 without a prompt) times
2^(emotion pitch_st / 12).
"""
from __future__ import annotations

import math
import threading
from typing import Iterator

import numpy as np

from models import emotion as emo
from models import espeak
from models.audio_io import load_audio, median_f0
from models.base import (EMO_MODES, SAMPLE_RATE, InputError, NullStages, StageSink, SynthesisRequest, SynthesisResult,
                         hand_off)
from models.text import prepare
from models.voice import VoiceStage

BASE_RATE_WPM = {"en": 160, "zh": 150}  # eSpeak words-per-minute at neutral emotion
FEMALE_VARIANT = "f3"
FEMALE_ABOVE_HZ = 160.0  # speaker prompts above this median F0 use eSpeak's female variant
RUN_PAD_S = 0.03  # silence kept at the edges of each language run when runs are joined
_CAL_TEXT = {"en": "This is a calibration sentence for the voice.", "zh": "这是一个用于校准声音的句子。"}
_CAL_PITCHES = (0, 25, 50, 75, 99)


class BuiltinEngine:
    name = "builtin"
    label = "Builtin DSP engine (eSpeak NG + PyTorch voice stage) — not a neural model"
    sample_rate = SAMPLE_RATE
    stages = ("text", "emotion", "acoustic", "voice")

    def __init__(self, seed: int | None = None):
        """`seed` only matters for requests with use_random (None: fresh randomness each time)."""
        if espeak.sample_rate() != SAMPLE_RATE:  # the shipped voices are 22050 Hz; resampling is not wired
            raise RuntimeError(f"eSpeak NG runs at {espeak.sample_rate()} Hz, expected {SAMPLE_RATE}")
        self.voice = VoiceStage(SAMPLE_RATE)
        self._seed = seed
        self._cal: dict[tuple[str, str | None], tuple[np.ndarray, np.ndarray]] = {}
        self._cal_lock = threading.Lock()
        self.selection_note = ""

    # ------------------------------------------------------------ pitch calibration
    def _calibration(self, lang: str, variant: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(eSpeak pitch parameters, measured log2 F0) for lang/variant, measured once."""
        key = (lang, variant)
        with self._cal_lock:
            if key not in self._cal:
                logf = []
                for p in _CAL_PITCHES:
                    a = espeak.synthesize(_CAL_TEXT[lang], lang, espeak.Prosody(pitch=p), variant)
                    logf.append(math.log2(median_f0(a.astype(np.float32) / 32768, SAMPLE_RATE)))
                # keep it monotonic so the inverse is well defined
                self._cal[key] = (np.array(_CAL_PITCHES, float), np.maximum.accumulate(np.array(logf)))
            return self._cal[key]

    def natural_f0(self, lang: str, variant: str | None = None) -> float:
        """F0 of eSpeak's voice at its default pitch (50)."""
        p, lf = self._calibration(lang, variant)
        return float(2 ** np.interp(50, p, lf))

    def pitch_param_for(self, lang: str, variant: str | None, f0_hz: float) -> int:
        """eSpeak pitch parameter whose output F0 is closest to f0_hz (clamped to 0..99)."""
        p, lf = self._calibration(lang, variant)
        return int(round(float(np.interp(math.log2(f0_hz), lf, p))))

    # ------------------------------------------------------------ stages
    def _emotion(self, req: SynthesisRequest, spk: np.ndarray | None, spk_f0: float | None):
        mode = EMO_MODES[req.emo_control_method]
        info: dict = {"mode": mode}
        if mode == "emotion_vector":
            vec = emo.from_sliders(req.emo_vector)
        elif mode == "emotion_text":
            src = (req.emo_text or "").strip() or req.text
            info["text_source"] = "emo_text" if (req.emo_text or "").strip() else "synthesis text"
            vec = emo.from_text(src)
        elif mode == "emotion_audio":
            ref = load_audio(req.emo_audio_prompt, "Emotion reference audio")
            feat = emo.prosody_features(ref, SAMPLE_RATE)
            info["features"] = feat.to_dict()
            vec = emo.from_prosody(feat, spk_f0)
        else:  # same_as_speaker
            if spk is None:
                vec = [0.0] * len(emo.EMOTIONS)
            else:
                feat = emo.prosody_features(spk, SAMPLE_RATE)
                info["features"] = feat.to_dict()
                vec = emo.from_prosody(feat, None)
        return vec, info

    def synthesize(self, req: SynthesisRequest, stages: StageSink | None = None) -> SynthesisResult:
        """The whole clip; each segment is handed to `stages.segment` as soon as its voice stage
        is done (the acoustic and voice stages run per segment, so the first sound does not wait
        for the last segment's eSpeak run)."""
        stages = stages or NullStages()
        pieces, info = [], {}
        for piece in self.stream(req, stages, info):
            hand_off(stages, piece)
            pieces.append(piece)
        return SynthesisResult(np.concatenate(pieces) if pieces else np.zeros(0, np.int16), SAMPLE_RATE, info)

    def stream(self, req: SynthesisRequest, stages: StageSink, info: dict) -> Iterator[np.ndarray]:
        """The clip as int16 pieces, one per text segment (the silence between segments at the
        head of the later one); `info` is filled in as the segments are made (complete at the end)."""
        req.validate()
        rng = np.random.default_rng(self._seed) if req.use_random else None

        with stages.stage("text"):
            segments = prepare(req.text, req.max_text_tokens_per_segment)
            if not segments:
                raise InputError("The text has nothing to speak (only punctuation or symbols).")

        with stages.stage("emotion"):
            spk = load_audio(req.spk_audio_prompt, "Speaker prompt") if req.spk_audio_prompt else None
            spk_f0 = median_f0(spk, SAMPLE_RATE) if spk is not None else None
            if spk_f0 is not None and not math.isfinite(spk_f0):
                raise InputError("Speaker prompt: no voiced speech found (no pitch); use a clip of someone talking.")
            vec, emo_info = self._emotion(req, spk, spk_f0)
            pros = emo.to_prosody(vec, req.emo_alpha)
            if rng is not None:  # small, bounded variation: +-0.6 st pitch, ~4% rate/range
                pros.pitch_st += float(np.clip(rng.normal(0, 0.3), -0.6, 0.6))
                pros.rate_x *= float(np.exp(np.clip(rng.normal(0, 0.03), -0.06, 0.06)))
                pros.range_x *= float(np.exp(np.clip(rng.normal(0, 0.08), -0.15, 0.15)))
            profile = self.voice.profile(spk) if spk is not None else None

        variant = FEMALE_VARIANT if spk_f0 is not None and spk_f0 > FEMALE_ABOVE_HZ else None
        shift = 2 ** (pros.pitch_st / 12)
        gap = np.zeros(int(SAMPLE_RATE * req.interval_silence / 1000), np.float32)
        targets, seg_facts = [], []
        info.update({
            "engine": self.name,
            "segments": len(segments),
            "segment_tokens": [s.n_tokens for s in segments],
            "language_runs": [[list(r) for r in s.runs] for s in segments],
            "emotion": {**emo_info, "vector": dict(zip(emo.EMOTIONS, [round(v, 4) for v in vec])),
                        "alpha": req.emo_alpha},
            "prosody": pros.to_dict(),
            "voice_variant": variant or "default",
            "speaker_f0_hz": None if spk_f0 is None else round(spk_f0, 1),
            "target_f0_hz": targets,
            "voice": seg_facts,
            "random": bool(req.use_random),
        })
        for i, seg in enumerate(segments):
            with stages.stage("acoustic"):
                dom = max(seg.runs, key=lambda r: len(r[1]))[0]
                base_f0 = spk_f0 if spk_f0 is not None else self.natural_f0(dom, variant)
                target = base_f0 * shift
                parts = []
                for lang, txt in seg.runs:
                    p = espeak.Prosody(rate=BASE_RATE_WPM[lang] * pros.rate_x,
                                       pitch=self.pitch_param_for(lang, variant, target),
                                       range=50 * pros.range_x, volume=100)
                    pcm = espeak.synthesize(txt, lang, p, variant)
                    parts.append(_trim(pcm.astype(np.float32) / 32768.0, RUN_PAD_S))
                raw = np.concatenate(parts) if parts else np.zeros(0, np.float32)
                targets.append(round(target, 1))
            with stages.stage("voice"):
                y, facts = self.voice.apply(raw, target, profile, tilt_db=pros.tilt_db, volume_x=pros.volume_x)
                seg_facts.append(facts)
                audio = np.concatenate([gap, y]) if i else y
                yield np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)

    def warmup(self) -> None:
        """One short zh and en synthesis: loads eSpeak, its dictionaries, the pitch calibration
        and torch's FFT plans so the first user request is not the slow one."""
        for lang in ("en", "zh"):
            for variant in (None, FEMALE_VARIANT):
                self._calibration(lang, variant)
        self.synthesize(SynthesisRequest(text="你好, hello."), NullStages())


def _trim(x: np.ndarray, pad_s: float) -> np.ndarray:
    """Drop leading/trailing near-silence (below -50 dB of the peak), keeping pad_s each side."""
    if len(x) == 0:
        return x
    thr = np.abs(x).max() * 10 ** (-50 / 20)
    idx = np.nonzero(np.abs(x) > thr)[0]
    if len(idx) == 0:
        return x[:0]
    pad = int(pad_s * SAMPLE_RATE)
    return x[max(0, idx[0] - pad): idx[-1] + 1 + pad]
