"""The quickstart example runs end to end: vocab, model, encode, save, reload."""

import torch

from ernie2 import ErnieConfig, ErnieModel, ErnieTokenizer
from example_scripts import load_example


def test_quickstart_example(tmp_path, capsys):
    quickstart = load_example("quickstart")
    quickstart.main(tmp_path)
    out = capsys.readouterr().out
    model = ErnieModel.from_pretrained(tmp_path / "model").eval()
    tok = ErnieTokenizer.from_pretrained(tmp_path / "model")
    assert model.config.vocab_size == tok.vocab_size
    # The vocab was trained on the example's texts: they tokenize without [UNK], and the saved
    # vocab is the trained one.
    trained = ErnieTokenizer(tmp_path / "vocab.txt")
    assert tok.vocab == trained.vocab
    for text in quickstart.TEXTS:
        assert tok.unk_id not in tok.encode(text)[0]
    # Every weight came back: the saved model is the one the example built (seed 0, mini size).
    torch.manual_seed(0)
    built = ErnieModel(ErnieConfig.from_name("mini", vocab_size=tok.vocab_size, use_task_id=True))
    saved, want = model.state_dict(), built.state_dict()
    assert saved.keys() == want.keys()
    assert all(torch.equal(saved[k], want[k]) for k in want)
    # What it printed is what it did.
    hidden = model.config.hidden_size
    assert f"vocab: {tok.vocab_size} tokens" in out
    assert f"pooled (2, {hidden}), encoded (2, " in out
    assert "reloaded: max difference 0.00e+00" in out
