"""Fixtures shared by test modules."""

from __future__ import annotations

import os

import pytest
import torch

# `make test` runs the suite in parallel processes (pytest-xdist, one per core): each one takes
# its share of the cores, so that two workers' matmuls do not fight over the same ones.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine threads wait for each other:
    a module that uses this (`pytestmark = pytest.mark.usefixtures("one_thread")`) runs on one
    thread and gives the previous count back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def corpus_cache(tmp_path_factory):
    """Raw corpora that runs prepare go to a session directory, not the user's cache."""
    before = os.environ.get("ERNIE2_CORPUS_CACHE")
    os.environ["ERNIE2_CORPUS_CACHE"] = str(tmp_path_factory.mktemp("corpus_cache"))
    yield
    if before is None:
        os.environ.pop("ERNIE2_CORPUS_CACHE", None)
    else:
        os.environ["ERNIE2_CORPUS_CACHE"] = before
