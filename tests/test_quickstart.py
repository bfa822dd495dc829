"""The quickstart example runs end to end: vocab, model, encode, save, reload."""

import importlib.util
from pathlib import Path

from ernie2 import ErnieModel, ErnieTokenizer


def test_quickstart_example(tmp_path):
    path = Path(__file__).parent.parent / "examples" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    model = ErnieModel.from_pretrained(tmp_path / "model")
    tok = ErnieTokenizer.from_pretrained(tmp_path / "model")
    assert model.config.vocab_size == tok.vocab_size
