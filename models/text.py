"""Text front end of the builtin engine: pure functions, each step callable on its own.

Pipeline used by `prepare()`:
  clean_text -> normalize_punctuation -> expand_numbers -> segment -> language_runs (per segment)

Token count (`count_tokens`), the unit of `max_text_tokens_per_segment`: one token per CJK
character, one per Latin word (a run of letters/apostrophes), one per digit group, and one per
sentence-level punctuation mark. This approximates IndexTTS2's BPE count for Chinese (about one
token per character) and is a little below it for English (BPE splits long words).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

# CJK unified ideographs (+ extension A, compatibility) -- what eSpeak's cmn voice reads.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
_LATIN_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")

SENTENCE_END = "。！？!?.;；…"
CLAUSE_BREAK = "，,、：:；;"


def clean_text(text: str) -> str:
    """NFKC-normalise full-width letters/digits to ASCII and remove control/format characters
    (newlines and tabs become spaces); collapse runs of whitespace."""
    out = []
    for ch in text:
        if ch in "\n\r\t\v\f":
            out.append(" ")
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        out.append(ch)
    s = "".join(out)
    # NFKC maps full-width ASCII (Ａ１) to ASCII; punctuation is handled below, so keep it apart.
    s = "".join(unicodedata.normalize("NFKC", c) if "\uff10" <= c <= "\uff5a" else c for c in s)
    return re.sub(r"\s+", " ", s).strip()


_PUNCT_MAP = {
    "“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "「": '"', "」": '"', "『": '"', "』": '"',
    "《": '"', "》": '"', "〈": '"', "〉": '"', "【": "(", "】": ")", "（": "(", "）": ")",
    "—": "，", "–": "，", "～": "，", "~": "，", "·": " ", "•": " ",
    "．": ".", "｡": "。", "､": "、", "…": "…",
}
_HALF_TO_FULL = {",": "，", ".": "。", "!": "！", "?": "？", ";": "；", ":": "："}


def normalize_punctuation(text: str) -> str:
    """Map quote/bracket/dash variants to a small set, and use full-width ，。！？；： after CJK
    characters (ASCII punctuation after Latin text stays ASCII, so "3.5" and "e.g." survive).
    "..." and "……" become a single "…"."""
    s = re.sub(r"\.{3,}|…+|。{2,}", "…", text)
    s = re.sub(r"-{2,}|—+", "—", s)
    s = "".join(_PUNCT_MAP.get(c, c) for c in s)
    s = re.sub(f"(?<=[{_CJK}])\\s*([,.!?;:])(?![0-9])", lambda m: _HALF_TO_FULL[m.group(1)], s)
    # full-width marks followed by Latin text keep a space, so word boundaries survive
    return re.sub(r"\s+", " ", s).strip()


# ---------------------------------------------------------------- numbers
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand")]


def number_to_words_en(n: int) -> str:
    """Cardinal number in English words (n >= 0)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + (" " + number_to_words_en(rest) if rest else "")
    for value, word in _SCALES:
        if n >= value:
            rest = n % value
            return number_to_words_en(n // value) + " " + word + (" " + number_to_words_en(rest) if rest else "")
    raise AssertionError("unreachable")


_ZH_DIGITS = "零一二三四五六七八九"
_ZH_UNITS = ["", "十", "百", "千"]
_ZH_BIG = ["", "万", "亿", "万亿"]


def number_to_zh(n: int) -> str:
    """Cardinal number read in Chinese (123 -> 一百二十三, 10005 -> 一万零五, 12 -> 十二)."""
    if n == 0:
        return "零"
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out = ""
    zero_pending = False
    for gi in range(len(groups) - 1, -1, -1):
        g = groups[gi]
        if g == 0:
            zero_pending = bool(out)
            continue
        if out and (zero_pending or g < 1000):
            out += "零"
        part = ""
        z = False
        for ui in range(3, -1, -1):
            d = (g // 10 ** ui) % 10
            if d == 0:
                z = bool(part)
                continue
            if z:
                part += "零"
                z = False
            part += _ZH_DIGITS[d] + _ZH_UNITS[ui]
        out += part + _ZH_BIG[gi]
        zero_pending = False
    if out.startswith("一十"):
        out = out[1:]  # 十二, not 一十二
    return out


def digits_to_zh(s: str) -> str:
    """Read digit by digit (years, phone numbers): 2024 -> 二零二四."""
    return "".join(_ZH_DIGITS[int(c)] for c in s)


_NUM_RE = re.compile(r"(?<![A-Za-z0-9_.])(\d+(?:,\d{3})*)(?:\.(\d+))?(%?)")


def expand_numbers(text: str, default_lang: str | None = None) -> str:
    """Spell out digit groups. A number is read in Chinese when a CJK character sits next to it
    (or, with no neighbour letters, when `default_lang` is "zh"), otherwise in English.
    Handles integers (with thousands commas), decimals, percentages, and 4-digit years before 年.
    Numbers above 10^15 are read digit by digit."""
    if default_lang is None:
        default_lang = dominant_language(text)

    def lang_at(m: re.Match) -> str:
        left = text[max(0, m.start() - 2):m.start()].strip()
        right = text[m.end():m.end() + 2].strip()
        near = (left[-1:] or "") + (right[:1] or "")
        if _CJK_RE.search(near):
            return "zh"
        if _LATIN_RE.search(near):
            return "en"
        return default_lang

    def repl(m: re.Match) -> str:
        whole, frac, pct = m.group(1).replace(",", ""), m.group(2), m.group(3)
        lang = lang_at(m)
        big = len(whole) > 15
        if lang == "zh":
            if not frac and not pct and len(whole) == 4 and text[m.end():m.end() + 1] == "年":
                return digits_to_zh(whole)
            s = digits_to_zh(whole) if big else number_to_zh(int(whole))
            if frac:
                s += "点" + digits_to_zh(frac)
            return ("百分之" + s) if pct else s
        s = " ".join(_ONES[int(c)] for c in whole) if big else number_to_words_en(int(whole))
        if frac:
            s += " point " + " ".join(_ONES[int(c)] for c in frac)
        if pct:
            s += " percent"
        return f" {s} "

    return re.sub(r" {2,}", " ", _NUM_RE.sub(repl, text)).strip()


# ---------------------------------------------------------------- languages and tokens
def char_lang(ch: str) -> str | None:
    """"zh" for CJK ideographs, "en" for Latin letters and digits, None for the rest."""
    if _CJK_RE.match(ch):
        return "zh"
    if _LATIN_RE.match(ch) or ch.isdigit():
        return "en"
    return None


def dominant_language(text: str) -> str:
    """"zh" when CJK characters outnumber Latin words, else "en"."""
    zh = len(_CJK_RE.findall(text))
    en = len(re.findall(r"[A-Za-z\u00c0-\u024f']+", text))
    return "zh" if zh > en else "en"


def language_runs(text: str) -> list[tuple[str, str]]:
    """Split mixed text into (lang, text) runs. Punctuation and spaces join the run they follow
    (leading ones join the first run); empty/whitespace-only runs are dropped."""
    runs: list[list] = []
    pending = ""
    for ch in text:
        lang = char_lang(ch)
        if lang is None:
            if runs:
                runs[-1][1] += ch
            else:
                pending += ch
            continue
        if runs and runs[-1][0] == lang:
            runs[-1][1] += ch
        else:
            # punctuation/space between runs stays with the earlier run
            runs.append([lang, (pending if not runs else "") + ch])
            pending = ""
    out = [(lang, s.strip()) for lang, s in runs if s.strip()]
    return out


_TOKEN_RE = re.compile(f"[{_CJK}]|[A-Za-z\u00c0-\u024f']+|\\d+|[{re.escape(SENTENCE_END + CLAUSE_BREAK)}]")


def tokens(text: str) -> list[str]:
    """The tokens `count_tokens` counts (see module docstring)."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(tokens(text))


# ---------------------------------------------------------------- segmentation
def split_sentences(text: str) -> list[str]:
    """Split after sentence-ending punctuation (keeping it). An ASCII '.' ends a sentence only
    when followed by a space or the end (so 3.5 and e.g. inside words are safe)."""
    parts = re.split(r"(?<=[。！？!?；;…])|(?<=\.)(?=\s|$)", text)
    return [p.strip() for p in parts if p and p.strip()]


def _split_long(sentence: str, max_tokens: int) -> list[str]:
    """A sentence above the budget: split at clause breaks, then hard-split by tokens."""
    if count_tokens(sentence) <= max_tokens:
        return [sentence]
    clauses = [c.strip() for c in re.split(f"(?<=[{re.escape(CLAUSE_BREAK)}])", sentence) if c.strip()]
    out: list[str] = []
    for c in clauses:
        if count_tokens(c) <= max_tokens:
            out.append(c)
            continue
        # hard split: walk token spans and cut every max_tokens tokens
        spans = [m.span() for m in _TOKEN_RE.finditer(c)]
        start = 0
        for i in range(max_tokens, len(spans), max_tokens):
            cut = spans[i][0]
            out.append(c[start:cut].strip())
            start = cut
        out.append(c[start:].strip())
    return _pack([o for o in out if o], max_tokens)


def _pack(pieces: list[str], max_tokens: int) -> list[str]:
    """Greedily join consecutive pieces while the total stays within max_tokens."""
    segs: list[str] = []
    cur, cur_n = "", 0
    for p in pieces:
        n = count_tokens(p)
        if cur and cur_n + n > max_tokens:
            segs.append(cur)
            cur, cur_n = "", 0
        sep = " " if cur and _LATIN_RE.search(cur[-1:] + p[:1]) or (cur and cur[-1:] in ".!?;:,") else ""
        cur = cur + sep + p if cur else p
        cur_n += n
    if cur:
        segs.append(cur)
    return segs


def segment(text: str, max_tokens: int) -> list[str]:
    """Segments of at most `max_tokens` tokens each, cut at sentence ends when possible, else at
    clause breaks, else between tokens. Short sentences are packed together like IndexTTS2."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    pieces: list[str] = []
    for s in split_sentences(text):
        pieces.extend(_split_long(s, max_tokens))
    return _pack(pieces, max_tokens)


@dataclass
class Segment:
    text: str  # normalised text of the segment
    runs: list[tuple[str, str]] = field(default_factory=list)  # (lang, text) in order
    n_tokens: int = 0


def normalize(text: str) -> str:
    """clean_text + normalize_punctuation + expand_numbers."""
    s = normalize_punctuation(clean_text(text))
    return expand_numbers(s)


def prepare(text: str, max_tokens: int = 120) -> list[Segment]:
    """Full front end: normalised segments with their language runs. Segments without any
    speakable run (only punctuation) are dropped."""
    out = []
    for s in segment(normalize(text), max_tokens):
        runs = language_runs(s)
        if runs:
            out.append(Segment(s, runs, count_tokens(s)))
    return out
