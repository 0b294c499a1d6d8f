"""Engine selection: `create_engine(kind, ...)` for the launcher's --engine flag.

kinds: builtin (DSP pipeline, always available), indextts2 (the real model: needs an IndexTTS2
install importable as `indextts` and a complete model_dir), replica (IndexTTS2's compute shape
with random weights), auto (indextts2 when it can load, else builtin). The engine returned
carries `selection_note`: why it was chosen (shown in the UI).
"""
from __future__ import annotations

import importlib.util

from models.base import Engine
from models.indextts2 import ModelDirError, check_model_dir, missing_files_message

KINDS = ("auto", "builtin", "indextts2", "replica")


def indextts_importable() -> bool:
    """True when an `indextts.infer_v2` module can be found (not imported: that loads torch
    models' code and transformers)."""
    try:
        return importlib.util.find_spec("indextts") is not None \
            and importlib.util.find_spec("indextts.infer_v2") is not None
    except (ImportError, ValueError):
        return False


def create_engine(kind: str, model_dir: str = "./checkpoints", fp16: bool = False, deepspeed: bool = False,
                  cuda_kernel: bool = False, replica_scale: float | None = None, verbose: bool = False) -> Engine:
    """Build the engine for `kind`. Raises ValueError for an unknown kind, ModelDirError when
    kind is indextts2 and model_dir lacks required files (the message names them), ImportError
    when kind is indextts2 and IndexTTS2 is not installed."""
    if kind not in KINDS:
        raise ValueError(f"Unknown engine {kind!r}; choose one of {', '.join(KINDS)}.")
    if kind == "auto":
        missing = check_model_dir(model_dir)
        if missing:
            note = f"auto: builtin engine, because {model_dir} lacks {', '.join(missing)}"
        elif not indextts_importable():
            note = (f"auto: builtin engine, because {model_dir} is complete but the `indextts` "
                    f"package does not import (put IndexTTS2 on PYTHONPATH)")
        else:
            try:
                eng = _indextts2(model_dir, fp16, deepspeed, cuda_kernel, verbose)
                eng.selection_note = f"auto: IndexTTS2 from {model_dir}"
                return eng
            except Exception as e:  # a broken install must not stop the UI from serving speech
                note = f"auto: builtin engine, because IndexTTS2 failed to load: {type(e).__name__}: {e}"
        eng = _builtin()
        eng.selection_note = note
        return eng
    if kind == "builtin":
        eng = _builtin()
    elif kind == "indextts2":
        missing = check_model_dir(model_dir)
        if missing:
            raise ModelDirError(missing_files_message(model_dir, missing))
        eng = _indextts2(model_dir, fp16, deepspeed, cuda_kernel, verbose)
    else:
        from models.replica import ReplicaEngine
        eng = ReplicaEngine() if replica_scale is None else ReplicaEngine(scale=replica_scale)
    eng.selection_note = f"{kind}: requested with --engine {kind}"
    return eng


def _builtin() -> Engine:
    from models.builtin import BuiltinEngine
    return BuiltinEngine()


def _indextts2(model_dir, fp16, deepspeed, cuda_kernel, verbose) -> Engine:
    from models.indextts2 import IndexTTS2Engine
    return IndexTTS2Engine(model_dir=model_dir, fp16=fp16, deepspeed=deepspeed, cuda_kernel=cuda_kernel,
                           verbose=verbose)
