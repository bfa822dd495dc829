"""Embeddings of texts with any ERNIE checkpoint (the seed's encoder tool): writes cls_emb.npy
[N, hidden] (the top layer at [CLS]), top_layer_emb.npy [total tokens, hidden] (every text's
[CLS] ... [SEP] tokens, without padding) and top_layer_offsets.npy [N + 1] (text i owns rows
offsets[i]:offsets[i+1]) to --output.

--input is a .tsv with a header naming text_a (and text_b for pairs), or any other text file
with one text per line.
"""

HELP = "write [CLS] and token embeddings of texts (cls_emb.npy, top_layer_emb.npy)"


def add_arguments(p):
    p.add_argument("--model", required=True,
                   help="model directory or checkpoint (pre-trained or fine-tuned)")
    p.add_argument("--input", required=True, help=".tsv with text_a (text_b), or one text a line")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--max_len", "--max_seq_len", dest="max_len", type=int, default=128,
                   help="tokens per text or pair, [CLS] and [SEP] included")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--for_cn", action="store_true",
                   help="remove spaces next to Chinese characters")
    p.add_argument("--num_layers", type=int, help="use only the first N encoder layers")
    p.add_argument("--task_id", type=int, default=0, help="task-embedding row")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")


def run(args):
    from pathlib import Path

    from ernie2.inference.encode import encode_file
    from ernie2.training.precision import resolve_device

    emb = encode_file(args.model, args.input, args.output, max_len=args.max_len,
                      batch_size=args.batch_size, for_cn=args.for_cn,
                      device=str(resolve_device(args.device)), num_layers=args.num_layers,
                      task_id=args.task_id)
    out = Path(args.output)
    print(f"{len(emb)} texts, {emb.tokens.shape[0]} tokens, hidden {emb.cls.shape[1]}")
    for name in ("cls_emb.npy", "top_layer_emb.npy", "top_layer_offsets.npy"):
        print(f"  {out / name}")
    return 0
