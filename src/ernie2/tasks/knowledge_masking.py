"""Knowledge masking (ERNIE 1.0/2.0): basic, phrase and entity level masking of whole units."""

from __future__ import annotations

import random
from collections.abc import Mapping

from ernie2.corpus.document import Document
from ernie2.tasks.layout import fit_lengths, layout
from ernie2.tasks.masking import LEVELS, mask_units, unit_ranges
from ernie2.tasks.tokens import sentence_window, tokenize_sentences, vocab_info
from ernie2.tasks.protocol import Example, MaskedLMTask
from ernie2.tasks.registry import register


def parse_levels(levels: str | Mapping[str, float]) -> dict[str, float]:
    """{"basic": 1, "phrase": 1, "entity": 1} or "basic:1,phrase:1,entity:1" -> weights."""
    if isinstance(levels, str):
        out = {}
        for part in levels.split(","):
            name, _, w = part.strip().partition(":")
            try:
                out[name.strip()] = float(w) if w else 1.0
            except ValueError:
                raise ValueError(f"level weight must be a number, got {part!r}") from None
        levels = out
    levels = {k: float(v) for k, v in dict(levels).items()}
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise ValueError(f"unknown masking level(s) {', '.join(unknown)}; known: "
                         f"{', '.join(LEVELS)}")
    if not levels or any(v < 0 for v in levels.values()) or sum(levels.values()) <= 0:
        raise ValueError(f"masking level weights must be non-negative and not all zero: {levels}")
    return levels


@register("knowledge_masking")
class KnowledgeMasking(MaskedLMTask):
    """A window of consecutive sentences, `mask_rate` of its units masked whole (80% [MASK],
    10% random token, 10% unchanged); the level of units is drawn per example from `levels`.

    Levels: basic (a Chinese character / an English word), phrase (phrase spans, words
    elsewhere), entity (entity spans, basic units elsewhere), plus word and token. ERNIE 1.0
    input (pre-tokenized) draws word level with its file's mask_word_prob, else token level.

    fill: when the document goes on after the window, the next sentence is added and cut at
    max_len (BERT's pre-training data fills its inputs so), instead of the window ending
    before it: fewer padding tokens per example.
    """

    description = "predict masked whole units: characters/words, phrases and entities"

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0,
                 levels: str | Mapping[str, float] = "basic:1,phrase:1,entity:1",
                 mask_rate: float = 0.15, fill: bool = False, name: str = "knowledge_masking"):
        super().__init__(tokenizer, max_len, task_id, name)
        self.fill = bool(fill)
        self.levels = parse_levels(levels)
        if not 0 < mask_rate < 1:
            raise ValueError(f"mask_rate must be in (0, 1), got {mask_rate}")
        self.mask_rate = mask_rate
        self.num_classes = self.tok.vocab_size
        self.info = vocab_info(self.tok)
        self._names, self._weights = list(self.levels), list(self.levels.values())

    def _level(self, doc: Document, rng: random.Random) -> str:
        p = doc.meta.get("mask_word_prob")
        if p is not None:  # ERNIE 1.0 lines: whole words with the file's probability
            return "word" if rng.random() < float(p) else "token"
        return rng.choices(self._names, self._weights)[0]

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        sents = doc.sentences
        if not sents:
            self.stats.skip("empty")
            return None
        level = self._level(doc, rng)
        if sents[0].token_ids is not None:
            # ERNIE 1.0 lines keep their A [SEP] B layout: one segment per sentence.
            groups = [[(ts, s)] for ts, s in zip(tokenize_sentences(self.tok, sents), sents)]
        else:
            start = rng.randrange(len(sents))
            window = sentence_window(self.tok, sents, start, self.max_len - 2)
            after = start + len(window)
            if self.fill and after < len(sents) and sum(map(len, window)) < self.max_len - 2:
                window = window + tokenize_sentences(self.tok, sents[after:after + 1])
            groups = [list(zip(window, sents[start:start + len(window)]))]
        segments, seg_units = [], []
        for group in groups:
            ids, units = [], []
            for ts, sent in group:
                off = len(ids)
                units.extend((a + off, b + off) for a, b in unit_ranges(ts, sent, level, doc.lang))
                ids.extend(ts.ids)
            segments.append(ids)
            seg_units.append(units)
        keep = fit_lengths([len(s) for s in segments], self.max_len - 1 - len(segments))
        flat, flat_units = [], []
        for ids, units, n in zip(segments, seg_units, keep):
            off = len(flat)
            flat_units.extend((a + off, min(b, n) + off) for a, b in units if a < n)
            flat.extend(ids[:n])
        if not flat:
            self.stats.skip("no_tokens")
            return None
        labels = mask_units(flat, flat_units, rng, self.info, self.tok.mask_id, self.mask_rate)
        pieces, label_pieces, pos = [], [], 0
        for n in keep:
            pieces.append(flat[pos:pos + n])
            label_pieces.append(labels[pos:pos + n])
            pos += n
        input_ids, sent_ids, labels = layout(self.tok, pieces, self.max_len, label_pieces)
        self.stats["examples"] += 1
        self.stats[f"level_{level}"] += 1
        return Example(self.name, input_ids, sent_ids, labels, self.task_id)
