"""trace.dat from a real window's ring-buffer pages: trace-cmd reads what the text trace holds."""
import os
import re
import subprocess
import threading
import time
import zipfile

import pytest

from tracing import attachment as A
from tracing import tracedat, tracefs
from tracing.window import TraceWindow

TR = tracefs.find_tracefs(mount=False)
needs = pytest.mark.skipif(TR is None or not os.access(TR / "instances", os.W_OK) or tracedat.trace_cmd() is None,
                           reason="needs a writable tracefs and trace-cmd")


def _window(cpus=None):
    """A window with two stages, a sleeping helper thread and some spinning (context switches)."""
    w = TraceWindow(cpus=cpus)
    with w:
        with w.stage("text"):
            t = threading.Thread(target=time.sleep, args=(0.02,))
            t.start()
            end = time.monotonic() + 0.03
            while time.monotonic() < end:
                time.sleep(0.001)
            t.join()
        with w.stage("vocoder"):
            sum(range(200000))
    return w.collect()


def _report(path):
    return subprocess.run(["trace-cmd", "report", "-i", str(path)], capture_output=True, text=True,
                          errors="replace", check=True).stdout


@needs
def test_trace_dat_has_every_sched_switch_and_our_markers(tmp_path):
    cap = _window()
    dat = tracedat.write_trace_dat(tmp_path / "trace.dat", cap.pages, cap.capabilities["root"], cap.ring.page_size)
    out = _report(dat)
    n_text = len(re.findall(r" sched_switch: ", cap.raw_text))
    assert n_text > 20
    assert len(re.findall(r" sched_switch: ", out)) == n_text
    assert len(re.findall(r" sched_waking: ", out)) == len(re.findall(r" sched_waking: ", cap.raw_text))
    pid = os.getpid()
    # the stage markers, as the text trace prints them (the marker symbol resolves)
    assert f"tracing_mark_write: B|{pid}|text" in out and f"tracing_mark_write: B|{pid}|vocoder" in out
    assert out.count(f"tracing_mark_write: E|{pid}") == 2
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tracedat-")]  # temp dir gone
    # small: only our event systems and one kernel symbol in the header
    assert os.path.getsize(dat) < 400_000 + sum(map(len, cap.pages.values()))


@needs
def test_untraced_cpu_gets_an_empty_file(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    if max(cpus) == 0:
        pytest.skip("needs a CPU above 0")
    cap = _window(cpus=[max(cpus)])  # CPU 0 not in the window: its file is empty
    assert set(cap.pages) == {max(cpus)}
    out = _report(tracedat.write_trace_dat(tmp_path / "t.dat", cap.pages, cap.capabilities["root"],
                                           cap.ring.page_size))
    assert len(re.findall(r" sched_switch: ", out)) == len(re.findall(r" sched_switch: ", cap.raw_text))


@needs
def test_attachment_carries_it(tmp_path):
    cap = _window()
    dat = tracedat.write_trace_dat(tmp_path / "trace.dat", cap.pages, cap.capabilities["root"], cap.ring.page_size)
    dest = A.build_attachment(tmp_path / "trace.zip", cap.raw_text, {"breakdown": {"mode": "full"}}, "r", None,
                              trace_dat=dat)
    v = A.validate_attachment(dest)
    assert v["ok"], v["problems"]
    assert v["members"]["trace.dat"] == os.path.getsize(dat)
    with zipfile.ZipFile(dest) as zf:
        out_dir = tmp_path / "unzipped"
        zf.extractall(out_dir)
    txt = (out_dir / "trace.txt").read_text()
    out = _report(out_dir / "trace.dat")
    assert len(re.findall(r" sched_switch: ", out)) == len(re.findall(r" sched_switch: ", txt))


def test_not_a_trace_dat_is_flagged(tmp_path):
    bogus = tmp_path / "x.dat"
    bogus.write_bytes(b"not a trace")
    dest = A.build_attachment(tmp_path / "t.zip", None, {}, "r", None, trace_dat=bogus)
    assert "trace.dat is not a trace-cmd file" in A.validate_attachment(dest)["problems"]


def test_refusals_say_why(tmp_path, monkeypatch):
    with pytest.raises(tracedat.TraceDatError, match="no ring-buffer pages"):
        tracedat.write_trace_dat(tmp_path / "a.dat", {}, "/sys/kernel/tracing", 4096)
    with pytest.raises(tracedat.TraceDatError, match="sub-buffers are 8192 bytes"):
        tracedat.write_trace_dat(tmp_path / "a.dat", {0: b"x" * 8192}, "/sys/kernel/tracing", 8192)
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without trace-cmd
    assert tracedat.trace_cmd() is None
    with pytest.raises(tracedat.TraceDatError, match="trace-cmd is not installed"):
        tracedat.write_trace_dat(tmp_path / "a.dat", {0: b"x" * 4096}, "/sys/kernel/tracing", 4096)
    assert not (tmp_path / "a.dat").exists()
