"""The command line a newcomer meets (issue 15): one flag spelling documented and both accepted,
--help without doubled or empty defaults, a pretrain capped by --max_steps that leaves a model,
and sub-commands that import only what they use."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

import ernie2
from ernie2.cli import build_parser, main
from test_training_toytasks import base_config, spec

SRC = str(Path(ernie2.__file__).resolve().parents[1])  # the ernie2 this test imports


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_both_spellings_are_accepted_and_one_is_shown():
    parser = build_parser()
    for flags in (["--output_dir", "o", "--max-steps", "3", "--no-progress"],
                  ["--output-dir", "o", "--max_steps", "3", "--no_progress"]):
        args = parser.parse_args(["pretrain", "c.toml", *flags])
        assert (args.output_dir, args.max_steps, args.progress) == ("o", 3, False)
    for flag in ("--output_dir", "--output-dir", "--save_dir", "--save-dir"):
        assert parser.parse_args(["finetune", flag, "x"]).output_dir == "x"
    args = parser.parse_args(["data", "prepare", "c.txt", "--out", "o", "--max-docs", "5"])
    assert args.max_docs == 5
    help_text = dict(_subparsers(parser))["pretrain"].format_help()
    assert "--output_dir" in help_text and "--output-dir" not in help_text


def test_help_shows_defaults_once_and_only_real_ones():
    for name, sub in _subparsers(build_parser()):
        text = " ".join(sub.format_help().split())
        assert "(default: None)" not in text, name
        assert "(default: True)" not in text and "(default: False)" not in text, name
        assert "default 32) (default" not in text, name
    text = " ".join(dict(_subparsers(build_parser()))["finetune"].format_help().split())
    assert "--no_progress no progress bar" in text


def test_the_help_lists_match_the_library():
    from ernie2.cli.finetune import POOLINGS, SIZES, TASKS
    from ernie2.finetune.task_types import TASK_TYPES
    from ernie2.model.config import NAMED_SIZES
    from ernie2.model.heads import POOLINGS as MODEL_POOLINGS

    assert set(TASKS) == set(TASK_TYPES) and set(SIZES) == set(NAMED_SIZES)
    assert POOLINGS == MODEL_POOLINGS


def test_commands_import_only_what_they_use():
    code = """import sys
from ernie2.cli import main
for argv in (["--help"], ["predict", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print("\\nHELP", *sys.modules)
import ernie2.inference.server
print("SERVER", *sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": SRC}).stdout.splitlines()
    help_modules, server_modules = (set(line.split()[1:]) for line in out[-2:])
    assert "torch" not in help_modules
    assert not {m for m in server_modules if m.startswith(("ernie2.tasks", "ernie2.training",
                                                           "ernie2.corpus"))}


def test_pretrain_max_steps_leaves_a_model(tmp_path, capsys):
    cfg = base_config(tmp_path, **{"checkpoint.every": 0, "eval.examples": 8})
    cfg["stages"] = [{"name": "words", "steps": 4, "tasks": [{"task": spec("ToyMLM"),
                                                              "name": "mlm"}]}]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["pretrain", str(config), "--max_steps", "3", "--no_progress"]) == 0
    out = capsys.readouterr().out
    stopped = Path(cfg["output_dir"]) / "stopped"
    assert f"stopped at step 3 by --max_steps: the model so far is in {stopped}" in out
    from ernie2.model.checkpoint import read_checkpoint

    assert read_checkpoint(stopped).heads("mlm")
    assert (Path(cfg["output_dir"]) / "checkpoints" / "step-00000003").is_dir()
    assert main(["pretrain", str(config), "--resume", "--no_progress"]) == 0
    assert "final model:" in capsys.readouterr().out


def test_pretrain_steps_scale_lengthens_every_stage(tmp_path, capsys):
    cfg = base_config(tmp_path, **{"checkpoint.every": 0, "eval.examples": 8})
    mlm = {"task": spec("ToyMLM"), "name": "mlm"}
    cfg["stages"] = [{"name": "words", "steps": 4, "tasks": [mlm]},
                     {"name": "more", "steps": 6, "tasks": [{**mlm, "name": "mlm2"}]}]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["pretrain", str(config), "--steps_scale", "2.5", "--check"]) == 0
    out = capsys.readouterr().out
    assert "25 steps" in out  # 10 + 15
    assert "stage 1 words: 10 steps" in out and "stage 2 more: 15 steps" in out
    assert main(["pretrain", str(config), "--steps_scale", "0", "--check"]) == 1
    assert "--steps_scale: expected a positive number" in capsys.readouterr().err
