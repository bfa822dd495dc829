"""The table of model descriptions: the released ERNIE models (one keyword row each), entries
added with register(), and those of a $ERNIE2_REGISTRY file."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ernie2.hub.download import ENV_REGISTRY, Download, UnknownModelError
from ernie2.hub.sources import ArchiveSource, FilesSource, HubSource, Source

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelInfo:
    """A row of the table: what the model is, and its sources, tried in order."""

    name: str
    language: str
    layers: int
    hidden: int
    heads: int
    vocab_size: int
    summary: str
    sources: tuple[Source, ...] = ()
    aliases: tuple[str, ...] = ()
    note: str = ""
    # The rest of the architecture, where the table knows it (PaddleNLP publishes no config
    # file: FilesSource writes one from these).
    activation: str | None = None
    positions: int | None = None
    sentence_types: int | None = None
    intermediate: int | None = None

    def architecture(self) -> dict[str, Any]:
        """The ErnieConfig fields this row knows (its shape; no weights)."""
        return _architecture({f: getattr(self, f) for f in _ARCHITECTURE})

    def __post_init__(self) -> None:
        for n in (self.name, *self.aliases):
            if not _NAME.match(n):
                raise ValueError(f"model name {n!r}: use letters, digits, '.', '_' and '-' only")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> ModelInfo:
        required = ("name", "language", "layers", "hidden", "heads", "vocab_size", "sources")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        sources = []
        for i, s in enumerate(d["sources"]):
            sw = f"{where} source {i}"
            if not isinstance(s, dict):
                raise ValueError(f"{sw}: expected an object")
            if "archive" in s:
                sources.append(ArchiveSource(Download.from_value(
                    {"url": s["archive"], **{k: s[k] for k in ("size", "md5", "sha256") if k in s}},
                    sw), subdir=s.get("subdir")))
            elif "files" in s:
                files = s["files"]
                if not isinstance(files, dict) or not files:
                    raise ValueError(f"{sw}: 'files' must map local file names to downloads")
                sources.append(FilesSource(
                    tuple((k, Download.from_value(v, f"{sw} {k}")) for k, v in files.items()),
                    config=s.get("config")))
            elif "hf" in s:
                sources.append(HubSource(s["hf"], revision=s.get("revision")))
            else:
                raise ValueError(f"{sw}: expected one of 'archive', 'files' or 'hf'")
        try:
            return cls(name=d["name"], language=d["language"], layers=int(d["layers"]),
                       hidden=int(d["hidden"]), heads=int(d["heads"]),
                       vocab_size=int(d["vocab_size"]), summary=d.get("summary", ""),
                       sources=tuple(sources), aliases=tuple(d.get("aliases", ())),
                       note=d.get("note", ""))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


# A row's architecture fields and the ErnieConfig keys they are.
_ARCHITECTURE = {"layers": "num_hidden_layers", "hidden": "hidden_size",
                 "heads": "num_attention_heads", "vocab_size": "vocab_size",
                 "activation": "hidden_act", "positions": "max_position_embeddings",
                 "sentence_types": "type_vocab_size", "intermediate": "intermediate_size"}


def _architecture(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[f] for f, key in _ARCHITECTURE.items() if row.get(f) is not None}


def _paddlenlp_config(row: dict[str, Any]) -> dict[str, Any]:
    """The model_config.json PaddleNLP builds from its init configuration (they ship none)."""
    return {"attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1,
            "initializer_range": 0.02, "intermediate_size": 4 * row["hidden"], "pad_token_id": 0,
            **_architecture(row)}


# Addresses as published by Baidu: the dygraph archives in PaddlePaddle/ERNIE
# ernie/modeling_ernie.py `resource_map` (unpack flat: ernie_config.json, saved_weights.pdparams,
# vocab.txt), the static archives in its repro README (flat: params/, ernie_config.json,
# vocab.txt), PaddleNLP's ERNIE_PRETRAINED_RESOURCE_FILES_MAP (+ tokenizer vocab map, init
# configuration), the wenxin models_hub scripts; Hugging Face ids from transformers' ERNIE
# archive list and the nghuyong model cards. No size or checksum has been published for any.
_BCE_DY = "https://ernie-github.cdn.bcebos.com/"
_BCE = "https://ernie.bj.bcebos.com/"
_NLP = "https://bj.bcebos.com/paddlenlp/models/transformers/"
_WENXIN = "http://bj.bcebos.com/wenxin-models/"


# One row a released model: ModelInfo's fields, plus where it is published (`dygraph`,
# `static`, `paddlenlp`, `wenxin`, `hf`), tried in that order.
_RELEASED: list[dict[str, Any]] = [
    dict(name="ernie-1.0", language="zh", layers=12, hidden=768, heads=12, vocab_size=18000,
         activation="relu", positions=513, sentence_types=2, intermediate=3072,
         summary="ERNIE 1.0 base, Chinese (knowledge masking)", aliases=("ernie-1.0-base-zh",),
         dygraph="model-ernie1.0.1.tar.gz",
         static="https://baidu-nlp.bj.bcebos.com/ERNIE_stable-1.0.1.tar.gz",
         paddlenlp=("ernie/ernie_v1_chn_base.pdparams", "ernie/vocab.txt"),
         hf="nghuyong/ernie-1.0-base-zh"),
    dict(name="ernie-1.0-max-len-512", language="zh", layers=12, hidden=768, heads=12, vocab_size=18000,
         activation="relu", positions=512, sentence_types=2, intermediate=3072,
         summary="ERNIE 1.0 base, Chinese, pre-trained with sequences up to 512",
         static=_BCE + "ERNIE_1.0_max-len-512.tar.gz"),
    dict(name="ernie-tiny", language="zh", layers=3, hidden=1024, heads=16, vocab_size=50006,
         activation="relu", positions=600, sentence_types=2, intermediate=4096,
         summary="ERNIE tiny, Chinese, distilled 3-layer model",
         dygraph="model-ernie_tiny.1.tar.gz", static=_BCE + "ernie_tiny.tar.gz",
         paddlenlp=("ernie_tiny/ernie_tiny.pdparams", "ernie_tiny/vocab.txt"),
         hf="nghuyong/ernie-tiny",
         note="its tokenizer segments words (jieba) then sentencepiece "
              "(subword/spm_cased_simp_sampled.model); ErnieTokenizer's WordPiece over "
              "vocab.txt does not reproduce it"),
    dict(name="ernie-2.0-en", language="en", layers=12, hidden=768, heads=12, vocab_size=30522,
         activation="gelu", positions=512, sentence_types=4, intermediate=3072,
         summary="ERNIE 2.0 base, English (continual multi-task pre-training)",
         aliases=("ernie-2.0-base-en",), dygraph="model-ernie2.0-en.1.tar.gz",
         static=_BCE + "ERNIE_Base_en_stable-2.0.0.tar.gz",
         paddlenlp=("ernie_v2_base/ernie_v2_eng_base.pdparams", "ernie_v2_base/vocab.txt"),
         hf="nghuyong/ernie-2.0-base-en"),
    dict(name="ernie-2.0-large-en", language="en", layers=24, hidden=1024, heads=16, vocab_size=30522,
         activation="gelu", positions=512, sentence_types=4, intermediate=4096,
         summary="ERNIE 2.0 large, English", dygraph="model-ernie2.0-large-en.1.tar.gz",
         static=_BCE + "ERNIE_Large_en_stable-2.0.0.tar.gz",
         paddlenlp=("ernie_v2_large/ernie_v2_eng_large.pdparams", "ernie_v2_large/vocab.txt"),
         hf="nghuyong/ernie-2.0-large-en"),
    dict(name="ernie-2.0-base-zh", language="zh", layers=12, hidden=768, heads=12, vocab_size=18000,
         activation="relu", positions=513, sentence_types=4, intermediate=3072,
         summary="ERNIE 2.0 base, Chinese (released later, via wenxin/PaddleNLP)",
         paddlenlp=("ernie_2.0/ernie_2.0_base_zh.pdparams",
                    "ernie_2.0/ernie_2.0_base_zh_vocab.txt"),
         wenxin="ernie_2.0_base_ch_open.tgz", hf="nghuyong/ernie-2.0-base-zh"),
    dict(name="ernie-2.0-large-zh", language="zh", layers=24, hidden=1024, heads=16, vocab_size=12800,
         activation="relu", positions=512, sentence_types=4, intermediate=4096,
         summary="ERNIE 2.0 large, Chinese (released later, via wenxin/PaddleNLP)",
         paddlenlp=("ernie_2.0/ernie_2.0_large_zh.pdparams",
                    "ernie_2.0/ernie_2.0_large_zh_vocab.txt"),
         wenxin="ernie_2.0_large_ch_open.tgz"),
]


def _released(row: dict[str, Any]) -> ModelInfo:
    row = dict(row)
    published = {k: row.pop(k) for k in ("dygraph", "static", "paddlenlp", "wenxin", "hf")
                 if k in row}
    sources: list[Source] = []
    if "dygraph" in published:
        sources.append(ArchiveSource(Download(_BCE_DY + published["dygraph"])))
    if "static" in published:
        sources.append(ArchiveSource(Download(published["static"])))
    if "paddlenlp" in published:
        weights, vocab_file = published["paddlenlp"]
        sources.append(FilesSource(
            (("model_state.pdparams", Download(_NLP + weights)),
             ("vocab.txt", Download(_NLP + vocab_file))),
            config=_paddlenlp_config(row)))
    if "wenxin" in published:
        sources.append(ArchiveSource(Download(_WENXIN + published["wenxin"])))
    if "hf" in published:
        sources.append(HubSource(published["hf"]))
    return ModelInfo(**row, sources=tuple(sources))


_REGISTRY: dict[str, ModelInfo] = {}
_REGISTRY_LOCK = threading.Lock()
_ENV_CACHE: dict[str, Any] = {}


def register(info: ModelInfo) -> ModelInfo | None:
    """Add `info` to the table (replacing an entry of that name); returns what it replaced."""
    with _REGISTRY_LOCK:
        old = _REGISTRY.get(info.name)
        _REGISTRY[info.name] = info
    return old


def unregister(name: str) -> ModelInfo | None:
    with _REGISTRY_LOCK:
        return _REGISTRY.pop(name, None)


@contextlib.contextmanager
def registered(*infos: ModelInfo) -> Iterator[None]:
    """Entries present only inside the `with` block (earlier entries of those names come back)."""
    old = [(i.name, register(i)) for i in infos]
    try:
        yield
    finally:
        for name, previous in reversed(old):
            if previous is None:
                unregister(name)
            else:
                register(previous)


def _env_models() -> dict[str, ModelInfo]:
    path = os.environ.get(ENV_REGISTRY)
    if not path:
        return {}
    p = Path(path).expanduser()
    try:
        key = (str(p), p.stat().st_mtime_ns)
    except FileNotFoundError:
        raise FileNotFoundError(f"{ENV_REGISTRY}={path}: no such file") from None
    if _ENV_CACHE.get("key") != key:
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p} ({ENV_REGISTRY}): not a JSON file ({exc})") from None
        entries = raw.get("models") if isinstance(raw, dict) else raw
        if not isinstance(entries, list):
            raise ValueError(f"{p} ({ENV_REGISTRY}): expected {{\"models\": [...]}} or a list")
        models = {}
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                raise ValueError(f"{p} ({ENV_REGISTRY}) entry {i}: expected an object")
            info = ModelInfo.from_dict(e, f"{p} ({ENV_REGISTRY}) entry {i}")
            models[info.name] = info
        _ENV_CACHE.update(key=key, models=models)
    return dict(_ENV_CACHE["models"])


def known_models() -> dict[str, ModelInfo]:
    """The table: built-in entries, then `register()`ed ones, then those of $ERNIE2_REGISTRY."""
    with _REGISTRY_LOCK:
        table = dict(_REGISTRY)
    table.update(_env_models())
    return table


def get_model(name: str) -> ModelInfo:
    table = known_models()
    if name in table:
        return table[name]
    low = name.lower()
    for info in table.values():
        if low == info.name.lower() or low in (a.lower() for a in info.aliases):
            return info
    raise UnknownModelError(
        f"{name!r} is neither an existing file or directory nor a known model name. Known names: "
        f"{', '.join(sorted(table))}. Others can be added with ernie2.hub.register() or a "
        f"JSON file named by ${ENV_REGISTRY} (see docs/models.md).")


def iter_models() -> Iterable[ModelInfo]:
    return sorted(known_models().values(), key=lambda i: i.name)


for _row in _RELEASED:
    register(_released(_row))
