"""Inference backends behind one call signature: PyTorch fp32, bf16 autocast, dynamic int8, ONNX Runtime.

Every backend is an `nn.Module` called like `ErnieModel`: `pooled, encoded = encoder(input_ids,
sent_ids, task_ids, attention_mask)`. Task heads (a linear layer, a CRF) stay in PyTorch: they
cost nothing next to the encoder, and keeping them there lets prediction (`finetune.evaluate`),
`inference.encode` and the server run unchanged on any backend by swapping the fine-tuned
model's encoder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ernie2.model.config import ErnieConfig
from ernie2.model.modeling import ErnieModel
from ernie2.tokenizer import ErnieTokenizer

logger = logging.getLogger(__name__)

# Written by `ernie2 export` beside the weights; found there by the onnx backends.
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
FINGERPRINT_KEY = "ernie2.weights_sha256"


def weights_fingerprint(*modules: nn.Module | None) -> str:
    """sha256 of modules' tensors (names and bytes, in name order): ties an exported file to the
    weights it came from, whatever checkpoint format they were read from."""
    h = hashlib.sha256()
    for k, module in enumerate(m for m in modules if m is not None):
        for name, t in sorted(module.state_dict().items()):
            h.update(f"{k}:{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


# ---------------------------------------------------------------------- backends
class AutocastEncoder(nn.Module):
    """The PyTorch encoder under bf16 autocast; outputs come back as float32."""

    def __init__(self, encoder: ErnieModel, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.inner = encoder
        self.dtype = dtype

    @property
    def config(self) -> ErnieConfig:
        return self.inner.config

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def forward(self, input_ids, sent_ids=None, task_ids=None, attention_mask=None):
        with torch.autocast(self.device.type, dtype=self.dtype):
            pooled, encoded = self.inner(input_ids, sent_ids, task_ids, attention_mask)
        return (None if pooled is None else pooled.float()), encoded.float()


class OnnxEncoder(nn.Module):
    """An encoder exported by `export.export_onnx`, run by ONNX Runtime on the CPU."""

    def __init__(self, path: str | os.PathLike, config: ErnieConfig, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        self.path = Path(path)
        self.config = config
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: onnxruntime cannot load this file "
                             f"({type(exc).__name__}: {exc})") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        missing = {"input_ids", "attention_mask"} - set(self.inputs) or {"encoded"} - set(outputs)
        if missing:
            raise ValueError(f"{self.path}: not an ernie2 encoder export (no {sorted(missing)[0]})")
        self.outputs = [n for n in ("pooled", "encoded") if n in outputs]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def forward(self, input_ids, sent_ids=None, task_ids=None, attention_mask=None):
        ids = _numpy(input_ids)
        b, t = ids.shape
        feed = {"input_ids": ids,
                "attention_mask": (ids != self.config.pad_token_id).astype(np.int64)
                if attention_mask is None else _numpy(attention_mask)}
        if "sent_ids" in self.inputs:
            feed["sent_ids"] = np.zeros_like(ids) if sent_ids is None else _numpy(sent_ids)
        if "task_ids" in self.inputs:  # exported per token: [B, T]
            tid = np.zeros((), np.int64) if task_ids is None else _numpy(task_ids)
            feed["task_ids"] = np.ascontiguousarray(np.broadcast_to(
                tid.reshape(-1, 1) if tid.ndim == 1 else tid, (b, t)))
        got = dict(zip(self.outputs, self.session.run(self.outputs, feed)))
        pooled = torch.from_numpy(got["pooled"]) if "pooled" in got else None
        return pooled, torch.from_numpy(got["encoded"])


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.int64)


# ---------------------------------------------------------------------- choosing a backend
@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    # (torch encoder, model directory, options) -> encoder module with ErnieModel's signature
    build: Callable[[ErnieModel, Path, dict[str, Any]], nn.Module]


def _torch(encoder, path, opts):
    return encoder


def _bf16(encoder, path, opts):
    return AutocastEncoder(encoder)


def _int8(encoder, path, opts):
    from ernie2.inference.quantize import quantize_torch
    return quantize_torch(encoder)


def _onnx(int8: bool):
    def build(encoder, path, opts):
        onnx_file = opts.get("onnx_file") or _default_onnx(path, int8)
        if onnx_file is None:
            onnx_file = _export_to_temp(encoder, int8, opts)
        onnx_file = Path(onnx_file)
        if not onnx_file.is_file():
            raise FileNotFoundError(f"{onnx_file}: no such ONNX file")
        runner = OnnxEncoder(onnx_file, encoder.config, opts.get("threads"))
        _check_fingerprint(runner, encoder, getattr(opts.get("head"), "head", None), path)
        if hasattr(opts.get("_tmp"), "name"):  # keep the temporary export alive with the runner
            weakref.finalize(runner, opts["_tmp"].cleanup)
        return runner
    return build


BACKENDS: dict[str, Backend] = {b.name: b for b in [
    Backend("torch", "PyTorch float32", _torch),
    Backend("bf16", "PyTorch under bfloat16 autocast", _bf16),
    Backend("int8", "PyTorch with dynamic int8 nn.Linear (torch.ao quantize_dynamic)", _int8),
    Backend("onnx", "ONNX Runtime, float32 export", _onnx(False)),
    Backend("onnx-int8", "ONNX Runtime, dynamically int8-quantized export", _onnx(True)),
]}


def _default_onnx(path: Path, int8: bool) -> Path | None:
    home = path if path.is_dir() else path.parent
    f = home / (ONNX_INT8_FILE if int8 else ONNX_FILE)
    return f if f.is_file() else None


def _export_to_temp(encoder: ErnieModel, int8: bool, opts: dict[str, Any]) -> Path:
    from ernie2.inference.export import export_onnx
    from ernie2.inference.quantize import quantize_onnx

    tmp = tempfile.TemporaryDirectory(prefix="ernie2-onnx-")
    opts["_tmp"] = tmp
    out = Path(tmp.name) / ONNX_FILE
    logger.info("no exported model beside the weights: exporting to %s (run `ernie2 export` "
                "once to skip this)", out)
    export_onnx(opts.get("head") or encoder, out)
    if int8:
        out = quantize_onnx(out, Path(tmp.name) / ONNX_INT8_FILE)
    return out


def _check_fingerprint(runner: OnnxEncoder, encoder: nn.Module, head: nn.Module | None,
                       path: Path) -> None:
    stored = runner.metadata().get(FINGERPRINT_KEY)
    if stored is None:
        logger.warning("%s carries no weights fingerprint; cannot check it matches %s",
                       runner.path, path)
    elif stored != weights_fingerprint(encoder, head):
        raise ValueError(f"{runner.path} was exported from other weights than {path}; "
                         "export it again (ernie2 export --model DIR)")


# ---------------------------------------------------------------------- a loaded model
@dataclass
class LoadedModel:
    """A model directory ready to run on one backend. `finetuned` is the fine-tuned model
    (`finetune.FinetuneModel`, its encoder already swapped for the backend's) or None for a
    bare encoder."""

    path: Path
    backend: str
    tokenizer: ErnieTokenizer
    encoder: nn.Module
    finetuned: Any | None = None

    @property
    def config(self) -> ErnieConfig:
        return self.encoder.config

    @property
    def task_id(self) -> int:
        return int(getattr(self.finetuned, "task_id", 0))

    def max_len(self) -> int:
        """The fine-tuned model's max_len, else 128; never past the position table."""
        opts = getattr(self.finetuned, "options", None)
        return min(int(getattr(opts, "max_len", 128)), self.config.max_position_embeddings)

    def encode(self, texts_a: Sequence[str], texts_b: Sequence[str] | None = None,
               max_len: int | None = None, batch_size: int = 32):
        """[CLS] and token embeddings (`inference.encode.Embeddings`) on this backend."""
        from ernie2.inference.encode import encode
        return encode(self.encoder, self.tokenizer, texts_a, texts_b, max_len or self.max_len(),
                      batch_size, self.task_id)

    def predict(self, inputs: Sequence[Any], batch_size: int = 32) -> list[dict]:
        """The fine-tuned model's predictions for plain inputs (see `inputs.to_examples`)."""
        from ernie2.finetune.evaluate import predict_examples
        from ernie2.inference.inputs import to_examples

        if self.finetuned is None:
            raise ValueError(f"{self.path}: not a fine-tuned model directory; nothing to predict")
        examples = to_examples(self.finetuned.task.name, inputs)
        preds, _ = predict_examples(self.finetuned, self.tokenizer, examples, batch_size)
        return preds


def is_finetuned(path: str | os.PathLike) -> bool:
    from ernie2.finetune.model import FINETUNE_JSON
    return (Path(path) / FINETUNE_JSON).is_file()


def load(path: str | os.PathLike, backend: str = "torch", onnx_file: str | os.PathLike | None = None,
         threads: int | None = None, device: str = "cpu") -> LoadedModel:
    """Load a pre-trained or fine-tuned model directory on a backend (`BACKENDS`).

    The onnx backends read `onnx_file`, else `model.onnx` / `model.int8.onnx` beside the
    weights, else export to a temporary file first; the file must come from the same weights.
    `device` (e.g. "cuda") applies to the torch and bf16 backends; the others run on the CPU.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if torch.device(device).type != "cpu" and backend not in ("torch", "bf16"):
        raise ValueError(f"backend {backend} runs on the CPU only, not {device}")
    path = Path(path)
    tokenizer = ErnieTokenizer.from_pretrained(path)
    finetuned = None
    if path.is_dir() and is_finetuned(path):
        from ernie2.finetune.model import FinetuneModel
        finetuned = FinetuneModel.load(path)
        encoder = finetuned.encoder
    else:
        encoder = ErnieModel.from_pretrained(path).eval()
    opts: dict[str, Any] = {"onnx_file": onnx_file, "threads": threads,
                            "head": finetuned}
    runner = BACKENDS[backend].build(encoder, path, opts)
    if finetuned is not None:
        finetuned.encoder = runner.eval()
        finetuned.to(device)
    runner.to(device)
    return LoadedModel(path, backend, tokenizer, runner.eval(), finetuned)


__all__ = ["AutocastEncoder", "BACKENDS", "LoadedModel", "OnnxEncoder", "is_finetuned", "load",
           "weights_fingerprint"]
