"""models/replica.py: IndexTTS2-shaped load with random weights (shapes, stage order, scale)."""
from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest
import torch

from models.base import SAMPLE_RATE, SynthesisRequest
from models.replica import DEFAULT_SCALE, HOP, ReplicaEngine, Shape, mel_tokens_for

TINY = 0.03  # widths at 3 %: same depths and step counts, fast enough for unit tests
SHORT = {"num_beams": 1, "max_mel_tokens": 16}  # where the token count is not under test
# four sentences of 12-14 tokens: with max_text_tokens_per_segment=20 no two share a segment
FOUR_SEGMENTS = ("The first sentence is long enough to fill a segment on its own today. "
                 "The second sentence is also long enough to stand alone as a segment. "
                 "A third sentence follows here and it is as long as the other two. "
                 "The fourth and last sentence closes the text and ends the clip now.")


class Recorder:
    def __init__(self):
        self.names: list[str] = []
        self.open = 0
        self.max_open = 0
        self.segments: list[tuple[int, np.ndarray]] = []  # (stages seen so far, audio)

    def segment(self, audio, sample_rate):
        assert sample_rate == SAMPLE_RATE
        self.segments.append((len(self.names), audio.copy()))

    @contextlib.contextmanager
    def stage(self, name):
        self.names.append(name)
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            yield
        finally:
            self.open -= 1


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-CPU machine two spinning OpenMP threads slow these
    overhead-bound tiny models down many times over (the replica follows whatever is set)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    return ReplicaEngine(scale=TINY, device="cpu")


def test_full_shape_is_indextts2_config():
    s = Shape()
    assert (s.gpt_dim, s.gpt_layers, s.gpt_heads, s.max_mel_tokens) == (1280, 24, 20, 1815)
    assert (s.dit_dim, s.dit_layers, s.dit_heads, s.diffusion_steps) == (512, 13, 8, 25)
    assert np.prod(s.voc_rates) == HOP == 256


def test_scale_keeps_depth_and_head_multiples():
    s = Shape().scaled(0.1)
    assert s.gpt_layers == 24 and s.dit_layers == 13 and s.diffusion_steps == 25
    assert s.gpt_dim % 20 == 0 and s.dit_dim % 8 == 0 and s.w2v_dim % 16 == 0
    assert 100 <= s.gpt_dim <= 160  # ~128
    assert Shape().scaled(1.0) == Shape()
    with pytest.raises(ValueError):
        ReplicaEngine(scale=0)


def test_mel_tokens_proportional_to_text():
    short = mel_tokens_for("Hello there.", 1500)
    long = mel_tokens_for("Hello there. " * 4, 1500)
    assert 3.0 < long / short < 5.0
    assert mel_tokens_for("你好世界", 1500) > mel_tokens_for("abcd", 1500)  # a CJK char is a syllable
    assert mel_tokens_for("word " * 1000, 200) == 200  # max_mel_tokens caps it


def test_compute_shapes_and_stage_order(tiny):
    rec = Recorder()
    req = SynthesisRequest(text="Hello, this is a test.", spk_audio_prompt="/tmp/some_prompt.wav")
    info = tiny.compute(req, rec)
    assert rec.names == ["semantic_model", "campplus", "text", "gpt_autoregressive", "gpt_latents", "cfm", "vocoder"]
    assert rec.max_open == 1 and rec.open == 0
    assert info["mel_tokens"] == mel_tokens_for(req.text, 1500)
    assert info["mel_frames"] == int(info["mel_tokens"] * 1.72)
    assert info["samples"] == info["mel_frames"] * HOP
    assert info["num_beams"] == 3 and info["diffusion_steps"] == 25
    assert info["flops"] > 1e8 and set(info["stage_s"]) == set(rec.names)
    # same speaker prompt: prompt features cached, as IndexTTS2 does
    rec2 = Recorder()
    tiny.compute(req, rec2)
    assert rec2.names[0] == "text"


def test_emotion_text_mode_runs_the_emotion_decoder(tiny):
    rec = Recorder()
    tiny.compute(SynthesisRequest(text="Hi.", emo_control_method=3, emo_text="very angry", generation=SHORT), rec)
    assert "emotion_text" in rec.names and rec.names.index("emotion_text") < rec.names.index("gpt_autoregressive")


def test_generation_settings_change_the_work(tiny):
    req = SynthesisRequest(text="One two three four five six.")
    threads = torch.get_num_threads()
    a = tiny.compute(req)
    assert torch.get_num_threads() == threads and a["torch_threads"] == threads  # tuning's setting stands
    req.generation = dict(req.generation, num_beams=1, max_mel_tokens=20)
    b = tiny.compute(req)
    assert b["num_beams"] == 1 and b["mel_tokens"] == 20 and b["flops"] < a["flops"]


def test_bigger_scale_more_flops_and_params():
    a = ReplicaEngine(scale=0.02)
    b = ReplicaEngine(scale=0.06)
    req = SynthesisRequest(text="Scale check.", generation={"num_beams": 1, "max_mel_tokens": 12})
    fa, fb = a.compute(req)["flops"], b.compute(req)["flops"]
    assert b.params > 2 * a.params and fb > 2 * fa  # widths x3: roughly x9 in the dense parts
    assert DEFAULT_SCALE <= 0.25


def test_label_is_honest(tiny):
    assert tiny.name == "replica" and "LOAD REPLICA" in tiny.label and "random weights" in tiny.label
    assert "not IndexTTS2" in tiny.label


def test_synthesize_returns_builtin_speech_with_replica_info(tiny):
    pytest.importorskip("models.builtin")
    rec = Recorder()
    res = tiny.synthesize(SynthesisRequest(text="Hello there.", generation=SHORT), rec)
    assert res.sample_rate == SAMPLE_RATE and res.audio.dtype == np.int16 and len(res.audio) > 0.2 * SAMPLE_RATE
    assert res.info["engine"] == "replica" and res.info["replica"]["mel_tokens"] > 0
    assert rec.names[-1] == "builtin_speech" and "gpt_autoregressive" in rec.names


def test_one_request_at_a_time(tiny):
    pytest.importorskip("models.builtin")
    active, peak = [0], [0]
    orig = tiny._prompt

    def counting(req, run):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            orig(req, run)
            time.sleep(0.05)  # long enough for the other thread to get in, were it allowed
        finally:
            active[0] -= 1

    tiny._prompt = counting
    try:
        ts = [threading.Thread(target=tiny.synthesize, args=(SynthesisRequest(text="Hi.", generation=SHORT),)) for _ in range(2)]
        [t.start() for t in ts]
        [t.join() for t in ts]
    finally:
        del tiny._prompt
    assert peak[0] == 1


def test_segments_are_handed_off_as_each_is_made(tiny):
    """Four sentences: four segments, each handed over right after its own builtin_speech stage
    (before the next segment's load runs), and joined they are the clip."""
    pytest.importorskip("models.builtin")
    rec = Recorder()
    res = tiny.synthesize(SynthesisRequest(text=FOUR_SEGMENTS, max_text_tokens_per_segment=20, generation=SHORT), rec)
    assert len(rec.segments) == 4 == res.info["replica"]["segments"] == res.info["segments"]
    for at, _ in rec.segments:
        assert rec.names[at - 1] == "builtin_speech"
    first_at = rec.segments[0][0]
    assert rec.names[first_at:].count("gpt_autoregressive") == 3  # three segments still to make
    assert np.array_equal(np.concatenate([a for _, a in rec.segments]), res.audio)
