"""Stand-in for `indextts.infer_v2` of IndexTTS2 v2.0.0 (written from its documented interface,
no code of it): `IndexTTS2` has the same constructor and `infer` signatures (names, order,
defaults; pinned by tests/test_indextts2_adapter.py) and the same attributes in the same roles,
each doing a little real torch work, called in IndexTTS2's order:

  qwen_emo.inference (emotion text) -> speaker prompt: semantic_model, semantic_codec.quantize,
  campplus_model, s2mel length_regulator -> emotion prompt: semantic_model -> tokenizer.tokenize
  (normalizer.normalize) + split_segments -> per segment: gpt.merge_emovec,
  gpt.inference_speech, gpt(...) forward, s2mel gpt_layer, semantic_codec.quantizer.vq2emb,
  length_regulator, s2mel.models['cfm'].inference, bigvgan -> wav (22050 Hz int16) at output_path.

Every infer() call is recorded in `self.calls` (the arguments as received) so tests can check
what the adapter sends.

Where the stand-in used to differ from upstream and the adapter can tell, it now behaves as
upstream (checked against the real code by tests/real_indextts): `semantic_codec.quantize`
returns `(indices, quantized)`; `cfg` is attribute-accessed like OmegaConf's DictConfig, not a
dict; `do_sample` is popped and the GPT gets `do_sample=True` whatever was asked.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_CACHE"] = "./checkpoints/hf_cache"  # as v2.0.0 does at import (cwd-relative)

import random
import re
from types import SimpleNamespace

import numpy as np
import soundfile as sf
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

SR = 22050
HOP = 256
EMOTIONS = ("happy", "angry", "sad", "afraid", "disgusted", "melancholic", "surprised", "calm")
D = 32  # hidden size of every stand-in module: small, the point is the call shape


class _Config:
    """The part of OmegaConf's DictConfig that IndexTTS2 uses (our venv has no omegaconf):
    `cfg.gpt.stop_mel_token` and `cfg["gpt"]`, nested; a missing key is an AttributeError, so
    `hasattr(cfg, "version")` works as upstream reads it. Not a dict: code that assumed one
    (cfg.get, isinstance dict) fails here as it would on the real object."""

    def __init__(self, data: dict):
        object.__setattr__(self, "_data", {k: _Config(v) if isinstance(v, dict) else v for k, v in data.items()})

    def __getattr__(self, name):
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        return self._data[key]

    def __contains__(self, key):
        return key in self._data

    def keys(self):
        return self._data.keys()


class TextNormalizer:
    def __init__(self, enable_glossary=False):
        self.enable_glossary = enable_glossary
        self.term_glossary = {}

    def normalize(self, text: str) -> str:
        return re.sub(r"\s+", " ", text).strip()


class TextTokenizer:
    unk_token_id = 2

    def __init__(self, vocab_file: str, normalizer: TextNormalizer | None = None):
        self.vocab_file, self.normalizer = vocab_file, normalizer

    def tokenize(self, text: str) -> list[str]:
        if self.normalizer is not None:
            text = self.normalizer.normalize(text)
        return re.findall(r"\w+|[^\w\s]", text)

    def split_segments(self, tokenized, max_text_tokens_per_segment=120, quick_streaming_tokens=0):
        n = max(1, int(max_text_tokens_per_segment))
        return [tokenized[i:i + n] for i in range(0, len(tokenized), n)]

    def convert_tokens_to_ids(self, tokens):
        return [3 + (sum(map(ord, t)) % 1000) for t in tokens]


class _SemanticModel(nn.Module):
    """w2v-BERT role: features -> hidden states (IndexTTS2 reads hidden_states[17])."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(160, D)
        self.layers = nn.ModuleList(nn.Linear(D, D) for _ in range(18))

    def forward(self, input_features, attention_mask=None, output_hidden_states=True):
        h = self.proj(input_features)
        states = [h]
        for layer in self.layers:
            h = torch.tanh(layer(h))
            states.append(h)
        return SimpleNamespace(hidden_states=states)


class _Quantizer(nn.Module):
    def __init__(self):
        super().__init__()
        self.codebook = nn.Embedding(64, D)

    def vq2emb(self, codes):  # codes [B, 1, T] -> [B, D, T]
        return self.codebook(codes[:, 0].long() % 64).transpose(1, 2)


class _SemanticCodec(nn.Module):
    def __init__(self):
        super().__init__()
        self.quantizer = _Quantizer()

    def quantize(self, emb):  # [B, T, D] -> (codes [B, T], quantized [B, T, D]), upstream's order
        codes = torch.cdist(emb, self.quantizer.codebook.weight.unsqueeze(0)).argmin(-1)
        return codes, self.quantizer.codebook(codes)


class _CAMPPlus(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(80, D, 3, padding=1), nn.ReLU(), nn.Conv1d(D, 192, 1))

    def forward(self, feat):  # [B, T, 80] -> [B, 192]
        return self.net(feat.transpose(1, 2)).mean(-1)


class _QwenEmotion:
    """Text -> ordered emotion dict (the real one runs a small Qwen LM)."""

    def inference(self, text_input):
        g = torch.Generator().manual_seed(sum(map(ord, text_input)) % 10007)
        scores = torch.softmax(torch.randn(8, generator=g), 0).tolist()
        return {k: round(float(v), 4) for k, v in zip(EMOTIONS, scores)}


class _GPT(nn.Module):
    """UnifiedVoice role: autoregressive mel-code generation (KV-free toy) and a latent forward."""

    def __init__(self, stop_mel_token):
        super().__init__()
        self.stop_mel_token = stop_mel_token
        self.text_emb = nn.Embedding(1024, D)
        self.block = nn.TransformerEncoderLayer(D, 4, 2 * D, batch_first=True)
        self.head = nn.Linear(D, 64)
        self.code_emb = nn.Embedding(64, D)

    def merge_emovec(self, speech_conditioning_latent, emo_speech_conditioning_latent, cond_lengths,
                     emo_cond_lengths, alpha=1.0):
        spk = speech_conditioning_latent.mean(1)
        emo = emo_speech_conditioning_latent.mean(1)
        return spk + alpha * (emo - spk)

    def inference_speech(self, speech_condition, text_inputs, emo_speech_condition=None,
                         cond_lengths=None, emo_cond_lengths=None, emo_vec=None, max_generate_length=1500,
                         **hf_generate_kwargs):
        n_new = min(int(max_generate_length), 2 * text_inputs.shape[1] + 4)
        h = self.text_emb(text_inputs.long() % 1024) + emo_vec.unsqueeze(1)
        codes = []
        for _ in range(n_new):  # one step per token, as autoregressive decoding does
            out = self.block(h)
            nxt = self.head(out[:, -1]).argmax(-1)
            codes.append(nxt)
            h = torch.cat([h, self.code_emb(nxt).unsqueeze(1)], 1)
        codes.append(torch.full_like(codes[-1], self.stop_mel_token))
        return torch.stack(codes, 1), speech_condition

    def forward(self, speech_conditioning_latent, text_inputs, text_lengths, mel_codes, mel_codes_lengths,
                emo_speech_conditioning_latent, cond_mel_lengths=None, emo_cond_mel_lengths=None,
                emo_vec=None, use_speed=None, do_spk_cond=False):
        h = torch.cat([self.text_emb(text_inputs.long() % 1024), self.code_emb(mel_codes.long() % 64)], 1)
        return self.block(h)[:, -mel_codes.shape[1]:]  # [B, T_codes, D]


class _LengthRegulator(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(D, D, 3, padding=1)

    def forward(self, x, ylens=None, n_quantizers=3, f0=None):  # x [B, T, D] or [B, D, T]
        if x.shape[-1] != D:
            x = x.transpose(1, 2)
        y = F.interpolate(x.transpose(1, 2), size=int(ylens.max()), mode="nearest")
        return (self.conv(y).transpose(1, 2), ylens)


class _CFM(nn.Module):
    """Flow matching role: N Euler steps of an estimator from noise to mel."""

    def __init__(self):
        super().__init__()
        self.estimator = nn.Sequential(nn.Linear(D + 80, 2 * D), nn.GELU(), nn.Linear(2 * D, 80))

    def inference(self, mu, x_lens, prompt, style, f0, n_timesteps, temperature=1.0, inference_cfg_rate=0.5):
        x = torch.randn(mu.shape[0], mu.shape[1], 80)
        x[:, :prompt.shape[-1]] = prompt.transpose(1, 2)[:, :mu.shape[1]]
        dt = 1.0 / n_timesteps
        for _ in range(n_timesteps):
            x = x + dt * self.estimator(torch.cat([mu, x], -1))
        return x.transpose(1, 2)  # [B, 80, T]


class _S2Mel(nn.Module):
    def __init__(self):
        super().__init__()
        self.models = nn.ModuleDict({"cfm": _CFM(), "length_regulator": _LengthRegulator(),
                                     "gpt_layer": nn.Linear(D, D)})


class _BigVGAN(nn.Module):
    """Vocoder role: mel [B, 80, T] -> wav [B, 1, T * 256] in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.pre = nn.Conv1d(80, 16, 7, padding=3)
        self.ups = nn.ModuleList(nn.ConvTranspose1d(16, 16, 2 * r, r, padding=r // 2) for r in (8, 8, 4))
        self.post = nn.Conv1d(16, 1, 7, padding=3)

    def forward(self, mel):
        x = self.pre(mel)
        for up in self.ups:
            x = F.leaky_relu(up(x), 0.1)
        x = torch.tanh(self.post(x))
        return x[..., :mel.shape[-1] * HOP]


def _load_audio(path, max_seconds=15):
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(data[: int(max_seconds * sr), 0].copy()).unsqueeze(0), sr


def _frames(audio, n=80, hop=160):
    """Toy filterbank-shaped features [1, T, n] from a waveform (|rfft| of 2n-sample frames)."""
    win = 2 * n
    x = F.pad(audio, (0, max(0, win - audio.shape[1])))
    frames = x.unfold(1, win, hop)  # [1, T, win]
    return torch.log1p(torch.fft.rfft(frames, dim=-1).abs()[..., :n])


class IndexTTS2:
    def __init__(
            self, cfg_path="checkpoints/config.yaml", model_dir="checkpoints", use_fp16=False, device=None,
            use_cuda_kernel=None, use_deepspeed=False, use_accel=False, use_torch_compile=False
    ):
        with open(cfg_path, encoding="utf-8") as f:
            self.cfg = _Config(yaml.safe_load(f))  # upstream: OmegaConf.load (attribute and key access)
        for key in ("gpt_checkpoint", "s2mel_checkpoint", "w2v_stat"):
            path = os.path.join(model_dir, self.cfg[key])
            if not os.path.isfile(path):
                raise FileNotFoundError(path)  # the real loader fails the same way
        self.init_args = dict(cfg_path=cfg_path, model_dir=model_dir, use_fp16=use_fp16, device=device,
                              use_cuda_kernel=use_cuda_kernel, use_deepspeed=use_deepspeed,
                              use_accel=use_accel, use_torch_compile=use_torch_compile)
        self.device = device or "cpu"
        self.model_dir = model_dir
        self.stop_mel_token = self.cfg["gpt"]["stop_mel_token"]
        torch.manual_seed(0)
        self.qwen_emo = _QwenEmotion()
        self.gpt = _GPT(self.stop_mel_token).eval()
        self.semantic_model = _SemanticModel().eval()
        self.semantic_codec = _SemanticCodec().eval()
        self.s2mel = _S2Mel().eval()
        self.campplus_model = _CAMPPlus().eval()
        self.bigvgan = _BigVGAN().eval()
        self.normalizer = TextNormalizer(enable_glossary=True)
        self.tokenizer = TextTokenizer(os.path.join(model_dir, self.cfg["dataset"]["bpe_model"]), self.normalizer)
        self.emo_num = list(self.cfg["emo_num"])
        self.emo_matrix = [torch.randn(n, D) for n in self.emo_num]
        self.spk_matrix = [torch.randn(n, 192) for n in self.emo_num]
        self.cache_spk_cond = self.cache_s2mel_style = self.cache_s2mel_prompt = None
        self.cache_spk_audio_prompt = self.cache_emo_cond = self.cache_emo_audio_prompt = None
        self.cache_mel = None
        self.gr_progress = None
        self.model_version = self.cfg.version if hasattr(self.cfg, "version") else None
        self.calls: list[dict] = []

    def normalize_emo_vec(self, emo_vector, apply_bias=True):
        """v2.0.0 behaviour (documented in DESIGN.md): per-emotion bias, then cap the sum at 0.8."""
        if apply_bias:
            bias = [0.9375, 0.875, 1.0, 1.0, 0.9375, 0.9375, 0.6875, 0.5625]
            emo_vector = [v * b for v, b in zip(emo_vector, bias)]
        total = sum(emo_vector)
        if total > 0.8:
            emo_vector = [v * 0.8 / total for v in emo_vector]
        return emo_vector

    def _emb(self, audio):
        feats = _frames(audio, n=160)
        return self.semantic_model(input_features=feats, attention_mask=torch.ones(feats.shape[:2]),
                                   output_hidden_states=True).hidden_states[17]

    def infer(self, spk_audio_prompt, text, output_path,
              emo_audio_prompt=None, emo_alpha=1.0,
              emo_vector=None,
              use_emo_text=False, emo_text=None, use_random=False, interval_silence=200,
              verbose=False, max_text_tokens_per_segment=120, stream_return=False, more_segment_before=0,
              **generation_kwargs):
        self.calls.append(dict(
            spk_audio_prompt=spk_audio_prompt, text=text, output_path=output_path,
            emo_audio_prompt=emo_audio_prompt, emo_alpha=emo_alpha, emo_vector=emo_vector,
            use_emo_text=use_emo_text, emo_text=emo_text, use_random=use_random,
            interval_silence=interval_silence, verbose=verbose,
            max_text_tokens_per_segment=max_text_tokens_per_segment, stream_return=stream_return,
            more_segment_before=more_segment_before, generation_kwargs=dict(generation_kwargs)))
        gen = self._infer(spk_audio_prompt, text, output_path, emo_audio_prompt, emo_alpha, emo_vector,
                          use_emo_text, emo_text, use_random, interval_silence,
                          max_text_tokens_per_segment, dict(generation_kwargs), stream_return)
        if stream_return:  # upstream: infer_generator's generator itself
            return gen
        return list(gen)[0]

    @torch.no_grad()
    def _infer(self, spk_audio_prompt, text, output_path, emo_audio_prompt, emo_alpha, emo_vector,
               use_emo_text, emo_text, use_random, interval_silence, max_text_tokens_per_segment, gen,
               stream_return=False):
        """infer_generator's shape: with stream_return, yields each segment's wav (float, int16
        range, [1, N]) and then the silence after it (upstream v2.0.0 yields one after every
        segment, the last too), writes output_path at the end and returns; else yields the path."""
        if use_emo_text or emo_vector is not None:
            emo_audio_prompt = None
        if use_emo_text:
            emo_vector = list(self.qwen_emo.inference(text if emo_text is None else emo_text).values())
        if emo_vector is not None:
            scale = max(0.0, min(1.0, emo_alpha))
            emo_vector = [x * scale for x in emo_vector]
        if emo_audio_prompt is None:
            emo_audio_prompt, emo_alpha = spk_audio_prompt, 1.0

        if self.cache_spk_cond is None or self.cache_spk_audio_prompt != spk_audio_prompt:
            audio, _ = _load_audio(spk_audio_prompt)
            spk_cond = self._emb(audio)
            _, s_ref = self.semantic_codec.quantize(spk_cond)  # the quantized features, as upstream
            ref_mel = _frames(audio, n=80, hop=HOP).transpose(1, 2)  # [1, 80, T]
            style = self.campplus_model(_frames(audio, n=80))
            prompt_cond = self.s2mel.models["length_regulator"](s_ref, ylens=torch.tensor([ref_mel.shape[-1]]))[0]
            self.cache_spk_cond, self.cache_s2mel_style, self.cache_s2mel_prompt = spk_cond, style, prompt_cond
            self.cache_mel, self.cache_spk_audio_prompt = ref_mel, spk_audio_prompt
        spk_cond, style = self.cache_spk_cond, self.cache_s2mel_style
        prompt_cond, ref_mel = self.cache_s2mel_prompt, self.cache_mel

        if emo_vector is not None:
            weights = torch.tensor(emo_vector, dtype=torch.float32)
            if use_random:
                idx = [random.randint(0, n - 1) for n in self.emo_num]
            else:
                idx = [int(F.cosine_similarity(style, m[:, :192], dim=1).argmax()) for m in self.spk_matrix]
            emo_mat = torch.stack([m[i] for i, m in zip(idx, self.emo_matrix)])
            emovec_mat = (weights.unsqueeze(1) * emo_mat).sum(0, keepdim=True)

        if self.cache_emo_cond is None or self.cache_emo_audio_prompt != emo_audio_prompt:
            emo_audio, _ = _load_audio(emo_audio_prompt)
            self.cache_emo_cond, self.cache_emo_audio_prompt = self._emb(emo_audio), emo_audio_prompt
        emo_cond = self.cache_emo_cond

        tokens = self.tokenizer.tokenize(text)
        segments = self.tokenizer.split_segments(tokens, max_text_tokens_per_segment)
        max_mel = int(gen.pop("max_mel_tokens", 1500))
        gen.pop("do_sample", True)  # popped and ignored: upstream passes do_sample=True to the GPT
        wavs = []
        for seg in segments:
            ids = torch.tensor(self.tokenizer.convert_tokens_to_ids(seg), dtype=torch.int32).unsqueeze(0)
            emovec = self.gpt.merge_emovec(spk_cond, emo_cond, None, None, alpha=emo_alpha)
            if emo_vector is not None:
                emovec = emovec_mat + (1 - weights.sum()) * emovec
            codes, latent_cond = self.gpt.inference_speech(spk_cond, ids, emo_cond, emo_vec=emovec, do_sample=True,
                                                           max_generate_length=max_mel, **gen)
            stop = (codes[0] == self.stop_mel_token).nonzero()
            codes = codes[:, : int(stop[0]) if len(stop) else codes.shape[1]]
            latent = self.gpt(latent_cond, ids, None, codes, None, emo_cond, emo_vec=emovec)
            latent = self.s2mel.models["gpt_layer"](latent)
            s_infer = self.semantic_codec.quantizer.vq2emb(codes.unsqueeze(1)).transpose(1, 2) + latent
            target = torch.tensor([int(codes.shape[1] * 1.72)])
            cond = self.s2mel.models["length_regulator"](s_infer, ylens=target)[0]
            cat = torch.cat([prompt_cond, cond], 1)
            mel = self.s2mel.models["cfm"].inference(cat, torch.tensor([cat.shape[1]]), ref_mel, style, None, 25,
                                                     inference_cfg_rate=0.7)
            mel = mel[:, :, ref_mel.shape[-1]:]
            wav = self.bigvgan(mel.float()).reshape(1, -1)
            wavs.append(torch.clamp(32767 * wav, -32767.0, 32767.0))
            if stream_return:
                yield wavs[-1]
                yield torch.zeros(1, int(SR * interval_silence / 1000.0)) if interval_silence > 0 else wavs
        silence = torch.zeros(1, int(SR * interval_silence / 1000.0)) if interval_silence > 0 else None
        parts = []
        for i, w in enumerate(wavs):
            parts.append(w)
            if silence is not None and i < len(wavs) - 1:
                parts.append(silence)
        wav = torch.cat(parts, 1)
        if output_path:
            os.makedirs(os.path.dirname(output_path) or ".", exist_ok=True)
            sf.write(output_path, wav[0].numpy().astype(np.int16), SR, subtype="PCM_16")
            if not stream_return:
                yield output_path
            return
        if not stream_return:
            yield (SR, wav.to(torch.int16).numpy().T)
