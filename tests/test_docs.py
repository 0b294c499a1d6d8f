"""The README is a front door to docs/: every relative link in it and in docs/*.md must lead to a
file that exists and, where it names a section (#anchor), to a heading that exists there."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    out, fence = set(), False
    for line in md.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def doc_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_relative_links_lead_somewhere():
    broken = []
    for md in doc_files():
        for target in LINK.findall(re.sub(r"`[^`]*`", "", md.read_text())):  # not in code spans
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_readme_is_a_front_door():
    """What a newcomer needs on the first screen: the two commands, the IndexTTS launch line and
    where to read more; the depth lives in docs/."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    for must in ("./start_app.sh", "./run_tests.sh", "PYTHON=", "docs/img/clip.png", "## Where to read more"):
        assert must in text, must
