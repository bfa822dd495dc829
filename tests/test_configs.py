"""Every shipped pre-training config parses, names only registered tasks, and its stages add up."""

import pytest

from ernie2.tasks import REGISTRY
from ernie2.training.config import load_config, shipped_configs


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.stem)
def test_shipped_config_parses(path):
    config = load_config(path)
    assert config.stages, path
    for stage in config.stages:
        assert stage.steps > 0
        for task in stage.tasks:
            assert task.task in REGISTRY, (path, task.task)


def test_the_demo_and_gpu_configs_are_shipped():
    assert {p.stem for p in shipped_configs()} >= {"demo_zh", "demo_en", "base_gpu"}
