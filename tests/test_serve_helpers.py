"""Tiny model directories shared by the serving, export and distillation tests (no tests here)."""

from __future__ import annotations

from pathlib import Path

import torch

from ernie2 import ErnieConfig, ErnieModel
from ernie2.tokenizer import SPECIAL_TOKENS, write_vocab

CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789我爱北京天安门好的不很差这个东西质量太了") + \
    [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]


def write_vocab_file(path: Path) -> Path:
    write_vocab({t: i for i, t in enumerate([*SPECIAL_TOKENS, *CHARS])}, path)
    return path


def make_models(root: Path, use_task_id: bool = True, max_len: int = 24) -> dict[str, Path]:
    """encoder/, classify/ and ner/ model directories over one tiny random encoder."""
    from ernie2.finetune import FinetuneModel, Labels, TaskOptions, get_task_type

    root.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab_file(root / "vocab.txt")
    torch.manual_seed(0)
    cfg = ErnieConfig.from_name("test", vocab_size=len(SPECIAL_TOKENS) + len(CHARS),
                                use_task_id=use_task_id)
    enc = ErnieModel(cfg).eval()
    out = {"encoder": root / "encoder"}
    enc.save_pretrained(out["encoder"], vocab_file=vocab)
    for task, labels in (("classify", ["neg", "pos"]), ("ner", ["O", "B-LOC", "I-LOC"])):
        torch.manual_seed(1)
        ft = FinetuneModel(enc, get_task_type(task), Labels(labels), TaskOptions(max_len=max_len),
                           task_id=1 if use_task_id else 0)
        # Give the head a visible effect so label probabilities differ between texts.
        with torch.no_grad():
            for p in ft.head.parameters():
                p.normal_(0, 0.5)
        out[task] = root / task
        ft.save(out[task], vocab)
    return out
