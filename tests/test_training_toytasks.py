"""Small pre-training tasks and a synthetic corpus for the trainer's tests (the real tasks live in
ernie2.tasks; these touch the trainer only through the task protocol).

The corpus makes every task learnable in a few dozen steps: a sentence is a run of consecutive
numbered words ("w7 w8 w9 w10"), and a document's next sentence continues where the previous one
stopped, so a masked word is predictable from its neighbours and two sentences in the wrong order
are visible at their boundary.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F

from ernie2.model.heads import IGNORE_INDEX, MaskedLMHead, SequenceHead, TokenHead
from ernie2.tasks.protocol import Example

N_WORDS = 40
HERE = Path(__file__).resolve()


def spec(cls_name: str) -> str:
    """The 'file.py:Class' spec of a task class of this file."""
    return f"{HERE}:{cls_name}"


def write_corpus(directory: Path, n_docs: int = 120, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        n = rng.randrange(N_WORDS)
        sents = []
        for _ in range(rng.randint(3, 6)):
            k = rng.randint(3, 7)
            sents.append(" ".join(f"w{(n + i) % N_WORDS}" for i in range(k)) + " .")
            n = (n + k) % N_WORDS
        docs.append("\n".join(sents))
    corpus = directory / "corpus.txt"
    corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "."]
                               + [f"w{i}" for i in range(N_WORDS)]) + "\n", encoding="utf-8")
    return corpus, vocab


class _Base:
    def __init__(self, tokenizer, max_len: int = 64, task_id: int = 0, **options):
        self.tok = tokenizer
        self.max_len = max_len
        self.task_id = task_id
        self.options = options

    def _ids(self, text: str) -> list[int]:
        return self.tok.convert_tokens_to_ids(self.tok.tokenize(text))


class ToyMLM(_Base):
    """Mask 15% of the words of a few sentences; predict them (logits at masked positions only)."""

    name = "toy_mlm"
    kind = "token"
    description = "masked words"

    @property
    def num_classes(self) -> int:
        return self.tok.vocab_size

    def build(self, doc, rng):
        ids: list[int] = []
        for s in doc.sentences:
            ids += self._ids(s.text)
        ids = ids[: self.max_len - 2]
        if len(ids) < 4:
            return None
        labels = [IGNORE_INDEX] * len(ids)
        k = max(1, round(0.15 * len(ids)))
        for i in rng.sample(range(len(ids)), k):
            labels[i] = ids[i]
            ids[i] = self.tok.mask_id
        return Example(self.name, [self.tok.cls_id, *ids, self.tok.sep_id], [0] * (len(ids) + 2),
                       [IGNORE_INDEX, *labels, IGNORE_INDEX], self.task_id)

    def make_head(self, config, encoder):
        return MaskedLMHead(config, encoder.embeddings.word_embeddings)

    def compute(self, head, pooled, encoded, batch):
        labels = batch["labels"]
        where = labels != IGNORE_INDEX
        logits = head(encoded, where)
        target = labels[where]
        loss = F.cross_entropy(logits.float(), target)
        return loss, {"correct": int((logits.argmax(-1) == target).sum()), "count": len(target)}


class ToyOrder(_Base):
    """Two adjacent sentences, swapped half of the time: are they in order?"""

    name = "toy_order"
    kind = "sequence"
    num_classes = 2
    description = "sentence order"

    def build(self, doc, rng):
        sents = doc.sentences
        if len(sents) < 2:
            return None
        i = rng.randrange(len(sents) - 1)
        a, b = self._ids(sents[i].text), self._ids(sents[i + 1].text)
        label = rng.random() < 0.5
        if label:
            a, b = b, a
        half = (self.max_len - 3) // 2
        a, b = a[:half], b[:half]
        ids = [self.tok.cls_id, *a, self.tok.sep_id, *b, self.tok.sep_id]
        sent = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        return Example(self.name, ids, sent, int(label), self.task_id)

    def make_head(self, config, encoder):
        return SequenceHead(config.hidden_size, 2, 0.0)

    def compute(self, head, pooled, encoded, batch):
        logits = head(pooled).float()
        labels = batch["labels"]
        loss = F.cross_entropy(logits, labels)
        return loss, {"correct": int((logits.argmax(-1) == labels).sum()), "count": len(labels)}


class ToyEven(_Base):
    """Per token: is the word's number even? (a token task without a vocab-sized output)"""

    name = "toy_even"
    kind = "token"
    num_classes = 2
    description = "even words"

    def build(self, doc, rng):
        s = doc.sentences[rng.randrange(len(doc.sentences))]
        toks = self.tok.tokenize(s.text)[: self.max_len - 2]
        labels = [int(t[1:]) % 2 if t.startswith("w") else IGNORE_INDEX for t in toks]
        ids = self.tok.convert_tokens_to_ids(toks)
        return Example(self.name, [self.tok.cls_id, *ids, self.tok.sep_id], [0] * (len(ids) + 2),
                       [IGNORE_INDEX, *labels, IGNORE_INDEX], self.task_id)

    def make_head(self, config, encoder):
        return TokenHead(config.hidden_size, 2, 0.0)

    def compute(self, head, pooled, encoded, batch):
        labels = batch["labels"]
        where = labels != IGNORE_INDEX
        logits = head(encoded[where]).float()
        loss = F.cross_entropy(logits, labels[where])
        return loss, {"correct": int((logits.argmax(-1) == labels[where]).sum()),
                      "count": int(where.sum())}


def base_config(tmp: Path, **changes) -> dict:
    """A tiny continual run over the synthetic corpus: 3 stages, 3 tasks, fp32, no dropout."""
    corpus, vocab = write_corpus(tmp)
    cfg = {
        "seed": 3,
        "data_dir": str(tmp),
        "output_dir": str(tmp / "run"),
        "model": {"size": "test", "vocab": "vocab.txt", "max_len": 48,
                  "overrides": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}},
        "corpora": [{"name": "toy", "path": "corpus.txt", "format": "text", "lang": "en",
                     "options": {"annotate": False}}],
        "stages": [
            {"name": "words", "steps": 6, "tasks": [{"task": spec("ToyMLM"), "name": "mlm"}]},
            {"name": "order", "steps": 6, "tasks": [{"task": spec("ToyOrder"), "name": "order"}]},
            {"name": "even", "steps": 6, "tasks": [{"task": spec("ToyEven"), "name": "even"}]},
        ],
        "train": {"batch_size": 8, "micro_batch_size": 4, "lr": 1e-3, "precision": "fp32",
                  "warmup_steps": 2},
        "checkpoint": {"every": 4, "keep": 2},
        "log": {"every": 2, "progress": False, "peak_tflops": 1.0, "tensorboard": "off"},
        "eval": {"examples": 32, "batch_size": 16, "heldout": 0.15},
    }
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def test_toy_tasks_follow_the_protocol(tmp_path):
    from ernie2 import ErnieConfig, ErnieModel
    from ernie2.corpus.spec import iter_documents
    from ernie2.tasks.protocol import PretrainingTask, collate
    from ernie2.tasks.registry import create_task
    from ernie2.tokenizer import ErnieTokenizer

    corpus, vocab = write_corpus(tmp_path, n_docs=10)
    tok = ErnieTokenizer(vocab)
    docs = list(iter_documents({"path": str(corpus), "format": "text", "lang": "en",
                                "annotate": False}))
    assert len(docs) == 10
    model = ErnieModel(ErnieConfig.from_name("test", vocab_size=tok.vocab_size, use_task_id=True))
    for cls in ("ToyMLM", "ToyOrder", "ToyEven"):
        task = create_task(spec(cls), tokenizer=tok, max_len=32, task_id=1)
        assert isinstance(task, PretrainingTask)
        exs = [task.build(d, random.Random(i)) for i, d in enumerate(docs)]
        exs = [e for e in exs if e is not None]
        assert exs and all(e.task_id == 1 and len(e.input_ids) <= 32 for e in exs)
        batch = collate(exs, tok.pad_id)
        pooled, encoded = model(batch["input_ids"], batch["sent_ids"], batch["task_ids"],
                                batch["attention_mask"])
        head = task.make_head(model.config, model)
        loss, mets = task.compute(head, pooled, encoded, batch)
        loss.backward()
        assert torch.isfinite(loss) and 0 <= mets["correct"] <= mets["count"] > 0
        assert model.embeddings.word_embeddings.weight.grad is not None
