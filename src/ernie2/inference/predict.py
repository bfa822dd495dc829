"""Predicting with a fine-tuned model directory on a data file or on examples."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ernie2.finetune.evaluate import predict_examples
from ernie2.finetune.model import FinetuneModel
from ernie2.tokenizer import ErnieTokenizer


def predict(model_dir: str | os.PathLike, data: str | os.PathLike | Sequence[Any],
            batch_size: int = 32, device: str = "cpu",
            out_file: str | os.PathLike | None = None) -> list[dict]:
    """Predict with a fine-tuned model directory on a data file (the task's own format; labels
    not needed) or on examples (`readers.TextExample` / `TaggedExample` / `MrcExample`; plain
    Python values become examples with `ernie2.inference.inputs.to_examples`). Classes come
    with probabilities, NER with one tag per token, reading comprehension with character
    spans. `out_file` writes the task's test_out.tsv format (and predictions.json beside it for
    reading comprehension).
    """
    model = FinetuneModel.load(model_dir, device)
    tokenizer = ErnieTokenizer.from_pretrained(model_dir)
    if isinstance(data, (str, os.PathLike)):
        examples = model.task.read(data, model.options, False)
    else:
        examples = list(data)
    preds, _ = predict_examples(model, tokenizer, examples, batch_size)
    if out_file is not None:
        model.task.write(examples, preds, model.labels, Path(out_file))
    return preds
