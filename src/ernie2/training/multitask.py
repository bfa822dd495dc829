"""The encoder with one head per task, the multi-task forward, and growing both between stages."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ernie2.model.batch import to_device
from ernie2.model.modeling import ErnieModel

logger = logging.getLogger(__name__)


class MultiTaskModel(nn.Module):
    """`losses, metrics = model({task: batch, ...})`.

    The encoder runs once over the rows of every task in the micro-batch (each row carrying its
    task id); each task's head and loss then see only their own rows, so only the heads in play
    run. Tasks are reached through the task protocol only (`compute`)."""

    def __init__(self, encoder: ErnieModel):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict()
        self.tasks: dict[str, object] = {}

    def add_task(self, name: str, task) -> None:
        if name in self.heads:
            return
        head = task.make_head(self.encoder.config, self.encoder)
        if not isinstance(head, nn.Module):
            raise TypeError(f"task {name!r}: make_head returned {type(head).__name__}, "
                            "not an nn.Module")
        self.heads[name] = head.to(self.encoder.device)
        self.tasks[name] = task

    def forward(self, micro: dict[str, dict[str, torch.Tensor]]):
        device = self.encoder.device
        names = list(micro)
        batches = [to_device(micro[n], device) for n in names]
        if len(batches) == 1:
            b = batches[0]
            ids, sent, mask, tids = (b["input_ids"], b["sent_ids"], b["attention_mask"],
                                     b["task_ids"])
            padded = b.get("padded")
        else:
            width = max(b["input_ids"].shape[1] for b in batches)
            pad_id = self.encoder.config.pad_token_id

            def cat(key, value=0):
                return torch.cat([F.pad(b[key], (0, width - b[key].shape[1]), value=value)
                                  for b in batches])
            ids, sent, mask = cat("input_ids", pad_id), cat("sent_ids"), cat("attention_mask")
            tids = torch.cat([b["task_ids"] for b in batches])
            # Decided from the collated batches, never from the device: None when one is unknown.
            flags = [b.get("padded") for b in batches]
            padded = None if None in flags else (
                any(flags) or any(b["input_ids"].shape[1] != width for b in batches))
        pooled, encoded = self.encoder(ids, sent, tids, mask, padded=padded)
        losses, metrics = {}, {}
        row = 0
        for name, b in zip(names, batches):
            n, w = b["input_ids"].shape
            p = pooled[row:row + n] if pooled is not None else None
            loss, mets = self.tasks[name].compute(self.heads[name], p, encoded[row:row + n, :w], b)
            row += n
            losses[name] = loss
            metrics[name] = dict(mets)  # additive sums, tensors or numbers, read when logged
        return losses, metrics


def step_fn(model: nn.Module, micro):
    """The loop's step function for multi-task micro-batches."""
    return model(micro)


# ---------------------------------------------------------------------- growing
def grow_task_embedding(encoder: ErnieModel, rows: int, init: str = "zeros",
                        generator: torch.Generator | None = None) -> bool:
    """Make the task-embedding table at least `rows` long, keeping the trained rows. New rows
    start at zero (the model computes what it did before) or normal(0, initializer_range).
    Returns True when the table changed."""
    emb = encoder.embeddings
    old = emb.task_type_embeddings
    if old is not None and old.num_embeddings >= rows:
        return False
    ref = emb.word_embeddings.weight
    new = nn.Embedding(rows, ref.shape[1], device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        if init == "zeros":
            new.weight.zero_()
        else:
            new.weight.normal_(0.0, encoder.config.initializer_range, generator=generator)
        if old is not None:
            new.weight[: old.num_embeddings].copy_(old.weight)
    emb.task_type_embeddings = new
    encoder.config.use_task_id = True
    encoder.config.task_type_vocab_size = rows
    logger.info("task embedding: %s -> %d rows", old.num_embeddings if old is not None else "none",
                rows)
    return True


def remap_optimizer_state(saved: dict, optimizer: torch.optim.Optimizer) -> int:
    """Load an optimizer state_dict whose param groups carry `names` into `optimizer` by
    parameter name: parameters added since get no state; a grown parameter (more rows) keeps
    its moments in its first rows and zeros after. Returns the number of parameters carried."""
    by_name = {}
    for g in saved["param_groups"]:
        for idx, name in zip(g["params"], g.get("names", [])):
            if idx in saved["state"]:
                by_name[name] = saved["state"][idx]
    carried = 0
    for g in optimizer.param_groups:
        for p, name in zip(g["params"], g["names"]):
            st = by_name.get(name)
            if st is None:
                continue
            new_state = {}
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != p.shape:
                    if v.shape[1:] == p.shape[1:] and v.shape[0] < p.shape[0]:
                        grown = torch.zeros_like(p, dtype=v.dtype)
                        grown[: v.shape[0]].copy_(v)
                        v = grown
                    else:
                        raise ValueError(f"optimizer state of {name} has shape {tuple(v.shape)}, "
                                         f"the parameter {tuple(p.shape)}")
                if isinstance(v, torch.Tensor):
                    v = v.to(p.device) if k != "step" else v.to(
                        p.device if g.get("fused") or g.get("capturable") else "cpu")
                new_state[k] = v
            optimizer.state[p] = new_state
            carried += 1
    return carried
