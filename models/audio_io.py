"""Prompt audio loading and the two prosody measurements the builtin engine relies on.

`load_audio` turns any file soundfile can read into float32 mono at 22050 Hz, or raises
InputError with a sentence the user can act on. `f0_track` and `speaking_rate` are pure numpy
(no I/O) and are used by emotion mode 1, the voice stage and the tests.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np

from models.base import SAMPLE_RATE, InputError

from models.limits import (MAX_AUDIO_CHANNELS, MAX_AUDIO_RATE_HZ, MAX_DECODED_SAMPLES, MAX_PROMPT_S,
                           MIN_AUDIO_RATE_HZ)
SILENCE_RMS = 1e-3  # below -60 dBFS RMS a prompt carries no voice to imitate


def load_audio(path: str, what: str = "Audio prompt", target_sr: int = SAMPLE_RATE,
               max_s: float = MAX_PROMPT_S) -> np.ndarray:
    """Read `path`, downmix to mono, resample to `target_sr`; float32 in [-1, 1].

    Raises InputError (naming `what`) when the file is missing, not audio, empty, longer than
    `max_s`, contains NaN/inf, or is silent (RMS < SILENCE_RMS). What decoding will cost is
    checked from the header first (models.limits): sample rate within MIN/MAX_AUDIO_RATE_HZ,
    at most MAX_AUDIO_CHANNELS, channels x frames at most MAX_DECODED_SAMPLES; decoding then
    reads no more frames than the header announced, so a lying header cannot grow the buffer.
    """
    import soundfile as sf

    name = os.path.basename(str(path))
    if not path or not os.path.isfile(path):
        raise InputError(f"{what}: file {name!r} does not exist.")
    try:
        info = sf.info(path)
    except Exception:  # libsndfile raises its own error types for every unreadable format
        raise InputError(f"{what}: {name!r} is not an audio file that can be read (use WAV, FLAC, OGG or MP3).")
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise InputError(f"{what}: {name!r} is empty (0 samples).")
    _check_decoded_size(what, name, info.samplerate, info.channels, info.frames, max_s)
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True, frames=info.frames)
    except Exception:
        raise InputError(f"{what}: {name!r} could not be decoded; the file may be damaged.")
    if data.shape[0] == 0:
        raise InputError(f"{what}: {name!r} is empty (0 samples).")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{what}: {name!r} contains NaN or infinite samples.")
    mono = data.mean(axis=1, dtype=np.float64)  # any channel count
    if sr != target_sr:
        mono = resample(mono, sr, target_sr)
    mono = np.clip(mono, -1.0, 1.0).astype(np.float32)
    rms = float(np.sqrt(np.mean(mono.astype(np.float64) ** 2))) if len(mono) else 0.0
    if rms < SILENCE_RMS:
        raise InputError(f"{what}: {name!r} is silent (level {20 * math.log10(max(rms, 1e-12)):.0f} dBFS); "
                         f"record or pick a clip with speech.")
    return mono


def _check_decoded_size(what: str, name: str, rate: int, channels: int, frames: int, max_s: float) -> None:
    """Refuse, from the header alone, a file whose decoding would be too big or unresampleable."""
    if not MIN_AUDIO_RATE_HZ <= rate <= MAX_AUDIO_RATE_HZ:
        raise InputError(f"{what}: {name!r} has a sample rate of {rate} Hz; supported rates are "
                         f"{MIN_AUDIO_RATE_HZ}-{MAX_AUDIO_RATE_HZ} Hz. Re-export it at 16, 22.05, 44.1 or 48 kHz.")
    if channels > MAX_AUDIO_CHANNELS:
        raise InputError(f"{what}: {name!r} has {channels} channels; the limit is {MAX_AUDIO_CHANNELS}. "
                         "Export it as mono or stereo.")
    dur = frames / rate
    if dur > max_s:
        raise InputError(f"{what}: {name!r} is {dur:.1f} s long; the limit is {max_s:.0f} s. Trim it to a few seconds.")
    if channels * frames > MAX_DECODED_SAMPLES:
        raise InputError(f"{what}: {name!r} would decode to {channels * frames / 1e6:.1f} M samples "
                         f"({channels} channels x {rate} Hz x {dur:.1f} s); the limit is "
                         f"{MAX_DECODED_SAMPLES / 1e6:.0f} M. Use mono or stereo at 48 kHz or less.")


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited rational resampling (polyphase FIR)."""
    from scipy.signal import resample_poly

    if sr_in == sr_out:
        return np.asarray(x)
    f = Fraction(int(sr_out), int(sr_in)).limit_denominator(1000)
    if f.numerator == 0:  # a ratio beyond the approximation (load_audio refuses such rates first)
        raise ValueError(f"cannot resample {sr_in} Hz to {sr_out} Hz")
    return resample_poly(np.asarray(x, dtype=np.float64), f.numerator, f.denominator)


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    n = 1 + (len(x) - win) // hop
    return np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n]


def f0_track(audio: np.ndarray, sr: int, hop_s: float = 0.01, fmin: float = 60.0, fmax: float = 600.0,
             threshold: float = 0.15) -> np.ndarray:
    """Fundamental frequency per `hop_s` frame in Hz, NaN where unvoiced.

    A YIN-style estimator: the cumulative-mean-normalised difference function d'(tau) is
    computed per 2/fmin-long frame via FFT autocorrelation; the first lag whose d' dips below
    `threshold` (refined to its local minimum and by parabolic interpolation) gives F0. Frames
    30 dB below the loudest frame are unvoiced, so breath and room noise do not produce pitch.
    Voiced values more than an octave from the utterance median (fricatives or clicks that pass
    the threshold at a short lag) are discarded too.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        return np.zeros(0)
    hop = max(1, int(round(hop_s * sr)))
    tmax = int(math.ceil(sr / fmin))
    tmin = max(2, int(sr / fmax))
    win = 2 * tmax
    fr = _frames(x, win, hop)
    fr = fr - fr.mean(axis=1, keepdims=True)
    # d(tau) = sum x_j^2 + sum x_{j+tau}^2 - 2 r(tau), over the first `win - tmax` samples' window
    w = win - tmax
    sq = np.concatenate([np.zeros((len(fr), 1)), np.cumsum(fr ** 2, axis=1)], axis=1)
    e0 = sq[:, w][:, None]
    lags = np.arange(tmax + 1)
    etau = sq[:, lags + w] - sq[:, lags]
    r = _windowed_acf(fr, w, tmax)
    d = np.maximum(e0 + etau - 2 * r, 0.0)
    cum = np.cumsum(d[:, 1:], axis=1) / np.arange(1, tmax + 1)
    dn = np.ones_like(d)
    dn[:, 1:] = d[:, 1:] / np.maximum(cum, 1e-12)
    f0 = np.full(len(fr), np.nan)
    energy = np.sqrt(np.mean(fr ** 2, axis=1))
    loud = energy > energy.max() * 10 ** (-30 / 20) if energy.max() > 0 else np.zeros(len(fr), bool)
    for i in np.nonzero(loud)[0]:
        row = dn[i]
        below = np.nonzero(row[tmin:tmax] < threshold)[0]
        if len(below) == 0:
            continue
        t = tmin + below[0]
        while t + 1 < tmax and row[t + 1] < row[t]:
            t += 1
        a, b, c = row[t - 1], row[t], row[t + 1] if t + 1 <= tmax else row[t]
        den = a - 2 * b + c
        shift = 0.5 * (a - c) / den if den > 1e-12 else 0.0
        f0[i] = sr / (t + float(np.clip(shift, -0.5, 0.5)))
    v = np.isfinite(f0)
    if v.sum() >= 3:
        off = np.abs(np.log2(f0[v] / np.median(f0[v])))
        idx = np.nonzero(v)[0]
        f0[idx[off > 1.0]] = np.nan
    return f0


def _windowed_acf(fr: np.ndarray, w: int, tmax: int) -> np.ndarray:
    """r(tau) = sum_{j<w} x_j x_{j+tau}, the cross term YIN needs, via FFT correlation."""
    n = fr.shape[1]
    nfft = 1 << int(math.ceil(math.log2(n + w)))
    a = np.fft.rfft(fr[:, :w], nfft, axis=1)
    b = np.fft.rfft(fr, nfft, axis=1)
    cc = np.fft.irfft(np.conj(a) * b, nfft, axis=1)
    return cc[:, : tmax + 1]


def median_f0(audio: np.ndarray, sr: int) -> float:
    """Median of the voiced frames of `f0_track`, NaN when fewer than 5 frames are voiced."""
    f0 = f0_track(audio, sr)
    v = f0[np.isfinite(f0)]
    return float(np.median(v)) if len(v) >= 5 else float("nan")


def speaking_rate(audio: np.ndarray, sr: int) -> float:
    """Syllable-like energy peaks per second of active speech (pauses excluded).

    The RMS envelope (10 ms hop) is smoothed to keep the 2-8 Hz syllable modulation; peaks at
    least 80 ms apart and 4 dB above their surroundings count as syllable nuclei. Active time
    is the duration of frames within 35 dB of the loudest. 0.0 for silence.
    """
    from scipy.signal import find_peaks

    x = np.asarray(audio, dtype=np.float64)
    hop = max(1, int(sr * 0.01))
    if len(x) < 4 * hop:
        return 0.0
    env = np.sqrt(np.mean(_frames(x, 2 * hop, hop) ** 2, axis=1))
    if env.max() <= 0:
        return 0.0
    k = np.hanning(7)  # ~60 ms smoothing
    env_s = np.convolve(env, k / k.sum(), mode="same")
    db = 20 * np.log10(np.maximum(env_s, 1e-9) / env_s.max())
    active = db > -35
    peaks, _ = find_peaks(db, distance=8, prominence=4.0)
    peaks = peaks[active[peaks]]
    active_s = active.sum() * hop / sr
    return float(len(peaks) / active_s) if active_s > 0.05 else 0.0


def rms_db(audio: np.ndarray) -> float:
    """RMS level in dBFS of float audio in [-1, 1] (-inf dB floored at -120)."""
    x = np.asarray(audio, dtype=np.float64)
    r = math.sqrt(float(np.mean(x ** 2))) if len(x) else 0.0
    return 20 * math.log10(max(r, 1e-6))
