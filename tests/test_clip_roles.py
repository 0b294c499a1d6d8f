"""A real clip through the Service: its breakdown names the synthesis thread and torch's workers
by role (checked against the thread ids the service knows), and its attachment carries a trace.dat
that trace-cmd reads with as many sched_switch events as trace.txt."""
from __future__ import annotations

import os
import re
import subprocess
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from models.base import SynthesisRequest
from app.service import Service
from app.store import ClipStore
from tracing import tracedat, tracefs
from tuning.apply import Tuner
from tuning.presets import load_presets
from tuning.roles import get_comm

TR = tracefs.find_tracefs(mount=False)
pytestmark = pytest.mark.skipif(TR is None or not os.access(TR / "instances", os.W_OK),
                                reason="no writable tracefs")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from models.builtin import BuiltinEngine
    torch = pytest.importorskip("torch")
    if torch.get_num_threads() < 2:
        torch.set_num_threads(2)
    svc = Service(BuiltinEngine(), Tuner(load_presets()), ClipStore(tmp_path_factory.mktemp("out")))
    # synthesis on a worker thread, as under Gradio
    with ThreadPoolExecutor(1) as pool:
        pool.submit(svc.synthesize, SynthesisRequest(text="Warm. 预热。")).result()  # torch's team is up
        tid = pool.submit(threading.get_native_id).result()
        rec = pool.submit(svc.synthesize, SynthesisRequest(
            text="Roles in the kernel. 线程按角色命名。 The vocoder runs on torch's workers.")).result()
        comms = {t: get_comm(t) for t in rec.roles}
    yield svc, rec, tid, comms
    svc.close()


def test_breakdown_names_synthesis_thread_and_torch_workers(clip):
    svc, rec, tid, comms = clip
    roles = rec.roles
    assert svc.roles.synthesis_tid == tid and roles[tid] == "synthesis" and comms[tid] == "tts-synth"
    intra = {t for t, k in roles.items() if k == "torch-intra"}
    assert intra and all(re.fullmatch(r"torch-intra-\d+", comms[t]) for t in intra)
    aux = {t for t, k in roles.items() if k == "trace-aux"}
    assert aux and all(comms[t] == "trace-aux" for t in aux)
    rows = {t["tid"]: t for t in rec.breakdown["threads"]}
    assert rows[tid]["comm"] == "tts-synth" and rows[tid]["role"] == "synthesis"
    seen_intra = intra & rows.keys()
    assert seen_intra, f"no torch worker ran in the window: {rows}"
    for t in seen_intra:
        assert rows[t]["comm"] == comms[t] and rows[t]["role"] == "torch-intra"
    # threads we did not identify keep the kernel's comm and no role
    for t, row in rows.items():
        if t not in roles:
            assert row["role"] is None and not row["comm"].startswith(("tts-synth", "torch-intra"))


def test_attachment_trace_dat_matches_trace_txt(clip, tmp_path):
    svc, rec, _, _ = clip
    if tracedat.trace_cmd() is None:
        pytest.skip("trace-cmd not installed")
    with zipfile.ZipFile(svc.attachment(rec)) as zf:
        assert "trace.dat" in zf.namelist(), rec.notes
        txt = zf.read("trace.txt").decode()
        dat = zf.read("trace.dat")
    assert not os.path.exists(os.path.join(os.path.dirname(rec.attachment_path), ".trace.dat"))
    (tmp_path / "trace.dat").write_bytes(dat)
    out = subprocess.run(["trace-cmd", "report", "-i", str(tmp_path / "trace.dat")], capture_output=True,
                         text=True, errors="replace", check=True).stdout
    n = len(re.findall(r" sched_switch: ", txt))
    assert n > 0 and len(re.findall(r" sched_switch: ", out)) == n
    assert "tracing_mark_write: B|" in out  # our stage markers
    assert "tts-synth" in out  # the role names, in the events' comm fields


def test_trace_dat_failure_keeps_the_clip(tmp_path, monkeypatch):
    """trace-cmd failing (here: a stand-in that exits 1) costs the clip its trace.dat, nothing else."""
    from models.builtin import BuiltinEngine
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "trace-cmd").write_text("#!/bin/sh\necho 'restore: broken on purpose' >&2\nexit 1\n")
    (fake / "trace-cmd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    svc = Service(BuiltinEngine(), Tuner(load_presets()), ClipStore(tmp_path / "out"))
    try:
        rec = svc.synthesize(SynthesisRequest(text="No trace.dat this time."))
        svc.attachment(rec)
    finally:
        svc.close()
    assert rec.breakdown["mode"] == "full"
    assert any("No trace.dat in the attachment" in n and "exit 1" in n for n in rec.notes), rec.notes
    assert svc.store.get(rec.id)["notes"] == rec.notes  # the history's record says so too
    with zipfile.ZipFile(rec.attachment_path) as zf:
        assert "trace.dat" not in zf.namelist() and "trace.txt" in zf.namelist()
    assert not list((tmp_path / "out").rglob(".trace.dat"))
