"""What the task modules share: tokenized sentences and their masking units, example layout,
a reservoir of recent documents, labeled-pair files, heads and losses."""

from __future__ import annotations

import csv
import os
import random
import weakref
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ernie2.corpus.document import Document, Sentence
from ernie2.corpus.text import is_punctuation
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks.protocol import Example

_UNBOUNDED = 1 << 30


def as_tokenizer(tokenizer):
    """An ErnieTokenizer, from itself or a vocab path."""
    if tokenizer is None:
        raise ValueError("pre-training tasks need tokenizer=ErnieTokenizer(vocab) or a vocab path")
    if isinstance(tokenizer, (str, os.PathLike)):
        from ernie2.tokenizer import ErnieTokenizer
        return ErnieTokenizer(tokenizer)
    return tokenizer


# ------------------------------------------------------------------------------ vocab facts
@dataclass
class VocabInfo:
    """Per-id facts about a vocab, computed once per tokenizer."""

    special: frozenset[int]
    continuation: bytearray  # 1 for "##" pieces
    punctuation: bytearray  # 1 for tokens made of punctuation/symbols
    random_ids: list[int]  # replacement candidates: real tokens, no special or [unused] ones


_INFO: weakref.WeakKeyDictionary[Any, VocabInfo] = weakref.WeakKeyDictionary()


def vocab_info(tok) -> VocabInfo:
    info = _INFO.get(tok)
    if info is None:
        size = tok.vocab_size
        cont, punct = bytearray(size), bytearray(size)
        special = {i for t, i in tok.vocab.items() if t.startswith("[") and t.endswith("]")}
        for t, i in tok.vocab.items():
            if t.startswith("##"):
                cont[i] = 1
            elif is_punctuation(t):
                punct[i] = 1
        rand = sorted(i for i in tok.vocab.values() if i not in special)
        info = VocabInfo(frozenset(special), cont, punct, rand or [tok.unk_id])
        _INFO[tok] = info
    return info


# ------------------------------------------------------------------------ tokenized sentences
class TokSent:
    """A sentence as tokens: ids, character offsets (None for pre-tokenized input), and the
    word each token belongs to (corpus/jieba words when known, else WordPiece words)."""

    __slots__ = ("ids", "starts", "ends", "word_ids")

    def __init__(self, ids, starts, ends, word_ids):
        self.ids, self.starts, self.ends, self.word_ids = ids, starts, ends, word_ids

    def __len__(self) -> int:
        return len(self.ids)


_CACHE_ATTR = "_ernie2_tokens"


def _word_ids_from_words(sentence: Sentence, starts: list[int]) -> list[int] | None:
    text = sentence.text
    word_starts, pos = [], 0
    for w in sentence.words:
        s = text.find(w, pos)
        if s < 0:
            return None
        word_starts.append(s)
        pos = s + len(w)
    return [max(bisect_right(word_starts, s) - 1, 0) for s in starts]


def _from_encoding(sentence: Sentence, enc, info: VocabInfo) -> TokSent:
    ids = enc.input_ids[1:-1]
    offs = enc.offsets[1:-1]
    starts = [o[0] for o in offs]
    ends = [o[1] for o in offs]
    word_ids = _word_ids_from_words(sentence, starts) if sentence.words else None
    if word_ids is None:
        cont = info.continuation
        word_ids, w = [], -1
        for i in ids:
            if not cont[i] or w < 0:
                w += 1
            word_ids.append(w)
    return TokSent(ids, starts, ends, word_ids)


def _pretokenized(sentence: Sentence) -> TokSent:
    word_ids, w = [], -1
    for s in sentence.seg_labels or [0] * len(sentence.token_ids):
        if s != 1 or w < 0:
            w += 1
        word_ids.append(w)
    return TokSent(list(sentence.token_ids), None, None, word_ids)


def tokenize_sentences(tok, sentences: Sequence[Sentence], lower: bool = False) -> list[TokSent]:
    """Tokenize sentences (cached on each Sentence, per tokenizer and casing), in one batch.

    `lower=True` tokenizes the lower-cased text (for a tokenizer that keeps case)."""
    key = (id(tok), lower)
    out: list[TokSent | None] = []
    todo = []
    for k, s in enumerate(sentences):
        cache = s.__dict__.get(_CACHE_ATTR)
        ts = cache.get(key) if cache else None
        if ts is None and s.token_ids is not None:
            ts = _pretokenized(s)
        out.append(ts)
        if ts is None:
            todo.append(k)
    if todo:
        info = vocab_info(tok)
        texts = [sentences[k].text.lower() if lower else sentences[k].text for k in todo]
        for k, enc in zip(todo, tok.encode_batch(texts, max_len=_UNBOUNDED)):
            ts = _from_encoding(sentences[k], enc, info)
            sentences[k].__dict__.setdefault(_CACHE_ATTR, {})[key] = ts
            out[k] = ts
    return out  # type: ignore[return-value]


def encode_text(tok, text: str) -> list[int]:
    """Token ids of a plain string (no special tokens)."""
    return tok.encode_batch([text], max_len=_UNBOUNDED)[0].input_ids[1:-1]


def sentence_window(tok, sents: Sequence[Sentence], start: int, budget: int,
                    max_sentences: int | None = None, chunk: int = 6,
                    lower: bool = False) -> list[TokSent]:
    """Consecutive sentences from `start` whose tokens fit `budget` (at least one sentence,
    which layout truncates when it alone is too long)."""
    out: list[TokSent] = []
    total, i, n = 0, start, len(sents)
    limit = n if max_sentences is None else min(n, start + max_sentences)
    while i < limit:
        batch = tokenize_sentences(tok, sents[i:min(limit, i + chunk)], lower)
        for ts in batch:
            if out and total + len(ts) > budget:
                return out
            out.append(ts)
            total += len(ts)
            i += 1
            if total >= budget:
                return out
    return out


# --------------------------------------------------------------------------- masking units
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


# ---------------------------------------------------------------------------------- layout
def fit_lengths(lengths: Sequence[int], budget: int) -> list[int]:
    """Longest-first truncation of several segments to a total budget."""
    lengths = list(lengths)
    while sum(lengths) > budget:
        k = max(range(len(lengths)), key=lambda i: lengths[i])
        over = sum(lengths) - budget
        second = max((x for i, x in enumerate(lengths) if i != k), default=0)
        lengths[k] -= max(1, min(over, lengths[k] - second))
    return lengths


def layout(tok, segments: Sequence[Sequence[int]], max_len: int,
           labels: Sequence[Sequence[int]] | None = None):
    """[CLS] s0 [SEP] s1 [SEP] ... with sentence ids alternating 0/1 per segment, truncated
    longest-first to max_len. Returns (input_ids, sent_ids, token labels or None), labels
    IGNORE_INDEX on special tokens."""
    if max_len < 2 * len(segments) + 1:
        raise ValueError(f"max_len {max_len} leaves no room for {len(segments)} segment(s)")
    keep = fit_lengths([len(s) for s in segments], max_len - 1 - len(segments))
    ids, sent = [tok.cls_id], [0]
    out_labels = [IGNORE_INDEX] if labels is not None else None
    for k, (seg, n) in enumerate(zip(segments, keep)):
        ids.extend(seg[:n])
        ids.append(tok.sep_id)
        sent.extend([k % 2] * (n + 1))
        if out_labels is not None:
            out_labels.extend(labels[k][:n])
            out_labels.append(IGNORE_INDEX)
    return ids, sent, out_labels


# ------------------------------------------------------------------------------ documents
def doc_key(doc: Document) -> str:
    """An identity for a document (its source when known), to tell documents apart."""
    if doc.source:
        return doc.source
    first = doc.sentences[0] if doc.paragraphs and doc.paragraphs[0] else None
    return f"{doc.title or ''}|{first.text[:64] if first else ''}"


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


class TaskStats(Counter):
    """Examples built and documents skipped, by reason (`skipped_<reason>`)."""

    def skip(self, reason: str) -> None:
        self[f"skipped_{reason}"] += 1


# ----------------------------------------------------------------------- labeled pair files
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


# ---------------------------------------------------------------------------- heads, losses
def sequence_head(config, num_classes: int):
    from ernie2.model.heads import SequenceHead

    dropout = config.classifier_dropout_prob
    return SequenceHead(config.hidden_size, num_classes,
                        config.hidden_dropout_prob if dropout is None else dropout,
                        config.initializer_range)


def token_head(config, num_classes: int):
    from ernie2.model.heads import TokenHead

    return TokenHead(config.hidden_size, num_classes, config.hidden_dropout_prob,
                     config.initializer_range)


def mlm_head(config, encoder):
    from ernie2.model.heads import MaskedLMHead

    return MaskedLMHead(config, encoder.embeddings.word_embeddings)


def _scored(logits: torch.Tensor, labels: torch.Tensor, anchor: torch.Tensor):
    if labels.numel() == 0:  # nothing to score in this batch: a zero loss still in the graph
        zero = anchor.sum() * 0.0
        return zero, {"correct": 0.0, "count": 0.0, "loss_sum": 0.0}
    loss = F.cross_entropy(logits.float(), labels)
    n = labels.numel()
    correct = (logits.detach().argmax(-1) == labels).sum().item()
    return loss, {"correct": float(correct), "count": float(n),
                  "loss_sum": float(loss.detach()) * n}


def sequence_compute(head, pooled: torch.Tensor, batch: dict[str, torch.Tensor]):
    """Cross-entropy of the pooled-output classifier against batch["labels"] [B]."""
    return _scored(head(pooled), batch["labels"], pooled)


def token_compute(head, encoded: torch.Tensor, batch: dict[str, torch.Tensor]):
    """Cross-entropy of the per-token classifier, run only at labeled positions."""
    labels = batch["labels"]
    keep = labels != IGNORE_INDEX
    return _scored(head(encoded[keep]), labels[keep], encoded)


def mlm_compute(head, encoded: torch.Tensor, batch: dict[str, torch.Tensor]):
    """Masked-LM cross-entropy; logits only at the masked (labeled) positions."""
    labels = batch["labels"]
    keep = labels != IGNORE_INDEX
    return _scored(head(encoded, keep), labels[keep], encoded)


# Protocol members a task class binds directly (`make_head = sequence_make_head`), so the tasks
# share them without inheriting from a base class.
def sequence_make_head(task, config, encoder):
    return sequence_head(config, task.num_classes)


POOLINGS = ("pooler", "cls", "mean")


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return pooling


def pool(how: str, pooled: torch.Tensor | None, encoded: torch.Tensor,
         attention_mask: torch.Tensor) -> torch.Tensor:
    """The vector a sentence-level head reads: "pooler", the encoder's pooled [CLS] output
    (tanh(dense([CLS])), as ERNIE's heads); "cls", the last layer's [CLS] state itself; "mean",
    the mean of the last layer's token states (padding left out)."""
    if how == "pooler":
        if pooled is None:
            raise ValueError("pooling='pooler' needs an encoder with a pooler (has_pooler); "
                             "use pooling='cls' or 'mean'")
        return pooled
    if how == "cls":
        return encoded[:, 0]
    mask = attention_mask[:, :encoded.shape[1]].unsqueeze(-1).to(encoded.dtype)
    return (encoded * mask).sum(1) / mask.sum(1).clamp(min=1)


def sequence_task_compute(task, head, pooled, encoded, batch):
    how = getattr(task, "pooling", "pooler")
    return sequence_compute(head, pool(how, pooled, encoded, batch["attention_mask"]), batch)


def token_make_head(task, config, encoder):
    return token_head(config, task.num_classes)


def token_task_compute(task, head, pooled, encoded, batch):
    return token_compute(head, encoded, batch)


def mlm_make_head(task, config, encoder):
    return mlm_head(config, encoder)


def mlm_task_compute(task, head, pooled, encoded, batch):
    return mlm_compute(head, encoded, batch)


def reservoir_state_dict(task) -> dict[str, Any]:
    return {"reservoir": task.reservoir.state_dict()}


def reservoir_load_state_dict(task, state: dict[str, Any]) -> None:
    task.reservoir.load_state_dict(state["reservoir"])


def token_example(task, ids: list[int], labels: list[int]) -> Example | None:
    """One segment with per-token labels laid out as an Example, or None (counted) when
    nothing in the kept part is scored."""
    if all(lab == IGNORE_INDEX for lab in labels[:task.max_len - 2]):
        task.stats.skip("nothing_to_score")
        return None
    input_ids, sent_ids, labels = layout(task.tok, [ids], task.max_len, [labels])
    task.stats["examples"] += 1
    return Example(task.name, input_ids, sent_ids, labels, task.task_id)


def sequence_example(task, segments: Sequence[Sequence[int]], label: int) -> Example:
    """Segments and a class laid out as an Example, counted by label in task.stats."""
    input_ids, sent_ids, _ = layout(task.tok, segments, task.max_len)
    task.stats["examples"] += 1
    task.stats[f"label_{label}"] += 1
    return Example(task.name, input_ids, sent_ids, label, task.task_id)
