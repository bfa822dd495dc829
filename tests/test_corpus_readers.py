"""Corpus readers (every format), bad input, resumable positions, prepared shards, held-out
split."""

from __future__ import annotations

import bz2
import gzip
import json
from collections import Counter

import pytest

from ernie2.corpus import (CorpusSpec, document_from_json, document_to_json, is_heldout,
                           iter_documents, iter_positioned, prepare_corpus, sniff_format)
from ernie2.corpus.ernie1 import read_ernie1
from ernie2.corpus.tagged import read_pos
from ernie2.corpus.wiki import clean_wikitext, read_wiki

TEXT = ("The first document starts here. It has two sentences.\n"
        "A second paragraph.\n\n\n"
        "Second document. Only one paragraph.\n\n"
        "Third document here.\n")

POS = ("北京/ns  举行/v  新年/t  音乐会/n\n"
       "（/w  附/v  图片/n  １/m  张/q  ）/w\n"
       "江/nr  泽民/nr  出席/v  了/u  [中央/n  电视台/n]nt  的/u  晚会/n  。/w  观众/n  欢欣鼓舞/i  。/w\n"
       "（/w  Ａ/nx  ）/w\n"
       "李/nr  鹏/nr  说/v  ：/w  “/w  好/a  ！/w  ”/w\n"
       "上海/ns  迎来/v  新年/t\n"
       "副/b  标题/n\n"
       "上海/ns  今天/t  很/d  热闹/a  。/w\n")

WIKI_HEAD = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">\n'
             '<page><title>Redirected</title><ns>0</ns><redirect title="X"/><revision>'
             '<text>#REDIRECT [[X]]</text></revision></page>\n'
             '<page><title>Talk:Thing</title><ns>1</ns><revision>'
             '<text>Talk pages are not articles at all, no.</text></revision></page>\n')
WIKI_PAGE = """<page><title>{title}</title><ns>0</ns><revision><text>{{{{Infobox city|name=Paris|{{{{nested|x}}}}}}}}
'''Paris''' is the [[capital city|capital]] of [[France]].&lt;ref&gt;A source.&lt;/ref&gt; It lies on the [[Seine]]s banks and hosts the [[Louvre Museum|Louvre]].
[[File:Paris.jpg|thumb|A [[picture]] of the city]]

== History ==
* a list item that is not prose at all
The [[Parisii]] lived here long before [[Julius Caesar]] came, say the [[ancient history|old books]].
{{| class="wikitable"
| table cell that must go away
|}}

== References ==
Everything here is dropped, even long sentences like this one.
[[Category:Cities]]</text></revision></page>
"""


def wiki_dump(*titles: str) -> str:
    return WIKI_HEAD + "".join(WIKI_PAGE.format(title=t) for t in titles) + "</mediawiki>\n"


def write(path, text, mode="w"):
    if mode == "w":
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


# ------------------------------------------------------------------------------ formats
def test_text_reader_documents_paragraphs_sentences(tmp_path):
    f = write(tmp_path / "c.txt", TEXT)
    docs = list(iter_documents(CorpusSpec(str(f), format="text", annotate=False)))
    assert [len(d.paragraphs) for d in docs] == [2, 1, 1]
    assert [s.text for s in docs[0].sentences] == [
        "The first document starts here.", "It has two sentences.", "A second paragraph."]
    assert docs[1].source.endswith("c.txt:5") and docs[0].lang == "en"


def test_segmented_reader_joins_words_by_language(tmp_path):
    f = write(tmp_path / "seg.txt", "我们 爱 北京 。 你 呢 ？\n\nthe cat sat . it slept .\n")
    zh, en = iter_documents(CorpusSpec(str(f), format="segmented", annotate=False))
    assert [s.text for s in zh.sentences] == ["我们爱北京。", "你呢？"]
    assert zh.sentences[0].words == ["我们", "爱", "北京", "。"] and zh.lang == "zh"
    assert [s.text for s in en.sentences] == ["the cat sat .", "it slept ."]


def test_jsonl_round_trip_keeps_words_and_spans(tmp_path):
    rec = {"title": "T", "lang": "zh", "paragraphs": [
        [{"text": "李鹏在北京。", "words": "李鹏 在 北京 。", "spans": [[0, 2, "entity", "PER"],
                                                                 [3, 5, "entity"]]}],
        "第二段。还有一句。"]}
    doc = document_from_json(rec, "x:1")
    assert [s.text for s in doc.sentences] == ["李鹏在北京。", "第二段。", "还有一句。"]
    assert doc.sentences[0].words == ["李鹏", "在", "北京", "。"]
    assert [(s.start, s.end, s.kind, s.type) for s in doc.sentences[0].spans] == [
        (0, 2, "entity", "PER"), (3, 5, "entity", None)]
    again = document_from_json(json.loads(json.dumps(document_to_json(doc))), "y:1")
    assert again.sentences[0] == doc.sentences[0] and again.title == "T"


@pytest.mark.parametrize("line, expected", [
    ("{not json", r"c.jsonl:2: not valid JSON"),
    ('{"paragraphs": 3}', r"c.jsonl:2: 'paragraphs' must be a list"),
    ('{"title": "x"}', r"c.jsonl:2: expected a 'paragraphs' list or a 'text' string"),
    ('{"paragraphs": [[{"text": "ab", "spans": [[0, 9]]}]]}', r"c.jsonl:2.*outside the sentence"),
    ('{"paragraphs": [[{"text": "ab", "spans": [[0, 1, "name"]]}]]}', r"kind must be"),
])
def test_jsonl_bad_records_name_file_and_line(tmp_path, line, expected):
    f = write(tmp_path / "c.jsonl", '{"paragraphs": ["Fine."]}\n' + line + "\n")
    with pytest.raises(ValueError, match=expected):
        list(iter_documents(str(f)))
    stats = Counter()
    docs = list(iter_documents(CorpusSpec(str(f), on_error="skip"), stats=stats))
    assert len(docs) == 1 and stats["skipped_bad_records"] == 1


def test_undecodable_bytes_raise_with_file_and_line_or_are_counted(tmp_path):
    f = write(tmp_path / "bad.txt", b"Good line one.\n\xff\xfe broken\nStill here.\n", "wb")
    with pytest.raises(ValueError, match=r"bad.txt:2: not UTF-8 text"):
        list(iter_documents(CorpusSpec(str(f), format="text")))
    stats = Counter()
    (doc,) = iter_documents(CorpusSpec(str(f), format="text", on_error="skip"), stats=stats)
    assert [s.text for s in doc.sentences] == ["Good line one.", "Still here."]
    assert stats["skipped_undecodable_lines"] == 1


def test_empty_documents_are_skipped_and_counted(tmp_path):
    f = write(tmp_path / "e.jsonl", '{"paragraphs": []}\n{"paragraphs": ["One."]}\n'
                                    '{"paragraphs": [[]]}\n')
    stats = Counter()
    docs = list(iter_documents(str(f), stats=stats))
    assert len(docs) == 1 and stats["skipped_empty_documents"] == 2


def test_pos_reader_recovers_articles_and_keeps_tags(tmp_path):
    f = write(tmp_path / "pd.txt", POS)
    stats = Counter()
    docs = [d for d, _ in read_pos(f, headlines=True, stats=stats)]
    assert [d.title for d in docs] == ["北京举行新年音乐会", "上海迎来新年"]
    first = docs[0].sentences
    assert [s.text for s in first] == ["江泽民出席了中央电视台的晚会。", "观众欢欣鼓舞。",
                                       "李鹏说：“好！”"]
    spans = {(s.text[x.start:x.end], x.kind, x.type) for s in first for x in s.spans}
    assert {("江泽民", "entity", "PER"), ("中央电视台", "entity", "ORG"),
            ("欢欣鼓舞", "phrase", None), ("李鹏", "entity", "PER")} <= spans
    assert first[0].words[:3] == ["江", "泽民", "出席"]
    # The subtitle opens the second article; bracketed layout lines are dropped and counted.
    assert [s.text for s in docs[1].sentences] == ["副标题", "上海今天很热闹。"]
    assert stats["dropped_layout_lines"] == 2 and docs[0].meta["tagged"]
    # Without headline recovery the file is one document.
    assert len(list(read_pos(f))) == 1


def test_pos_reader_bad_token_names_line(tmp_path):
    f = write(tmp_path / "pd.txt", "北京/ns  举行/v\n北京 举行/v\n")
    with pytest.raises(ValueError, match=r"pd.txt:2: expected 'word/tag' tokens, got '北京'"):
        list(read_pos(f))


def _ernie1_line(a, b, label):
    ids = [1, *a, 2, *b, 2]
    types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    segs = [-1] + [0, 1][:len(a)] + [0] * max(0, len(a) - 2) + [-1] + [0] * len(b) + [-1]
    return ";".join([" ".join(map(str, ids)), " ".join(map(str, types)),
                     " ".join(map(str, range(len(ids)))), " ".join(map(str, segs)), str(label)])


def test_ernie1_lines_read_as_they_are(tmp_path):
    f = tmp_path / "part-0.gz"
    with gzip.open(f, "wt", encoding="utf-8") as fh:
        fh.write(_ernie1_line([10, 11, 12], [20, 21], 1) + "\n")
        fh.write(_ernie1_line([30, 31], [40], 0) + "\n")
    assert sniff_format(f) == "ernie1"
    docs = list(iter_documents(str(f)))
    a, b = docs[0].sentences
    assert (a.token_ids, a.seg_labels, b.token_ids) == ([10, 11, 12], [0, 1, 0], [20, 21])
    assert [d.meta["next_sentence_label"] for d in docs] == [1, 0]
    filelist = write(tmp_path / "train.filelist", "part-0.gz\t0.3\n")
    docs = [d for d, _ in read_ernie1(filelist)]
    assert len(docs) == 2 and docs[0].meta["mask_word_prob"] == 0.3


@pytest.mark.parametrize("line, expected", [
    ("1 2;0 0;0 1;-1 -1", "expected 5 ';'-separated fields"),
    ("1 2;0 0 0;0 1;-1 -1;1", "the first four fields must have the same non-zero length"),
    ("1 x;0 0;0 1;-1 -1;1", "field token_ids must be space-separated integers"),
    ("1 2;0 0;0 1;-1 5;1", "seg_labels must be -1, 0 or 1"),
])
def test_ernie1_bad_lines(tmp_path, line, expected):
    f = tmp_path / "bad.gz"
    with gzip.open(f, "wt", encoding="utf-8") as fh:
        fh.write(_ernie1_line([5], [6], 1) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"bad.gz:2: {expected}"):
        list(read_ernie1(f))


def test_wiki_markup_stripped_anchors_kept(tmp_path):
    f = tmp_path / "wiki.xml.bz2"
    f.write_bytes(bz2.compress(wiki_dump("Paris").encode("utf-8")))
    assert sniff_format(f) == "wiki"
    (doc,) = [d for d, _ in read_wiki(f)]
    texts = [s.text for s in doc.sentences]
    assert doc.title == "Paris"
    assert texts == ["Paris is the capital of France.",
                     "It lies on the Seines banks and hosts the Louvre.",
                     "The Parisii lived here long before Julius Caesar came, say the old books."]
    spans = [(s.text[x.start:x.end], x.kind) for s in doc.sentences for x in s.spans]
    assert spans == [("France", "entity"), ("Seines", "entity"), ("Louvre", "entity"),
                     ("Parisii", "entity"), ("Julius Caesar", "entity"), ("old books", "phrase")]


SECTIONED = """<mediawiki><page><title>Oslo</title><ns>0</ns><revision><text>
Oslo is the capital of [[Norway]] and its largest city by far.
== History ==
The town was founded around the year one thousand by the king.
=== Middle ages ===
It burned down many times during the long middle ages, they say.
== Geography ==
Oslo lies at the head of the long Oslofjord, among green hills.
== Notes ==
Nothing of this long paragraph is prose, it comes after the end.
== See also ==
This long paragraph is after the end of the prose, it is dropped.
</text></revision></page>
<page><title>Bergen</title><ns>0</ns><revision><text>
Bergen is a city on the west coast of Norway, by the sea.
</text></revision></page></mediawiki>
"""


def test_wiki_sections_as_documents_and_resume(tmp_path):
    f = write(tmp_path / "sections.xml", SECTIONED)
    (whole, bergen) = [d for d, _ in read_wiki(f)]
    assert whole.title == "Oslo" and len(whole.sentences) == 4
    docs = list(read_wiki(f, sections=True))
    assert [d.title for d, _ in docs] == ["Oslo", "Oslo: History", "Oslo: Geography", "Bergen"]
    # the level-3 heading stays inside its section; the sentences are the article's, in order
    assert [len(d.sentences) for d, _ in docs] == [1, 2, 1, 1]
    assert [s.text for d, _ in docs[:3] for s in d.sentences] == [s.text for s in whole.sentences]
    assert len({d.source for d, _ in docs}) == 4
    # resuming from any document's position yields exactly the documents after it
    for i, (_, pos) in enumerate(docs):
        rest = [d.title for d, _ in read_wiki(f, sections=True, start=pos)]
        assert rest == [d.title for d, _ in docs[i + 1:]]


def test_clean_wikitext_drops_nested_templates_and_end_sections():
    paras = clean_wikitext("{{a|{{b}}}}Alpha beta gamma delta epsilon zeta eta theta iota.\n"
                           "== See also ==\nThis long paragraph is after the end of the prose.")
    assert [p for p, _ in paras] == ["Alpha beta gamma delta epsilon zeta eta theta iota."]


# ------------------------------------------------------------------ spec, resume, shards
def test_spec_from_dict_rejects_unknown_keys_and_sniffs(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus option.*colour"):
        CorpusSpec.from_dict({"path": "x", "colour": 1})
    with pytest.raises(ValueError, match="needs a 'path'"):
        CorpusSpec.from_dict({"format": "text"})
    with pytest.raises(ValueError, match="unknown corpus format"):
        CorpusSpec("x", format="docx")
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list(iter_documents(str(tmp_path / "*.nothing")))
    assert sniff_format(write(tmp_path / "p.txt", POS)) == "pos"
    assert sniff_format(write(tmp_path / "t.txt", TEXT)) == "text"


@pytest.mark.parametrize("fmt", ["text", "jsonl", "pos", "wiki"])
def test_resume_from_any_position_continues_exactly(tmp_path, fmt):
    if fmt == "text":
        f = write(tmp_path / "c.txt", TEXT * 3)
        spec = CorpusSpec(str(f), format="text", annotate=False)
    elif fmt == "jsonl":
        f = tmp_path / "c.jsonl"
        f.write_text("".join(json.dumps({"title": str(i), "paragraphs": [f"Doc {i}."]}) + "\n"
                             for i in range(7)))
        spec = CorpusSpec(str(f), annotate=False)
    elif fmt == "pos":
        f = write(tmp_path / "pd.txt", POS * 3)
        spec = CorpusSpec(str(f), format="pos", annotate=False,
                          reader_options={"headlines": True})
    else:
        f = write(tmp_path / "w.xml", wiki_dump("P1", "P2", "P3"))
        spec = CorpusSpec(str(f), format="wiki", annotate=False)
    full = list(iter_positioned(spec))
    assert len(full) >= 2
    for k, (_, pos) in enumerate(full):
        rest = [d for d, _ in iter_positioned(spec, start=json.loads(json.dumps(pos)))]
        assert [(d.title, [s.text for s in d.sentences]) for d in rest] == \
               [(d.title, [s.text for s in d.sentences]) for d, _ in full[k + 1:]]


def test_prepare_shards_keep_order_cache_and_resume(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("".join(f"Document number {i} here. It is fine.\n\n" for i in range(23)))
    spec = CorpusSpec(str(src), format="text")
    direct = [[s.text for s in d.sentences] for d in iter_documents(spec)]
    manifest = prepare_corpus(spec, tmp_path / "prep", workers=2, shards=3, progress=False)
    info = json.loads(manifest.read_text())
    assert info["documents"] == 23 and [s["documents"] for s in info["shards"]] == [8, 8, 7]
    prepared = list(iter_positioned(str(tmp_path / "prep")))
    assert [[s.text for s in d.sentences] for d, _ in prepared] == direct
    assert all(d.meta.get("annotated") for d, _ in prepared)
    # Resuming from any position of the prepared corpus continues in order.
    rest = [d for d, _ in iter_positioned(str(tmp_path / "prep"), start=prepared[9][1])]
    assert [[s.text for s in d.sentences] for d in rest] == direct[10:]
    # Cached: a second call rewrites nothing; a changed source or force does.
    stamp = manifest.stat().st_mtime_ns
    assert prepare_corpus(spec, tmp_path / "prep", workers=2, shards=3).stat().st_mtime_ns == stamp
    src.write_text(src.read_text() + "One more document.\n")
    prepare_corpus(spec, tmp_path / "prep", workers=1, shards=3)
    assert json.loads(manifest.read_text())["documents"] == 24


def test_heldout_split_is_deterministic_and_about_the_fraction():
    held = [i for i in range(20000) if is_heldout(i, 0.1)]
    assert abs(len(held) / 20000 - 0.1) < 0.01
    assert held == [i for i in range(20000) if is_heldout(i, 0.1)]
    assert held != [i for i in range(20000) if is_heldout(i, 0.1, seed=1)]
    assert not any(is_heldout(i, 0.0) for i in range(100))


def _texts(pairs):
    return [([s.text for s in d.sentences], pos) for d, pos in pairs]


def test_shared_reading_keeps_a_small_file_in_memory_and_resumes(tmp_path, monkeypatch):
    f = write(tmp_path / "c.jsonl", "".join(
        json.dumps({"paragraphs": [[f"Document {i} here."]]}) + "\n" for i in range(6)))
    spec = CorpusSpec(str(f), format="jsonl", annotate=False)
    disk = list(iter_positioned(spec))
    first = list(iter_positioned(spec, shared=True))
    again = list(iter_positioned(spec, shared=True))
    assert _texts(first) == _texts(again) == _texts(disk)
    assert all(a is b for (a, _), (b, _) in zip(first, again))  # read once
    assert not any(a is b for (a, _), (b, _) in zip(disk, again))  # unshared: fresh objects
    for k, (_, pos) in enumerate(disk):
        rest = list(iter_positioned(spec, start=json.loads(json.dumps(pos)), shared=True))
        assert _texts(rest) == _texts(disk[k + 1:])
    # A changed file is read again.
    with open(f, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"paragraphs": [["One more document."]]}) + "\n")
    longer = list(iter_positioned(spec, shared=True))
    assert len(longer) == 7 and longer[-1][0].sentences[0].text == "One more document."
    # Turned off, or over the size limit: read from disk each pass.
    monkeypatch.setenv("ERNIE2_CORPUS_MEMORY_MB", "0")
    off = list(iter_positioned(spec, shared=True))
    assert _texts(off) == _texts(longer) and not any(a is b for (a, _), (b, _) in zip(off, longer))
    monkeypatch.setenv("ERNIE2_CORPUS_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="ERNIE2_CORPUS_MEMORY_MB must be a number"):
        list(iter_positioned(spec, shared=True))


def test_shared_reading_of_a_file_with_skipped_lines_counts_them_every_pass(tmp_path):
    f = write(tmp_path / "c.jsonl", json.dumps({"paragraphs": [["Good one."]]}) + "\nnot json\n"
              + json.dumps({"paragraphs": [["Another good one."]]}) + "\n")
    spec = CorpusSpec(str(f), format="jsonl", annotate=False, on_error="skip")
    first = None
    for _ in range(2):
        stats = Counter()
        docs = list(iter_positioned(spec, stats=stats, shared=True))
        assert len(docs) == 2 and stats["skipped_bad_records"] == 1, stats
        assert not any(a is b for (a, _), (b, _) in zip(docs, first or []))
        first = docs


def test_shared_reading_keeps_at_most_twice_the_limit(tmp_path, monkeypatch):
    from ernie2.corpus import spec as spec_module
    monkeypatch.setattr(spec_module, "_KEPT", {})
    line = json.dumps({"paragraphs": [["x" * 1000]]}) + "\n"
    monkeypatch.setenv("ERNIE2_CORPUS_MEMORY_MB", str(3000 / 2 ** 20))  # 3000 bytes
    specs = []
    for k in range(4):
        f = write(tmp_path / f"c{k}.jsonl", line * 2)  # about 2 KB each
        specs.append(CorpusSpec(str(f), format="jsonl", annotate=False))
        list(iter_positioned(specs[-1], shared=True))
    kept = [v for v in spec_module._KEPT.values() if v]
    assert 0 < sum(v.size for v in kept) <= 6000 and len(kept) < 4
    first, again = (list(iter_positioned(specs[-1], shared=True)) for _ in range(2))
    assert first[0][0] is again[0][0]  # the newest is kept
