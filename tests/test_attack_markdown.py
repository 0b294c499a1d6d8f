"""Attack 10, the rendering half: names a local user chooses for a process reach Markdown views
(findings, clip header). Every variant below must render to its own text and nothing else: no
element, no link, no image, no line break. Rendered with markdown-it-py (CommonMark, HTML on) --
the same grammar as marked in the browser; tests/e2e covers Gradio's own rendering."""
from __future__ import annotations

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
