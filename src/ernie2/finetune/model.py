"""A fine-tuned model: encoder + task head, saved as a directory that rebuilds it on its own.

The directory is an ordinary ernie2 checkpoint (config.json, model.safetensors, vocab.txt) whose
head tensors are stored as `heads.<name>.<param>`, plus `finetune.json` naming the task type,
the label set, the task options and the head's shape.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ernie2.finetune.readers import Labels
from ernie2.finetune.task_types import TaskOptions, TaskType, get_task_type, options_dict
from ernie2.model.batch import run_encoder, to_device
from ernie2.model.checkpoint import assign, load_encoder, read_checkpoint
from ernie2.model.modeling import ErnieModel
from ernie2.utils import atomic_write_text

FINETUNE_JSON = "finetune.json"
FORMAT = "ernie2-finetuned"


class FinetuneModel(nn.Module):
    """`outputs = model(batch)`; `model.loss(batch)` for training. A batch is what
    `batching.collate` makes of the task type's features."""

    def __init__(self, encoder: ErnieModel, task: TaskType, labels: Labels | None,
                 options: TaskOptions, task_id: int = 0):
        super().__init__()
        if task.has_label_set and not labels:
            raise ValueError(f"task type {task.name} needs a label set")
        self.encoder = encoder
        self.task = task
        self.labels = labels
        self.options = options
        self.task_id = task_id
        self.head = task.make_head(encoder.config, len(labels) if labels else 1, options)

    @property
    def config(self):
        return self.encoder.config

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        ids = batch["input_ids"]
        task_ids = None
        if self.encoder.config.use_task_id:
            task_ids = torch.full((ids.shape[0],), self.task_id, dtype=torch.long,
                                  device=ids.device)
        pooled, encoded = run_encoder(self.encoder, batch, task_ids)
        return self.task.forward(self.head, pooled, encoded, batch)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.task.loss(self.head, self(batch), batch)

    # The shared training loop's interface (ernie2.training.Trainer): one loss key, the task
    # type's name, and the units that loss averages over, so accumulated micro-batches and DDP
    # ranks combine into exactly the gradient of one big batch.
    @staticmethod
    def step_fn(model: nn.Module, batch: dict[str, Any]):
        """`model` may be wrapped in DDP: the forward goes through the wrapper (that is what
        synchronizes gradients), the loss through the task type of the module inside."""
        core = getattr(model, "module", model)
        batch = to_device(batch, core.encoder.device)  # the one host-to-device copy of a step
        out = model(batch)
        return {core.task.name: core.task.loss(core.head, out, batch)}, {}

    def units_fn(self, batch: dict[str, Any]) -> dict[str, tuple[float, float]]:
        return {self.task.name: (float(self.task.units(batch, self.options)),
                                 float(len(batch["input_ids"])))}

    # ------------------------------------------------------------------ saving
    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, "task": self.task.name,
                "labels": self.labels.names if self.labels else None,
                "options": options_dict(self.options), "task_id": self.task_id,
                "head": {"name": self.task.head_name,
                         "num_labels": len(self.labels) if self.labels else 1,
                         "shapes": {k: list(v.shape) for k, v in self.head.state_dict().items()}}}

    def save(self, path: str | os.PathLike, vocab_file: str | os.PathLike | None) -> None:
        """Write the model directory; a crash leaves any previous directory at `path` whole."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        prefix = f"heads.{self.task.head_name}."
        self.encoder.save_pretrained(
            tmp, vocab_file, extra_tensors={prefix + k: v for k, v in self.head.state_dict().items()})
        atomic_write_text(tmp / FINETUNE_JSON,
                          json.dumps(self.meta(), ensure_ascii=False, indent=1) + "\n")
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def read_meta(path: str | os.PathLike) -> dict[str, Any]:
        """The finetune.json of a fine-tuned model directory, checked."""
        meta_file = Path(path) / FINETUNE_JSON
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path}: no {FINETUNE_JSON}; not a fine-tuned model "
                                    "directory")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{meta_file}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_file}: format is {meta.get('format')!r}, expected {FORMAT!r}")
        return meta

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> FinetuneModel:
        """Rebuild a saved fine-tuned model from its directory alone."""
        path = Path(path)
        meta = cls.read_meta(path)
        task = get_task_type(meta["task"])
        labels = Labels(meta["labels"]) if meta.get("labels") else None
        ckpt = read_checkpoint(path)
        encoder = ErnieModel(ckpt.config)
        load_encoder(encoder, ckpt)
        model = cls(encoder, task, labels, TaskOptions.from_dict(meta.get("options", {})),
                    int(meta.get("task_id", 0)))
        head_tensors = ckpt.heads(meta["head"]["name"])
        if not head_tensors:
            raise ValueError(f"{path}: the checkpoint holds no heads.{meta['head']['name']}.* "
                             "tensors")
        assign(model.head, head_tensors, str(path))
        return model.to(device).eval()


__all__ = ["FINETUNE_JSON", "FinetuneModel"]
