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
    correct = (logits.detach().argmax(-1) == labels).sum().double()
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
