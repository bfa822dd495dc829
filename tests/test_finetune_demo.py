"""examples/finetune_demo.py at a tiny size, and the protocol it runs (ernie2.finetune.protocol):
each start's learning rate is the best of its dev grid, the test scores are the chosen rate's
seeds, the gain and its standard error are those of the scores, the label-efficiency runs train
on the first n examples, and the report, the curves and the probe are written."""

import json
import math
import statistics

import numpy as np
import pytest
import torch
from example_scripts import load_example
from safetensors.torch import load_file

from ernie2.finetune import samples
from ernie2.finetune.protocol import ProtocolTask, gain, train_subset
from ernie2.model import ErnieConfig, ErnieModel
from ernie2.tokenizer import ErnieTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_runs_the_protocol_at_a_tiny_size(tmp_path, capsys):
    demo = load_example("finetune_demo")
    # A stand-in for the pre-training demo's output: config, weights, vocab.txt.
    texts = [*samples.all_texts(samples.sentiment(tmp_path / "v1", sizes=(30, 5, 5))),
             *samples.all_texts(samples.ner(tmp_path / "v2", sizes=(30, 5, 5)))]
    vocab = samples.write_char_vocab(texts, tmp_path / "vocab.txt")
    torch.manual_seed(123)  # not the random start's seed
    cfg = ErnieConfig.from_name("test", vocab_size=ErnieTokenizer(vocab).vocab_size,
                                use_task_id=True, task_type_vocab_size=5)
    ErnieModel(cfg).save_pretrained(tmp_path / "pre", vocab)
    tasks = {"sentiment": demo.DemoTask("sentiment", "classify", (48, 12, 12), 4,
                                        (1e-3, 1e-2), "accuracy", 32),
             "ner": demo.DemoTask("ner", "ner", (32, 8, 8), 4, (1e-3, 1e-2), "f1", 32)}
    summary = demo.main(tmp_path / "pre", tmp_path / "out", tasks, seeds=(1, 2),
                        train_sizes=(10, 40), workers=2, progress=False)
    printed = capsys.readouterr().out
    results = summary["results"]
    assert set(results) == {"sentiment", "ner"}
    lines = printed.splitlines()
    for name, t in tasks.items():
        section = lines[next(i for i, ln in enumerate(lines) if ln.startswith(f"{name} (")):]
        assert set(results[name]) == {demo.PRETRAINED, demo.RANDOM}
        for start, e in results[name].items():
            # the chosen rate is the best dev score of the grid, and its seed-1 run is reused
            assert set(e["grid"]) == set(t.lrs)
            assert e["grid"][e["lr"]][0] == max(dev for dev, _ in e["grid"].values())
            assert e["dev"] == e["grid"][e["lr"]][0] and e["test"][0] == e["grid"][e["lr"]][1]
            assert len(e["test"]) == 2
            assert math.isclose(e["mean"], statistics.fmean(e["test"]))
            assert math.isclose(e["std"], statistics.stdev(e["test"]))
            # the label-efficiency points: only sizes below the train split's own
            assert sorted(e["curve"]) == [n for n in (10, 40) if n < t.sizes[0]]
            row = next(ln for ln in section if ln.strip().startswith(start))
            assert f"{e['mean']:.3f} ± {e['std']:.3f}" in row
        g, se = gain(results[name][demo.PRETRAINED], results[name][demo.RANDOM])
        assert f"{g:+.3f} (standard error {se:.3f})" in printed
    # The data went through the real readers: TSV for sentiment, the column file for NER.
    assert (tmp_path / "out" / "data" / "sentiment" / "train.tsv").is_file()
    assert (tmp_path / "out" / "data" / "ner" / "train.txt").is_file()
    # The curves and the probe.
    png = tmp_path / "out" / "label_efficiency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in printed
    probe = summary["probe"]
    assert set(probe) == {demo.PRETRAINED, demo.RANDOM}
    assert all(set(p) == {"cls", "mean"} for p in probe.values())
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["probe"] == probe
    # Same size and vocab, different weights.
    rand = tmp_path / "out" / "random_init"
    assert ErnieConfig.from_file(rand / "config.json") == ErnieConfig.from_file(
        tmp_path / "pre" / "config.json")
    assert (rand / "vocab.txt").read_text() == vocab.read_text()
    a, b = load_file(str(rand / "model.safetensors")), load_file(str(tmp_path / "pre" /
                                                                     "model.safetensors"))
    assert a.keys() == b.keys() and not torch.equal(a["ernie.embeddings.word_embeddings.weight"],
                                                    b["ernie.embeddings.word_embeddings.weight"])


def test_demo_without_a_pretrained_model_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the pre-training demo first"):
        load_example("finetune_demo").main(tmp_path / "missing", tmp_path / "out")


def test_train_subset_keeps_the_first_examples_and_the_other_splits(tmp_path):
    tsv = samples.sentiment(tmp_path / "cls", sizes=(20, 4, 4))
    out = train_subset(ProtocolTask("s", "classify", str(tsv), 1, (1e-3,)), 7, tmp_path / "c7")
    lines = (tsv / "train.tsv").read_text().splitlines()
    assert (out / "train.tsv").read_text().splitlines() == lines[:8]
    assert (out / "test.tsv").read_text() == (tsv / "test.tsv").read_text()
    col = samples.ner(tmp_path / "ner", sizes=(12, 3, 3), column_file=True)
    out = train_subset(ProtocolTask("n", "ner", str(col), 1, (1e-3,)), 5, tmp_path / "n5")
    blocks = [b.strip("\n") for b in (out / "train.txt").read_text().split("\n\n") if b.strip()]
    assert blocks == [b.strip("\n") for b in (col / "train.txt").read_text().split("\n\n")[:5]]
    with pytest.raises(ValueError, match="13 training examples asked, 12 there"):
        train_subset(ProtocolTask("n", "ner", str(col), 1, (1e-3,)), 13, tmp_path / "n13")


def test_gain_is_the_mean_difference_with_its_standard_error():
    a = {"test": [0.8, 0.82, 0.84]}
    b = {"test": [0.7, 0.75, 0.71]}
    for e in (a, b):
        e["mean"], e["std"] = float(np.mean(e["test"])), float(np.std(e["test"], ddof=1))
    g, se = gain(a, b)
    assert g == pytest.approx(0.82 - np.mean([0.7, 0.75, 0.71]))
    assert se == pytest.approx(math.sqrt(np.var(a["test"], ddof=1) / 3
                                         + np.var(b["test"], ddof=1) / 3))


def test_compare_reuses_finished_runs_and_reruns_changed_ones(tmp_path):
    from ernie2.finetune.protocol import compare

    tsv = samples.sentiment(tmp_path / "cls", sizes=(24, 6, 6))
    vocab = samples.write_char_vocab(samples.all_texts(tsv), tmp_path / "vocab.txt")
    cfg = ErnieConfig.from_name("test", vocab_size=ErnieTokenizer(vocab).vocab_size)
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        ErnieModel(cfg).save_pretrained(tmp_path / name, vocab)
    task = ProtocolTask("s", "classify", str(tsv), 3, (1e-3,), max_len=32)
    starts = {"a": tmp_path / "a", "b": tmp_path / "b"}

    def stamps():
        return {p.parent.name: p.stat().st_mtime_ns
                for p in (tmp_path / "out").rglob("result.json")}

    first = compare([task], starts, tmp_path / "out", seeds=(1, 2), workers=1, progress=False)
    before = stamps()
    # The same weights saved again (as a resumed, finished pre-training re-exports its model)
    # are the same start.
    ErnieModel.from_pretrained(tmp_path / "b").save_pretrained(tmp_path / "b", vocab)
    assert len(before) == 4  # 2 starts x (1 rate + 1 more seed)
    # One start alone, then both: nothing is run again, the scores are the same.
    alone = compare([task], {"b": starts["b"]}, tmp_path / "out", seeds=(1, 2), workers=1,
                    progress=False)
    again = compare([task], starts, tmp_path / "out", seeds=(1, 2), workers=1, progress=False)
    assert stamps() == before
    assert again == first and alone["s"]["b"] == first["s"]["b"]
    # New weights for a start: its runs are done again, the other start's are kept.
    torch.manual_seed(3)
    ErnieModel(cfg).save_pretrained(tmp_path / "a", vocab)
    compare([task], starts, tmp_path / "out", seeds=(1, 2), workers=1, progress=False)
    after = stamps()
    changed = {run for run in after if after[run] != before[run]}
    assert changed and all(run.startswith("s_a_") for run in changed)
    assert {run for run in after if run.startswith("s_a_")} == changed


def test_random_runs_done_while_pretraining_are_reused_by_the_full_report(tmp_path):
    # what `make demo` does: random initialization's runs from the pre-training config (before
    # the model exists), the pre-training, then the full report, which runs only the rest
    from test_training_toytasks import base_config

    from ernie2.training import pretrain

    demo = load_example("finetune_demo")
    (tmp_path / "pt").mkdir()
    cfg = base_config(tmp_path / "pt")
    tasks = {"sentiment": demo.DemoTask("sentiment", "classify", (24, 6, 6), 3, (1e-3,),
                                        "accuracy", 32)}
    out = tmp_path / "out"
    demo.random_only(cfg, out, tasks, seeds=(1, 2), train_sizes=(10,), workers=1,
                     progress=False)
    done = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("result.json")}
    assert len(done) == 3  # the rate's run, a second seed, one label-efficiency point
    weights = (out / "random_init" / "model.safetensors").stat().st_mtime_ns
    final = pretrain(cfg).final_model
    summary = demo.main(final, out, tasks, seeds=(1, 2), train_sizes=(10,), workers=1,
                        with_probe=False, progress=False)
    assert {p: p.stat().st_mtime_ns for p in done} == done
    assert (out / "random_init" / "model.safetensors").stat().st_mtime_ns == weights
    assert len(list((out / "runs").rglob("result.json"))) == 6
    assert set(summary["results"]["sentiment"]) == {demo.PRETRAINED, demo.RANDOM}


def test_run_key_leaves_later_options_out_at_their_defaults(tmp_path):
    # runs cached before layerwise_decay and head_only_proportion existed keep their keys;
    # a run with either set is a different run
    from dataclasses import replace

    from ernie2.finetune.protocol import Run, run_key

    tsv = samples.sentiment(tmp_path / "cls", sizes=(8, 4, 4))
    vocab = samples.write_char_vocab(samples.all_texts(tsv), tmp_path / "vocab.txt")
    cfg = ErnieConfig.from_name("test", vocab_size=ErnieTokenizer(vocab).vocab_size)
    ErnieModel(cfg).save_pretrained(tmp_path / "m", vocab)
    task = ProtocolTask("s", "classify", str(tsv), 3, (1e-3,), max_len=32)
    keys = {}
    for label, t in (("default", task), ("hold", replace(task, head_only_proportion=0.3)),
                     ("decay", replace(task, layerwise_decay=0.8))):
        keys[label] = run_key(Run(t, "m", str(tmp_path / "m"), 1e-3, 1, None, str(tsv),
                                  str(tmp_path / label)))
    assert not {"head_only_proportion", "layerwise_decay"} & set(keys["default"]["task"])
    assert keys["hold"]["task"]["head_only_proportion"] == 0.3
    assert keys["decay"]["task"]["layerwise_decay"] == 0.8
    assert len({json.dumps(k, sort_keys=True) for k in keys.values()}) == 3
