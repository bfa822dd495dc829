"""Discourse relation (ERNIE 2.0): the relation between two sentences, from pairs mined where the
second sentence opens with a discourse marker (after Sileo et al. 2019), or from a labeled TSV."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from ernie2.corpus.annotate import resource_path
from ernie2.corpus.document import Document
from ernie2.tasks.documents import Units, read_labeled_pairs
from ernie2.tasks.tokens import encode_text, tokenize_sentences
from ernie2.tasks.protocol import Example, SequenceTask
from ernie2.tasks.registry import register
from ernie2.utils import IdentityCache

_STRIP_AFTER_MARKER = " ,，、:：;；"


@dataclass
class MarkerTable:
    """Discourse markers by language, each with its relation; relations in table order."""

    relations: list[str]
    markers: dict[str, list[tuple[str, int]]]  # lang -> (marker, relation id), longest first

    def __post_init__(self) -> None:
        self.by_first: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for lang, lst in self.markers.items():
            for marker, rel in lst:
                first = marker[:1].lower() if lang != "zh" else marker[:1]
                self.by_first.setdefault((lang, first), []).append((marker, rel))

    @classmethod
    def read(cls, path: str | os.PathLike) -> MarkerTable:
        path = Path(path)
        relations: list[str] = []
        markers: dict[str, list[tuple[str, int]]] = {}
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.startswith("#") or line.startswith("lang\t"):
                    continue
                parts = line.split("\t")
                if len(parts) != 3 or not all(p.strip() for p in parts):
                    raise ValueError(f"{path}:{lineno}: expected 'lang<TAB>relation<TAB>marker'")
                lang, rel, marker = (p.strip() for p in parts)
                if rel not in relations:
                    relations.append(rel)
                markers.setdefault(lang, []).append((marker, relations.index(rel)))
        if not relations:
            raise ValueError(f"{path}: no discourse markers")
        for lst in markers.values():
            lst.sort(key=lambda m: -len(m[0]))
        return cls(relations, markers)

    def match(self, text: str, lang: str) -> tuple[int, str] | None:
        """(relation id, text without the marker) when `text` opens with a marker."""
        cased = lang != "zh"
        probe = text[:24].lower() if cased else text[:24]
        for marker, rel in self.by_first.get((lang, probe[:1]), ()):
            m = marker.lower() if cased else marker
            if not probe.startswith(m):
                continue
            rest = text[len(m):]
            # An English marker must end at a word boundary ("But" is not "Butter").
            if cased and m[-1].isalpha() and rest[:1] and not rest[0].isspace():
                continue
            rest = rest.lstrip(_STRIP_AFTER_MARKER)
            if len(rest) >= 2:
                return rel, rest
        return None


@register("discourse_relation")
class DiscourseRelation(SequenceTask):
    """[CLS] A [SEP] B [SEP]: A a sentence, B the next sentence with its opening discourse
    marker removed; label = the marker's relation class (contrast, result, addition, instance,
    temporal, conclusion in the shipped table). One pair per example, drawn among the
    document's mined pairs; documents without one are skipped and counted.

    markers: a marker table (TSV lang/relation/marker), default the shipped one.
    data: a labeled TSV (header with text_a, text_b, label; label a relation name or id)
        used instead of mining: each build draws one of its rows.
    units: "sentences", or "clauses" to mine pairs of consecutive clauses (a marker opening the
        second clause of 质量不错，但是价格太贵), tasks.documents.Units.
    """

    description = "relation of a sentence pair, mined from discourse markers (or a labeled TSV)"
    min_sentences = 2

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0,
                 markers: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
                 pooling: str = "pooler", name: str = "discourse_relation",
                 units: str = "sentences"):
        super().__init__(tokenizer, max_len, task_id, name, pooling)
        self.units = Units(units)
        self.table = MarkerTable.read(markers or resource_path("discourse_markers.tsv"))
        self.relations = self.table.relations
        self.num_classes = len(self.relations)
        self.rows = read_labeled_pairs(data, ["text_a"], ["text_b"], self._label) if data else None
        self._mined = IdentityCache()

    def _label(self, raw: str, where: str) -> int:
        if raw in self.relations:
            return self.relations.index(raw)
        try:
            k = int(raw)
        except ValueError:
            k = -1
        if not 0 <= k < len(self.relations):
            raise ValueError(f"{where}: label {raw!r} is not a relation "
                             f"({', '.join(self.relations)}) nor an id below "
                             f"{len(self.relations)}")
        return k

    def mine(self, doc: Document) -> list[tuple[int, int, str]]:
        """(index of A, relation id, B without marker) for every marked consecutive pair,
        within a paragraph or across paragraph breaks (kept while the document lives: a
        document is built from several times)."""
        return self._mined.setdefault(doc, lambda: self._mine(doc))

    def _mine(self, doc: Document) -> list[tuple[int, int, str]]:
        sents = doc.sentences
        out = []
        for i in range(1, len(sents)):
            hit = self.table.match(sents[i].text, doc.lang)
            if hit is not None:
                out.append((i - 1, hit[0], hit[1]))
        return out

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        if self.rows is not None:
            a, b, label = self.rows[rng.randrange(len(self.rows))]
            pair = (encode_text(self.tok, a), encode_text(self.tok, b))
        else:
            doc = self.units(doc)
            sents = doc.sentences
            if len(sents) < 2:
                self.stats.skip("empty" if not sents else "one_sentence")
                return None
            pairs = self.mine(doc)
            if not pairs:
                self.stats.skip("no_marker")
                return None
            i, label, b_text = pairs[rng.randrange(len(pairs))]
            (a,) = tokenize_sentences(self.tok, [sents[i]])
            pair = (a.ids, encode_text(self.tok, b_text))
        return self.example(pair, label)
