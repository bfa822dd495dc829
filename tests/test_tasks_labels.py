"""Hand-worked documents with known labels for every task, and the masking rates."""

from __future__ import annotations

import random
from collections import Counter
from itertools import permutations

import pytest

from demo_data import doc_of, make_tokenizer
from ernie2.corpus.document import Document, Sentence, Span
from ernie2.model.heads import IGNORE_INDEX
from ernie2.tasks import create_task
from ernie2.tasks.capitalization import capitalization_labels
from ernie2.tasks.masking import mask_units
from ernie2.tasks.tokens import vocab_info
from ernie2.tasks.sentence_reordering import (decode_permutation, encode_permutation,
                                              num_permutation_classes)

IGN = IGNORE_INDEX


def split_segments(ids, tok):
    """[CLS] s0 [SEP] s1 [SEP] ... -> [s0, s1, ...]."""
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    out, cur = [], []
    for i in ids[1:]:
        if i == tok.sep_id:
            out.append(cur)
            cur = []
        else:
            cur.append(i)
    return out


# ------------------------------------------------------------------- sentence reordering
def test_permutation_classes_decode_back():
    assert [num_permutation_classes(m) for m in (1, 2, 3, 4)] == [1, 3, 9, 33]
    for m in (1, 2, 3, 4):
        perms = [p for n in range(1, m + 1) for p in permutations(range(n))]
        labels = [encode_permutation(p) for p in perms]
        assert sorted(labels) == list(range(num_permutation_classes(m)))
        assert all(decode_permutation(lab, m) == p for lab, p in zip(labels, perms))
    assert decode_permutation(0, 3) == (0,) and decode_permutation(1, 3) == (0, 1)
    assert decode_permutation(2, 3) == (1, 0) and decode_permutation(8, 3) == (2, 1, 0)
    with pytest.raises(ValueError, match="outside the 9 classes"):
        decode_permutation(9, 3)


def test_reordering_label_is_the_permutation_applied():
    words = [f"w{i}{c}" for i in range(6) for c in "ab"]
    tok = make_tokenizer(words)
    doc = doc_of("|".join(f"w{i}a w{i}b." for i in range(6)))
    stream_ids = [tok.vocab[w] if w != "." else tok.vocab["."]
                  for i in range(6) for w in (f"w{i}a", f"w{i}b", ".")]
    task = create_task("sentence_reordering", tokenizer=tok, max_len=64, task_id=4)
    labels = Counter()
    for seed in range(900):
        ex = task.build(doc, random.Random(seed))
        shown = split_segments(ex.input_ids, tok)
        perm = decode_permutation(ex.labels, 3)
        assert len(perm) == len(shown)
        original = [None] * len(perm)
        for place, seg in zip(perm, shown):
            original[place] = seg
        restored = [t for seg in original for t in seg]
        # The restored segments are consecutive sentences of the paragraph, in order...
        start = stream_ids.index(restored[0])
        assert restored == stream_ids[start:start + len(restored)] and start % 3 == 0
        # ... cut at sentence boundaries, and sentence ids alternate per shown segment.
        assert all(len(seg) % 3 == 0 and seg for seg in shown)
        seg_of = [k for k, seg in enumerate(shown) for _ in range(len(seg) + 1)]
        assert ex.sent_ids == [0] + [k % 2 for k in seg_of]
        assert ex.task_id == 4
        labels[ex.labels] += 1
    assert sorted(labels) == list(range(9))
    assert min(labels.values()) > 900 / 9 * 0.7  # uniform over the classes


# ---------------------------------------------------------------------- sentence distance
def test_sentence_distance_labels_match_the_pair_drawn():
    words = [f"{d}{i}" for d in "ab" for i in range(5)]
    tok = make_tokenizer(words)
    docs = {d: doc_of("|".join(f"{d}{i} ." for i in range(5)), source=d) for d in "ab"}
    where = {tok.vocab[f"{d}{i}"]: (d, i) for d in "ab" for i in range(5)}
    task = create_task("sentence_distance", tokenizer=tok, max_len=32, task_id=5)
    counts = Counter()
    for seed in range(600):
        ex = task.build(docs["ab"[seed % 2]], random.Random(seed))
        if ex is None:
            continue
        a, b = split_segments(ex.input_ids, tok)
        (da, ia), (db, ib) = where[a[0]], where[b[0]]
        if ex.labels == 0:
            assert da == db and ib == ia + 1
        elif ex.labels == 1:
            assert da == db and abs(ia - ib) >= 2
        else:
            assert ex.labels == 2 and da != db
        assert ex.sent_ids == [0, 0, 0, 0, 1, 1, 1]
        counts[ex.labels] += 1
    assert all(abs(counts[k] / sum(counts.values()) - 1 / 3) < 0.06 for k in range(3))
    # With one document only there is no other document: label 2 is skipped and counted.
    alone = create_task("sentence_distance", tokenizer=tok, max_len=32)
    labels = {ex.labels for s in range(60) if (ex := alone.build(docs["a"], random.Random(s)))}
    assert labels == {0, 1} and alone.stats["skipped_no_other_document"] > 5


# ------------------------------------------------------------------------ capitalization
def test_capitalization_labels_by_hand():
    tok = make_tokenizer(["alice", "met", "bob", "in", "paris", "cat", "##s", "2024"])
    doc = doc_of("Alice met bob in Paris in 2024.|Cats met Bob.")
    task = create_task("capitalization", tokenizer=tok, max_len=32, task_id=1)
    ex = task.build(Document([doc.paragraphs[0][:1]], lang="en"), random.Random(0))
    tokens = tok.convert_ids_to_tokens(ex.input_ids)
    assert tokens == ["[CLS]", "alice", "met", "bob", "in", "paris", "in", "2024", ".", "[SEP]"]
    assert ex.labels == [IGN, 1, 0, 0, 0, 1, 0, IGN, IGN, IGN]
    ex = task.build(Document([doc.paragraphs[0][1:]], lang="en"), random.Random(0))
    assert tok.convert_ids_to_tokens(ex.input_ids)[1:3] == ["cat", "##s"]
    assert ex.labels == [IGN, 1, IGN, 0, 1, IGN, IGN]  # one label per word, at its first piece
    # A cased vocab still gets lower-cased input.
    cased = type(tok)(dict(tok.vocab), lower_case=False)
    ex2 = create_task("capitalization", tokenizer=cased, max_len=32).build(
        Document([doc.paragraphs[0][1:]], lang="en"), random.Random(0))
    assert ex2.input_ids == ex.input_ids and ex2.labels == ex.labels
    assert capitalization_labels("Éclair à", [0, 7], [0, 1]) == [1, 0]


def test_capitalization_skips_chinese():
    tok = make_tokenizer([])
    task = create_task("capitalization", tokenizer=tok, max_len=32)
    assert task.build(doc_of("我们爱北京。", lang="zh"), random.Random(0)) is None
    assert task.stats["skipped_uncased_language"] == 1


# ---------------------------------------------------------------- token-document relation
def test_token_document_relation_labels_by_hand():
    tok = make_tokenizer(["apple", "banana", "the", "cherry", "date", "elder"])
    doc = doc_of("Apple banana the cherry.|Banana date.|apple elder.")
    task = create_task("token_document_relation", tokenizer=tok, max_len=32, task_id=2)
    expected = {  # first word of the segment -> labels ('the' is a stop word, '.' punctuation)
        "apple banana": [IGN, 1, 1, IGN, 0, IGN, IGN],
        "banana date": [IGN, 1, 0, IGN, IGN],
        "apple elder": [IGN, 1, 0, IGN, IGN],
    }
    seen = set()
    for seed in range(40):
        ex = task.build(doc, random.Random(seed))
        key = " ".join(tok.convert_ids_to_tokens(ex.input_ids[1:3]))
        assert ex.labels == expected[key], key
        seen.add(key)
    assert seen == set(expected)
    none = create_task("token_document_relation", tokenizer=tok, max_len=32, stop_words="none")
    ex = none.build(doc, random.Random(0))
    assert IGN not in ex.labels[1:-2]  # with no stop words, every word is scored
    # Words compare lower-cased without accents, as the tokenizer normalizes them.
    tok2 = make_tokenizer(["cafe", "open", "closed"])
    accents = doc_of("Café open.|cafe closed.")
    labels = {tuple(task2.build(accents, random.Random(s)).labels)
              for task2 in [create_task("token_document_relation", tokenizer=tok2, max_len=16)]
              for s in range(10)}
    assert labels == {(IGN, 1, 0, IGN, IGN)}


# --------------------------------------------------------------------- knowledge masking
def test_entity_masking_covers_whole_entity_spans():
    words = ["new", "york", "city", "is", "big", "and", "john", "smith", "lives", "there", "too"]
    tok = make_tokenizer(words)
    text = "New York City is big and John Smith lives there too."
    doc = doc_of(text, spans={text: [("New York City", "entity"), ("John Smith", "entity")]})
    task = create_task("knowledge_masking", tokenizer=tok, max_len=32, levels="entity:1")
    spans = [(1, 4), (7, 9)]  # token positions of the entities after [CLS]
    masked_entities = 0
    for seed in range(400):
        ex = task.build(doc, random.Random(seed))
        for a, b in spans:
            hit = [ex.labels[t] != IGN for t in range(a, b)]
            assert all(hit) or not any(hit), (seed, ex.labels)
            masked_entities += all(hit)
        assert all(lab in (IGN, i0) for lab, i0 in zip(ex.labels, tok.encode(text)[0]))
    assert masked_entities > 50
    # At basic level entities are not units: their words get masked alone.
    basic = create_task("knowledge_masking", tokenizer=tok, max_len=32, levels="basic:1")
    partial = sum(0 < sum(basic.build(doc, random.Random(s)).labels[t] != IGN
                          for t in range(1, 4)) < 3 for s in range(400))
    assert partial > 20


def test_phrase_masking_keeps_chinese_words_whole_and_basic_splits_them():
    tok = make_tokenizer(list("我们热爱北京天安门"))
    s = Sentence("我们热爱北京天安门", words=["我们", "热爱", "北京", "天安门"],
                 spans=[Span(4, 9, "phrase")])
    doc = Document([[s]], lang="zh")
    words = [(1, 3), (3, 5), (5, 10)]  # 我们 热爱 | 北京天安门 (the phrase)
    phrase = create_task("knowledge_masking", tokenizer=tok, max_len=32, levels="phrase:1")
    basic = create_task("knowledge_masking", tokenizer=tok, max_len=32, levels="basic:1")
    split = 0
    for seed in range(300):
        ex = phrase.build(doc, random.Random(seed))
        for a, b in words:
            hit = [ex.labels[t] != IGN for t in range(a, b)]
            assert all(hit) or not any(hit)
        exb = basic.build(doc, random.Random(seed))
        split += any(0 < sum(exb.labels[t] != IGN for t in range(a, b)) < b - a
                     for a, b in words)
    assert split > 200  # characters are the basic units: words get masked in part


def test_masking_rates_15_percent_of_units_and_80_10_10():
    tok = make_tokenizer([f"t{i}" for i in range(500)])
    info = vocab_info(tok)
    rng = random.Random(0)
    units = [(a, a + 1 + a % 3) for a in range(0, 97 * 4, 4)]  # 97 units of 1-3 tokens
    original = list(range(10, 10 + 97 * 4))
    chosen = kinds = 0
    kind = Counter()
    for _ in range(3000):
        ids = list(original)
        labels = mask_units(ids, units, rng, info, tok.mask_id)
        for a, b in units:
            if labels[a] == IGN:
                assert all(labels[t] == IGN for t in range(a, b))
                continue
            chosen += 1
            assert [labels[t] for t in range(a, b)] == original[a:b]
            if all(ids[t] == tok.mask_id for t in range(a, b)):
                kind["mask"] += 1
            elif ids[a:b] == original[a:b]:
                kind["same"] += 1
            else:
                kind["random"] += 1
                assert all(i not in info.special for i in ids[a:b])
        kinds += 1
    assert abs(chosen / (97 * 3000) - 0.15) < 0.003
    total = sum(kind.values())
    assert abs(kind["mask"] / total - 0.8) < 0.015
    assert abs(kind["random"] / total - 0.1) < 0.012
    assert abs(kind["same"] / total - 0.1) < 0.012


def test_task_masks_15_percent_of_words():
    words = [f"x{i}" for i in range(60)]
    tok = make_tokenizer(words)
    doc = doc_of(" ".join(words) + ".")
    task = create_task("knowledge_masking", tokenizer=tok, max_len=128, levels="basic:1")
    masked = sum(sum(lab != IGN for lab in task.build(doc, random.Random(s)).labels)
                 for s in range(1000))
    assert abs(masked / (1000 * 61) - 0.15) < 0.005  # 61 units: 60 words and the full stop


def test_fill_adds_the_next_sentence_cut_at_max_len():
    """Sentences of 6 tokens (5 words and a full stop), max_len 16: the window holds two (12 of
    the 14 free positions); `fill` adds the third's first two tokens, never past the document."""
    words = [f"w{i}" for i in range(15)]
    tok = make_tokenizer(words)
    doc = doc_of(" | ".join(" ".join(words[i:i + 5]) + "." for i in range(0, 15, 5)))
    plain = create_task("knowledge_masking", tokenizer=tok, max_len=16, levels="basic:1")
    filled = create_task("knowledge_masking", tokenizer=tok, max_len=16, levels="basic:1",
                         fill=True)
    ids = list(tok.encode(" ".join(s.text for s in doc.sentences))[0][1:-1])  # 18 tokens
    def original(ex):  # the input with every masked position given back its label
        return [t if lab == IGN else lab for t, lab in zip(ex.input_ids, ex.labels)][1:-1]

    starts = Counter()
    for seed in range(60):
        a, b = plain.build(doc, random.Random(seed)), filled.build(doc, random.Random(seed))
        k = ids.index(original(a)[0])
        starts[k] += 1
        if k == 0:  # the window starts at sentence 1: sentence 3 is cut in
            assert len(a.input_ids) == 14 and original(a) == ids[:12]
            assert len(b.input_ids) == 16 and original(b) == ids[:14]
            assert b.input_ids[-1] == tok.sep_id
        else:  # a window that reaches the document's end is not filled
            assert original(b) == original(a) == ids[k:]
    assert starts[0] and len(starts) == 3


# ---------------------------------------------------------------------- discourse relation
def test_discourse_pairs_mined_marker_removed():
    tok = make_tokenizer(["the", "plan", "was", "good", "it", "failed", "we", "left", "then",
                          "however"])
    doc = doc_of("The plan was good.|However, it failed.|Then we left.")
    task = create_task("discourse_relation", tokenizer=tok, max_len=32, task_id=6)
    rel = task.relations
    seen = {}
    for seed in range(30):
        ex = task.build(doc, random.Random(seed))
        a, b = (tok.convert_ids_to_tokens(s) for s in split_segments(ex.input_ids, tok))
        seen[rel[ex.labels]] = (a, b)
    assert seen == {"contrast": (["the", "plan", "was", "good", "."], ["it", "failed", "."]),
                    "temporal": (["however", ",", "it", "failed", "."], ["we", "left", "."])}
    assert task.build(doc_of("No marker here.|Nor here."), random.Random(0)) is None
    assert task.stats["skipped_no_marker"] == 1


def test_sentence_tasks_on_clauses_of_a_one_sentence_review():
    """`units = "clauses"`: a review of one long sentence gives the sentence-level tasks its
    clauses (here a contrast pair, and three units to reorder and to measure distances on)."""
    tok = make_tokenizer(list("质量不错但是价格太贵物流也很慢"))
    review = "质量不错，但是价格太贵，物流也很慢。"
    doc = doc_of(review, lang="zh", source="r1")
    dr = create_task("discourse_relation", tokenizer=tok, max_len=32)
    assert dr.build(doc, random.Random(0)) is None and dr.stats["skipped_one_sentence"] == 1
    dr = create_task("discourse_relation", tokenizer=tok, max_len=32, units="clauses")
    ex = dr.build(doc, random.Random(0))
    a, b = (tok.convert_ids_to_tokens(s) for s in split_segments(ex.input_ids, tok))
    assert dr.relations[ex.labels] == "contrast"
    assert (a, b) == (list("质量不错，"), list("价格太贵，"))
    assert doc.sentences[0].text == review  # the document itself is unchanged

    sd = create_task("sentence_distance", tokenizer=tok, max_len=32, units="clauses")
    other = doc_of("物流很慢。", lang="zh", source="r2")
    got = Counter()
    for seed in range(60):
        ex = sd.build([doc, other][seed % 5 == 0], random.Random(seed))
        if ex is not None and seed % 5:
            a, b = ("".join(tok.convert_ids_to_tokens(s)) for s in split_segments(ex.input_ids, tok))
            got[ex.labels] += 1
            if ex.labels == 0:
                assert (a, b) in {("质量不错，", "但是价格太贵，"), ("但是价格太贵，", "物流也很慢。")}
            elif ex.labels == 1:
                assert {a, b} == {"质量不错，", "物流也很慢。"}
            else:
                assert b == "物流很慢。"
    assert set(got) == {0, 1, 2}

    sr = create_task("sentence_reordering", tokenizer=tok, max_len=32, units="clauses")
    labels = {sr.build(doc, random.Random(s)).labels for s in range(200)}
    assert labels == set(range(9))  # three clauses allow every permutation of up to three
    with pytest.raises(ValueError, match="units must be one of sentences, clauses"):
        create_task("sentence_distance", tokenizer=tok, units="words")


def test_discourse_from_labeled_tsv(tmp_path):
    tok = make_tokenizer(["a", "b", "c"])
    f = tmp_path / "pairs.tsv"
    f.write_text("text_a\ttext_b\tlabel\na\tb\tcontrast\nb\tc\t3\n", encoding="utf-8")
    task = create_task("discourse_relation", tokenizer=tok, max_len=16, data=str(f))
    got = {task.build(doc_of("ignored."), random.Random(s)).labels for s in range(20)}
    assert got == {0, 3}
    f.write_text("text_a\ttext_b\tlabel\na\tb\tsarcasm\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs.tsv:2: label 'sarcasm' is not a relation"):
        create_task("discourse_relation", tokenizer=tok, max_len=16, data=str(f))
    f.write_text("first\tsecond\tlabel\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header needs one of the columns text_a"):
        create_task("discourse_relation", tokenizer=tok, max_len=16, data=str(f))


# --------------------------------------------------------------------------- ir relevance
def test_ir_weak_supervision_labels():
    words = "apple harvest farmers pick apples prices rose sharply ocean tides move daily".split()
    tok = make_tokenizer(words)
    docs = [doc_of("Apple farmers pick apples.|More text.", title="Apple harvest", source="1"),
            doc_of("Apple prices rose sharply.|More.", title="Apple prices", source="2"),
            doc_of("Ocean tides move daily.|More.", title="Ocean tides", source="3")]
    lead = {d.title: tok.encode(d.sentences[0].text)[0].tolist()[1:-1] for d in docs}
    task = create_task("ir_relevance", tokenizer=tok, max_len=32, task_id=7)
    counts = Counter()
    for seed in range(300):
        doc = docs[seed % 3]
        ex = task.build(doc, random.Random(seed))
        if ex is None:
            continue
        q, t = split_segments(ex.input_ids, tok)
        owner = next(k for k, v in lead.items() if v == t)
        if ex.labels == 0:
            assert owner == doc.title
        elif ex.labels == 1:
            assert owner != doc.title and "Apple" in owner and "Apple" in doc.title
        else:
            assert ("Apple" in owner) != ("Apple" in doc.title)
        counts[ex.labels] += 1
    assert set(counts) == {0, 1, 2}
    assert task.build(doc_of("Untitled."), random.Random(0)) is None
    assert task.stats["skipped_no_title"] == 1


def test_ir_from_search_log_tsv(tmp_path):
    tok = make_tokenizer(["q", "t"])
    f = tmp_path / "log.tsv"
    f.write_text("query\ttitle\tlabel\nq\tt\t0\nq\tq\tweak\nt\tq\t2\n", encoding="utf-8")
    task = create_task("ir_relevance", tokenizer=tok, max_len=16, data=str(f))
    assert {task.build(doc_of("x."), random.Random(s)).labels for s in range(30)} == {0, 1, 2}
    f.write_text("query\ttitle\tlabel\nq\tt\t7\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"log.tsv:2: label must be 0 \(strong\)"):
        create_task("ir_relevance", tokenizer=tok, max_len=16, data=str(f))


# ------------------------------------------------------------------ next sentence, mlm
def test_next_sentence_pairs_and_ernie1_lines():
    words = [f"{d}{i}" for d in "ab" for i in range(4)]
    tok = make_tokenizer(words)
    docs = [doc_of("|".join(f"{d}{i} ." for i in range(4)), source=d) for d in "ab"]
    where = {tok.vocab[w]: (w[0], int(w[1])) for w in words}
    task = create_task("next_sentence", tokenizer=tok, max_len=32)
    counts = Counter()
    for seed in range(200):
        ex = task.build(docs[seed % 2], random.Random(seed))
        if ex is None:
            continue
        a, b = split_segments(ex.input_ids, tok)
        (da, ia), (db, ib) = where[a[-2]], where[b[0]]
        assert (ex.labels == 1) == (da == db and ib == ia + 1)
        assert ex.labels == 1 or da != db
        counts[ex.labels] += 1
    assert abs(counts[1] / sum(counts.values()) - 0.5) < 0.1
    line = Document([[Sentence("", token_ids=[7, 8], seg_labels=[0, 1]),
                      Sentence("", token_ids=[9], seg_labels=[0])]],
                    meta={"next_sentence_label": 0})
    ex = task.build(line, random.Random(0))
    assert (ex.input_ids, ex.sent_ids, ex.labels) == ([1, 7, 8, 2, 9, 2], [0, 0, 0, 0, 1, 1], 0)


def test_knowledge_masking_on_ernie1_lines_uses_seg_labels():
    tok = make_tokenizer([f"t{i}" for i in range(40)])
    a = list(range(10, 30))
    line = Document([[Sentence("", token_ids=a, seg_labels=[0, 1] * 10),
                      Sentence("", token_ids=[30, 31], seg_labels=[0, 1])]],
                    meta={"next_sentence_label": 1, "mask_word_prob": 1.0})
    task = create_task("knowledge_masking", tokenizer=tok, max_len=64)
    for seed in range(100):
        ex = task.build(line, random.Random(seed))
        assert ex.sent_ids == [0] * 22 + [1] * 3
        labels = ex.labels[1:21]
        assert all((labels[k] == IGN) == (labels[k + 1] == IGN) for k in range(0, 20, 2))


def test_mlm_masks_single_tokens():
    tok = make_tokenizer(["cat", "##s", "sleep"])
    doc = doc_of(" ".join(["Cats sleep"] * 20) + ".")
    task = create_task("mlm", tokenizer=tok, max_len=128)
    split = sum(any(lab != IGN and nxt == IGN for lab, nxt in zip(ex.labels[1::3], ex.labels[2::3]))
                for ex in (task.build(doc, random.Random(s)) for s in range(50)))
    assert split > 25 and task.stats["level_token"] == 50
