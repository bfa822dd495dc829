"""Laying segments out as one input: [CLS] s0 [SEP] s1 [SEP] ..., truncated longest-first."""

from __future__ import annotations

from collections.abc import Sequence

from ernie2.model.heads import IGNORE_INDEX


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
