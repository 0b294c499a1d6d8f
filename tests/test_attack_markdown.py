"""Attack 10, the rendering half: names a local user chooses for a process reach Markdown views
(findings, clip header). Every variant below must render to its own text and nothing else: no
element, no link, no image, no line break. Rendered with markdown-it-py (CommonMark, HTML on) --
the same grammar as marked in the browser; tests/e2e covers Gradio's own rendering."""
from __future__ import annotations

import os
import re

import pytest
from markdown_it import MarkdownIt

from tracing.mdsafe import md_text

# TASK_COMM_LEN is 16: a comm is at most 15 bytes, but other sources (latency task, thread names
# read back) are not bounded the same way, so longer ones are tried too
ATTACKS = ["<b>x</b>**y**", "[x](//host)", "![](//host)", "<img src=x>", "`code`", "http://e.co/x",
           "www.evil.com", "# heading", "- item", "1. item", "a|b|c", "> quote", "x\ny", "\u202egnp.exe",
           "<script>alert(1)</script>", "&lt;b&gt;", "\\*x\\*", "***", "[a]: //host", "<//host>", "~~s~~",
           "kworker/1:2H", "ittsw-hog", "$$x$$", "_x_", "<!-- c -->", "a\\", "x  \n", "[x][y]", "{}"]


def render(md: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).render(md)


def visible_text(html: str) -> str:
    import html as H
    return H.unescape(re.sub(r"<[^>]+>", "", html))


@pytest.mark.parametrize("comm", ATTACKS)
@pytest.mark.parametrize("context", ["{}", "**CPU contention:** {} (pid 7) held our CPU", "- {}", "| {} |"])
def test_escaped_name_renders_as_itself(comm, context):
    html = render(context.format(md_text(comm)))
    tags = set(re.findall(r"<\s*([a-zA-Z0-9]+)", html))
    wanted = set(re.findall(r"<\s*([a-zA-Z0-9]+)", render(context.format("NAME"))))
    assert tags == wanted, (comm, html)  # no element beyond the context's own
    assert not re.search(r"<a\s|href=|<img", html), (comm, html)
    shown = visible_text(html).strip()
    safe = comm.replace("\n", "\ufffd").replace("\u202e", "\ufffd")
    assert shown == visible_text(render(context.format("NAME"))).strip().replace("NAME", safe), (comm, shown)


def test_unescaped_names_do_form_elements():
    """The check above can fail: the same names unescaped do make tags, links and images."""
    assert "<b>" in render("<b>x</b>**y**") and "href" in render("[x](//host)") and "<img" in render("![](//host)")


# ------------------------------------------------------------ through the real server ----
HOG_NAMED = r"""
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
with open("/proc/self/comm", "wb") as f:
    f.write(sys.argv[2].encode()[:15])
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:        # bounded: 10 ms of CPU, 30 ms asleep
    t = time.monotonic() + 0.01
    while time.monotonic() < t:
        pass
    time.sleep(0.03)
"""
HOSTILE = [["<b>x</b>**y**", "[x](//h.co)"], ["![](//h.co)", "http://e.co/x"], ["<img src=x>", "`x`|a\nb", "a$x^{$"]]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for SCHED_FIFO")
def test_hostile_process_names_reach_the_panel_escaped(tmp_path, servers):
    """Processes with hostile names preempt synthesis (SCHED_FIFO, on its CPU) so they become
    blockers and are named by findings; every Markdown view of the clip shows them as text, and
    the timeline PNG draws them (a '$' pair was mathtext: the picture failed, with a note)."""
    import subprocess
    import sys

    from gradio_client import Client
    from tests.conftest import Server

    cpu = max(os.sched_getaffinity(0))
    srv = Server(tmp_path, "--no-warmup", "--cpus", str(cpu))
    servers.append(srv.start())
    c = Client(srv.url, verbose=False)
    named = 0
    for names in HOSTILE:
        hogs = [subprocess.Popen([sys.executable, "-c", HOG_NAMED, str(cpu), n, "20"], stdout=subprocess.PIPE,
                                 text=True) for n in names]
        try:
            assert all(h.stdout.readline().strip() == "ready" for h in hogs)
            out = c.predict(text="Hostile names around. " * 6, api_name="/synthesize")
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        hist = c.predict(out[1], api_name="/clip")
        assert "could not be drawn" not in hist[2], hist[2]
        comms = {b["comm"] for b in out[9]["breakdown"]["blockers"]} & {n.encode()[:15].decode() for n in names}
        for md, own_code in ((out[2], 1), (out[6], 0), (hist[2], 1), (hist[6], 0)):
            html = render(md)
            assert not re.search(r"<a\s|href=|<img|<b>", html), html
            assert html.count("<code>") == own_code, html  # the head's request id only
            for comm in comms:
                assert comm not in md or comm.isalnum()
                named += md_text(comm) in md
    assert named, "no hostile name reached a Markdown view: the case was not tried"


def test_markdown_views_of_kernel_names_render_no_math(server):
    """md_text's escapes are consumed by Markdown before the browser's KaTeX pass looks for "$$":
    the views that show process names must have no math delimiters (app/ui/common.KERNEL_MD)."""
    import json
    import urllib.request
    config = json.loads(urllib.request.urlopen(server.url + "config", timeout=10).read())
    props = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c.get("type") == "markdown"}
    for eid in ("clip_head", "findings", "hist_clip_head", "hist_findings", "sched_state"):
        assert eid in props, sorted(k for k in props if k)
        assert props[eid].get("latex_delimiters") == [], (eid, props[eid].get("latex_delimiters"))
