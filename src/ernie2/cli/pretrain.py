"""Continual multi-task pre-training from a config: `ernie2 pretrain CONFIG [--resume]`.

CONFIG is a TOML or YAML file, or the name of a shipped config (demo_zh, demo_en, base_gpu).
Several processes: `torchrun --nproc_per_node N -m ernie2 pretrain CONFIG` (DDP; gloo on CPU).
"""

HELP = "ERNIE 2.0 continual multi-task pre-training from a config file"


def add_arguments(p):
    p.add_argument("config", nargs="?", help="config file (.toml/.yaml) or shipped config name")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in output_dir/checkpoints")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the outputs of an earlier run in output_dir and start afresh")
    p.add_argument("--allow_change", action="append", default=[], metavar="KEY",
                   help="with --resume: accept a changed config key (or every key under a "
                        "section), e.g. --allow-change train.lr")
    p.add_argument("--output_dir", help="override output_dir")
    p.add_argument("--data_dir", help="override data_dir")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any key, e.g. --set train.lr=1e-4 --set train.precision=fp32")
    p.add_argument("--steps_scale", type=float, metavar="X",
                   help="the same plan X times as long: every stage's steps x X (rounded), so "
                        "each stage and task keeps its share (e.g. 3 for the demo's longer "
                        "plan, docs/pretraining.md)")
    p.add_argument("--max_steps", type=int,
                   help="stop after this many optimizer steps, saving a checkpoint (--resume "
                        "continues) and the model so far in output_dir/stopped")
    p.add_argument("--no_progress", dest="progress", action="store_false", default=None,
                   help="no progress bar")
    p.add_argument("--list_configs", action="store_true", help="list the shipped configs")
    p.add_argument("--check", action="store_true",
                   help="validate everything short of training (config, vocab, model sizes, "
                   "tasks and their options, one example per task), print the plan")


def run(args):
    from ernie2.training.config import (load_config, parse_override, scaled_steps,
                                        shipped_configs)

    if args.list_configs:
        for path in shipped_configs():
            print(f"{path.stem:12s} {path}")
        return 0
    if not args.config:
        raise ValueError("give a CONFIG (a .toml/.yaml file or a shipped config name)")
    overrides = dict(parse_override(o) for o in args.overrides)
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    cfg = load_config(args.config, overrides)
    if args.steps_scale is not None:
        if not args.steps_scale > 0:
            raise ValueError(f"--steps_scale: expected a positive number, got {args.steps_scale}")
        for i, stage in enumerate(cfg.stages):
            overrides[f"stages.{i}.steps"] = scaled_steps(stage.steps, args.steps_scale)
        cfg = load_config(args.config, overrides)
    if args.check:
        from ernie2.training.pretraining import check
        print("\n".join(check(cfg)))
        return 0
    from ernie2.training import pretrain

    result = pretrain(cfg, resume=args.resume, max_steps=args.max_steps, progress=args.progress,
                      save_stopped=True, overwrite=args.overwrite,
                      allow_change=args.allow_change)
    if result.report.get("md"):
        print(result.report["md"].read_text(encoding="utf-8"))
    print(f"steps: {result.steps}" + ("" if result.completed else " (stopped early)"))
    for kind, path in result.report.items():
        print(f"forgetting report ({kind}): {path}")
    if result.final_model:
        print(f"final model: {result.final_model}")
    elif result.stopped_model:
        print(f"stopped at step {result.steps} by --max_steps: the model so far is in "
              f"{result.stopped_model} (fine-tune it with --from_pretrained); continue the run "
              "with --resume")
    else:
        print(f"no model was saved (the run stopped before its end); checkpoints: "
              f"{result.output_dir / 'checkpoints'} (resume with --resume)")
    if result.interrupted:
        again = " ".join(["ernie2 pretrain", args.config, *(f"--set {o}" for o in args.overrides),
                          *(f"--{k} {getattr(args, k)}" for k in ("output_dir", "data_dir",
                                                                   "steps_scale")
                            if getattr(args, k) is not None), "--resume"])
        print(f"interrupted at step {result.steps}; a checkpoint is saved. Resume with: {again}")
        return 130
    return 0
