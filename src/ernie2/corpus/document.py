"""The document model every reader produces and every task reads: documents of paragraphs of
sentences, with words and entity/phrase spans when known."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class Span:
    """A character span [start, end) of a sentence's text: an entity or a phrase."""

    start: int
    end: int
    kind: Literal["entity", "phrase"] = "entity"
    type: str | None = None  # PER / LOC / ORG / ... when known


@dataclass
class Sentence:
    text: str  # original text, case kept
    words: list[str] | None = None  # word segmentation, when known ("".join(words) == text
    # for Chinese; " ".join(words) for space-separated languages)
    spans: list[Span] = field(default_factory=list)
    # Pre-tokenized input (the ERNIE 1.0 five-field format): vocab ids without [CLS]/[SEP], and
    # seg_labels (0 = first token of a word, 1 = inside a word). `text` is "" then.
    token_ids: list[int] | None = None
    seg_labels: list[int] | None = None


@dataclass
class Document:
    paragraphs: list[list[Sentence]]
    title: str | None = None
    source: str = ""  # "file:line" of the document's first line, for error messages
    lang: str = "zh"
    # Reader facts a task may use, e.g. {"next_sentence_label": 1} for ERNIE 1.0 lines or
    # {"tagged": True} when spans came from the corpus's own tags.
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sentences(self) -> list[Sentence]:
        return [s for p in self.paragraphs for s in p]
