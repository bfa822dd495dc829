"""The cloze test with the masked-LM head: every [MASK] in a text is predicted (all masks of a
text in one pass), and the top-k fillers are printed with their probabilities, e.g.

    ernie2 fill-mask --model DIR "百度是一家[MASK]公司"

The model must carry a masked-LM head: `heads.mlm.*`, or the one head pre-training trained on
knowledge masking (`--head` names it when there are several).
"""

HELP = "fill [MASK] tokens with the masked-LM head (top-k fillers with probabilities)"


def add_arguments(p):
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts holding [MASK]")
    p.add_argument("--model", required=True, help="model directory with a masked-LM head")
    p.add_argument("--input", help="a file with one text a line (instead of, or as well as, TEXT)")
    p.add_argument("--top_k", type=int, default=5)
    p.add_argument("--head", help="name of the masked-LM head (heads.<name>.*)")
    p.add_argument("--max_len", type=int, default=512)
    p.add_argument("--output", help="also write the results as JSON to this file")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")


def run(args):
    import json

    from ernie2.inference.fill_mask import fill_mask, load_mlm

    from ernie2.inference.encode import read_texts
    from ernie2.training.precision import resolve_device
    from ernie2.utils import atomic_write_text

    texts = list(args.texts)
    if args.input:
        texts += read_texts(args.input)[0]
    if not texts:
        raise ValueError("give at least one TEXT with [MASK] (or --input FILE)")
    if args.top_k < 1:
        raise ValueError(f"--top_k must be at least 1, got {args.top_k}")
    loaded = load_mlm(args.model, str(resolve_device(args.device)), args.head)
    results = fill_mask(args.model, texts, top_k=args.top_k, max_len=args.max_len, loaded=loaded)
    for text, res in zip(texts, results):
        print(text)
        print(f"  -> {res.text}")
        for k, cands in enumerate(res.candidates, 1):
            shown = "  ".join(f"{tok} {p:.4f}" for tok, p in cands)
            print(f"  [MASK] {k}: {shown}")
    if args.output:
        atomic_write_text(args.output, json.dumps(
            [{"text": t, "filled": r.text,
              "masks": [[{"token": tok, "probability": p} for tok, p in c] for c in r.candidates]}
             for t, r in zip(texts, results)], ensure_ascii=False, indent=1) + "\n")
        print(f"written to {args.output}")
    return 0
