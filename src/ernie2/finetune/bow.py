"""The bag-of-words student of distillation (as ERNIE Slim's): word embeddings summed, softsign, one
tanh layer, a linear classifier. Words come from jieba (characters without it); "[MASK]" stays one
word. Saved as a directory: bow.safetensors, words.txt and student.json."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ernie2.finetune.augment import MASK
from ernie2.utils import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

FORMAT = "ernie2-bow-student"
SPECIAL_WORDS = ("[PAD]", "[UNK]", MASK)


def segment(text: str, segmenter: str = "jieba") -> list[str]:
    """Words of a text (no whitespace words); the literal "[MASK]" is one word."""
    if segmenter == "jieba":
        try:
            import jieba
        except ImportError:
            raise ValueError("this student segments words with jieba: pip install jieba") \
                from None
        jieba.setLogLevel(logging.WARNING)
        cut = jieba.lcut
    elif segmenter == "chars":
        cut = list
    else:
        raise ValueError(f"unknown segmenter {segmenter!r} (jieba or chars)")
    words: list[str] = []
    for k, part in enumerate(text.split(MASK)):
        if k:
            words.append(MASK)
        words += [w for w in cut(part) if w.strip()]
    return words


def default_segmenter() -> str:
    try:
        import jieba  # noqa: F401
        return "jieba"
    except ImportError:
        return "chars"


def build_words(segmented: Iterable[Sequence[str]], max_size: int = 50_000,
                min_count: int = 1) -> list[str]:
    counts = Counter(w for words in segmented for w in words if w not in SPECIAL_WORDS)
    kept = [w for w, c in counts.most_common(max_size - len(SPECIAL_WORDS)) if c >= min_count]
    return [*SPECIAL_WORDS, *kept]


class BowClassifier(nn.Module):
    """`logits = model(word_ids, offsets)`: the EmbeddingBag layout (all texts' word ids in one
    flat tensor, `offsets[i]` where text i starts)."""

    def __init__(self, words: Sequence[str], labels: Sequence[str], emb_size: int = 128,
                 hidden_size: int = 128, segmenter: str = "jieba"):
        super().__init__()
        self.words, self.labels = list(words), [str(x) for x in labels]
        self.index = {w: i for i, w in enumerate(self.words)}
        self.segmenter = segmenter
        self.embedding = nn.EmbeddingBag(len(self.words), emb_size, mode="sum", padding_idx=0)
        self.hidden = nn.Linear(emb_size, hidden_size)
        self.classifier = nn.Linear(hidden_size, len(self.labels))
        for m in (self.embedding, self.hidden, self.classifier):
            nn.init.normal_(m.weight, 0.0, 0.02)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, word_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        h = F.softsign(self.embedding(word_ids, offsets))
        return self.classifier(torch.tanh(self.hidden(h)))

    # ------------------------------------------------------------------ texts in, labels out
    def ids(self, words: Sequence[str]) -> list[int]:
        unk = self.index["[UNK]"]
        return [self.index.get(w, unk) for w in words] or [unk]

    def batch(self, segmented: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [self.ids(w) for w in segmented]
        lengths = torch.tensor([0] + [len(x) for x in ids[:-1]])
        return torch.tensor([i for x in ids for i in x]), lengths.cumsum(0)

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[dict]:
        """Classify predictions ({"label", "probs"}) as the fine-tuned models give them."""
        self.eval()
        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                segmented = [segment(t, self.segmenter) for t in texts[s:s + batch_size]]
                probs = torch.softmax(self(*self.batch(segmented)), -1).numpy()
                out += [{"label": self.labels[int(p.argmax())],
                         "probs": {lab: float(v) for lab, v in zip(self.labels, p)}}
                        for p in probs]
        return out

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save as st_save

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path / "bow.safetensors", st_save(
            {k: v.contiguous() for k, v in self.state_dict().items()}))
        atomic_write_text(path / "words.txt", "\n".join(self.words) + "\n")
        atomic_write_text(path / "student.json", json.dumps(
            {"format": FORMAT, "labels": self.labels, "emb_size": self.embedding.embedding_dim,
             "hidden_size": self.hidden.out_features, "segmenter": self.segmenter},
            ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> BowClassifier:
        from safetensors.torch import load_file

        path = Path(path)
        meta_file = path / "student.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path}: no student.json; not a bag-of-words student")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_file}: format {meta.get('format')!r}, expected {FORMAT!r}")
        words = (path / "words.txt").read_text(encoding="utf-8").split("\n")[:-1]
        model = cls(words, meta["labels"], meta["emb_size"], meta["hidden_size"],
                    meta["segmenter"])
        state = load_file(str(path / "bow.safetensors"))
        model.load_state_dict(state)
        return model.eval()


__all__ = ["BowClassifier", "build_words", "default_segmenter", "segment"]
