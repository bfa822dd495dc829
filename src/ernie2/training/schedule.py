"""Stage plans: which tasks each stage trains, how its steps are shared out, which task runs when.

A plan is data: every task has a fixed task id (its row of the task embedding), every stage a
number of steps and an integer allocation of those steps over the tasks it trains. The three
schedules differ only in which tasks a stage trains:

- continual (ERNIE 2.0): a stage trains its new tasks plus every earlier task;
- sequential: a stage trains only its new tasks (the forgetting baseline);
- joint: every stage trains every task of the plan, from the first step.

Allocation policies turn weights into step counts that add up to the stage's steps exactly:
"ernie2" gives each task new in stage i (0-based) weight i + 2 and each earlier task weight 1
(the public precedent: the newest tasks get the larger share, earlier ones keep a share);
"equal" weighs every task in play alike. Weights named in the config override either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

SCHEDULES = ("continual", "sequential", "joint")
ALLOCATIONS = ("ernie2", "equal")


@dataclass(frozen=True)
class PlannedTask:
    name: str
    task_id: int
    stage: int  # the stage that introduces it


@dataclass
class Stage:
    index: int
    name: str
    steps: int
    new: list[str]  # tasks introduced here
    trained: list[str]  # tasks trained here, in plan order
    weights: dict[str, float]
    counts: dict[str, int]  # steps per trained task; sums to `steps`
    known: list[str] = field(default_factory=list)  # tasks with a head and a task-id row


def allocate(steps: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer shares of `steps` proportional to `weights` (largest remainder), summing to
    `steps` exactly. Every task gets at least one step when there are enough steps, so no task
    in play is silently left out; ties go to the task listed first."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    names = list(weights)
    if not names:
        raise ValueError("no tasks to allocate steps to")
    bad = [n for n in names if not weights[n] > 0]
    if bad:
        raise ValueError(f"task weights must be positive: {', '.join(bad)}")
    total = sum(weights.values())
    exact = {n: steps * weights[n] / total for n in names}
    counts = {n: int(exact[n]) for n in names}
    left = steps - sum(counts.values())
    order = sorted(names, key=lambda n: (-(exact[n] - int(exact[n])), names.index(n)))
    for n in order[:left]:
        counts[n] += 1
    if steps >= len(names):
        for n in names:
            if counts[n] == 0:
                counts[max(names, key=lambda m: (counts[m], -names.index(m)))] -= 1
                counts[n] = 1
    return counts


def interleave(counts: dict[str, int]) -> list[str]:
    """A sequence holding each name `counts[name]` times, spread as evenly as possible
    (stride scheduling: at every slot the name furthest behind its quota goes next).

    Deterministic and exact, with lower variance than a random shuffle: a task never waits
    much longer than 1/share slots for its turn, which keeps earlier tasks from drifting."""
    total = sum(counts.values())
    done = {n: 0 for n in counts}
    out = []
    for k in range(total):
        name = max(counts, key=lambda n: (counts[n] * (k + 1) / total - done[n], counts[n]))
        done[name] += 1
        out.append(name)
    return out


@dataclass
class Plan:
    tasks: list[PlannedTask]
    stages: list[Stage]
    schedule: str

    def task(self, name: str) -> PlannedTask:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"task {name!r} is not in the plan")

    def table_size(self, stage: int) -> int:
        """Task embedding rows needed through `stage`: the largest id in use plus one."""
        return 1 + max(self.task(n).task_id for n in self.stages[stage].known)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_start(self, stage: int) -> int:
        """Global step count before `stage` begins."""
        return sum(s.steps for s in self.stages[:stage])

    def locate(self, global_step: int) -> tuple[int, int]:
        """(stage, step within that stage) of the `global_step`-th step (0-based)."""
        for s in self.stages:
            if global_step < s.steps:
                return s.index, global_step
            global_step -= s.steps
        raise IndexError("step beyond the end of the plan")


@dataclass
class StageSpec:
    """What a stage asks for (as written in a config): its new tasks and optional weights."""

    name: str
    steps: int
    new: list[tuple[str, int | None]]  # (task name, fixed task id or None)
    weights: dict[str, float] = field(default_factory=dict)


def build_plan(specs: Sequence[StageSpec], schedule: str = "continual",
               allocation: str = "ernie2") -> Plan:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one of {', '.join(SCHEDULES)}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation {allocation!r} is not one of {', '.join(ALLOCATIONS)}")
    if not specs:
        raise ValueError("a plan needs at least one stage")
    tasks: list[PlannedTask] = []
    fixed = {tid for spec in specs for _, tid in spec.new if tid is not None}
    next_id = 0
    for i, spec in enumerate(specs):
        for name, tid in spec.new:
            if any(t.name == name for t in tasks):
                raise ValueError(f"task {name!r} is introduced twice (stage {i + 1})")
            if tid is None:
                while next_id in fixed or any(t.task_id == next_id for t in tasks):
                    next_id += 1
                tid = next_id
            elif any(t.task_id == tid for t in tasks):
                raise ValueError(f"task id {tid} of {name!r} is already taken")
            tasks.append(PlannedTask(name, tid, i))
    all_names = [t.name for t in tasks]
    stages = []
    for i, spec in enumerate(specs):
        new = [n for n, _ in spec.new]
        known = [t.name for t in tasks if t.stage <= i] if schedule != "joint" else all_names
        if schedule == "continual":
            trained = known
        elif schedule == "sequential":
            trained = new
        else:
            trained = all_names
        if not trained:
            raise ValueError(f"stage {i + 1} ({spec.name}) trains no task: a {schedule} stage "
                             "must introduce at least one")
        if allocation == "ernie2" and schedule == "continual":
            weights = {n: float(i + 2) if n in new else 1.0 for n in trained}
        else:
            weights = {n: 1.0 for n in trained}
        unknown = [n for n in spec.weights if n not in trained]
        if unknown:
            raise ValueError(f"stage {i + 1} ({spec.name}) gives weights to tasks it does not "
                             f"train: {', '.join(unknown)} (it trains {', '.join(trained)})")
        weights.update({n: float(w) for n, w in spec.weights.items()})
        stages.append(Stage(i, spec.name, spec.steps, new, trained, weights,
                            allocate(spec.steps, weights), known))
    return Plan(tasks, stages, schedule)
