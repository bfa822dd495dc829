"""Pre-training pays, at a small size: a model pre-trained with the continual ERNIE 2.0 plan
(knowledge masking, then sentence reordering and distance joining it) on an unlabeled in-domain
corpus fine-tunes better than the same model from random initialization, with few labels.

The corpus is made so that the gain has one clear source. Every document is about one of two
topics and draws its content words from that topic's 60 words. The labeled task classifies a
short text by topic, but its 24 training texts use only 8 words of each topic, and the test texts
only the other 52. From random initialization the unseen words' embeddings carry no topic, so
the fine-tuned model is near chance on test. Knowledge masking on the corpus learns which words
share contexts, so the pre-trained embeddings of the unseen words lie with their topic's seen
words, and the fine-tuned model carries the label over to them. A pre-training that learned
nothing, or that the sentence-level stage undid, fails this test. Each seed pre-trains its own
model: the test must pass for every one.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from ernie2.finetune import FinetuneSettings, TaskOptions, finetune
from ernie2.model import ErnieConfig, ErnieModel
from ernie2.training import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

TOPIC_WORDS = 16
SEEN = 4  # words of each topic that the labeled training texts use
COMMON = 8


def topic_word(topic: int, i: int) -> str:
    return f"{'ab'[topic]}{i}"


def sentence(rng: random.Random, topic: int, words: range) -> str:
    out = []
    for _ in range(rng.randint(6, 10)):
        out.append(topic_word(topic, rng.choice(words)) if rng.random() < 0.8
                   else f"c{rng.randrange(COMMON)}")
    return " ".join(out) + " ."


def write_data(root: Path) -> None:
    rng = random.Random(0)
    docs = []
    for d in range(400):
        topic = d % 2
        paras = [[{"text": sentence(rng, topic, range(TOPIC_WORDS))}
                  for _ in range(rng.randint(3, 5))] for _ in range(2)]
        docs.append({"lang": "en", "paragraphs": paras})
    import json
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    words = [topic_word(t, i) for t in (0, 1) for i in range(TOPIC_WORDS)]
    words += [f"c{k}" for k in range(COMMON)]
    (root / "vocab.txt").write_text("\n".join(
        ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "."] + words) + "\n")
    task = root / "topic"
    task.mkdir()
    for split, n, vocab in (("train", 24, range(SEEN)), ("dev", 100, range(SEEN, TOPIC_WORDS)),
                            ("test", 200, range(SEEN, TOPIC_WORDS))):
        rows = ["text_a\tlabel"]
        for k in range(n):
            topic = k % 2
            rows.append(f"{sentence(rng, topic, vocab)}\t{topic}")
        (task / f"{split}.tsv").write_text("\n".join(rows) + "\n")


def plan(root: Path, seed: int) -> dict:
    return {
        "seed": seed, "data_dir": str(root), "output_dir": str(root / f"run{seed}"),
        "model": {"size": "test", "vocab": "vocab.txt", "max_len": 48,
                  "overrides": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}},
        "corpora": [{"name": "topics", "path": "corpus.jsonl", "format": "jsonl", "lang": "en",
                     "options": {"annotate": False}}],
        "train": {"batch_size": 32, "lr": 3e-3, "warmup_ratio": 0.1, "precision": "fp32"},
        "checkpoint": {"every": 0, "keep": 1, "stage_models": False},
        "log": {"every": 1000, "progress": False, "tensorboard": "off", "peak_tflops": 1.0},
        "eval": {"examples": 32, "heldout": 0.05},
        "stages": [
            {"name": "words", "steps": 150, "tasks": [{"task": "knowledge_masking"}]},
            {"name": "structure", "steps": 80,
             "tasks": [{"task": "sentence_reordering", "options": {"m": 2, "pooling": "cls"}},
                       {"task": "sentence_distance", "options": {"pooling": "cls"}}]},
        ],
    }


def fine_tune(root: Path, model: Path, seed: int) -> float:
    r = finetune(FinetuneSettings(
        task="classify", data_dir=str(root / "topic"), from_pretrained=str(model),
        output_dir=str(root / f"ft_{model.parent.name}_{seed}"), batch_size=8,
        learning_rate=3e-3, max_steps=60, eval_every=15, seed=seed, precision="fp32",
        progress=False, tensorboard="off", options=TaskOptions(max_len=16)))
    return r.test_scores["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pretrained_model_beats_random_initialization(tmp_path, seed):
    write_data(tmp_path)
    result = pretrain(plan(tmp_path, seed))
    assert result.completed and result.final_model is not None
    torch.manual_seed(seed)
    random_dir = tmp_path / "random" / "model"
    ErnieModel(ErnieConfig.from_file(result.final_model / "config.json")).save_pretrained(
        random_dir, tmp_path / "vocab.txt")
    pre = fine_tune(tmp_path, result.final_model, seed)
    rnd = fine_tune(tmp_path, random_dir, seed)
    # 200 test texts: a standard error of about 0.035 near 0.5
    assert rnd < 0.75, ("random initialization should not carry the label to unseen words", rnd)
    assert pre > rnd + 0.15, (pre, rnd)


# ------------------------------------------------------------------ sentiment masking alone
# Reviews of two polarities: each sentence holds opinion words of the lexicon (p*, n*) and
# context words of its polarity's pool (a* positive, b* negative), with common words between.
# The labeled task sees no opinion word at all, and its training texts only 4 context words of
# each pool: from random initialization the 12 unseen ones carry nothing. Sentiment masking asks
# the polarity of a masked opinion word from its context, so every context word of a pool learns
# to push the same way, the unseen ones too.
POLAR = 4  # opinion words per polarity
POOL = 16  # context words per polarity


def polar_sentence(rng: random.Random, polarity: int, pool: range, opinions: bool) -> list[str]:
    out = []
    for _ in range(rng.randint(6, 10)):
        r = rng.random()
        if opinions and r < 0.3:
            out.append(f"{'np'[polarity]}{rng.randrange(POLAR)}")
        elif r < 0.7:
            out.append(f"{'ba'[polarity]}{rng.choice(pool)}")
        else:
            out.append(f"c{rng.randrange(COMMON)}")
    return out


def write_polar_data(root: Path) -> None:
    import json

    rng = random.Random(0)
    docs = []
    for d in range(400):
        polarity = d % 2
        sents = []
        for _ in range(rng.randint(1, 3)):
            words = polar_sentence(rng, polarity, range(POOL), True)
            sents.append({"text": " ".join(words), "words": words})
        docs.append({"lang": "en", "paragraphs": [sents]})
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (root / "lexicon.tsv").write_text("".join(f"{'np'[p]}{i}\t{p}\n" for p in (0, 1)
                                              for i in range(POLAR)))
    words = [f"{c}{i}" for c in "pn" for i in range(POLAR)]
    words += [f"{c}{i}" for c in "ab" for i in range(POOL)] + [f"c{k}" for k in range(COMMON)]
    (root / "vocab.txt").write_text("\n".join(
        ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "."] + words) + "\n")
    task = root / "topic"
    task.mkdir()
    for split, n, pool in (("train", 24, range(SEEN)), ("dev", 100, range(SEEN, POOL)),
                           ("test", 200, range(SEEN, POOL))):
        rows = ["text_a\tlabel"]
        for k in range(n):
            rows.append(f"{' '.join(polar_sentence(rng, k % 2, pool, False))}\t{k % 2}")
        (task / f"{split}.tsv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sentiment_masking_carries_polarity_to_unseen_words(tmp_path, seed):
    root = tmp_path / "polar"
    write_polar_data(root)
    config = plan(root, seed)
    config["corpora"][0]["name"] = "reviews"
    config["stages"] = [{"name": "sentiment", "steps": 150, "tasks": [{
        "task": "sentiment_masking", "options": {"lexicon": "lexicon.tsv", "lang": "en"}}]}]
    result = pretrain(config)
    assert result.completed and result.final_model is not None
    torch.manual_seed(seed)
    random_dir = root / "random" / "model"
    ErnieModel(ErnieConfig.from_file(result.final_model / "config.json")).save_pretrained(
        random_dir, root / "vocab.txt")
    pre = fine_tune(root, result.final_model, seed)
    rnd = fine_tune(root, random_dir, seed)
    assert rnd < 0.75, ("random initialization should not carry the label to unseen words", rnd)
    assert pre > rnd + 0.15, (pre, rnd)
