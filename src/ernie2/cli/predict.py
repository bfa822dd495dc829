"""Batch prediction with a fine-tuned model directory (from `ernie2 finetune`, its best/):
labels with probabilities, scores, NER tags or reading-comprehension spans.

--input is a data file in the task's own format (labels not needed; labels unseen in training
are predicted and left out of any score): .tsv for classify, pair, regress and rank, .tsv or
the column file for ner, SQuAD .json for mrc; or a .jsonl file of plain inputs, one a line:
"text" (classify), ["text_a", "text_b"] (pair, rank, regress), ["tok", ...] or "text" (ner),
{"question": ..., "context": ...} (mrc); or any other file of plain text (e.g. .txt; for ner,
whose column files are .txt, another name such as .text), one input a line: a text, or two
tab-separated texts for pair, rank and regress.
--output ending in .json or .jsonl gets the predictions as JSON (probabilities of every label,
tags, n-best spans); any other name gets the test_out.tsv format (mrc also writes
<name>_predictions.json beside it).
"""

HELP = "predict with a fine-tuned model on new data (labels, tags or answer spans)"


def add_arguments(p):
    p.add_argument("--model", required=True, help="fine-tuned model directory")
    p.add_argument("--input", required=True,
                   help="data file (task format), .jsonl inputs or plain text, one a line")
    p.add_argument("--output", required=True, help="output file (.tsv, .json or .jsonl)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")


def _plain(line: str):
    """A plain-text line: one text, or a tab-separated pair."""
    parts = line.split("\t")
    return parts[0] if len(parts) == 1 else parts


def read_jsonl_inputs(path, task: str, plain: bool = False) -> list:
    """Examples of task type `task` from a file of inputs, one a line: JSON values (JSON lines),
    or with `plain` a text or two tab-separated texts."""
    import json

    from ernie2.finetune.readers import DataError
    from ernie2.inference.inputs import InputError, to_examples

    examples = []
    try:
        lines = open(path, encoding="utf-8-sig").read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue  # blank lines carry no input (JSON lines convention)
        try:
            value = _plain(line) if plain else json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        try:
            (ex,) = to_examples(task, [value])
        except InputError as exc:
            raise DataError(str(exc).replace("input 0", f"{path}:{n}", 1)) from None
        if hasattr(ex, "text_b") and examples and \
                (ex.text_b is None) != (examples[0].text_b is None):
            raise DataError(f"{path}:{n}: a {'single text' if ex.text_b is None else 'pair'} "
                            "after inputs of the other kind; use one kind per file")
        examples.append(ex)
    if not examples:
        raise DataError(f"{path}: no inputs")
    return examples


def run(args):
    import json
    from pathlib import Path

    from ernie2.inference.predict import predict
    from ernie2.finetune.model import FinetuneModel
    from ernie2.finetune.task_types import get_task_type
    from ernie2.training.precision import resolve_device
    from ernie2.utils import atomic_write_text

    if not Path(args.input).is_file():
        raise FileNotFoundError(f"--input {args.input}: no such file")
    device = str(resolve_device(args.device))
    data = args.input
    task = FinetuneModel.read_meta(args.model)["task"]
    suffix = Path(args.input).suffix
    if suffix == ".jsonl" or suffix not in get_task_type(task).data_suffixes:
        data = read_jsonl_inputs(args.input, task, plain=suffix != ".jsonl")
    out = Path(args.output)
    as_json = out.suffix in (".json", ".jsonl")
    preds = predict(args.model, data, batch_size=args.batch_size, device=device,
                    out_file=None if as_json else out)
    if out.suffix == ".json":
        atomic_write_text(out, json.dumps(preds, ensure_ascii=False, indent=1) + "\n")
    elif out.suffix == ".jsonl":
        atomic_write_text(out, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds))
    print(f"{len(preds)} predictions -> {out}")
    return 0
