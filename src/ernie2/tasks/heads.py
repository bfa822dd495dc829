"""The heads the tasks train and their losses: sequence, per-token and masked-LM classifiers,
cross-entropy at the scored positions, and the pooling a sequence head reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ernie2.model.heads import (IGNORE_INDEX, check_pooling, pool,  # noqa: F401  (the tasks read these here)
                                pooled_width)


def sequence_head(config, num_classes: int, pooling: str = "pooler"):
    from ernie2.model.heads import SequenceHead

    dropout = config.classifier_dropout_prob
    return SequenceHead(pooled_width(pooling, config.hidden_size), num_classes,
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
    # Sums stay tensors (no wait for the device here); the logger reads them when it writes.
    # max(-1).indices, not argmax: the same index (the first maximum), and on CPU 2.5-2.9x
    # faster over a masked-LM head's vocabulary (benchmarks/accuracy_argmax.py; argmax was 6%
    # of the demo's training loop).
    correct = (logits.detach().max(-1).indices == labels).sum().double()
    return loss, {"correct": correct, "count": float(n), "loss_sum": loss.detach().double() * n}


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


def label_counts(examples, num_classes: int) -> torch.Tensor:
    """How often each class is a label in `examples` (per-token labels or one a example;
    IGNORE_INDEX not counted)."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for ex in examples:
        labels = ex.labels if isinstance(ex.labels, list) else [ex.labels]
        ids = torch.tensor([lab for lab in labels if lab != IGNORE_INDEX], dtype=torch.long)
        counts += torch.bincount(ids, minlength=num_classes)[:num_classes].double()
    return counts


def output_bias(head):
    """The bias of a head's output layer (masked LM, sequence or per-token classifier), or None
    for heads without one."""
    from ernie2.model.heads import MaskedLMHead, SequenceHead

    if isinstance(head, MaskedLMHead):
        return head.bias
    if isinstance(head, SequenceHead) and head.classifier.bias is not None:
        return head.classifier.bias
    return None


def set_output_prior(head, counts: torch.Tensor) -> bool:
    """Start the head's output bias at the log frequencies of `counts` (add-one smoothed,
    centred), so its softmax begins at the label distribution. False when the head has no
    output bias of that width."""
    bias = output_bias(head)
    if bias is None or bias.shape[0] != counts.shape[0] or bias.shape[0] < 2:
        return False
    prior = torch.log(counts + 1.0)
    with torch.no_grad():
        bias.copy_((prior - prior.mean()).to(bias.dtype))
    return True
