"""train_vocab: WordPiece training with a fixed order, so the same text gives the same vocab."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter

import pytest

from ernie2.tokenizer import SPECIAL_TOKENS, ErnieTokenizer, read_vocab, train_vocab
from ernie2.tokenizer.vocab import _train_wordpiece

# The Hugging Face course's BPE example: hug 10, pug 5, pun 12, bun 4, hugs 5.
HUG_COUNTS = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
HUG_ALPHABET = ["b", "g", "h", "n", "p", "s", "u",  # code point order
                "##g", "##n", "##s", "##u"]
# Pairs at the start: ##u ##g 20, p ##u 17, ##u ##n 16, h ##u 15, ##g ##s 5, b ##u 4.
#  1. ##u + ##g (20) -> ##ug; now h ##ug 15, p ##ug 5, ##ug ##s 5, p ##u 12, ##u ##n 16, b ##u 4
#  2. ##u + ##n (16) -> ##un; now p ##un 12, b ##un 4
#  3. h + ##ug (15) -> hug; now hug ##s 5
#  4. p + ##un (12) -> pun
#  5. p + ##ug and hug + ##s tie at 5: p (id 9) is the lower left id -> pug
#  6. hug + ##s (5) -> hugs
#  7. b + ##un (4) -> bun
HUG_MERGES = ["##ug", "##un", "hug", "pun", "pug", "hugs", "bun"]


def write_counts(path, counts, sep=" "):
    words = [w for w, n in counts.items() for _ in range(n)]
    random.Random(0).shuffle(words)
    lines = [sep.join(words[i:i + 7]) for i in range(0, len(words), 7)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tokens_of(path):
    return [t for t, _ in sorted(read_vocab(path).items(), key=lambda kv: kv[1])]


@pytest.mark.parametrize("min_frequency, n_merges", [(1, 7), (2, 7), (5, 6), (13, 3), (21, 0)])
def test_hand_worked_merges(tmp_path, min_frequency, n_merges):
    text = write_counts(tmp_path / "c.txt", {w.upper(): n for w, n in HUG_COUNTS.items()})
    vocab = train_vocab([text], 100, tmp_path / "v.txt", min_frequency=min_frequency)
    expected = [*SPECIAL_TOKENS, *HUG_ALPHABET, *HUG_MERGES[:n_merges]]
    assert tokens_of(tmp_path / "v.txt") == expected
    assert vocab == {t: i for i, t in enumerate(expected)}


def test_size_caps_the_merges_then_the_alphabet(tmp_path):
    text = write_counts(tmp_path / "c.txt", HUG_COUNTS)
    for size, expected in [
            (20, [*SPECIAL_TOKENS, *HUG_ALPHABET, *HUG_MERGES[:4]]),
            # 3 of the 4 `##` forms: ##u 36, ##g 20, ##n 16 before ##s 5
            (15, [*SPECIAL_TOKENS, *HUG_ALPHABET[:7], "##g", "##n", "##u"]),
            # 4 of the 7 characters: u 36, g 20, p 17, n 16 (then h 15, s 5, b 4)
            (9, [*SPECIAL_TOKENS, "g", "n", "p", "u"]),
            (5, list(SPECIAL_TOKENS))]:
        vocab = train_vocab([text], size, tmp_path / f"v{size}.txt", min_frequency=1)
        assert tokens_of(tmp_path / f"v{size}.txt") == expected
        assert len(vocab) <= size
    with pytest.raises(ValueError, match="smaller than the 5 special tokens"):
        train_vocab([text], 4, tmp_path / "v.txt")


def test_alphabet_ties_go_to_the_character(tmp_path):
    (tmp_path / "c.txt").write_text("z y x 中 丁 b a a b\n", encoding="utf-8")
    train_vocab([tmp_path / "c.txt"], 8, tmp_path / "v.txt")
    assert tokens_of(tmp_path / "v.txt") == [*SPECIAL_TOKENS, "a", "b", "x"]


def test_specials_and_extra_tokens_keep_their_ids(tmp_path):
    text = write_counts(tmp_path / "c.txt", HUG_COUNTS)
    vocab = train_vocab([text], 100, tmp_path / "v.txt", min_frequency=1,
                        extra_tokens=["[unused1]", "hug", "[MASK]"])
    # Merge 3 makes `hug` again, which keeps id 6; that low id now wins the tie at 5 for
    # hug + ##s over p + ##ug.
    assert tokens_of(tmp_path / "v.txt") == [
        *SPECIAL_TOKENS, "[unused1]", "hug", *HUG_ALPHABET,
        "##ug", "##un", "pun", "hugs", "pug", "bun"]
    assert vocab["[unused1]"] == 5 and vocab["hug"] == 6


def naive_merges(counts, size, min_frequency):
    """The merges recounted from scratch after each one (what the incremental counts track)."""
    tokens = _train_wordpiece(counts, 10 ** 9, 10 ** 9, list(SPECIAL_TOKENS))  # no merges
    ids = {t: i for i, t in enumerate(tokens)}
    words = {w: [w[0], *(f"##{c}" for c in w[1:])] for w in counts}
    while len(ids) < size:
        pairs = Counter()
        for w, sym in words.items():
            for p in zip(sym, sym[1:]):
                pairs[p] += counts[w]
        if not pairs:
            break
        (a, b), n = min(pairs.items(), key=lambda kv: (-kv[1], ids[kv[0][0]], ids[kv[0][1]]))
        if n < min_frequency:
            break
        new = a + b[2:]
        ids.setdefault(new, len(ids))
        for w, sym in words.items():
            out, i = [], 0
            while i < len(sym):
                if sym[i:i + 2] == [a, b]:
                    out.append(new)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            words[w] = out
    return list(ids)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_counts_match_recounting(seed):
    rng = random.Random(seed)
    letters = "abcab"  # repeats make pairs like ##a ##a and overlapping runs
    counts = Counter()
    for _ in range(300):
        counts["".join(rng.choice(letters) for _ in range(rng.randint(1, 9)))] += rng.randint(1, 3)
    for size, min_frequency in [(60, 1), (200, 2), (400, 1)]:
        assert _train_wordpiece(counts, size, min_frequency, list(SPECIAL_TOKENS)) == \
            naive_merges(counts, size, min_frequency)


def test_same_vocab_in_any_process(tmp_path):
    # Every word twice: nearly every merge is a tie.
    rng = random.Random(7)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 8)))
             for _ in range(400)] + [chr(0x4E00 + i) for i in range(50)]
    words = [*words, *words]
    rng.shuffle(words)
    (tmp_path / "c.txt").write_text(
        "\n".join(" ".join(words[i:i + 10]) + "." for i in range(0, len(words), 10)) + "\n",
        encoding="utf-8")
    script = ("import sys; from ernie2.tokenizer import train_vocab; "
              "train_vocab([sys.argv[1]], 400, sys.argv[2])")
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"v{seed}.txt"
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "c.txt"), str(out)],
                       check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    train_vocab([tmp_path / "c.txt"], 400, tmp_path / "v.txt")
    assert (tmp_path / "v.txt").read_bytes() == outs[0]
    assert len(outs[0].splitlines()) == 400


def test_trained_vocab_tokenizes_its_text(tmp_path):
    (tmp_path / "c.txt").write_text(
        "The hugs of a bun, a pun and a pug.\n百度的模型学习语言。\nHugging, punning pugs!\n" * 20,
        encoding="utf-8")
    train_vocab([tmp_path / "c.txt"], 80, tmp_path / "v.txt")
    tok = ErnieTokenizer(tmp_path / "v.txt")
    ids = tok.encode("The hugs of a pug, and a pun!")[0].tolist()
    assert tok.unk_id not in ids
    assert tok.decode(ids) == "the hugs of a pug , and a pun !"
    assert tok.tokenize("模型语言") == ["模", "型", "语", "言"]
    assert tok.tokenize("Hugging") == ["hugging"]


def test_cased_training_keeps_case_and_accents(tmp_path):
    (tmp_path / "c.txt").write_text("Café café Café\n", encoding="utf-8")
    vocab = train_vocab([tmp_path / "c.txt"], 50, tmp_path / "v.txt", lower_case=False)
    assert {"C", "c", "##é", "Café"} <= set(vocab) and "cafe" not in vocab
    vocab = train_vocab([tmp_path / "c.txt"], 50, tmp_path / "v.txt")
    assert "cafe" in vocab and "é" not in vocab and "##é" not in vocab
