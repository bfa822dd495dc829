"""The six fine-tuning task types as one table: each row a reader, encoder, head, loss, decoder,
metric and writer. Datasets are rows of the presets table, never new code here.

| type     | data                                  | head on               | loss              |
| -------- | ------------------------------------- | --------------------- | ----------------- |
| classify | TSV text_a, label                     | pooled [CLS]          | cross-entropy     |
| pair     | TSV text_a, text_b, label             | pooled [CLS]          | cross-entropy     |
| regress  | TSV text_a, (text_b), float label     | pooled [CLS], 1 unit  | mean squared error|
| ner      | NER TSV or column file                | first piece of a word | cross-entropy/CRF |
| mrc      | SQuAD v1 JSON                         | every context token   | start/end CE      |
| rank     | TSV text_a, text_b, label, qid        | pooled [CLS]          | cross-entropy     |
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ernie2.finetune import metrics, mrc
from ernie2.finetune.crf import LinearChainCRF
from ernie2.finetune.readers import (DataError, Labels, MrcExample, TaggedExample, TextExample,
                                     collect_labels, read_ner, read_squad, read_text_tsv)
from ernie2.model.batch import Feature
from ernie2.model.heads import (IGNORE_INDEX, SequenceHead, SpanHead, TokenHead, check_pooling,
                                pool, pooled_width)
from ernie2.utils import atomic_open, atomic_write_text


@dataclass
class TaskOptions:
    """Everything about a task besides its data and labels; saved with a fine-tuned model."""

    max_len: int = 128
    for_cn: bool = False  # strip spaces next to Chinese characters in TSV text
    dropout: float = 0.1  # of the head's input
    crf: bool = False  # ner: a linear-chain CRF over the tag scores instead of softmax
    scheme: str | None = None  # ner: BIO, IOB or IOBES to check tags (None: conlleval reads all)
    stride: int = 128  # mrc: distance between window starts, in context tokens
    max_query_len: int = 64  # mrc: question tokens kept
    n_best: int = 20  # mrc
    max_answer_len: int = 100  # mrc: in tokens
    positive_label: str = "1"  # rank: the label of a relevant candidate
    # classify, pair, regress, rank: what the head reads: "pooler" (tanh(dense([CLS])), ERNIE's
    # heads), "cls" (the [CLS] state) or "mean" (the mean of the token states)
    pooling: str = "pooler"

    def __post_init__(self) -> None:
        check_pooling(self.pooling)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TaskOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown task option(s): {', '.join(unknown)}")
        return cls(**raw)


# ---------------------------------------------------------------------- sequence level
def _pooled(head, pooled: torch.Tensor | None, encoded: torch.Tensor, batch) -> torch.Tensor:
    how = head.pooling
    if how == "pooler" and pooled is None:  # an encoder without a pooler reads [CLS]
        how = "cls"
    return pool(how, pooled, encoded, batch.get("attention_mask"), batch.get("sent_ids"))


def _sequence_head(config, num_labels: int, opts: TaskOptions) -> nn.Module:
    head = SequenceHead(pooled_width(opts.pooling, config.hidden_size), num_labels, opts.dropout,
                        config.initializer_range)
    head.pooling = opts.pooling  # read by _pooled; saved with the model's task options
    return head


def _encode_texts(examples: Sequence[TextExample], tokenizer, labels: Labels | None,
                  opts: TaskOptions) -> list[Feature]:
    texts_b = [ex.text_b for ex in examples] if examples and examples[0].text_b is not None \
        else None
    encs = tokenizer.encode_batch([ex.text_a for ex in examples], texts_b, opts.max_len)
    out = []
    for i, (ex, enc) in enumerate(zip(examples, encs)):
        f: Feature = {"input_ids": enc.input_ids, "sent_ids": enc.sent_ids, "example": i}
        if ex.label is not None:
            f["labels"] = (float(ex.label) if labels is None
                           else labels.id(str(ex.label), ex.source))
        out.append(f)
    return out


def _logits_forward(head, pooled, encoded, batch):
    return {"logits": head(_pooled(head, pooled, encoded, batch))}


def _ce_loss(head, out, batch):
    return F.cross_entropy(out["logits"].float(), batch["labels"])


def _probs(head, out, batch) -> list[np.ndarray]:
    return list(torch.softmax(out["logits"].float(), -1).cpu().numpy())


def _decode_labels(examples, features, results, labels: Labels, opts) -> list[dict]:
    out = []
    for ex, probs in zip(examples, results):
        pred = {"label": labels[int(np.argmax(probs))],
                "probs": {lab: float(p) for lab, p in zip(labels, probs)}}
        if ex.qid is not None:
            pred["qid"] = ex.qid
        out.append(pred)
    return out


def _label_ids(examples, labels: Labels) -> list[int]:
    return [labels.id(str(ex.label), ex.source) for ex in examples]


def _score_classes(examples, preds, labels: Labels, opts) -> dict[str, float]:
    pos = labels.names.index(opts.positive_label) if opts.positive_label in labels else \
        len(labels) - 1
    return metrics.classification_scores(_label_ids(examples, labels),
                                         [labels.id(p["label"]) for p in preds], len(labels), pos)


def _score_ranking(examples, preds, labels: Labels, opts) -> dict[str, float]:
    if opts.positive_label not in labels:
        raise DataError(f"ranking needs a positive label {opts.positive_label!r}; labels are "
                        f"{', '.join(labels)}")
    scores = _score_classes(examples, preds, labels, opts)
    relevant = [int(str(ex.label) == opts.positive_label) for ex in examples]
    scores["mrr"] = metrics.mean_reciprocal_rank(
        [ex.qid for ex in examples], relevant, [p["probs"][opts.positive_label] for p in preds])
    return scores


def _write_labels(examples, preds, labels: Labels, path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        qid = examples and examples[0].qid is not None
        fh.write("\t".join(["index", *(["qid"] if qid else []), "label",
                            *(f"prob_{lab}" for lab in labels)]) + "\n")
        for i, (ex, p) in enumerate(zip(examples, preds)):
            fh.write("\t".join([str(i), *([ex.qid] if qid else []), p["label"],
                                *(f"{p['probs'][lab]:.6f}" for lab in labels)]) + "\n")


# ---------------------------------------------------------------------- regression
def _score_forward(head, pooled, encoded, batch):
    return {"score": head(_pooled(head, pooled, encoded, batch)).squeeze(-1)}


def _mse_loss(head, out, batch):
    return F.mse_loss(out["score"].float(), batch["labels"].float())


def _scores(head, out, batch) -> list[float]:
    return out["score"].float().cpu().tolist()


def _decode_scores(examples, features, results, labels, opts) -> list[dict]:
    return [{"score": float(s)} for s in results]


def _score_regression(examples, preds, labels, opts) -> dict[str, float]:
    return metrics.regression_scores([float(ex.label) for ex in examples],
                                     [p["score"] for p in preds])


def _write_scores(examples, preds, labels, path: Path) -> None:
    atomic_write_text(path, "index\tscore\n" + "".join(
        f"{i}\t{p['score']:.6f}\n" for i, p in enumerate(preds)))


# ---------------------------------------------------------------------- sequence labeling
class TaggingHead(nn.Module):
    """Per-token tag scores, read at the first word piece of each word; optionally a CRF."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1,
                 crf: bool = False, initializer_range: float = 0.02):
        super().__init__()
        self.token = TokenHead(hidden_size, num_labels, dropout, initializer_range)
        self.crf = LinearChainCRF(num_labels) if crf else None

    def forward(self, encoded: torch.Tensor, word_starts: torch.Tensor) -> torch.Tensor:
        index = word_starts.unsqueeze(-1).expand(-1, -1, encoded.shape[-1])
        return self.token(encoded.gather(1, index))  # [B, W, num_labels]


def _tagging_head(config, num_labels: int, opts: TaskOptions) -> nn.Module:
    return TaggingHead(config.hidden_size, num_labels, opts.dropout, opts.crf,
                       config.initializer_range)


def _read_tagged(path, opts, need_label):
    return read_ner(path, need_label)


def _check_scheme(examples: Sequence[TaggedExample], opts: TaskOptions) -> None:
    if opts.scheme is None:
        return
    allowed = metrics.SCHEMES.get(opts.scheme)
    if allowed is None:
        raise ValueError(f"unknown tag scheme {opts.scheme!r}; known: "
                         f"{', '.join(metrics.SCHEMES)}")
    for ex in examples:
        for i, tag in enumerate(ex.labels or ()):
            if tag[:1] not in allowed or (tag != "O" and tag[1:2] != "-"):
                raise DataError(f"{ex.source}: tag {tag!r} of token {i} is not of the "
                                f"{opts.scheme} scheme")


def _encode_tagged(examples: Sequence[TaggedExample], tokenizer, labels: Labels,
                   opts: TaskOptions) -> list[Feature]:
    """One feature per run of words that fits in max_len pieces: a long sentence becomes
    several features, so no word goes unlabeled or unpredicted."""
    _check_scheme(examples, opts)
    cache: dict[str, list[int]] = {}
    budget = opts.max_len - 2
    if budget < 1:
        raise ValueError(f"max_len {opts.max_len} leaves no room for tokens")
    out = []
    for i, ex in enumerate(examples):
        pieces = []
        for tok in ex.tokens:
            ids = cache.get(tok)
            if ids is None:
                # A token the tokenizer drops (a control character) still needs a position.
                ids = cache[tok] = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(tok)) \
                    or [tokenizer.unk_id]
            pieces.append(ids[:budget])
        label_ids = ([labels.id(t, ex.source) for t in ex.labels]
                     if ex.labels is not None else None)
        start = 0
        while start < len(pieces):
            end, used = start, 0
            while end < len(pieces) and used + len(pieces[end]) <= budget:
                used += len(pieces[end])
                end += 1
            ids, starts = [tokenizer.cls_id], []
            for p in pieces[start:end]:
                starts.append(len(ids))
                ids.extend(p)
            ids.append(tokenizer.sep_id)
            f: Feature = {"input_ids": ids, "sent_ids": [0] * len(ids), "word_starts": starts,
                          "example": i, "word_offset": start}
            if label_ids is not None:
                f["labels"] = label_ids[start:end]
            out.append(f)
            start = end
    return out


def _tag_forward(head, pooled, encoded, batch):
    return {"emissions": head(encoded, batch["word_starts"]), "mask": batch["word_mask"].bool()}


def _tag_loss(head, out, batch):
    emissions, labels = out["emissions"].float(), batch["labels"]
    if head.crf is not None:
        return head.crf.nll(emissions, labels.clamp(min=0), out["mask"])
    return F.cross_entropy(emissions.reshape(-1, emissions.shape[-1]), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def _tag_paths(head, out, batch) -> list[list[int]]:
    emissions, mask = out["emissions"].float(), out["mask"]
    if head.crf is not None:
        return head.crf.viterbi(emissions, mask)
    best = emissions.argmax(-1).cpu()
    lengths = mask.sum(1).tolist()
    return [best[i, :n].tolist() for i, n in enumerate(lengths)]


def _decode_tags(examples, features, results, labels: Labels, opts) -> list[dict]:
    tags: list[list[str | None]] = [[None] * len(ex.tokens) for ex in examples]
    for f, path in zip(features, results):
        row = tags[f["example"]]
        for k, t in enumerate(path):
            row[f["word_offset"] + k] = labels[t]
    for ex, row in zip(examples, tags):
        if None in row:  # every word is in some feature; this would be a bug, not bad data
            raise RuntimeError(f"{ex.source}: token {row.index(None)} got no prediction")
    return [{"tokens": ex.tokens, "tags": row} for ex, row in zip(examples, tags)]


def _tag_units(batch, opts: TaskOptions) -> float:
    # Softmax averages over labeled words, the CRF over sentences.
    if opts.crf:
        return float(len(batch["input_ids"]))
    return float((batch["labels"] != IGNORE_INDEX).sum())


def _score_tags(examples, preds, labels, opts) -> dict[str, float]:
    return metrics.chunk_scores([ex.labels for ex in examples], [p["tags"] for p in preds],
                                opts.scheme)


def _write_tags(examples, preds, labels, path: Path) -> None:
    # The NER TSV format itself, so predictions read back with read_ner_tsv.
    atomic_write_text(path, "text_a\tlabel\n" + "".join(
        "\x02".join(p["tokens"]) + "\t" + "\x02".join(p["tags"]) + "\n" for p in preds))


# ---------------------------------------------------------------------- reading comprehension
def _read_squad(path, opts, need_label):
    return read_squad(path, need_label)


def _encode_mrc(examples: Sequence[MrcExample], tokenizer, labels, opts: TaskOptions
                ) -> list[Feature]:
    contexts = sorted({ex.context for ex in examples})
    # Very long budget: contexts are cut into windows here, not truncated by the tokenizer.
    ctx_enc = dict(zip(contexts, tokenizer.encode_batch(contexts, max_len=1 << 30)))
    q_enc = tokenizer.encode_batch([ex.question for ex in examples],
                                   max_len=opts.max_query_len + 2)
    out = []
    for i, (ex, q) in enumerate(zip(examples, q_enc)):
        c = ctx_enc[ex.context]
        ans = ex.answers[0] if ex.answers else None
        windows = mrc.make_windows(
            i, q.input_ids[1:-1], c.input_ids[1:-1], c.offsets[1:-1], tokenizer.cls_id,
            tokenizer.sep_id, opts.max_len, opts.stride,
            (ans.start, ans.start + len(ans.text)) if ans is not None else None)
        for w in windows:
            out.append({"input_ids": w.input_ids, "sent_ids": w.sent_ids,
                        "start_position": w.start_position, "end_position": w.end_position,
                        "example": i, "_window": w})
    return out


def _span_forward(head, pooled, encoded, batch):
    start, end = head(encoded)
    pad = ~batch["attention_mask"].bool()
    # Padding can never be an answer; a large finite value keeps the loss finite.
    return {"start": start.float().masked_fill(pad, -1e4),
            "end": end.float().masked_fill(pad, -1e4)}


def _span_loss(head, out, batch):
    return (F.cross_entropy(out["start"], batch["start_position"])
            + F.cross_entropy(out["end"], batch["end_position"])) / 2


def _span_logits(head, out, batch) -> list[tuple[np.ndarray, np.ndarray]]:
    lengths = batch["attention_mask"].sum(1).tolist()
    s, e = out["start"].cpu().numpy(), out["end"].cpu().numpy()
    return [(s[i, :n], e[i, :n]) for i, n in enumerate(lengths)]


def _span_head(config, num_labels, opts):
    return SpanHead(config.hidden_size, config.initializer_range)


def _decode_spans(examples, features, results, labels, opts: TaskOptions) -> list[dict]:
    per_example: list[list[tuple[mrc.Window, np.ndarray, np.ndarray]]] = [[] for _ in examples]
    for f, (s, e) in zip(features, results):
        per_example[f["example"]].append((f["_window"], s, e))
    search = mrc.AnswerSearch(opts.n_best, opts.max_answer_len)
    out = []
    for ex, items in zip(examples, per_example):
        wins, starts, ends = zip(*items)
        nbest = mrc.best_spans(wins, starts, ends, ex.context, search)
        best = nbest[0] if nbest else mrc.NO_ANSWER
        out.append({"id": ex.qid, "answer": best.text, "start": best.start, "end": best.end,
                    "probability": best.probability,
                    "nbest": [{"text": p.text, "start": p.start, "end": p.end,
                               "probability": p.probability} for p in nbest]})
    return out


def _score_spans(examples, preds, labels, opts) -> dict[str, float]:
    return metrics.mrc_scores({p["id"]: p["answer"] for p in preds},
                              {ex.qid: [a.text for a in ex.answers] for ex in examples})


def _one_cell(text: str) -> str:
    return " ".join(text.split())  # a tab or newline inside an answer would break the row


def _write_spans(examples, preds, labels, path: Path) -> None:
    # The TSV shows answers on one line; predictions.json keeps them exact.
    atomic_write_text(path, "id\tanswer\tstart\tend\tprobability\n" + "".join(
        f"{p['id']}\t{_one_cell(p['answer'])}\t{p['start']}\t{p['end']}\t"
        f"{p['probability']:.6f}\n" for p in preds))
    name = path.name
    name = ("predictions.json" if name == "test_out.tsv" else
            name[:-len("_out.tsv")] + "_predictions.json" if name.endswith("_out.tsv") else
            f"{path.stem}_predictions.json")
    atomic_write_text(path.with_name(name), json.dumps(
        {p["id"]: p["answer"] for p in preds}, ensure_ascii=False, indent=1) + "\n")


# ---------------------------------------------------------------------- the table
@dataclass(frozen=True)
class TaskType:
    """One code path of fine-tuning. `labels` says what the label column holds: "classes"
    (a label set, label_map.json), "tags" (a tag set), "number" or "span" (no label set).
    `inputs` says what one plain input (a request's item, a Python value) is: "text", "pair",
    "text_or_pair", "tokens" or "question" ({question, context}); the server, the plain-input
    reader and distillation read it rather than the type's name."""

    name: str
    description: str
    labels: str
    inputs: str
    head_name: str  # checkpoint tensors are saved as heads.<head_name>.<param>
    main_metric: str
    data_suffixes: tuple[str, ...]
    read: Callable[[str | os.PathLike, TaskOptions, bool], list]
    encode: Callable[..., list[Feature]]
    make_head: Callable[[Any, int, TaskOptions], nn.Module]
    forward: Callable[..., dict[str, torch.Tensor]]
    loss: Callable[..., torch.Tensor]
    infer: Callable[..., list]  # model outputs of one batch -> one result per feature
    decode: Callable[..., list[dict]]  # per-feature results -> one prediction per example
    score: Callable[..., dict[str, float]]
    write: Callable[..., None]
    # Units the loss is a mean over, for exact gradient accumulation: (batch, options) -> n.
    units: Callable[[dict, TaskOptions], float] = lambda batch, opts: len(batch["input_ids"])

    @property
    def takes_texts(self) -> bool:
        """Its inputs are one text or a pair of texts (truncated to max_len, not windowed)."""
        return self.inputs in ("text", "pair", "text_or_pair")

    @property
    def has_label_set(self) -> bool:
        return self.labels in ("classes", "tags")

    def collect_labels(self, examples) -> Labels | None:
        return Labels(collect_labels(examples)) if self.has_label_set else None


def _tsv_reader(pair: bool | None, regression: bool = False, qid: bool = False):
    def read(path, opts: TaskOptions, need_label: bool = True):
        return read_text_tsv(path, pair=pair, need_label=need_label, regression=regression,
                             need_qid=qid, for_cn=opts.for_cn)
    return read


_SEQ = dict(encode=_encode_texts, make_head=_sequence_head, forward=_logits_forward,
            loss=_ce_loss, infer=_probs, decode=_decode_labels, write=_write_labels,
            labels="classes", head_name="classifier", data_suffixes=(".tsv",))

TASK_TYPES: dict[str, TaskType] = {t.name: t for t in [
    TaskType("classify", "single-text classification (SST-2, ChnSentiCorp)",
             read=_tsv_reader(pair=False), score=_score_classes, main_metric="accuracy",
             inputs="text", **_SEQ),
    TaskType("pair", "text-pair classification (XNLI, LCQMC, MNLI, RTE, BQ)",
             read=_tsv_reader(pair=True), score=_score_classes, main_metric="accuracy",
             inputs="pair", **_SEQ),
    TaskType("regress", "text or pair regression (STS-B)", labels="number", inputs="text_or_pair",
             head_name="classifier", main_metric="pearson", data_suffixes=(".tsv",),
             read=_tsv_reader(pair=None, regression=True), encode=_encode_texts, make_head=lambda c, n, o:
             _sequence_head(c, 1, o), forward=_score_forward, loss=_mse_loss, infer=_scores,
             decode=_decode_scores, score=_score_regression, write=_write_scores),
    TaskType("ner", "sequence labeling (MSRA-NER), softmax or CRF", labels="tags", inputs="tokens",
             head_name="tagger", main_metric="f1", data_suffixes=(".tsv", ".txt"),
             read=_read_tagged, encode=_encode_tagged, make_head=_tagging_head,
             forward=_tag_forward, loss=_tag_loss, infer=_tag_paths, decode=_decode_tags,
             score=_score_tags, write=_write_tags, units=_tag_units),
    TaskType("mrc", "extractive reading comprehension (CMRC2018, DRCD)", labels="span",
             inputs="question",
             head_name="span", main_metric="f1", data_suffixes=(".json",), read=_read_squad,
             encode=_encode_mrc, make_head=_span_head, forward=_span_forward, loss=_span_loss,
             infer=_span_logits, decode=_decode_spans, score=_score_spans, write=_write_spans),
    TaskType("rank", "answer selection by qid groups (NLPCC-DBQA)",
             read=_tsv_reader(pair=True, qid=True), score=_score_ranking, main_metric="mrr",
             inputs="pair", **_SEQ),
]}


def get_task_type(name: str) -> TaskType:
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown task type {name!r}; known: {', '.join(TASK_TYPES)}") from None


def options_dict(opts: TaskOptions) -> dict[str, Any]:
    return asdict(opts)


__all__ = ["TASK_TYPES", "TaggingHead", "TaskOptions", "TaskType", "get_task_type",
           "options_dict"]
