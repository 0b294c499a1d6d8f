"""Build (once) and cache the environments the real-code tests run IndexTTS in.

Each is what an IndexTTS user has: a venv made by uv from upstream's own uv.lock (exported in
this directory as requirements-<tag>.txt, every version pinned), holding upstream's code from the
registry (weights are not on any registry; make_weights.py makes shrunk random ones):

  v2   Python 3.10 (3.11 where no 3.10), requirements-v2.0.0.txt (Gradio 5.45, torch 2.8),
       + `indextts-cli` 0.1.5 = upstream v2.0.0's `indextts/` (192/193 files byte-identical;
       its wheel says Requires-Python >= 3.12 although the code runs on 3.10/3.11, so it is
       installed with pip --no-deps --ignore-requires-python: its dependencies ARE the lock).
  v2.5 Python 3.11, requirements-v2.5-main.txt (upstream main ee40fa7's lock)
       + `indextts25-inference` 0.2.0 (--no-deps): upstream main renamed to `indextts25` and
       refactored (see README.md here for how it differs where the adapter cares).

After installing, the WeTextProcessing grammars (FSTs) the text normaliser builds on first use
are built once (minutes) so that the launcher's first request does not pay for it: v2 keeps
them inside the env (site-packages/indextts/utils/tagger_cache), indextts25 in
~/.cache/indextts25/wetext_tagger.

Cached under ~/.cache/itts-launcher/envs/indextts-<version>-<key>, key = sha256 of the
interpreter version, the requirements file and the code package, so a changed lock builds a new
env and a warm run reuses the old one (a `.complete` stamp marks a finished build; an flock
keeps two runs from building the same env at once).

    python -m tests.real_indextts.envs v2      # build (or find) it; prints path, time, size
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.userenvs import CACHE, Unavailable, find_py310, find_uv, python_version, registry_reachable

HERE = Path(__file__).resolve().parent

SPECS = {
    "2": {
        "pythons": [find_py310(), "python3.11"],  # 3.10 as upstream's v2.0.0 envs ($ITTS_PY310 too)
        "requirements": HERE / "requirements-v2.0.0.txt",
        "code": "indextts-cli==0.1.5",
        "warm": "from indextts.utils.front import TextNormalizer as T; n = T(); n.load(); print(n.normalize('你好 123'))",
    },
    "2.5": {
        "pythons": [os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python"), "python3.11"],
        "requirements": HERE / "requirements-v2.5-main.txt",
        "code": "indextts25-inference==0.2.0",
        "warm": "from indextts25.utils.front import TextNormalizer as T; n = T(); n.load(); print(n.normalize('你好 123', 'zh'))",
    },
}


def find_python(spec: dict) -> str:
    for cand in filter(None, spec["pythons"]):
        path = cand if os.path.isabs(cand) else shutil.which(cand)
        if path and os.access(path, os.X_OK):
            return path
    raise Unavailable(f"none of {', '.join(spec['pythons'])} is installed")


def env_path(version: str) -> Path:
    spec = SPECS[version]
    py = find_python(spec)
    key = hashlib.sha256("\n".join([python_version(py), spec["code"],
                                    spec["requirements"].read_text()]).encode()).hexdigest()[:12]
    return CACHE / "envs" / f"indextts-{version}-{key}"


def du(path: Path) -> int:
    """Bytes under path (hard links counted once, as `du` does)."""
    seen, total = set(), 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def build(version: str) -> tuple[Path, float, bool]:
    """Return (env dir, seconds spent, built_now). Raises Unavailable when it cannot be built
    here (no interpreter, registry unreachable and nothing cached)."""
    spec = SPECS[version]
    env = env_path(version)
    stamp = env / ".complete"
    t = time.monotonic()
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f".{env.name}.lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if stamp.exists():
            return env, time.monotonic() - t, False
        if not registry_reachable():
            raise Unavailable("PyPI (https://pypi.org) is unreachable and the env is not cached yet")
        shutil.rmtree(env, ignore_errors=True)
        uv, py = find_uv(), str(env / "bin" / "python")
        steps = [
            [uv, "venv", "-q", "--seed", "--python", find_python(spec), str(env)],
            [uv, "pip", "install", "-q", "--python", py, "-r", str(spec["requirements"])],
            [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
             "--ignore-requires-python", spec["code"]],
            [py, "-c", spec["warm"]],
        ]
        for cmd in steps:
            p = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
            if p.returncode != 0:
                shutil.rmtree(env, ignore_errors=True)
                err = p.stderr.strip()[-4000:]
                if any(s in err for s in ("Failed to fetch", "dns error", "Connect", "Network is unreachable")):
                    raise Unavailable(f"registry unreachable while building IndexTTS {version}'s env: {err[-500:]}")
                raise RuntimeError(f"building IndexTTS {version}'s env failed at {cmd[:4]}:\n{err}")
        stamp.write_text(f"built in {time.monotonic() - t:.1f} s, {du(env) / 2**30:.2f} GiB\n")
    return env, time.monotonic() - t, True


if __name__ == "__main__":
    v = sys.argv[1] if len(sys.argv) > 1 else "2"
    e, secs, fresh = build(v)
    print(f"{e} ({'built' if fresh else 'cached'}; {secs:.1f} s; {du(e) / 2**30:.2f} GiB)")
