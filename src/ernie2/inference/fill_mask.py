"""ERNIE's cloze test: each [MASK] of a text filled by a checkpoint's masked-LM head."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ernie2.model.batch import module_device
from ernie2.model.checkpoint import assign, load_encoder, read_checkpoint
from ernie2.model.heads import MaskedLMHead
from ernie2.model.modeling import ErnieModel
from ernie2.tokenizer import ErnieTokenizer


MASK = "[MASK]"


@dataclass
class FillMask:
    text: str  # the input with each [MASK] replaced by its best token
    candidates: list[list[tuple[str, float]]]  # per [MASK]: (token, probability), best first


MLM_TENSORS = frozenset({"dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias",
                         "bias"})
UNTIED_MLM_TENSORS = MLM_TENSORS | {"decoder.weight"}  # tie_word_embeddings = false


def find_mlm_head(ckpt, name: str | None = None) -> str:
    """The name of the checkpoint's masked-LM head: `name` if given, else `mlm`, else the one
    head whose tensors are a masked-LM head's (pre-training saves it under its task's name,
    such as `knowledge_masking`)."""
    heads = sorted({k[len("heads."):].split(".")[0] for k in ckpt.tensors
                    if k.startswith("heads.")})
    if name is not None:
        if name not in heads:
            raise ValueError(f"{ckpt.source}: no head {name!r} "
                             f"(heads: {', '.join(heads) or 'none'})")
        return name
    vocab = ckpt.config.vocab_size
    fits = [h for h in heads if set(ckpt.heads(h)) in (MLM_TENSORS, UNTIED_MLM_TENSORS)
            and tuple(ckpt.heads(h)["bias"].shape) == (vocab,)]
    if "mlm" in fits or len(fits) == 1:
        return "mlm" if "mlm" in fits else fits[0]
    if not fits:
        raise ValueError(f"{ckpt.source}: the checkpoint has no masked-LM head to fill masks "
                         f"with (heads: {', '.join(heads) or 'none'})")
    raise ValueError(f"{ckpt.source}: several masked-LM heads ({', '.join(fits)}); choose one "
                     "by name")


def load_mlm(path: str | os.PathLike, device: str = "cpu", head: str | None = None):
    """(encoder, masked-LM head, tokenizer) from a checkpoint that carries an MLM head (see
    `find_mlm_head`; `head` names it)."""
    ckpt = read_checkpoint(path)
    encoder = ErnieModel(ckpt.config)
    load_encoder(encoder, ckpt)
    mlm = MaskedLMHead(ckpt.config, encoder.embeddings.word_embeddings)
    name = find_mlm_head(ckpt, head)
    assign(mlm, ckpt.heads(name), str(ckpt.source))
    # The task-embedding row the head was trained with (pre-training records it).
    mlm.task_id = _pretraining_task_id(Path(path), name)
    return encoder.to(device).eval(), mlm.to(device).eval(), ErnieTokenizer.from_pretrained(path)


def _pretraining_task_id(path: Path, head: str) -> int:
    info = (path if path.is_dir() else path.parent) / "pretraining.json"
    if not info.is_file():
        return 0
    try:
        tasks = json.loads(info.read_text(encoding="utf-8")).get("tasks", {})
    except json.JSONDecodeError as exc:
        raise ValueError(f"{info}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    return int(tasks.get(head, {}).get("task_id", 0))


def fill_mask(model_path: str | os.PathLike, texts: Sequence[str], top_k: int = 5,
              max_len: int = 512, device: str = "cpu", loaded=None,
              head: str | None = None) -> list[FillMask]:
    """ERNIE's cloze test: each `[MASK]` in a text is predicted by the masked-LM head; several
    masks are predicted together in one pass. `loaded` reuses a `load_mlm(...)` result;
    `head` names the masked-LM head when the checkpoint has several."""
    encoder, head, tokenizer = loaded or load_mlm(model_path, device, head)
    out = []
    for n, text in enumerate(texts):
        parts = text.split(MASK)
        if len(parts) < 2:
            raise ValueError(f"text {n} has no {MASK}: {text!r}")
        ids = [tokenizer.cls_id]
        for k, part in enumerate(parts):
            if k:
                ids.append(tokenizer.mask_id)
            ids.extend(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(part)))
        ids.append(tokenizer.sep_id)
        if len(ids) > max_len:
            raise ValueError(f"text {n} is {len(ids)} tokens long, more than max_len {max_len}")
        input_ids = torch.tensor([ids], device=module_device(encoder))
        task_ids = None
        if encoder.config.use_task_id:
            task_ids = torch.tensor([getattr(head, "task_id", 0)], device=input_ids.device)
        with torch.inference_mode():
            _, encoded = encoder(input_ids, task_ids=task_ids)
            logits = head(encoded, input_ids == tokenizer.mask_id).float()
            # A mask stands for a word piece, never for padding or a marker token.
            logits[:, [tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id,
                       tokenizer.mask_id]] = -float("inf")
            probs = torch.softmax(logits, -1)
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        cands = [[(tok, float(p)) for tok, p in zip(tokenizer.convert_ids_to_tokens(i.tolist()),
                                                      pr.tolist())]
                 for pr, i in zip(top.values, top.indices)]
        filled = parts[0] + "".join(c[0][0].removeprefix("##") + p
                                    for c, p in zip(cands, parts[1:]))
        out.append(FillMask(filled, cands))
    return out
