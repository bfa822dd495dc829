"""Sentiment knowledge: the SO-PMI lexicon miner on hand-counted documents, the lexicon file
reader's errors, negation, and the sentiment-masking task's labels."""

from __future__ import annotations

import math
import random

import pytest

from demo_data import make_tokenizer
from ernie2.corpus.document import Document, Sentence
from ernie2.corpus.sentiment import (LexiconEntry, LexiconError, mine_lexicon, read_lexicon,
                                     write_lexicon)
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks import create_task
from ernie2.tasks.sentiment_masking import polar_words, word_offsets

TAGS = {"满意": "a", "失望": "a", "房间": "n", "一般": "a", "好": "a", "差": "a"}


def review(*words: str) -> Document:
    return Document([[Sentence("".join(words), list(words))]], lang="zh")


def corpus() -> list[Document]:
    # 6 reviews with the positive seed 好 (4 of them also 满意), 4 with the negative seed 差
    # (3 also 失望); 房间 in all ten (a noun: never a candidate), 一般 in one of each.
    docs = [review("房间", "好", "满意") for _ in range(4)]
    docs += [review("房间", "好", "一般"), review("房间", "好")]
    docs += [review("房间", "差", "失望") for _ in range(3)] + [review("房间", "差", "一般")]
    return docs


def test_so_pmi_by_hand():
    lex = mine_lexicon(corpus(), seeds={1: ["好"], 0: ["差"]}, min_count=2, threshold=0.5,
                       tags=TAGS)
    # P = 6 documents with a positive seed, Q = 4 with a negative one.
    so_satisfied = math.log((4 + 1) * (4 + 2) / ((0 + 1) * (6 + 2)))
    so_disappointed = math.log((0 + 1) * (4 + 2) / ((3 + 1) * (6 + 2)))
    so_average = math.log((1 + 1) * (4 + 2) / ((1 + 1) * (6 + 2)))  # -0.29: under the threshold
    assert lex["满意"] == LexiconEntry(1, round(so_satisfied, 4), 4)
    assert lex["失望"] == LexiconEntry(0, round(so_disappointed, 4), 3)
    assert abs(so_average) < 0.5 and "一般" not in lex
    assert "房间" not in lex  # a noun
    assert lex["好"].polarity == 1 and lex["差"].polarity == 0  # seeds always in
    # strongest orientation first: 差 log(6/40) = -1.90, 失望 -1.67, 好 log(42/8) = 1.66, 满意 1.32
    assert list(lex) == ["差", "失望", "好", "满意"]
    # min_count: 失望 occurs in 3 documents
    assert "失望" not in mine_lexicon(corpus(), {1: ["好"], 0: ["差"]}, min_count=4,
                                      threshold=0.5, tags=TAGS)


def test_miner_refuses_what_it_cannot_score():
    with pytest.raises(ValueError, match="both polarities"):
        mine_lexicon(corpus(), seeds={1: ["好"], 0: ["好"]}, tags=TAGS)
    with pytest.raises(ValueError, match="0 with a negative one"):
        mine_lexicon(corpus()[:6], seeds={1: ["好"], 0: ["差"]}, tags=TAGS)


def test_lexicon_file_round_trip_and_errors(tmp_path):
    lex = {"满意": LexiconEntry(1, 1.3218, 4), "失望": LexiconEntry(0, -2.0794, 3)}
    path = write_lexicon(lex, tmp_path / "lex.tsv")
    assert read_lexicon(path) == lex
    (tmp_path / "short.tsv").write_text("# comment\n好\t1\n\n差\t0\n", encoding="utf-8")
    assert read_lexicon(tmp_path / "short.tsv") == {"好": LexiconEntry(1), "差": LexiconEntry(0)}
    for text, message in [("好\t1\n差\tneg\n", r"bad.tsv:2: polarity must be 1.*'neg'"),
                          ("好\n", r"bad.tsv:1: expected 'word<TAB>polarity'"),
                          ("好\t1\tx\n", r"bad.tsv:1: score must be a number"),
                          ("好\t1\n好\t0\n", r"bad.tsv:2: '好' is listed before"),
                          ("# nothing\n", r"bad.tsv: no lexicon entries")]:
        (tmp_path / "bad.tsv").write_text(text, encoding="utf-8")
        with pytest.raises(LexiconError, match=message):
            read_lexicon(tmp_path / "bad.tsv")


def test_polar_words_flip_after_a_negator():
    lex = {"好": LexiconEntry(1), "失望": LexiconEntry(0)}
    s = Sentence("质量不好很失望", ["质量", "不", "好", "很", "失望"])
    assert word_offsets(s) == [(0, 2), (2, 3), (3, 4), (4, 5), (5, 7)]
    assert polar_words(s, lex) == [(3, 4, 0), (5, 7, 0)]
    assert polar_words(Sentence("质量好", ["质量", "好"]), lex) == [(2, 3, 1)]
    assert polar_words(Sentence("质量好", ["别的"]), lex) == []  # words do not match the text
    assert polar_words(Sentence("质量好"), lex) == []  # no words


def test_task_masks_sentiment_words_and_labels_their_polarity():
    tok = make_tokenizer(list("质量不好很失望房间"))
    lex = {"好": LexiconEntry(1), "失望": LexiconEntry(0)}
    task = create_task("sentiment_masking", tokenizer=tok, max_len=32, lexicon=lex,
                       mask_prob=1.0, replace=(1.0, 0.0))
    doc = review("质量", "不", "好", "很", "失望")
    ex = task.build(doc, random.Random(0))
    chars = list("质量不好很失望")
    assert ex.input_ids[0] == tok.cls_id and ex.input_ids[-1] == tok.sep_id
    expect_ids = [tok.mask_id if c in "好失望" else tok.vocab[c] for c in chars]
    assert ex.input_ids[1:-1] == expect_ids
    # 好 after 不 is negative; 失望 (two tokens) negative
    assert ex.labels[1:-1] == [IGNORE_INDEX] * 3 + [0, IGNORE_INDEX, 0, 0]
    assert ex.labels[0] == ex.labels[-1] == IGNORE_INDEX
    assert task.stats["polarity_0"] == 2
    # No sentiment word: skipped and counted; another language: skipped.
    assert task.build(review("房间"), random.Random(0)) is None
    assert task.stats["skipped_no_sentiment_word"] == 1
    assert task.build(Document([[Sentence("good", ["good"])]], lang="en"),
                      random.Random(0)) is None
    assert task.stats["skipped_other_language"] == 1


def test_task_masks_about_mask_prob_of_the_words_and_at_least_one():
    words = ["好", "房间"] * 8
    tok = make_tokenizer(["好", "房", "间"])
    task = create_task("sentiment_masking", tokenizer=tok, max_len=64,
                       lexicon={"好": LexiconEntry(1)}, mask_prob=0.25)
    masked, min_masked = 0, 99
    for seed in range(400):
        ex = task.build(review(*words), random.Random(seed))
        n = sum(lab == 1 for lab in ex.labels)
        masked += n
        min_masked = min(min_masked, n)
        # labels only on the sentiment word's tokens (好 is token 0 of every pair 好 房 间)
        assert all(lab == IGNORE_INDEX for k, lab in enumerate(ex.labels[1:-1]) if k % 3)
    assert min_masked >= 1
    assert 0.22 < masked / (400 * 8) < 0.30  # 0.25 of 8, plus the at-least-one rule
    with pytest.raises(ValueError, match="mask_prob"):
        create_task("sentiment_masking", tokenizer=tok, mask_prob=0)
    with pytest.raises(ValueError, match="replace"):
        create_task("sentiment_masking", tokenizer=tok, replace=(0.9, 0.2))
