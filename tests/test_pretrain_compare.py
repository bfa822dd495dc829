"""examples/pretrain_compare.py at a tiny size: the four arms train the same stages, steps and
data under their schedules, knowledge masking alone gets all the steps, and the table, the drops
and the plot are what the histories say."""

import json

import pytest
import torch
from demo_data import demo_small  # noqa: F401
from example_scripts import load_example
from safetensors.torch import load_file

from ernie2.training.config import load_config
from ernie2.training.evaluation import main_metric

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"model.size": "test", "model.max_len": 64, "train.batch_size": 8, "train.lr": 2e-3,
        "eval.examples": 24, "eval.heldout": 0.2, "checkpoint.every": 0,
        "checkpoint.stage_models": False, "log.every": 1000, "log.progress": False,
        "log.tensorboard": "off", "log.peak_tflops": 1.0}


def test_the_arms_share_stages_steps_and_data(tmp_path):
    compare = load_example("pretrain_compare")
    shipped = load_config("demo_zh").to_dict()
    total = sum(st["steps"] for st in shipped["stages"])
    arms = {s: compare.schedule_config("demo_zh", s, tmp_path, 0.5, {}).to_dict()
            for s in compare.SCHEDULES}
    for name, cfg in arms.items():
        assert cfg["output_dir"] == str(tmp_path / name)
        assert cfg["corpora"] == shipped["corpora"] and cfg["model"] == shipped["model"]
        assert sum(st["steps"] for st in cfg["stages"]) == pytest.approx(total / 2, abs=3)
    for name in ("continual", "sequential", "joint"):
        assert arms[name]["train"]["schedule"] == name
        assert [[t["task"] for t in st["tasks"]] for st in arms[name]["stages"]] == \
            [[t["task"] for t in st["tasks"]] for st in shipped["stages"]]
    # a sequential stage weighs only the tasks it trains
    for st in arms["sequential"]["stages"]:
        own = {t.get("name") or t["task"] for t in st["tasks"]}
        assert set(st.get("weights") or {}) <= own
    # knowledge masking alone: the plan's knowledge-masking tasks, one stage, all the steps
    (km,) = arms["km_only"]["stages"]
    assert [t.get("name") or t["task"] for t in km["tasks"]] == ["knowledge_masking", "km_reviews"]


def history(values: list[dict[str, float]]) -> list[dict]:
    return [{"stage": i, "name": f"s{i}", "step": 10 * (i + 1),
             "results": {t: {"accuracy": v, "loss": 1.0} for t, v in row.items()}}
            for i, row in enumerate(values)]


def test_drops_and_table_follow_the_histories(tmp_path):
    compare = load_example("pretrain_compare")
    runs = {}
    for name, values in {"continual": [{"a": 0.5}, {"a": 0.52, "b": 0.3}, {"a": 0.49, "b": 0.4}],
                         "sequential": [{"a": 0.5}, {"a": 0.2, "b": 0.3}, {"a": 0.1, "b": 0.2}]
                         }.items():
        hist = history(values)
        runs[name] = {"history": hist, "chance": {"a": 0.1, "b": 0.25},
                      "forgetting": compare.forgetting(hist, lambda r: main_metric(r)[1])}
    assert runs["continual"]["forgetting"] == pytest.approx({"a": 0.01, "b": -0.1})
    assert runs["sequential"]["forgetting"] == pytest.approx({"a": 0.4, "b": 0.1})
    paths = compare.write_outputs(tmp_path, runs, None)
    md = paths["md"].read_text()
    assert "| sequential | 2. s1 (step 20) | 0.200 | 0.300 |" in md
    assert "| continual | +0.010 | -0.100 | +0.010 |" in md
    assert "| sequential | +0.400 | +0.100 | +0.400 |" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["json"].read_text())["runs"]["continual"]["forgetting"]["a"] == \
        pytest.approx(0.01)


@pytest.mark.slow
def test_two_arms_end_to_end_at_a_tiny_size(tmp_path, demo_small):  # noqa: F811
    compare = load_example("pretrain_compare")
    demo = load_example("finetune_demo")
    tiny_tasks = {"sentiment": demo.DemoTask("sentiment", "classify", (24, 6, 6), 2, (1e-3,),
                                             "accuracy", 32)}
    overrides = {**TINY, "data_dir": str(demo_small), "checkpoint.every": 2}
    first = compare.run("demo_zh", tmp_path / "cmp", schedules=("sequential",), scale=0.0015,
                        overrides=overrides, finetune=False, progress=False)
    weights = tmp_path / "cmp" / "sequential" / "final" / "model.safetensors"
    before = load_file(str(weights))
    train_log = tmp_path / "cmp" / "sequential" / "metrics.jsonl"
    logged = train_log.read_text()
    # the arm finished in a first call is read back, not trained again; the fine-tuning sees
    # every arm and random initialization
    out = compare.run("demo_zh", tmp_path / "cmp", schedules=("sequential", "km_only"),
                      scale=0.0015, overrides=overrides, finetune_tasks=tiny_tasks, workers=1,
                      progress=False)
    after = load_file(str(weights))
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)
    assert train_log.read_text() == logged  # not one step trained again
    assert out["runs"]["sequential"]["history"] == first["runs"]["sequential"]["history"]
    assert set(out["finetune"]["sentiment"]) == {"sequential", "km_only", demo.RANDOM}
    runs = out["runs"]
    assert runs["sequential"]["steps"] == runs["km_only"]["steps"]
    seq = runs["sequential"]["history"]
    assert [h["name"] for h in seq] == ["knowledge masking", "structure", "semantic"]
    assert set(seq[0]["results"]) == {"knowledge_masking", "km_reviews"}
    assert len(seq[-1]["results"]) == 9  # every task introduced so far is evaluated
    (km,) = runs["km_only"]["history"]
    assert set(km["results"]) == {"knowledge_masking", "km_reviews"}
    assert "| km_only | 1. knowledge masking only" in out["paths"]["md"].read_text()


def test_unknown_schedule_is_refused(capsys):
    with pytest.raises(SystemExit):
        load_example("pretrain_compare").main(["demo_zh", "--schedules", "continual,serial"])
    assert "unknown schedule(s) serial" in capsys.readouterr().err
