"""Reading every ERNIE checkpoint format into one naming, and writing ours.

Canonical names are those of `ErnieModel.state_dict()` for the encoder and `heads.<name>.*` for
heads. On disk we write Hugging Face names (`ernie.` prefix, `cls.predictions.*` for the masked-LM
head), so our directories also load in transformers.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ernie2.model.config import ErnieConfig
from ernie2.model.paddle_io import PaddleFormatError, read_pdparams, read_static_params

logger = logging.getLogger(__name__)

SCHEMES = ("hf", "paddlenlp", "dygraph", "static")

# canonical module, kind, then the module's name in each scheme (None: the scheme has none).
# kind: emb (weight), ln (weight, bias), linear (weight, bias), param (the name is the tensor).
_MODULES: list[tuple[str, str, str | None, str | None, str | None, str | None]] = [
    ("embeddings.word_embeddings", "emb", "ernie.embeddings.word_embeddings",
     "ernie.embeddings.word_embeddings", "word_emb", "word_embedding"),
    ("embeddings.position_embeddings", "emb", "ernie.embeddings.position_embeddings",
     "ernie.embeddings.position_embeddings", "pos_emb", "pos_embedding"),
    ("embeddings.token_type_embeddings", "emb", "ernie.embeddings.token_type_embeddings",
     "ernie.embeddings.token_type_embeddings", "sent_emb", "sent_embedding"),
    ("embeddings.task_type_embeddings", "emb", "ernie.embeddings.task_type_embeddings",
     "ernie.embeddings.task_type_embeddings", "task_emb", "task_embedding"),
    ("embeddings.layer_norm", "ln", "ernie.embeddings.LayerNorm", "ernie.embeddings.layer_norm",
     "ln", "pre_encoder_layer_norm"),
    *[(f"layers.{{i}}.attention.{ours}", "linear",
       f"ernie.encoder.layer.{{i}}.attention.{hf}", f"ernie.encoder.layers.{{i}}.self_attn.{nlp}",
       f"encoder_stack.block.{{i}}.attn.{dy}", f"encoder_layer_{{i}}_multi_head_att_{st}_fc")
      for ours, hf, nlp, dy, st in [("query", "self.query", "q_proj", "q", "query"),
                                    ("key", "self.key", "k_proj", "k", "key"),
                                    ("value", "self.value", "v_proj", "v", "value"),
                                    ("output", "output.dense", "out_proj", "o", "output")]],
    ("layers.{i}.attention_norm", "ln", "ernie.encoder.layer.{i}.attention.output.LayerNorm",
     "ernie.encoder.layers.{i}.norm1", "encoder_stack.block.{i}.ln1",
     "encoder_layer_{i}_post_att_layer_norm"),
    ("layers.{i}.ffn_in", "linear", "ernie.encoder.layer.{i}.intermediate.dense",
     "ernie.encoder.layers.{i}.linear1", "encoder_stack.block.{i}.ffn.i",
     "encoder_layer_{i}_ffn_fc_0"),
    ("layers.{i}.ffn_out", "linear", "ernie.encoder.layer.{i}.output.dense",
     "ernie.encoder.layers.{i}.linear2", "encoder_stack.block.{i}.ffn.o",
     "encoder_layer_{i}_ffn_fc_1"),
    ("layers.{i}.ffn_norm", "ln", "ernie.encoder.layer.{i}.output.LayerNorm",
     "ernie.encoder.layers.{i}.norm2", "encoder_stack.block.{i}.ln2",
     "encoder_layer_{i}_post_ffn_layer_norm"),
    ("pooler.dense", "linear", "ernie.pooler.dense", "ernie.pooler.dense", "pooler", "pooled_fc"),
    ("heads.mlm.dense", "linear", "cls.predictions.transform.dense", "cls.predictions.transform",
     "mlm", "mask_lm_trans_fc"),
    ("heads.mlm.layer_norm", "ln", "cls.predictions.transform.LayerNorm",
     "cls.predictions.layer_norm", "mlm_ln", "mask_lm_trans_layer_norm"),
    ("heads.mlm.bias", "param", "cls.predictions.bias", "cls.predictions.decoder_bias",
     "mlm_bias", "mask_lm_out_fc.b_0"),
    ("heads.nsp.classifier", "linear", "cls.seq_relationship", "cls.seq_relationship",
     "pooler_heads.0.nsp", "next_sent_fc"),
    ("heads.classifier.classifier", "linear", "classifier", "classifier", "classifier", None),
]

# Per-scheme parameter suffixes: (kind, canonical suffix) -> scheme suffix.
_SUFFIXES = {
    "static": {("emb", ".weight"): "", ("ln", ".weight"): "_scale", ("ln", ".bias"): "_bias",
               ("linear", ".weight"): ".w_0", ("linear", ".bias"): ".b_0"},
}
_PARAMS = {"emb": (".weight",), "ln": (".weight", ".bias"), "linear": (".weight", ".bias"),
           "param": ("",)}

# Names that are known and carry nothing we need (tied decoders, buffers, optimizer state).
_IGNORED = re.compile(
    r"(^|\.)position_ids$|^cls\.predictions\.decoder(\.weight|\.bias|_weight)$"
    r"|_moment\d_\d+$|_pow_acc_\d+$|^learning_rate_\d+$|^@|_velocity_\d+$|^num_\w*_steps"
    r"|^loss_scaling_\d+$")


def _build_tables():
    to_canon: list[tuple[re.Pattern, str]] = []
    from_canon: dict[str, list[tuple[re.Pattern, str]]] = {s: [] for s in SCHEMES}
    for canon, kind, *names in _MODULES:
        for suffix in _PARAMS[kind]:
            c_name = canon + suffix
            c_re = re.compile("^" + re.escape(c_name).replace(r"\{i\}", r"(?P<i>\d+)") + "$")
            for scheme, src in zip(SCHEMES, names):
                if src is None:
                    continue
                s_name = src + _SUFFIXES.get(scheme, {}).get((kind, suffix), suffix)
                s_re = re.escape(s_name).replace(r"\{i\}", r"(?P<i>\d+)")
                to_canon.append((re.compile(f"^{s_re}$"), c_name))
                from_canon[scheme].append((c_re, s_name))
    return to_canon, from_canon


_TO_CANON, _FROM_CANON = _build_tables()
_PREFIX = re.compile(r"^(ernie|bert|model)\.")


def canonical_name(name: str) -> str | None:
    """Our name for a parameter named in any scheme; None when unknown."""
    for candidate in (name, "ernie." + _PREFIX.sub("", name)):
        for pattern, target in _TO_CANON:
            m = pattern.match(candidate)
            if m:
                return target.replace("{i}", m.group("i")) if "{i}" in target else target
    if name.startswith("heads."):  # our own extra heads pass through
        return name
    return None


def scheme_name(canon: str, scheme: str = "hf") -> str | None:
    """The name of canonical parameter `canon` in `scheme` (one of SCHEMES); None if it has none.
    Extra heads keep their canonical name in the hf scheme (our on-disk naming)."""
    for pattern, target in _FROM_CANON[scheme]:
        m = pattern.match(canon)
        if m:
            return target.replace("{i}", m.group("i")) if "{i}" in target else target
    return canon if scheme == "hf" and canon.startswith("heads.") else None


def hf_name(canon: str) -> str:
    name = scheme_name(canon, "hf")
    if name is None:
        raise KeyError(f"parameter {canon!r} has no on-disk name")
    return name


# ---------------------------------------------------------------------- reading
@dataclass
class Checkpoint:
    """A checkpoint read into canonical names (torch tensors in PyTorch layout)."""

    config: ErnieConfig
    tensors: dict[str, torch.Tensor]
    source: Path
    fmt: str
    vocab_file: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def heads(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of head `name`, with the `heads.<name>.` prefix removed."""
        prefix = f"heads.{name}."
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}


_CONFIG_FILES = ("config.json", "ernie_config.json", "model_config.json")
_PDPARAMS_NAMES = ("model_state.pdparams", "saved_weights.pdparams", "model.pdparams")


def _find_beside(start: Path, names: Iterable[str]) -> Path | None:
    for d in (start, start.parent):
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def detect_format(path: Path) -> tuple[str, Path, Path]:
    """(format, weights path, directory holding config and vocab)."""
    if path.is_file():
        suffix = path.suffix
        fmt = {".pdparams": "pdparams", ".safetensors": "safetensors", ".bin": "torch",
               ".pt": "torch", ".pth": "torch"}.get(suffix)
        if fmt is None:
            raise ValueError(f"{path}: unknown checkpoint file type {suffix!r} (expected "
                             ".safetensors, .bin, .pt or .pdparams)")
        return fmt, path, path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if (path / "model.safetensors").is_file():
        return "safetensors", path / "model.safetensors", path
    if (path / "pytorch_model.bin").is_file():
        return "torch", path / "pytorch_model.bin", path
    if (path / "params").is_dir():
        return "static", path / "params", path
    for n in _PDPARAMS_NAMES:
        if (path / n).is_file():
            return "pdparams", path / n, path
    found = sorted(path.glob("*.pdparams"))
    if len(found) == 1:
        return "pdparams", found[0], path
    if any(f.name in ("word_embedding", "pre_encoder_layer_norm_scale") for f in path.iterdir()):
        return "static", path, path.parent
    raise FileNotFoundError(
        f"{path}: found no weights: expected model.safetensors, pytorch_model.bin, a params/ "
        f"directory or one *.pdparams file (found: "
        f"{', '.join(sorted(p.name for p in path.iterdir())) or 'nothing'})")


def _read_raw(fmt: str, weights: Path) -> dict[str, Any]:
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from None
    if fmt == "torch":
        try:
            obj = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for bad or unsafe files
            raise ValueError(f"{weights}: not a readable PyTorch weights file "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ValueError(f"{weights}: expected a dict of tensors, got {type(obj).__name__}")
        return obj
    if fmt == "pdparams":
        return read_pdparams(weights)
    if fmt == "static":
        return read_static_params(weights)
    raise ValueError(f"unknown format {fmt}")


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported checkpoint into canonical names; errors name the file and tensors."""
    path = resolve_pretrained(path)
    fmt, weights, home = detect_format(path)
    cfg_file = _find_beside(home, _CONFIG_FILES)
    if cfg_file is None:
        raise FileNotFoundError(f"{path}: no config file ({', '.join(_CONFIG_FILES)}) "
                                "beside the weights")
    config = ErnieConfig.from_file(cfg_file)
    raw = _read_raw(fmt, weights)
    paddle = fmt in ("pdparams", "static")
    tensors: dict[str, torch.Tensor] = {}
    unknown = []
    for name, value in raw.items():
        canon = canonical_name(name)
        if canon is None:
            if not _IGNORED.search(name):
                unknown.append(name)
            continue
        t = torch.as_tensor(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) \
            else value
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{weights}: entry {name!r} is not a tensor")
        # Paddle keeps Linear weights as [in, out].
        if paddle and t.dim() == 2 and not canon.startswith("embeddings."):
            t = t.t()
        tensors[canon] = t.contiguous()
    if unknown:
        raise ValueError(f"{weights}: {len(unknown)} parameter(s) with names this loader does "
                         f"not know: {', '.join(sorted(unknown)[:20])}"
                         + (" ..." if len(unknown) > 20 else ""))
    task = tensors.get("embeddings.task_type_embeddings.weight")
    if task is not None and not config.use_task_id:
        # Released 2.0 configs omit use_task_id; the weights tell.
        config = config.replace(use_task_id=True, task_type_vocab_size=task.shape[0])
    vocab = _find_beside(home, ("vocab.txt",))
    logger.info("read %s checkpoint %s (%d tensors)", fmt, weights, len(tensors))
    return Checkpoint(config, tensors, path, fmt, vocab)


# ---------------------------------------------------------------------- assigning
_LAYER = re.compile(r"^layers\.(\d+)\.")


def assign(module: nn.Module, tensors: dict[str, torch.Tensor], source: str,
           may_init: Iterable[str] = (), growable: Iterable[str] = ()) -> list[str]:
    """Copy `tensors` into `module`'s parameters by name.

    Every parameter must be given, except those in `may_init` (left as initialized and
    returned). Tensors in `growable` may have fewer rows than the parameter (the rest stays
    as initialized). Missing or mis-shaped parameters raise one error naming them all.
    """
    may_init, growable = set(may_init), set(growable)
    state = module.state_dict()
    missing, misshaped, fresh = [], [], []
    with torch.no_grad():
        for name, param in state.items():
            t = tensors.get(name)
            if t is None:
                (fresh if name in may_init else missing).append(name)
                continue
            if t.shape != param.shape:
                if (name in growable and t.dim() == param.dim() and t.shape[1:] == param.shape[1:]
                        and t.shape[0] < param.shape[0]):
                    param[: t.shape[0]].copy_(t)
                    fresh.append(f"{name}[{t.shape[0]}:]")
                    continue
                misshaped.append(f"{name} (checkpoint {tuple(t.shape)}, model "
                                 f"{tuple(param.shape)})")
                continue
            param.copy_(t)
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if misshaped:
        problems.append(f"wrong shape: {', '.join(misshaped)}")
    if problems:
        raise ValueError(f"{source}: cannot load into {type(module).__name__}: "
                         + "; ".join(problems))
    return fresh


def load_encoder(model: nn.Module, ckpt: Checkpoint) -> list[str]:
    """Load the encoder part of `ckpt` into an ErnieModel; returns newly initialized names."""
    n_layers = model.config.num_hidden_layers
    tensors = {}
    dropped = set()
    for k, v in ckpt.tensors.items():
        if k.startswith("heads."):
            continue
        m = _LAYER.match(k)
        if m and int(m.group(1)) >= n_layers:
            dropped.add(int(m.group(1)))
            continue
        tensors[k] = v
    if dropped:
        logger.info("kept the first %d layers of %s, dropped %d", n_layers, ckpt.source,
                    len(dropped))
    fresh = assign(model, tensors, str(ckpt.source),
                   may_init={"embeddings.task_type_embeddings.weight", "pooler.dense.weight",
                             "pooler.dense.bias"},
                   growable={"embeddings.task_type_embeddings.weight"})
    if fresh:
        logger.warning("%s: newly initialized (not in the checkpoint): %s", ckpt.source,
                       ", ".join(fresh))
    unused = sorted({k.split(".")[1] for k in ckpt.tensors if k.startswith("heads.")})
    if unused:
        logger.info("%s: checkpoint heads not used by the encoder: %s", ckpt.source,
                    ", ".join(unused))
    return fresh


def load_pretrained(cls, path: str | os.PathLike, **overrides: Any):
    ckpt = read_checkpoint(path)
    try:
        config = ckpt.config.replace(**overrides)
    except TypeError as exc:
        raise TypeError(f"unknown config override: {exc}") from None
    ckpt_layers = 1 + max((int(m.group(1)) for k in ckpt.tensors
                           if (m := _LAYER.match(k))), default=-1)
    if config.num_hidden_layers > ckpt_layers:
        raise ValueError(f"{ckpt.source}: asked for {config.num_hidden_layers} layers, the "
                         f"checkpoint has {ckpt_layers}")
    model = cls(config)
    load_encoder(model, ckpt)
    return model, ckpt


# ---------------------------------------------------------------------- writing
def save_pretrained(model: nn.Module, path: str | os.PathLike,
                    vocab_file: str | os.PathLike | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Write `config.json`, `model.safetensors` (Hugging Face names) and `vocab.txt`.

    `extra_tensors` are head tensors in canonical names (`heads.mlm.dense.weight`, ...)."""
    from safetensors.torch import save as st_save

    from ernie2.utils import atomic_write_bytes

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {hf_name(k): v.detach().to("cpu").contiguous()
               for k, v in {**model.state_dict(), **(extra_tensors or {})}.items()}
    atomic_write_bytes(path / "model.safetensors",
                       st_save(tensors, metadata={"format": "pt", "producer": "ernie2"}))
    model.config.save(path / "config.json")
    if vocab_file is not None and Path(vocab_file).resolve() != (path / "vocab.txt").resolve():
        tmp = path / ".vocab.txt.tmp"
        shutil.copyfile(vocab_file, tmp)
        os.replace(tmp, path / "vocab.txt")


def convert(src: str | os.PathLike, dst: str | os.PathLike) -> Checkpoint:
    """Convert any supported checkpoint to our directory format, heads included."""
    from ernie2.model.modeling import ErnieModel

    model, ckpt = load_pretrained(ErnieModel, src)
    heads = {k: v for k, v in ckpt.tensors.items() if k.startswith("heads.")}
    save_pretrained(model, dst, vocab_file=ckpt.vocab_file, extra_tensors=heads)
    return ckpt


def resolve_pretrained(name_or_path: str | os.PathLike) -> Path:
    """A local path as is; otherwise a known model name resolved through the model hub."""
    p = Path(name_or_path)
    if p.exists():
        return p
    from ernie2 import hub

    return hub.resolve(str(name_or_path), convert=convert)


__all__ = ["Checkpoint", "PaddleFormatError", "assign", "canonical_name", "convert",
           "detect_format", "hf_name", "scheme_name", "load_encoder", "load_pretrained", "read_checkpoint",
           "resolve_pretrained", "save_pretrained"]
