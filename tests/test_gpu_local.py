"""The GPU-local preset: sysfs read against a fake /sys laid out like the real one, the preset put
into a PresetSet and applied for real, and the real refusal on this GPU-less machine (through the
service's wiring and through the running server's API)."""
from __future__ import annotations

import os

import pytest

from app.device_view import offer_gpu_local
from tuning import gpu_local as G
from tuning.apply import Tuner, TuningError
from tuning.presets import PresetError, PresetSet, load_presets


def fake_sys(root, bdf="0000:3b:00.0", cpulist="0-15,32-47", node="1"):
    d = root / "bus" / "pci" / "devices" / bdf
    d.mkdir(parents=True)
    if cpulist is not None:
        (d / "local_cpulist").write_text(cpulist + "\n")
    if node is not None:
        (d / "numa_node").write_text(node + "\n")
    return root


def test_bus_ids_as_cuda_and_nvidia_smi_print_them():
    assert G.normalize_bdf("00000000:3B:00.0") == "0000:3b:00.0"
    assert G.normalize_bdf("0000:3b:00.0") == "0000:3b:00.0"
    assert G.normalize_bdf("3B:00.0") == "0000:3b:00.0"
    with pytest.raises(ValueError):
        G.normalize_bdf("cuda:0")


def test_local_cpus_from_a_fake_sysfs(tmp_path):
    root = fake_sys(tmp_path)
    gl = G.gpu_local("00000000:3B:00.0", str(root), allowed_cpus=range(64))
    assert gl.preset is not None and gl.preset.cpus == "0-15,32-47" and gl.numa_node == 1
    assert gl.source == str(root / "bus/pci/devices/0000:3b:00.0/local_cpulist")
    assert "NUMA node 1" in gl.preset.description and gl.source in gl.line()
    # only the CPUs this process may use; none of them: refused with both lists
    assert G.gpu_local("3b:00.0", str(root), allowed_cpus={1, 2, 40}).preset.cpus == "1-2,40"
    none = G.gpu_local("3b:00.0", str(root), allowed_cpus={20, 21})
    assert none.preset is None and "0-15,32-47" in none.reason and "20-21" in none.reason
    # numa_node -1: the platform does not say
    gl = G.gpu_local("0000:af:00.0", str(fake_sys(tmp_path / "b", "0000:af:00.0", "8-9", "-1")), range(16))
    assert gl.numa_node is None and "NUMA node unknown" in gl.line()


def test_refusals_say_why(tmp_path):
    assert "runs on cpu" in G.gpu_local(None, no_gpu_reason="the engine runs on cpu").reason
    missing = G.gpu_local("0000:01:00.0", str(tmp_path))
    assert missing.preset is None and "local_cpulist does not exist" in missing.reason
    bad = G.gpu_local("0000:3b:00.0", str(fake_sys(tmp_path / "c", cpulist="garbage")))
    assert bad.preset is None and "cannot read" in bad.reason


def test_offer_refuse_and_operator_allowed_lists(tmp_path):
    ps = load_presets()
    G.offer(ps, G.gpu_local("3b:00.0", str(fake_sys(tmp_path)), allowed_cpus=range(64)))
    assert G.NAME in ps and G.NAME in ps.allowed
    G.offer(ps, G.gpu_local(None, no_gpu_reason="no GPU here"))
    assert G.NAME not in ps and G.NAME not in ps.allowed and ps.refused[G.NAME] == "no GPU here"
    with pytest.raises(TuningError, match="'gpu-local' refused: no GPU here"):
        Tuner(ps).apply(G.NAME)
    # an operator's allowed list may name it before it exists; leaving it out keeps it off
    f = tmp_path / "ops.toml"
    f.write_text('allowed = ["default", "gpu-local"]\n')
    ps = load_presets(str(f))
    assert ps.restricted and ps.allowed == ["default", "gpu-local"]
    f.write_text('allowed = ["default"]\n')
    ps = load_presets(str(f))
    G.offer(ps, G.gpu_local("3b:00.0", str(fake_sys(tmp_path / "d")), allowed_cpus=range(64)))
    assert G.NAME in ps and ps.allowed == ["default"]
    f.write_text('allowed = ["nope"]\n')
    with pytest.raises(PresetError):
        load_presets(str(f))


def test_the_fake_gpus_preset_applies_for_real(tmp_path):
    """A GPU whose local CPUs are this machine's last CPU: the tuner pins for real and restores."""
    cpus = sorted(os.sched_getaffinity(0))
    ps = load_presets()
    G.offer(ps, G.gpu_local("3b:00.0", str(fake_sys(tmp_path, cpulist=str(cpus[-1]))), allowed_cpus=cpus))
    t = Tuner(ps)
    try:
        t.apply(G.NAME)
        rb = t.readback()
        assert rb["preset"] == G.NAME and all(th["cpus"] == str(cpus[-1]) for th in rb["threads"] if not th.get("aux"))
    finally:
        t.apply("default")
        t.close()


def test_real_machine_without_gpu_refuses():
    from models.builtin import BuiltinEngine
    ps = load_presets()
    gl = offer_gpu_local(BuiltinEngine(), ps, sorted(os.sched_getaffinity(0)))
    assert gl.preset is None and gl.reason == "the serving engine runs on cpu, not on a GPU"
    assert ps.refused == {G.NAME: gl.reason} and G.NAME not in ps.allowed
    assert gl.line() == "**gpu-local**: not offered: the serving engine runs on cpu, not on a GPU"


def test_server_refuses_it_with_the_reason(client, server):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="'gpu-local' refused: the serving engine runs on"):
        client.predict("gpu-local", api_name="/apply_preset")
    assert "GPU-local preset: gpu-local: not offered" in server.output()
    assert isinstance(PresetSet().refused, dict)


@pytest.mark.slow  # starts webui.py (~15 s)
def test_launch_flag_is_deferred_then_refused_with_the_reason(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT
    r = subprocess.run([sys.executable, "webui.py", "--engine", "builtin", "--no-warmup", "--preset", "gpu-local",
                        "--outputs", str(tmp_path / "o"), "--port", "7999"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2
    assert "error: Preset 'gpu-local' refused: the serving engine runs on cpu, not on a GPU." in r.stderr
    r = subprocess.run([sys.executable, "webui.py", "--preset", "gpu-local", "--nice", "5"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot be combined" in r.stderr
