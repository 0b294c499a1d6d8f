"""Upstream IndexTTS webui's flags (main and v2.0.0) through our launcher, and --engine auto's choice
of IndexTTS-2 / IndexTTS-2.5 / builtin from --version and the files in --model_dir.

The flag table is recorded from upstream's webui.py (index-tts/index-tts main ee40fa7 and tag
v2.0.0): name -> default. Our --host default differs on purpose (loopback; README)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, Server

UPSTREAM_FLAGS = {  # webui.py at main; v2.0.0 has all but --version/--accel/--torch_compile/--qwen_emo
    "--verbose": False, "--port": 7860, "--host": "0.0.0.0", "--model_dir": "./checkpoints",
    "--version": "2.5", "--fp16": False, "--deepspeed": False, "--cuda_kernel": False, "--accel": False,
    "--torch_compile": False, "--qwen_emo": False, "--gui_seg_tokens": 120,
}
V25_FILES = ("gpt.pth", "s2mel.pth", "codec.pth", "multilingual_zh_ja_yue_char_del.tiktoken",
             "wav2vec2bert_stats.pt", "config.yaml")
V2_FILES = ("bpe.model", "gpt.pth", "config.yaml", "s2mel.pth", "wav2vec2bert_stats.pt")


def test_help_lists_every_upstream_flag():
    p = subprocess.run([str(ROOT / "start_app.sh"), "--help"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    for flag in UPSTREAM_FLAGS:
        assert f" {flag}" in p.stdout, flag
    assert "{2,2.5}" in p.stdout and "default: 2.5" in p.stdout


def test_upstream_defaults():
    from webui import parse_args
    a = parse_args([])
    for flag, default in UPSTREAM_FLAGS.items():
        got = getattr(a, flag[2:])
        if flag == "--host":
            assert got == "127.0.0.1"  # deliberate: see README
        elif flag == "--version":
            assert got is None  # not given: auto tries upstream's default 2.5 first (test below)
        else:
            assert got == default, flag
    a = parse_args(["--version", "2", "--accel", "--torch_compile", "--qwen_emo", "--fp16"])
    assert (a.version, a.accel, a.torch_compile, a.qwen_emo, a.fp16) == ("2", True, True, True, True)
    with pytest.raises(SystemExit):
        parse_args(["--version", "3"])


def _dir(tmp_path, name, files):
    d = tmp_path / name
    d.mkdir()
    for f in files:
        (d / f).write_bytes(b"x")
    return str(d)


@pytest.fixture
def fake_indextts(tmp_path, monkeypatch):
    """An importable `indextts` with both inference modules (selection only looks them up)."""
    pkg = tmp_path / "pkgs" / "indextts"
    pkg.mkdir(parents=True)
    for m in ("__init__.py", "infer_v2.py", "infer_v2_5.py"):
        (pkg / m).write_text("")
    monkeypatch.syspath_prepend(str(pkg.parent))
    for name in [n for n in sys.modules if n == "indextts" or n.startswith("indextts.")]:
        monkeypatch.delitem(sys.modules, name)
    yield pkg


def test_auto_chooses_version_from_flag_and_files(tmp_path, fake_indextts):
    from models.registry import choose_version
    v25, v2 = _dir(tmp_path, "v25", V25_FILES), _dir(tmp_path, "v2", V2_FILES)
    both, none = _dir(tmp_path, "both", set(V25_FILES) | set(V2_FILES)), str(tmp_path / "absent")
    assert choose_version(v25, None)[0] == "2.5"
    assert choose_version(both, None)[0] == "2.5"  # upstream's default wins when both are there
    v, note = choose_version(v2, None)
    assert v == "2" and "no --version given" in note and "codec.pth" in note
    v, note = choose_version(v2, "2.5")  # asked for 2.5 explicitly: obeyed, so builtin + reason
    assert v is None and "codec.pth" in note and "multilingual_zh_ja_yue_char_del.tiktoken" in note
    assert choose_version(v25, "2") == (None, choose_version(v25, "2")[1])
    assert "bpe.model" in choose_version(v25, "2")[1]
    assert choose_version(both, "2")[0] == "2" and "--version 2" in choose_version(both, "2")[1]
    v, note = choose_version(none, None)
    assert v is None and "codec.pth" in note and "bpe.model" in note


def test_auto_says_when_indextts_does_not_import(tmp_path, fake_indextts):
    from models.registry import choose_version
    (fake_indextts / "infer_v2_5.py").unlink()  # a v2.0.0 install asked for 2.5
    v, note = choose_version(_dir(tmp_path, "v25", V25_FILES), "2.5")
    assert v is None and "indextts.infer_v2_5` does not import" in note and "PYTHON=" in note


def test_builtin_fallback_names_unused_flags(tmp_path):
    from models.registry import create_engine
    eng = create_engine("auto", model_dir=str(tmp_path / "none"), version="2", accel=True,
                        torch_compile=True, qwen_emo=True)
    assert eng.name == "builtin"
    assert "lacks IndexTTS-2's bpe.model" in eng.selection_note
    assert "--accel, --torch_compile, --qwen_emo: no effect on the builtin engine" in eng.selection_note


def test_missing_extra_refused_like_upstream(tmp_path):
    """Upstream refuses --accel without flash_attn and --torch_compile without triton at start-up;
    so does an IndexTTS engine here (neither extra is installed on this machine)."""
    from models.registry import create_engine, missing_extras
    import importlib.util
    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash_attn is installed here")
    assert missing_extras(accel=True) == [
        "--accel requires flash_attn, which is not installed. Install it with: uv sync --extra accel"]
    with pytest.raises(ValueError, match="uv sync --extra accel"):
        create_engine("indextts2", model_dir=_dir(tmp_path, "v2", V2_FILES), accel=True)
    with pytest.raises(ValueError, match="serves --version 2, not --version 2.5"):
        create_engine("indextts2", model_dir=_dir(tmp_path, "v2b", V2_FILES), version="2.5")


@pytest.mark.slow
def test_start_app_with_upstream_launch_line(tmp_path):
    """Upstream's own launch line, through start_app.sh: no weights here, so builtin serves and
    says why; the flags are accepted, and said to have no effect on builtin."""
    srv = Server(tmp_path, "--version", "2", "--accel", "--torch_compile", "--qwen_emo", "--no-warmup",
                 "--model_dir", str(tmp_path / "checkpoints"), launcher=[ROOT / "start_app.sh"]).start()
    try:
        out = srv.output()
        assert "* Engine selection: auto: builtin engine, because" in out
        assert "lacks IndexTTS-2's bpe.model" in out
        assert "--accel, --torch_compile, --qwen_emo: no effect on the builtin engine" in out
        cfg = json.load(urllib.request.urlopen(srv.url + "config", timeout=10))
        assert any(d.get("api_name") == "synthesize" for d in cfg["dependencies"])
    finally:
        assert srv.stop() == 0
