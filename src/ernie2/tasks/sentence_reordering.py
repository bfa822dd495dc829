"""Sentence reordering (ERNIE 2.0): a paragraph split into n segments (1 <= n <= m) and shuffled;
classify the permutation among sum over n of n! classes."""

from __future__ import annotations

import math
import random
from itertools import permutations

from ernie2.corpus.document import Document
from ernie2.tasks.documents import Units
from ernie2.tasks.tokens import sentence_window
from ernie2.tasks.protocol import Example, SequenceTask
from ernie2.tasks.registry import register


def num_permutation_classes(m: int) -> int:
    """sum over n = 1..m of n! (m = 3: 1 + 2 + 6 = 9)."""
    return sum(math.factorial(n) for n in range(1, m + 1))


def encode_permutation(perm: tuple[int, ...]) -> int:
    """Class of a permutation of range(n): offset of n (sum of k! for k < n) plus the
    permutation's rank in lexicographic order."""
    n = len(perm)
    rank = sorted(permutations(range(n))).index(tuple(perm))
    return sum(math.factorial(k) for k in range(1, n)) + rank


def decode_permutation(label: int, m: int) -> tuple[int, ...]:
    """Inverse of encode_permutation: the permutation that `label` stands for."""
    if not 0 <= label < num_permutation_classes(m):
        raise ValueError(f"label {label} is outside the {num_permutation_classes(m)} classes "
                         f"of m={m}")
    n = 1
    while label >= math.factorial(n):
        label -= math.factorial(n)
        n += 1
    return sorted(permutations(range(n)))[label]


@register("sentence_reordering")
class SentenceReordering(SequenceTask):
    """Take consecutive sentences of one paragraph (of the document when its paragraphs have
    one sentence), cut them at sentence boundaries into n segments, and lay the segments out in
    a shuffled order: [CLS] seg_p0 [SEP] seg_p1 [SEP] ... with sentence ids alternating 0/1.
    perm[i] is the original index of the segment shown at place i; label =
    encode_permutation(perm). The class is drawn uniformly among those the text allows (n is
    at most the number of sentences), so labels are balanced across documents that allow all.
    `units="clauses"` takes each sentence's clauses as its sentences (tasks.documents.Units).
    """

    description = "which permutation shuffled the n <= m segments of a paragraph"
    min_sentences = 2

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0, m: int = 3,
                 pooling: str = "pooler", name: str = "sentence_reordering",
                 units: str = "sentences"):
        super().__init__(tokenizer, max_len, task_id, name, pooling)
        self.units = Units(units)
        if not 1 <= m <= 6:
            raise ValueError(f"m must be in 1..6 (6! = 720 permutations), got {m}")
        self.m = m
        self.num_classes = num_permutation_classes(m)
        self._perms = {n: sorted(permutations(range(n))) for n in range(1, m + 1)}

    def _sentences(self, doc: Document, rng: random.Random):
        multi = [p for p in doc.paragraphs if len(p) >= 2]
        if multi:
            return multi[rng.randrange(len(multi))]
        return doc.sentences

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        doc = self.units(doc)
        if not doc.sentences:
            self.stats.skip("empty")
            return None
        sents = self._sentences(doc, rng)
        if len(sents) < 2:
            self.stats.skip("one_sentence")
            return None
        if not sents[0].text:
            self.stats.skip("no_text")
            return None
        # Start early enough that m sentences follow when the paragraph has them: every class
        # stays possible and the labels stay balanced.
        start = rng.randrange(max(1, len(sents) - self.m + 1))
        window = sentence_window(self.tok, sents, start, self.max_len - 1 - self.m,
                                 max_sentences=8)
        k = len(window)
        if k < 2:  # one sentence alone fills the budget: nothing to reorder
            self.stats.skip("sentence_too_long")
            return None
        n_max = min(self.m, k)
        # Uniform over the classes allowed: pick the class, which decides n.
        label = rng.randrange(num_permutation_classes(n_max))
        perm = decode_permutation(label, self.m)
        n = len(perm)
        cuts = sorted(rng.sample(range(1, k), n - 1)) if n > 1 else []
        bounds = [0, *cuts, k]
        segments = [[t for ts in window[bounds[i]:bounds[i + 1]] for t in ts.ids]
                    for i in range(n)]
        shown = [segments[p] for p in perm]
        return self.example(shown, label)
