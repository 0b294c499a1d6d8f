"""Engine selection: `create_engine(kind, ...)` for the launcher's --engine and --version flags.

kinds: builtin (DSP pipeline, always available), indextts2 (the real IndexTTS-2 model, upstream's
`--version 2`: needs `indextts.infer_v2` importable and a complete model_dir), indextts25
(IndexTTS-2.5, upstream's `--version 2.5`: `indextts.infer_v2_5`), replica (IndexTTS2's compute
shape with random weights), auto (the IndexTTS version asked for, else builtin). The engine
returned carries `selection_note`: which engine and why (printed at start-up, shown in the UI).

auto and the version: `--version 2` / `--version 2.5` is obeyed as given (a model_dir without that
version's files serves builtin, naming what is missing). Without `--version` upstream's default 2.5
is tried first; a model_dir that holds only IndexTTS-2's files (no codec.pth, no .tiktoken) serves
IndexTTS-2, since an IndexTTS v2.0.0 user's ./checkpoints is exactly that and v2.0.0's webui had no
--version. (Upstream would download the 2.5 weights instead; this launcher downloads nothing.)
"""
from __future__ import annotations

import importlib
import importlib.util
import os

from models.base import Engine
from models.indextts2 import REQUIRED_FILES as V2_FILES, ModelDirError, missing_files_message

KINDS = ("auto", "builtin", "indextts2", "indextts25", "replica")
DEFAULT_VERSION = "2.5"  # upstream webui.py (main): --version {2,2.5}, default 2.5

# What upstream's webui (main) requires per version before it loads the model, plus config.yaml
# (upstream downloads that one when absent; we download nothing).
VERSION_FILES = {
    "2": tuple(V2_FILES),
    "2.5": ("gpt.pth", "s2mel.pth", "codec.pth", "multilingual_zh_ja_yue_char_del.tiktoken",
            "wav2vec2bert_stats.pt", "config.yaml"),
}
VERSION_ENGINE = {"2": "indextts2", "2.5": "indextts25"}
ENGINE_VERSION = {v: k for k, v in VERSION_ENGINE.items()}
VERSION_MODULE = {"2": "indextts.infer_v2", "2.5": "indextts.infer_v2_5"}
VERSION_NAME = {"2": "IndexTTS-2", "2.5": "IndexTTS-2.5"}

# Upstream (main) refuses these flags at start-up when their optional extra is missing.
EXTRAS = {"accel": ("flash_attn", "uv sync --extra accel"),
          "torch_compile": ("triton", "uv sync --extra torch_compile")}


def missing_files(model_dir: str, version: str) -> list[str]:
    """Files upstream needs for `version` that model_dir lacks (all of them when it is absent)."""
    return [f for f in VERSION_FILES[version] if not os.path.isfile(os.path.join(model_dir, f))]


def indextts_importable(version: str = "2") -> bool:
    """True when IndexTTS's inference module for `version` can be found (not imported: that
    loads torch models' code and transformers). 2.5 also counts the registry's renamed copy
    (`indextts25.infer_v2_5`, see models/indextts25.py)."""
    if version == "2.5":
        from models.indextts25 import find_module
        return find_module() is not None
    try:
        return importlib.util.find_spec("indextts") is not None \
            and importlib.util.find_spec(VERSION_MODULE[version]) is not None
    except (ImportError, ValueError):
        return False


def missing_extras(accel: bool = False, torch_compile: bool = False) -> list[str]:
    """Upstream's start-up check of the acceleration flags, as messages naming the install command."""
    out = []
    for flag, on in (("accel", accel), ("torch_compile", torch_compile)):
        module, cmd = EXTRAS[flag]
        if on and importlib.util.find_spec(module) is None:
            out.append(f"--{flag} requires {module}, which is not installed. Install it with: {cmd}")
    return out


def create_engine(kind: str, model_dir: str = "./checkpoints", version: str | None = None, fp16: bool = False,
                  deepspeed: bool = False, cuda_kernel: bool = False, accel: bool = False,
                  torch_compile: bool = False, qwen_emo: bool = False, replica_scale: float | None = None,
                  verbose: bool = False) -> Engine:
    """Build the engine for `kind`. `version` is upstream's --version ("2", "2.5", or None: not
    given). Raises ValueError for an unknown kind or version, or when --accel/--torch_compile lack
    their extra and an IndexTTS engine would load (upstream refuses to start then too),
    ModelDirError when an IndexTTS kind's model_dir lacks files (the message names them),
    ImportError when IndexTTS is not installed. The IndexTTS engines get every upstream flag as a
    keyword, fp16 and qwen_emo resolved by half_precision_and_qwen (upstream's low-VRAM rule)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown engine {kind!r}; choose one of {', '.join(KINDS)}.")
    if version not in (None, *VERSION_FILES):
        raise ValueError(f"Unknown version {version!r}; choose one of {', '.join(VERSION_FILES)}.")
    opts = dict(model_dir=model_dir, fp16=fp16, deepspeed=deepspeed, cuda_kernel=cuda_kernel, accel=accel,
                torch_compile=torch_compile, qwen_emo=qwen_emo, verbose=verbose)
    if kind in ("auto", *ENGINE_VERSION):
        opts["fp16"], opts["qwen_emo"] = half_precision_and_qwen(fp16, qwen_emo)
    if kind == "auto":
        chosen, note = choose_version(model_dir, version)
        if chosen is not None:
            _refuse_missing_extras(accel, torch_compile)
            try:
                eng = _indextts(chosen, **opts)
                eng.selection_note = note
                return eng
            except Exception as e:  # a broken install must not stop the UI from serving speech
                note = (f"auto: builtin engine, because {VERSION_NAME[chosen]} failed to load: "
                        f"{type(e).__name__}: {e}")
        eng = _builtin()
        unused = [f"--{f}" for f, on in (("accel", accel), ("torch_compile", torch_compile),
                                         ("qwen_emo", qwen_emo)) if on]
        eng.selection_note = note + (f" ({', '.join(unused)}: no effect on the builtin engine)" if unused else "")
        return eng
    if kind == "builtin":
        eng = _builtin()
    elif kind in ENGINE_VERSION:
        v = ENGINE_VERSION[kind]
        if version not in (None, v):
            raise ValueError(f"--engine {kind} serves --version {v}, not --version {version}.")
        missing = missing_files(model_dir, v)
        if missing:
            raise ModelDirError(_missing_message(model_dir, v, missing))
        _refuse_missing_extras(accel, torch_compile)
        eng = _indextts(v, **opts)
    else:
        from models.replica import ReplicaEngine
        eng = ReplicaEngine() if replica_scale is None else ReplicaEngine(scale=replica_scale)
    eng.selection_note = f"{kind}: requested with --engine {kind}"
    return eng


def choose_version(model_dir: str, version: str | None) -> tuple[str | None, str]:
    """auto's choice: (version to load or None for builtin, the reason in words)."""
    tried = [version] if version else [DEFAULT_VERSION, "2"]
    reasons = []
    for v in tried:
        missing = missing_files(model_dir, v)
        if missing:
            reasons.append(f"{model_dir} lacks {VERSION_NAME[v]}'s {', '.join(missing)}")
        elif not indextts_importable(v):
            reasons.append(f"{model_dir} holds {VERSION_NAME[v]} but `{VERSION_MODULE[v]}` does not import "
                           f"(run with the IndexTTS env's Python: PYTHON=/path/to/index-tts/.venv/bin/python "
                           f"./start_app.sh, or put the checkout on PYTHONPATH)")
        else:
            why = (f"--version {v}" if version else
                   f"no --version given and {model_dir} holds {VERSION_NAME[v]}'s files"
                   + ("" if v == DEFAULT_VERSION else f" (not {VERSION_NAME[DEFAULT_VERSION]}'s: "
                      f"{', '.join(missing_files(model_dir, DEFAULT_VERSION))} missing)"))
            return v, f"auto: {VERSION_NAME[v]} from {model_dir}, because {why}"
    return None, "auto: builtin engine, because " + "; and ".join(reasons)


LOW_VRAM_GB = 10.0  # upstream webui (main): below this, half precision on and QwenEmotion skipped


def half_precision_and_qwen(fp16: bool, qwen_emo: bool) -> tuple[bool, bool]:
    """Upstream webui's (main) reading of --fp16 and --qwen_emo: on a GPU under LOW_VRAM_GB, half
    precision is forced and QwenEmotion skipped unless --qwen_emo; without CUDA (CPU) neither
    changes. Returns (half precision, load QwenEmotion): what the engines' fp16 and qwen_emo mean."""
    try:
        import torch
        cuda = torch.cuda.is_available()
        vram = torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None
    except Exception:  # no torch / broken CUDA: the engine's own import reports it
        vram = None
    low = vram is not None and vram < LOW_VRAM_GB
    return fp16 or low, qwen_emo or not low


def _refuse_missing_extras(accel: bool, torch_compile: bool) -> None:
    problems = missing_extras(accel, torch_compile)
    if problems:
        raise ValueError(" ".join(problems))


def _missing_message(model_dir: str, version: str, missing: list[str]) -> str:
    if version == "2":
        return missing_files_message(model_dir, missing)
    return (f"IndexTTS-2.5 model directory {os.path.abspath(model_dir)} is incomplete: missing "
            f"{', '.join(missing)}. Download the checkpoints there (huggingface-cli download "
            f"IndexTeam/IndexTTS-2.5 --local-dir=checkpoints) or pass --model_dir pointing at them.")


def _builtin() -> Engine:
    from models.builtin import BuiltinEngine
    return BuiltinEngine()


def _indextts(version: str, **opts) -> Engine:
    """The IndexTTS engine for `version`; every upstream flag reaches its constructor."""
    if version == "2":
        from models.indextts2 import IndexTTS2Engine as cls
    else:
        from models.indextts25 import IndexTTS25Engine as cls  # i14b's adapter of infer_v2_5
    return cls(**opts)
