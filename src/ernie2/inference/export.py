"""ONNX export of the encoder (and a fine-tuned sequence head), checked against PyTorch in ONNX Runtime.

Graph inputs (int64, dynamic batch B and sequence T): `input_ids` [B, T], `sent_ids` [B, T],
`attention_mask` [B, T] (1 = token, 0 = padding) and, when the encoder has a task embedding,
`task_ids` [B, T]. Outputs: `encoded` [B, T, H], `pooled` [B, H] (when the encoder has a pooler),
and for a fine-tuned classify/pair/rank model `logits` [B, labels] (regress: `score` [B]).
The file's metadata holds the config, the task and labels, and a fingerprint of the weights.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ernie2.inference.runtime import FINGERPRINT_KEY, OnnxEncoder, weights_fingerprint
from ernie2.model.modeling import ErnieModel

logger = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization is a single op from 17 on


class _Exported(nn.Module):
    """The graph to trace: the encoder, plus the fine-tuned head when it reads the pooled output."""

    def __init__(self, encoder: ErnieModel, finetuned: Any | None):
        super().__init__()
        self.encoder = encoder
        self.finetuned = finetuned
        self.names = ["encoded"] + (["pooled"] if encoder.config.has_pooler else [])
        if finetuned is not None:
            self.names += list(self._head_outputs(torch.zeros(1, 1, encoder.config.hidden_size)))

    def _head_outputs(self, encoded: torch.Tensor, pooled: torch.Tensor | None = None):
        ft = self.finetuned
        if ft is None or ft.task.head_name != "classifier":  # token heads need more inputs
            return {}
        return ft.task.forward(ft.head, pooled, encoded, {})

    def forward(self, input_ids, sent_ids, attention_mask, task_ids=None):
        pooled, encoded = self.encoder(input_ids, sent_ids, task_ids, attention_mask)
        outs = {"encoded": encoded, "pooled": pooled, **self._head_outputs(encoded, pooled)}
        return tuple(outs[n] for n in self.names)


@dataclass
class ExportReport:
    path: Path
    outputs: list[str]
    max_abs_diff: dict[str, float]  # ONNX Runtime vs PyTorch on padded batches, per output
    fingerprint: str


def _load(model: str | os.PathLike | nn.Module):
    """(encoder, fine-tuned model or None) from a directory, an ErnieModel or a FinetuneModel."""
    if isinstance(model, ErnieModel):
        return model, None
    if isinstance(model, nn.Module) and hasattr(model, "task") and hasattr(model, "head"):
        return model.encoder, model
    if isinstance(model, nn.Module):
        raise TypeError(f"cannot export a {type(model).__name__}; give a model directory, an "
                        "ErnieModel or a FinetuneModel")
    from ernie2.inference.runtime import is_finetuned
    path = Path(model)
    if path.is_dir() and is_finetuned(path):
        from ernie2.finetune.model import FinetuneModel
        ft = FinetuneModel.load(path)
        return ft.encoder, ft
    return ErnieModel.from_pretrained(path), None


def sample_batch(config, batch: int = 3, seq: int = 11, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with ragged lengths (row 0 full, the others padded), for tracing and checks."""
    g = torch.Generator().manual_seed(seed)
    seq = min(seq, config.max_position_embeddings)
    lo = 1 if config.pad_token_id == 0 else 0
    ids = torch.randint(lo, config.vocab_size, (batch, seq), generator=g)
    ids[ids == config.pad_token_id] = lo
    lengths = [seq] + [max(2, seq - 3 * i) for i in range(1, batch)]
    mask = (torch.arange(seq)[None] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, config.pad_token_id)
    sent = torch.zeros_like(ids)
    sent[:, seq // 2:] = 1
    sent = sent * mask
    out = {"input_ids": ids, "sent_ids": sent, "attention_mask": mask}
    if config.use_task_id:
        out["task_ids"] = torch.randint(0, config.task_type_vocab_size, (batch, 1),
                                        generator=g).expand(batch, seq).contiguous()
    return out


def export_onnx(model: str | os.PathLike | nn.Module, output: str | os.PathLike, *,
                opset: int = OPSET, verify: bool = True, atol: float = 1e-4) -> ExportReport:
    """Export a model directory (or an ErnieModel / FinetuneModel) to an ONNX file, then check
    ONNX Runtime against PyTorch on padded batches of shapes other than the traced one."""
    import onnx

    encoder, finetuned = _load(model)
    was_training = encoder.training
    module = _Exported(encoder, finetuned).eval()
    config = encoder.config
    names = list(sample_batch(config))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update({n: {0: "batch", 1: "sequence"} if n == "encoded" else {0: "batch"}
                 for n in module.names})
    # The trace sample has padding, so ErnieModel's "no padding: no mask" shortcut (a Python
    # branch on the data) is traced on its masked side, which is right for every input.
    example = tuple(sample_batch(config).values())
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(module, example, tmp, dynamo=False, input_names=names,
                              output_names=module.names, dynamic_axes=axes,
                              opset_version=opset, do_constant_folding=True)
        proto = onnx.load(tmp)
        fingerprint = weights_fingerprint(encoder, getattr(finetuned, "head", None))
        meta = {FINGERPRINT_KEY: fingerprint, "ernie2.config": json.dumps(config.to_dict())}
        if finetuned is not None:
            meta["ernie2.task"] = finetuned.task.name
            meta["ernie2.labels"] = json.dumps(finetuned.labels.names if finetuned.labels
                                               else None, ensure_ascii=False)
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(proto, tmp)
        diffs = check_onnx(module, tmp, atol) if verify else {}
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        encoder.train(was_training)
    logger.info("exported %s (outputs %s)%s", output, ", ".join(module.names),
                "; max |onnx - torch|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
                if diffs else "")
    return ExportReport(output, module.names, diffs, fingerprint)


def check_onnx(module: _Exported, path: str | os.PathLike, atol: float = 1e-4,
               shapes=((2, 7), (4, 23), (1, 5))) -> dict[str, float]:
    """Max |ONNX Runtime - PyTorch| per output over padded batches (padding positions of
    `encoded` excluded: they are never read); ValueError past `atol` (+ 1e-3 relative)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst: dict[str, float] = {n: 0.0 for n in module.names}
    for seed, (b, t) in enumerate(shapes, 1):
        batch = sample_batch(module.encoder.config, b, t, seed)
        with torch.inference_mode():
            ref = module(*batch.values())
        got = sess.run(module.names, {k: v.numpy() for k, v in batch.items()})
        mask = batch["attention_mask"].bool().numpy()
        for name, r, g in zip(module.names, ref, got):
            r = r.numpy()
            if name == "encoded":
                r, g = r[mask], g[mask]
            diff = float(np.abs(r - g).max())
            worst[name] = max(worst[name], diff)
            if not np.allclose(g, r, atol=atol, rtol=1e-3):
                raise ValueError(f"{path}: ONNX Runtime output {name!r} differs from PyTorch by "
                                 f"{diff:.3g} on a [{b}, {t}] batch")
    return worst


__all__ = ["ExportReport", "OnnxEncoder", "check_onnx", "export_onnx", "sample_batch"]
