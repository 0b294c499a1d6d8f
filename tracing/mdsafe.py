"""Text that is not ours (process names: any local user picks them with prctl or by naming a
binary; latency tracers' task fields) made inert for the web UI's Markdown views.

`md_text` backslash-escapes every ASCII punctuation character (CommonMark allows it for each one,
and marked, Gradio's renderer, honours it), so no tag (`<b>`), emphasis (`**`), link (`[x](//h)`),
image (`![](//h)`), code span, table pipe or bare-URL autolink (`http://`, `www.`) can form, and
replaces control and format characters (newlines, bidi overrides) with U+FFFD so nothing starts a
new block or reorders the line. The rendered text reads exactly as the kernel reported it.
Plain-text outputs (report.txt, the CLI, Dataframe cells) are left as they are.

`mpl_text` does the same for the matplotlib pictures (the timeline PNG): there an unescaped '$'
pair starts mathtext, and a task named `a$x^{$` failed the whole render (the clip lost its picture).
"""
from __future__ import annotations

import re
import unicodedata

_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")  # all 32 ASCII punctuation characters


def md_text(value) -> str:
    """`value` as Markdown that renders to exactly its characters (see the module docstring)."""
    s = "".join(c if unicodedata.category(c)[0] != "C" else "\ufffd" for c in str(value))
    return _PUNCT.sub(r"\\\1", s)


def mpl_text(value) -> str:
    """`value` as matplotlib text that draws exactly its characters: every '$' escaped, so no
    mathtext forms (matplotlib reads '\\$' as a literal '$')."""
    return str(value).replace("$", r"\$")
