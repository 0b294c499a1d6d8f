"""Build (once) and cache an "IndexTTS user's environment" for the PYTHON= route tests.

The environment imitates what `uv sync --extra webui` makes from IndexTTS v2.0.0's uv.lock, cut to
the packages our launcher touches: Python 3.10, gradio 5.45.0 / gradio_client 1.13.0, torch 2.8.0
(the PyPI build, CUDA 12.8, which runs on CPU), numpy 1.26.2, pandas, soundfile, scipy, matplotlib,
every version taken from the lock export in tests/real_indextts/requirements-v2.0.0.txt (used as
constraints). Like a uv-made venv it has no pip. It deliberately lacks what only we need
(prometheus_client, espeakng-loader, tomli): the launcher's overlay must add those.

Built with uv (what IndexTTS users build with); uv itself comes from PyPI into
~/.cache/itts-launcher/tools/uv when it is not on PATH. Cached under
~/.cache/itts-launcher/envs/<name>-<key>, key = sha256 of the interpreter version, the package list
and the constraints file, so a changed lock builds a new env and a warm run reuses the old one.

    python -m tests.userenvs gradio5      # build (or find) it and print the path and the time taken
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("ITTS_LAUNCHER_CACHE", Path.home() / ".cache" / "itts-launcher"))
V2_LOCK_EXPORT = ROOT / "tests" / "real_indextts" / "requirements-v2.0.0.txt"


def find_py310() -> str:
    """IndexTTS v2.0.0's envs are Python 3.10: $ITTS_PY310, else pyenv's, else python3.10 on PATH
    (the first that runs and says 3.10; "" when none does)."""
    for cand in (os.environ.get("ITTS_PY310"), os.path.expanduser("~/.pyenv/versions/3.10.13/bin/python"),
                 shutil.which("python3.10")):
        if cand and os.access(cand, os.X_OK):
            p = subprocess.run([cand, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True)
            if p.returncode == 0 and p.stdout.strip() == "True":
                return cand
    return ""


PY310 = find_py310()

GRADIO5 = {
    "python": PY310,
    "constraints": V2_LOCK_EXPORT,
    "packages": ["gradio==5.45.0", "gradio-client==1.13.0", "torch", "numpy", "pandas", "soundfile",
                 "scipy", "matplotlib"],
}


# the same env with a prometheus_client older than requirements-userenv.txt allows: adding ours
# must fail, naming it, and change nothing
OLD_PROMETHEUS = dict(GRADIO5, packages=[*GRADIO5["packages"], "prometheus-client==0.16.0"])
SPECS = {"gradio5": GRADIO5, "gradio5-oldprom": OLD_PROMETHEUS}


class Unavailable(Exception):
    """The env cannot be built here (no interpreter, registry unreachable): tests skip with this."""


def registry_reachable(timeout: float = 10.0) -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/gradio/", timeout=timeout).close()
        return True
    except OSError:
        return False


def find_uv() -> str:
    uv = shutil.which("uv")
    if uv:
        return uv
    tools = CACHE / "tools" / "uv"
    exe = tools / "bin" / "uv"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(tools), "uv"],
                       check=True, capture_output=True, text=True)
    return str(exe)


def python_version(py: str) -> str:
    return subprocess.run([py, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def env_path(name: str, spec: dict) -> Path:
    key = hashlib.sha256("\n".join([python_version(spec["python"]), *spec["packages"],
                                    Path(spec["constraints"]).read_text()]).encode()).hexdigest()[:12]
    return CACHE / "envs" / f"{name}-{key}"


def build(name: str = "gradio5") -> tuple[Path, float, bool]:
    """Return (env dir, seconds spent, built_now). Raises Unavailable when it cannot be built."""
    spec = SPECS[name]
    if not spec["python"]:
        raise Unavailable("no Python 3.10 found (set ITTS_PY310=/path/to/python3.10)")
    env = env_path(name, spec)
    stamp = env / ".complete"
    t = time.monotonic()
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f".{env.name}.lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)  # two test runs must not build the same env at once
        if stamp.exists():
            return env, time.monotonic() - t, False
        if not registry_reachable():
            raise Unavailable("PyPI (https://pypi.org) is unreachable and the env is not cached yet")
        shutil.rmtree(env, ignore_errors=True)
        uv = find_uv()
        run = lambda *a: subprocess.run(a, capture_output=True, text=True)  # noqa: E731
        p = run(uv, "venv", "-q", "--python", spec["python"], str(env))
        if p.returncode == 0:
            p = run(uv, "pip", "install", "-q", "--python", str(env / "bin" / "python"),
                    "-c", str(spec["constraints"]), *spec["packages"])
        if p.returncode != 0:
            shutil.rmtree(env, ignore_errors=True)
            if "Failed to fetch" in p.stderr or "dns error" in p.stderr or "Connect" in p.stderr:
                raise Unavailable(f"registry unreachable while building {name}: {p.stderr.strip()[-500:]}")
            raise RuntimeError(f"building {name} failed:\n{p.stderr[-4000:]}")
        stamp.write_text(f"built in {time.monotonic() - t:.1f} s\n")
    return env, time.monotonic() - t, True


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "gradio5"
    env, secs, fresh = build(which)
    print(f"{env} ({'built' if fresh else 'cached'}; {secs:.1f} s)")
