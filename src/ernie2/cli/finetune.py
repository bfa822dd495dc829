"""Fine-tune a pre-trained ERNIE on labeled data: train/dev/test files in --data_dir, the best
dev model in OUTPUT/best, test predictions in OUTPUT/test_out.tsv (and predictions.json for
reading comprehension), logs as in pre-training (metrics.jsonl, metrics.csv, TensorBoard).

No pre-trained model yet? `--init random --size mini --vocab vocab.txt` fine-tunes a fresh model
of that size: what pre-training buys is the difference. `--baseline` also fits a TF-IDF linear
model (classify, pair, rank, regress) or a memorized-tags tagger (ner) on the same split and
prints its scores beside the model's. The learning rate defaults by model width (5e-4 for
mini, 3e-4 small, 1e-4 medium, 5e-5 base and larger) unless --lr or a preset sets it.

--preset NAME takes a row of the presets table (batch size, learning rate, epochs, max_len,
warm-up, weight decay, metric, task options); every flag given overrides it. --bsz is the
global batch per optimizer step and --micro_bsz the examples per forward pass (accumulation).
Several processes: `torchrun --nproc_per_node N -m ernie2 finetune ...` (DDP).
See docs/finetuning.md.
"""

import argparse

HELP = "fine-tune on classify, pair, regress, ner, mrc or rank data (presets for known sets)"

# flag -> FinetuneSettings field; every flag defaults to None so a preset's value stays unless
# the flag is given.
_SETTINGS = ("output_dir", "batch_size", "micro_batch_size", "learning_rate", "epochs",
             "max_steps", "warmup_proportion", "weight_decay", "layerwise_decay",
             "head_only_proportion", "grad_clip",
             "eval_every", "eval_each_epoch", "main_metric", "label_map", "num_layers",
             "hidden_dropout_prob", "attention_probs_dropout_prob", "task_id", "seed", "device",
             "precision", "eval_batch_size", "log_every", "tensorboard", "peak_tflops",
             "checkpoint_every", "keep_checkpoints")
_OPTIONS = ("max_len", "for_cn", "dropout", "crf", "scheme", "stride", "max_query_len",
            "n_best", "max_answer_len", "positive_label", "pooling")


# The task types, model sizes and poolings, written out so that `--help` needs no torch (a test
# keeps them equal to finetune.TASK_TYPES, model.config.NAMED_SIZES and model.heads.POOLINGS).
TASKS = ("classify", "pair", "regress", "ner", "mrc", "rank")
SIZES = ("test", "mini", "small", "medium", "base", "large")
POOLINGS = ("pooler", "cls", "mean", "pair")


def add_arguments(p):
    # Long: the command's flag table, one statement a flag, read top to bottom.
    p.add_argument("--task", choices=TASKS, help="task type (a preset implies one)")
    p.add_argument("--data_dir", help="directory with train, dev and test files")
    p.add_argument("--from_pretrained", "--init_checkpoint", dest="from_pretrained",
                   help="pre-trained model directory, checkpoint or name")
    p.add_argument("--init", choices=["pretrained", "random"], default="pretrained",
                   help="random: fresh weights of --size (or of --from_pretrained's shape)")
    p.add_argument("--size", metavar="SIZE",
                   help=f"the fresh model's size with --init random: {', '.join(SIZES)}, or a "
                        "released model's name (its shape, e.g. ernie-tiny); also the preset's "
                        "column (large for large, else base)")
    p.add_argument("--vocab", help="vocab file of a fresh model (--init random)")
    p.add_argument("--baseline", action="store_true",
                   help="also fit a TF-IDF linear model (a memorized-tags tagger for ner) on the "
                        "same split and print its scores beside the model's")
    p.add_argument("--preset", help="a row of the presets table, e.g. XNLI, MSRA-NER, CMRC2018")
    p.add_argument("--list_presets", action="store_true", help="print the presets and exit")
    g = p.add_argument_group("training (defaults: the preset's, else the library's)")
    g.add_argument("--output_dir", "--save_dir", dest="output_dir",
                   help="output directory (default finetune_output)")
    g.add_argument("--bsz", "--batch_size", dest="batch_size", type=int,
                   help="examples per optimizer step, over all processes (default 32)")
    g.add_argument("--micro_bsz", "--micro_batch_size", dest="micro_batch_size", type=int,
                   help="examples per forward pass; smaller than a process's share of --bsz "
                        "accumulates gradients")
    g.add_argument("--lr", "--learning_rate", dest="learning_rate", type=float,
                   help="peak learning rate (default: by model width, 5e-4 for mini ... 5e-5 "
                        "for base)")
    g.add_argument("--epochs", "--epoch", dest="epochs", type=int)
    g.add_argument("--max_steps", type=int, help="optimizer steps (overrides --epochs)")
    g.add_argument("--warmup_proportion", type=float)
    g.add_argument("--weight_decay", "--wd", dest="weight_decay", type=float)
    g.add_argument("--layerwise_decay", type=float,
                   help="layer-wise learning-rate decay in (0, 1]: layer i of L learns at "
                        "decay^(L-i) x lr, the embeddings at decay^(L+1) (default 1: one rate)")
    g.add_argument("--head_only_proportion", type=float,
                   help="linear probing, then fine-tuning: the first fraction of the steps "
                        "trains the head alone on the held encoder (default 0)")
    g.add_argument("--grad_clip", type=float, help="max gradient norm (default 1.0)")
    g.add_argument("--eval_every", "--validation_steps", dest="eval_every", type=int,
                   help="also evaluate on dev every N steps (and after each epoch unless "
                   "--no-eval_each_epoch)")
    g.add_argument("--eval_each_epoch", action=argparse.BooleanOptionalAction,
                   help="also evaluate on dev after every epoch (default; --no-eval_each_epoch: "
                   "only every --eval_every steps and at the end)")
    g.add_argument("--main_metric", help="dev score that picks the best model")
    g.add_argument("--label_map", help="label_map.json (default data_dir/label_map.json)")
    g.add_argument("--num_layers", type=int,
                   help="keep only the first N encoder layers of the checkpoint")
    g.add_argument("--hidden_dropout_prob", "--hidden_dropout", dest="hidden_dropout_prob",
                   type=float, help="the encoder's dropout while fine-tuning (default: the "
                   "model's config; 0.1 suits a model pre-trained without dropout)")
    g.add_argument("--attention_probs_dropout_prob", "--attention_dropout",
                   dest="attention_probs_dropout_prob", type=float,
                   help="the encoder's attention dropout while fine-tuning (default: the "
                   "model's config)")
    g.add_argument("--task_id", type=int, help="task-embedding row (default 0)")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (default): bf16 where the hardware has it, fp16 on older GPUs")
    g.add_argument("--eval_batch_size", type=int)
    g.add_argument("--log_every", type=int, help="steps between log records (default 10)")
    g.add_argument("--tensorboard", choices=["auto", "on", "off"])
    g.add_argument("--peak_tflops", type=float,
                   help="hardware peak for MFU in the logs (default: measured)")
    g.add_argument("--checkpoint_every", "--save_steps", dest="checkpoint_every", type=int,
                   help="steps between resumable checkpoints (default: none)")
    g.add_argument("--keep_checkpoints", type=int)
    g.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in OUTPUT/checkpoints")
    g.add_argument("--no_progress", dest="progress", action="store_false",
                   help="no progress bar")
    o = p.add_argument_group("task options")
    o.add_argument("--max_len", "--max_seq_len", "--max_seqlen", dest="max_len", type=int,
                   help="tokens per model input (default 128)")
    o.add_argument("--for_cn", action=argparse.BooleanOptionalAction,
                   help="remove spaces next to Chinese characters in TSV text")
    o.add_argument("--dropout", type=float, help="dropout of the head's input (default 0.1)")
    o.add_argument("--crf", action=argparse.BooleanOptionalAction, help="ner: a CRF layer")
    o.add_argument("--scheme", choices=["BIO", "IOB", "IOBES"], help="ner: check the tags")
    o.add_argument("--stride", type=int, help="mrc: context tokens between window starts")
    o.add_argument("--max_query_len", type=int, help="mrc: question tokens kept")
    o.add_argument("--n_best", type=int, help="mrc: candidate starts and ends per window")
    o.add_argument("--max_answer_len", type=int, help="mrc: answer tokens at most")
    o.add_argument("--positive_label", help="rank: the label of a relevant candidate")
    o.add_argument("--pooling", choices=list(POOLINGS),
                   help="classify, pair, regress, rank: what the head reads: the pooled [CLS] "
                        "output (default), the [CLS] state, the mean of the token states, or "
                        "'pair': the two segments' means a, b as [a, b, |a-b|, a*b]")


def settings_from_args(args):
    """FinetuneSettings from parsed flags: the preset's row, then every flag given."""
    from ernie2.finetune import FinetuneSettings, TaskOptions, get_preset

    given = {k: getattr(args, k) for k in _SETTINGS if getattr(args, k) is not None}
    options = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None}
    if not args.data_dir:
        raise ValueError("--data_dir is required")
    if args.init == "pretrained" and not args.from_pretrained:
        raise ValueError("--from_pretrained is required; without a pre-trained model, fine-tune "
                         "a fresh one: --init random --size mini --vocab VOCAB")
    if args.init == "pretrained" and (args.vocab or args.size not in (None, "base", "large")):
        raise ValueError(f"{'--vocab' if args.vocab else '--size ' + args.size} is for a fresh "
                         "model (--init random); a pre-trained model brings its size and vocab")
    given.update(data_dir=args.data_dir, from_pretrained=args.from_pretrained, init=args.init,
                 size=args.size, vocab=args.vocab, baseline=args.baseline, resume=args.resume,
                 progress=args.progress)
    if args.preset:
        preset = get_preset(args.preset)
        if args.task and args.task != preset.task:
            raise ValueError(f"preset {preset.name} is a {preset.task} task, not {args.task}")
        column = "large" if args.size == "large" else "base"
        return FinetuneSettings.from_preset(preset.name, column, options=options, **given)
    if not args.task:
        raise ValueError("give --task (classify, pair, regress, ner, mrc, rank) or --preset")
    return FinetuneSettings(task=args.task, options=TaskOptions.from_dict(options), **given)


def _print_presets():
    from ernie2.finetune import PRESETS

    print(f"{'preset':14s} {'task':9s} {'batch':>9s} {'lr':>14s} {'epochs':>6s} {'len':>4s} "
          f"metric")
    for p in PRESETS.values():
        batch, lr, epochs = p.batch_size, p.learning_rate, p.epochs
        print(f"{p.name:14s} {p.task:9s} {f'{batch[0]}/{batch[1]}':>9s} "
              f"{f'{lr[0]:g}/{lr[1]:g}':>14s} {f'{epochs[0]}/{epochs[1]}':>6s} {p.max_seq_len:4d} "
              f"{p.metric}")
    print("(base/large)")


def run(args):
    if args.list_presets:
        _print_presets()
        return 0
    import os

    from ernie2.finetune import finetune
    from ernie2.finetune.metrics import format_scores

    settings = settings_from_args(args)
    result = finetune(settings)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only the first process reports
        return 0
    out = result.output_dir
    print(f"{settings.task}: {result.steps} steps at lr {result.learning_rate:g}; best dev "
          f"{result.main_metric} {result.best_score:.4f}" if result.history else
          f"{settings.task}: {result.steps} steps at lr {result.learning_rate:g}; no dev set, "
          "the last model is kept")
    if result.test_scores:
        print("test: " + format_scores(result.test_scores))
    if result.baseline:
        print(format_comparison(result))
    print(f"best model: {result.best_dir}")
    for name in ("test_out.tsv", "predictions.json", "metrics.json", "metrics.jsonl"):
        if (out / name).exists():
            print(f"{name}: {out / name}")
    return 0


def format_comparison(result) -> str:
    """The model's and the baseline's main metric on dev and test, as a small table."""
    metric = result.main_metric
    best = next((h for h in result.history if h.get(f"dev_{metric}") == result.best_score), {})
    rows = {"model": {"dev": best.get(f"dev_{metric}"),
                      "test": (result.test_scores or {}).get(metric)},
            "baseline": {k: v.get(metric) for k, v in result.baseline["scores"].items()}}
    splits = [s for s in ("dev", "test") if any(r.get(s) is not None for r in rows.values())]
    heads = [f"{s} {metric}" for s in splits]
    widths = [max(10, len(h)) for h in heads]
    lines = [" " * 10 + "  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    for name, row in rows.items():
        lines.append(f"{name:10s}" + "  ".join(
            (f"{row[s]:.4f}" if row.get(s) is not None else "-").rjust(w)
            for s, w in zip(splits, widths)))
    lines.append(f"(baseline: {result.baseline['name']}, fit on the same training split)")
    return "\n".join(lines)
