"""Distill a fine-tuned classifier (the teacher) into a smaller student: a small ERNIE (a named size,
or the teacher's first N layers) or a bag-of-words model. The student learns the teacher's
probabilities over the training texts plus augmented texts (word masking, same-part-of-speech
replacement, n-gram sampling) and any unlabeled texts; the same student trained on the gold
labels alone is reported beside it. See docs/serving.md."""

HELP = "distill a fine-tuned classifier into a small ERNIE or a bag-of-words student"


def add_arguments(p):
    from ernie2.finetune.augment import AugmentOptions
    from ernie2.finetune.distill import STUDENTS, DistillSettings

    d, a = DistillSettings("", ""), AugmentOptions()
    p.add_argument("--teacher", required=True, help="fine-tuned classify model directory")
    p.add_argument("--data_dir", required=True, help="train.tsv and dev.tsv (test.tsv optional)")
    p.add_argument("--output_dir", default=d.output_dir)
    p.add_argument("--student", choices=STUDENTS, default=d.student)
    p.add_argument("--student_size", default=d.student_size,
                   help="named size of a fresh ERNIE student (test, mini, small, ...)")
    p.add_argument("--student_layers", type=int,
                   help="ERNIE student made of the teacher's first N layers instead")
    p.add_argument("--unlabeled", metavar="FILE",
                   help="more texts for the transfer set, one a line")
    p.add_argument("--transfer", metavar="FILE",
                   help="an earlier run's transfer.tsv (same teacher and data): skip "
                        "augmenting and labeling")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the transfer set")
    p.add_argument("--batch_size", type=int, default=d.batch_size)
    p.add_argument("--learning_rate", type=float,
                   help="default: 2e-3 bow, 3e-4 fresh ERNIE, 5e-5 ERNIE from teacher layers")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--alpha", type=float, default=d.alpha,
                   help="weight of the gold-label loss on the labeled texts")
    p.add_argument("--per_text", type=int, default=a.per_text,
                   help="augmented texts per training text (0: none)")
    p.add_argument("--p_mask", type=float, default=a.p_mask)
    p.add_argument("--p_replace", type=float, default=a.p_replace)
    p.add_argument("--p_ngram", type=float, default=a.p_ngram)
    p.add_argument("--ngram_max", type=int, default=a.ngram_max)
    p.add_argument("--no_baseline", action="store_true",
                   help="skip training the student without the teacher")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no_progress", action="store_true")


def run(args):
    from ernie2.finetune.augment import AugmentOptions
    from ernie2.finetune.distill import DistillSettings, distill, format_report

    aug = AugmentOptions(per_text=args.per_text, p_mask=args.p_mask, p_replace=args.p_replace,
                         p_ngram=args.p_ngram, ngram_max=args.ngram_max, seed=args.seed)
    result = distill(DistillSettings(
        teacher=args.teacher, data_dir=args.data_dir, output_dir=args.output_dir,
        student=args.student, student_size=args.student_size,
        student_layers=args.student_layers, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, temperature=args.temperature, alpha=args.alpha,
        augment=aug, unlabeled=args.unlabeled, transfer=args.transfer,
        baseline=not args.no_baseline, seed=args.seed,
        progress=not args.no_progress))
    print(format_report(result.report))
    print(f"student: {result.student_dir}" + (f"; baseline: {result.baseline_dir}"
                                              if result.baseline_dir else ""))
