"""userenv.py / bootstrap.sh's use_user_env on this machine's Python 3.11 venv (Gradio 6): an env
that already has everything gets an empty overlay and no pip run. The Python 3.10 / Gradio 5 env,
where packages are added and a conflict is refused, is tests/test_gradio5_env.py."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def _userenv(*args, py=sys.executable) -> str:
    return subprocess.run([py, str(ROOT / "userenv.py"), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_missing_reads_ranges_and_markers(tmp_path):
    req = tmp_path / "req.txt"
    req.write_text("# comment\nnumpy>=1.0\nnumpy<1.0\nnot-a-real-package-xyz>=1\n"
                   'tomli>=1.1; python_version < "3.11"\n')
    assert _userenv("missing", str(req)).splitlines() == ["numpy<1.0", "not-a-real-package-xyz>=1"]


def test_constraints_are_the_envs_own_versions(tmp_path):
    out = tmp_path / "c.txt"
    _userenv("constraints", str(out))
    import gradio
    import numpy
    lines = out.read_text().splitlines()
    assert f"gradio=={gradio.__version__}" in lines and f"numpy=={numpy.__version__}" in lines
    assert all("==" in line for line in lines[1:])


def test_complete_env_needs_no_overlay_and_no_pip():
    p = subprocess.run(["bash", "-c", 'source ./bootstrap.sh && use_user_env "$0" && echo "PY=$LAUNCH_PY"',
                        sys.executable], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"PY={sys.executable}" in p.stdout
    assert "[setup] adding" not in p.stderr  # nothing missing: pip never ran
    assert _userenv("missing", str(ROOT / "requirements-userenv.txt")) == ""


def test_packages_on_the_users_pythonpath_count_as_present(tmp_path):
    """An env whose packages come from PYTHONPATH (a site dir outside the venv) needs no overlay:
    the run-time PYTHONPATH keeps them, so the missing-check must see them too (it once did not,
    and pip tried to install Gradio into the overlay of a machine with no network)."""
    import shutil
    import sysconfig
    env = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    py = str(env / "bin" / "python")
    ours = sysconfig.get_paths()["purelib"]  # this venv's site-packages: gradio, torch, ...
    overlay = _userenv("overlay", py=py)
    try:
        p = subprocess.run(["bash", "-c", 'source ./bootstrap.sh && use_user_env "$0" && echo "PY=$LAUNCH_PY"', py],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ours})
        assert p.returncode == 0, p.stderr
        assert f"PY={py}" in p.stdout and "[setup] adding" not in p.stderr, p.stderr
    finally:
        shutil.rmtree(overlay, ignore_errors=True)
