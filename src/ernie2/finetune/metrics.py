"""Evaluation metrics of the fine-tuning tasks: classification, regression, chunks, ranking,
reading comprehension.

Everything here is plain numpy, so evaluation needs no optional dependency; the tests check each
metric against scikit-learn, scipy or seqeval on random predictions.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np


# ---------------------------------------------------------------------- classification
def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"{len(t)} true labels but {len(p)} predictions")
    return float((t == p).mean()) if t.size else 0.0


def _confusion(y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None):
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"{len(t)} true labels but {len(p)} predictions")
    labels = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    index = {v: i for i, v in enumerate(labels.tolist())}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(m, ([index[v] for v in t.tolist()], [index[v] for v in p.tolist()]), 1)
    return m, labels


def _safe_div(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def precision_recall_f1(y_true: Sequence, y_pred: Sequence, average: str = "binary",
                        pos_label: Hashable = 1) -> tuple[float, float, float]:
    """Precision, recall and F1 as scikit-learn computes them (zero where undefined).

    `average`: "binary" (scores of `pos_label`), "macro" (unweighted mean over labels seen in
    either list), "micro" (pooled counts) or "weighted" (mean weighted by true support).
    """
    m, labels = _confusion(y_true, y_pred)
    tp = np.diag(m).astype(np.float64)
    pred_n, true_n = m.sum(0), m.sum(1)
    if average == "binary":
        where = np.flatnonzero(labels == pos_label)
        if not where.size:  # the positive label never occurs: nothing found, nothing missed
            return 0.0, 0.0, 0.0
        i = where[0]
        tp, pred_n, true_n = tp[i:i + 1], pred_n[i:i + 1], true_n[i:i + 1]
    elif average == "micro":
        tp, pred_n, true_n = tp.sum(keepdims=True), pred_n.sum(keepdims=True), true_n.sum(
            keepdims=True)
    elif average not in ("macro", "weighted"):
        raise ValueError(f"average must be binary, macro, micro or weighted, got {average!r}")
    p, r = _safe_div(tp, pred_n), _safe_div(tp, true_n)
    f = _safe_div(2 * p * r, p + r)
    if average == "weighted":
        w = true_n / max(true_n.sum(), 1)
        return float((p * w).sum()), float((r * w).sum()), float((f * w).sum())
    return float(p.mean()), float(r.mean()), float(f.mean())


def matthews_corrcoef(y_true: Sequence, y_pred: Sequence) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K), 0 when undefined."""
    m, _ = _confusion(y_true, y_pred)
    m = m.astype(np.float64)
    t, p, c, s = m.sum(1), m.sum(0), np.trace(m), m.sum()
    cov_tp = c * s - t @ p
    denom = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float(cov_tp / denom) if denom else 0.0


def classification_scores(y_true: Sequence, y_pred: Sequence, num_labels: int,
                          pos_label: int = 1) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (binary for two labels, macro otherwise) and MCC."""
    average = "binary" if num_labels == 2 else "macro"
    p, r, f = precision_recall_f1(y_true, y_pred, average, pos_label)
    return {"accuracy": accuracy(y_true, y_pred), "precision": p, "recall": r, "f1": f,
            "mcc": matthews_corrcoef(y_true, y_pred)}


# ---------------------------------------------------------------------- regression
def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"{len(x)} values against {len(y)}")
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom else 0.0


def rankdata(x: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given their average rank (scipy's default method)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Runs of equal values share the mean of the ranks they span.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(rankdata(x), rankdata(y))


def regression_scores(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    return {"pearson": pearson(t, p), "spearman": spearman(t, p),
            "pearson_spearman": (pearson(t, p) + spearman(t, p)) / 2,
            "mse": float(((t - p) ** 2).mean()) if t.size else 0.0}


# ---------------------------------------------------------------------- chunks (BIO, IOB, IOBES)
SCHEMES = {"BIO": set("BIO"), "IOB": set("BIO"), "IOBES": set("BIOES")}


def _split_tag(tag: str) -> tuple[str, str]:
    # As seqeval reads them: the first character is the prefix, the rest after a dash the type
    # ("_" when there is none, as for "O").
    return tag[:1], tag[1:].split("-", 1)[-1] or "_"


# conlleval's rules, which read BIO, IOB (IOB1) and IOBES alike: a chunk ends before the current
# tag when the previous one closes it, and starts at the current tag when it opens one.
_ENDS_AFTER = {"E", "S"}
_ENDS_BEFORE = {("B", "B"), ("B", "S"), ("B", "O"), ("I", "B"), ("I", "S"), ("I", "O")}
_STARTS = {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")}


def chunks(tags: Sequence[str], scheme: str | None = None,
           strict: bool = False) -> list[tuple[str, int, int]]:
    """Chunks `(type, start, end)` (end inclusive) of one tag sequence.

    Default decoding follows conlleval, as seqeval's default mode does: it reads BIO, IOB and
    IOBES and accepts ill-formed sequences (an I- after O opens a chunk). `strict=True` keeps only
    well-formed chunks of `scheme` (BIO: B I*; IOBES: B I* E or S). A given `scheme` also
    checks that every prefix belongs to it.
    """
    if scheme is not None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown tag scheme {scheme!r}; known: {', '.join(SCHEMES)}")
        for i, t in enumerate(tags):
            if _split_tag(t)[0] not in SCHEMES[scheme]:
                raise ValueError(f"tag {t!r} at position {i} is not of the {scheme} scheme")
    if strict:
        if scheme not in ("BIO", "IOBES"):
            raise ValueError("strict chunk decoding needs scheme='BIO' or 'IOBES'")
        return _strict_chunks(tags, scheme)
    out = []
    prev, prev_type, begin = "O", "_", 0
    for i, tag in enumerate([*tags, "O"]):
        cur, cur_type = _split_tag(tag)
        ends = (prev in _ENDS_AFTER or (prev, cur) in _ENDS_BEFORE
                or (prev not in ("O", ".") and prev_type != cur_type))
        if ends:
            out.append((prev_type, begin, i - 1))
        if (cur in ("B", "S") or (prev, cur) in _STARTS
                or (cur not in ("O", ".") and prev_type != cur_type)):
            begin = i
        prev, prev_type = cur, cur_type
    return out


def _strict_chunks(tags: Sequence[str], scheme: str) -> list[tuple[str, int, int]]:
    out, open_type, begin = [], None, 0
    for i, tag in enumerate(tags):
        cur, kind = _split_tag(tag)
        if cur == "S":
            out.append((kind, i, i))
            open_type = None
        elif cur == "B":
            if scheme == "BIO" and open_type is not None:
                out.append((open_type, begin, i - 1))
            open_type, begin = kind, i
        elif cur == "I" and open_type == kind:
            continue
        elif cur == "E" and open_type == kind:
            out.append((kind, begin, i))
            open_type = None
        else:  # O, or a tag that does not continue the open chunk: drop the open chunk in IOBES
            if scheme == "BIO" and open_type is not None:
                out.append((open_type, begin, i - 1))
            open_type = None
    if scheme == "BIO" and open_type is not None:
        out.append((open_type, begin, len(tags) - 1))
    return out


def chunk_scores(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]],
                 scheme: str | None = None, strict: bool = False) -> dict[str, float]:
    """Micro-averaged chunk precision, recall and F1 over sentences (conlleval's numbers)."""
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} true sequences but {len(pred_seqs)} predicted")
    n_true = n_pred = n_correct = 0
    for i, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
        if len(t) != len(p):
            raise ValueError(f"sequence {i}: {len(t)} true tags but {len(p)} predicted")
        ct, cp = set(chunks(t, scheme, strict)), set(chunks(p, scheme, strict))
        n_true, n_pred, n_correct = n_true + len(ct), n_pred + len(cp), n_correct + len(ct & cp)
    prec = n_correct / n_pred if n_pred else 0.0
    rec = n_correct / n_true if n_true else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "true_chunks": int(n_true),
            "pred_chunks": int(n_pred)}


# ---------------------------------------------------------------------- ranking
def mean_reciprocal_rank(qids: Sequence[Hashable], labels: Sequence[int],
                         scores: Sequence[float]) -> float:
    """MRR over qid groups: 1 / rank of the best-scored positive; a group with no positive
    scores 0 (as ERNIE's NLPCC-DBQA evaluation counts it). Ties keep input order."""
    groups: dict[Hashable, list[tuple[float, int, int]]] = {}
    for i, (q, y, s) in enumerate(zip(qids, labels, scores)):
        groups.setdefault(q, []).append((-float(s), i, int(y)))
    if not groups:
        return 0.0
    total = 0.0
    for items in groups.values():
        items.sort()
        total += next((1.0 / r for r, (_, _, y) in enumerate(items, 1) if y), 0.0)
    return total / len(groups)


# ---------------------------------------------------------------------- reading comprehension
_CJK = (r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df")
_CJK_RE = re.compile(f"[{_CJK}]")
# Characters the CMRC 2018 evaluation treats as single segments and removes as punctuation.
_ZH_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』…")
_PUNCT = set(string.punctuation) | _ZH_PUNCT


def _is_punct(ch: str) -> bool:
    return ch in _PUNCT or unicodedata.category(ch).startswith("P")


def _segments(text: str) -> list[str]:
    """CMRC 2018's mixed segmentation: each CJK character alone, other runs split into words;
    punctuation dropped; lower-cased."""
    segs, word = [], []
    for ch in text.lower().strip():
        if _CJK_RE.match(ch) or _is_punct(ch) or ch.isspace():
            if word:
                segs.append("".join(word))
                word = []
            if _CJK_RE.match(ch):
                segs.append(ch)
        else:
            word.append(ch)
    if word:
        segs.append("".join(word))
    return segs


def _squad_tokens(text: str) -> list[str]:
    """SQuAD v1 normalization: lower case, no punctuation, no articles, split on whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def _longest_common_substring(a: Sequence, b: Sequence) -> int:
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def is_chinese(text: str) -> bool:
    return bool(_CJK_RE.search(text))


def answer_em_f1(prediction: str, answers: Iterable[str]) -> tuple[float, float]:
    """Exact match and F1 of one predicted answer, maxed over the gold answers.

    Chinese answers (any CJK character in a gold answer) are scored as the CMRC 2018 / DRCD
    evaluation does: segments are characters, F1 comes from the longest common substring.
    Others as SQuAD v1: bag-of-words overlap after removing punctuation and articles.
    """
    answers = list(answers)
    if not answers:
        raise ValueError("no gold answer to score against")
    em = f1 = 0.0
    for gold in answers:
        if is_chinese(gold):
            g, p = _segments(gold), _segments(prediction)
            em = max(em, float("".join(g) == "".join(p)))
            common = _longest_common_substring(g, p)
        else:
            g, p = _squad_tokens(gold), _squad_tokens(prediction)
            em = max(em, float(g == p))
            common = sum((Counter(g) & Counter(p)).values())
        if common:
            prec, rec = common / len(p), common / len(g)
            f1 = max(f1, 2 * prec * rec / (prec + rec))
    return em, f1


def mrc_scores(predictions: dict[str, str], answers: dict[str, list[str]]) -> dict[str, float]:
    """EM and F1 in percent over questions (each question's gold answers by id)."""
    missing = [q for q in answers if q not in predictions]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} question(s), e.g. {missing[:3]}")
    if not answers:
        return {"em": 0.0, "f1": 0.0}
    ems, f1s = zip(*(answer_em_f1(predictions[q], golds) for q, golds in answers.items()))
    return {"em": 100 * float(np.mean(ems)), "f1": 100 * float(np.mean(f1s))}


__all__ = ["accuracy", "answer_em_f1", "chunk_scores", "chunks", "classification_scores",
           "is_chinese", "matthews_corrcoef", "mean_reciprocal_rank", "mrc_scores", "pearson",
           "precision_recall_f1", "rankdata", "regression_scores", "spearman"]


def format_scores(scores: dict[str, float | int]) -> str:
    """'accuracy 0.8125, true_chunks 218': rates with four decimals, counts as whole numbers."""
    return ", ".join(f"{k} {v}" if isinstance(v, int) else f"{k} {v:.4f}"
                     for k, v in scores.items())
