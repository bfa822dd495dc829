"""What tasks draw from beyond one document: document identities, a reservoir of recent
documents, and labeled pair files."""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ernie2.corpus.document import Document, Sentence
from ernie2.corpus.text import split_clauses
from ernie2.utils import IdentityCache


def doc_key(doc: Document) -> str:
    """An identity for a document (its source when known), to tell documents apart."""
    if doc.source:
        return doc.source
    first = doc.sentences[0] if doc.paragraphs and doc.paragraphs[0] else None
    return f"{doc.title or ''}|{first.text[:64] if first else ''}"


UNITS = ("sentences", "clauses")


def clause_document(doc: Document) -> Document:
    """The document with every sentence cut into its clauses (`corpus.text.split_clauses`),
    paragraphs kept: a short text of one or two long sentences (a product review) then gives the
    sentence-level tasks several units. Clauses carry their text only (no words, no spans);
    pre-tokenized sentences (ERNIE 1.0 lines, no text) are kept whole."""
    paragraphs = []
    for para in doc.paragraphs:
        out = []
        for sent in para:
            if sent.token_ids is not None or not sent.text:
                out.append(sent)
                continue
            out.extend(Sentence(sent.text[a:b]) for a, b in split_clauses(sent.text, doc.lang))
        paragraphs.append(out)
    return Document(paragraphs, title=doc.title, source=doc.source, lang=doc.lang,
                    meta=dict(doc.meta))


class Units:
    """What a sentence-level task takes as its sentences: "sentences" (the document as read) or
    "clauses" (`clause_document`, made once per document while it lives)."""

    def __init__(self, units: str = "sentences"):
        if units not in UNITS:
            raise ValueError(f"units must be one of {', '.join(UNITS)}, got {units!r}")
        self.units = units
        self._views = IdentityCache()

    def __call__(self, doc: Document) -> Document:
        if self.units == "sentences":
            return doc
        return self._views.setdefault(doc, lambda: clause_document(doc))


class Reservoir:
    """The last `size` documents a task has seen, as small JSON-able summaries, so a task can
    draw text from *other* documents while streaming with bounded memory."""

    def __init__(self, size: int = 64):
        self.size = size
        self.items: list[dict[str, Any]] = []
        self.next = 0

    def add(self, item: dict[str, Any]) -> None:
        if any(it["key"] == item["key"] for it in self.items):
            return  # seen again (several builds per document, or a tiny corpus)
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            self.items[self.next] = item
            self.next = (self.next + 1) % self.size

    def others(self, key: str) -> list[dict[str, Any]]:
        return [it for it in self.items if it["key"] != key]

    def sample(self, rng: random.Random, key: str) -> dict[str, Any] | None:
        others = self.others(key)
        return others[rng.randrange(len(others))] if others else None

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "items": list(self.items), "next": self.next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size, self.items, self.next = state["size"], list(state["items"]), state["next"]


def read_labeled_pairs(path: str | os.PathLike, a_names: Sequence[str], b_names: Sequence[str],
                       label_of) -> list[tuple[str, str, int]]:
    """Rows of a TSV with a header; the columns are found by name. `label_of(raw, where)` turns
    a label cell into a class id (raising ValueError naming the place when it cannot)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labeled pair file {path} not found")
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a header row") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}:1: not UTF-8 text ({exc.reason})") from None
        cols = {name.strip(): i for i, name in enumerate(header)}

        def find(names):
            for n in names:
                if n in cols:
                    return cols[n]
            raise ValueError(f"{path}:1: header needs one of the columns {', '.join(names)}; "
                             f"found {', '.join(header)}")
        ia, ib, il = find(a_names), find(b_names), find(["label"])
        lineno = 1
        try:
            for lineno, row in enumerate(reader, 2):
                if not row or not any(c.strip() for c in row):
                    continue
                if len(row) <= max(ia, ib, il):
                    raise ValueError(f"{path}:{lineno}: expected {len(header)} tab-separated "
                                     f"columns, got {len(row)}")
                rows.append((row[ia], row[ib], label_of(row[il].strip(), f"{path}:{lineno}")))
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}:{lineno + 1}: not UTF-8 text ({exc.reason})") from None
    if not rows:
        raise ValueError(f"{path}: no labeled rows")
    return rows
