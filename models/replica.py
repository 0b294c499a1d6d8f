"""LOAD REPLICA: IndexTTS2's compute shape with random weights. It is NOT IndexTTS2 and its
compute produces no speech; the audio it returns comes from the builtin engine.

Purpose: benchmark and tune the machine (threads, CPU placement, scheduling policy) under a load
shaped like IndexTTS2's inference where the real weights are not available. Layer counts, widths,
heads, diffusion steps and upsampling come from IndexTTS2 v2.0.0's checkpoints/config.yaml (and
the BigVGAN v2 22 kHz 80-band 256x vocoder it names); `scale` multiplies every width (depths and
step counts stay), so compute per token falls roughly with scale**2.

Pipeline (stage names shared with the indextts2 engine where the role is the same):
  semantic_model  w2v-BERT-like encoder over the speaker prompt (cached per prompt, as IndexTTS2)
  campplus        speaker-style conv stack over the prompt's filterbank
  emotion_text    Qwen-0.6B-like decoder generating a short emotion answer (mode 3 only)
  text            tokenization
  gpt_autoregressive  GPT decoder with KV cache, num_beams sequences, one step per mel token
  gpt_latents     one full forward of the same GPT over text + generated codes
  cfm             flow matching: `diffusion_steps` Euler steps of a DiT estimator (CFG: batch 2)
  vocoder         BigVGAN-like transposed-conv upsampler with multi-kernel residual blocks
gpt_autoregressive .. vocoder run once per text segment (the builtin front end's segmentation, as
IndexTTS2's infer loop runs per segment), each followed by that segment's audio (builtin_speech),
handed to the sink at once (StageSink.segment): time to first sound has IndexTTS2's shape too.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.base import NullStages, SAMPLE_RATE, StageSink, SynthesisRequest, SynthesisResult, hand_off
from models.text import prepare

DEFAULT_SCALE = 0.1  # one short sentence in ~1-3 s on a 2-core CPU (measured: ~2.7 s, 54 GFLOP)

MEL_TOKENS_PER_S = 22050 / 256 / 1.72  # IndexTTS2: mel frames = 1.72 x codes; 86.1 frames/s -> ~50 codes/s
HOP = 256  # vocoder samples per mel frame


@dataclass(frozen=True)
class Shape:
    """IndexTTS2 v2.0.0 sizes (config.yaml) at scale 1."""
    gpt_dim: int = 1280
    gpt_layers: int = 24
    gpt_heads: int = 20
    gpt_cond_latents: int = 32  # perceiver latents prepended as conditioning
    mel_vocab: int = 8194
    text_vocab: int = 12000
    max_mel_tokens: int = 1815
    w2v_dim: int = 1024  # semantic model (w2v-BERT 2.0): 24 layers, IndexTTS2 reads layer 17
    w2v_layers: int = 17
    w2v_heads: int = 16
    qwen_dim: int = 1024  # Qwen3-0.6B-based emotion model
    qwen_layers: int = 28
    qwen_heads: int = 16
    qwen_answer_tokens: int = 24
    dit_dim: int = 512
    dit_layers: int = 13
    dit_heads: int = 8
    wavenet_dim: int = 512
    wavenet_layers: int = 8
    diffusion_steps: int = 25
    n_mels: int = 80
    voc_channels: int = 1536
    voc_rates: tuple = (4, 4, 2, 2, 2, 2)
    voc_kernels: tuple = (3, 7, 11)
    voc_dilations: tuple = (1, 3, 5)

    def scaled(self, s: float) -> "Shape":
        def w(x, heads=1):  # width scaled, kept a multiple of the head count (and >= 1 per head)
            return max(heads, int(round(x * s / heads)) * heads)
        return replace(self, gpt_dim=w(self.gpt_dim, self.gpt_heads), w2v_dim=w(self.w2v_dim, self.w2v_heads),
                       qwen_dim=w(self.qwen_dim, self.qwen_heads), dit_dim=w(self.dit_dim, self.dit_heads),
                       wavenet_dim=w(self.wavenet_dim), voc_channels=max(2 ** len(self.voc_rates),
                                                                          w(self.voc_channels, 2 ** len(self.voc_rates))))


class FlopCounter:
    """Multiply-accumulate count x 2 of every Linear/Conv/attention call (matmul FLOPs only; the
    definition used for `info['flops']`)."""

    def __init__(self):
        self.total = 0

    def attach(self, module: nn.Module) -> None:
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.ConvTranspose1d)):
                m.register_forward_hook(self._hook)

    def _hook(self, m, inp, out):
        if isinstance(m, nn.Linear):
            self.total += 2 * m.in_features * out.numel()
        elif isinstance(m, nn.Conv1d):
            self.total += 2 * (m.in_channels // m.groups) * m.kernel_size[0] * out.numel()
        else:  # transposed conv: every input sample touches in/groups x K x out outputs
            self.total += 2 * inp[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0]


class Attention(nn.Module):
    def __init__(self, dim, heads, counter: FlopCounter, causal: bool):
        super().__init__()
        self.heads, self.causal, self.counter = heads, causal, counter
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, cache: list | None = None):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:  # KV cache: append this step's keys/values
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        self.counter.total += 4 * b * d * t * k.shape[2]
        causal = self.causal and t > 1  # a single new query attends to the whole cache
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and k.shape[2] == t)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block (GPT-2 / DiT body)."""

    def __init__(self, dim, heads, counter, causal):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, counter, causal)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, cache=None):
        x = x + self.attn(self.n1(x), cache)
        return x + self.mlp(self.n2(x))


class Decoder(nn.Module):
    """Token decoder with KV cache: `prefill` a prefix, then `step` one token at a time."""

    def __init__(self, vocab, dim, layers, heads, counter, head_vocab=None):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, counter, causal=True) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, head_vocab or vocab)

    def run(self, x, caches=None):
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if caches is None else caches[i])
        return self.norm(x)

    def generate(self, prefix: torch.Tensor, n_new: int, gen: torch.Generator, top_k: int | None,
                 temperature: float) -> torch.Tensor:
        caches = [[] for _ in self.blocks]
        h = self.run(prefix, caches)
        out = []
        for _ in range(n_new):
            logits = self.head(h[:, -1]) / max(temperature, 1e-3)
            if top_k:
                kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            tok = torch.multinomial(F.softmax(logits.float(), -1), 1, generator=gen)
            out.append(tok)
            h = self.run(self.emb(tok.to(prefix.device)), caches)
        return torch.cat(out, 1)


class Encoder(nn.Module):
    def __init__(self, in_dim, dim, layers, heads, counter):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, counter, causal=False) for _ in range(layers))

    def forward(self, x):
        x = self.proj(x)
        for blk in self.blocks:
            x = blk(x)
        return x


class CampPlus(nn.Module):
    def __init__(self, counter, dim=192):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(80, 512, 5, padding=2), nn.ReLU(),
                                 *[m for _ in range(4) for m in (nn.Conv1d(512, 512, 3, padding=2, dilation=2), nn.ReLU())],
                                 nn.Conv1d(512, dim, 1))

    def forward(self, fbank):  # [B, 80, T] -> [B, 192]
        return self.net(fbank).mean(-1)


class DiT(nn.Module):
    """CFM estimator: content + noisy mel + time -> velocity, then a WaveNet-style conv head."""

    def __init__(self, s: Shape, counter):
        super().__init__()
        self.inp = nn.Linear(2 * s.n_mels + s.dit_dim, s.dit_dim)
        self.t_emb = nn.Sequential(nn.Linear(1, s.dit_dim), nn.SiLU(), nn.Linear(s.dit_dim, s.dit_dim))
        self.blocks = nn.ModuleList(Block(s.dit_dim, s.dit_heads, counter, causal=False) for _ in range(s.dit_layers))
        self.wn_in = nn.Conv1d(s.dit_dim, s.wavenet_dim, 1)
        self.wn = nn.ModuleList(nn.Conv1d(s.wavenet_dim, 2 * s.wavenet_dim, 5, padding=2) for _ in range(s.wavenet_layers))
        self.out = nn.Conv1d(s.wavenet_dim, s.n_mels, 1)

    def forward(self, x, cond, prompt, t):
        h = self.inp(torch.cat([x, prompt, cond], -1)) + self.t_emb(t.view(-1, 1, 1))
        for blk in self.blocks:
            h = blk(h)
        h = self.wn_in(h.transpose(1, 2))
        for conv in self.wn:
            a, g = conv(h).chunk(2, 1)
            h = h + torch.tanh(a) * torch.sigmoid(g)
        return self.out(h).transpose(1, 2)


class ResBlock(nn.Module):
    def __init__(self, ch, k, dilations):
        super().__init__()
        self.c1 = nn.ModuleList(nn.Conv1d(ch, ch, k, dilation=d, padding=d * (k - 1) // 2) for d in dilations)
        self.c2 = nn.ModuleList(nn.Conv1d(ch, ch, k, padding=(k - 1) // 2) for _ in dilations)

    def forward(self, x):
        for c1, c2 in zip(self.c1, self.c2):
            x = x + c2(_snake(c1(_snake(x))))
        return x


def _snake(x):  # BigVGAN's periodic activation (alpha = 1)
    return x + torch.sin(x) ** 2


class Vocoder(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        ch = s.voc_channels
        self.pre = nn.Conv1d(s.n_mels, ch, 7, padding=3)
        self.ups, self.res = nn.ModuleList(), nn.ModuleList()
        for r in s.voc_rates:
            self.ups.append(nn.ConvTranspose1d(ch, ch // 2, 2 * r, r, padding=r // 2))
            ch //= 2
            self.res.append(nn.ModuleList(ResBlock(ch, k, s.voc_dilations) for k in s.voc_kernels))
        self.post = nn.Conv1d(ch, 1, 7, padding=3)

    def forward(self, mel):  # [B, 80, T] -> [B, T * 256]
        x = self.pre(mel)
        for up, rbs in zip(self.ups, self.res):
            x = up(_snake(x))
            x = sum(rb(x) for rb in rbs) / len(rbs)
        return torch.tanh(self.post(_snake(x)))[:, 0, : mel.shape[-1] * HOP]


def text_units(text: str) -> int:
    """Rough BPE token count: one per CJK character, one per latin word/number, one per punctuation."""
    return len(re.findall(r"[\u3400-\u9fff]|[A-Za-z0-9']+|[^\sA-Za-z0-9'\u3400-\u9fff]", text))


def mel_tokens_for(text: str, max_tokens: int) -> int:
    """Mel tokens IndexTTS2 would generate for `text`: ~50 per second of speech, at ~0.22 s per
    CJK character and ~0.06 s per other non-space character (speaking-rate estimates)."""
    cjk = len(re.findall(r"[\u3400-\u9fff]", text))
    other = len(re.sub(r"[\s\u3400-\u9fff]", "", text))
    seconds = 0.22 * cjk + 0.06 * other
    return max(8, min(int(max_tokens), int(round(seconds * MEL_TOKENS_PER_S))))


class ReplicaEngine:
    name = "replica"
    sample_rate = SAMPLE_RATE
    stages = ("semantic_model", "campplus", "emotion_text", "text", "gpt_autoregressive", "gpt_latents",
              "cfm", "vocoder", "builtin_speech")

    def __init__(self, scale: float = DEFAULT_SCALE, device: str | None = None, seed: int = 0):
        if not (0 < scale <= 1.0):
            raise ValueError(f"replica scale must be in (0, 1], got {scale}")
        self.scale = scale
        self.shape = Shape().scaled(scale)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.label = (f"LOAD REPLICA (random weights, IndexTTS2's compute shape at scale {scale:g}; "
                      f"not IndexTTS2 - audio from the builtin engine)")
        self.flops = FlopCounter()
        s = self.shape
        with torch.random.fork_rng(devices=[]):  # deterministic weights without touching global RNG
            torch.manual_seed(seed)
            self.w2v = Encoder(160, s.w2v_dim, s.w2v_layers, s.w2v_heads, self.flops)
            self.campplus = CampPlus(self.flops)
            self.qwen = Decoder(32000, s.qwen_dim, s.qwen_layers, s.qwen_heads, self.flops, head_vocab=4096)
            self.gpt = Decoder(s.mel_vocab, s.gpt_dim, s.gpt_layers, s.gpt_heads, self.flops)
            self.text_emb = nn.Embedding(s.text_vocab, s.gpt_dim)
            self.cond_proj = nn.Linear(s.w2v_dim, s.gpt_dim)
            self.latent_to_content = nn.Linear(s.gpt_dim, s.dit_dim)
            self.dit = DiT(s, self.flops)
            self.vocoder = Vocoder(s)
        self._modules = nn.ModuleList([self.w2v, self.campplus, self.qwen, self.gpt, self.text_emb, self.cond_proj,
                                       self.latent_to_content, self.dit, self.vocoder]).to(self.device).eval()
        self.flops.attach(self._modules)
        self.params = sum(p.numel() for p in self._modules.parameters())
        self._lock = threading.Lock()
        self._prompt_cache: tuple | None = None  # (speaker prompt path, cond, style, prompt mel)
        self._builtin = None

    # -- the load -----------------------------------------------------------------------------
    @torch.inference_mode()
    def compute(self, req: SynthesisRequest, stages: StageSink | None = None) -> dict:
        """Run IndexTTS2-shaped inference for `req` (random weights) as one segment and return
        what was computed: mel tokens, beams, diffusion steps, frames, samples, flops, seconds per
        stage. (synthesize() runs the same work segment by segment.)"""
        run = self._start(req, stages or NullStages())
        self._prompt(req, run)
        self._text(req.text, run)
        self._segment(req.text, run)
        return self._info(run)

    def _start(self, req: SynthesisRequest, stages: StageSink) -> dict:
        gen_cfg = req.generation or {}
        g = torch.Generator(device="cpu").manual_seed(1234)  # inputs: the same on every device
        dev = self.device
        times: dict[str, float] = {}
        return {"stages": stages, "times": times, "g": g,
                # sampling runs where the logits are: a CPU generator is refused for CUDA tensors
                "gs": g if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(1234),
                "beams": max(1, int(gen_cfg.get("num_beams", 3))),
                "top_k": int(gen_cfg.get("top_k", 30) or 0) or None,
                "temperature": float(gen_cfg.get("temperature", 0.8)),
                "max_mel": min(int(gen_cfg.get("max_mel_tokens", 1500)), self.shape.max_mel_tokens),
                "flops0": self.flops.total, "mel_tokens": 0, "text_tokens": 0, "mel_frames": 0, "samples": 0,
                "segments": 0, "timed": lambda name: _Timed(stages.stage(name), times, name)}

    def _rnd(self, run, *shape):
        return torch.randn(*shape, generator=run["g"]).to(self.device)

    @torch.inference_mode()
    def _prompt(self, req: SynthesisRequest, run: dict) -> None:
        """Prompt features (cached per speaker prompt, as IndexTTS2) and the emotion decoder."""
        s, dev, timed = self.shape, self.device, run["timed"]
        prompt_key = req.spk_audio_prompt or "<no speaker prompt>"
        prompt_frames = 150  # ~3 s of prompt at 50 Hz (IndexTTS2 cuts prompts at 15 s)
        if self._prompt_cache is None or self._prompt_cache[0] != prompt_key:
            with timed("semantic_model"):
                cond = self.w2v(self._rnd(run, 1, prompt_frames, 160))
            with timed("campplus"):
                style = self.campplus(self._rnd(run, 1, 80, 2 * prompt_frames))
            self._prompt_cache = (prompt_key, cond, style, self._rnd(run, 1, int(prompt_frames * 1.72), s.n_mels))
        if req.emo_control_method == 3:
            with timed("emotion_text"):
                units = text_units(req.emo_text or req.text)
                self.qwen.generate(self.qwen.emb(torch.randint(0, 32000, (1, units + 16), generator=run["g"]).to(dev)),
                                   s.qwen_answer_tokens, run["gs"], top_k=None, temperature=1.0)

    @torch.inference_mode()
    def _text(self, text: str, run: dict) -> None:
        """Tokenization of the whole text (IndexTTS2 tokenizes once, then splits into segments)."""
        with run["timed"]("text"):
            run["text_ids"] = torch.randint(0, self.shape.text_vocab, (1, max(1, text_units(text))),
                                            generator=run["g"]).to(self.device)

    @torch.inference_mode()
    def _segment(self, text: str, run: dict) -> None:
        """One segment: GPT decode, latent pass, flow matching with the prompt prefix, vocoder."""
        s, dev, timed = self.shape, self.device, run["timed"]
        _, cond, style, prompt_mel = self._prompt_cache
        text_ids = run["text_ids"][:, :max(1, text_units(text))]  # (a segment's share of the tokens)
        n_text = text_ids.shape[1]
        n_mel = mel_tokens_for(text, run["max_mel"])
        with timed("gpt_autoregressive"):
            cond_lat = self.cond_proj(cond[:, : s.gpt_cond_latents])
            prefix = torch.cat([cond_lat, self.text_emb(text_ids)], 1).expand(run["beams"], -1, -1)
            codes = self.gpt.generate(prefix, n_mel, run["gs"], run["top_k"], run["temperature"])[:1]

        with timed("gpt_latents"):
            full = torch.cat([cond_lat, self.text_emb(text_ids), self.gpt.emb(codes)], 1)
            latent = self.gpt.run(full)[:, -n_mel:]

        frames = int(n_mel * 1.72)
        with timed("cfm"):
            content = F.interpolate(self.latent_to_content(latent).transpose(1, 2), size=frames).transpose(1, 2)
            content = torch.cat([torch.zeros(1, prompt_mel.shape[1], s.dit_dim, device=dev), content], 1)
            total = content.shape[1]
            prompt = torch.cat([prompt_mel, torch.zeros(1, frames, s.n_mels, device=dev)], 1)
            x = self._rnd(run, 1, total, s.n_mels)
            dt = 1.0 / s.diffusion_steps
            for i in range(s.diffusion_steps):  # classifier-free guidance: cond + uncond in one batch
                t = torch.full((2,), i * dt, device=dev)
                v = self.dit(torch.cat([x, x]), torch.cat([content, torch.zeros_like(content)]),
                             torch.cat([prompt, torch.zeros_like(prompt)]), t)
                x = x + dt * (1.7 * v[:1] - 0.7 * v[1:])
            mel = x[:, prompt_mel.shape[1]:].transpose(1, 2)

        with timed("vocoder"):
            wav = self.vocoder(mel)
        run["mel_tokens"] += n_mel
        run["text_tokens"] += n_text
        run["mel_frames"] += frames
        run["samples"] += int(wav.shape[-1])
        run["segments"] += 1

    def _info(self, run: dict) -> dict:
        s = self.shape
        return {"mel_tokens": run["mel_tokens"], "text_tokens": run["text_tokens"], "num_beams": run["beams"],
                "mel_frames": run["mel_frames"], "diffusion_steps": s.diffusion_steps, "samples": run["samples"],
                "segments": run["segments"], "flops": int(self.flops.total - run["flops0"]), "params": self.params,
                "scale": self.scale, "device": str(self.device), "torch_threads": torch.get_num_threads(),
                "stage_s": {k: round(v, 4) for k, v in run["times"].items()}}

    # -- the Engine interface -----------------------------------------------------------------
    def synthesize(self, req: SynthesisRequest, stages: StageSink | None = None) -> SynthesisResult:
        """Segment by segment, as IndexTTS2's infer loop: the replica's load for a segment, then
        that segment's audio from the builtin engine, handed to `stages.segment` at once. The
        segments are the builtin front end's (models.text.prepare), so load and audio agree."""
        req.validate()
        stages = stages or NullStages()
        if self._builtin is None:
            from models.builtin import BuiltinEngine  # the audible part
            self._builtin = BuiltinEngine()
        with self._lock:  # like IndexTTS2: one request at a time (shared prompt cache)
            run = self._start(req, stages)
            self._prompt(req, run)
            self._text(req.text, run)
            binfo: dict = {}
            audio_pieces = self._builtin.stream(req, NullStages(), binfo)  # lazy: runs on next()
            pieces = []
            for seg in prepare(req.text, req.max_text_tokens_per_segment):
                self._segment(seg.text, run)
                with stages.stage("builtin_speech"):
                    piece = next(audio_pieces, None)
                if piece is None:
                    break
                hand_off(stages, piece)
                pieces.append(piece)
            for piece in audio_pieces:  # (none: same segmentation) kept so the clip is whole
                hand_off(stages, piece)
                pieces.append(piece)
            replica = self._info(run)
        info = dict(binfo)
        info.update(engine=self.name, replica=replica,
                    note="audio from the builtin engine; the replica's compute is load only")
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        return SynthesisResult(audio=audio, sample_rate=SAMPLE_RATE, info=info)


class _Timed:
    """Enter a stage context and record its wall time into `times[name]` (summed)."""

    def __init__(self, cm, times, name):
        self.cm, self.times, self.name = cm, times, name

    def __enter__(self):
        self.cm.__enter__()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.times[self.name] = self.times.get(self.name, 0.0) + time.perf_counter() - self.t0
        return self.cm.__exit__(*exc)
