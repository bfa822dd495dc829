"""Stage plans: task ids, which tasks each schedule trains, allocations, and how steps are fed."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ernie2.tasks.protocol import Example
from ernie2.model.batch import length_batches, rank_of
from ernie2.training.data import Batching, StageFeeder, compositions
from ernie2.training.schedule import SCHEDULES, StageSpec, allocate, build_plan, interleave

SPECS = [StageSpec("km", 100, [("km", None)]),
         StageSpec("structure", 90, [("reorder", None), ("distance", None)]),
         StageSpec("semantic", 97, [("discourse", None), ("ir", None)])]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("allocation", ["ernie2", "equal"])
def test_every_schedule_allocates_exactly_the_stage_steps(schedule, allocation):
    plan = build_plan(SPECS, schedule, allocation)
    for spec, stage in zip(SPECS, plan.stages):
        assert sum(stage.counts.values()) == spec.steps
        assert set(stage.counts) == set(stage.trained)
        assert all(c >= 1 for c in stage.counts.values())
    assert plan.total_steps == 287


def test_schedules_differ_in_which_tasks_each_stage_trains():
    continual = build_plan(SPECS, "continual")
    sequential = build_plan(SPECS, "sequential")
    joint = build_plan(SPECS, "joint")
    assert [s.trained for s in continual.stages] == [
        ["km"], ["km", "reorder", "distance"], ["km", "reorder", "distance", "discourse", "ir"]]
    assert [s.trained for s in sequential.stages] == [["km"], ["reorder", "distance"],
                                                      ["discourse", "ir"]]
    assert all(s.trained == ["km", "reorder", "distance", "discourse", "ir"]
               for s in joint.stages)
    # heads and task-embedding rows exist for known tasks only, except in joint training
    assert [continual.table_size(i) for i in range(3)] == [1, 3, 5]
    assert [joint.table_size(i) for i in range(3)] == [5, 5, 5]


def test_ernie2_policy_gives_newest_tasks_i_plus_2_shares():
    plan = build_plan(SPECS, "continual", "ernie2")
    s3 = plan.stages[2]
    assert s3.weights == {"km": 1, "reorder": 1, "distance": 1, "discourse": 4, "ir": 4}
    # 97 * (1, 1, 1, 4, 4) / 11 = 8.8 (x3), 35.3 (x2): floors 8, 8, 8, 35, 35, then +1 to the
    # three largest remainders
    assert s3.counts == {"km": 9, "reorder": 9, "distance": 9, "discourse": 35, "ir": 35}
    s2 = plan.stages[1]
    assert s2.weights == {"km": 1, "reorder": 3, "distance": 3}
    assert s2.counts == {"km": 13, "reorder": 39, "distance": 38}  # 90 * (1, 3, 3) / 7


def test_user_weights_override_the_policy():
    specs = [SPECS[0], StageSpec("structure", 100, [("reorder", None), ("distance", None)],
                                 {"km": 2, "distance": 1})]
    plan = build_plan(specs, "continual")
    assert plan.stages[1].weights == {"km": 2, "reorder": 3, "distance": 1}
    assert plan.stages[1].counts == {"km": 33, "reorder": 50, "distance": 17}
    with pytest.raises(ValueError, match="does not train"):
        build_plan([SPECS[0], StageSpec("x", 10, [("b", None)], {"zzz": 1})], "continual")


def test_task_ids_are_fixed_and_can_be_given():
    specs = [StageSpec("a", 10, [("km", None), ("cap", 5)]), StageSpec("b", 10, [("x", None)])]
    plan = build_plan(specs)
    assert {t.name: t.task_id for t in plan.tasks} == {"km": 0, "cap": 5, "x": 1}
    assert plan.table_size(0) == 6
    with pytest.raises(ValueError, match="already taken"):
        build_plan([StageSpec("a", 1, [("a", 0), ("b", 0)])])
    with pytest.raises(ValueError, match="introduced twice"):
        build_plan([StageSpec("a", 1, [("a", None)]), StageSpec("b", 1, [("a", None)])])


def test_allocate_by_largest_remainder():
    assert allocate(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert allocate(2, {"a": 1, "b": 1, "c": 1}) == {"a": 1, "b": 1, "c": 0}
    rng = random.Random(0)
    for _ in range(200):
        w = {f"t{i}": rng.uniform(0.1, 5) for i in range(rng.randint(1, 6))}
        steps = rng.randint(0, 500)
        c = allocate(steps, w)
        assert sum(c.values()) == steps
        if steps >= len(w):
            assert min(c.values()) >= 1


def test_interleave_and_compositions_spread_tasks_evenly():
    seq = interleave({"a": 6, "b": 3, "c": 1})
    assert Counter(seq) == {"a": 6, "b": 3, "c": 1}
    per_step = [next(iter(c)) for c in compositions({"a": 6, "b": 3, "c": 1}, 10, 1)]
    assert Counter(per_step) == {"a": 6, "b": 3, "c": 1}
    # no task waits much longer than 1/share for its turn
    a_gaps = [j - i for i, j in zip([k for k, t in enumerate(per_step) if t == "a"][:-1],
                                    [k for k, t in enumerate(per_step) if t == "a"][1:])]
    assert max(a_gaps) <= 2
    mixed = compositions({"a": 50, "b": 30, "c": 20}, 100, 32)
    assert all(sum(c.values()) == 32 for c in mixed)
    totals = Counter()
    for c in mixed:
        totals.update(c)
    assert totals == {"a": 50 * 32, "b": 30 * 32, "c": 20 * 32}
    # every step holds every task in about its share
    assert all(abs(c["a"] - 16) <= 1 and abs(c["c"] - 6.4) <= 1 for c in mixed)


class ListStream:
    """An in-memory ExampleStream: examples of given lengths, position as state."""

    def __init__(self, name, lengths, label=0):
        self.name, self.lengths, self.label, self.i = name, lengths, label, 0

    def __iter__(self):
        return self

    def __next__(self):
        n = self.lengths[self.i % len(self.lengths)]
        self.i += 1
        return Example(self.name, [1] + [5] * (n - 2) + [2], [0] * n, self.label)

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, s):
        self.i = s["i"]


def _feeder(mix, batching, rank=0, world=1, lengths=(10, 20, 7)):
    counts = {"a": 6, "b": 4}
    streams = {"a": ListStream("a", list(lengths)), "b": ListStream("b", [5, 9], 1)}
    return StageFeeder(counts, 10, streams, batching, mix, rank, world, pad_id=0,
                       task_ids={"a": 3, "b": 7})


def test_feeder_per_step_mix_trains_one_task_a_step_with_accumulation():
    feeder = _feeder("step", Batching(batch_size=8, micro_batch_size=3))
    seen = Counter()
    for step in feeder:
        tasks = {t for micro in step for t in micro}
        assert len(tasks) == 1
        seen.update(tasks)
        assert [sum(b["input_ids"].shape[0] for b in m.values()) for m in step] == [3, 3, 2]
        for m in step:
            for t, b in m.items():
                assert set(b["task_ids"].tolist()) == {3 if t == "a" else 7}
    assert seen == {"a": 6, "b": 4}


def test_feeder_mixed_batches_and_ranks_draw_the_global_batch_together():
    steps = []
    for rank in range(2):
        feeder = _feeder("batch", Batching(batch_size=10, micro_batch_size=4), rank, 2)
        steps.append([next(feeder) for _ in range(3)])
    for s in range(3):
        per_task = Counter()
        for rank in range(2):
            for micro in steps[rank][s]:
                for t, b in micro.items():
                    per_task[t] += b["input_ids"].shape[0]
        assert sum(per_task.values()) == 10 and per_task == {"a": 6, "b": 4}


def test_feeder_token_budget_and_resume_position():
    feeder = _feeder("step", Batching(batch_tokens=100, micro_batch_tokens=40),
                     lengths=(10, 20, 7, 13))
    first = [next(feeder) for _ in range(4)]
    for step in first:
        lens = [b["attention_mask"].sum(1).tolist() for m in step for b in m.values()]
        total = sum(sum(x) for x in lens)
        assert total >= 100 and total - max(max(x) for x in lens) < 100
        for m in step:
            for b in m.values():
                assert b["input_ids"].numel() <= 40
    state = feeder.state_dict()
    rest = [next(feeder) for _ in range(3)]
    again = _feeder("step", Batching(batch_tokens=100, micro_batch_tokens=40),
                    lengths=(10, 20, 7, 13))
    again.load_state_dict(state)
    for x, y in zip(rest, [next(again) for _ in range(3)]):
        assert [sorted(m) for m in x] == [sorted(m) for m in y]
        for mx, my in zip(x, y):
            for t in mx:
                assert mx[t]["input_ids"].equal(my[t]["input_ids"])


def test_pack_and_rank_shares():
    groups = list(length_batches([5, 30, 7, 29, 6], 2, None))
    assert groups == [[1, 3], [2, 4], [0]]
    groups = list(length_batches([5, 30, 7, 29, 6], None, 60))
    assert all(max([5, 30, 7, 29, 6][i] for i in g) * len(g) <= 60 for g in groups)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]

    def mine(lo, hi, rank, world):
        return [j for j in range(lo, hi) if rank_of(j, world) == rank]

    assert [mine(3, 10, r, 3) for r in range(3)] == [[3, 6, 9], [4, 7], [5, 8]]
    assert sorted(j for r in range(4) for j in mine(5, 17, r, 4)) == list(range(5, 17))
