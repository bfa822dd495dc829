"""The seven ERNIE 2.0 pre-training tasks, as registered (their real data builders and heads), trained
by the continual trainer in the demo's stage order at a small size: every task must beat chance on
its held-out examples at the end of the stage that introduces it, and still beat it at the end.

The demo corpora are too small, or need too many steps, for the sentence-level tasks to leave
chance within the suite's budget (docs/pretraining.md; tests/test_pretrain_demo.py runs the demo
itself end to end); this corpus is made so that every task's signal is strong. Each document has
a topic: a cycle of 12 words that its sentences walk through in order, continuing where the
previous sentence stopped, so that

- knowledge masking: a masked word (or the masked two-word phrase) follows from its neighbours;
- capitalization: sentence openings and the document's name are capitalized;
- token-document relation: the topic words recur across the document, the one-off filler words
  at sentence ends do not;
- sentence reordering: segments join where the cycle continues;
- sentence distance: the next sentence continues the cycle, a far one jumps within the topic, one
  of another document has another topic;
- discourse relation: a sentence opened by a marker of relation r ends with a cue word of r;
- IR relevance: the title holds the document's name and two topic words; the lead repeats the
  name, a related document shares the topic, an irrelevant one shares nothing.

The sentence-pair heads (sentence distance, discourse relation, IR relevance) read the two
segments' mean states compared (`pooling = "pair"`, as in the demo configs); sentence reordering,
three segments, reads the [CLS] state. Read through [CLS] alone, sentence distance and IR
relevance had to learn to compare the segments first, and whether they left chance within the
suite's budget depended on the seed (seeds 1 and 4 stayed at chance for 1000 steps); on the pair
features they leave it within their first stage on every seed tried (docs/pretraining.md).
The margins over chance at the stage end that this plan gave on seeds 1, 2 and 3 are in
docs/data.md (the smallest: knowledge masking +0.025, sentence reordering +0.115); every task
clears its threshold on every seed.
Every seed runs on one thread, so its numbers are the same on every run of the same build.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ernie2.training import pretrain

# one thread: the same numbers on every run on the same kind of machine and build
pytestmark = pytest.mark.usefixtures("one_thread")

TOPICS = ["ka", "lo", "mi", "nu", "pe", "qi", "ra", "su", "te", "vo", "wy", "xe"]
CYCLE = 12
MARKERS = ["However,", "Therefore,", "Moreover,", "For example,", "Later,", "In conclusion,"]
N_DOCS = 600
N_FILLERS = 300


def cap(word: str) -> str:
    return word[:1].upper() + word[1:]


def make_document(d: int, rng: random.Random) -> dict:
    topic = TOPICS[rng.randrange(len(TOPICS))]
    name = f"nm{d}"
    pos = rng.randrange(CYCLE)
    title = f"{cap(name)} {topic}{pos} {topic}{(pos + 1) % CYCLE}"
    paragraphs = []
    first = True
    for _ in range(rng.randint(2, 3)):
        para = []
        for j in range(rng.randint(3, 4)):
            words, spans = [], []
            marker = None
            if j > 0 and rng.random() < 0.4:
                r = rng.randrange(len(MARKERS))
                marker = MARKERS[r]
            if first:
                words.append(cap(name))
                first = False
            k = rng.randint(4, 6)
            phrase_at = rng.randrange(k - 1) if rng.random() < 0.3 else None
            for i in range(k):
                if i == phrase_at:
                    spans.append(("phrase", len(words)))
                words.append(f"{topic}{(pos + i) % CYCLE}")
            pos = (pos + k) % CYCLE
            if rng.random() < 0.5:
                words.append(f"rx{rng.randrange(N_FILLERS)}")
            if marker is not None:
                words.append(f"cue{r}")
            if words[0] != cap(name):
                words[0] = cap(words[0])
            text = " ".join(words) + " ."
            if marker is not None:
                text = f"{marker} {words[0].lower()} " + " ".join(words[1:]) + " ."
            out_spans = []
            # character offsets of the spans (the name is an entity, the phrase two topic words)
            offsets, at = [], len(marker) + 1 if marker else 0
            for w in words:
                offsets.append(at)
                at += len(w) + 1
            for kind, i in spans:
                out_spans.append([offsets[i], offsets[i + 1] + len(words[i + 1]), kind])
            if words[0] == cap(name):
                out_spans.append([offsets[0], offsets[0] + len(name), "entity", "PER"])
            para.append({"text": text, "spans": out_spans})
        paragraphs.append(para)
    return {"title": title, "lang": "en", "paragraphs": paragraphs}


def write_corpus(root: Path) -> None:
    rng = random.Random(0)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for d in range(N_DOCS):
            fh.write(json.dumps(make_document(d, rng)) + "\n")
    words = ([f"{t}{i}" for t in TOPICS for i in range(CYCLE)]
             + [f"nm{d}" for d in range(N_DOCS)] + [f"rx{k}" for k in range(N_FILLERS)]
             + [f"cue{r}" for r in range(len(MARKERS))]
             + sorted({w.lower().strip(",") for m in MARKERS for w in m.split()}))
    (root / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", ".", ","] + words) + "\n",
        encoding="utf-8")


SEEDS = (1, 2, 3)


def config(root: Path, seed: int) -> dict:
    return {
        "seed": seed, "data_dir": str(root), "output_dir": str(root / "run"),
        "model": {"size": "mini", "vocab": "vocab.txt", "max_len": 40,
                  "overrides": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                                "tie_word_embeddings": False}},
        "corpora": [{"name": "topics", "path": "corpus.jsonl", "format": "jsonl", "lang": "en",
                     "options": {"annotate": False}}],
        "train": {"schedule": "continual", "mix": "batch", "batch_size": 32, "lr": 1e-3,
                  "warmup_ratio": 0.06, "precision": "fp32", "shuffle_buffer": 512},
        "checkpoint": {"every": 0, "keep": 1, "stage_models": False},
        "log": {"every": 50, "progress": False, "tensorboard": "off", "peak_tflops": 1.0},
        "eval": {"examples": 192, "batch_size": 64, "heldout": 0.1},
        "stages": [
            {"name": "word-aware", "steps": 600,
             "tasks": [{"task": "knowledge_masking", "weight": 3}, {"task": "capitalization"},
                       {"task": "token_document_relation"}]},
            {"name": "structure-aware", "steps": 250,
             "weights": {"knowledge_masking": 2, "sentence_distance": 10},
             "tasks": [{"task": "sentence_reordering", "options": {"m": 3, "pooling": "cls"}},
                       {"task": "sentence_distance", "options": {"pooling": "pair"}}]},
            {"name": "semantic-aware", "steps": 150,
             "weights": {"knowledge_masking": 2, "ir_relevance": 6},
             "tasks": [{"task": "discourse_relation", "options": {"pooling": "pair"}},
                       {"task": "ir_relevance", "options": {"pooling": "pair"}}]},
        ],
    }


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_every_task_beats_chance_at_its_stage_end(tmp_path, seed):
    write_corpus(tmp_path)
    result = pretrain(config(tmp_path, seed))
    assert result.completed
    report = (tmp_path / "run" / "report" / "forgetting.csv").read_text().splitlines()
    header = report[0].split(",")
    rows = {r.split(",")[0]: r.split(",") for r in report[1:]}
    chance = {t: float(v) for t, v in zip(header[3:], rows["chance"][3:])}
    assert len(chance) == 7
    introduced = {}
    for stage in ("1", "2", "3"):
        for task, value in zip(header[3:], rows[stage][3:]):
            if value and task not in introduced:
                introduced[task] = stage
    margins = {t: float(rows[introduced[t]][3 + i]) - chance[t]
               for i, t in enumerate(header[3:])}
    final = {t: float(rows["3"][3 + i]) - chance[t] for i, t in enumerate(header[3:])}
    # A clear margin: the held-out sets hold ~200 examples (for the token tasks, ~200 windows
    # of many scored tokens each), so a few standard errors of an accuracy.
    # Knowledge masking leaves chance (always the most frequent word) slowly at this size (+0.025
    # to +0.04 after stage 1, ~1000 scored tokens: a standard error of ~0.009).
    need = {"knowledge_masking": 0.015, "capitalization": 0.05, "token_document_relation": 0.05,
            "sentence_reordering": 0.05, "sentence_distance": 0.05, "discourse_relation": 0.05,
            "ir_relevance": 0.05}
    assert set(need) == set(chance)
    for task, margin in need.items():
        assert margins[task] > margin, (task, "at its stage end", margins, chance)
        assert final[task] > margin, (task, "at the end", final, chance)
    # every task was trained: its training loss is in the log of the stages that train it
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trained = {t for r in rows if r["split"] == "train" for t in r["tasks"]}
    assert trained == set(chance)
