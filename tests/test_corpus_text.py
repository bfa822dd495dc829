"""Sentence splitting, language detection and annotation (lexicons, jieba tags, names)."""

from __future__ import annotations

import pytest

from ernie2.corpus import AnnotationOptions, Annotator, Lexicon, make_sentences
from ernie2.corpus.annotate import capitalized_names, jieba_spans, match_lexicon
from ernie2.corpus.document import Document, Sentence, Span
from ernie2.corpus.text import detect_lang, split_clauses, split_sentences


def pieces(text, lang):
    return [text[s:e] for s, e in split_sentences(text, lang)]


def test_english_sentences_keep_abbreviations_initials_and_numbers():
    text = ("Dr. Smith met J. R. Tolkien in the U.S. Army? Yes! \"It was 3.5 miles.\" "
            "(Then he left.) See e.g. the map.")
    assert pieces(text, "en") == [
        "Dr. Smith met J. R. Tolkien in the U.S. Army?", "Yes!", "\"It was 3.5 miles.\"",
        "(Then he left.)", "See e.g. the map."]


def test_chinese_sentences_end_at_marks_and_keep_closing_quotes():
    text = "我爱北京。你呢？“好的！”还有……最后一句"
    assert pieces(text, "zh") == ["我爱北京。", "你呢？", "“好的！”", "还有……", "最后一句"]


def clauses(text, lang="zh"):
    return [text[s:e] for s, e in split_clauses(text, lang)]


def test_clauses_cut_after_clause_marks_and_merge_lone_words():
    assert clauses("质量不错，但是价格太贵。") == ["质量不错，", "但是价格太贵。"]
    # "好，" alone is one character: it joins the next clause; a short last piece joins the one
    # before it.
    assert clauses("好，很好，非常好！") == ["好，很好，", "非常好！"]
    assert clauses("屏幕很大；电池一般：好") == ["屏幕很大；", "电池一般：好"]
    assert clauses("物流快,包装好, 客服 耐心") == ["物流快,", "包装好,", "客服 耐心"]
    assert clauses("“不错，”他说") == ["“不错，”", "他说"]  # the closing quote stays with its mark
    assert clauses("没有标点的一句") == ["没有标点的一句"]
    assert clauses("好") == ["好"]
    # English: semicolons and colons cut, commas do not.
    assert clauses("It was cheap, and fast; it broke: twice.", "en") == [
        "It was cheap, and fast;", "it broke:", "twice."]


def test_sentences_from_words_carry_words_and_rebased_spans():
    words = ["李鹏", "在", "北京", "。", "他", "说", "好", "。"]
    text = "".join(words)
    spans = [Span(0, 2, "entity", "PER"), Span(3, 5, "entity", "LOC"),
             Span(5, 7, "phrase")]  # the phrase crosses the boundary: no sentence keeps it
    s1, s2 = make_sentences(text, "zh", words, spans)
    assert (s1.text, s1.words, s2.text, s2.words) == (
        "李鹏在北京。", ["李鹏", "在", "北京", "。"], "他说好。", ["他", "说", "好", "。"])
    assert [(s1.text[x.start:x.end], x.type) for x in s1.spans] == [("李鹏", "PER"),
                                                                     ("北京", "LOC")]
    assert s2.spans == []


def test_detect_lang():
    assert detect_lang("中华人民共和国成立了 (1949)") == "zh"
    assert detect_lang("The People's Republic of China, 中国") == "en"


def test_lexicon_file_matches_whole_units_longest_first(tmp_path):
    lex_file = tmp_path / "lex.txt"
    lex_file.write_text("prime minister\nnew york\tLOC\nnew\n# comment\n人民日报\tORG\n人民\n",
                        encoding="utf-8")
    lex = Lexicon.read([lex_file])
    s = Sentence("The Prime Minister visited New York and newer towns.")
    got = [(s.text[x.start:x.end], x.kind, x.type) for x in match_lexicon(s, lex, "en")]
    assert got == [("Prime Minister", "phrase", None), ("New York", "entity", "LOC")]
    z = Sentence("他读人民日报。", words=["他", "读", "人民日报", "。"])
    assert [(z.text[x.start:x.end], x.type) for x in match_lexicon(z, lex, "zh")] == [
        ("人民日报", "ORG")]
    # Without segmentation, Chinese matches anywhere (characters are the units).
    z2 = Sentence("人民的日报和人民日报")
    assert [z2.text[x.start:x.end] for x in match_lexicon(z2, lex, "zh")] == [
        "人民", "人民日报"]


def test_lexicon_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("ok\na\tb\tc\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'text' or 'text<TAB>type'"):
        Lexicon.read([bad])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        Lexicon.read([tmp_path / "missing.txt"])


def test_capitalized_names_skip_sentence_openers():
    text = "The Bank of England met Tony Blair in New York. Then Paris said no."
    assert [text[s.start:s.end] for s in capitalized_names(text)] == [
        "Bank of England", "Tony Blair", "New York"]
    assert capitalized_names("In World War II it ended.")[0].start == 3


def test_jieba_segmentation_and_dictionary_tags():
    doc = Document([[Sentence("李鹏总理在北京市考察了首都钢铁公司。")]], lang="zh")
    Annotator()(doc)
    s = doc.sentences[0]
    assert "".join(s.words) == s.text and "北京市" in s.words
    got = {(s.text[x.start:x.end], x.type) for x in s.spans}
    assert {("李鹏", "PER"), ("北京市", "LOC")} <= got
    # jieba tags many idioms as persons: those without a family name are not trusted.
    idiom = Sentence("大家一劳永逸。", words=["大家", "一劳永逸", "。"])
    assert all(idiom.text[x.start:x.end] != "一劳永逸" or x.kind == "phrase"
               for x in jieba_spans(idiom))


def test_annotator_keeps_corpus_tags_first_and_runs_once():
    s = Sentence("他在北京市工作。", words=["他", "在", "北京市", "工作", "。"],
                 spans=[Span(2, 4, "entity", "ORG")])  # a (wrong) corpus tag wins on overlap
    doc = Document([[s]], lang="zh", meta={"tagged": True})
    Annotator(AnnotationOptions())(doc)
    assert [(x.start, x.end, x.type) for x in s.spans] == [(2, 4, "ORG")]
    assert doc.meta["annotated"]
    s.spans.append(Span(0, 1, "phrase"))
    Annotator()(doc)  # already annotated: left as it is
    assert len(s.spans) == 2


def test_user_lexicon_still_applies_to_annotated_documents(tmp_path):
    lex = tmp_path / "lex.txt"
    lex.write_text("工作\n", encoding="utf-8")
    s = Sentence("他在北京市工作。", words=["他", "在", "北京市", "工作", "。"])
    doc = Document([[s]], lang="zh", meta={"annotated": True})
    Annotator(AnnotationOptions(lexicons=(str(lex),)))(doc)
    assert [(x.start, x.end, x.kind) for x in s.spans] == [(5, 7, "phrase")]
