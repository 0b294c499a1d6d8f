"""Pressure snapshots end to end: real engine (builtin), real tracefs windows, real stress-ng.

The planted regression is the pressure the issue reported, `stress-ng --cpu 2 --vm 1 --vm-bytes
512M` at nice 0 against the default preset, and the gate is tested with its defaults
(tracing/diff.py, tracing/stats.py). The hog must stay in the test's session: with
kernel.sched_autogroup_enabled=1 (as here) a hog started with setsid gets its own autogroup, which
competes as one entity and barely counts (measured with a nice -10 hog: +50 ms run-queue wait
instead of +1.2 s).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, our_instances

pytestmark = pytest.mark.slow
TEXT = "Hello there, this is a short test sentence."


def run_cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    from models.base import NullStages, SynthesisRequest
    from models.registry import create_engine
    from app.service import Service
    from app.store import ClipStore
    from tracing.tracefs import find_tracefs
    from tuning.apply import Tuner
    from tuning.presets import load_presets

    eng = create_engine("builtin")
    s = Service(eng, Tuner(load_presets()), ClipStore(tmp_path_factory.mktemp("clips")), trace_root=find_tracefs(None))
    eng.synthesize(SynthesisRequest(text=TEXT), NullStages())
    yield s
    s.close()


def test_cli_snapshot_in_process(tmp_path):
    from tracing.tracefs import probe
    out = tmp_path / "snap"
    r = run_cli("snapshot", str(out), "-n", "3", "--presets", "default,pinned", "--engine", "builtin",
                "--label", "ci", "--text", TEXT)
    assert r.returncode == 0, r.stderr[-3000:]
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["n"] == 3 and man["presets"] == ["default", "pinned"]
    assert man["engine"] == "builtin" and man["kernel"] == os.uname().release and man["label"] == "ci"
    have = set(probe(None).latency_tracers)
    for t, v in man["latency_tracers"].items():  # this kernel has none: "not available" recorded
        assert v == ("available" if t in have else "not available")
    assert len(man["requests"]) == 6
    for req in man["requests"]:
        d = out / req["dir"]
        summary = json.loads((d / "summary.json").read_text())
        assert summary["breakdown"]["totals"]["wall_s"] > 0 and summary["preset_requested"] == req["preset"]
        assert (summary["preset"] or {}).get("preset") == req["preset"]
        with zipfile.ZipFile(d / "trace.zip") as z:
            assert "summary.json" in z.namelist()
    assert "default" in r.stdout and "pinned" in r.stdout and "run-queue p50 ms" in r.stdout
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    # an existing non-empty directory is refused, nothing overwritten
    r2 = run_cli("snapshot", str(out), "-n", "1", "--engine", "builtin")
    assert r2.returncode == 2 and "not empty" in r2.stderr
    assert our_instances(os.getpid()) == []


class Pressure:
    """The issue's pressure, `stress-ng --cpu 2 --vm 1 --vm-bytes 512M` at nice 0, switched on for
    the loaded snapshot's requests only (SIGCONT before, SIGSTOP after), so the quiet and loaded
    requests can be interleaved one by one: this box is shared with other suites whose load comes
    and goes (load average 5-13 measured while writing this), and interleaving gives all three
    snapshots the same background. Its own process group (for killpg) but the test's session:
    with autogroups a setsid hog competes as one entity and barely counts (module docstring)."""

    WORKERS = 3

    def __init__(self):
        self.proc = None

    def _start(self) -> None:
        self.proc = subprocess.Popen(["stress-ng", "--cpu", "2", "--vm", "1", "--vm-bytes", "512M",
                                      "--timeout", "600s", "--quiet"], process_group=0)
        _wait_for_workers(self.proc.pid, self.WORKERS)

    def alive(self) -> bool:
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return False
        return self.proc.poll() is None and len(kids) >= self.WORKERS

    def on(self) -> None:
        if self.proc is None or not self.alive():
            self.stop()
            self._start()
        os.killpg(self.proc.pid, signal.SIGCONT)
        time.sleep(0.2)  # the vm worker touches its pages again before the request starts

    def off(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)  # a stopped process group would not see SIGTERM
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _wait_for_workers(pid: int, n: int, timeout: float = 20.0) -> None:
    """stress-ng forks its workers after start-up; a request taken before would see no hog."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        if len(kids) >= n:
            time.sleep(0.3)
            return
        time.sleep(0.1)
    pytest.fail(f"stress-ng did not start {n} workers in {timeout} s")


N_BASE, N_NEW = 20, 10  # baseline as the issue's; 10 new requests resolve this effect (docs/snapshots.md power table)


def test_default_gate_catches_stress_ng_and_passes_quiet(svc, tmp_path):
    """Quiet baseline (N=20) vs the issue's stress-ng pressure, default preset, default diff flags:
    exit 1 with a tail or median verdict on wall / run-queue wait; a second quiet snapshot taken
    alongside: exit 0."""
    if not shutil.which("stress-ng"):
        pytest.fail("stress-ng is required (run_tests.sh installs it)")
    from models.base import SynthesisRequest
    from tracing.snapshot import SnapshotWriter, new_manifest, summary_from_attachment
    dirs = {k: tmp_path / k for k in ("quiet-a", "quiet-c", "loaded")}
    ws = {k: SnapshotWriter(d, new_manifest("in-process", ["default"], N_BASE if k == "quiet-a" else N_NEW, TEXT,
                                            label=k, engine=svc.engine.name)) for k, d in dirs.items()}
    hog = Pressure()
    t0 = time.monotonic()
    try:
        for i in range(N_BASE):
            for k, w in ws.items():
                if k != "quiet-a" and i >= N_NEW:
                    continue
                if k == "loaded":
                    hog.on()
                rec = svc.synthesize(SynthesisRequest(text=TEXT), preset="default", scope="request", trace=True)
                if k == "loaded":
                    hog.off()
                zip_path = svc.attachment(rec)
                w.add("default", summary_from_attachment(zip_path), zip_path)
    finally:
        hog.stop()
    for w in ws.values():
        w.close()
    took = time.monotonic() - t0

    r = run_cli("diff", str(dirs["quiet-a"]), str(dirs["loaded"]), "--json", str(tmp_path / "d.json"))
    assert r.returncode == 1, r.stdout + r.stderr
    d = json.loads((tmp_path / "d.json").read_text())
    hits = [x for x in d["regressions"] if x.split(" tail")[0] in ("default: wall", "default: run-queue wait")]
    assert hits, r.stdout
    assert any(l.startswith(("REGRESSION", "TAIL REGRESSION")) for l in r.stdout.splitlines()), r.stdout
    assert "blocker appeared (default): stress-ng" in r.stdout, r.stdout

    q = run_cli("diff", str(dirs["quiet-a"]), str(dirs["quiet-c"]))
    assert q.returncode == 0, q.stdout + q.stderr
    assert "No significant regression" in q.stdout
    assert our_instances(os.getpid()) == []
    print(f"\n{3 * N_NEW + N_BASE - N_NEW} requests in {took:.0f} s\n{r.stdout}")
