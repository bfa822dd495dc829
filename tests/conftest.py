"""Fixtures shared by test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine threads wait for each other:
    a module that uses this (`pytestmark = pytest.mark.usefixtures("one_thread")`) runs on one
    thread and gives the previous count back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
