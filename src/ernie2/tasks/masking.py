"""Masking units (tokens, characters, words, phrases, entities) and whole-unit masking."""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from ernie2.corpus.document import Sentence
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks.tokens import TokSent, VocabInfo


LEVELS = ("token", "basic", "word", "phrase", "entity")


def unit_ranges(ts: TokSent, sentence: Sentence, level: str, lang: str) -> list[tuple[int, int]]:
    """Token ranges [a, b) of the masking units of one sentence at a level.

    token: every token. basic: a character (one token) for Chinese, a whole word for other
    languages. word: a whole word (corpus/jieba words; seg_labels for ERNIE 1.0 input).
    phrase: phrase spans whole, words elsewhere. entity: entity spans whole, basic units
    elsewhere. Pre-tokenized input has no spans: its basic level is single tokens, its
    phrase/entity levels its words.
    """
    n = len(ts.ids)
    pretokenized = ts.starts is None
    if level == "token" or (level == "basic" and (lang == "zh" or pretokenized)):
        return [(i, i + 1) for i in range(n)]
    if pretokenized:
        return _runs(ts.word_ids)
    # Outside entity spans, entity level masks basic units: characters for Chinese.
    group = list(range(n)) if (level == "entity" and lang == "zh") else ts.word_ids
    owner = [-1] * n
    span_ranges: dict[int, tuple[int, int]] = {}
    if level in ("phrase", "entity") and sentence.spans:
        for k, sp in enumerate(sentence.spans):
            if sp.kind != level:
                continue
            a = bisect_right(ts.ends, sp.start)
            b = bisect_left(ts.starts, sp.end)
            if a < b and all(owner[t] < 0 for t in range(a, b)):
                for t in range(a, b):
                    owner[t] = k
                span_ranges[a] = (a, b)
    out, t = [], 0
    while t < n:
        if owner[t] >= 0:
            a, b = span_ranges[t]
            out.append((a, b))
            t = b
            continue
        b = t + 1
        while b < n and owner[b] < 0 and group[b] == group[t]:
            b += 1
        out.append((t, b))
        t = b
    return out


def _runs(keys: Sequence[int]) -> list[tuple[int, int]]:
    """Ranges of equal consecutive keys."""
    out, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            out.append((start, i))
            start = i
    return out


def stochastic_round(x: float, rng: random.Random) -> int:
    base = int(x)
    return base + (rng.random() < x - base)


def mask_units(ids: list[int], units: Sequence[tuple[int, int]], rng: random.Random,
               info: VocabInfo, mask_id: int, rate: float = 0.15,
               replace: tuple[float, float] = (0.8, 0.1)) -> list[int]:
    """Mask `rate` of the units (at least one), whole: 80% of chosen units become [MASK], 10%
    random tokens, 10% stay. Changes `ids` in place; returns labels (original ids at masked
    positions, IGNORE_INDEX elsewhere)."""
    labels = [IGNORE_INDEX] * len(ids)
    if not units:
        return labels
    k = min(len(units), max(1, stochastic_round(rate * len(units), rng)))
    p_mask, p_random = replace
    rand_ids = info.random_ids
    for u in rng.sample(range(len(units)), k):
        a, b = units[u]
        r = rng.random()
        for t in range(a, b):
            labels[t] = ids[t]
            if r < p_mask:
                ids[t] = mask_id
            elif r < p_mask + p_random:
                ids[t] = rand_ids[rng.randrange(len(rand_ids))]
    return labels
