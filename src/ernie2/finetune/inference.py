"""Using models: batch prediction with a fine-tuned model, embeddings (encode), and the masked-LM
cloze test (fill_mask).

Token embeddings of texts of different lengths are stored flat, as ERNIE's encoder tool stored
them (padding removed): `top_layer_emb.npy` is [total tokens, hidden], and
`top_layer_offsets.npy` ([N + 1], int64) says text i owns rows offsets[i]:offsets[i + 1]
(its [CLS] ... [SEP] tokens). `cls_emb.npy` is [N, hidden], the [CLS] position of the top layer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ernie2.finetune.batching import collate, to_device
from ernie2.finetune.model import FinetuneModel
from ernie2.finetune.readers import DataError, read_text_tsv, strip_cjk_spaces
from ernie2.model.checkpoint import assign, load_encoder, read_checkpoint
from ernie2.model.heads import MaskedLMHead
from ernie2.model.modeling import ErnieModel
from ernie2.tokenizer import ErnieTokenizer
from ernie2.tokenizer.batching import length_batches
from ernie2.utils import atomic_open, plural

logger = logging.getLogger(__name__)


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's tensors live (CPU for one that holds none, such as an ONNX runner)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def _sorted_batches(features: Sequence[dict], batch_size: int):
    return length_batches([len(f["input_ids"]) for f in features], batch_size)


# ---------------------------------------------------------------------- running a model
def _outputs(model: FinetuneModel, features: Sequence[dict], batch_size: int, pad_id: int):
    """(feature indices, model outputs, batch) of length-sorted batches, in eval mode and
    without autograd; the model's mode is restored afterwards."""
    device = module_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in _sorted_batches(features, batch_size):
                batch = to_device(collate([features[i] for i in idx], pad_id), device)
                yield idx, model(batch), batch
    finally:
        model.train(was_training)


def run_model(model: FinetuneModel, features: Sequence[dict], batch_size: int = 32,
              pad_id: int = 0) -> list:
    """The task type's per-feature results, in feature order, from length-sorted batches."""
    results: list = [None] * len(features)
    for idx, out, batch in _outputs(model, features, batch_size, pad_id):
        for i, r in zip(idx, model.task.infer(model.head, out, batch)):
            results[i] = r
    return results


def unknown_labels(example, labels) -> list[str]:
    """The labels (classes or tags) of an example that are not in the label set."""
    if labels is None:
        return []
    if hasattr(example, "tokens"):
        return [t for t in example.labels or () if t not in labels]
    label = getattr(example, "label", None)
    return [str(label)] if label is not None and str(label) not in labels else []


def scorable(examples: Sequence, labels) -> list[int]:
    """Indices of the examples whose labels the model knows: the ones that can be scored."""
    return [i for i, ex in enumerate(examples) if not unknown_labels(ex, labels)]


def _drop_unknown_labels(examples: Sequence, labels) -> list:
    """Predicting needs no labels: when some example has a label unseen in training, all are
    predicted with their labels dropped (a batch is all labeled or not), and a warning says how
    many and which."""
    seen: dict[str, int] = {}
    for ex in examples:
        for b in unknown_labels(ex, labels):
            seen[b] = seen.get(b, 0) + 1
    if not seen:
        return list(examples)
    shown = ", ".join(f"{lab!r} ({n}x)" for lab, n in list(seen.items())[:10])
    where = next(ex.source for ex in examples if unknown_labels(ex, labels))
    n = len(examples) - len(scorable(examples, labels))
    logger.warning("%s: %s with labels the model was not trained on (%s): predicted, and left "
                   "out of any score", where.rsplit(":", 1)[0], plural(n, "example"), shown)
    out = [dataclasses.replace(ex, **{"labels" if hasattr(ex, "tokens") else "label": None})
           for ex in examples]
    return out


def predict_examples(model: FinetuneModel, tokenizer: ErnieTokenizer, examples: Sequence,
                     batch_size: int = 32) -> tuple[list[dict], list[dict]]:
    """(predictions, features) for examples read by the model's task type (labels unseen in
    training are dropped with a warning)."""
    task = model.task
    examples = _drop_unknown_labels(examples, model.labels)
    features = task.encode(examples, tokenizer, model.labels, model.options)
    results = run_model(model, features, batch_size, tokenizer.pad_id)
    return task.decode(examples, features, results, model.labels, model.options), features


def evaluate(model: FinetuneModel, tokenizer: ErnieTokenizer, examples: Sequence,
             batch_size: int = 32) -> tuple[dict[str, float], list[dict]]:
    """(scores, predictions) of labeled examples. The scores are the task type's metrics plus
    `loss`, the training loss over the examples (averaged over the same units), computed in
    the same pass."""
    task = model.task
    features = task.encode(examples, tokenizer, model.labels, model.options)
    results: list = [None] * len(features)
    loss_sum = units = 0.0
    for idx, out, batch in _outputs(model, features, batch_size, tokenizer.pad_id):
        for i, r in zip(idx, task.infer(model.head, out, batch)):
            results[i] = r
        n = float(task.units(batch, model.options))
        if n:
            loss_sum += float(task.loss(model.head, out, batch)) * n
            units += n
    preds = task.decode(examples, features, results, model.labels, model.options)
    scores = task.score(examples, preds, model.labels, model.options)
    return {**scores, "loss": loss_sum / units if units else float("nan")}, preds


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


# ---------------------------------------------------------------------- embeddings
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
        for idx in _sorted_batches(features, batch_size):
            batch = to_device(collate([features[i] for i in idx], tokenizer.pad_id), device)
            task_ids = (torch.full((len(idx),), task_id, dtype=torch.long, device=device)
                        if model.config.use_task_id else None)
            _, encoded = model(batch["input_ids"], batch["sent_ids"], task_ids,
                               batch["attention_mask"])
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


# ---------------------------------------------------------------------- cloze test
MASK = "[MASK]"


@dataclass
class FillMask:
    text: str  # the input with each [MASK] replaced by its best token
    candidates: list[list[tuple[str, float]]]  # per [MASK]: (token, probability), best first


MLM_TENSORS = frozenset({"dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias",
                         "bias"})


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
    fits = [h for h in heads if set(ckpt.heads(h)) == MLM_TENSORS
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


__all__ = ["Embeddings", "FillMask", "encode", "encode_file", "evaluate", "fill_mask",
           "find_mlm_head", "load_encoder_and_tokenizer", "load_mlm", "module_device", "predict",
           "predict_examples", "read_texts", "run_model", "write_embeddings"]
