"""Next sentence prediction (ERNIE 1.0 / BERT) as a baseline: is B the sentence after A."""

from __future__ import annotations

import random

from ernie2.corpus.document import Document
from ernie2.tasks.documents import Reservoir, doc_key
from ernie2.tasks.tokens import encode_text, sentence_window, tokenize_sentences
from ernie2.tasks.protocol import Example, SequenceTask
from ernie2.tasks.registry import register

IS_NEXT, RANDOM = 1, 0  # ERNIE 1.0's convention: 1 for a true next sentence


@register("next_sentence")
class NextSentence(SequenceTask):
    """[CLS] A [SEP] B [SEP]: A consecutive sentences (up to half the length), B the sentence
    after them (label 1) or a sentence of another recent document (label 0), half and half.
    ERNIE 1.0 five-field lines are used as they are, with their own label.
    """

    num_classes = 2
    description = "ERNIE 1.0 baseline: 1 if B follows A, 0 if B comes from another document"

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0,
                 reservoir: int = 64, pooling: str = "pooler", name: str = "next_sentence"):
        super().__init__(tokenizer, max_len, task_id, name, pooling)
        self.reservoir = Reservoir(reservoir)

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        sents = doc.sentences
        if not sents:
            self.stats.skip("empty")
            return None
        if "next_sentence_label" in doc.meta:  # an ERNIE 1.0 line: its pair and label as given
            if len(sents) < 2:
                self.stats.skip("no_second_sentence")
                return None
            a, b = tokenize_sentences(self.tok, sents[:2])
            return self.example([a.ids, b.ids], int(doc.meta["next_sentence_label"]))
        if not sents[0].text:
            self.stats.skip("no_text")
            return None
        key = doc_key(doc)
        label = IS_NEXT if rng.random() < 0.5 else RANDOM
        n = len(sents)
        pair = None
        if label == IS_NEXT and n >= 2:
            i = rng.randrange(n - 1)
            window = sentence_window(self.tok, sents[:n - 1], i, (self.max_len - 3) // 2)
            (b,) = tokenize_sentences(self.tok, [sents[i + len(window)]])
            pair = ([t for ts in window for t in ts.ids], b.ids)
        elif label == RANDOM:
            other = self.reservoir.sample(rng, key)
            if other is not None:
                i = rng.randrange(n)
                window = sentence_window(self.tok, sents, i, (self.max_len - 3) // 2)
                text = other["sentences"][rng.randrange(len(other["sentences"]))]
                pair = ([t for ts in window for t in ts.ids], encode_text(self.tok, text))
        picks = sorted(rng.sample(range(n), min(8, n)))
        self.reservoir.add({"key": key, "sentences": [sents[k].text for k in picks]})
        if pair is None:
            self.stats.skip("one_sentence" if label == IS_NEXT else "no_other_document")
            return None
        return self.example(pair, label)
