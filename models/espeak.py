"""eSpeak NG through ctypes, from the library and data shipped in the `espeakng-loader` wheel.

No apt package and no subprocess: the wheel's libespeak-ng.so is loaded in-process and run in
synchronous mode (AUDIO_OUTPUT_SYNCHRONOUS) with a synth callback that collects the int16
samples, so `synthesize()` returns audio and never touches a sound device.

eSpeak NG keeps global state (one voice, one parameter set, one callback), and is not
thread-safe: every call goes through `_LOCK`, and voice/parameters are set inside the same
locked section as the synthesis they apply to.
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

# espeak_AUDIO_OUTPUT
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_Initialize options: return an error code instead of calling exit() on failure.
_INITIALIZE_DONT_EXIT = 0x8000
# espeak_PARAMETER
_RATE, _VOLUME, _PITCH, _RANGE, _PUNCTUATION, _CAPITALS, _WORDGAP = 1, 2, 3, 4, 5, 6, 7
# espeak_POSITION_TYPE / flags
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

VOICES = {"en": "en", "zh": "cmn"}  # our language code -> eSpeak NG voice name

# eSpeak's own limits for the parameters we set (see speak_lib.h).
RATE_RANGE = (80, 450)  # words per minute
PITCH_RANGE = (0, 99)  # base pitch, 50 = voice default
RANGE_RANGE = (0, 99)  # pitch range, 50 = voice default
VOLUME_RANGE = (0, 200)  # 100 = normal


class EspeakError(RuntimeError):
    """The eSpeak NG library could not be loaded or refused a call."""


@dataclass(frozen=True)
class Prosody:
    """eSpeak NG parameters for one synthesis, in eSpeak's units (clamped to its ranges)."""
    rate: int = 165
    pitch: int = 50
    range: int = 50
    volume: int = 100
    wordgap: int = 0  # extra pause between words, in units of 10 ms at normal speed

    def clamped(self) -> "Prosody":
        c = lambda v, lo_hi: int(min(max(round(v), lo_hi[0]), lo_hi[1]))  # noqa: E731
        return Prosody(c(self.rate, RATE_RANGE), c(self.pitch, PITCH_RANGE), c(self.range, RANGE_RANGE),
                       c(self.volume, VOLUME_RANGE), max(0, int(self.wordgap)))


_CALLBACK_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_LOCK = threading.Lock()
_state: dict = {}  # lib, sample_rate, callback (kept alive), chunks (list being filled)


def _load() -> dict:
    """Load and initialise the library once (caller holds _LOCK)."""
    if _state:
        return _state
    try:
        import espeakng_loader
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = espeakng_loader.get_data_path()
    except (ImportError, OSError, RuntimeError) as e:
        raise EspeakError(f"eSpeak NG library from espeakng-loader could not be loaded: {e}") from e
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_T]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
    lib.espeak_Synchronize.restype = ctypes.c_int
    # eSpeak NG draws random numbers (noise sources); we seed them before each synthesis. It
    # also keeps internal state across calls (measured: repeated identical calls differ by a
    # few dozen samples even after re-initialisation), so output is not bit-exact repeatable.
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    # buflength 0 = default buffer; path = the espeak-ng-data directory inside the wheel.
    sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT)
    if sr <= 0:
        raise EspeakError(f"espeak_Initialize failed (returned {sr}) with data at {data_path}")
    chunks: list[np.ndarray] = []

    def on_samples(wav, n, _events):
        if wav and n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue synthesis

    cb = _CALLBACK_T(on_samples)
    lib.espeak_SetSynthCallback(cb)
    _state.update(lib=lib, sample_rate=sr, callback=cb, chunks=chunks, voice=None)
    return _state


def sample_rate() -> int:
    """eSpeak NG's native output rate (22050 Hz for the shipped voices)."""
    with _LOCK:
        return _load()["sample_rate"]


VARIANTS = ("m1", "m3", "f2", "f3", "f4")  # eSpeak NG voice variants (voices/!v) we pick from


def synthesize(text: str, lang: str = "en", prosody: Prosody | None = None, variant: str | None = None,
               seed: int = 1) -> np.ndarray:
    """Speak `text` in `lang` ("en" or "zh") and return int16 mono samples at `sample_rate()`.

    `variant` selects an eSpeak voice variant (e.g. "f3": female formants and pitch); None is
    the language's default (male) voice. `seed` seeds eSpeak's random generator; repeated
    identical calls can still differ by a few samples (library state carried between calls).

    Raises EspeakError when the library refuses the voice or the text.
    """
    if lang not in VOICES:
        raise ValueError(f"unsupported language {lang!r}; use one of {sorted(VOICES)}")
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown voice variant {variant!r}; use one of {VARIANTS}")
    voice = VOICES[lang] + (f"+{variant}" if variant else "")
    p = (prosody or Prosody()).clamped()
    data = text.encode("utf-8") + b"\0"
    with _LOCK:
        st = _load()
        lib = st["lib"]
        if st["voice"] != voice:
            err = lib.espeak_SetVoiceByName(voice.encode())
            if err != _EE_OK:
                st["voice"] = None
                raise EspeakError(f"eSpeak NG has no voice {voice!r} (error {err})")
            st["voice"] = voice
        # Voice selection resets parameters, so set all of them on every call.
        for param, value in ((_RATE, p.rate), (_PITCH, p.pitch), (_RANGE, p.range),
                             (_VOLUME, p.volume), (_WORDGAP, p.wordgap)):
            lib.espeak_SetParameter(param, value, 0)
        st["chunks"].clear()
        lib.espeak_ng_SetRandSeed(int(seed))
        buf = ctypes.create_string_buffer(data)
        err = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != _EE_OK:
            raise EspeakError(f"espeak_Synth failed (error {err})")
        lib.espeak_Synchronize()
        out = np.concatenate(st["chunks"]) if st["chunks"] else np.zeros(0, np.int16)
        st["chunks"].clear()
    return out.astype(np.int16, copy=False)
