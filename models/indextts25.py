"""IndexTTS-2.5 (index-tts/index-tts main, tag v2.5.0 and later) behind the Engine interface.

As for v2 (models/indextts2.py), nothing of IndexTTS is vendored: `IndexTTS2` is imported
lazily from `indextts.infer_v2_5` (an upstream checkout on PYTHONPATH or installed) or, when that
is absent, from `indextts25.infer_v2_5` (the registry package `indextts25-inference` 0.2.0, a
renamed and refactored copy of upstream ee40fa7). Stage markers wrap the object's real attributes.

What differs between the two where it matters here (read from both, see
tests/real_indextts/README.md for the full record):
- constructor: upstream `(cfg_path, model_dir, use_bf16, device, use_cuda_kernel, use_deepspeed,
  use_accel, use_torch_compile, use_qwen_emo)`; indextts25 `(cfg_path, model_dir, use_bf16,
  device, use_accel)`. We pass only the keywords the installed signature names.
- infer: upstream `(spk_audio_prompt, text, output_path, lang, emo_audio_prompt, emo_alpha,
  emo_vector, use_emo_text, emo_text, use_random, interval_silence, verbose,
  max_text_tokens_per_segment, stream_return, more_segment_before, duration_factor,
  text_normalization, **generation_kwargs)`; indextts25 `infer(spk_audio_prompt, text,
  output_path, lang, **kwargs)` forwarding to `infer_generator`, which has no emotion-from-text
  (`use_emo_text`, `emo_text`: QwenEmotion was removed). We bind against the parameters the
  installed code names and refuse emotion-text mode clearly where it does not exist.
- `do_sample`: upstream hard-codes True in the GPT call; indextts25 passes the caller's value.
  Detected from the installed source (models.indextts2.ignored_generation_params).
- attributes the hooks wrap are the same paths in both: `text_process.normalize`,
  `tokenizer.encode` (upstream: a Whisper tokenizer; indextts25: the tiktoken Encoding itself),
  `semantic_model`, `campplus_model`, `gpt.merge_emovec`, `gpt.inference_speech`,
  `semantic_codec.decode` (EnhancedCodec), `s2mel.models['cfm'].inference`, `bigvgan`; upstream
  also `qwen_emo.inference` when loaded. 2.5 has no `gpt(...)` latent pass and no
  `semantic_codec.quantize` on the prompt.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import shutil
import tempfile
import threading
from typing import Any

from models.base import (
    SAMPLE_RATE, InputError, NullStages, StageSink, SynthesisRequest, SynthesisResult,
)
from models.indextts2 import (
    ModelDirError, StageHooks, _hf_cache_for, generation_kwargs, ignored_generation_params, ignored_note,
    run_infer, write_warmup_prompt,
)

TIKTOKEN_FILE = "multilingual_zh_ja_yue_char_del.tiktoken"
# Upstream main's webui REQUIRED_FILES["2.5"], plus the config.yaml it fetches when absent.
REQUIRED_FILES = ("config.yaml", "gpt.pth", "s2mel.pth", "codec.pth", TIKTOKEN_FILE, "wav2vec2bert_stats.pt")
MODULES = ("indextts.infer_v2_5", "indextts25.infer_v2_5")  # upstream first, then the registry copy
DEFAULT_LANG = "ZH"  # upstream webui: `lang_choice or "ZH"`

HOOKS: tuple[tuple[str, str, str], ...] = (
    ("qwen_emo", "inference", "emotion_text"),
    ("semantic_model", "forward", "semantic_model"),
    ("campplus_model", "forward", "campplus"),
    ("text_process", "normalize", "text"),
    ("tokenizer", "encode", "text"),
    ("gpt", "merge_emovec", "gpt_emotion"),
    ("gpt", "inference_speech", "gpt_autoregressive"),
    ("semantic_codec", "decode", "codec_decode"),
    ("s2mel.models.cfm", "inference", "cfm"),
    ("bigvgan", "forward", "vocoder"),
)
STAGES = ("emotion_text", "semantic_model", "campplus", "text", "gpt_emotion", "gpt_autoregressive",
          "codec_decode", "cfm", "vocoder")


def check_model_dir(model_dir: str) -> list[str]:
    return [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(model_dir, f))]


def missing_files_message(model_dir: str, missing: list[str]) -> str:
    return (f"IndexTTS-2.5 model directory {os.path.abspath(model_dir)} is incomplete: missing "
            f"{', '.join(missing)}. Download the IndexTTS-2.5 checkpoints there (huggingface-cli "
            f"download IndexTeam/IndexTTS-2.5 --local-dir=checkpoints) or pass --model_dir.")


def find_module() -> str | None:
    """The first of MODULES that can be found (not imported), or None."""
    for name in MODULES:
        try:
            if importlib.util.find_spec(name.split(".")[0]) and importlib.util.find_spec(name):
                return name
        except (ImportError, ValueError):
            continue
    return None


def _accepted(fn) -> tuple[set[str], bool]:
    """Named parameters of fn, and whether it takes **kwargs."""
    params = inspect.signature(fn).parameters.values()
    return ({p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)},
            any(p.kind == p.VAR_KEYWORD for p in params))


def infer_parameters(tts: Any) -> set[str]:
    """The keyword arguments the installed infer() really consumes: its own named parameters,
    plus infer_generator's when infer forwards **kwargs to it (indextts25 does)."""
    names, var = _accepted(type(tts).infer)
    if var and hasattr(type(tts), "infer_generator"):
        names |= _accepted(type(tts).infer_generator)[0]
    names.discard("self")
    return names


def infer_kwargs_25(req: SynthesisRequest, output_path: str, normalize, accepted: set[str],
                    verbose: bool = False) -> dict:
    """Map a request onto 2.5's infer() the way upstream main's gen_single does (emotion modes as
    v2; `lang` defaults to ZH; duration_factor), keeping only parameters `accepted` names.
    Raises InputError for emotion-text mode when the installed code has no emotion-from-text."""
    mode = req.emo_control_method
    if mode == 3 and "use_emo_text" not in accepted:
        raise InputError("Emotion from a text description is not available with this IndexTTS-2.5 install "
                         "(it has no QwenEmotion); use the emotion vectors or an emotion reference audio.")
    kw = dict(
        spk_audio_prompt=req.spk_audio_prompt, text=req.text, output_path=output_path,
        lang=req.lang or DEFAULT_LANG,
        emo_audio_prompt=None if mode == 0 else req.emo_audio_prompt, emo_alpha=req.emo_alpha,
        emo_vector=normalize(list(req.emo_vector), apply_bias=True) if mode == 2 else None,
        use_emo_text=(mode == 3), emo_text=None if req.emo_text == "" else req.emo_text,
        use_random=req.use_random, interval_silence=req.interval_silence, verbose=verbose,
        max_text_tokens_per_segment=int(req.max_text_tokens_per_segment),
        duration_factor=float(req.duration_factor),
    )
    kw = {k: v for k, v in kw.items() if k in accepted}
    kw.update(generation_kwargs(req.generation))  # **generation_kwargs in both
    return kw


class IndexTTS25Engine:
    """IndexTTS-2.5 through its Python API, one synthesis at a time per process."""

    name = "indextts25"
    sample_rate = SAMPLE_RATE
    stages = STAGES
    inputs = ("lang", "duration_factor")  # request fields this engine reads beyond v2's

    def __init__(self, model_dir: str = "./checkpoints", fp16: bool = False, deepspeed: bool = False,
                 cuda_kernel: bool = False, accel: bool = False, torch_compile: bool = False,
                 qwen_emo: bool = True, verbose: bool = False, tts: Any = None):
        """Load IndexTTS-2.5 with upstream webui's flags (--fp16 means bf16 where supported, as
        upstream; qwen_emo as resolved by models.registry from upstream's low-VRAM rule). `tts`
        injects an already built object (model_dir is then not read)."""
        self.model_dir, self.verbose = model_dir, verbose
        self.module = None
        self.dropped_init: list[str] = []
        if tts is None:
            missing = check_model_dir(model_dir)
            if missing:
                raise ModelDirError(missing_files_message(model_dir, missing))
            self.module = find_module()
            if self.module is None:
                raise ImportError("Neither indextts.infer_v2_5 (an IndexTTS checkout, main) nor indextts25.infer_v2_5 "
                                  "(pip install indextts25-inference) can be imported.")
            with _hf_cache_for(model_dir):
                cls = importlib.import_module(self.module).IndexTTS2
            tts = cls(**self._init_kwargs(cls, model_dir, fp16, deepspeed, cuda_kernel, accel, torch_compile,
                                          qwen_emo))
        self.tts = tts
        self.module = self.module or type(tts).__module__
        self.hooks = StageHooks(HOOKS).install(tts)
        self.accepted = infer_parameters(tts)
        self._lock = threading.Lock()
        self.ignored_generation = ignored_generation_params(tts)
        self.generation_note = ignored_note("IndexTTS-2.5", self.ignored_generation)
        version = getattr(tts, "model_version", None) or getattr(getattr(tts, "cfg", None), "version", None)
        self.label = f"IndexTTS-2.5 {version or ''} [{self.module}] ({os.path.abspath(model_dir)})".replace("  ", " ")

    def _init_kwargs(self, cls, model_dir, fp16, deepspeed, cuda_kernel, accel, torch_compile, qwen_emo) -> dict:
        want = dict(cfg_path=os.path.join(model_dir, "config.yaml"), model_dir=model_dir, use_bf16=_bf16(fp16),
                    use_cuda_kernel=cuda_kernel, use_deepspeed=deepspeed, use_accel=accel,
                    use_torch_compile=torch_compile, use_qwen_emo=bool(qwen_emo))
        names, _ = _accepted(cls.__init__)
        # A flag the installed code lacks is dropped and said (info), never silently "on".
        self.dropped_init = [k for k, v in want.items() if k not in names and v]
        return {k: v for k, v in want.items() if k in names}

    def warmup(self) -> None:
        """One short synthesis with a synthetic voice prompt (first-request stalls)."""
        tmpdir = tempfile.mkdtemp(prefix="itts25_warm_")
        try:
            prompt = write_warmup_prompt(tmpdir)
            self.synthesize(SynthesisRequest(text="Hello.", spk_audio_prompt=prompt, lang="EN"), NullStages())
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def synthesize(self, req: SynthesisRequest, stages: StageSink | None = None) -> SynthesisResult:
        audio, sr, kwargs = run_infer(
            self, req, stages, "IndexTTS-2.5", "itts25_",
            lambda out, normalize: infer_kwargs_25(req, out, normalize, self.accepted, self.verbose))
        info = {"engine": self.name, "module": self.module, "model_dir": os.path.abspath(self.model_dir),
                "lang": kwargs["lang"], "duration_factor": kwargs.get("duration_factor"),
                "emo_vector_sent": kwargs.get("emo_vector"),
                "generation": {k: kwargs[k] for k in generation_kwargs(None)},
                "generation_ignored": list(self.ignored_generation),
                "init_flags_unsupported": list(self.dropped_init),
                "hooks_missing": list(self.hooks.missing)}
        return SynthesisResult(audio=audio, sample_rate=sr, info=info)


def _bf16(fp16: bool) -> bool:
    """Upstream: --fp16 (or a small GPU) asks for half precision, bf16 only where supported."""
    if not fp16:
        return False
    try:
        import torch
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:
        return False
