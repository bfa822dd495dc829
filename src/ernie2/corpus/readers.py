"""Readers of raw corpora, one per format, each yielding (Document, position after it).

A position is a small JSON-able dict ({"offset": bytes, "line": n} for line formats) from which
the same reader resumes with `start=`. Bad input raises ValueError naming the file and line and
what was expected, unless `on_error="skip"`, which skips the line or record and counts it in
`stats`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ernie2.corpus.document import Document, Sentence, Span
from ernie2.corpus.text import detect_lang, make_sentences

Position = dict[str, Any]
Reader = Callable[..., Iterator[tuple[Document, Position]]]
READERS: dict[str, Reader] = {}


def reader(name: str):
    def deco(fn: Reader) -> Reader:
        READERS[name] = fn
        return fn
    return deco


def open_binary(path: str | os.PathLike) -> io.BufferedIOBase:
    """Open plain, .gz or .bz2 files (told by their magic bytes) for binary reading."""
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        return _Compressed(gzip.open(path, "rb"), path)
    if magic == b"BZh":
        return _Compressed(bz2.open(path, "rb"), path)
    return open(path, "rb")


class _Compressed:
    """A gzip or bz2 stream whose truncated or corrupt data is BadInput naming the file."""

    def __init__(self, fh, path):
        self.fh, self.path = fh, path

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except (EOFError, zlib.error, OSError) as exc:
            raise BadInput(f"{self.path}: compressed data is truncated or corrupt ({exc})"
                           ) from None

    def read(self, size: int = -1) -> bytes:
        return self._guard(self.fh.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._guard(self.fh.readline, size)

    def seek(self, *args) -> int:
        return self._guard(self.fh.seek, *args)

    def __iter__(self):
        while line := self.readline():
            yield line

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


class BadInput(ValueError):
    """A record that does not parse; the message names file, line and what was expected."""


class Lines:
    """Decoded lines of a file with their line numbers and the byte offset after each line.

    Undecodable lines raise BadInput, or are skipped and counted when `on_error == "skip"`.
    """

    def __init__(self, path: str | os.PathLike, on_error: str = "raise",
                 stats: Counter | None = None, start: Position | None = None):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"corpus file {self.path} not found")
        self.on_error = on_error
        self.stats = stats if stats is not None else Counter()
        self.offset = int((start or {}).get("offset", 0))
        self.lineno = int((start or {}).get("line", 0))

    def position(self) -> Position:
        return {"offset": self.offset, "line": self.lineno}

    def fail(self, lineno: int, what: str) -> None:
        """Raise for a bad record, or count it when skipping."""
        if self.on_error == "raise":
            raise BadInput(f"{self.path}:{lineno}: {what}")
        self.stats["skipped_bad_records"] += 1

    def __iter__(self) -> Iterator[tuple[int, str]]:
        with open_binary(self.path) as fh:
            if self.offset:
                fh.seek(self.offset)
            for raw in fh:
                self.offset += len(raw)
                self.lineno += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if self.on_error == "raise":
                        raise BadInput(
                            f"{self.path}:{self.lineno}: not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start}); on_error='skip' (--on_error skip) skips and counts such "
                            "lines") from None
                    self.stats["skipped_undecodable_lines"] += 1
                    continue
                yield self.lineno, line.rstrip("\r\n")


def _doc_lang(lang: str, sample: str) -> str:
    return detect_lang(sample) if lang == "auto" else lang


def _blank_separated(lines: Lines) -> Iterator[tuple[int, list[str]]]:
    """Groups of non-blank lines separated by blank lines: (first line number, lines)."""
    block: list[str] = []
    first = 0
    for lineno, line in lines:
        if line.strip():
            if not block:
                first = lineno
            block.append(line.strip())
        elif block:
            yield first, block
            block = []
    if block:
        yield first, block


@reader("text")
def read_text(path, lang="auto", on_error="raise", stats=None, start=None, **_):
    """Plain text: one paragraph a line, a blank line between documents."""
    lines = Lines(path, on_error, stats, start)
    for first, block in _blank_separated(lines):
        lg = _doc_lang(lang, " ".join(block))
        paras = [p for p in (make_sentences(line, lg) for line in block) if p]
        yield Document(paras, None, f"{path}:{first}", lg), lines.position()


@reader("segmented")
def read_segmented(path, lang="auto", on_error="raise", stats=None, start=None, **_):
    """Pre-segmented text: space-separated words, one paragraph (or sentence) a line, a blank
    line between documents."""
    lines = Lines(path, on_error, stats, start)
    for first, block in _blank_separated(lines):
        lg = _doc_lang(lang, "".join(block))
        joiner = "" if lg == "zh" else " "
        paras = []
        for line in block:
            words = line.split()
            paras.append(make_sentences(joiner.join(words), lg, words))
        yield Document(paras, None, f"{path}:{first}", lg), lines.position()


# ------------------------------------------------------------------------------------ JSONL
def _sentence_from_json(obj: Any, where: str) -> Sentence:
    if isinstance(obj, str):
        return Sentence(obj)
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise BadInput(f"{where}: a sentence must be a string or an object with a 'text' string")
    words = obj.get("words")
    if isinstance(words, str):  # the compact form: words joined by single spaces
        words = words.split(" ")
    elif words is not None and not (isinstance(words, list)
                                    and all(isinstance(w, str) for w in words)):
        raise BadInput(f"{where}: 'words' must be a list of strings or a space-joined string")
    spans = []
    for raw in obj.get("spans", []):
        if not (isinstance(raw, list) and 2 <= len(raw) <= 4
                and isinstance(raw[0], int) and isinstance(raw[1], int)):
            raise BadInput(f"{where}: a span must be [start, end, kind?, type?], got {raw!r}")
        kind = raw[2] if len(raw) > 2 else "entity"
        if kind not in ("entity", "phrase"):
            raise BadInput(f"{where}: span kind must be 'entity' or 'phrase', got {kind!r}")
        if not 0 <= raw[0] < raw[1] <= len(obj["text"]):
            raise BadInput(f"{where}: span {raw[:2]} is outside the sentence of "
                           f"{len(obj['text'])} characters")
        spans.append(Span(raw[0], raw[1], kind, raw[3] if len(raw) > 3 else None))
    return Sentence(obj["text"], words, spans)


def document_from_json(obj: Any, where: str, lang: str = "auto") -> Document:
    """{"title": str?, "paragraphs": [paragraph, ...], "lang": str?, "meta": {}?} where a
    paragraph is a string (split into sentences here) or a list of sentences (strings or
    {"text", "words"?, "spans"?: [[start, end, kind, type], ...]}, words a list or one string
    of space-joined words); or {"text": str} with one paragraph a line."""
    if not isinstance(obj, dict):
        raise BadInput(f"{where}: expected a JSON object per line")
    if "paragraphs" in obj:
        raw_paras = obj["paragraphs"]
        if not isinstance(raw_paras, list):
            raise BadInput(f"{where}: 'paragraphs' must be a list")
    elif isinstance(obj.get("text"), str):
        raw_paras = [p for p in obj["text"].split("\n") if p.strip()]
    else:
        raise BadInput(f"{where}: expected a 'paragraphs' list or a 'text' string")
    title = obj.get("title")
    if title is not None and not isinstance(title, str):
        raise BadInput(f"{where}: 'title' must be a string")
    lg = obj.get("lang") or lang
    if lg == "auto":
        sample = next((p if isinstance(p, str) else json.dumps(p, ensure_ascii=False)
                       for p in raw_paras), title or "")
        lg = detect_lang(sample)
    paras = []
    for k, p in enumerate(raw_paras):
        if isinstance(p, str):
            sents = make_sentences(p.strip(), lg)
        elif isinstance(p, list):
            sents = [_sentence_from_json(s, f"{where} paragraph {k}") for s in p]
        else:
            raise BadInput(f"{where}: paragraph {k} must be a string or a list of sentences")
        if sents:
            paras.append(sents)
    meta = obj.get("meta") or {}
    return Document(paras, title, where, lg, dict(meta))


def document_to_json(doc: Document) -> dict[str, Any]:
    """The JSONL form `document_from_json` reads back, words and spans kept."""
    def sent(s: Sentence):
        if s.words is None and not s.spans:
            return s.text
        d: dict[str, Any] = {"text": s.text}
        if s.words is not None:
            compact = all(w and not any(c.isspace() for c in w) for w in s.words)
            d["words"] = " ".join(s.words) if compact else s.words
        if s.spans:
            d["spans"] = [[sp.start, sp.end, sp.kind] + ([sp.type] if sp.type else [])
                          for sp in s.spans]
        return d
    out: dict[str, Any] = {}
    if doc.title is not None:
        out["title"] = doc.title
    out["lang"] = doc.lang
    out["paragraphs"] = [[sent(s) for s in p] for p in doc.paragraphs]
    if doc.meta:
        out["meta"] = doc.meta
    return out


@reader("jsonl")
def read_jsonl(path, lang="auto", on_error="raise", stats=None, start=None, **_):
    """JSON lines, one document a line (see document_from_json)."""
    lines = Lines(path, on_error, stats, start)
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            lines.fail(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        try:
            doc = document_from_json(obj, f"{path}:{lineno}", lang)
        except BadInput:
            if on_error == "raise":
                raise
            lines.stats["skipped_bad_records"] += 1
            continue
        yield doc, lines.position()
