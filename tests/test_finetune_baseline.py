"""A starting point without pre-training (issue 15): fine-tuning a fresh model of a named size,
the TF-IDF / memorized-tags baselines beside it, learning rates by model width, and numbers that
read right."""

from __future__ import annotations

import contextlib
import io
import json
import logging

import pytest

from ernie2.cli import main
from ernie2.finetune import TaskOptions, get_task_type, samples
from ernie2.finetune.baseline import run_baseline
from ernie2.finetune.readers import Labels, collect_labels

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--precision", "fp32", "--no_progress", "--tensorboard", "off", "--peak_tflops", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    cls = samples.sentiment(tmp / "cls", sizes=(600, 100, 200))
    ner = samples.ner(tmp / "ner", sizes=(200, 40, 80), column_file=True)
    vocab = samples.write_char_vocab([*samples.all_texts(cls), *samples.all_texts(ner)],
                                     tmp / "vocab.txt")
    return {"cls": cls, "ner": ner, "vocab": vocab, "tmp": tmp}


def _split(task, data_dir, name):
    from ernie2.finetune.run import find_split

    return task.read(find_split(data_dir, name, task), TaskOptions(), True)


def test_text_baseline_beats_chance_and_is_scored_like_sklearn(data):
    from sklearn.metrics import accuracy_score, f1_score

    task = get_task_type("classify")
    train, test = _split(task, data["cls"], "train"), _split(task, data["cls"], "test")
    labels = Labels(collect_labels(train))
    out = run_baseline(task, train, {"test": test}, labels, TaskOptions())
    gold = [str(ex.label) for ex in test]
    pred = [p["label"] for p in out["predictions"]["test"]]
    scores = out["scores"]["test"]
    assert scores["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert scores["f1"] == pytest.approx(f1_score(gold, pred, pos_label="1"))
    majority = max(gold.count(g) for g in set(gold)) / len(gold)
    assert scores["accuracy"] > majority + 0.1
    assert all(abs(sum(p["probs"].values()) - 1) < 1e-6 for p in out["predictions"]["test"])


def test_pair_and_regression_baselines_fit_their_own_task(tmp_path):
    rows = [("好 电影", "很 好 的 电影", "1"), ("好 电影", "糟糕 的 饭店", "0"),
            ("便宜 的 饭店", "饭店 很 便宜", "1"), ("便宜 的 饭店", "好 电影", "0")] * 10
    (tmp_path / "train.tsv").write_text("text_a\ttext_b\tlabel\n" + "".join(
        "\t".join(r) + "\n" for r in rows), encoding="utf-8")
    for name in ("pair", "regress"):
        task = get_task_type(name)
        train = _split(task, tmp_path, "train")
        labels = task.collect_labels(train)
        out = run_baseline(task, train, {"train": train}, labels, TaskOptions())
        metric = "accuracy" if name == "pair" else "pearson"
        assert out["scores"]["train"][metric] > 0.9, out["scores"]


def test_ner_baseline_memorizes_tags_and_is_scored_like_seqeval(data):
    from seqeval.metrics import f1_score

    task = get_task_type("ner")
    train, test = _split(task, data["ner"], "train"), _split(task, data["ner"], "test")
    labels = task.collect_labels(train)
    out = run_baseline(task, train, {"train": train[:50], "test": test}, labels, TaskOptions())
    pred = [p["tags"] for p in out["predictions"]["test"]]
    assert out["scores"]["test"]["f1"] == pytest.approx(f1_score([ex.labels for ex in test],
                                                                 pred), abs=1e-9)
    assert out["scores"]["train"]["f1"] > out["scores"]["test"]["f1"] > 0.05
    assert isinstance(out["scores"]["test"]["true_chunks"], int)


@pytest.fixture(scope="module")
def fresh(data):
    """`ernie2 finetune --init random --size test --baseline` on the sentiment data, the test
    split holding a label never seen in training."""
    data_dir = data["tmp"] / "cls_unseen"
    data_dir.mkdir()
    for name in ("train", "dev"):
        (data_dir / f"{name}.tsv").write_text((data["cls"] / f"{name}.tsv").read_text("utf-8"),
                                              encoding="utf-8")
    test = (data["cls"] / "test.tsv").read_text("utf-8")
    (data_dir / "test.tsv").write_text(test + "一般般吧\tneutral\n", encoding="utf-8")
    out = data["tmp"] / "fresh"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["finetune", "--task", "classify", "--data_dir", str(data_dir),
                     "--init", "random", "--size", "test", "--vocab", str(data["vocab"]),
                     "--baseline", "--output-dir", str(out), "--max_steps", "4", "--bsz", "16",
                     "--max_len", "48", *FAST])
    assert code == 0
    return out, printed.getvalue(), data_dir


def test_finetune_a_fresh_model_with_its_baseline_beside_it(fresh):
    out, text, data_dir = fresh
    # Learning rate by width (hidden 32): not the base-model 5e-5.
    assert "4 steps at lr 0.0005" in text
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if "dev accuracy" in line and "test" in line)
    assert lines[head + 1].split()[0] == "model" and lines[head + 2].split()[0] == "baseline"
    metrics = json.loads((out / "metrics.json").read_text())
    base = metrics["baseline"]["scores"]["test"]["accuracy"]
    assert f"{base:.4f}" in lines[head + 2]
    assert metrics["settings"]["learning_rate"] == 5e-4
    config = json.loads((out / "best" / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (32, 2)
    # The unseen label: predicted (a row in test_out.tsv), left out of the scores.
    n_test = len((data_dir / "test.tsv").read_text("utf-8").splitlines()) - 1
    assert len((out / "test_out.tsv").read_text("utf-8").splitlines()) == 1 + n_test
    model_acc = metrics["test"]["accuracy"]
    assert round(model_acc * (n_test - 1)) == pytest.approx(model_acc * (n_test - 1), abs=1e-6)


def test_predict_takes_plain_text_and_unseen_labels(fresh, tmp_path, caplog):
    out, _, data_dir = fresh
    best = str(out / "best")
    texts = ["这个电影很好看", "服务太差了"]
    (tmp_path / "new.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["predict", "--model", best, "--input", str(tmp_path / "new.txt"),
                 "--output", str(tmp_path / "p.jsonl")]) == 0
    preds = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(preds) == 2 and {p["label"] for p in preds} <= {"0", "1"}
    with caplog.at_level(logging.WARNING, logger="ernie2"):
        assert main(["predict", "--model", best, "--input", str(data_dir / "test.tsv"),
                     "--output", str(tmp_path / "t.tsv")]) == 0
    assert "'neutral' (1x)" in caplog.text and "left out of any score" in caplog.text


def test_predict_names_a_missing_input(fresh, tmp_path, capsys):
    out, _, _ = fresh
    assert main(["predict", "--model", str(out / "best"), "--input", str(tmp_path / "nope.tsv"),
                 "--output", str(tmp_path / "x.tsv")]) == 1
    err = capsys.readouterr().err
    assert "--input" in err and "nope.tsv: no such file" in err and "Errno" not in err


def test_starting_points_are_explained(data, tmp_path, capsys):
    base = ["finetune", "--task", "classify", "--data_dir", str(data["cls"]), "--output_dir",
            str(tmp_path / "out")]
    assert main(base) == 1
    assert "--init random --size mini --vocab" in capsys.readouterr().err
    assert main([*base, "--init", "random", "--size", "mini"]) == 1
    assert "--init random needs --vocab" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing is written before the flags are checked
    assert main([*base, "--from_pretrained", "m", "--size", "mini"]) == 1
    assert "--size mini is for a fresh model (--init random)" in capsys.readouterr().err


def test_a_base_model_learning_rate_on_a_small_model_is_warned(caplog):
    from ernie2.finetune.run import _check_learning_rate, default_learning_rate
    from ernie2.model import ErnieConfig

    mini, base = ErnieConfig.from_name("mini"), ErnieConfig.from_name("base")
    assert (default_learning_rate(mini), default_learning_rate(base)) == (5e-4, 5e-5)
    with caplog.at_level(logging.WARNING, logger="ernie2"):
        _check_learning_rate(5e-5, base)
        assert caplog.text == ""
        _check_learning_rate(5e-5, mini)
    assert "base-model value" in caplog.text and "5e-4" in caplog.text.replace("0.0005", "5e-4")


def test_numbers_read_right(tmp_path, capsys):
    from ernie2.finetune.metrics import format_scores
    from ernie2.finetune.readers import read_text_tsv
    from ernie2.inference.inputs import InputError, to_examples

    assert format_scores({"f1": 0.5, "true_chunks": 218}) == "f1 0.5000, true_chunks 218"
    bad = tmp_path / "one.tsv"
    bad.write_text("text_a\nx\ty\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"expected 1 tab-separated column \("):
        read_text_tsv(bad, need_label=False)
    with pytest.raises(InputError) as exc:
        to_examples("classify", [3])
    assert "a int" not in str(exc.value) and "a number" in str(exc.value)
    corpus = tmp_path / "c.txt"
    corpus.write_text("a small corpus.\n" * 5, encoding="utf-8")
    assert main(["vocab", "train", str(corpus), "--size", "500", "--out",
                 str(tmp_path / "v.txt")]) == 0
    err = capsys.readouterr().err
    assert "not the 500 asked for" in err and "too few" in err


def test_a_fresh_model_can_take_a_pretrained_models_shape_and_vocab(data, tmp_path):
    import torch

    from ernie2.finetune.run import start_model
    from ernie2.finetune.settings import FinetuneSettings
    from ernie2.model import ErnieConfig, ErnieModel
    from ernie2.tokenizer import ErnieTokenizer

    tok = ErnieTokenizer(data["vocab"])
    pre = ErnieModel(ErnieConfig.from_name("test", vocab_size=tok.vocab_size, num_hidden_layers=3))
    pre.save_pretrained(tmp_path / "pre", data["vocab"])
    fresh, tokenizer = start_model(FinetuneSettings("classify", "d", str(tmp_path / "pre"),
                                                    init="random"))
    assert fresh.config.num_hidden_layers == 3 and tokenizer.vocab_size == tok.vocab_size
    assert not torch.equal(fresh.embeddings.word_embeddings.weight,
                           pre.embeddings.word_embeddings.weight)
