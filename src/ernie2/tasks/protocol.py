"""The pre-training task protocol and the example type.

A task is a small object: its `name`, `kind` ("token" or "sequence"), `num_classes`, a one-line
`description`, `build(doc, rng)` making one example from a document (or None when it cannot),
`make_head(config, encoder)` returning the head module it trains (`encoder` is the ErnieModel, so
a masked-LM head can tie its decoder to `encoder.embeddings.word_embeddings`), and
`compute(head, pooled, encoded, batch)` returning a loss and metric sums. The trainer only ever
talks to tasks through this protocol and the registry (tasks.registry); it never names a task.

Optional members a task may have (the example stream uses them when present): `stats` (a
Counter of built examples and skips by reason), `state_dict()` / `load_state_dict(state)` for
state kept across documents (e.g. a reservoir of recent documents), so a stream resumes exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn

from ernie2.corpus.document import Document
from ernie2.model.heads import IGNORE_INDEX


@dataclass
class Example:
    """One training example, laid out [CLS] A [SEP] (B [SEP]).

    `labels` is a list of per-token labels (IGNORE_INDEX where unscored) for token tasks, or one
    int for sequence tasks. `task_id` is the row of the task embedding it trains.
    """

    task: str
    input_ids: list[int]
    sent_ids: list[int]
    labels: list[int] | int
    task_id: int = 0


# What create_task checks a task has (the rest of the protocol is optional).
PROTOCOL_MEMBERS = ("name", "kind", "num_classes", "build", "make_head", "compute")


@runtime_checkable
class PretrainingTask(Protocol):
    name: str
    kind: Literal["token", "sequence"]
    num_classes: int
    description: str

    def build(self, doc: Document, rng: random.Random) -> Example | None: ...

    def make_head(self, config, encoder: nn.Module) -> nn.Module: ...

    def compute(self, head: nn.Module, pooled: torch.Tensor, encoded: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Return (loss, metric sums). Metric sums are additive over batches, e.g.
        {"correct": 12, "count": 40}; the trainer divides them when it reports."""
        ...


def collate(examples: list[Example], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad examples of one task into a batch: input_ids, sent_ids, attention_mask [B, T],
    task_ids [B], labels ([B, T] padded with IGNORE_INDEX for token tasks, [B] otherwise)."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    width = max(len(e.input_ids) for e in examples)
    n = len(examples)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    sent = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    token_labels = isinstance(examples[0].labels, list)
    labels = (torch.full((n, width), IGNORE_INDEX, dtype=torch.long) if token_labels
              else torch.empty(n, dtype=torch.long))
    for i, e in enumerate(examples):
        k = len(e.input_ids)
        ids[i, :k] = torch.tensor(e.input_ids)
        sent[i, :k] = torch.tensor(e.sent_ids)
        mask[i, :k] = 1
        if token_labels:
            labels[i, :k] = torch.tensor(e.labels)
        else:
            labels[i] = int(e.labels)
    task_ids = torch.tensor([e.task_id for e in examples], dtype=torch.long)
    return {"input_ids": ids, "sent_ids": sent, "attention_mask": mask, "task_ids": task_ids,
            "labels": labels}
