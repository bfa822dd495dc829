"""Dynamic int8 quantization for CPU inference: of the PyTorch encoder's nn.Linear layers, or of an
exported ONNX file's MatMul weights. Weights become int8 once; activations are quantized per batch
on the fly, so no calibration data is needed."""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)


def quantize_torch(model: nn.Module, inplace: bool = False) -> nn.Module:
    """A copy of `model` (eval mode) whose nn.Linear layers run in dynamic int8.

    Embeddings, LayerNorm and attention stay float32: the Linear layers hold nearly all of an
    encoder's compute and weights.
    """
    from torch.ao.quantization import quantize_dynamic

    model = (model if inplace else copy.deepcopy(model)).eval()
    with warnings.catch_warnings():
        # torch 2.10+ marks eager-mode quantization deprecated in favour of torchao (not
        # installed here); it still works and is what this CPU build ships.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write a dynamically int8-quantized copy of an ONNX file (signed int8 weights, per
    channel), keeping its metadata (config, weights fingerprint)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    root = logging.getLogger()
    level = root.level
    try:
        # onnxruntime's quantizer logs every skipped tensor at INFO on the root logger.
        root.setLevel(max(level, logging.ERROR))
        try:
            quantize_dynamic(str(src), tmp, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
        meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
        proto = onnx.load(tmp)
        have = {p.key for p in proto.metadata_props}
        for k, v in meta.items():
            if k not in have:
                entry = proto.metadata_props.add()
                entry.key, entry.value = k, v
        entry = proto.metadata_props.add()
        entry.key, entry.value = "ernie2.quantized", "dynamic int8 (onnxruntime)"
        onnx.save(proto, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("quantized %s -> %s (%.1f MB -> %.1f MB)", src, dst, src.stat().st_size / 1e6,
                dst.stat().st_size / 1e6)
    return dst


__all__ = ["quantize_onnx", "quantize_torch"]
