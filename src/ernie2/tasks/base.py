"""The pre-training task protocol, the document and example types, and the task registry.

A task is a small object: its `name`, `kind` ("token" or "sequence"), `num_classes`, a one-line
`description`, `build(doc, rng)` making one example from a document (or None when it cannot),
`make_head(config, encoder)` returning the head module it trains (`encoder` is the ErnieModel, so
a masked-LM head can tie its decoder to `encoder.embeddings.word_embeddings`), and
`compute(head, pooled, encoded, batch)` returning a loss and metric sums. The trainer only ever
talks to tasks through this protocol and the registry; it never names a task.

Optional members a task may have (the example stream uses them when present): `stats` (a
Counter of built examples and skips by reason), `state_dict()` / `load_state_dict(state)` for
state kept across documents (e.g. a reservoir of recent documents), so a stream resumes exactly.
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, runtime_checkable

import torch
from torch import nn

IGNORE_INDEX = -100  # label value that is not scored (padding, unmasked tokens, special tokens)


@dataclass
class Span:
    """A character span [start, end) of a sentence's text: an entity or a phrase."""

    start: int
    end: int
    kind: Literal["entity", "phrase"] = "entity"
    type: str | None = None  # PER / LOC / ORG / ... when known


@dataclass
class Sentence:
    text: str  # original text, case kept
    words: list[str] | None = None  # word segmentation, when known ("".join(words) == text
    # for Chinese; " ".join(words) for space-separated languages)
    spans: list[Span] = field(default_factory=list)
    # Pre-tokenized input (the ERNIE 1.0 five-field format): vocab ids without [CLS]/[SEP], and
    # seg_labels (0 = first token of a word, 1 = inside a word). `text` is "" then.
    token_ids: list[int] | None = None
    seg_labels: list[int] | None = None


@dataclass
class Document:
    paragraphs: list[list[Sentence]]
    title: str | None = None
    source: str = ""  # "file:line" of the document's first line, for error messages
    lang: str = "zh"
    # Reader facts a task may use, e.g. {"next_sentence_label": 1} for ERNIE 1.0 lines or
    # {"tagged": True} when spans came from the corpus's own tags.
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sentences(self) -> list[Sentence]:
        return [s for p in self.paragraphs for s in p]


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


# ---------------------------------------------------------------------- registry
TaskFactory = Callable[..., PretrainingTask]
REGISTRY: dict[str, TaskFactory] = {}


def register(name: str) -> Callable[[TaskFactory], TaskFactory]:
    def deco(factory: TaskFactory) -> TaskFactory:
        if name in REGISTRY:
            raise ValueError(f"task {name!r} is registered twice")
        REGISTRY[name] = factory
        return factory
    return deco


def load_factory(spec: str) -> TaskFactory:
    """A registered name, `package.module:Class` or `path/to/file.py:Class`."""
    if spec in REGISTRY:
        return REGISTRY[spec]
    if ":" not in spec:
        raise KeyError(f"unknown task {spec!r}; registered: {', '.join(sorted(REGISTRY))}; "
                       "a custom task is named 'module:Class' or 'file.py:Class'")
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise FileNotFoundError(f"custom task file {path} not found")
        # Registered in sys.modules (one name per file), as an import would be: torch.compile
        # and pickling look classes up by module name, and a second load reuses the first.
        resolved = path.resolve()
        name = f"ernie2_user_task_{path.stem}_{zlib.crc32(str(resolved).encode()):08x}"
        module = sys.modules.get(name)
        if module is None:
            mod_spec = importlib.util.spec_from_file_location(name, resolved)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            try:
                mod_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
    else:
        module = importlib.import_module(target)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise KeyError(f"{target} has no {attr!r}") from None


def create_task(spec: str, **options: Any) -> PretrainingTask:
    task = load_factory(spec)(**options)
    missing = [a for a in ("name", "kind", "num_classes", "build", "make_head", "compute")
               if not hasattr(task, a)]
    if missing:
        raise TypeError(f"task {spec!r} lacks {', '.join(missing)} of the task protocol")
    return task


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
