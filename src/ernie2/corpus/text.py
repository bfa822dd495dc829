"""Character classes, language detection and sentence splitting for Chinese and English."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from ernie2.corpus.document import Sentence, Span

# Sentence-final marks, and the closing quotes/brackets that stay with the sentence they end.
ZH_TERMINALS = frozenset("。！？!?…")
CLOSERS = frozenset("”’\"'」』）)》〉】]")
_ZH_SPLIT = re.compile(r"(?:[。！？!?]+|…+)[”’\"'」』）)》〉】\]]*")
# An English boundary candidate: end mark(s), optional closers, white space, then something that
# can open a sentence. Abbreviations are filtered afterwards.
_EN_SPLIT = re.compile(r"[.!?]+[\"'”’)\]]*(\s+)(?=[\"'“‘(\[]?[A-Z0-9])")
_LAST_WORD = re.compile(r"(\S+)$")
_INITIALS = re.compile(r"^\(?(?:[A-Za-z]\.)*[A-Za-z]$")
EN_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt ft vs etc no nos vol vols fig figs al ed eds inc ltd co corp
gen col lt sgt capt cmdr adm gov sen rep rev hon pres jan feb mar apr jun jul aug sep sept oct
nov dec approx ca cf op pp ch sec art e.g i.e a.m p.m u.s u.k u.n b.c a.d c
""".split())


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF
            or 0x20000 <= cp <= 0x2FA1F)


@lru_cache(maxsize=4096)
def is_punctuation(token: str) -> bool:
    """True when every character is punctuation or a symbol (Unicode P* / S*)."""
    return bool(token) and all(unicodedata.category(c)[0] in "PS" for c in token)


def detect_lang(text: str, sample: int = 400) -> str:
    """'zh' when CJK characters make up at least a fifth of the letters of a sample, else 'en'."""
    cjk = letters = 0
    for ch in text[:sample]:
        if is_cjk(ch):
            cjk += 1
            letters += 1
        elif ch.isalpha():
            letters += 1
    return "zh" if letters and cjk * 5 >= letters else "en"


def _en_boundaries(text: str) -> list[int]:
    cuts = []
    for m in _EN_SPLIT.finditer(text):
        end = m.start(1)  # the sentence ends before the white space
        mark_at = m.start()
        if text[mark_at] == ".":
            word = _LAST_WORD.search(text, 0, mark_at)
            if word:
                w = word.group(1).lstrip("(\"'“‘[").lower()
                if w in EN_ABBREVIATIONS or _INITIALS.match(w):
                    continue
        cuts.append(end)
    return cuts


def _zh_boundaries(text: str) -> list[int]:
    return [m.end() for m in _ZH_SPLIT.finditer(text) if m.end() < len(text)]


def split_sentences(text: str, lang: str) -> list[tuple[int, int]]:
    """Character ranges [start, end) of the sentences of a paragraph, white space trimmed."""
    cuts = _zh_boundaries(text) if lang == "zh" else _en_boundaries(text)
    out, start = [], 0
    for end in [*cuts, len(text)]:
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
        start = end
    return out


# Clause marks by language: a clause ends after one (with any closing quotes). Chinese text,
# informal text above all, runs many clauses between two full stops; the English comma is left
# alone (it separates list items as often as clauses).
_CLAUSE_MARKS = {"zh": "，；：,;:", "en": ";:"}


def split_clauses(text: str, lang: str, min_chars: int = 2) -> list[tuple[int, int]]:
    """Character ranges [start, end) of the clauses of a sentence, each keeping its mark
    (，；： and , ; : for Chinese, ; : for English), white space trimmed. A piece with fewer
    than `min_chars` characters besides marks and white space joins the next one (the last
    joins the one before), so no clause is a lone word like "好，". A text without marks is one
    clause."""
    marks = _CLAUSE_MARKS.get(lang, _CLAUSE_MARKS["en"])
    pieces, start = [], 0
    for m in re.finditer(f"[{re.escape(marks)}]+[{re.escape(''.join(CLOSERS))}]*", text):
        if m.end() < len(text):
            pieces.append((start, m.end()))
            start = m.end()
    pieces.append((start, len(text)))

    def weight(a: int, b: int) -> int:
        return sum(1 for c in text[a:b] if not c.isspace() and c not in marks
                   and c not in CLOSERS)

    merged: list[list[int]] = []
    pending = None
    for a, b in pieces:
        a = pending if pending is not None else a
        if weight(a, b) < min_chars:
            pending = a
            continue
        merged.append([a, b])
        pending = None
    if pending is not None:
        if merged:
            merged[-1][1] = len(text)
        else:
            merged.append([pending, len(text)])
    out = []
    for a, b in merged:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out


def _word_is_terminal(word: str) -> bool:
    return bool(word) and all(c in ZH_TERMINALS or c in ".!?" for c in word)


def _word_is_closer(word: str) -> bool:
    return bool(word) and all(c in CLOSERS for c in word)


def split_words(words: Sequence[str]) -> list[tuple[int, int]]:
    """Word ranges [start, end) of the sentences of a segmented paragraph: a sentence ends at a
    word made of end marks (。！？!?.…), together with the closing quotes that follow it."""
    out, start, i, n = [], 0, 0, len(words)
    while i < n:
        if _word_is_terminal(words[i]):
            j = i + 1
            while j < n and (_word_is_terminal(words[j]) or _word_is_closer(words[j])):
                j += 1
            out.append((start, j))
            start = i = j
        else:
            i += 1
    if start < n:
        out.append((start, n))
    return out


def _rebase(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    # Spans crossing a sentence boundary belong to no sentence: masking units never span two.
    return [Span(s.start - start, s.end - start, s.kind, s.type) for s in spans
            if s.start >= start and s.end <= end and s.end > s.start]


def make_sentences(text: str, lang: str, words: Sequence[str] | None = None,
                   spans: Sequence[Span] = ()) -> list[Sentence]:
    """Split one paragraph into Sentences, carrying its words and (paragraph-relative) spans.

    With `words`, the paragraph text must be their concatenation ("" for Chinese, " " between
    words otherwise) and sentences end at end-mark words.
    """
    if words is None:
        return [Sentence(text[s:e], None, _rebase(spans, s, e))
                for s, e in split_sentences(text, lang)]
    joiner = "" if lang == "zh" else " "
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + len(joiner)
    out = []
    for ws, we in split_words(words):
        s = starts[ws]
        e = starts[we - 1] + len(words[we - 1])
        out.append(Sentence(text[s:e], list(words[ws:we]), _rebase(spans, s, e)))
    return out
