"""Pre-training configs: every shipped config parses into a valid plan, errors name the file,
the line and the key, overrides apply, and the docs describe every key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ernie2.cli import main as cli_main
from ernie2.training.config import (ConfigError, documented_keys, load_config, parse_override,
                                    shipped_configs)
from ernie2.training.pretraining import plan_from_config

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
seed = 3
data_dir = "data"

[model]
size = "mini"
vocab = "vocab.txt"

[[corpora]]
name = "news"
path = "news.jsonl"

[train]
lr = 5e-4
batch_size = 16

[[stages]]
name = "words"
steps = 10
[[stages.tasks]]
task = "knowledge_masking"

[[stages]]
name = "structure"
steps = 20
weights = { knowledge_masking = 2 }
[[stages.tasks]]
task = "sentence_reordering"
options = { m = 3 }
"""


def test_every_shipped_config_parses_into_a_plan():
    names = {p.stem for p in shipped_configs()}
    assert {"demo_zh", "demo_en", "base_gpu"} <= names
    for path in shipped_configs():
        cfg = load_config(path)
        plan = plan_from_config(cfg)
        assert plan.total_steps == sum(s.steps for s in cfg.stages) > 0
        for stage in plan.stages:
            assert sum(stage.counts.values()) == stage.steps
        from ernie2.tasks.registry import REGISTRY
        for st in cfg.stages:
            for t in st.tasks:
                assert t.task in REGISTRY, (path.name, t.task)


def test_demo_configs_follow_the_ernie2_stage_order():
    zh = plan_from_config(load_config("demo_zh"))
    # each task on both corpora (the reviews' copies named *_reviews), IR on People's Daily only
    assert [s.new for s in zh.stages] == [["knowledge_masking", "km_reviews"],
                                         ["sentence_reordering", "sentence_distance",
                                          "sr_reviews", "sd_reviews"],
                                         ["discourse_relation", "ir_relevance", "dr_reviews"]]
    en = plan_from_config(load_config("demo_en"))
    assert en.stages[0].new == ["knowledge_masking", "capitalization",
                                "token_document_relation"]
    assert [t.task_id for t in en.tasks] == list(range(7))


def test_toml_and_yaml_read_the_same(tmp_path):
    import tomllib
    import yaml

    (tmp_path / "a.toml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(tomllib.loads(GOOD)), encoding="utf-8")
    a, b = load_config(tmp_path / "a.toml"), load_config(tmp_path / "a.yaml")
    assert a.to_dict() == b.to_dict()
    assert a.train.lr == 5e-4 and a.stages[1].tasks[0].options == {"m": 3}
    plan = plan_from_config(a)
    assert plan.stages[1].weights == {"knowledge_masking": 2.0, "sentence_reordering": 3.0}


@pytest.mark.parametrize("change, where, message", [
    (("lr = 5e-4", "lrr = 5e-4"), (13, "train.lrr"), "did you mean 'lr'"),
    (("batch_size = 16", "batch_size = \"16\""), (14, "train.batch_size"), "expected an integer"),
    (("steps = 20", "steps = -1"), (24, "stages[1].steps"), "must be >= 0"),
    (('size = "mini"', 'size = "huge"'), (5, "model.size"), "unknown model size 'huge'"),
    (("options = { m = 3 }", "corpus = \"web\""), (28, "stages[1].tasks[0].corpus"),
     "no corpus named 'web'"),
    (("knowledge_masking = 2", "next_sentence = 2"), (25, "stages[1].weights.next_sentence"),
     "no task 'next_sentence'"),
    (("name = \"words\"\n", ""), (None, "stages[0].name"), "missing"),
])
def test_errors_name_the_file_line_and_key(tmp_path, change, where, message):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(*change), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    line, key = where
    prefix = f"{path}:{line}: " if line else f"{path}"
    assert text.startswith(prefix), text
    assert key in text and message in text, text


def test_bad_syntax_and_unknown_files(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[model\nsize = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_config(path)
    (tmp_path / "c.yaml").write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: not valid YAML"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(FileNotFoundError, match="nor a shipped config"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "x.ini").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="a config is a .toml"):
        load_config(tmp_path / "x.ini")


def test_overrides_and_command_line_values(tmp_path):
    (tmp_path / "a.toml").write_text(GOOD, encoding="utf-8")
    cfg = load_config(tmp_path / "a.toml", {"train.lr": 1e-3, "output_dir": "elsewhere",
                                            "eval.heldout": 0.2})
    assert cfg.train.lr == 1e-3 and cfg.output_dir == "elsewhere" and cfg.eval.heldout == 0.2
    assert parse_override("train.lr=2e-5") == ("train.lr", 2e-5)
    assert parse_override("train.precision=fp32") == ("train.precision", "fp32")
    assert parse_override("train.betas=[0.9, 0.98]") == ("train.betas", [0.9, 0.98])
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(tmp_path / "a.toml", {"train.lr": "fast"})
    # a number indexes a list of tables; the file's other stages are untouched
    cfg = load_config(tmp_path / "a.toml", {"stages.1.steps": 7, "stages.0.tasks.0.weight": 2.0})
    assert [st.steps for st in cfg.stages] == [10, 7] and cfg.stages[0].tasks[0].weight == 2.0
    with pytest.raises(ConfigError, match="stages has 2 entries, indexed 0..1"):
        load_config(tmp_path / "a.toml", {"stages.2.steps": 7})
    with pytest.raises(ConfigError, match="seed is not a table"):
        load_config(tmp_path / "a.toml", {"seed.x": 1})


def test_cli_check_prints_the_plan(tmp_path, capsys):
    from test_training_toytasks import write_corpus

    (tmp_path / "a.toml").write_text(GOOD, encoding="utf-8")
    assert cli_main(["pretrain", str(tmp_path / "a.toml"), "--check"]) == 1
    assert "model.vocab: data/vocab.txt not found" in capsys.readouterr().err
    write_corpus(tmp_path)  # --check opens the corpus and builds an example per task
    assert cli_main(["pretrain", str(tmp_path / "a.toml"), "--check", "--data-dir", str(tmp_path),
                     "--set", "corpora.0.path=corpus.txt", "--set", "corpora.0.lang=en"]) == 0
    out = capsys.readouterr().out
    assert "valid; continual schedule, 30 steps" in out
    assert "stage 2 structure: 20 steps (knowledge_masking=8, sentence_reordering=12)" in out
    assert cli_main(["pretrain", str(tmp_path / "a.toml"), "--set", "train.lrr=1", "--check"]) == 1
    assert "train.lrr: unknown key" in capsys.readouterr().err


def test_docs_describe_every_key():
    text = (ROOT / "docs" / "pretraining.md").read_text(encoding="utf-8")
    missing = [k for k in documented_keys() if f"`{k}`" not in text]
    assert not missing, f"docs/pretraining.md does not describe: {missing}"
    assert all(doc for doc in documented_keys().values())
