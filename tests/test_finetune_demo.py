"""examples/finetune_demo.py at a tiny size: both starts, both tasks, the printed table."""

import pytest
import torch
from example_scripts import load_example
from safetensors.torch import load_file

from ernie2.finetune import samples
from ernie2.model import ErnieConfig, ErnieModel
from ernie2.tokenizer import ErnieTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_runs_at_a_tiny_size(tmp_path, capsys):
    demo = load_example("finetune_demo")
    # A stand-in for the pre-training demo's output: config, weights, vocab.txt.
    texts = [*samples.all_texts(samples.sentiment(tmp_path / "v1", sizes=(30, 5, 5))),
             *samples.all_texts(samples.ner(tmp_path / "v2", sizes=(30, 5, 5)))]
    vocab = samples.write_char_vocab(texts, tmp_path / "vocab.txt")
    torch.manual_seed(0)
    cfg = ErnieConfig.from_name("test", vocab_size=ErnieTokenizer(vocab).vocab_size,
                                use_task_id=True, task_type_vocab_size=5)
    ErnieModel(cfg).save_pretrained(tmp_path / "pre", vocab)
    tasks = {"sentiment": demo.DemoTask("sentiment", "classify", (48, 12, 12), 3, 32, "accuracy"),
             "ner": demo.DemoTask("ner", "ner", (32, 8, 8), 3, 32, "f1")}
    results = demo.main(tmp_path / "pre", tmp_path / "out", tasks, batch_size=16,
                        learning_rate=1e-3, progress=False)
    printed = capsys.readouterr().out
    assert set(results) == {"sentiment", "ner"}
    for name, t in tasks.items():
        for start in ("pretrained", "random"):
            r = results[name][start]
            assert 0.0 <= r["dev"] <= 1.0 and 0.0 <= r["test"] <= 1.0
            out = tmp_path / "out" / f"{name}_{start}"
            assert (out / "best" / "finetune.json").is_file() and (out / "test_out.tsv").is_file()
        assert 0.0 <= results[name]["unk"] < 0.5
        row = next(line for line in printed.splitlines() if line.startswith(name))
        assert "/".join(map(str, t.sizes)) in row
        assert f"{results[name]['pretrained']['test']:.3f}" in row
    # The data went through the real readers: TSV for sentiment, the column file for NER.
    assert (tmp_path / "out" / "data" / "sentiment" / "train.tsv").is_file()
    assert (tmp_path / "out" / "data" / "ner" / "train.txt").is_file()
    # Same size and vocab, different weights.
    rand = tmp_path / "out" / "random_init"
    assert ErnieConfig.from_file(rand / "config.json") == ErnieConfig.from_file(
        tmp_path / "pre" / "config.json")
    assert (rand / "vocab.txt").read_text() == vocab.read_text()
    a, b = load_file(str(rand / "model.safetensors")), load_file(str(tmp_path / "pre" /
                                                                     "model.safetensors"))
    assert a.keys() == b.keys() and not torch.equal(a["ernie.embeddings.word_embeddings.weight"],
                                                    b["ernie.embeddings.word_embeddings.weight"])
    assert "Capped for time" in printed and "random init" in printed


def test_demo_without_a_pretrained_model_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the pre-training demo first"):
        load_example("finetune_demo").main(tmp_path / "missing", tmp_path / "out")
