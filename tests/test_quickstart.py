"""The quickstart example runs end to end: vocab, model, encode, save, reload."""

from ernie2 import ErnieModel, ErnieTokenizer
from example_scripts import load_example


def test_quickstart_example(tmp_path):
    load_example("quickstart").main(tmp_path)
    model = ErnieModel.from_pretrained(tmp_path / "model")
    tok = ErnieTokenizer.from_pretrained(tmp_path / "model")
    assert model.config.vocab_size == tok.vocab_size
