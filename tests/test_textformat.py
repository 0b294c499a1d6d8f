"""trace.txt written from the ring-buffer pages (tracing.textformat) against the kernel's own text.

Ground truth is the kernel: a real window's `trace` file, read the way the window used to read it,
is compared line for line with what the formatter writes from the same window's pages. The
windows carry what the launcher's windows carry (threads switching on both CPUs, a child born and
gone, atrace markers with non-ASCII text, softirqs, and, in a memory cgroup at its limit, memcg
reclaim with its gfp_flags). Then the policy around it (tracing.window.KernelText): the text stops
being read only after a window matched, a mismatch keeps it read, a window that lost events is
always read, and an attachment kept without its text writes the same trace.txt later.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from tracing import rawparse, textformat as T, tracefs, window as W
from tracing.instances import InstancePool

TR = tracefs.find_tracefs(mount=False)
needs_tracefs = pytest.mark.skipif(TR is None or not os.access(TR / "instances", os.W_OK),
                                   reason="no writable tracefs")


def spin(s):
    end = time.monotonic() + s
    while time.monotonic() < end:
        pass


def busy_window(w: W.TraceWindow) -> None:
    """Inside an open window: what a synthesis window holds, and more."""
    with w.stage("prepare"):
        ts = [threading.Thread(target=spin, args=(0.03,), name=f"worker-{i}") for i in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    with w.stage("vocoder · 声码器"):  # a marker with non-ASCII text
        subprocess.run([sys.executable, "-c", "pass"], check=True)  # a child born (wakeup_new) and gone
        time.sleep(0.02)
    w.marker("x" * 300)


def read_kernel_text(w: W.TraceWindow) -> str:
    """The stopped window's `trace` (not consuming), as the window itself reads it."""
    return (w.inst / "trace").read_text(errors="replace")


def written(cap: W.Capture, header: str) -> str:
    return W.written_text(T.Formatter(cap.ring, header), cap.pages, cap.text_meta, cap.cmdlines,
                          cap.capabilities["root"])


@needs_tracefs
def test_the_pages_write_the_kernels_own_text(kernel_text):
    w = W.TraceWindow()
    with w:
        busy_window(w)
    text = read_kernel_text(w)
    cap = w.collect()
    assert cap.text == text and cap.text_check  # an unchecked formatter: the window read its text
    for event in ("sched_switch: ", "sched_waking: ", "sched_wakeup: ", "sched_wakeup_new: ",
                  "tracing_mark_write: B|", "声码器"):
        assert event in text, event  # what the comparison covers
    ours = written(cap, T.header_template(text))
    assert T.first_difference(ours, text) is None
    assert ours == text


@needs_tracefs
def test_memcg_reclaim_and_its_gfp_flags_as_the_kernel_prints_them(kernel_text):
    from tests.test_findings_planted import go, memcg_reader
    with memcg_reader("textfmt", 256 << 20) as reader:  # 4x the cgroup's limit: it must reclaim
        w = W.TraceWindow(pid=reader.pid)
        with w:
            go(reader)
        text = read_kernel_text(w)
        cap = w.collect()
    assert "mm_vmscan_memcg_reclaim_begin: order=" in text and "gfp_flags=" in text
    assert T.first_difference(written(cap, T.header_template(text)), text) is None


@needs_tracefs
def test_after_one_match_windows_are_not_read_as_text_and_write_the_same(kernel_text, tmp_path):
    pool = InstancePool()
    try:
        w1 = W.TraceWindow(pool=pool)
        with w1:
            busy_window(w1)
        c1 = w1.collect()
        assert c1.text_check and kernel_text.check(c1) is True and kernel_text.trusted()
        w2 = W.TraceWindow(pool=pool)
        with w2:
            busy_window(w2)
        truth = read_kernel_text(w2)  # what the kernel would have said, read here instead of by the window
        c2 = w2.collect()
        assert c2.text is None and not c2.text_check  # not read
        ev, source = c2.events()
        assert source == "pages" and len(ev)
        assert c2.raw_text == truth  # written on demand, the same
        # the attachment kept without the text writes it again later, from its own kept formats
        from app import artifacts
        c3 = _window_on(pool)
        artifacts.keep(tmp_path, c3["cap"])
        assert not (tmp_path / artifacts.KEPT_TEXT).exists()
        meta = artifacts._read_json(tmp_path / artifacts.KEPT_META)
        assert artifacts._written_text(tmp_path, meta) == c3["truth"]
    finally:
        pool.close()


def _window_on(pool) -> dict:
    w = W.TraceWindow(pool=pool)
    with w:
        busy_window(w)
    truth = read_kernel_text(w)
    return {"cap": w.collect(), "truth": truth}


@needs_tracefs
def test_a_mismatch_keeps_the_text_read(kernel_text, monkeypatch):
    """The formatter made wrong on purpose (a flags character): every check fails, and after
    CHECKS of them the process reads every window as text, as before."""
    real = T.lat_flags
    monkeypatch.setattr(T, "lat_flags", lambda f, p: real(f, p).replace(b".", b"?", 1))
    for _ in range(kernel_text.CHECKS):
        w = W.TraceWindow()
        with w:
            busy_window(w)
        cap = w.collect()
        assert cap.text and cap.text_check
        assert kernel_text.check(cap) is False
    assert kernel_text.state == "refused" and "?" in kernel_text.difference
    w = W.TraceWindow()
    with w:
        busy_window(w)
    cap = w.collect()
    assert cap.text and not cap.text_check


@needs_tracefs
@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="needs stress-ng")
def test_a_window_that_lost_events_is_read_as_text(kernel_text):
    kernel_text.state, kernel_text.header = "trusted", "# tracer: nop\n"
    w = W.TraceWindow(buffer_kb=64)
    with w:
        subprocess.run(["stress-ng", "--switch", "2", "--timeout", "1"], capture_output=True)
    cap = w.collect()
    assert cap.lost["total"] > 0, "a 64 KB buffer under stress-ng --switch should overflow"
    assert cap.text and cap.text.startswith("# tracer:")  # the kernel's, with its loss annotations


# -- the print fmt interpreter on formats of its own ------------------------------------------------
def _fmt(print_fmt: str, fields: str = "field:unsigned long v;\toffset:8;\tsize:8;\tsigned:0;") -> rawparse.EventFormat:
    return rawparse.parse_format(f"name: ev\nID: 900\nformat:\n\t{fields}\n\nprint fmt: {print_fmt}\n")


def _rec(v: int) -> bytes:
    return bytes(8) + v.to_bytes(8, "little")


@pytest.mark.parametrize("v,want", [(0, "[none]"), (1, "[A]"), (3, "[A|B]"), (6, "[B|C]"), (0x101, "[A|0x100]")])
def test_print_flags_lists_the_set_masks_then_the_rest(v, want):
    body = T.compile_body(_fmt('"[%s]", (REC->v) ? __print_flags(REC->v, "|", { 0x1, "A" }, { 0x2, "B" }, '
                               '{ 0x4, "C" }, { 0, ((void *)0) }) : "none"'))
    assert body(_rec(v), 0).decode() == want


@pytest.mark.parametrize("v,want", [(1, "vec=1 [TIMER]"), (77, "vec=77 [0x4d]")])
def test_print_symbolic_names_a_value_or_prints_it_in_hex(v, want):
    body = T.compile_body(_fmt('"vec=%u [%s]", REC->v, __print_symbolic(REC->v, { 0, "HI" }, { 1, "TIMER" })'))
    assert body(_rec(v), 0).decode() == want


def test_printf_conversions_as_c_prints_them():
    body = T.compile_body(_fmt('"%03d|%-4d|%u|%lu|%x|%d|%d|%d", REC->v, REC->v, -1, REC->v << 2, 255, 4294967295, '
                               '(0 - REC->v) / 2, (0 - REC->v) % 3'))
    assert body(_rec(7), 0).decode() == "007|7   |4294967295|28|ff|-1|-3|-1"  # C truncates toward zero


@pytest.mark.parametrize("print_fmt", ['"%s", __print_hex(REC->v, 8)', '"%pS", REC->v', '"%d %d", REC->v'])
def test_what_it_cannot_write_it_says_at_once(print_fmt):
    with pytest.raises(T.FormatError):
        T.compile_body(_fmt(print_fmt))


def test_the_header_is_the_kernels_with_this_windows_counts():
    kernel = "# tracer: nop\n#\n# entries-in-buffer/entries-written: 12/15   #P:2\n#\n#   TASK {x}\n   a-1 ...\n"
    tmpl = T.header_template(kernel)
    assert tmpl.format(entries=3, written=4, cpus=8) == (
        "# tracer: nop\n#\n# entries-in-buffer/entries-written: 3/4   #P:8\n#\n#   TASK {x}\n")
    assert T.header_template("no header\n") is None


@pytest.mark.parametrize("flags,preempt,want", [
    (0x00, 0x00, "....."), (0x01, 0x01, "d..1."), (0x25, 0x02, "dN.2."), (0x09, 0x02, "d.h2."),
    (0x11, 0x00, "d.s.."), (0x18, 0x00, "..H.."), (0x48, 0x00, "..Z.."), (0x81, 0x00, "D...."),
    (0x80, 0x00, "b...."), (0x04, 0x00, ".n..."), (0x02, 0x00, ".l..."), (0x00, 0x21, "...12")])
def test_context_flags(flags, preempt, want):
    assert T.lat_flags(flags, preempt).decode() == want
