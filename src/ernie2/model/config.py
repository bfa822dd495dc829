"""ErnieConfig: the encoder's hyper-parameters, read from Paddle, PaddleNLP and Hugging Face files."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Generic sizes as data (layers, hidden, heads; intermediate defaults to 4 x hidden): shapes no
# released model has, to train from scratch. A released model's shape is its row of the hub's
# table (ernie2.hub.table, e.g. "ernie-tiny"); `size_fields` reads either.
NAMED_SIZES: dict[str, dict[str, Any]] = {
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12),
    "large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16),
    "medium": dict(num_hidden_layers=6, hidden_size=512, num_attention_heads=8),
    "small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4),
    "mini": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2),
    # The Hugging Face BertModelTester size: for unit tests.
    "test": dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=64),
}


def size_fields(name: str) -> dict[str, Any]:
    """The ErnieConfig fields of a named size: a generic one (NAMED_SIZES) or the architecture of
    a released model in the hub's table. KeyError, listing both, for any other name."""
    if name in NAMED_SIZES:
        return dict(NAMED_SIZES[name])
    from ernie2.hub.table import UnknownModelError, get_model, known_models

    try:
        return get_model(name).architecture()
    except UnknownModelError:
        raise KeyError(f"unknown model size {name!r}; known sizes: {', '.join(NAMED_SIZES)}, "
                       f"or a released model's: {', '.join(sorted(known_models()))}") from None


POSITION_INITS = ("normal", "sinusoidal")
ATTENTION_INITS = ("normal", "mimetic")


@dataclass
class ErnieConfig:
    vocab_size: int = 18000
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int | None = None  # None: 4 x hidden_size
    hidden_act: str = "relu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 513
    type_vocab_size: int = 2
    use_task_id: bool = False
    task_type_vocab_size: int = 3
    initializer_range: float = 0.02
    # How a fresh model's position table starts: "normal" (N(0, initializer_range), as every
    # other weight: BERT's and ERNIE's) or "sinusoidal" (the Transformer's sin/cos table, scaled
    # to a standard deviation of position_init_std). Loaded weights replace it either way.
    position_init: str = "normal"
    position_init_std: float = 0.1
    # How a fresh model's attention weights start: "normal" (N(0, initializer_range)) or
    # "mimetic" (Trockman and Kolter 2023): each head's W_q^T W_k starts near
    # mimetic_qk * (Z + I) and each layer's W_o W_v near mimetic_vo * (Z - I), Z random with
    # variance 1/hidden_size, so that a young model's heads attend to the token itself and, through
    # the position table, to its neighbours. mimetic_vo = 0 leaves the value path normal.
    attention_init: str = "normal"
    mimetic_qk: float = 0.7
    mimetic_vo: float = 0.4
    # Paddle's LayerNorm default; converted ERNIE weights are wrong with the HF default 1e-12.
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 0
    has_pooler: bool = True
    # Masked-LM heads decode with the word embedding (ERNIE, BERT) or their own weight (false).
    tie_word_embeddings: bool = True
    classifier_dropout_prob: float | None = None
    intermediate_dropout_prob: float | None = None
    # Keys we do not interpret, written back as they came.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_types()
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size",
                     "task_type_vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob",
                     "classifier_dropout_prob", "intermediate_dropout_prob"):
            v = getattr(self, name)
            if v is not None and not 0 <= v < 1:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if not (math.isfinite(self.initializer_range) and self.initializer_range >= 0):
            raise ValueError(f"initializer_range must be >= 0, got {self.initializer_range}")
        if self.position_init not in POSITION_INITS:
            raise ValueError(f"position_init {self.position_init!r} is not one of "
                             f"{', '.join(POSITION_INITS)}")
        if not (math.isfinite(self.position_init_std) and self.position_init_std > 0):
            raise ValueError(f"position_init_std must be positive, got {self.position_init_std}")
        if self.attention_init not in ATTENTION_INITS:
            raise ValueError(f"attention_init {self.attention_init!r} is not one of "
                             f"{', '.join(ATTENTION_INITS)}")
        for name in ("mimetic_qk", "mimetic_vo"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.layer_norm_eps) and self.layer_norm_eps > 0):
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")
        self.check_memory()

    def _check_types(self) -> None:
        """Each field holds its declared type (a size given as the string "64" is refused here,
        not deep inside a layer)."""
        for name, tp in typing.get_type_hints(type(self)).items():
            v = getattr(self, name)
            args = (dict,) if typing.get_origin(tp) is dict else typing.get_args(tp) or (tp,)
            if v is None and type(None) in args:
                continue
            if int in args and not (isinstance(v, int) and not isinstance(v, bool)):
                raise ValueError(f"{name} must be an integer, got {v!r}")
            if float in args and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ValueError(f"{name} must be a number, got {v!r}")
            if (str in args or bool in args or dict in args) and not isinstance(v, args):
                raise ValueError(f"{name} must be {'/'.join(a.__name__ for a in args)}, got "
                                 f"{v!r}")

    def num_parameters(self) -> int:
        """Parameters of the encoder (embeddings, layers, pooler), from the sizes alone."""
        h, i = self.hidden_size, self.intermediate_size
        rows = self.vocab_size + self.max_position_embeddings + self.type_vocab_size + (
            self.task_type_vocab_size if self.use_task_id else 0)
        layer = 4 * h * h + 4 * h + h * i + i + i * h + h + 4 * h
        return rows * h + 2 * h + self.num_hidden_layers * layer + (
            h * h + h if self.has_pooler else 0)

    def check_memory(self, copies: int = 1, what: str = "the model") -> None:
        """Refuse, before anything is allocated, sizes whose float32 tensors (`copies` of them:
        4 for training with Adam: weights, gradients, two moments) exceed this machine's
        available memory."""
        need = 4 * copies * self.num_parameters()
        have = available_memory()
        if have is not None and need > have:
            raise ValueError(f"{what} needs about {need / 2**30:,.1f} GiB ({self.num_parameters():,} "
                             f"parameters x {copies} float32 copies), more than the "
                             f"{have / 2**30:,.1f} GiB this machine has available (hidden_size "
                             f"{self.hidden_size}, {self.num_hidden_layers} layers, vocab "
                             f"{self.vocab_size}, max_position_embeddings "
                             f"{self.max_position_embeddings})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ErnieConfig:
        """A generic size ("mini", "base", ...) or a released model's architecture by its name
        ("ernie-tiny", "ernie-2.0-en"; fresh weights), with `overrides`."""
        return cls(**{**size_fields(name), **overrides})

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> ErnieConfig:
        """Read any of: Paddle ernie_config.json, PaddleNLP model_config.json (flat or
        nested init_args), Hugging Face config.json."""
        d = dict(raw)
        if "init_args" in d:  # PaddleNLP nested form
            args = d["init_args"]
            if isinstance(args, list):
                args = next((a for a in args if isinstance(a, dict)), None)
            if not isinstance(args, dict):
                raise ValueError(f"{source}: init_args holds no dict of model arguments")
            # A nested ErnieForX config carries the ErnieModel config one level deeper.
            if "init_args" in args:
                return cls.from_dict(args, source)
            d = {**{k: v for k, v in d.items() if k not in ("init_args", "init_class")}, **args}
        if "sent_type_vocab_size" in d:
            d["type_vocab_size"] = d.pop("sent_type_vocab_size")
        if "emb_size" in d:
            emb = d.pop("emb_size")
            if emb is not None and "hidden_size" in d and int(emb) != int(d["hidden_size"]):
                raise ValueError(f"{source}: emb_size {emb} differs from hidden_size "
                                 f"{d['hidden_size']}; factorized embeddings are not supported")
        if d.get("use_task_id") is None:
            d.pop("use_task_id", None)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known and k not in _WRITTEN_KEYS}
        for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
            if k not in kwargs:
                raise ValueError(f"{source}: config has no {k!r}")
        try:
            return cls(**kwargs, extra=extra)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ErnieConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a JSON config file ({exc})") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return cls.from_dict(raw, source=str(path))

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict[str, Any]:
        """A Hugging Face style config.json (loads into transformers' ErnieModel)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        for k in ("classifier_dropout_prob", "intermediate_dropout_prob"):
            if d[k] is None:
                del d[k]
        return {"model_type": "ernie", "architectures": ["ErnieModel"], **d,
                "position_embedding_type": "absolute", **self.extra}

    def save(self, path: str | os.PathLike) -> None:
        from ernie2.utils import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def replace(self, **changes: Any) -> ErnieConfig:
        return dataclasses.replace(self, **changes)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else the physical
    memory); None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


ACTIVATIONS = {"relu", "gelu", "gelu_new", "tanh"}
_WRITTEN_KEYS = {"model_type", "architectures", "position_embedding_type"}
