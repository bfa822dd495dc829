"""Vocab tools: `ernie2 vocab train CORPUS... --size N --out vocab.txt` builds a WordPiece vocab
(ERNIE special tokens first: [PAD] [CLS] [SEP] [MASK] [UNK]); `ernie2 vocab check FILE` reads one."""

HELP = "train or check a WordPiece vocab"


def add_arguments(p):
    sub = p.add_subparsers(dest="vocab_command", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a WordPiece vocab on text files (one text a line)")
    t.add_argument("corpus", nargs="+", help="text files, .gz allowed")
    t.add_argument("--size", type=int, default=30000, help="vocab size")
    t.add_argument("--out", required=True, help="vocab file to write")
    t.add_argument("--min_frequency", type=int, default=2)
    t.add_argument("--cased", action="store_true", help="keep case and accents")
    c = sub.add_parser("check", help="read a vocab file and print its size and special ids")
    c.add_argument("vocab")


def run(args):
    import sys

    from ernie2.tokenizer import SPECIAL_TOKENS, read_vocab, train_vocab

    if args.vocab_command == "train":
        vocab = train_vocab(args.corpus, args.size, args.out, lower_case=not args.cased,
                            min_frequency=args.min_frequency)
        print(f"wrote {args.out}: {len(vocab)} tokens")
        if len(vocab) < args.size:
            print(f"ernie2 vocab train: warning: {len(vocab)} tokens, not the {args.size} asked "
                  f"for: the corpus holds too few distinct pieces seen at least "
                  f"{args.min_frequency} times for that many merges (more text, a smaller "
                  "--size or a lower --min_frequency)", file=sys.stderr)
    else:
        vocab = read_vocab(args.vocab)
        ids = ", ".join(f"{t}={vocab.get(t, 'missing')}" for t in SPECIAL_TOKENS)
        print(f"{args.vocab}: {len(vocab)} tokens; {ids}")
