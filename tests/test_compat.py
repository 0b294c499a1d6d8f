"""app/ui/compat.py on this venv's Gradio (6.x); Gradio 5.45 itself runs in tests/test_gradio5_env.py."""
from __future__ import annotations

import pytest

from app.ui import compat


def test_this_generation():
    assert compat.MAJOR == 6 and compat.PRIVATE == {"api_visibility": "private"}
    assert compat.launch_kwargs(footer_links=["api"], server_port=1) == {"footer_links": ["api"], "server_port": 1}
    compat.check_supported()


@pytest.mark.parametrize("version", [(4, 44), (5, 44), (7, 0)])
def test_unsupported_gradio_refused_by_name(monkeypatch, version):
    monkeypatch.setattr(compat, "VERSION", version)
    with pytest.raises(RuntimeError, match=r"gradio .* is not supported: the launcher's UI runs on gradio >= 5\.45 and < 7"):
        compat.check_supported()


def test_gradio5_spellings(monkeypatch):
    monkeypatch.setattr(compat, "MAJOR", 5)
    assert compat.launch_kwargs(footer_links=["api"], server_port=1) == {"server_port": 1}


def test_own_wav_audio_sends_our_pcm16_wav_as_gradio_would_without_probing(tmp_path, monkeypatch):
    """A clip's PCM_16 WAV goes out as the FileData Gradio's own postprocess makes of it, without
    the ffprobe child process; any other audio still goes through Gradio's postprocess."""
    import numpy as np
    import soundfile as sf
    import gradio as gr
    from gradio import processing_utils

    wav16, wavf = tmp_path / "audio.wav", tmp_path / "float.wav"
    sf.write(wav16, np.zeros(2400, dtype=np.int16), 24000, subtype="PCM_16")
    sf.write(wavf, np.zeros(2400, dtype=np.float32), 24000, subtype="FLOAT")
    assert compat.is_pcm16_wav(wav16) and not compat.is_pcm16_wav(wavf)
    assert not compat.is_pcm16_wav(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("not a wav at all, long enough to have a header" * 2)
    assert not compat.is_pcm16_wav(tmp_path / "text.wav")

    probes = []
    real = processing_utils.audio_is_playable
    monkeypatch.setattr(processing_utils, "audio_is_playable", lambda p: probes.append(p) or real(p))
    plain = gr.Audio(type="filepath", interactive=False)
    expected = plain.postprocess(str(wav16))
    probed = len(probes)
    ours = compat.own_wav_audio(gr.Audio(type="filepath", interactive=False))
    got = ours.postprocess(str(wav16))
    assert len(probes) == probed  # no probe for our own WAV
    assert (got.path, got.orig_name) == (expected.path, expected.orig_name)
    ours.postprocess(str(wavf))  # a float WAV: Gradio's own path
    assert processing_utils.ffmpeg_installed() is False or len(probes) == probed + 1
    assert ours.postprocess(None) is None
