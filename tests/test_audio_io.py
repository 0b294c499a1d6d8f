"""Prompt loading (robustness, errors as InputError) and the pitch / rate measurements."""
import numpy as np
import pytest
import soundfile as sf

from models.audio_io import MAX_PROMPT_S, f0_track, load_audio, median_f0, speaking_rate
from models.base import InputError

SR = 22050


def tone(f0, sr=SR, dur=1.0, amp=0.3):
    t = np.arange(int(sr * dur)) / sr
    return (amp * (np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 2 * f0 * t))).astype(np.float32)


def test_eight_channels_96k_accepted_and_converted(tmp_path):
    x = tone(200, sr=96000, dur=1.5)
    data = np.stack([x * (0.5 + 0.05 * c) for c in range(8)], axis=1)
    p = tmp_path / "multi.wav"
    sf.write(p, data, 96000)
    y = load_audio(str(p))
    assert y.ndim == 1 and y.dtype == np.float32
    assert abs(len(y) - int(1.5 * SR)) <= 2
    assert median_f0(y, SR) == pytest.approx(200, rel=0.02)


def test_low_rate_stereo_flac(tmp_path):
    p = tmp_path / "a.flac"
    sf.write(p, np.stack([tone(150, 8000), tone(150, 8000)], 1), 8000)
    y = load_audio(str(p))
    assert abs(len(y) - SR) <= 2 and median_f0(y, SR) == pytest.approx(150, rel=0.02)


def test_not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio")
    with pytest.raises(InputError, match="not an audio file"):
        load_audio(str(p))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_audio(str(tmp_path / "nope.wav"))


def test_zero_length(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, np.float32), SR)
    with pytest.raises(InputError, match="empty"):
        load_audio(str(p))


def test_silent(tmp_path):
    p = tmp_path / "silent.wav"
    sf.write(p, np.zeros(SR, np.int16), SR)
    with pytest.raises(InputError, match="silent"):
        load_audio(str(p))


def test_nan_content(tmp_path):
    x = tone(200)
    x[100:200] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN"):
        load_audio(str(p))


def test_too_long(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, np.full(int(8000 * (MAX_PROMPT_S + 1)), 1000, np.int16), 8000)
    with pytest.raises(InputError, match="limit is 60 s"):
        load_audio(str(p))


@pytest.mark.parametrize("f0", [70, 110, 220, 440])
def test_f0_track_tones(f0):
    f = f0_track(tone(f0), SR)
    v = f[np.isfinite(f)]
    assert len(v) > 0.8 * len(f)
    assert np.median(v) == pytest.approx(f0, rel=0.01)


def test_f0_track_noise_and_silence_unvoiced():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(SR // 2), 0.3 * rng.standard_normal(SR // 2), tone(150, dur=0.5)])
    f = f0_track(x, SR)
    n = len(f) // 3
    assert np.isfinite(f[:n - 5]).mean() < 0.05  # silence
    assert np.isfinite(f[n + 5:2 * n - 5]).mean() < 0.2  # white noise
    assert np.isfinite(f[2 * n + 5:]).mean() > 0.8


@pytest.mark.parametrize("syl_rate", [3.0, 6.0])
def test_speaking_rate_counts_syllable_pulses(syl_rate):
    t = np.arange(3 * SR) / SR
    env = np.abs(np.sin(np.pi * syl_rate * t)) ** 2  # one pulse per 1/syl_rate s, no pauses
    x = tone(150, dur=3.0) * env
    assert speaking_rate(x, SR) == pytest.approx(syl_rate, rel=0.2)
    assert speaking_rate(np.zeros(SR), SR) == 0.0
