"""Extractive reading comprehension: sliding windows over long contexts and n-best span search.

A window is `[CLS] question [SEP] context piece [SEP]`; windows start every `stride` context
tokens until one reaches the end of the context. Each context token remembers its character
span in the context, so an answer maps back to exact characters (Chinese answers are character
spans). A token seen by several windows is scored only in the window where it has the most
context on both sides (the "max context" rule of BERT's SQuAD code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    """One model input cut from a (question, context) example."""

    example_index: int
    input_ids: list[int]
    sent_ids: list[int]
    context_offset: int  # position in input_ids of the window's first context token
    token_spans: list[tuple[int, int]]  # character span in the context of each context token
    max_context: list[bool]  # per context token: is this its best window?
    start_position: int = 0  # answer tokens in input_ids; 0 ([CLS]) when not inside the window
    end_position: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class SpanPrediction:
    text: str
    start: int  # character offsets in the context, end exclusive; -1 when no span was found
    end: int
    score: float
    probability: float = 0.0
    window: int = -1  # index of the window it came from


@dataclass
class AnswerSearch:
    """Knobs of the span search (ERNIE's run_mrc defaults: 20 best, answers of 100 tokens)."""

    n_best: int = 20
    max_answer_len: int = 100


def window_starts(n_tokens: int, window_len: int, stride: int) -> list[tuple[int, int]]:
    """(start, length) of each window over `n_tokens` context tokens."""
    if window_len < 1:
        raise ValueError(f"no room for context tokens (window length {window_len})")
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    spans, start = [], 0
    while True:
        length = min(window_len, n_tokens - start)
        spans.append((start, length))
        if start + length >= n_tokens:
            return spans
        start += min(length, stride)


def max_context_flags(spans: Sequence[tuple[int, int]]) -> list[list[bool]]:
    """For each window, whether each of its tokens has its most context there
    (score: min(left, right) context + 0.01 * window length; first window wins ties)."""
    best: dict[int, tuple[float, int]] = {}
    for w, (start, length) in enumerate(spans):
        for pos in range(start, start + length):
            score = min(pos - start, start + length - 1 - pos) + 0.01 * length
            if pos not in best or score > best[pos][0]:
                best[pos] = (score, w)
    return [[best[pos][1] == w for pos in range(start, start + length)]
            for w, (start, length) in enumerate(spans)]


def char_span_to_tokens(token_spans: Sequence[tuple[int, int]], start: int,
                        end: int) -> tuple[int, int] | None:
    """First and last token covering characters [start, end); None when no token does."""
    first = next((i for i, (_, e) in enumerate(token_spans) if e > start), None)
    last = next((i for i in range(len(token_spans) - 1, -1, -1) if token_spans[i][0] < end),
                None)
    if first is None or last is None or last < first:
        return None
    return first, last


def make_windows(example_index: int, question_ids: Sequence[int],
                 context_ids: Sequence[int], context_spans: Sequence[tuple[int, int]],
                 cls_id: int, sep_id: int, max_len: int, stride: int,
                 answer: tuple[int, int] | None = None) -> list[Window]:
    """Cut windows from tokenized pieces; `answer` is a character span [start, end) of the
    context, labeled in each window that holds it whole ([CLS] elsewhere)."""
    budget = max_len - len(question_ids) - 3
    spans = window_starts(len(context_ids), budget, stride)
    flags = max_context_flags(spans)
    answer_tokens = (char_span_to_tokens(context_spans, *answer) if answer is not None
                     else None)
    windows = []
    for (start, length), flag in zip(spans, flags):
        head = [cls_id, *question_ids, sep_id]
        ids = head + list(context_ids[start:start + length]) + [sep_id]
        sent = [0] * len(head) + [1] * (length + 1)
        win = Window(example_index, ids, sent, len(head),
                     list(context_spans[start:start + length]), flag)
        if answer_tokens is not None:
            a, b = answer_tokens
            if start <= a and b < start + length:
                win.start_position = a - start + len(head)
                win.end_position = b - start + len(head)
        windows.append(win)
    return windows


def best_spans(windows: Sequence[Window], start_logits: Sequence[np.ndarray],
               end_logits: Sequence[np.ndarray], context: str,
               search: AnswerSearch | None = None) -> list[SpanPrediction]:
    """The n best answer spans of one example over all its windows, best first, with
    probabilities (softmax over the n best). Empty list when no valid span exists."""
    search = search or AnswerSearch()
    cands: list[tuple[float, int, int, int]] = []
    for w, (win, s_log, e_log) in enumerate(zip(windows, start_logits, end_logits)):
        s_log, e_log = np.asarray(s_log, dtype=np.float64), np.asarray(e_log, dtype=np.float64)
        lo, n_ctx = win.context_offset, len(win.token_spans)
        s_ctx, e_ctx = s_log[lo:lo + n_ctx], e_log[lo:lo + n_ctx]
        k = min(search.n_best, n_ctx)
        top_s = np.argsort(-s_ctx, kind="stable")[:k]
        top_e = np.argsort(-e_ctx, kind="stable")[:k]
        for i in top_s:
            if not win.max_context[i]:
                continue
            for j in top_e:
                if j < i or j - i + 1 > search.max_answer_len:
                    continue
                cands.append((float(s_ctx[i] + e_ctx[j]), w, int(i), int(j)))
    cands.sort(key=lambda c: -c[0])
    out: list[SpanPrediction] = []
    seen: set[tuple[int, int]] = set()
    for score, w, i, j in cands:
        a, b = windows[w].token_spans[i][0], windows[w].token_spans[j][1]
        if (a, b) in seen:
            continue
        seen.add((a, b))
        out.append(SpanPrediction(context[a:b], a, b, score, window=w))
        if len(out) == search.n_best:
            break
    if out:
        scores = np.array([p.score for p in out])
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        for p, pr in zip(out, probs):
            p.probability = float(pr)
    return out


NO_ANSWER = SpanPrediction("", -1, -1, float("-inf"))

__all__ = ["AnswerSearch", "NO_ANSWER", "SpanPrediction", "Window", "best_spans",
           "char_span_to_tokens", "make_windows", "max_context_flags", "window_starts"]
