"""Fine-tuning readers on every format, bad inputs included, and label alignment to pieces."""

import pytest

from ernie2.finetune.readers import (DataError, Labels, collect_labels, read_label_map, read_ner,
                                     read_ner_columns, read_ner_tsv, read_text_tsv,
                                     strip_cjk_spaces, write_label_map)
from ernie2.finetune.task_types import TaskOptions, get_task_type
from ernie2.tokenizer import ErnieTokenizer
from ernie2.tokenizer.vocab import SPECIAL_TOKENS


def _write(tmp_path, text, name="data.tsv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---------------------------------------------------------------------- TSV
def test_tsv_columns_are_matched_by_name_in_any_order(tmp_path):
    p = _write(tmp_path, "label\tid\ttext_b\ttext_a\n1\t7\t第二句\t第一句\n0\t8\tb\ta\n")
    ex = read_text_tsv(p, pair=True)
    assert [(e.text_a, e.text_b, e.label) for e in ex] == [("第一句", "第二句", "1"),
                                                          ("a", "b", "0")]
    assert ex[1].source == f"{p}:3"


def test_tsv_single_text_ignores_text_b_and_optional_pair_reads_it(tmp_path):
    p = _write(tmp_path, "text_a\ttext_b\tlabel\nx\ty\t2.5\n")
    assert read_text_tsv(p)[0].text_b is None
    got = read_text_tsv(p, pair=None, regression=True)[0]
    assert (got.text_b, got.label) == ("y", 2.5)


def test_for_cn_strips_spaces_next_to_chinese_only():
    assert strip_cjk_spaces("我 爱 NLP 和 deep learning ，好 ！") == "我爱NLP和deep learning，好！"
    assert strip_cjk_spaces(" a b ") == "a b"


def test_tsv_for_cn_and_qid(tmp_path):
    p = _write(tmp_path, "qid\ttext_a\ttext_b\tlabel\n3\t谁 是 作 者\t鲁 迅 写 的\t1\n")
    e = read_text_tsv(p, pair=True, need_qid=True, for_cn=True)[0]
    assert (e.qid, e.text_a, e.text_b) == ("3", "谁是作者", "鲁迅写的")


def test_test_files_may_lack_labels(tmp_path):
    p = _write(tmp_path, "text_a\nhello\n\nworld\n")  # a blank line carries nothing
    assert [(e.text_a, e.label) for e in read_text_tsv(p, need_label=False)] == [
        ("hello", None), ("world", None)]


@pytest.mark.parametrize("content,kwargs,match", [
    ("text_a\tlabel\nx\t1\ty\n", {}, r":2: expected 2 tab-separated columns \(text_a, label\), "
                                     r"found 3"),
    ("text_a\tlabel\nok\t1\nbad\n", {}, r":3: expected 2 tab-separated columns"),
    ("text\tlabel\nx\t1\n", {}, r":1: header has no column 'text_a'"),
    ("text_a\tlabel\n \t1\n", {}, r":2: empty text_a"),
    ("text_a\ttext_b\tlabel\nx\t\t1\n", {"pair": True}, r":2: empty text_b"),
    ("text_a\tlabel\nx\t\n", {}, r":2: empty label"),
    ("text_a\tlabel\nx\thigh\n", {"regression": True}, r":2: label 'high' is not a number"),
    ("text_a\tlabel\n", {}, r"no data rows after the header"),
    ("", {}, r"empty file"),
    ("text_a\tlabel\n x\t1\n", {"need_qid": True}, r":1: header has no column 'qid'"),
])
def test_tsv_errors_name_file_line_and_problem(tmp_path, content, kwargs, match):
    p = _write(tmp_path, content)
    with pytest.raises(DataError, match=match) as err:
        read_text_tsv(p, **kwargs)
    assert str(p) in str(err.value)


def test_not_utf8_is_an_error_naming_the_file(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_bytes(b"text_a\tlabel\n" + "中文\t1\n".encode("gbk"))
    with pytest.raises(DataError, match=r"bad.tsv: not UTF-8"):
        read_text_tsv(p)


# ---------------------------------------------------------------------- label maps
def test_label_map_round_trip_and_checks(tmp_path):
    p = tmp_path / "label_map.json"
    write_label_map(["O", "B-PER", "I-PER"], p)
    assert read_label_map(p) == ["O", "B-PER", "I-PER"]
    for bad, match in [('{"a": 0, "b": 2}', r"ids must be 0..1"),
                       ('{"a": 0, "b": 0}', r"share id 0"),
                       ('{"a": "0"}', r"expected an integer"),
                       ('["a"]', r"expected a JSON object"),
                       ('{"a": 0,', r"label_map.json:1: not valid JSON")]:
        p.write_text(bad, encoding="utf-8")
        with pytest.raises(DataError, match=match):
            read_label_map(p)


def test_labels_collected_from_training_data_sort_numbers_numerically(tmp_path):
    p = _write(tmp_path, "text_a\tlabel\na\t10\nb\t2\nc\t2\nd\t0\n")
    assert collect_labels(read_text_tsv(p)) == ["0", "2", "10"]
    labels = Labels(["0", "2", "10"])
    assert labels.id("10") == 2
    with pytest.raises(DataError, match=r"dev.tsv:5: unknown label '3' \(known: 0, 2, 10\)"):
        labels.id("3", "dev.tsv:5")


def test_unknown_dev_label_is_an_error_naming_its_line(tmp_path):
    task = get_task_type("classify")
    train = task.read(_write(tmp_path, "text_a\tlabel\na\tpos\nb\tneg\n"), TaskOptions(), True)
    dev = task.read(_write(tmp_path, "text_a\tlabel\na\tpos\nb\tmaybe\n", "dev.tsv"),
                    TaskOptions(), True)
    tok = _tokenizer("ab")
    with pytest.raises(DataError, match=r"dev.tsv:3: unknown label 'maybe'"):
        task.encode(dev, tok, task.collect_labels(train), TaskOptions())


# ---------------------------------------------------------------------- NER
def test_ner_tsv_with_x02_or_spaces(tmp_path):
    p = _write(tmp_path, "text_a\tlabel\n江\x02泽\x02民\tB-PER\x02I-PER\x02I-PER\n"
                         "in Paris\tO B-LOC\n")
    ex = read_ner_tsv(p)
    assert ex[0].tokens == ["江", "泽", "民"] and ex[0].labels == ["B-PER", "I-PER", "I-PER"]
    assert ex[1].tokens == ["in", "Paris"] and ex[1].labels == ["O", "B-LOC"]
    assert read_ner(p)[1].labels == ["O", "B-LOC"]  # detected by its header


def test_ner_column_file_like_the_seed_tutorial(tmp_path):
    p = _write(tmp_path, "江 B-PER\n泽 I-PER\n民 I-PER\n\n\n在 O\n北 B-LOC\n京 I-LOC\n",
               "train.txt")
    ex = read_ner(p)
    assert [e.tokens for e in ex] == [["江", "泽", "民"], ["在", "北", "京"]]
    assert ex[1].labels == ["O", "B-LOC", "I-LOC"] and ex[1].source == f"{p}:6"
    # CoNLL-style middle columns are skipped; the last column is the label.
    p2 = _write(tmp_path, "EU NNP B-ORG\nrejects VBZ O\n", "conll.txt")
    assert read_ner_columns(p2)[0].labels == ["B-ORG", "O"]
    # Test data: tokens only.
    p3 = _write(tmp_path, "江\n泽\n\n北\n", "test.txt")
    assert [(e.tokens, e.labels) for e in read_ner(p3, need_label=False)] == [
        (["江", "泽"], None), (["北"], None)]


@pytest.mark.parametrize("content,name,match", [
    ("text_a\tlabel\n江\x02泽\tB-PER\n", "a.tsv", r"a.tsv:2: 2 tokens but 1 labels"),
    ("text_a\tlabel\n\tO\n", "a.tsv", r"a.tsv:2: empty text_a"),
    ("text_a\tlabel\n江\x02\x02泽\tO\x02O\x02O\n", "a.tsv", r"a.tsv:2: empty token at position 1"),
    ("江 B-PER\n泽\n", "b.txt", r"b.txt:2: expected 'token label', found '泽'"),
    ("\n\n", "c.txt", r"c.txt: no sentences"),
])
def test_ner_errors_name_file_line_and_problem(tmp_path, content, name, match):
    with pytest.raises(DataError, match=match):
        read_ner(_write(tmp_path, content, name))


def _tokenizer(text, words=()):
    chars = sorted(set(text.lower()) - {" "})
    tokens = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars), *words]
    return ErnieTokenizer({t: i for i, t in enumerate(dict.fromkeys(tokens))})


def test_ner_labels_align_to_the_first_piece_and_long_sentences_split(tmp_path):
    # "playing" is two pieces (play ##ing); "O" has id 2 here, not the last id.
    tok = _tokenizer("abc", words=["play", "##ing", "tom", "in"])
    p = _write(tmp_path, "text_a\tlabel\ntom playing in a b c\tB-PER O O B-X I-X I-X\n")
    task = get_task_type("ner")
    ex = task.read(p, TaskOptions(), True)
    labels = Labels(["B-PER", "B-X", "O", "I-X"])
    feats = task.encode(ex, tok, labels, TaskOptions(max_len=6))  # 4 pieces per feature
    assert [tok.convert_ids_to_tokens(f["input_ids"]) for f in feats] == [
        ["[CLS]", "tom", "play", "##ing", "in", "[SEP]"], ["[CLS]", "a", "b", "c", "[SEP]"]]
    assert [f["word_starts"] for f in feats] == [[1, 2, 4], [1, 2, 3]]
    assert [f["labels"] for f in feats] == [[0, 2, 2], [1, 3, 3]]
    assert [f["word_offset"] for f in feats] == [0, 3]
    # Predictions map back to the six original tokens.
    preds = task.decode(ex, feats, [[0, 2, 2], [1, 3, 3]], labels, TaskOptions())
    assert preds[0]["tags"] == ["B-PER", "O", "O", "B-X", "I-X", "I-X"]
    assert task.score(ex, preds, labels, TaskOptions())["f1"] == 1.0


def test_ner_scheme_option_checks_tags(tmp_path):
    p = _write(tmp_path, "text_a\tlabel\na b\tS-PER O\n")
    task = get_task_type("ner")
    ex = task.read(p, TaskOptions(), True)
    with pytest.raises(DataError, match=r"data.tsv:2: tag 'S-PER' of token 0 is not of the BIO"):
        task.encode(ex, _tokenizer("ab"), Labels(["S-PER", "O"]), TaskOptions(scheme="BIO"))
