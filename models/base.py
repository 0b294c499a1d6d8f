"""The one interface every speech engine implements.

Fields mirror IndexTTS2 v2.0.0's webui/infer() so that the real model, the builtin DSP engine and
the load replica are interchangeable behind the service (see ARCHITECTURE.md).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, asdict
from typing import ContextManager, Protocol

import numpy as np

from models.limits import MAX_EMO_TEXT_CHARS, MAX_TEXT_CHARS  # noqa: F401 (re-exported)

SAMPLE_RATE = 22050  # IndexTTS2 writes 22050 Hz int16

# IndexTTS2's emotion-vector order (webui sliders vec1..vec8).
EMOTIONS = ("happy", "angry", "sad", "afraid", "disgusted", "melancholic", "surprised", "calm")

# Emotion control modes, as IndexTTS2's radio (index = value).
EMO_MODES = ("same_as_speaker", "emotion_audio", "emotion_vector", "emotion_text")

# IndexTTS-2.5's language dropdown (upstream webui.py, main); infer() lower-cases the code.
LANGUAGES_25 = ("ZH", "EN", "JA", "AR", "ES")
DURATION_FACTOR_RANGE = (0.5, 2.0)  # IndexTTS-2.5's duration slider (1.0 = unchanged, > 1 slower)

DEFAULT_GENERATION = {
    "do_sample": True,
    "top_p": 0.8,
    "top_k": 30,
    "temperature": 0.8,
    "length_penalty": 0.0,
    "num_beams": 3,
    "repetition_penalty": 10.0,
    "max_mel_tokens": 1500,
}


class InputError(ValueError):
    """Bad user input; the message is shown to the user as is."""


def drop_surrogates(s: str) -> str:
    """`s` without lone UTF-16 surrogates (U+D800..U+DFFF). JSON lets a client send them, but they
    cannot be encoded as UTF-8: kept in a clip's record they broke every later page load that
    lists it (the History rows), so they are removed where text enters."""
    if not any("\ud800" <= c <= "\udfff" for c in s):
        return s
    return "".join(c for c in s if not "\ud800" <= c <= "\udfff")


@dataclass
class SynthesisRequest:
    text: str
    spk_audio_prompt: str | None = None  # path to the speaker (voice) reference audio
    emo_control_method: int = 0  # index into EMO_MODES
    emo_audio_prompt: str | None = None
    emo_alpha: float = 0.65  # "emotion weight" in the UI, 0..1
    emo_vector: list[float] = field(default_factory=lambda: [0.0] * 8)
    emo_text: str | None = None
    use_random: bool = False
    max_text_tokens_per_segment: int = 120
    interval_silence: int = 200  # ms between segments
    generation: dict = field(default_factory=lambda: dict(DEFAULT_GENERATION))
    # IndexTTS-2.5 only (optional on the API; engines without them ignore them): the language
    # code (None: the engine's default, ZH as upstream) and the duration factor.
    lang: str | None = None
    duration_factor: float = 1.0

    def validate(self) -> "SynthesisRequest":
        """Raise InputError for anything an engine must not be handed. Returns self."""
        if not isinstance(self.text, str):
            raise InputError("Text must be a string.")
        self.text = drop_surrogates(self.text)
        if isinstance(self.emo_text, str):
            self.emo_text = drop_surrogates(self.emo_text)
        if not self.text.strip():
            raise InputError("Text is empty: type something to synthesize.")
        if len(self.text) > MAX_TEXT_CHARS:
            raise InputError(
                f"Text is {len(self.text)} characters; the limit is {MAX_TEXT_CHARS}. Split it into several requests."
            )
        if self.emo_text is not None and not isinstance(self.emo_text, str):
            raise InputError("Emotion description must be a string.")
        if self.emo_text is not None and len(self.emo_text) > MAX_EMO_TEXT_CHARS:
            # checked in every mode: mode 0 ignores it, but the request is stored with the clip
            raise InputError(f"Emotion description is {len(self.emo_text)} characters; the limit is "
                             f"{MAX_EMO_TEXT_CHARS}. Describe the emotion in a sentence.")
        if isinstance(self.emo_control_method, bool) or not isinstance(self.emo_control_method, int) \
                or not 0 <= self.emo_control_method < len(EMO_MODES):
            raise InputError(
                f"Unknown emotion control mode {self.emo_control_method!r}; use 0..3 ({', '.join(EMO_MODES)})."
            )
        _check_unit("Emotion weight", self.emo_alpha)
        vec = list(self.emo_vector or [])
        if len(vec) != len(EMOTIONS):
            raise InputError(f"Emotion vector needs {len(EMOTIONS)} values ({', '.join(EMOTIONS)}), got {len(vec)}.")
        for name, v in zip(EMOTIONS, vec):
            _check_unit(f"Emotion '{name}'", v)
        if self.emo_control_method == 1 and not self.emo_audio_prompt:
            raise InputError("Emotion mode 'emotion reference audio' needs an emotion reference audio file.")
        if self.emo_control_method == 3 and not (self.emo_text or "").strip() and not self.text.strip():
            raise InputError("Emotion mode 'text description' needs an emotion description.")
        t = self.max_text_tokens_per_segment
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 20 <= t <= 600:
            raise InputError("Max tokens per segment must be between 20 and 600.")
        self.max_text_tokens_per_segment = int(t)
        if self.lang is not None:
            if not isinstance(self.lang, str) or self.lang.strip().upper() not in LANGUAGES_25:
                raise InputError(f"Unknown language {self.lang!r}; use one of {', '.join(LANGUAGES_25)}.")
            self.lang = self.lang.strip().upper()
        lo, hi = DURATION_FACTOR_RANGE
        d = self.duration_factor
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or not lo <= d <= hi:
            raise InputError(f"Duration factor must be between {lo} and {hi}, got {d!r}.")
        self.duration_factor = float(d)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def _check_unit(what: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{what} must be a number between 0 and 1, got {v!r}.")
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise InputError(f"{what} must be between 0 and 1, got {v!r}.")


@dataclass
class SynthesisResult:
    audio: np.ndarray  # int16, mono
    sample_rate: int = SAMPLE_RATE
    info: dict = field(default_factory=dict)  # engine facts worth recording with the clip

    @property
    def duration_s(self) -> float:
        return len(self.audio) / float(self.sample_rate)


class StageSink(Protocol):
    """Receives pipeline stage boundaries (trace markers, progress bar) and the audio segment by
    segment as it is made (`segment`: the streaming hand-off, see docs/streaming.md)."""

    def stage(self, name: str) -> ContextManager[None]: ...

    def segment(self, audio: np.ndarray, sample_rate: int) -> None:
        """The next piece of the clip, int16 mono, in order: the silence that upstream puts
        between two segments travels at the head of the later one, so the pieces joined are the
        clip SynthesisResult.audio holds. Called on the synthesis thread the moment the piece
        exists; it must return at once (the sink hands it over, never processes it there)."""
        ...


class NullStages:
    """A StageSink that records nothing (engine used outside a request)."""

    def stage(self, name: str) -> ContextManager[None]:
        return contextlib.nullcontext()

    def segment(self, audio: np.ndarray, sample_rate: int) -> None:
        pass


def hand_off(stages: StageSink, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """stages.segment(audio) as int16, for sinks that take segments (a sink written before the
    hand-off existed only has stage(): it gets the whole clip at the end, as before)."""
    fn = getattr(stages, "segment", None)
    if fn is not None and len(audio):
        fn(np.ascontiguousarray(audio, dtype=np.int16), sample_rate)


class Engine(Protocol):
    name: str  # "builtin" | "indextts2" | "indextts25" | "replica"
    label: str  # what the UI shows, honest about what it is
    sample_rate: int
    stages: tuple[str, ...]  # stage names in pipeline order (for the progress bar)

    def synthesize(self, req: SynthesisRequest, stages: StageSink) -> SynthesisResult: ...
