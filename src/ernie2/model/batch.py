"""The one batch path: features (dicts of lists and scalars) split between processes, padded
into tensors, grouped by length, and moved to a device. Pre-training examples, fine-tuning
features, encoding and serving all go through here.

    mine = [f for j, f in enumerate(features) if rank_of(j, world) == rank]   # this process's
    batch = collate(mine, pad_id)       # input_ids, attention_mask, padded, ... as tensors
    for idx in length_batches(lengths, batch_size, max_tokens): ...   # little padding
    batch = to_device(batch, device)    # once, where the model runs (the step or the predictor)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ernie2.model.heads import IGNORE_INDEX
from ernie2.model.modeling import ErnieModel

Feature = dict[str, Any]  # one model input; keys starting with "_" carry Python objects along

# Padding value of each list-valued key; any other list key pads with IGNORE_INDEX.
_PAD_VALUES = {"sent_ids": 0, "word_starts": 0}


def collate(features: Sequence[Feature], pad_id: int = 0) -> dict[str, Any]:
    """Pad features into tensors. `input_ids` pads with `pad_id` and gives `attention_mask`;
    `word_starts` gives `word_mask`; scalar ints and floats become 1-D tensors; keys starting
    with "_" are gathered into lists untouched. `padded` (a Python bool, decided here from the
    lengths) says whether any row is padded, so the encoder needs no look at the mask."""
    if not features:
        raise ValueError("cannot collate an empty list of features")
    batch: dict[str, Any] = {}
    padded = None
    for key in features[0]:
        values = [f[key] for f in features]
        if key.startswith("_"):
            batch[key] = values
        elif isinstance(values[0], (list, tuple)):
            width = max(len(v) for v in values)
            pad = pad_id if key == "input_ids" else _PAD_VALUES.get(key, IGNORE_INDEX)
            out = torch.full((len(values), width), pad, dtype=torch.long)
            for i, v in enumerate(values):
                out[i, :len(v)] = torch.as_tensor(v, dtype=torch.long)
            batch[key] = out
            if key == "input_ids":
                batch["attention_mask"] = _length_mask(values, width)
                padded = any(len(v) != width for v in values)
            elif key == "word_starts":
                batch["word_mask"] = _length_mask(values, width)
        elif isinstance(values[0], float):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = torch.tensor(values, dtype=torch.long)
    if padded is not None:
        batch["padded"] = padded
    return batch


def _length_mask(values: Sequence[Sequence], width: int) -> torch.Tensor:
    lengths = torch.tensor([len(v) for v in values])
    return (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()


def length_batches(lengths: Sequence[int], batch_size: int | None = 32,
                   max_tokens: int | None = None) -> Iterator[list[int]]:
    """Yield lists of indices into `lengths`, longest first (ties in input order), each batch
    holding at most `batch_size` items (None: no limit) and, when `max_tokens` is given, at most
    that many padded tokens. Callers put results back in input order by these indices."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        # sorted longest first, so the batch's padded width is its first item's length
        width = lengths[batch[0]] if batch else lengths[i]
        if batch and ((batch_size is not None and len(batch) >= batch_size) or
                      (max_tokens is not None and width * (len(batch) + 1) > max_tokens)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def rank_of(index: int, world: int) -> int:
    """The process (DDP rank) that item `index` goes to when items are split between `world`
    processes: round robin, item j to rank j % world. The one rule of every split: documents of
    a corpus, examples of a stream, a stage's examples of a task, a batch's features, held-out
    sets; so W processes together take each item once, within one item of each other."""
    return index % world


def to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """The batch's tensors on `device` (asynchronously to a GPU); other values as they are."""
    device = torch.device(device)
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's tensors live (CPU for one that holds none, such as an ONNX runner)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def run_encoder(encoder: torch.nn.Module, batch: dict[str, Any],
                task_ids: torch.Tensor | None = None):
    """(pooled, encoded) of a collated batch. An ErnieModel is also told whether the batch is
    padded (decided at collate time), so its forward reads nothing back from the device; any
    other backend is called with the four-argument signature every backend has."""
    args = (batch["input_ids"], batch.get("sent_ids"), task_ids, batch.get("attention_mask"))
    if isinstance(encoder, ErnieModel) and "padded" in batch:
        return encoder(*args, padded=batch["padded"])
    return encoder(*args)
