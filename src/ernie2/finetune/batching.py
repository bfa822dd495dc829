"""Features to padded tensor batches, and the shuffled order of training batches."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ernie2.model.heads import IGNORE_INDEX

Feature = dict[str, Any]  # one model input; keys starting with "_" carry Python objects along

# Padding value of each list-valued key; any other list key pads with IGNORE_INDEX.
_PAD_VALUES = {"sent_ids": 0, "word_starts": 0}


def collate(features: Sequence[Feature], pad_id: int = 0) -> dict[str, Any]:
    """Pad features into tensors. `input_ids` pads with `pad_id` and gives `attention_mask`;
    `word_starts` gives `word_mask`; scalar ints and floats become 1-D tensors; keys starting
    with "_" are gathered into lists untouched."""
    if not features:
        raise ValueError("cannot collate an empty list of features")
    batch: dict[str, Any] = {}
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
            elif key == "word_starts":
                batch["word_mask"] = _length_mask(values, width)
        elif isinstance(values[0], float):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = torch.tensor(values, dtype=torch.long)
    return batch


def _length_mask(values: Sequence[Sequence], width: int) -> torch.Tensor:
    lengths = torch.tensor([len(v) for v in values])
    return (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()


def shuffled_batches(features: Sequence[Feature], batch_size: int, seed: int = 0,
                     epoch: int = 0) -> Iterator[list[int]]:
    """Indices of training batches: a fresh shuffle per epoch, the last batch may be short."""
    order = list(range(len(features)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]


def to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's tensors live (CPU for one that holds none, such as an ONNX runner)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
