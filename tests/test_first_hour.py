"""A newcomer's first hour (issue 15): a raw corpus is segmented once and cached, every slow
phase says what it is doing, and MFU never reads above 100% without saying why."""

from __future__ import annotations

import logging
import random
from itertools import islice
from pathlib import Path

import pytest

from ernie2.corpus import annotate
from ernie2.tokenizer import SPECIAL_TOKENS

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ["中国", "人民", "经济", "发展", "北京", "改革", "开放", "建设", "社会", "文化", "今天",
         "我们", "城市", "农村", "工作", "会议"]


def raw_zh_corpus(tmp: Path, n_docs: int = 24) -> tuple[Path, Path, int]:
    """Raw Chinese text (a paragraph a line, a blank line between documents) and a character
    vocab; returns (corpus, vocab, number of sentences)."""
    rng = random.Random(0)
    docs, sentences = [], 0
    for _ in range(n_docs):
        paras = []
        for _ in range(3):
            sents = ["".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) + "。"
                     for _ in range(3)]
            sentences += len(sents)
            paras.append("".join(sents))
        docs.append("\n".join(paras))
    corpus = tmp / "raw_zh.txt"
    corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    vocab = tmp / "vocab.txt"
    chars = sorted({c for w in WORDS for c in w} | set("。，"))
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *chars]) + "\n", encoding="utf-8")
    return corpus, vocab, sentences


def raw_config(tmp: Path) -> dict:
    corpus, vocab, _ = raw_zh_corpus(tmp)
    return {
        "seed": 1, "data_dir": str(tmp), "output_dir": str(tmp / "run"),
        "model": {"size": "test", "vocab": vocab.name, "max_len": 32},
        "corpora": [{"name": "raw", "path": corpus.name, "format": "text", "lang": "zh"}],
        "stages": [{"name": "one", "steps": 2, "tasks": [
            {"task": "knowledge_masking"}, {"task": "sentence_reordering", "options": {"m": 3}}]}],
        "train": {"batch_size": 4, "precision": "fp32"},
        "checkpoint": {"every": 0},
        "log": {"every": 1, "progress": False, "peak_tflops": 1.0, "tensorboard": "off"},
        "eval": {"examples": 40, "batch_size": 8, "heldout": 0.2},
    }


@pytest.fixture
def count_segmenter(monkeypatch):
    calls = []
    real = annotate.segment_zh

    def counting(text):
        calls.append(text)
        return real(text)

    monkeypatch.setattr(annotate, "segment_zh", counting)
    return calls


def test_a_raw_corpus_is_segmented_once_and_reused(tmp_path, monkeypatch, count_segmenter,
                                                    caplog):
    from ernie2.tasks import stream_examples
    from ernie2.training.config import load_config
    from ernie2.training.pretraining import PretrainRun

    monkeypatch.setenv("ERNIE2_CORPUS_CACHE", str(tmp_path / "cache"))
    cfg = raw_config(tmp_path)
    _, _, sentences = raw_zh_corpus(tmp_path)
    caplog.set_level(logging.INFO, logger="ernie2")
    run = PretrainRun(load_config(cfg))
    run.setup()
    # Two tasks, a held-out set each over several passes: still one segmentation per sentence.
    assert len(count_segmenter) == sentences
    assert "segmenting and annotating it once" in caplog.text
    assert "held-out examples" in caplog.text
    first = {n: [e.input_ids for e in exs] for n, exs in run.heldout.items()}
    assert all(len(v) == 40 for v in first.values())

    # A later run (another output_dir) reuses the prepared copy: no segmentation at all.
    count_segmenter.clear()
    caplog.clear()
    again = PretrainRun(load_config({**cfg, "output_dir": str(tmp_path / "run2")}))
    again.setup()
    assert count_segmenter == []
    assert "reusing its prepared copy" in caplog.text
    assert {n: [e.input_ids for e in exs] for n, exs in again.heldout.items()} == first

    # The prepared copy and the held-out view give exactly the examples the raw corpus gives.
    raw = {"path": str(tmp_path / "raw_zh.txt"), "format": "text", "lang": "zh"}
    stream = stream_examples(again._make_task("knowledge_masking"), raw, seed=1, split="eval",
                             heldout=0.2, heldout_seed=1, max_builds_per_doc=1)
    want = [(e.input_ids, e.labels) for e in islice(stream, 20)]
    assert [(e.input_ids, e.labels) for e in again.heldout["knowledge_masking"][:20]] == want


def test_a_changed_corpus_is_prepared_again(tmp_path, monkeypatch, count_segmenter):
    from ernie2.corpus.prepare import cached_corpus

    monkeypatch.setenv("ERNIE2_CORPUS_CACHE", str(tmp_path / "cache"))
    corpus, _, sentences = raw_zh_corpus(tmp_path, n_docs=4)
    spec = {"path": str(corpus), "format": "text", "lang": "zh"}
    prepared = cached_corpus(spec, progress=False)
    assert Path(prepared.path, "manifest.json").is_file() and len(count_segmenter) == sentences
    assert cached_corpus(spec, progress=False).path == prepared.path
    assert len(count_segmenter) == sentences
    corpus.write_text(corpus.read_text(encoding="utf-8") + "\n新的文章。\n", encoding="utf-8")
    cached_corpus(spec, progress=False)
    assert len(count_segmenter) == 2 * sentences + 1
    # Corpora that need no annotation are read as they are.
    plain = {**spec, "annotate": False}
    assert cached_corpus(plain, progress=False).path == str(corpus)


def test_mfu_above_100_percent_says_the_peak_is_stale(tmp_path, caplog):
    from ernie2.training.loop import StepResult
    from ernie2.training.reporting import MetricLogger, format_record

    # 1000 FLOPs a token, 3x for training: any real rate beats a peak of 1 FLOP/s.
    log = MetricLogger(tmp_path, every=1, jsonl=False, csv_file=False, tensorboard="off",
                       flops_per_token=lambda seq: 1000.0, peak_flops=1.0, console=False)
    step = StepResult(step=1, losses={"t": 1.0}, metrics={}, units={"t": 1.0}, tokens=100,
                      padded=100, rows=2, grad_norm=1.0, lr=1e-3)
    with caplog.at_level(logging.WARNING, logger="ernie2"):
        log(step)
    rec = log.records[-1]
    assert rec["mfu"] > 1 and rec["peak_stale"]
    assert "that peak is stale" in caplog.text
    assert "stale peak" in format_record(rec)
    assert log.peak_flops > 1.0  # later records are measured against the rate reached
