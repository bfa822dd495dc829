"""ErnieTokenizer against transformers' BERT tokenizer on the same vocab; vocab formats; training."""

import random

import numpy as np
import pytest

from ernie2 import ErnieTokenizer
from ernie2.cli import main as cli_main
from ernie2.tokenizer import read_vocab, truncate_pair

transformers = pytest.importorskip("transformers")

TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "the", "cafe", "is", "open", "un",
          "##believ", "##able", ",", ".", "!", "?", "'", "s", "naive", "resume", "hello", "world",
          "百", "度", "中", "文", "模", "型", "，", "。", "ernie", "2", "0", "##0", "a", "b",
          "##c", "-", "(", ")", "état", "bert"]
TEXTS = [
    "The café is open, unbelievable!",
    "Naïve RÉSUMÉ? hello world.",
    "百度的中文模型，ERNIE 2.0。",
    "zzz qqq unbelievable-ish (abc) état",
    "  spaces\tand\nnewlines  ",
    "",
    "a" * 150,
]


def write_vocab(path, tab=False):
    lines = [f"{t}\t{i}" if tab else t for i, t in enumerate(TOKENS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(params=[False, True], ids=["token-lines", "token-tab-id"])
def vocab_file(tmp_path, request):
    return write_vocab(tmp_path / "vocab.txt", tab=request.param)


@pytest.fixture
def reference(tmp_path):
    path = write_vocab(tmp_path / "ref_vocab.txt")
    return transformers.BertTokenizer(str(path), do_lower_case=True)


def test_same_tokens_and_ids_as_bert_tokenizer(vocab_file, reference):
    tok = ErnieTokenizer(vocab_file)
    for text in TEXTS:
        assert tok.tokenize(text) == reference.tokenize(text), text
        ids, sent = tok.encode(text)
        want = reference(text)["input_ids"]
        assert ids.tolist() == want and ids.dtype == np.int64
        assert sent.tolist() == [0] * len(want)


def test_pairs_match_bert_tokenizer_with_longest_first_truncation(vocab_file, reference):
    tok = ErnieTokenizer(vocab_file)
    a, b = TEXTS[0], TEXTS[2]
    for max_len in (64, 12, 9, 5):
        ids, sent = tok.encode(a, b, max_len=max_len)
        want = reference(a, b, truncation="longest_first", max_length=max_len)
        assert ids.tolist() == want["input_ids"], max_len
        assert sent.tolist() == want["token_type_ids"]


def test_offsets_point_at_the_original_text(vocab_file):
    tok = ErnieTokenizer(vocab_file)
    text = "Naïve résumé, 百度!"
    enc = tok.encode_batch([text])[0]
    pieces = tok.convert_ids_to_tokens(enc.input_ids)
    assert pieces == ["[CLS]", "naive", "resume", ",", "百", "度", "!", "[SEP]"]
    spans = [text[s:e] for s, e in enc.offsets]
    assert spans == ["", "Naïve", "résumé", ",", "百", "度", "!", ""]
    assert enc.special_mask == [1, 0, 0, 0, 0, 0, 0, 1]


def test_batch_padding(vocab_file):
    tok = ErnieTokenizer(vocab_file)
    encs = tok.encode_batch(["hello", "hello world !"], ["world", "a"])
    padded = tok.pad(encs)
    assert padded["input_ids"].shape == (2, 7)
    assert padded["attention_mask"].sum(1).tolist() == [5, 7]
    assert padded["input_ids"][0, 5:].tolist() == [tok.pad_id] * 2


def test_truncate_pair_matches_stepwise_rule():
    rng = random.Random(0)
    for _ in range(500):
        la, lb, budget = rng.randint(0, 30), rng.randint(0, 30), rng.randint(0, 40)
        a, b = la, lb
        while a + b > budget:  # the rule, one token at a time
            if a >= b and a > 0:
                a -= 1
            else:
                b -= 1
        assert truncate_pair(la, lb, budget) == (a, b)


def test_vocab_errors_name_file_and_line(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("[PAD]\n[CLS]\n[PAD]\n")
    with pytest.raises(ValueError, match=r"v.txt:3: token '\[PAD\]' repeats"):
        read_vocab(p)
    p.write_text("[PAD]\t0\n[CLS]\tone\n")
    with pytest.raises(ValueError, match="v.txt:2: expected 'token<TAB>id'"):
        read_vocab(p)
    p.write_bytes(b"[PAD]\n\xff\xfe\n")
    with pytest.raises(ValueError, match="v.txt:2: not UTF-8"):
        read_vocab(p)
    p.write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"has no \[PAD\]"):
        ErnieTokenizer(p)


def test_vocab_train_cli(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("ernie learns language.\n百度的模型学习语言。\n" * 50, encoding="utf-8")
    out = tmp_path / "vocab.txt"
    assert cli_main(["vocab", "train", str(corpus), "--size", "120", "--out", str(out),
                     "--min_frequency", "1"]) == 0
    vocab = read_vocab(out)
    assert [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])][:5] == \
        ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    assert len(vocab) <= 120
    tok = ErnieTokenizer(out)
    assert tok.unk_id not in tok.encode("ernie learns language.")[0].tolist()
    assert tok.tokenize("百度") == ["百", "度"]
    assert cli_main(["vocab", "check", str(out)]) == 0
    assert "[MASK]=3" in capsys.readouterr().out


def test_length_batches_cover_every_index_once_within_limits():
    from ernie2.model.batch import length_batches

    rng = random.Random(1)
    lengths = [rng.randint(1, 50) for _ in range(200)]
    batches = list(length_batches(lengths, batch_size=16, max_tokens=300))
    seen = sorted(i for b in batches for i in b)
    assert seen == list(range(200))
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) <= 16 and (width * len(b) <= 300 or len(b) == 1)
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


def test_trained_vocab_never_exceeds_its_size(tmp_path):
    from ernie2.tokenizer import train_vocab

    lines = ["".join(chr(0x4E00 + i) for i in range(j * 100, (j + 1) * 100)) for j in range(40)]
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    vocab = train_vocab([tmp_path / "c.txt"], 3000, tmp_path / "v.txt", min_frequency=1)
    assert len(vocab) == len(read_vocab(tmp_path / "v.txt")) <= 3000
