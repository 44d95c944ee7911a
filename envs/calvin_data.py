"""CALVIN's task and instruction data, shipped inside the package.

The files under ``envs/calvin_data/`` are CALVIN's own (the 1,000 standard evaluation chains, the
34 tasks' symbolic preconditions and effects, and the instruction sets). ``envs`` is the bottom
layer of the package, so every other layer reads them from here instead of keeping its own copy.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml

#: Key order of a CALVIN symbolic state. The order matters: CALVIN seeds each start scene from
#: ``str(state.values())``, so the same facts in another order would give another scene.
SYMBOLIC_KEYS: tuple[str, ...] = (
    "led",
    "lightbulb",
    "slider",
    "drawer",
    "red_block",
    "blue_block",
    "pink_block",
    "grasped",
)

INSTRUCTION_SPLITS = ("validation", "training")


def _read_text(name: str) -> str:
    return resources.files("envs").joinpath("calvin_data", name).read_text(encoding="utf-8")


@cache
def _eval_sequences_raw() -> tuple[tuple[tuple[tuple[str, Any], ...], tuple[str, ...]], ...]:
    chains = json.loads(_read_text("eval_sequences.json"))
    return tuple((tuple(state.items()), tuple(tasks)) for state, tasks in chains)


def load_eval_sequences() -> list[tuple[dict[str, Any], list[str]]]:
    """The 1,000 standard evaluation chains as ``(start_state, [task, ...5])``, in CALVIN's order.

    Each call returns fresh dicts and lists, so callers may modify them.
    """
    return [(dict(state), list(tasks)) for state, tasks in _eval_sequences_raw()]


def load_start_states() -> list[dict[str, Any]]:
    """The distinct symbolic start states of the standard chains, in order of first appearance."""
    seen: set[tuple[tuple[str, Any], ...]] = set()
    states = []
    for state, _ in _eval_sequences_raw():
        if state not in seen:
            seen.add(state)
            states.append(dict(state))
    return states


@cache
def _symbolic_tasks_raw() -> str:
    return _read_text("symbolic_tasks.json")


def load_symbolic_tasks() -> dict[str, Any]:
    """CALVIN's task table: ``{"task_categories": {task: int}, "tasks": {task: [{condition, effect}]}}``."""
    return json.loads(_symbolic_tasks_raw())


def task_names() -> list[str]:
    """The 34 CALVIN task names, in CALVIN's order."""
    return list(load_symbolic_tasks()["task_categories"])


#: CALVIN's steps per subtask (the protocol's episode length, in evaluation and in demonstrations).
SUBTASK_STEPS = 360
#: Task families, for per-family tables: what the robot has to do with what.
TASK_FAMILIES = ("articulated", "lift", "place", "stack", "push", "rotate")


def task_family(task: str) -> str:
    """``articulated`` (drawer, sliding door, switch, button), ``lift``, ``place``, ``stack`` (stack and
    unstack), ``push`` (left/right and into the drawer) or ``rotate``."""
    for prefix, family in (("lift_", "lift"), ("place_", "place"), ("push_", "push"), ("rotate_", "rotate")):
        if task.startswith(prefix):
            return family
    if task in ("stack_block", "unstack_block"):
        return "stack"
    if task not in task_names():
        raise ValueError(f"unknown CALVIN task {task!r}")
    return "articulated"


@cache
def _instructions_raw(split: str) -> str:
    return _read_text(f"{split}_instructions.yaml")


def task_instructions(split: str = "validation") -> dict[str, list[str]]:
    """Instructions per task: ``validation`` has the one sentence used at evaluation, ``training`` paraphrases."""
    if split not in INSTRUCTION_SPLITS:
        raise ValueError(f"unknown instruction split {split!r}; choose one of {INSTRUCTION_SPLITS}")
    data = yaml.safe_load(_instructions_raw(split))
    return {task: list(sentences) for task, sentences in data.items()}
