"""Convert a checkpoint (Hugging Face directory, Paddle .pdparams, Paddle static params/ directory,
or a known model name) to ernie2's format: config.json + model.safetensors + vocab.txt."""

HELP = "convert any ERNIE checkpoint to ernie2's format"


def add_arguments(p):
    p.add_argument("src", help="checkpoint directory or file, or a known model name")
    p.add_argument("dst", help="output directory")


def run(args):
    from ernie2.model.checkpoint import convert

    ckpt = convert(args.src, args.dst)
    c = ckpt.config
    heads = sorted({k.split(".")[1] for k in ckpt.tensors if k.startswith("heads.")})
    print(f"converted {ckpt.fmt} checkpoint {ckpt.source} -> {args.dst}: "
          f"{c.num_hidden_layers} layers, hidden {c.hidden_size}, vocab {c.vocab_size}, "
          f"task embedding {'yes' if c.use_task_id else 'no'}, "
          f"heads: {', '.join(heads) or 'none'}"
          + ("" if ckpt.vocab_file else " (no vocab.txt found beside the checkpoint)"))
