"""IR relevance (ERNIE 2.0): query/title pairs, 0 strong (clicked), 1 weak (shown, not clicked),
2 irrelevant; from a labeled TSV of search logs, or weakly supervised from titled documents."""

from __future__ import annotations

import os
import random
import re

from ernie2.corpus.document import Document
from ernie2.corpus.text import is_cjk
from ernie2.tasks.documents import Reservoir, doc_key, read_labeled_pairs
from ernie2.tasks.tokens import encode_text
from ernie2.tasks.protocol import Example, SequenceTask
from ernie2.tasks.registry import register
from ernie2.tasks.token_document_relation import default_stop_words

STRONG, WEAK, IRRELEVANT = 0, 1, 2
LABEL_NAMES = ("strong", "weak", "irrelevant")
_WORD = re.compile(r"\w+")


def terms(text: str, lang: str, stop_words: set[str]) -> set[str]:
    """Content terms for relatedness: Chinese character bigrams, or other languages' lower-case
    words of three letters or more that are not stop words."""
    if lang == "zh":
        chars = [c for c in text if is_cjk(c)]
        return {a + b for a, b in zip(chars, chars[1:])}
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in stop_words}


def _label(raw: str, where: str) -> int:
    if raw in LABEL_NAMES:
        return LABEL_NAMES.index(raw)
    if raw in ("0", "1", "2"):
        return int(raw)
    raise ValueError(f"{where}: label must be 0 (strong), 1 (weak) or 2 (irrelevant), "
                     f"got {raw!r}")


@register("ir_relevance")
class IRRelevance(SequenceTask):
    """[CLS] query [SEP] title [SEP] -> 0 strong, 1 weak, 2 irrelevant.

    data: a TSV with a header (query, title, label; or text_a, text_b, label) of search-log
    pairs; each build draws a row. Without it, a weak-supervision builder for titled documents
    (no search logs needed): the query is the document's title and the second text the lead
    (first sentence; two when the first is short) of
      0 strong: the title's own document,
      1 weak: the most related recent document (sharing the most content terms with the title:
        words for English, character bigrams for Chinese; at least `min_related` of them,
        by default 1 word or 2 bigrams),
      2 irrelevant: a recent document sharing no content term with the title.
    The label is drawn uniformly first; documents without a title, or that cannot give the
    drawn label, are skipped and counted. Recent documents come from a reservoir of the last
    `reservoir` documents seen.
    """

    num_classes = 3
    builds_per_document = 1  # a document gives one title query
    description = "query/title relevance: 0 strong, 1 weak, 2 irrelevant (TSV or weak labels)"

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0,
                 data: str | os.PathLike | None = None, reservoir: int = 128,
                 min_related: int | None = None, pooling: str = "pooler",
                 name: str = "ir_relevance"):
        super().__init__(tokenizer, max_len, task_id, name, pooling)
        self.rows = read_labeled_pairs(data, ["query", "text_a"], ["title", "text_b"],
                                       _label) if data else None
        self.reservoir = Reservoir(reservoir)
        self.min_related = min_related
        self.stop_words = default_stop_words()

    @staticmethod
    def lead(doc: Document) -> str:
        sents = doc.sentences[:2]
        if len(sents[0].text) >= 20 or len(sents) == 1:
            return sents[0].text
        return ("" if doc.lang == "zh" else " ").join(s.text for s in sents)

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        if self.rows is not None:
            q, t, label = self.rows[rng.randrange(len(self.rows))]
            return self._example(q, t, label)
        sents = doc.sentences
        if not sents or not sents[0].text:
            self.stats.skip("empty" if not sents else "no_text")
            return None
        if not doc.title:
            self.stats.skip("no_title")
            return None
        key, lead = doc_key(doc), self.lead(doc)
        title_terms = terms(doc.title, doc.lang, self.stop_words)
        label = rng.randrange(3)
        text = None
        if label == STRONG:
            text = lead
        else:
            scored = [(len(title_terms & set(it["terms"])), it)
                      for it in self.reservoir.others(key) if it["lang"] == doc.lang]
            if label == WEAK:
                best = max((s for s, _ in scored), default=0)
                need = self.min_related or (2 if doc.lang == "zh" else 1)
                if best >= need:
                    tops = [it for s, it in scored if s == best]
                    text = tops[rng.randrange(len(tops))]["lead"]
            else:
                unrelated = [it for s, it in scored if s == 0]
                if unrelated:
                    text = unrelated[rng.randrange(len(unrelated))]["lead"]
        self.reservoir.add({"key": key, "lang": doc.lang, "lead": lead,
                            "terms": sorted(terms(doc.title + " " + lead, doc.lang,
                                                  self.stop_words))})
        if text is None:
            self.stats.skip("no_related_document" if label == WEAK else "no_unrelated_document")
            return None
        return self._example(doc.title, text, label)

    def _example(self, query: str, title: str, label: int) -> Example:
        return self.example([encode_text(self.tok, query),
                                       encode_text(self.tok, title)], label)
