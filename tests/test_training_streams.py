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


# ------------------------------------------------------------------------------ packing
class Tokens(Numbers):
    """Token-level stand-in: example n is [CLS] n n ... [SEP] with 1 + n % 5 copies of n, each
    labeled n (special tokens -100)."""

    def __iter__(self):
        while True:
            n = self.next
            self.next += 1
            k = 1 + n % 5
            yield Example("tokens", [1] + [n + 10] * k + [2], [0] * (k + 2),
                          [-100] + [n + 10] * k + [-100], 3)


def body(ex):
    return [t for t in ex.input_ids if t not in (1, 2)]


def test_concat_examples_by_hand():
    from ernie2.tasks.protocol import concat_examples
    a = Example("t", [1, 5, 6, 2], [0, 0, 0, 0], [-100, 5, -100, -100], 4)
    b = Example("t", [1, 7, 2, 8, 2], [0, 0, 0, 1, 1], [-100, -100, 7, -100, -100], 4)
    ab = concat_examples([a, b])
    assert ab.input_ids == [1, 5, 6, 2, 7, 2, 8, 2]
    assert ab.sent_ids == [0, 0, 0, 0, 1, 1, 0, 0]  # b's segments flipped: 0 ends a, 1 opens b
    assert ab.labels == [-100, 5, -100, -100, -100, 7, -100, -100]
    assert ab.task_id == 4
    ba = concat_examples([b, a])  # b ends on segment 1: a's segment 0 follows as it is
    assert ba.sent_ids == [0, 0, 0, 1, 1, 0, 0, 0]
    with pytest.raises(ValueError, match="one label per token"):
        concat_examples([Example("s", [1, 5, 2], [0, 0, 0], 1), a])


def test_packing_keeps_every_token_in_order_and_fills_greedily():
    plain = list(itertools.islice(TaskStream(Tokens()), 400))
    packed = list(itertools.islice(TaskStream(Tokens(), pack=16), 100))
    flat = [t for ex in packed for t in body(ex)]
    assert flat == [t for ex in plain for t in body(ex)][:len(flat)]
    labels = [x for ex in packed for x in ex.labels if x != -100]
    assert labels == flat  # every label stays with its token
    lengths = [len(ex.input_ids) for ex in packed]
    assert max(lengths) <= 16 and sum(lengths) / len(lengths) > 12
    # greedy: the first example of the next pack (2 tokens plus its copies) would not have fit
    for ex, nxt in zip(packed, packed[1:]):
        first = nxt.input_ids[1]
        assert len(ex.input_ids) + 1 + (first - 10) % 5 + 1 > 16
    assert all(ex.input_ids.count(1) == 1 and ex.task_id == 3 for ex in packed)


@pytest.mark.parametrize("at", [0, 1, 7, 30])
def test_packed_state_resumes_exactly_through_json(at):
    def make(seed=5):
        return TaskStream(Tokens(), shuffle=8, seed=seed, pack=20)
    full = [ex.input_ids for ex in itertools.islice(make(), 60)]
    first = make()
    head = [ex.input_ids for ex in itertools.islice(first, at)]
    state = json.loads(json.dumps(first.state_dict()))
    again = make(seed=99)
    again.load_state_dict(state)
    assert head + [ex.input_ids for ex in itertools.islice(again, 60 - at)] == full
    with pytest.raises(ValueError, match="pack"):
        TaskStream(Tokens(), shuffle=8, pack=24).load_state_dict(state)
    with pytest.raises(ValueError, match="pack"):
        TaskStream(Tokens(), shuffle=8).load_state_dict(state)


def test_packed_example_sharding_equals_one_process():
    one = [ex.input_ids for ex in itertools.islice(TaskStream(Tokens(), pack=16), 30)]
    ranks = [[ex.input_ids for ex in itertools.islice(
        TaskStream(Tokens(), rank=r, world=2, pack=16), 15)] for r in range(2)]
    assert [ranks[i % 2][i // 2] for i in range(30)] == one


def test_packing_a_sequence_level_task_is_refused():
    with pytest.raises(ValueError, match="token-level"):
        next(TaskStream(Numbers(), pack=16))
    with pytest.raises(ValueError, match=">= 0"):
        TaskStream(Tokens(), pack=-1)


def test_an_examples_state_is_its_fields_as_json_and_holds_no_reference_to_it():
    from dataclasses import asdict

    from ernie2.training.streams import _example_state
    token = Example("km", [1, 5, 6, 2], [0, 0, 0, 0], [-100, 7, -100, -100], 3)
    sequence = Example("sd", [1, 5, 2, 6, 2], [0, 0, 0, 1, 1], 2, 4)
    for ex in (token, sequence):
        state = _example_state(ex)
        assert state == asdict(ex) and Example(**json.loads(json.dumps(state))) == ex
    state = _example_state(token)
    token.input_ids.append(9)  # a later change to the example does not reach the saved state
    assert state["input_ids"] == [1, 5, 6, 2]
