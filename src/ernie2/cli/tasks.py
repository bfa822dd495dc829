"""List the registered pre-training tasks (kind, classes, description); custom tasks named as
`module:Class` or `file.py:Class` are listed too when given."""

from __future__ import annotations

HELP = "list the pre-training tasks"


def add_arguments(p):
    p.add_argument("extra", nargs="*", metavar="SPEC",
                   help="custom tasks to check and list too (module:Class or file.py:Class)")
    p.add_argument("--vocab", help="vocab file (shows the class count of masked-LM tasks)")


def _placeholder_tokenizer():
    """A tokenizer over the special tokens only: enough to construct every task."""
    from ernie2.tokenizer import SPECIAL_TOKENS, ErnieTokenizer

    return ErnieTokenizer({t: i for i, t in enumerate(SPECIAL_TOKENS)})


def run(args):
    from ernie2.tasks import REGISTRY, create_task
    from ernie2.tasks.protocol import member
    from ernie2.tokenizer import ErnieTokenizer

    tok = ErnieTokenizer(args.vocab) if args.vocab else _placeholder_tokenizer()
    rows = []
    for spec in [*sorted(REGISTRY), *args.extra]:
        task = create_task(spec, tokenizer=tok, max_len=128, task_id=0)
        classes = str(task.num_classes)
        if member(task, "vocab_sized") and not args.vocab:
            classes = "vocab"
        rows.append((spec, task.kind, classes, member(task, "description")))
    widths = [max(len(r[i]) for r in rows + [("task", "kind", "classes", "")]) for i in range(3)]
    print(f"{'task':<{widths[0]}}  {'kind':<{widths[1]}}  {'classes':>{widths[2]}}  description")
    for name, kind, classes, desc in rows:
        print(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {classes:>{widths[2]}}  {desc}")
