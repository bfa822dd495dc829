"""Every reader of corpora and of fine-tuning data fed random bytes, random UTF-8, cut-off
compressed files and random column counts (hypothesis): each input either parses, correctly,
or raises a ValueError (BadInput / DataError) that names the file; never another exception."""

from __future__ import annotations

import bz2
import gzip
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ernie2.corpus import READERS
from ernie2.finetune.readers import read_label_map, read_ner, read_squad, read_text_tsv

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
WORK = Path(tempfile.mkdtemp(prefix="ernie2-fuzz-"))

# Characters the formats give meaning to, mixed with any others.
SYNTAX = list("\t\n\r ;,:/{}[]\"'<>=|#-.0123456789\x02") + [
    "text_a", "label", "text_b", "qid", "<page>", "<text>", "\\u", "nan", "inf", "1e400"]
texts = st.lists(st.sampled_from(SYNTAX) | st.text(max_size=4), max_size=60).map("".join)
raw_bytes = st.binary(max_size=300)


def _compressed(draw_bytes: bytes, cut: int, kind: str) -> bytes:
    packed = gzip.compress(draw_bytes) if kind == "gz" else bz2.compress(draw_bytes)
    return packed[: max(3, cut % (len(packed) + 1))]


compressed = st.builds(_compressed, texts.map(lambda t: t.encode("utf-8")), st.integers(0, 400),
                       st.sampled_from(["gz", "bz2"]))
contents = raw_bytes | texts.map(lambda t: t.encode("utf-8")) | compressed


def _file(data: bytes, name: str) -> Path:
    path = WORK / name
    path.write_bytes(data)
    return path


def _parses_or_names_the_file(read, path: Path):
    """Run a reader to the end; a failure must be a ValueError naming `path`."""
    try:
        return read(path)
    except ValueError as exc:
        assert str(path) in str(exc), f"{type(exc).__name__} without the file: {exc}"
        return None


# ---------------------------------------------------------------------- corpus readers
CORPUS_READERS = sorted(n for n in READERS if n != "ernie1")


@pytest.mark.parametrize("fmt", CORPUS_READERS)
@SETTINGS
@given(data=contents, lang=st.sampled_from(["auto", "en", "zh"]))
def test_corpus_readers_parse_or_fail_clearly(fmt, data, lang):
    path = _file(data, f"corpus.{fmt}")
    docs = _parses_or_names_the_file(lambda p: list(READERS[fmt](p, lang=lang)), path)
    for doc, _pos in docs or ():
        assert doc.paragraphs and all(isinstance(s.text, str) for p in doc.paragraphs for s in p)


@SETTINGS
@given(data=contents)
def test_ernie1_reader_parses_or_fails_clearly(data):
    path = _file(data, "part-0")
    _parses_or_names_the_file(lambda p: list(READERS["ernie1"](p)), path)


@SETTINGS
@given(fields=st.lists(st.lists(st.integers(-2, 30), min_size=0, max_size=6), min_size=1,
                       max_size=7))
def test_ernie1_reader_on_random_field_counts(fields):
    line = ";".join(" ".join(map(str, f)) for f in fields)
    path = _file((line + "\n").encode(), "part-1")
    docs = _parses_or_names_the_file(lambda p: list(READERS["ernie1"](p)), path)
    if docs:  # parsed: exactly five fields, the first four of one length
        assert len(fields) == 5 and len({len(f) for f in fields[:4]}) == 1


# ---------------------------------------------------------------------- fine-tuning readers
@pytest.mark.parametrize("kwargs", [{}, {"pair": True}, {"pair": None, "regression": True},
                                    {"pair": True, "need_qid": True}, {"need_label": False}])
@SETTINGS
@given(data=contents)
def test_tsv_reader_on_random_input(kwargs, data):
    got = _parses_or_names_the_file(lambda p: read_text_tsv(p, **kwargs),
                                    _file(data, "train.tsv"))
    for ex in got or ():  # parsed: texts non-empty, regression labels finite numbers
        assert ex.text_a.strip()
        if kwargs.get("regression") and ex.label is not None:
            assert math.isfinite(ex.label)


cells = st.text(st.characters(blacklist_characters="\t\r\n", blacklist_categories=["Cs"]),
                max_size=8)


@SETTINGS
@given(extra=st.lists(st.sampled_from(["text_b", "x", "label", "text_a"]), max_size=3,
                      unique=True), data=st.data(), regression=st.booleans())
def test_tsv_reader_on_random_column_counts(extra, data, regression):
    header = list(dict.fromkeys(["text_a", "label", *extra]))
    if data.draw(st.booleans()):  # sometimes a required column is missing
        header.remove(data.draw(st.sampled_from(["text_a", "label"])))
    numbers = st.sampled_from(["1.5", "-2", "nan", "inf", "-Infinity", " 3 "])
    words = st.text("ab中", min_size=1, max_size=5)
    column = {"text_a": words, "text_b": words, "label": numbers if regression else words}
    right = st.tuples(*(column.get(h, cells) for h in header)).map(list)
    wrong = st.lists(cells, max_size=6)  # any number of columns
    rows = data.draw(st.lists(right | wrong, min_size=1, max_size=3))
    text = "\n".join(["\t".join(header), *("\t".join(r) for r in rows)]) + "\n"
    path = _file(text.encode("utf-8"), "dev.tsv")
    got = _parses_or_names_the_file(lambda p: read_text_tsv(p, pair=None, regression=regression),
                                    path)
    data_rows = [r for r in rows if "\t".join(r).strip()]
    if got is None:
        return
    # parsed: the header names text_a and label, every row has as many cells as the header
    assert "text_a" in header and "label" in header
    assert len(got) == len(data_rows) and all(len(r) == len(header) for r in data_rows)
    for ex, r in zip(got, data_rows):
        assert ex.text_a == r[header.index("text_a")].strip()
        label = r[header.index("label")].strip()
        if regression:
            assert math.isfinite(ex.label) and ex.label == float(label)
        else:
            assert ex.label == label


@SETTINGS
@given(data=contents | texts.map(lambda t: ("text_a\tlabel\n" + t).encode("utf-8")))
def test_ner_reader_on_random_input(data):
    _parses_or_names_the_file(lambda p: read_ner(p), _file(data, "train.txt"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["data", "paragraphs", "context", "qas", "id", "question", "answers",
                         "text", "answer_start", "x"]), inner, max_size=4), max_leaves=20)


@SETTINGS
@given(data=contents | json_values.map(lambda v: json.dumps({"data": v}).encode()))
def test_squad_reader_on_random_input(data):
    got = _parses_or_names_the_file(read_squad, _file(data, "train.json"))
    for ex in got or ():
        for a in ex.answers:  # parsed: every answer lies in its context
            assert ex.context[a.start:a.start + len(a.text)] == a.text


@SETTINGS
@given(context=st.text(st.sampled_from("abxyz 中文"), min_size=1, max_size=12), data=st.data())
def test_squad_answer_offsets(context, data):
    """answer_start drawn around the answer's true offset, and its negative alias (what a
    Python index from the end would find)."""
    p = data.draw(st.integers(0, len(context) - 1))
    text = context[p:data.draw(st.integers(p + 1, len(context)))]
    start = data.draw(st.sampled_from([p, p - len(context), p + 1, -1, len(context)]))
    squad = {"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": "q", "question": "?", "answers": [{"text": text, "answer_start": start}]}]}]}]}
    got = _parses_or_names_the_file(read_squad, _file(json.dumps(squad).encode(), "dev.json"))
    for ex in got or ():
        for a in ex.answers:
            assert 0 <= a.start and ex.context[a.start:a.start + len(a.text)] == a.text


@SETTINGS
@given(data=contents | json_values.map(lambda v: json.dumps(v).encode()))
def test_label_map_reader_on_random_input(data):
    got = _parses_or_names_the_file(read_label_map, _file(data, "label_map.json"))
    if got is not None:
        assert len(set(got)) == len(got)
