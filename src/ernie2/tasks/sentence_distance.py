"""Sentence distance (ERNIE 2.0): adjacent, same document not adjacent, or different documents."""

from __future__ import annotations

import random

from ernie2.corpus.document import Document
from ernie2.tasks.documents import Reservoir, Units, doc_key
from ernie2.tasks.tokens import encode_text, tokenize_sentences
from ernie2.tasks.protocol import Example, SequenceTask
from ernie2.tasks.registry import register

ADJACENT, SAME_DOCUMENT, OTHER_DOCUMENT = 0, 1, 2


@register("sentence_distance")
class SentenceDistance(SequenceTask):
    """[CLS] A [SEP] B [SEP] with A a sentence and B: label 0 the next sentence, label 1 a
    sentence of the same document at least two sentences away (before or after A), label 2 a
    sentence of another document. The label is drawn uniformly first (balanced classes); when
    the document cannot give it (fewer than 3 sentences for label 1, no other document seen
    yet for label 2) the document is skipped and the skip counted. Other documents come from
    a reservoir of the `reservoir` most recent documents this task has seen.
    `units="clauses"` takes each sentence's clauses as its sentences (tasks.documents.Units).
    """

    num_classes = 3
    description = "sentence pair: 0 adjacent, 1 same document not adjacent, 2 other document"

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0,
                 reservoir: int = 64, pooling: str = "pooler", name: str = "sentence_distance",
                 units: str = "sentences"):
        super().__init__(tokenizer, max_len, task_id, name, pooling)
        self.units = Units(units)
        self.reservoir = Reservoir(reservoir)

    def _remember(self, doc: Document, key: str, rng: random.Random) -> None:
        sents = doc.sentences
        picks = sorted(rng.sample(range(len(sents)), min(8, len(sents))))
        self.reservoir.add({"key": key, "sentences": [sents[i].text for i in picks]})

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        doc = self.units(doc)
        sents = doc.sentences
        if not sents or not sents[0].text:
            self.stats.skip("empty" if not sents else "no_text")
            return None
        key = doc_key(doc)
        label = rng.randrange(3)
        n = len(sents)
        example = None
        if label == ADJACENT and n >= 2:
            i = rng.randrange(n - 1)
            a, b = tokenize_sentences(self.tok, [sents[i], sents[i + 1]])
            example = (a.ids, b.ids)
        elif label == SAME_DOCUMENT and n >= 3:
            # i must have a sentence two or more away: every i does once n >= 4.
            i = rng.randrange(n) if n >= 4 else rng.choice((0, n - 1))
            far = [j for j in range(n) if abs(j - i) >= 2]
            j = far[rng.randrange(len(far))]
            a, b = tokenize_sentences(self.tok, [sents[i], sents[j]])
            example = (a.ids, b.ids)
        elif label == OTHER_DOCUMENT:
            other = self.reservoir.sample(rng, key)
            if other is not None:
                (a,) = tokenize_sentences(self.tok, [sents[rng.randrange(n)]])
                text = other["sentences"][rng.randrange(len(other["sentences"]))]
                example = (a.ids, encode_text(self.tok, text))
        self._remember(doc, key, rng)
        if example is None:
            self.stats.skip(("one_sentence" if n < 2 else "two_sentences") if label != 2
                            else "no_other_document")
            return None
        return self.example(example, label)
