"""examples/pretrain_compare.py at a tiny size: the four arms train the same stages, steps and
data under their schedules, knowledge masking alone gets all the steps, and the table, the drops
and the plot are what the histories say."""

import json

import pytest
from conftest_data import demo_small  # noqa: F401
from example_scripts import load_example

from ernie2.training.evaluation import main_metric

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"model.size": "test", "model.max_len": 64, "train.batch_size": 8, "train.lr": 2e-3,
        "eval.examples": 24, "eval.heldout": 0.2, "checkpoint.every": 0,
        "checkpoint.stage_models": False, "log.every": 1000, "log.progress": False,
        "log.tensorboard": "off", "log.peak_tflops": 1.0}


@pytest.mark.slow
def test_schedules_compared_on_the_same_steps_and_data(tmp_path, demo_small):  # noqa: F811
    compare = load_example("pretrain_compare")
    out = compare.run("demo_zh", tmp_path / "cmp", scale=0.005,
                      overrides={**TINY, "data_dir": str(demo_small)}, finetune=False,
                      progress=False)
    runs = out["runs"]
    assert list(runs) == list(compare.SCHEDULES)
    steps = {name: r["steps"] for name, r in runs.items()}
    assert len(set(steps.values())) == 1, steps  # the same budget for every arm
    for name in ("continual", "sequential", "joint"):
        saved = json.loads((tmp_path / "cmp" / name / "config.json").read_text())
        assert saved["train"]["schedule"] == name
        assert [h["name"] for h in runs[name]["history"]] == \
            ["knowledge masking", "structure", "semantic"]
    # joint trains (and evaluates) every task from the first stage; the others add them
    first = {name: set(r["history"][0]["results"]) for name, r in runs.items()}
    assert first["continual"] == first["sequential"] == {"knowledge_masking", "km_reviews"}
    assert len(first["joint"]) == 6
    # knowledge masking alone: its tasks only, one stage with all the steps
    km = runs["km_only"]["history"]
    assert len(km) == 1 and set(km[0]["results"]) == {"knowledge_masking", "km_reviews"}
    # the drop of a task: its metric at its first stage end minus its metric at the last one
    for name, r in runs.items():
        hist = r["history"]
        for task, drop in r["forgetting"].items():
            first_value = next(main_metric(h["results"][task])[1] for h in hist
                               if task in h["results"])
            assert drop == pytest.approx(first_value - main_metric(hist[-1]["results"][task])[1])
    md = out["paths"]["md"].read_text()
    for name, r in runs.items():
        for h in r["history"]:
            assert f"| {name} | {h['stage'] + 1}. {h['name']} (step {h['step']}) |" in md
    assert out["paths"]["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_schedule_is_refused(capsys):
    with pytest.raises(SystemExit):
        load_example("pretrain_compare").main(["demo_zh", "--schedules", "continual,serial"])
    assert "unknown schedule(s) serial" in capsys.readouterr().err
