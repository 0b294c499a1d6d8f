"""The PyTorch voice stage of the builtin engine: pitch and timbre toward the speaker prompt,
plus the emotion colour. Plain DSP written as torch tensor ops (this is the compute the tracer
observes), not a learned model.

Per segment:
  1. pitch shift by ratio r = target F0 / measured F0: phase-vocoder time stretch by r (STFT with
     8x overlap, identity phase locking around spectral peaks), then band-limited FFT resampling
     back to the original length, so duration is kept and every partial moves by r;
  2. spectral-envelope EQ toward the prompt's long-term average spectrum (LTAS): both envelopes
     are cepstrally smoothed, the difference is clipped to +-MAX_EQ_DB and applied per STFT bin;
  3. emotion colour: spectral tilt (dB/octave above 1 kHz), weighted upstream by emo_alpha;
  4. loudness: active-speech RMS set to TARGET_DB + 20 log10(volume_x), peaks kept below 0.97.

Threads: uses whatever torch.get_num_threads() is (the tuning module owns that setting).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from models.audio_io import median_f0

N_FFT = 1024
HOP = 128  # 8x overlap: the phase vocoder needs it for clean shifts up to an octave
CEPS_LIFTER = 40  # cepstral coefficients kept for an envelope (~ formant resolution at 22 kHz)
MAX_EQ_DB = 12.0
TARGET_DB = -20.0  # active-speech RMS of the output, dBFS
MAX_RATIO = 2.0  # pitch shifts beyond an octave either way sound broken: clamp


@dataclass
class VoiceProfile:
    """What the voice stage takes from a speaker prompt."""
    f0_hz: float  # median F0 of voiced frames (NaN when the prompt has none)
    envelope_db: torch.Tensor  # cepstrally smoothed LTAS, N_FFT//2+1 bins, mean-removed

    def to_dict(self) -> dict:
        return {"f0_hz": None if not math.isfinite(self.f0_hz) else round(self.f0_hz, 1)}


class VoiceStage:
    def __init__(self, sample_rate: int = 22050):
        self.sr = sample_rate
        self.window = torch.hann_window(N_FFT)
        self.freqs = torch.fft.rfftfreq(N_FFT, 1.0 / sample_rate)

    # ------------------------------------------------------------ analysis
    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, N_FFT, HOP, window=self.window, return_complex=True, center=True)

    def _istft(self, X: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(X, N_FFT, HOP, window=self.window, center=True, length=length)

    def envelope_db(self, x: torch.Tensor) -> torch.Tensor:
        """Cepstrally smoothed long-term average spectrum (dB) of the frames within 30 dB of the
        loudest, with its mean over 100 Hz-8 kHz removed (shape, not level)."""
        X = self._stft(x)
        p = X.real ** 2 + X.imag ** 2
        e = p.sum(0)
        active = e > e.max() * 1e-3
        ltas = p[:, active].mean(1) if bool(active.any()) else p.mean(1)
        logp = torch.log(ltas + 1e-10)
        c = torch.fft.irfft(logp, N_FFT)
        c[CEPS_LIFTER:N_FFT - CEPS_LIFTER + 1] = 0
        env = torch.fft.rfft(c, N_FFT).real * (10.0 / math.log(10.0))
        band = (self.freqs >= 100) & (self.freqs <= 8000)
        return env - env[band].mean()

    def profile(self, prompt: np.ndarray) -> VoiceProfile:
        x = torch.from_numpy(np.ascontiguousarray(prompt, dtype=np.float32))
        return VoiceProfile(median_f0(prompt, self.sr), self.envelope_db(x))

    # ------------------------------------------------------------ transforms
    def stretch(self, x: torch.Tensor, rate: float) -> torch.Tensor:
        """Phase-vocoder time stretch: output is `rate` times as long, pitch unchanged."""
        X = self._stft(x)
        n_bins, n_frames = X.shape
        if n_frames < 2:
            return x
        steps = torch.arange(0, n_frames - 1, 1.0 / rate, dtype=torch.float64)
        i0 = steps.floor().long()
        frac = (steps - i0).to(torch.float32).unsqueeze(0)
        mag = X.abs()
        ang = X.angle()
        m = (1 - frac) * mag[:, i0] + frac * mag[:, i0 + 1]
        # expected phase advance per hop for each bin, then the wrapped deviation
        omega = 2 * math.pi * HOP * torch.arange(n_bins, dtype=torch.float32) / N_FFT
        dphi = ang[:, i0 + 1] - ang[:, i0] - omega.unsqueeze(1)
        dphi = dphi - 2 * math.pi * torch.round(dphi / (2 * math.pi))
        inc = omega.unsqueeze(1) + dphi
        phase = torch.cumsum(torch.cat([ang[:, :1], inc[:, :-1]], dim=1), dim=1)
        phase = self._lock_phases(m, phase, ang[:, i0])
        Y = torch.polar(m, phase)
        return self._istft(Y, int(round(len(x) * rate)))

    @staticmethod
    def _lock_phases(mag: torch.Tensor, phase: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
        """Identity phase locking: each bin keeps its analysis phase offset to the nearest
        spectral peak, which removes most of the vocoder's "phasiness" on voiced speech."""
        n_bins, n_frames = mag.shape
        left = torch.cat([mag[:1], mag[:-1]], 0)
        right = torch.cat([mag[1:], mag[-1:]], 0)
        peak = (mag >= left) & (mag > right)
        idx = torch.arange(n_bins).unsqueeze(1).expand(n_bins, n_frames)
        big = torch.full_like(idx, 10 ** 9)
        # nearest peak at or below / at or above each bin, via cumulative max/min scans
        below = torch.where(peak, idx, torch.full_like(idx, -1)).cummax(0).values
        above = torch.flip(torch.where(peak, idx, big).flip(0).cummin(0).values, [0])
        use_below = (below >= 0) & ((above >= big) | ((idx - below) <= (above - idx)))
        nearest = torch.where(use_below, below, above).clamp(0, n_bins - 1)
        pk_phase = torch.gather(phase, 0, nearest)
        pk_orig = torch.gather(orig, 0, nearest)
        return pk_phase + (orig - pk_orig)

    @staticmethod
    def resample_to(x: torch.Tensor, length: int) -> torch.Tensor:
        """Band-limited resampling to `length` samples by truncating/zero-padding the spectrum."""
        n = len(x)
        if n == length:
            return x
        X = torch.fft.rfft(x)
        k = length // 2 + 1
        Y = X[:k] if k <= len(X) else torch.cat([X, X.new_zeros(k - len(X))])
        return torch.fft.irfft(Y, length) * (length / n)

    def pitch_shift(self, x: torch.Tensor, ratio: float) -> torch.Tensor:
        """Multiply every frequency by `ratio` keeping the duration."""
        if abs(math.log(ratio)) < 0.005:  # < 0.1 semitone: leave the signal untouched
            return x
        return self.resample_to(self.stretch(x, ratio), len(x))

    def equalize(self, x: torch.Tensor, target_env: torch.Tensor | None, strength: float,
                 tilt_db: float) -> torch.Tensor:
        """Move the long-term spectrum toward `target_env` by `strength` (0..1) and add a
        tilt of `tilt_db` per octave above 1 kHz."""
        gain = torch.zeros(N_FFT // 2 + 1)
        if target_env is not None and strength > 0:
            diff = (target_env - self.envelope_db(x)).clamp(-MAX_EQ_DB, MAX_EQ_DB)
            gain = gain + strength * diff
        if tilt_db:
            octaves = torch.log2(torch.clamp(self.freqs, min=1000.0) / 1000.0)
            gain = gain + tilt_db * octaves
        if not bool(gain.abs().max() > 0.05):
            return x
        X = self._stft(x)
        return self._istft(X * (10 ** (gain / 20)).unsqueeze(1), len(x))

    def set_level(self, x: torch.Tensor, volume_x: float) -> torch.Tensor:
        hop = max(1, self.sr // 100)
        fr = x[: len(x) // hop * hop].reshape(-1, hop)
        e = fr.pow(2).mean(1)
        if len(e) == 0 or float(e.max()) <= 0:
            return x
        active = e[e > e.max() * 10 ** (-35 / 10)]
        rms = float(active.mean().sqrt())
        target = 10 ** (TARGET_DB / 20) * volume_x
        y = x * (target / max(rms, 1e-9))
        peak = float(y.abs().max())
        return y * (0.97 / peak) if peak > 0.97 else y

    # ------------------------------------------------------------ the stage
    def apply(self, audio: np.ndarray, target_f0: float | None, profile: VoiceProfile | None,
              tilt_db: float = 0.0, volume_x: float = 1.0, eq_strength: float = 0.7) -> tuple[np.ndarray, dict]:
        """Run the stage on float32 mono audio; returns (audio, facts) where facts has the
        measured source F0, the applied ratio and the output F0."""
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        facts: dict = {"source_f0_hz": None, "ratio": 1.0}
        if len(x) < N_FFT:
            return audio.astype(np.float32), facts
        src = median_f0(audio, self.sr)
        if target_f0 and math.isfinite(src) and math.isfinite(target_f0):
            ratio = float(np.clip(target_f0 / src, 1 / MAX_RATIO, MAX_RATIO))
            facts.update(source_f0_hz=round(src, 1), ratio=round(ratio, 4))
            with torch.no_grad():
                x = self.pitch_shift(x, ratio)
        with torch.no_grad():
            x = self.equalize(x, profile.envelope_db if profile is not None else None, eq_strength, tilt_db)
            x = self.set_level(x, volume_x)
        return x.numpy().astype(np.float32), facts
