"""What to run for demonstrations and expert benchmarks: start states, task sequences, seeds.

A :class:`Job` is one reset followed by a sequence of subtasks (each one a future episode): either a
single task, preceded by the subtasks that make it possible, or a CALVIN long-horizon chain. Jobs
are pure data and a function of ``(seed, index)``, so any number of worker processes can run them
and produce the same episodes.

Start states follow CALVIN: a task runs in a symbolic state where exactly one of its precondition
branches holds (:func:`eval.symbolic.applicable_branches`). The 192 valid start states cover most
tasks directly. The others need something first, as in CALVIN's chains:

* ``lift_<block>_drawer``: a start state with that block in the open drawer (PlayTable's reset
  places blocks in the drawer; CALVIN's evaluation reaches it by ``place_in_drawer``);
* ``place_in_slider``, ``place_in_drawer``, ``stack_block``: a lift first (the block must be held);
* ``unstack_block``: a lift and a ``stack_block`` first.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs import task_names
from eval.symbolic import (
    BLOCK_KEYS,
    SymbolicState,
    TaskNotApplicableError,
    applicable_branches,
    apply_task,
    valid_start_states,
)

#: Subtasks that may run before a task to make it applicable (the only ones CALVIN's chains need).
SETUP_TASKS: tuple[str, ...] = (
    *(f"lift_{color}_block_{surface}" for color in ("red", "blue", "pink") for surface in ("table", "slider")),
    "stack_block",
)


@dataclass(frozen=True)
class Job:
    """One reset and a sequence of subtasks.

    ``record`` says which subtasks are wanted as demonstrations (setup subtasks of a single-task job
    are run but may be left out); ``scene_seed`` draws the start scene (table slots, block yaws);
    ``expert_seed`` the expert's randomisation.
    """

    index: int
    state: dict[str, Any]
    tasks: tuple[str, ...]
    record: tuple[bool, ...]
    scene_seed: int
    expert_seed: int
    kind: str = "task"  # "task" (one task after its setup) or "chain"
    variant: str = "D"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """The task the job is about (the last one of a single-task job)."""
        return self.tasks[-1]


def derive_seed(*parts: int | str) -> int:
    """A 31-bit seed from any parts, stable across processes and Python versions (no ``hash()``)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def drawer_states() -> list[SymbolicState]:
    """Valid start states with the drawer open and one of the table blocks moved into it."""
    states = []
    for state in valid_start_states():
        if state["drawer"] != "open":
            continue
        for block in BLOCK_KEYS:
            if state[block] == "table":
                states.append({**state, block: "drawer"})
    return states


def _applies(state: SymbolicState, task: str) -> bool:
    return len(applicable_branches(state, task)) == 1


Route = tuple[tuple[tuple[str, Any], ...], tuple[str, ...]]


@functools.cache
def _routes(task: str) -> tuple[Route, ...]:
    """Every (start state, setup tasks) from which ``task`` is well defined, with the fewest setup steps."""
    for pool in (valid_start_states(), drawer_states()):
        direct = [(tuple(s.items()), ()) for s in pool if _applies(s, task)]
        if direct:
            return tuple(direct)
    # (start state, state reached, setup so far), widened one setup subtask at a time.
    frontier: list[tuple[SymbolicState, SymbolicState, tuple[str, ...]]] = [(s, s, ()) for s in valid_start_states()]
    for _ in range(2):
        routes: list[Route] = []
        widened = []
        for start, state, setup in frontier:
            for extra in SETUP_TASKS:
                try:
                    after = apply_task(state, extra)
                except TaskNotApplicableError:
                    continue
                if _applies(after, task):
                    routes.append((tuple(start.items()), (*setup, extra)))
                widened.append((start, after, (*setup, extra)))
        if routes:
            return tuple(routes)
        frontier = widened
    raise ValueError(f"task {task!r} is not reachable from CALVIN's start states within two setup subtasks")


def task_routes(task: str) -> list[tuple[SymbolicState, tuple[str, ...]]]:
    """Start states and setup subtasks for ``task`` (see the module docstring)."""
    if task not in task_names():
        raise ValueError(f"unknown CALVIN task {task!r}; known tasks: {', '.join(task_names())}")
    return [(dict(state), setup) for state, setup in _routes(task)]


def task_job(task: str, index: int, seed: int, *, variant: str = "D", allowed: set[str] | None = None) -> Job:
    """Job ``index`` for one task: a random route to it (start state and setup), seeded by ``(seed, task, index)``.

    Setup subtasks are recorded when they are in ``allowed`` (None: all are).
    """
    routes = task_routes(task)
    rng = np.random.default_rng(derive_seed(seed, "task", task, index))
    state, setup = routes[int(rng.integers(len(routes)))]
    tasks = (*setup, task)
    return Job(
        index=index,
        state=state,
        tasks=tasks,
        record=(*(allowed is None or step in allowed for step in setup), True),
        scene_seed=int(rng.integers(2**31)),
        expert_seed=int(rng.integers(2**31)),
        kind="task",
        variant=variant,
    )


def chain_job(
    index: int,
    seed: int,
    chains: Sequence[tuple[dict[str, Any], Sequence[str]]],
    *,
    variant: str = "D",
    draw: int = 0,
) -> Job:
    """Job ``index`` running one of ``chains`` (``(state, tasks)`` pairs) from a seeded start scene.

    ``draw`` picks another chain for the same index (used to redraw a chain without wanted tasks).
    """
    if not chains:
        raise ValueError("chain_job needs at least one chain")
    rng = np.random.default_rng(derive_seed(seed, "chain", index, draw))
    chain_index = int(rng.integers(len(chains)))
    state, tasks = chains[chain_index]
    return Job(
        index=index,
        state=dict(state),
        tasks=tuple(tasks),
        record=tuple(True for _ in tasks),
        scene_seed=int(rng.integers(2**31)),
        expert_seed=int(rng.integers(2**31)),
        kind="chain",
        variant=variant,
        meta={"chain_index": chain_index},
    )


def restrict_chain(job: Job, allowed: set[str]) -> Job | None:
    """The chain job cut after its last allowed task, recording only allowed tasks (None if it has none)."""
    keep = [i for i, task in enumerate(job.tasks) if task in allowed]
    if not keep:
        return None
    end = keep[-1] + 1
    return Job(
        index=job.index,
        state=job.state,
        tasks=job.tasks[:end],
        record=tuple(task in allowed for task in job.tasks[:end]),
        scene_seed=job.scene_seed,
        expert_seed=job.expert_seed,
        kind=job.kind,
        variant=job.variant,
        meta=job.meta,
    )


def demonstration_job(
    index: int,
    seed: int,
    tasks: Sequence[str],
    *,
    chain_fraction: float = 0.5,
    chains: Sequence[tuple[dict[str, Any], Sequence[str]]] = (),
    variants: Sequence[str] = ("D",),
) -> Job:
    """Job ``index`` of a demonstration stream: a chain with probability ``chain_fraction``, else one task.

    Single tasks are drawn uniformly from ``tasks`` (so every task gets about the same share); chains
    from ``chains``, restricted to ``tasks``. Everything is a function of ``(seed, index)``.
    """
    if not tasks:
        raise ValueError("demonstration_job needs at least one task")
    if not 0.0 <= chain_fraction <= 1.0:
        raise ValueError(f"chain_fraction must be in [0, 1], got {chain_fraction}")
    rng = np.random.default_rng(derive_seed(seed, "job", index))
    variant = variants[int(rng.integers(len(variants)))]
    allowed = set(tasks)
    if chains and rng.random() < chain_fraction:
        for draw in range(100):
            job = restrict_chain(chain_job(index, seed, chains, variant=variant, draw=draw), allowed)
            if job is not None:
                return job
    task = tasks[int(rng.integers(len(tasks)))]
    return task_job(task, index, seed, variant=variant, allowed=allowed)
