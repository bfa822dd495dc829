"""Input refused before anything is allocated or trained: option ranges, model sizes against a
memory estimate, non-finite labels, MRC offsets, dev/test labels against the label map."""

from __future__ import annotations

import json

import pytest

from ernie2 import ErnieConfig
from ernie2.cli import main
from ernie2.finetune import FinetuneSettings, finetune
from ernie2.finetune.readers import DataError, read_squad, read_text_tsv
from ernie2.training import ConfigError, load_config, pretrain
from test_training_toytasks import base_config


@pytest.mark.parametrize("key,value,message", [
    ("train.grad_clip", -1.0, "train.grad_clip: must be positive (or none: no clipping)"),
    ("train.warmup_steps", -10, "train.warmup_steps: must be in [0, "),
    ("train.lr", float("nan"), "train.lr: must be a finite number"),
    ("train.eps", 0.0, "train.eps: must be positive"),
    ("train.embedding_lr_scale", 0.0, "train.embedding_lr_scale: must be positive, got 0.0"),
    ("train.weight_decay", float("inf"), "train.weight_decay: must be a finite number"),
    ("train.max_bad_steps", 0, "train.max_bad_steps: must be at least 1"),
    ("stages.0.steps", 10 ** 20, "stages[0].steps: must be at most 1_000_000_000"),
    ("log.peak_tflops", -2.0, "log.peak_tflops: must be positive"),
])
def test_out_of_range_options_are_refused_naming_the_key(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as err:
        load_config(base_config(tmp_path), {key: value})
    assert message in str(err.value)


@pytest.mark.parametrize("overrides,message", [
    ({"hidden_size": 10 ** 9, "num_attention_heads": 1},
     r"model needs about [\d,.]+ GiB .* more than the [\d,.]+ GiB this machine has "
     r"available \(hidden_size 1000000000"),
    ({"hidden_size": "64"}, "hidden_size must be an integer, got '64'"),
    ({"hidden_dropout_prob": 1.5}, r"hidden_dropout_prob must be in \[0, 1\)"),
    ({"hiden_size": 64}, "unexpected keyword argument 'hiden_size'"),
])
def test_model_sizes_are_checked_before_allocation(tmp_path, overrides, message):
    cfg = base_config(tmp_path, **{"model.overrides": overrides})
    with pytest.raises(ConfigError, match=message):
        pretrain(cfg)


def test_memory_estimate_counts_every_parameter():
    from ernie2 import ErnieModel
    config = ErnieConfig.from_name("test", use_task_id=True, vocab_size=99)
    assert config.num_parameters() == sum(p.numel() for p in ErnieModel(config).parameters())


def test_finetune_settings_ranges(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"grad_clip: expected a positive number, got -1"):
        FinetuneSettings(task="classify", data_dir=".", from_pretrained="x", grad_clip=-1.0)
    with pytest.raises(ValueError, match=r"warmup_proportion: expected a fraction"):
        FinetuneSettings(task="classify", data_dir=".", from_pretrained="x",
                         warmup_proportion=float("nan"))
    assert main(["finetune", "--task", "classify", "--data_dir", str(tmp_path),
                 "--from_pretrained", "x", "--grad_clip", "-1"]) == 1
    assert capsys.readouterr().err.strip() == (
        "ernie2 finetune: error: grad_clip: expected a positive number, got -1.0")


@pytest.mark.parametrize("label", ["nan", "inf", "-Infinity"])
def test_regression_labels_must_be_finite(tmp_path, label):
    p = tmp_path / "train.tsv"
    p.write_text(f"text_a\tlabel\nok\t1.5\nbad\t{label}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"train.tsv:3: label '{label}' is not a finite number"):
        read_text_tsv(p, regression=True)


@pytest.mark.parametrize("start", [-3, 99])
def test_mrc_answer_start_must_lie_in_the_context(tmp_path, start):
    p = tmp_path / "train.json"
    p.write_text(json.dumps({"data": [{"paragraphs": [{"context": "abc xyz", "qas": [
        {"id": "q1", "question": "?", "answers": [{"text": "xyz", "answer_start": start}]}]}]}]}),
        encoding="utf-8")
    with pytest.raises(DataError, match=rf"answers\[0\] \(id q1\): answer_start {start} is "
                                        r"outside its context \(expected 0..6\)"):
        read_squad(p)


def _labeled_data(tmp_path, dev_label: str, test_label: str):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("text_a\tlabel\ngood\tpos\nbad\tneg\n", encoding="utf-8")
    for split, label in (("dev", dev_label), ("test", test_label)):
        (data / f"{split}.tsv").write_text(f"text_a\tlabel\nfine\tpos\nmeh\t{label}\n",
                                           encoding="utf-8")
    return data


def test_an_unseen_dev_label_is_found_before_training(tmp_path):
    data, out = _labeled_data(tmp_path, "neutral", "neg"), tmp_path / "out"
    # from_pretrained does not exist: the label check must come before the model is loaded
    with pytest.raises(DataError, match=r"dev.tsv:3: unknown label 'neutral' "
                                        r"\(known: neg, pos\)"):
        finetune(FinetuneSettings(task="classify", data_dir=str(data), output_dir=str(out),
                                  from_pretrained=str(tmp_path / "no-model")))
    assert not out.exists()


def test_an_unseen_test_label_is_reported_before_training(tmp_path, caplog):
    """Test labels the model cannot know are predicted and left out of the scores (issue 15);
    the run says so before it trains, not after."""
    data = _labeled_data(tmp_path, "neg", "neutral")
    with caplog.at_level("WARNING"), pytest.raises(Exception, match="no-model"):
        finetune(FinetuneSettings(task="classify", data_dir=str(data),
                                  output_dir=str(tmp_path / "out"),
                                  from_pretrained=str(tmp_path / "no-model")))
    assert "test.tsv: 1 test example(s) have labels not in the label map" in caplog.text


# ---------------------------------------------------------------------- pretrain --check
def _check(tmp_path, capsys, **changes):
    import yaml
    cfg = base_config(tmp_path, **changes)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    code = main(["pretrain", str(path), "--check"])
    out, err = capsys.readouterr()
    return code, out, err.strip(), path


def test_check_builds_every_task_and_one_example_each(tmp_path, capsys):
    code, out, err, _ = _check(tmp_path, capsys)
    assert code == 0, err
    assert "vocab " in out and " parameters" in out
    for name in ("mlm", "order", "even"):
        assert f"  task {name}: task id" in out and "an example of " in out
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("change,message", [
    ({"stages": [{"name": "s", "steps": 2, "tasks": [{"task": "no_such_task"}]}]},
     "unknown task 'no_such_task'"),
    ({"stages": [{"name": "s", "steps": 2, "tasks": [
        {"task": "sentence_reordering", "options": {"poolng": 3}}]}]},
     r"stages\[0\].tasks\[0\].options: got an unexpected keyword argument 'poolng' \(task "
     r"sentence_reordering takes: "),
    ({"stages": [{"name": "s", "steps": 2, "tasks": [
        {"task": "sentence_reordering", "pack": True}]}]},
        r"stages\[0\].tasks\[0\].pack: task 'sentence_reordering': packing joins examples "
        r"with one label per token"),
    ({"corpora": [{"name": "toy", "path": "missing.txt", "format": "text"}]},
     "corpus file .*missing.txt not found"),
    ({"model": {"size": "test", "vocab": "vocab.txt", "max_len": 48,
                "overrides": {"hidden_size": "64"}}}, "hidden_size must be an integer"),
])
def test_check_finds_what_training_would_trip_over(tmp_path, capsys, change, message):
    import re
    code, out, err, path = _check(tmp_path, capsys, **change)
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("ernie2 pretrain: error: ") and re.search(message, err), err


def test_prepared_corpus_format_is_accepted_and_a_bad_one_names_the_line(tmp_path, capsys):
    from ernie2.corpus import prepare_corpus
    _, _, _, _ = _check(tmp_path, capsys)  # writes corpus.txt and vocab.txt
    prepare_corpus({"path": str(tmp_path / "corpus.txt"), "format": "text", "lang": "en",
                    "annotate": False}, tmp_path / "prepared", progress=False)
    code, out, err, _ = _check(tmp_path, capsys, corpora=[
        {"name": "toy", "path": "prepared", "format": "prepared"}])
    assert code == 0, err
    code, out, err, path = _check(tmp_path, capsys, corpora=[
        {"name": "toy", "path": "prepared", "format": "prepard"}])
    assert code == 1 and f"{path}:" in err and "corpora[0].format: unknown format 'prepard'" \
        in err
