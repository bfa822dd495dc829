"""Embeddings of texts from any checkpoint's encoder: the [CLS] and per-token top layer, and the
encoder tool's files.

Token embeddings of texts of different lengths are stored flat, as ERNIE's encoder tool stored
them (padding removed): `top_layer_emb.npy` is [total tokens, hidden], and
`top_layer_offsets.npy` ([N + 1], int64) says text i owns rows offsets[i]:offsets[i + 1]
(its [CLS] ... [SEP] tokens). `cls_emb.npy` is [N, hidden], the [CLS] position of the top layer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ernie2.finetune.evaluate import sorted_batches
from ernie2.finetune.readers import DataError, read_text_tsv, strip_cjk_spaces
from ernie2.model.batch import collate, module_device, run_encoder, to_device
from ernie2.model.modeling import ErnieModel
from ernie2.tokenizer import ErnieTokenizer
from ernie2.utils import atomic_open


@dataclass
class Embeddings:
    cls: np.ndarray  # [N, H]
    tokens: np.ndarray  # [total tokens, H], text i at rows offsets[i]:offsets[i + 1]
    offsets: np.ndarray  # [N + 1] int64

    def __len__(self) -> int:
        return len(self.cls)

    def token_embeddings(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """([N, max_len, H] zero-padded, lengths [N])."""
        lengths = np.diff(self.offsets)
        out = np.zeros((len(lengths), int(lengths.max(initial=0)), self.tokens.shape[1]),
                       dtype=self.tokens.dtype)
        for i, n in enumerate(lengths):
            out[i, :n] = self.token_embeddings(i)
        return out, lengths


def load_encoder_and_tokenizer(path: str | os.PathLike, device: str = "cpu",
                               **overrides: Any) -> tuple[ErnieModel, ErnieTokenizer]:
    """An encoder from any checkpoint (pre-trained or fine-tuned; heads are ignored) and the
    tokenizer of the vocab.txt beside it."""
    model = ErnieModel.from_pretrained(path, **overrides).to(device).eval()
    return model, ErnieTokenizer.from_pretrained(path)


def encode(model: ErnieModel, tokenizer: ErnieTokenizer, texts_a: Sequence[str],
           texts_b: Sequence[str] | None = None, max_len: int = 128, batch_size: int = 32,
           task_id: int = 0) -> Embeddings:
    """[CLS] and per-token top-layer embeddings (float32) of texts or pairs, in input order."""
    encs = tokenizer.encode_batch(list(texts_a), None if texts_b is None else list(texts_b),
                                  max_len)
    features = [{"input_ids": e.input_ids, "sent_ids": e.sent_ids} for e in encs]
    lengths = np.array([len(e) for e in encs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    h = model.config.hidden_size
    cls = np.zeros((len(encs), h), dtype=np.float32)
    tokens = np.zeros((int(offsets[-1]), h), dtype=np.float32)
    device = module_device(model)
    with torch.inference_mode():
        for idx in sorted_batches(features, batch_size):
            batch = to_device(collate([features[i] for i in idx], tokenizer.pad_id), device)
            task_ids = (torch.full((len(idx),), task_id, dtype=torch.long, device=device)
                        if model.config.use_task_id else None)
            _, encoded = run_encoder(model, batch, task_ids)
            encoded = encoded.float().cpu().numpy()
            for row, i in enumerate(idx):
                cls[i] = encoded[row, 0]
                tokens[offsets[i]:offsets[i + 1]] = encoded[row, :lengths[i]]
    return Embeddings(cls, tokens, offsets)


def write_embeddings(emb: Embeddings, out_dir: str | os.PathLike) -> dict[str, Path]:
    """cls_emb.npy, top_layer_emb.npy and top_layer_offsets.npy in `out_dir`."""
    out_dir = Path(out_dir)
    paths = {"cls": out_dir / "cls_emb.npy", "tokens": out_dir / "top_layer_emb.npy",
             "offsets": out_dir / "top_layer_offsets.npy"}
    for key, arr in (("cls", emb.cls), ("tokens", emb.tokens), ("offsets", emb.offsets)):
        with atomic_open(paths[key], "wb") as fh:
            np.save(fh, arr)
    return paths


def read_texts(path: str | os.PathLike, for_cn: bool = False
               ) -> tuple[list[str], list[str] | None]:
    """(texts_a, texts_b or None) of an input file: a `.tsv` with a header naming `text_a`
    (and `text_b`), or any other text file with one text per line."""
    path = Path(path)
    if path.suffix == ".tsv":
        examples = read_text_tsv(path, pair=None, need_label=False, for_cn=for_cn)
        texts_b = [ex.text_b for ex in examples] if examples[0].text_b is not None else None
        return [ex.text_a for ex in examples], texts_b
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: no texts")
    texts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(f"{path}:{n}: empty line; every line is one text")
        texts.append(strip_cjk_spaces(line) if for_cn else line)
    return texts, None


def encode_file(model_path: str | os.PathLike, data_file: str | os.PathLike,
                out_dir: str | os.PathLike, max_len: int = 128, batch_size: int = 32,
                for_cn: bool = False, device: str = "cpu", num_layers: int | None = None,
                task_id: int = 0) -> Embeddings:
    """The encoder tool: texts in (`read_texts`: a TSV with text_a and maybe text_b, or one
    text a line), cls_emb.npy, top_layer_emb.npy and top_layer_offsets.npy out."""
    overrides = {"num_hidden_layers": num_layers} if num_layers else {}
    model, tokenizer = load_encoder_and_tokenizer(model_path, device, **overrides)
    texts_a, texts_b = read_texts(data_file, for_cn)
    emb = encode(model, tokenizer, texts_a, texts_b, max_len, batch_size, task_id)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_embeddings(emb, out_dir)
    return emb
