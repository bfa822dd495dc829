"""Knowledge-masking annotation: word segmentation (jieba) and phrase/entity spans from lexicons,
jieba's dictionary tags and English capitalized names."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from ernie2.corpus.document import Document, Sentence, Span

logger = logging.getLogger("ernie2.corpus")

# English word tokens with their offsets: words (with inner hyphens/apostrophes) or single marks.
_EN_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")
# Words that start sentences with a capital without being part of a name.
_EN_OPENERS = frozenset("""
a an the this that these those it its he she they we i you his her their our my your in on at
for from with by to of as but and or if when while after before during since although though
however there here what which who why how some many most all each every no not one two three
then thus hence also later today yesterday meanwhile because despite whereas both either neither
several such following according unlike like among between under over upon into through
""".split())
_EN_NAME_JOINERS = frozenset(["of", "de", "da", "del", "der", "van", "von", "la", "le", "du"])

# jieba dictionary tags kept as spans: person/place/organization/other proper noun, idioms.
JIEBA_ENTITY_TAGS = {"nr": "PER", "nrt": "PER", "nrfg": "PER", "ns": "LOC", "nt": "ORG",
                     "nz": "MISC"}
JIEBA_PHRASE_TAGS = frozenset(["i", "l"])


def resource_path(name: str) -> Path:
    return Path(str(resources.files("ernie2").joinpath("resources", name)))


def read_word_list(path: str | os.PathLike) -> set[str]:
    """White-space separated entries, '#' starting a comment line."""
    out: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.lstrip().startswith("#"):
                out.update(line.split())
    return out


@cache
def zh_surnames() -> frozenset[str]:
    return frozenset(read_word_list(resource_path("surnames_zh.txt")))


@cache
def jieba_tags() -> dict[str, str]:
    """word -> jieba dictionary tag, for the tags that make spans (read once, about 0.3 s)."""
    import jieba

    wanted = set(JIEBA_ENTITY_TAGS) | JIEBA_PHRASE_TAGS
    out: dict[str, str] = {}
    with open(Path(jieba.__file__).with_name("dict.txt"), encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3 and parts[2] in wanted and len(parts[0]) >= 2:
                out[parts[0]] = parts[2]
    return out


@cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def segment_zh(text: str) -> list[str]:
    """jieba's accurate mode, white space dropped (words must join back to the text)."""
    words = _jieba().lcut(text, HMM=True)
    if any(w.isspace() for w in words):
        words = [w for w in words if not w.isspace()]
    return words


# ---------------------------------------------------------------------------------- lexicons
@dataclass
class Lexicon:
    """Phrases and entities to mark wherever they occur.

    File format: one entry a line, `text` or `text<TAB>type`; a missing type or `phrase` makes a
    phrase span, any other type (PER, LOC, ORG, ...) an entity span. English entries match
    case-insensitively on word boundaries; Chinese entries match on word boundaries when the
    sentence is segmented, anywhere otherwise.
    """

    entries: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    max_chars: int = 0

    def add(self, text: str, type_: str | None = None) -> None:
        key = normalize_key(text)
        if not key:
            return
        kind = "phrase" if type_ in (None, "", "phrase", "PHRASE") else "entity"
        self.entries[key] = (kind, None if kind == "phrase" else type_)
        self.max_chars = max(self.max_chars, len(key))

    @classmethod
    def read(cls, paths: Iterable[str | os.PathLike]) -> Lexicon:
        from ernie2.corpus.readers import Lines

        lex = cls()
        for path in paths:
            if not Path(path).is_file():
                raise FileNotFoundError(f"lexicon file {path} not found")
            for lineno, line in Lines(path):
                if not line.strip() or line.startswith("#"):
                    continue
                parts = line.split("\t")
                if len(parts) > 2:
                    raise ValueError(f"{path}:{lineno}: expected 'text' or 'text<TAB>type', "
                                     f"got {len(parts)} tab-separated fields")
                lex.add(parts[0].strip(), parts[1].strip() if len(parts) == 2 else None)
        return lex

    def __len__(self) -> int:
        return len(self.entries)


def normalize_key(text: str) -> str:
    """Lexicon key: Chinese without spaces; other text as lower-cased word tokens joined by
    single spaces."""
    text = text.strip()
    if any("\u4e00" <= c <= "\u9fff" for c in text):
        return "".join(text.split())
    return " ".join(m.group(0) for m in _EN_TOKEN.finditer(text.lower()))


def _units(sentence: Sentence, lang: str) -> list[tuple[int, int]]:
    """Character ranges of the matching units: words when known, else characters (Chinese) or
    word tokens (English)."""
    text = sentence.text
    if sentence.words is not None:
        out, pos = [], 0
        for w in sentence.words:
            start = text.find(w, pos)
            if start < 0:  # words do not match the text: fall back to no segmentation
                break
            out.append((start, start + len(w)))
            pos = start + len(w)
        else:
            return out
    if lang == "zh":
        return [(i, i + 1) for i, c in enumerate(text) if not c.isspace()]
    return [m.span() for m in _EN_TOKEN.finditer(text)]


def match_lexicon(sentence: Sentence, lex: Lexicon, lang: str) -> list[Span]:
    """Leftmost-longest matches of lexicon entries over whole units."""
    if not lex.entries:
        return []
    text = sentence.text
    units = _units(sentence, lang)
    joiner = "" if lang == "zh" else " "
    lower = text if lang == "zh" else text.lower()
    out, i, n = [], 0, len(units)
    while i < n:
        best = None
        key = ""
        for j in range(i, n):
            piece = lower[units[j][0]:units[j][1]]
            key = piece if j == i else key + joiner + piece
            if len(key) > lex.max_chars:
                break
            if key in lex.entries:
                best = (j, lex.entries[key])
        if best is None:
            i += 1
            continue
        j, (kind, type_) = best
        out.append(Span(units[i][0], units[j][1], kind, type_))
        i = j + 1
    return out


def jieba_spans(sentence: Sentence) -> list[Span]:
    """Spans for segmented Chinese words that jieba's dictionary tags as names or idioms.

    Person tags are trusted only for 2-4 character words starting with a common family name:
    jieba's dictionary also tags many idioms as persons.
    """
    if not sentence.words:
        return []
    tags, surnames = jieba_tags(), zh_surnames()
    out, pos = [], 0
    for w in sentence.words:
        start = sentence.text.find(w, pos)
        if start < 0:
            return out
        pos = start + len(w)
        tag = tags.get(w)
        if tag is None:
            continue
        if tag in JIEBA_PHRASE_TAGS:
            out.append(Span(start, pos, "phrase"))
        elif JIEBA_ENTITY_TAGS[tag] == "PER":
            if 2 <= len(w) <= 4 and (w[0] in surnames or w[:2] in surnames):
                out.append(Span(start, pos, "entity", "PER"))
        else:
            out.append(Span(start, pos, "entity", JIEBA_ENTITY_TAGS[tag]))
    return out


_CAP_WORD = r"[A-Z][\w'’-]*"
_CAP_RUN = re.compile(
    rf"(?<![\w'’-]){_CAP_WORD}(?:\s+(?:(?:{'|'.join(sorted(_EN_NAME_JOINERS))})\s+)?{_CAP_WORD})+")


def capitalized_names(text: str) -> list[Span]:
    """Runs of two or more capitalized words (joined by 'of', 'de', 'van', ...) as entity spans,
    leaving out a capitalized sentence opener such as 'The'."""
    out: list[Span] = []
    for m in _CAP_RUN.finditer(text):
        start, end = m.span()
        k = start - 1
        while k >= 0 and text[k].isspace():
            k -= 1
        if k < 0 or text[k] in ".!?:\"'“”":  # the run opens a sentence
            first = text[start:end].split(None, 1)
            if first[0].lower() in _EN_OPENERS:
                rest = first[1] if len(first) > 1 else ""
                if " " not in rest.strip():  # one capitalized word left: not a name run
                    continue
                start = end - len(rest)
                if text[start:end].split(None, 1)[0] in _EN_NAME_JOINERS:
                    continue
        out.append(Span(start, end, "entity", None))
    return out


def add_spans(sentence: Sentence, new: Sequence[Span]) -> None:
    """Add spans that overlap no existing span of the same kind (earlier sources win)."""
    for span in new:
        if not any(s.kind == span.kind and s.start < span.end and span.start < s.end
                   for s in sentence.spans):
            sentence.spans.append(span)


# --------------------------------------------------------------------------------- annotator
@dataclass
class AnnotationOptions:
    """What to add to documents as they are read.

    segment: jieba word segmentation for Chinese sentences without words.
    jieba_tags: entity/phrase spans from jieba's dictionary tags (Chinese documents whose corpus
        brought no tags of its own).
    capitalized_names: English runs of capitalized words as entity spans.
    lexicons: user lexicon files (see Lexicon).
    """

    segment: bool = True
    jieba_tags: bool = True
    capitalized_names: bool = True
    lexicons: tuple[str, ...] = ()


class Annotator:
    """Callable adding words and spans to a Document in place; sources in priority order: the
    corpus's own tags/anchors (already on the sentences), lexicons, jieba tags, capitalization."""

    def __init__(self, options: AnnotationOptions | None = None):
        self.options = options or AnnotationOptions()
        self.lexicon = Lexicon.read(self.options.lexicons)

    def __call__(self, doc: Document) -> Document:
        if doc.meta.get("annotated"):
            # Written by an earlier pass (demo, prepare): keep it, adding only the user's
            # lexicons, which that pass may not have had.
            if self.lexicon.entries:
                for sent in doc.sentences:
                    if sent.text and sent.token_ids is None:
                        add_spans(sent, match_lexicon(sent, self.lexicon, doc.lang))
            return doc
        o = self.options
        tagged = bool(doc.meta.get("tagged"))
        for sent in doc.sentences:
            if sent.token_ids is not None or not sent.text:
                continue
            if doc.lang == "zh":
                if sent.words is None and o.segment:
                    sent.words = segment_zh(sent.text)
                add_spans(sent, match_lexicon(sent, self.lexicon, "zh"))
                if o.jieba_tags and not tagged:
                    add_spans(sent, jieba_spans(sent))
            else:
                add_spans(sent, match_lexicon(sent, self.lexicon, doc.lang))
                if o.capitalized_names:
                    add_spans(sent, capitalized_names(sent.text))
            sent.spans.sort(key=lambda s: (s.start, -s.end))
        doc.meta["annotated"] = True
        return doc
