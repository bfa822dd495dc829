"""The pre-training task protocol, in full: every member a task has or may have, the example it
builds, and the small bases the built-in tasks share (`SequenceTask`, `TokenTask`).

A task is a small object: its `name`, `kind` ("token" or "sequence"), `num_classes`, a one-line
`description`, `build(doc, rng)` making one example from a document (or None when it cannot),
`make_head(config, encoder)` returning the head module it trains (`encoder` is the ErnieModel, so
a masked-LM head can tie its decoder to `encoder.embeddings.word_embeddings`), and
`compute(head, pooled, encoded, batch)` returning a loss and metric sums. The trainer only ever
talks to tasks through this protocol and the registry (tasks.registry); it never names a task.

A task need not inherit from anything: a user's `module:Class` with the required members works.
The optional members (`OPTIONAL`) are read through `member(task, name)`, which gives the default
when a task lacks one; the bases define them all.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from ernie2.corpus.document import Document
from ernie2.model.batch import collate as collate_features
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks.heads import (check_pooling, mlm_compute, mlm_head, pool, sequence_compute,
                                sequence_head, token_compute, token_head)
from ernie2.tasks.layout import layout
from ernie2.tasks.tokens import as_tokenizer


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


class TaskStats(Counter):
    """Examples built and documents skipped, by reason (`skipped_<reason>`)."""

    def skip(self, reason: str) -> None:
        self[f"skipped_{reason}"] += 1


@runtime_checkable
class PretrainingTask(Protocol):
    """The members every task has (`create_task` checks them: REQUIRED)."""

    name: str
    kind: Literal["token", "sequence"]
    num_classes: int

    def build(self, doc: Document, rng: random.Random) -> Example | None: ...

    def make_head(self, config, encoder: nn.Module) -> nn.Module: ...

    def compute(self, head: nn.Module, pooled: torch.Tensor, encoded: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Return (loss, metric sums). Metric sums are additive over batches, e.g.
        {"correct": 12, "count": 40}; the trainer divides them when it reports."""
        ...


REQUIRED = ("name", "kind", "num_classes", "build", "make_head", "compute")
PROTOCOL_MEMBERS = REQUIRED  # what create_task checks

# The optional members and what a task without one is taken to have:
# - description: one line for `ernie2 tasks`;
# - max_len: the longest example it builds (the stream sizes its builds per document by it);
# - stats: a Counter of built examples and skips by reason (TaskStats);
# - builds_per_document: at most this many builds of one document per pass (None: by length);
# - vocab_sized: its classes are the vocab's token ids (masked LM: chance and reports know);
# - min_sentences: a document with fewer sentences gives it no example (skipped, counted);
# - skip_languages: documents in these languages give it no example (e.g. uncased ones);
# - state_dict() / load_state_dict(state): state kept across documents (e.g. a reservoir of
#   recent documents), so that a stream resumes exactly; None when there is none.
OPTIONAL: dict[str, Any] = {"description": "", "max_len": 128, "stats": None,
                            "builds_per_document": None, "vocab_sized": False,
                            "min_sentences": 1, "skip_languages": ()}


def member(task: Any, name: str) -> Any:
    """An optional member of `task`, or its default (OPTIONAL)."""
    return getattr(task, name, OPTIONAL[name])


def task_state(task: Any) -> dict[str, Any] | None:
    """What the task keeps across documents, or None (a task without `state_dict`)."""
    return task.state_dict() if hasattr(task, "state_dict") else None


def load_task_state(task: Any, state: dict[str, Any] | None) -> None:
    if state is not None and hasattr(task, "load_state_dict"):
        task.load_state_dict(state)


class Task:
    """What every built-in task shares: its tokenizer, `max_len`, `task_id`, `name`, `stats`, and
    the optional members at their defaults. A subclass sets `kind`, `num_classes` and
    `description`, and defines `build`; `SequenceTask` and `TokenTask` add the head and loss."""

    kind: Literal["token", "sequence"]
    num_classes: int
    description = ""
    builds_per_document: int | None = None
    vocab_sized = False
    min_sentences = 1
    skip_languages: tuple[str, ...] = ()
    reservoir = None  # a tasks.documents.Reservoir when the task draws from other documents

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0, name: str = ""):
        self.tok = as_tokenizer(tokenizer)
        self.max_len, self.task_id, self.name = max_len, task_id, name
        self.stats = TaskStats()

    def build(self, doc: Document, rng: random.Random) -> Example | None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any] | None:
        return {"reservoir": self.reservoir.state_dict()} if self.reservoir is not None else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.reservoir is not None:
            self.reservoir.load_state_dict(state["reservoir"])


class SequenceTask(Task):
    """One class per example, from a classifier over a pooled vector (`pooling`: "pooler", the
    encoder's pooled [CLS]; "cls", the last layer's [CLS]; "mean", the mean token state; "pair",
    the two segments' mean states compared, model.heads.pool)."""

    kind: Literal["sequence"] = "sequence"

    def __init__(self, tokenizer=None, max_len: int = 128, task_id: int = 0, name: str = "",
                 pooling: str = "pooler"):
        super().__init__(tokenizer, max_len, task_id, name)
        self.pooling = check_pooling(pooling)

    def make_head(self, config, encoder: nn.Module) -> nn.Module:
        return sequence_head(config, self.num_classes, self.pooling)

    def compute(self, head, pooled, encoded, batch):
        return sequence_compute(head, pool(self.pooling, pooled, encoded,
                                           batch["attention_mask"], batch.get("sent_ids")), batch)

    def example(self, segments: Sequence[Sequence[int]], label: int) -> Example:
        """Segments and a class laid out as an Example, counted by label in stats."""
        input_ids, sent_ids, _ = layout(self.tok, segments, self.max_len)
        self.stats["examples"] += 1
        self.stats[f"label_{label}"] += 1
        return Example(self.name, input_ids, sent_ids, label, self.task_id)


class TokenTask(Task):
    """A class per token (IGNORE_INDEX where unscored), from a per-token classifier."""

    kind: Literal["token"] = "token"

    def make_head(self, config, encoder: nn.Module) -> nn.Module:
        return token_head(config, self.num_classes)

    def compute(self, head, pooled, encoded, batch):
        return token_compute(head, encoded, batch)

    def example(self, ids: list[int], labels: list[int]) -> Example | None:
        """One segment with per-token labels laid out as an Example, or None (counted) when
        nothing in the kept part is scored."""
        if all(lab == IGNORE_INDEX for lab in labels[:self.max_len - 2]):
            self.stats.skip("nothing_to_score")
            return None
        input_ids, sent_ids, labels = layout(self.tok, [ids], self.max_len, [labels])
        self.stats["examples"] += 1
        return Example(self.name, input_ids, sent_ids, labels, self.task_id)


class MaskedLMTask(TokenTask):
    """A token task whose classes are the vocab: its head is the masked-LM head tied to the
    encoder's word embeddings, scored only at the masked positions."""

    vocab_sized = True

    def make_head(self, config, encoder: nn.Module) -> nn.Module:
        return mlm_head(config, encoder)

    def compute(self, head, pooled, encoded, batch):
        return mlm_compute(head, encoded, batch)


class PackingError(ValueError):
    """Examples that cannot be packed (a task with one label per example)."""


def require_token_labels(example: Example) -> None:
    """Packing needs one label per token: a PackingError naming the task otherwise."""
    if not isinstance(example.labels, list):
        raise PackingError(f"task {example.task!r}: packing joins examples with one label per "
                         "token; its examples carry one label each (pack only token-level "
                         "tasks: masked LM, knowledge masking, capitalization)")


def concat_examples(examples: Sequence[Example]) -> Example:
    """Examples of one token-level task joined into one: [CLS] a [SEP] b [SEP] ... (each later
    example's [CLS] dropped), its segment ids continuing to alternate 0/1 after the one before
    and its token labels kept with their tokens."""
    first = examples[0]
    ids, sent = list(first.input_ids), list(first.sent_ids)
    require_token_labels(first)
    labels = list(first.labels)
    for ex in examples[1:]:
        if ex.task != first.task or not isinstance(ex.labels, list):
            raise PackingError(f"cannot pack an example of task {ex.task!r} after one of "
                             f"{first.task!r}: only examples of one token-level task join")
        shift = 1 if sent[-1] == ex.sent_ids[1] else 0
        ids.extend(ex.input_ids[1:])
        sent.extend((s + shift) % 2 for s in ex.sent_ids[1:])
        labels.extend(ex.labels[1:])
    return Example(first.task, ids, sent, labels, first.task_id)


def collate(examples: Sequence[Example], pad_id: int = 0,
            task_id: int | None = None) -> dict[str, Any]:
    """Examples of one task as a batch (model.batch.collate): input_ids, sent_ids,
    attention_mask [B, T], task_ids [B], labels ([B, T] padded with IGNORE_INDEX for token
    tasks, [B] otherwise), `padded`. `task_id` given: every row trains that task-embedding row
    (the plan's, set here and nowhere else); None: each example's own."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    return collate_features([{"input_ids": e.input_ids, "sent_ids": e.sent_ids,
                              "labels": e.labels,
                              "task_ids": e.task_id if task_id is None else task_id}
                             for e in examples], pad_id)
