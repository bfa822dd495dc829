"""Every task type fine-tunes a tiny model on a small real sample and beats its untrained score;
the fine-tuned directory rebuilds the model on its own; outputs and presets."""

import json
import math

import numpy as np
import pytest
import torch

from ernie2.finetune import (PRESETS, TASK_TYPES, FinetuneModel, FinetuneSettings, TaskOptions,
                             finetune, get_preset, get_task_type, preset_values, samples)
from ernie2.model.batch import collate
from ernie2.finetune.evaluate import evaluate
from ernie2.inference.predict import predict
from ernie2.finetune.readers import read_ner_tsv, read_text_tsv
from ernie2.finetune.run import find_split
from ernie2.model import ErnieConfig, ErnieModel
from ernie2.tokenizer import ErnieTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


# fp32 (bf16 autocast is slower than fp32 for tiny models on CPU), no peak-FLOPs measurement.
FAST = dict(precision="fp32", tensorboard="off", peak_tflops=1.0, progress=False)


def make_pretrained(data_dir, out_dir, seed=0, max_pos=128):
    """A random tiny encoder over a character vocab of the data, saved as a checkpoint."""
    vocab = samples.write_char_vocab(samples.all_texts(data_dir), out_dir / "vocab.txt")
    tok = ErnieTokenizer(vocab)
    torch.manual_seed(seed)
    cfg = ErnieConfig.from_name("test", vocab_size=tok.vocab_size, max_position_embeddings=max_pos,
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ErnieModel(cfg).save_pretrained(out_dir / "pretrained", vocab)
    return out_dir / "pretrained"


def untrained_dev_score(settings):
    """The dev score of the same model fine-tuning starts from (same seed, so same head)."""
    task = get_task_type(settings.task)
    opts = settings.options
    train = task.read(find_split(settings.data_dir_path, "train", task), opts, True)
    dev = task.read(find_split(settings.data_dir_path, "dev", task), opts, True)
    torch.manual_seed(settings.seed)
    model = FinetuneModel(ErnieModel.from_pretrained(settings.from_pretrained), task,
                          task.collect_labels(train), opts)
    scores, _ = evaluate(model, ErnieTokenizer.from_pretrained(settings.from_pretrained), dev)
    return scores


# sample sizes, epochs, learning rate, batch size, task options, margin over the untrained score
CASES = {
    "classify": ((600, 200, 200), 5, 1e-3, 32, {}, 0.1),
    "pair": ((600, 100, 100), 5, 2e-3, 32, {}, 0.25),
    "regress": ((600, 150, 150), 8, 3e-3, 16, {}, 0.3),
    "ner": ((600, 150, 150), 5, 2e-3, 16, {}, 0.1),
    "ner-crf": ((600, 150, 150), 5, 2e-3, 16, {"crf": True}, 0.1),
    "rank": ((200, 50, 50), 5, 2e-3, 32, {}, 0.15),
    "mrc": ((300, 80, 80), 4, 2e-3, 32, {"max_len": 128, "stride": 64, "max_answer_len": 12},
            15.0),
}


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """Fine-tune each case once; tests below look at the results."""
    done = {}

    def get(case):
        if case not in done:
            task = case.split("-")[0]
            sizes, epochs, lr, batch_size, opts, _ = CASES[case]
            tmp = tmp_path_factory.mktemp(case)
            data = samples.SAMPLES[task](tmp / "data", sizes=sizes)
            settings = FinetuneSettings(
                task=task, data_dir=str(data), from_pretrained=str(make_pretrained(data, tmp)),
                output_dir=str(tmp / "out"), batch_size=batch_size, learning_rate=lr, epochs=epochs,
                log_every=1000, **FAST,
                options=TaskOptions(**{"max_len": 64, **opts}))
            settings.data_dir_path = data
            done[case] = (settings, untrained_dev_score(settings), finetune(settings))
        return done[case]
    return get


@pytest.mark.parametrize("case", list(CASES))
def test_fine_tuning_beats_the_untrained_model(finetuned, case):
    settings, before, result = finetuned(case)
    metric = result.main_metric
    margin = CASES[case][-1]
    assert result.best_score >= before[metric] + margin, (before, result.history)
    # The kept model is the best dev evaluation, and it reloads to the same dev score.
    assert result.best_score == max(h[f"dev_{metric}"] for h in result.history)
    task = get_task_type(settings.task)
    model = FinetuneModel.load(result.best_dir)
    dev = task.read(find_split(settings.data_dir_path, "dev", task), settings.options, True)
    scores, _ = evaluate(model, ErnieTokenizer.from_pretrained(result.best_dir), dev)
    assert scores[metric] == pytest.approx(result.best_score, abs=1e-5)  # batching differs
    # The sample's test split has labels: it is scored, and clearly above chance as well.
    assert result.test_scores[metric] > before[metric]


def test_every_task_type_is_covered():
    assert {c.split("-")[0] for c in CASES} == set(TASK_TYPES)


def test_outputs_of_a_run(finetuned):
    settings, _, result = finetuned("classify")
    out = result.output_dir
    assert json.loads((out / "label_map.json").read_text()) == {"0": 0, "1": 1}
    meta = json.loads((result.best_dir / "finetune.json").read_text())
    assert meta["task"] == "classify" and meta["labels"] == ["0", "1"]
    assert meta["head"] == {"name": "classifier", "num_labels": 2,
                            "shapes": {"classifier.weight": [2, 32], "classifier.bias": [2]}}
    # test_out.tsv: one row per test example, probabilities that sum to one.
    rows = (out / "test_out.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "index\tlabel\tprob_0\tprob_1"
    n_test = len(read_text_tsv(settings.data_dir_path / "test.tsv"))
    assert len(rows) == n_test + 1
    for row in rows[1:]:
        i, label, p0, p1 = row.split("\t")
        assert label == ("0" if float(p0) > float(p1) else "1")
        assert float(p0) + float(p1) == pytest.approx(1.0, abs=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_dev"] == result.best_score and len(metrics["dev"]) == 5
    assert metrics["test"]["accuracy"] == result.test_scores["accuracy"]


def test_ner_predictions_file_reads_back_as_ner_data(finetuned):
    settings, _, result = finetuned("ner")
    back = read_ner_tsv(result.output_dir / "test_out.tsv")
    truth = read_ner_tsv(settings.data_dir_path / "test.tsv")
    assert [b.tokens for b in back] == [t.tokens for t in truth]
    assert [b.labels for b in back] == [p["tags"] for p in result.test_predictions]


def test_mrc_writes_predictions_json_with_character_spans(finetuned):
    settings, _, result = finetuned("mrc")
    preds = json.loads((result.output_dir / "predictions.json").read_text(encoding="utf-8"))
    task = get_task_type("mrc")
    test = task.read(settings.data_dir_path / "test.json", settings.options, True)
    assert set(preds) == {ex.qid for ex in test}
    for ex, p in zip(test, result.test_predictions):
        assert preds[ex.qid] == p["answer"] == ex.context[p["start"]:p["end"]]


def test_predict_from_the_directory_alone_matches_the_run(finetuned, tmp_path):
    settings, _, result = finetuned("rank")
    preds = predict(result.best_dir, settings.data_dir_path / "test.tsv", batch_size=7,
                    out_file=tmp_path / "test_out.tsv")
    assert [p["label"] for p in preds] == [p["label"] for p in result.test_predictions]
    got = [p["probs"]["1"] for p in preds]
    want = [p["probs"]["1"] for p in result.test_predictions]
    assert np.allclose(got, want, atol=1e-5)
    assert (tmp_path / "test_out.tsv").read_text().splitlines()[0] == \
        "index\tqid\tlabel\tprob_0\tprob_1"


def test_crf_head_is_saved_and_decodes_valid_paths(finetuned):
    _, _, result = finetuned("ner-crf")
    model = FinetuneModel.load(result.best_dir)
    assert model.head.crf is not None and model.options.crf
    trans = model.head.crf.transitions
    assert not torch.allclose(trans, torch.zeros_like(trans))  # trained, saved, reloaded
    # Learned transitions: O -> I-PER scores below O -> B-PER.
    o, b, i = (model.labels.names.index(t) for t in ("O", "B-PER", "I-PER"))
    assert trans[o, i] < trans[o, b]


def test_units_match_what_each_loss_averages(finetuned):
    settings, _, result = finetuned("ner")
    model = FinetuneModel.load(result.best_dir)
    task = model.task
    ex = task.read(settings.data_dir_path / "dev.tsv", model.options, True)[:5]
    tok = ErnieTokenizer.from_pretrained(result.best_dir)
    batch = collate(task.encode(ex, tok, model.labels, model.options))
    units, rows = model.units_fn(batch)["ner"]
    assert units == sum(len(e.tokens) for e in ex) and rows == 5
    losses, metrics = FinetuneModel.step_fn(model, batch)
    assert math.isfinite(float(losses["ner"].detach())) and metrics == {}
    assert set(losses) == {"ner"}


def test_layer_truncation_loads_the_first_layers(tmp_path):
    data = samples.sentiment(tmp_path / "data", sizes=(20, 10, 10))
    pre = make_pretrained(data, tmp_path)
    result = finetune(FinetuneSettings(task="classify", data_dir=str(data),
                                       from_pretrained=str(pre), output_dir=str(tmp_path / "o"),
                                       epochs=1, num_layers=1, **FAST))
    model = FinetuneModel.load(result.best_dir)
    assert len(model.encoder.layers) == 1
    full = ErnieModel.from_pretrained(pre)
    assert torch.equal(full.layers[0].ffn_in.weight, ErnieModel.from_pretrained(
        pre, num_hidden_layers=1).layers[0].ffn_in.weight)


def test_max_len_beyond_the_position_table_is_refused(tmp_path):
    data = samples.sentiment(tmp_path / "data", sizes=(4, 2, 2))
    pre = make_pretrained(data, tmp_path, max_pos=64)
    with pytest.raises(ValueError, match="max_len 128 exceeds the model's 64 positions"):
        finetune(FinetuneSettings(task="classify", data_dir=str(data), from_pretrained=str(pre),
                                  output_dir=str(tmp_path / "o"), **FAST))


def test_missing_train_file_and_unknown_task(tmp_path):
    with pytest.raises(FileNotFoundError, match="no train.tsv"):
        finetune(FinetuneSettings(task="classify", data_dir=str(tmp_path), from_pretrained="x"))
    with pytest.raises(KeyError, match="unknown task type 'tagging'"):
        get_task_type("tagging")


# ---------------------------------------------------------------------- presets
def test_presets_cover_the_seed_readme_datasets_with_known_task_types():
    wanted = {"CoLA", "SST-2", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "MRPC", "WNLI", "XNLI",
              "CMRC2018", "DRCD", "MSRA-NER", "ChnSentiCorp", "LCQMC", "NLPCC-DBQA"}
    assert wanted <= set(PRESETS)
    for p in PRESETS.values():
        assert p.task in TASK_TYPES
        assert p.metric in _metric_names(p.task), p
        # a preset names its metric only where it differs from its task type's
        assert p.main_metric in (None, *_metric_names(p.task)), p
        assert p.main_metric != TASK_TYPES[p.task].main_metric, p
        TaskOptions.from_dict({"max_len": p.max_seq_len, **dict(p.options)})


def _metric_names(task):
    return {"classify": {"accuracy", "f1", "mcc", "precision", "recall"},
            "pair": {"accuracy", "f1", "mcc", "precision", "recall"},
            "regress": {"pearson", "spearman", "pearson_spearman"}, "ner": {"f1"},
            "mrc": {"f1", "em"}, "rank": {"mrr", "f1", "accuracy"}}[task]


def test_preset_values_from_the_seed_readme_and_overrides():
    # README: "MNLI | 256 / 512 (base) | 3e-5"; "XNLI | 512 | 1e-4(base)/4e-5(large)".
    assert preset_values("MNLI")["batch_size"] == 512
    assert preset_values("MNLI", "large")["batch_size"] == 256
    assert preset_values("xnli", "large")["learning_rate"] == 4e-5
    assert get_preset("dbqa").name == "NLPCC-DBQA" and get_preset("msra_ner").task == "ner"
    s = FinetuneSettings.from_preset("CMRC2018", data_dir="d", from_pretrained="m",
                                     learning_rate=1e-5, options={"stride": 64})
    assert (s.task, s.batch_size, s.learning_rate, s.epochs) == ("mrc", 64, 1e-5, 2)
    assert (s.options.max_len, s.options.stride, s.options.max_query_len) == (512, 64, 64)
    assert s.options.for_cn
    with pytest.raises(KeyError, match="unknown preset 'GLUE'"):
        get_preset("GLUE")
    with pytest.raises(ValueError, match="unknown task option"):
        FinetuneSettings.from_preset("RTE", data_dir="d", from_pretrained="m",
                                     options={"strides": 3})
