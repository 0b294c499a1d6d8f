"""The real IndexTTS2 (index-tts/index-tts, tag v2.0.0) behind the Engine interface.

IndexTTS2's own code is not vendored: `indextts.infer_v2.IndexTTS2` is imported lazily from
whatever install is on PYTHONPATH, and driven through its public `infer()` exactly as its webui
does. Stage markers come from wrappers installed once on the attributes of the IndexTTS2 object
(its code is never edited); the wrappers write into the sink of the request in flight.

Proven on the real upstream code: tests/real_indextts installs v2.0.0's source from the registry
(`indextts-cli` 0.1.5) into an environment built from v2.0.0's own uv.lock, generates shrunk
random weights and drives this adapter through the launcher (pytest -m real_indextts). The fast
suite also drives it against a stand-in with v2.0.0's exact signatures (tests/standin/indextts).

Streaming: upstream's infer(stream_return=True) (`infer_generator`) yields each text segment's
audio as soon as it is vocoded (its webui never uses it); run_infer drives that path and hands
each segment to the sink (StageSink.segment) while upstream makes the next, then reads back the
wav upstream writes at the end (docs/streaming.md).

Upstream v2 (and 2.5) pass `do_sample=True` to the GPT whatever the caller asks: the engine
reports such parameters in `ignored_generation` (read from the installed code) so the UI can say
the toggle has no effect.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from models.base import (
    DEFAULT_GENERATION, SAMPLE_RATE, InputError, NullStages, StageSink, SynthesisRequest,
    SynthesisResult, hand_off,
)

# IndexTTS2's webui refuses to start without these (webui.py, v2.0.0).
REQUIRED_FILES = ("bpe.model", "gpt.pth", "config.yaml", "s2mel.pth", "wav2vec2bert_stats.pt")

# IndexTTS2's per-emotion bias applied by its webui in vector mode (normalize_emo_vec,
# apply_bias=True), order happy..calm: de-emphasises emotions that sound strange at full weight.
EMO_BIAS = (0.9375, 0.875, 1.0, 1.0, 0.9375, 0.9375, 0.6875, 0.5625)
EMO_SUM_MAX = 0.8  # the biased vector is scaled down so that its sum is at most this

# (attribute path on the IndexTTS2 object, method to wrap, stage name). For torch modules the
# method is `forward`, so `module(...)` runs inside the stage. Pipeline order (progress bar).
HOOKS: tuple[tuple[str, str, str], ...] = (
    ("qwen_emo", "inference", "emotion_text"),
    ("semantic_model", "forward", "semantic_model"),
    ("semantic_codec", "quantize", "semantic_codec"),
    ("campplus_model", "forward", "campplus"),
    ("normalizer", "normalize", "text"),
    ("tokenizer", "tokenize", "text"),
    ("tokenizer", "split_segments", "text"),
    ("gpt", "inference_speech", "gpt_autoregressive"),
    ("gpt", "forward", "gpt_latents"),
    ("semantic_codec.quantizer", "vq2emb", "semantic_codec"),
    ("s2mel.models.cfm", "inference", "cfm"),
    ("bigvgan", "forward", "vocoder"),
)
INDEXTTS_IMPORT_HF_CACHE = "./checkpoints/hf_cache"  # what infer_v2 writes into HF_HUB_CACHE at import

STAGES = ("emotion_text", "semantic_model", "semantic_codec", "campplus", "text",
          "gpt_autoregressive", "gpt_latents", "cfm", "vocoder")


class ModelDirError(RuntimeError):
    """model_dir is missing or incomplete; the message names what is missing."""


def check_model_dir(model_dir: str) -> list[str]:
    """Required checkpoint files missing from model_dir (all of them when the directory is absent)."""
    return [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(model_dir, f))]


def missing_files_message(model_dir: str, missing: list[str]) -> str:
    return (f"IndexTTS2 model directory {os.path.abspath(model_dir)} is incomplete: missing "
            f"{', '.join(missing)}. Download the IndexTTS2 checkpoints there (see IndexTTS2's "
            f"README: huggingface-cli download IndexTeam/IndexTTS-2 --local-dir=checkpoints) "
            f"or pass --model_dir pointing at them.")


def normalize_emo_vec(vec: list[float], apply_bias: bool = True) -> list[float]:
    """IndexTTS2 webui's vector-mode normalisation: multiply by EMO_BIAS, then scale the whole
    vector down so that it sums to at most EMO_SUM_MAX. Used only when the installed IndexTTS2
    object lacks its own `normalize_emo_vec` (the object's method is preferred: it is the truth)."""
    out = [float(v) * b for v, b in zip(vec, EMO_BIAS)] if apply_bias else [float(v) for v in vec]
    total = sum(out)
    if total > EMO_SUM_MAX:
        out = [v * EMO_SUM_MAX / total for v in out]
    return out


def generation_kwargs(gen: dict | None) -> dict:
    """The webui's conversion of the advanced-settings fields into infer() kwargs (top_k <= 0
    means None, i.e. no top-k filter). Missing keys take the webui defaults."""
    g = dict(DEFAULT_GENERATION)
    g.update({k: v for k, v in (gen or {}).items() if k in DEFAULT_GENERATION and v is not None})
    top_k = int(g["top_k"])
    return {
        "do_sample": bool(g["do_sample"]),
        "top_p": float(g["top_p"]),
        "top_k": top_k if top_k > 0 else None,
        "temperature": float(g["temperature"]),
        "length_penalty": float(g["length_penalty"]),
        "num_beams": int(g["num_beams"]),
        "repetition_penalty": float(g["repetition_penalty"]),
        "max_mel_tokens": int(g["max_mel_tokens"]),
    }


def infer_kwargs(req: SynthesisRequest, output_path: str, normalize: Callable[..., list],
                 verbose: bool = False) -> dict:
    """Map a request onto IndexTTS2.infer() keyword arguments the way webui.py gen_single does:
    mode 0 drops the emotion audio; mode 2 passes the normalised vector (other modes pass None);
    mode 3 sets use_emo_text; an empty emotion text becomes None (infer then uses the main text).
    The emotion audio is passed through in modes 2/3 as the webui does; infer() ignores it there."""
    mode = req.emo_control_method
    emo_audio = None if mode == 0 else req.emo_audio_prompt
    vec = normalize(list(req.emo_vector), apply_bias=True) if mode == 2 else None
    emo_text = None if req.emo_text == "" else req.emo_text
    return dict(
        spk_audio_prompt=req.spk_audio_prompt, text=req.text, output_path=output_path,
        emo_audio_prompt=emo_audio, emo_alpha=req.emo_alpha, emo_vector=vec,
        use_emo_text=(mode == 3), emo_text=emo_text, use_random=req.use_random,
        interval_silence=req.interval_silence, verbose=verbose,
        max_text_tokens_per_segment=int(req.max_text_tokens_per_segment),
        **generation_kwargs(req.generation),
    )


_HARD_CODED_KWARG = re.compile(r"\b(do_sample)\s*=\s*True\b")


def ignored_generation_params(tts: Any) -> tuple[str, ...]:
    """Generation parameters the installed IndexTTS accepts but does not use, found in its own
    source: upstream v2.0.0 and 2.5 pop `do_sample` from the kwargs and then call
    `gpt.inference_speech(..., do_sample=True, ...)`. A fork that passes the caller's value
    (indextts25-inference passes `do_sample=do_sample`) reports nothing. Source unavailable: ()."""
    try:
        src = inspect.getsource(type(tts))  # the whole class: the call may sit in a helper method
    except (OSError, TypeError):
        return ()
    return tuple(sorted(set(_HARD_CODED_KWARG.findall(src))))


def ignored_note(engine_label: str, ignored: tuple[str, ...]) -> str:
    """The sentence the UI shows next to the generation settings ('' when nothing is ignored)."""
    if not ignored:
        return ""
    names = ", ".join(ignored)
    return (f"{engine_label} hard-codes {names}=True in its own code: the {names} setting has "
            f"no effect with this engine (it always samples).")


def check_prompt_files(req: SynthesisRequest, model: str) -> None:
    """IndexTTS needs a voice prompt; both prompts must exist as files (InputError otherwise)."""
    if not req.spk_audio_prompt:
        raise InputError(f"{model} needs a voice reference audio (speaker prompt): upload one.")
    for what, path in (("Voice reference audio", req.spk_audio_prompt),
                       ("Emotion reference audio", req.emo_audio_prompt if req.emo_control_method == 1 else None)):
        if path and not os.path.isfile(path):
            raise InputError(f"{what} file not found: {path}")


def write_warmup_prompt(tmpdir: str) -> str:
    """A 1.5 s synthetic voice prompt for the warm-up synthesis: a harmonic-rich 140 Hz buzz with
    a syllable-rate envelope, voice-like enough to run the real pipeline. Returns its path."""
    import soundfile as sf

    t = np.arange(int(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    wav = 0.2 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) / 2.6
    prompt = os.path.join(tmpdir, "prompt.wav")
    sf.write(prompt, wav.astype(np.float32), SAMPLE_RATE)
    return prompt


def _resolve(root: Any, path: str) -> Any:
    """Follow a dotted attribute path; a segment that is not an attribute is tried as a key
    (s2mel.models is a dict/ModuleDict: `models.cfm` means models['cfm'])."""
    obj = root
    for part in path.split("."):
        if hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            try:
                obj = obj[part]
            except (KeyError, TypeError, IndexError):
                raise AttributeError(path) from None
    return obj


@dataclass
class _Current:
    sink: StageSink
    thread: int


class StageHooks:
    """Wrappers on an IndexTTS2 object's attributes that run each call inside
    `sink.stage(name)` for the request in flight. Installed once per object; `use(sink)` swaps the
    sink per request. Calls from other threads (e.g. a UI preview tokenizing text) and calls
    outside a request mark nothing; a stage already open on this thread is not reopened (the
    tokenizer calls the normalizer: one "text" stage, not two nested)."""

    def __init__(self, hooks: tuple[tuple[str, str, str], ...] = HOOKS) -> None:
        self.hooks = hooks
        self._current: _Current | None = None
        self._open = threading.local()
        self.installed: list[str] = []
        self.missing: list[str] = []

    def install(self, tts: Any) -> "StageHooks":
        for path, method, stage in self.hooks:
            try:
                target = _resolve(tts, path)
                fn = getattr(target, method)
            except AttributeError:
                self.missing.append(f"{path}.{method}")  # another IndexTTS2 version: no marker
                continue
            if getattr(fn, "_itts_stage", None):
                continue  # already wrapped (same object shared by two paths)
            # An instance attribute shadows the class method; for nn.Module, __call__ then runs
            # the wrapped forward (Module.__setattr__ stores plain callables in __dict__).
            setattr(target, method, self._wrap(fn, stage))
            self.installed.append(f"{path}.{method}")
        return self

    def _wrap(self, fn: Callable, stage: str) -> Callable:
        hooks = self

        def wrapped(*args, **kwargs):
            cur = hooks._current
            open_ = getattr(hooks._open, "names", None)
            if open_ is None:
                open_ = hooks._open.names = []
            if cur is None or cur.thread != threading.get_ident() or stage in open_:
                return fn(*args, **kwargs)
            open_.append(stage)
            try:
                with cur.sink.stage(stage):
                    return fn(*args, **kwargs)
            finally:
                open_.pop()

        wrapped._itts_stage = stage
        wrapped.__wrapped__ = fn
        return wrapped

    @contextlib.contextmanager
    def use(self, sink: StageSink):
        """Route this thread's hooked calls into `sink` for the duration."""
        self._current = _Current(sink, threading.get_ident())
        try:
            yield
        finally:
            self._current = None


class IndexTTS2Engine:
    """IndexTTS2 v2.0.0 through its Python API, one synthesis at a time per process (its prompt
    caches are plain attributes, not thread-safe)."""

    name = "indextts2"
    sample_rate = SAMPLE_RATE
    stages = STAGES

    def __init__(self, model_dir: str = "./checkpoints", fp16: bool = False, deepspeed: bool = False,
                 cuda_kernel: bool = False, accel: bool = False, torch_compile: bool = False,
                 qwen_emo: bool = True, verbose: bool = False, tts: Any = None):
        """Load IndexTTS2 from model_dir with its webui's flags. `tts` injects an already built
        IndexTTS2 object (then model_dir is not read). accel/torch_compile are upstream's
        use_accel/use_torch_compile (v2.0.0's IndexTTS2 takes both); qwen_emo is main's
        use_qwen_emo (load QwenEmotion; models.registry resolves upstream's low-VRAM rule into it),
        passed only where this IndexTTS2 takes it (v2.0.0 always loads QwenEmotion)."""
        self.model_dir, self.verbose = model_dir, verbose
        if tts is None:
            missing = check_model_dir(model_dir)
            if missing:
                raise ModelDirError(missing_files_message(model_dir, missing))
            with _hf_cache_for(model_dir):
                try:
                    from indextts.infer_v2 import IndexTTS2  # lazy: heavy, absent without an install
                except ImportError as e:
                    raise ImportError(
                        f"Cannot import indextts.infer_v2 ({e}). Put an IndexTTS2 checkout on PYTHONPATH "
                        f"and install its requirements into this .venv.") from e
            import inspect
            extra = {"use_qwen_emo": qwen_emo} if "use_qwen_emo" in inspect.signature(IndexTTS2).parameters else {}
            tts = IndexTTS2(cfg_path=os.path.join(model_dir, "config.yaml"), model_dir=model_dir,
                            use_fp16=fp16, use_deepspeed=deepspeed, use_cuda_kernel=cuda_kernel,
                            use_accel=accel, use_torch_compile=torch_compile, **extra)
        self.tts = tts
        self.hooks = StageHooks().install(tts)
        self._lock = threading.Lock()
        version = getattr(tts, "model_version", None)
        self.label = f"IndexTTS2 {version or ''} ({os.path.abspath(model_dir)})".replace("  ", " ")
        self.ignored_generation = ignored_generation_params(tts)
        self.generation_note = ignored_note("IndexTTS2", self.ignored_generation)

    def warmup(self) -> None:
        """One short synthesis with a synthetic voice prompt, so the first user request does not
        pay for lazy initialisation (users report first-request stalls). The prompt cache it
        leaves is replaced by the first real prompt."""
        tmpdir = tempfile.mkdtemp(prefix="itts2_warm_")
        try:
            prompt = write_warmup_prompt(tmpdir)
            self.synthesize(SynthesisRequest(text="Hello.", spk_audio_prompt=prompt), NullStages())
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def synthesize(self, req: SynthesisRequest, stages: StageSink | None = None) -> SynthesisResult:
        audio, sr, kwargs = run_infer(self, req, stages, "IndexTTS2", "itts2_",
                                      lambda out, normalize: infer_kwargs(req, out, normalize, self.verbose))
        info = {"engine": self.name, "model_dir": os.path.abspath(self.model_dir),
                "emo_vector_sent": kwargs["emo_vector"], "use_emo_text": kwargs["use_emo_text"],
                "generation": {k: kwargs[k] for k in generation_kwargs(None)},
                "generation_ignored": list(self.ignored_generation),
                "hooks_missing": list(self.hooks.missing)}
        return SynthesisResult(audio=audio, sample_rate=sr, info=info)


def run_infer(engine, req: SynthesisRequest, stages: StageSink | None, label: str, prefix: str,
              make_kwargs) -> tuple:
    """One upstream inference, as both adapters (this module's and indextts25's) make it: the
    request checked, make_kwargs(out_wav_path, normalize) -> infer's keywords, run under the
    engine's lock with its stage hooks through upstream's own streaming path (stream_call), each
    segment handed to `stages.segment` as upstream yields it, the wav upstream wrote read back
    (16-bit, SAMPLE_RATE). Returns (audio, sample_rate, kwargs); `label` names the engine in errors."""
    req.validate()
    check_prompt_files(req, label)
    stages = stages or NullStages()
    normalize = getattr(engine.tts, "normalize_emo_vec", normalize_emo_vec)
    tmpdir = tempfile.mkdtemp(prefix=prefix)
    try:
        kwargs = make_kwargs(os.path.join(tmpdir, "out.wav"), normalize)
        with engine._lock, engine.hooks.use(stages):
            out = stream_call(engine.tts, kwargs, stages)
        if not out or not os.path.isfile(str(out)):
            raise RuntimeError(f"{label} produced no audio (infer returned {out!r}).")
        audio, sr = _read_wav_int16(str(out))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if sr != SAMPLE_RATE:
        raise RuntimeError(f"{label} wrote {sr} Hz audio; expected {SAMPLE_RATE}.")
    return audio, sr, kwargs


def streaming_entry(tts: Any) -> str | None:
    """Which of upstream's methods streams: "infer" where infer() names stream_return (upstream
    v2.0.0 and main/2.5: infer(stream_return=True) returns infer_generator's generator),
    "infer_generator" where only that one does (indextts25-inference 0.2.0: its infer() returns
    the generator's first item, so it must be called directly), None where neither does."""
    for name in ("infer", "infer_generator"):
        fn = getattr(type(tts), name, None)
        if fn is not None and "stream_return" in inspect.signature(fn).parameters:
            return name
    return None


def stream_call(tts: Any, kwargs: dict, stages: StageSink) -> Any:
    """Run upstream's inference with stream_return=True and hand each segment it yields to
    `stages` (models.base.hand_off) while it goes on with the next; with output_path set,
    upstream still writes the whole clip there at the end. Returns what the non-streaming infer()
    returns (the output path). Upstream yields, per segment, the segment's wav (float tensor in
    int16 range, [1, N]) and then `interval_silence` ms of zeros (v2/2.5: after every segment;
    indextts25: between segments only); a silence is held and sent at the head of the next
    segment, so the pieces joined are exactly the file (no trailing silence). Where the installed
    code cannot stream (or returns a path, as a stand-in may), the whole clip is one piece."""
    entry = streaming_entry(tts)
    out = getattr(tts, entry or "infer")(**kwargs, **({"stream_return": True} if entry else {}))
    if out is None or isinstance(out, (str, bytes, os.PathLike, tuple)):
        if out is not None and not isinstance(out, tuple) and os.path.isfile(str(out)):
            hand_off(stages, _read_wav_int16(str(out))[0])  # no streaming: the clip is the piece
        return out
    held = None
    for item in out:  # upstream's generator: runs the next segment on the next step
        pcm = _pcm16(item)
        if pcm is None:
            continue  # v2 yields its list of wavs as "silence" when interval_silence <= 0
        if not pcm.any():
            held = pcm if held is None else np.concatenate([held, pcm])
            continue
        hand_off(stages, pcm if held is None else np.concatenate([held, pcm]))
        held = None
    return kwargs.get("output_path")


def _pcm16(item: Any) -> np.ndarray | None:
    """One yielded wav -> int16 mono (the first channel), converted as upstream saves it
    (`wav.type(torch.int16)`: truncation toward zero); None for what is not audio."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
        item = item[0]  # indextts25's emit_text form: (audio, text)
    if hasattr(item, "detach"):
        item = item.detach().cpu().float().numpy()
    if not isinstance(item, np.ndarray) or item.size == 0:
        return None
    a = item.reshape(-1, item.shape[-1])[0] if item.ndim > 1 else item
    return a.astype(np.int16) if a.dtype != np.int16 else a


@contextlib.contextmanager
def _hf_cache_for(model_dir: str):
    """Keep IndexTTS2's hub downloads (MaskGCT codec, CAMPPlus, BigVGAN, w2v-BERT features) in
    the cache its own webui uses. infer_v2 sets HF_HUB_CACHE='./checkpoints/hf_cache' relative to
    the working directory at import, which is our repository, not the IndexTTS2 install. We
    use the user's HF_HUB_CACHE if set, else <model_dir>/hf_cache when it exists. The hub and
    transformers copy the cache path into module constants at import; the launcher may have
    imported them already (Gradio imports huggingface_hub before the engine loads), so the
    constants are pointed at it too, before infer_v2's import (transformers copies the hub's
    constant then) and again after it (infer_v2 overwrites the variable)."""
    target = os.environ.get("HF_HUB_CACHE")
    if target == INDEXTTS_IMPORT_HF_CACHE:
        target = None  # set by an earlier infer_v2 import, not by the user
    if not target and os.path.isdir(os.path.join(model_dir, "hf_cache")):
        target = os.path.abspath(os.path.join(model_dir, "hf_cache"))
    if target:
        _point_hub_cache(target)
    try:
        yield
    finally:
        if target:
            _point_hub_cache(target)


def _point_hub_cache(target: str) -> None:
    import sys
    os.environ["HF_HUB_CACHE"] = target
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_CACHE = target
    hub = sys.modules.get("transformers.utils.hub")
    if hub is not None:  # already imported: its copies of the path were taken from the old value
        for name in ("HF_HUB_CACHE", "TRANSFORMERS_CACHE", "PYTORCH_TRANSFORMERS_CACHE",
                     "PYTORCH_PRETRAINED_BERT_CACHE"):
            if hasattr(hub, name):
                setattr(hub, name, target)


def _read_wav_int16(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, sr = sf.read(path, dtype="int16", always_2d=True)
    return np.ascontiguousarray(data[:, 0]), int(sr)
