"""Running a fine-tuned model over examples: predictions in input order, and evaluation (the task
type's metrics plus the training loss) of labeled examples."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import torch

from ernie2.finetune.model import FinetuneModel
from ernie2.tokenizer import ErnieTokenizer
from ernie2.model.batch import collate, length_batches, module_device, to_device
from ernie2.utils import plural

logger = logging.getLogger(__name__)


def sorted_batches(features: Sequence[dict], batch_size: int):
    """Indices of length-sorted batches of features (little padding)."""
    return length_batches([len(f["input_ids"]) for f in features], batch_size)


def _outputs(model: FinetuneModel, features: Sequence[dict], batch_size: int, pad_id: int):
    """(feature indices, model outputs, batch) of length-sorted batches, in eval mode and
    without autograd; the model's mode is restored afterwards."""
    device = module_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in sorted_batches(features, batch_size):
                batch = to_device(collate([features[i] for i in idx], pad_id), device)
                yield idx, model(batch), batch
    finally:
        model.train(was_training)


def run_model(model: FinetuneModel, features: Sequence[dict], batch_size: int = 32,
              pad_id: int = 0) -> list:
    """The task type's per-feature results, in feature order, from length-sorted batches."""
    results: list = [None] * len(features)
    for idx, out, batch in _outputs(model, features, batch_size, pad_id):
        for i, r in zip(idx, model.task.infer(model.head, out, batch)):
            results[i] = r
    return results


def unknown_labels(example, labels) -> list[str]:
    """The labels (classes or tags) of an example that are not in the label set."""
    if labels is None:
        return []
    if hasattr(example, "tokens"):
        return [t for t in example.labels or () if t not in labels]
    label = getattr(example, "label", None)
    return [str(label)] if label is not None and str(label) not in labels else []


def scorable(examples: Sequence, labels) -> list[int]:
    """Indices of the examples whose labels the model knows: the ones that can be scored."""
    return [i for i, ex in enumerate(examples) if not unknown_labels(ex, labels)]


def _drop_unknown_labels(examples: Sequence, labels) -> list:
    """Predicting needs no labels: when some example has a label unseen in training, all are
    predicted with their labels dropped (a batch is all labeled or not), and a warning says how
    many and which."""
    seen: dict[str, int] = {}
    for ex in examples:
        for b in unknown_labels(ex, labels):
            seen[b] = seen.get(b, 0) + 1
    if not seen:
        return list(examples)
    shown = ", ".join(f"{lab!r} ({n}x)" for lab, n in list(seen.items())[:10])
    where = next(ex.source for ex in examples if unknown_labels(ex, labels))
    n = len(examples) - len(scorable(examples, labels))
    logger.warning("%s: %s with labels the model was not trained on (%s): predicted, and left "
                   "out of any score", where.rsplit(":", 1)[0], plural(n, "example"), shown)
    out = [dataclasses.replace(ex, **{"labels" if hasattr(ex, "tokens") else "label": None})
           for ex in examples]
    return out


def predict_examples(model: FinetuneModel, tokenizer: ErnieTokenizer, examples: Sequence,
                     batch_size: int = 32) -> tuple[list[dict], list[dict]]:
    """(predictions, features) for examples read by the model's task type (labels unseen in
    training are dropped with a warning)."""
    task = model.task
    examples = _drop_unknown_labels(examples, model.labels)
    features = task.encode(examples, tokenizer, model.labels, model.options)
    results = run_model(model, features, batch_size, tokenizer.pad_id)
    return task.decode(examples, features, results, model.labels, model.options), features


def evaluate(model: FinetuneModel, tokenizer: ErnieTokenizer, examples: Sequence,
             batch_size: int = 32) -> tuple[dict[str, float], list[dict]]:
    """(scores, predictions) of labeled examples. The scores are the task type's metrics plus
    `loss`, the training loss over the examples (averaged over the same units), computed in
    the same pass."""
    task = model.task
    features = task.encode(examples, tokenizer, model.labels, model.options)
    results: list = [None] * len(features)
    loss_sum = units = 0.0
    for idx, out, batch in _outputs(model, features, batch_size, tokenizer.pad_id):
        for i, r in zip(idx, task.infer(model.head, out, batch)):
            results[i] = r
        n = float(task.units(batch, model.options))
        if n:
            loss_sum += float(task.loss(model.head, out, batch)) * n
            units += n
    preds = task.decode(examples, features, results, model.labels, model.options)
    scores = task.score(examples, preds, model.labels, model.options)
    return {**scores, "loss": loss_sum / units if units else float("nan")}, preds
