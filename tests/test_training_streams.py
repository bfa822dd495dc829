"""The trainer's task streams: the shuffle buffer mixes documents, is seeded, resumes exactly from
its state (through JSON, as checkpoints keep it) and keeps example sharding equal to one process."""

from __future__ import annotations

import itertools
import json

import pytest

from ernie2.tasks.protocol import Example
from ernie2.training.streams import TaskStream


class Numbers:
    """A stand-in ExampleStream: documents of 8 consecutive examples; the label is the document,
    the input the running example number. Its position is the next number."""

    def __init__(self):
        self.next = 0

    def __iter__(self):
        while True:
            n = self.next
            self.next += 1
            yield Example("numbers", [1, n, 2], [0, 0, 0], n // 8, 0)

    def state_dict(self):
        return {"next": self.next}

    def load_state_dict(self, state):
        self.next = state["next"]


def draw(stream, k):
    return [ex.input_ids[1] for ex in itertools.islice(stream, k)]


def test_without_a_buffer_the_stream_is_in_document_order():
    assert draw(TaskStream(Numbers()), 10) == list(range(10))


def test_buffer_mixes_documents_and_loses_nothing():
    got = draw(TaskStream(Numbers(), shuffle=64, seed=3), 32)
    assert got != sorted(got)
    assert len(set(got)) == 32 and max(got) < 64 + 32  # each drawn once, from the buffer's reach
    assert len({n // 8 for n in got}) >= 6  # a batch spans many documents
    # every example comes out once, whatever the order
    out = draw(TaskStream(Numbers(), shuffle=16, seed=0), 200)
    assert set(out) < set(range(216)) and len(set(out)) == 200


def test_buffer_is_seeded():
    assert draw(TaskStream(Numbers(), shuffle=32, seed=1), 40) == \
        draw(TaskStream(Numbers(), shuffle=32, seed=1), 40)
    assert draw(TaskStream(Numbers(), shuffle=32, seed=1), 40) != \
        draw(TaskStream(Numbers(), shuffle=32, seed=2), 40)


@pytest.mark.parametrize("at", [0, 1, 31, 50])
def test_buffer_state_resumes_exactly_through_json(at):
    full = draw(TaskStream(Numbers(), shuffle=32, seed=5), 120)
    first = TaskStream(Numbers(), shuffle=32, seed=5)
    head = draw(first, at)
    state = json.loads(json.dumps(first.state_dict()))
    again = TaskStream(Numbers(), shuffle=32, seed=99)  # the seed comes back with the state
    again.load_state_dict(state)
    assert head + draw(again, 120 - at) == full


def test_resuming_with_another_buffer_size_is_refused():
    s = TaskStream(Numbers(), shuffle=32, seed=5)
    draw(s, 3)
    with pytest.raises(ValueError, match="shuffle_buffer"):
        TaskStream(Numbers(), shuffle=16).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="shuffle_buffer"):
        TaskStream(Numbers()).load_state_dict(s.state_dict())


def test_example_sharding_after_the_buffer_equals_one_process():
    one = draw(TaskStream(Numbers(), shuffle=32, seed=7), 60)
    ranks = [draw(TaskStream(Numbers(), rank=r, world=3, shuffle=32, seed=7), 20)
             for r in range(3)]
    assert [ranks[i % 3][i // 3] for i in range(60)] == one


def test_negative_buffer_is_refused():
    with pytest.raises(ValueError, match=">= 0"):
        TaskStream(Numbers(), shuffle=-1)
