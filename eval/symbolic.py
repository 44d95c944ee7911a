"""CALVIN's symbolic task model: which subtasks can run in a scene state, and what they change.

CALVIN describes every subtask by one or more *branches*, each a precondition on the symbolic
scene state (lights, slider, drawer, where each block is, whether something is grasped) and the
effect it has when it succeeds. A subtask is *well defined* in a state when exactly one branch's
precondition holds: then the evaluator knows the single symbolic outcome to expect. The chain
generator, the evaluator and the scripted experts all reason with these helpers, so the semantics
live in one place and follow the shipped ``symbolic_tasks.json`` exactly.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

SymbolicValue = int | str
SymbolicState = dict[str, SymbolicValue]

# The order of keys and of the values within each key is part of the standard protocol: CALVIN
# enumerates the start states as the Cartesian product in exactly this order, and the state index
# in that enumeration seeds the random draw of that state's chains.
START_STATE_DOMAINS: Mapping[str, tuple[SymbolicValue, ...]] = {
    "led": (0, 1),
    "lightbulb": (0, 1),
    "slider": ("right", "left"),
    "drawer": ("closed", "open"),
    "red_block": ("table", "slider_right", "slider_left"),
    "blue_block": ("table", "slider_right", "slider_left"),
    "pink_block": ("table", "slider_right", "slider_left"),
    "grasped": (0,),
}
STATE_KEYS: tuple[str, ...] = tuple(START_STATE_DOMAINS)
BLOCK_KEYS: tuple[str, ...] = ("red_block", "blue_block", "pink_block")


class TaskNotApplicableError(ValueError):
    """A subtask was asked of a state in which not exactly one of its branches applies."""


@dataclass(frozen=True)
class Branch:
    """One way a subtask can happen: a precondition (a list value means "any of") and its effect."""

    condition: Mapping[str, SymbolicValue | tuple[SymbolicValue, ...]]
    effect: Mapping[str, SymbolicValue]

    def holds_in(self, state: Mapping[str, SymbolicValue]) -> bool:
        for key, wanted in self.condition.items():
            value = state[key]
            if isinstance(wanted, tuple):
                if value not in wanted:
                    return False
            elif value != wanted:
                return False
        return True


@dataclass(frozen=True)
class TaskDefinitions:
    """The 34 CALVIN subtasks: their category (no two of a chain may share one) and branches.

    ``names`` keeps the file's order, which is the population order CALVIN samples from.
    """

    names: tuple[str, ...]
    categories: Mapping[str, int]
    branches: Mapping[str, tuple[Branch, ...]]
    digest: str  # sha256 of the source file: changes whenever the definitions do (cache key)


def _branch_from_json(task: str, raw: Mapping[str, Any]) -> Branch:
    try:
        condition = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["condition"].items()}
        effect = dict(raw["effect"])
    except (KeyError, AttributeError, TypeError) as err:
        raise ValueError(f"task {task!r}: every branch needs a 'condition' and an 'effect' mapping") from err
    return Branch(condition=condition, effect=effect)


def parse_task_definitions(text: str | bytes) -> TaskDefinitions:
    """Parse the contents of a ``symbolic_tasks.json`` (keys ``task_categories`` and ``tasks``)."""
    raw = json.loads(text)
    if not isinstance(raw, dict) or "tasks" not in raw or "task_categories" not in raw:
        raise ValueError("symbolic task file must be a JSON object with keys 'task_categories' and 'tasks'")
    names = tuple(raw["tasks"])
    missing = [name for name in names if name not in raw["task_categories"]]
    if missing:
        raise ValueError(f"tasks without a category in 'task_categories': {missing}")
    branches = {name: tuple(_branch_from_json(name, b) for b in raw["tasks"][name]) for name in names}
    data = text.encode() if isinstance(text, str) else text
    return TaskDefinitions(
        names=names,
        categories={name: int(raw["task_categories"][name]) for name in names},
        branches=branches,
        digest=hashlib.sha256(data).hexdigest(),
    )


def shipped_task_definitions_path() -> Path:
    """The ``symbolic_tasks.json`` that ships inside the ``envs`` package."""
    return Path(str(resources.files("envs") / "calvin_data" / "symbolic_tasks.json"))


@functools.cache
def load_task_definitions(path: Path | str | None = None) -> TaskDefinitions:
    """Load (once per path) the task definitions; ``None`` means the copy shipped with the package."""
    source = Path(path) if path is not None else shipped_task_definitions_path()
    if not source.is_file():
        raise FileNotFoundError(
            f"symbolic task definitions not found at {source}; pass the path of a symbolic_tasks.json"
        )
    return parse_task_definitions(source.read_bytes())


def _check_state(state: Mapping[str, SymbolicValue]) -> None:
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise ValueError(f"symbolic state lacks keys {missing}; a state needs all of {list(STATE_KEYS)}")


def _branches_of(task: str, definitions: TaskDefinitions) -> tuple[Branch, ...]:
    try:
        return definitions.branches[task]
    except KeyError:
        raise ValueError(f"unknown CALVIN task {task!r}; known tasks: {', '.join(definitions.names)}") from None


def applicable_branches(
    state: Mapping[str, SymbolicValue], task: str, definitions: TaskDefinitions | None = None
) -> list[Branch]:
    """The branches of ``task`` whose precondition holds in ``state`` (in definition order)."""
    definitions = definitions or load_task_definitions()
    _check_state(state)
    return [branch for branch in _branches_of(task, definitions) if branch.holds_in(state)]


def apply_task(
    state: Mapping[str, SymbolicValue], task: str, definitions: TaskDefinitions | None = None
) -> SymbolicState:
    """The symbolic state after ``task`` succeeds in ``state`` (a new dict; the input is untouched).

    Raises TaskNotApplicableError unless exactly one branch applies: with none the task cannot
    start, with several its expected outcome is ambiguous - CALVIN never asks for either.
    """
    branches = applicable_branches(state, task, definitions)
    if len(branches) != 1:
        raise TaskNotApplicableError(
            f"task {task!r} has {len(branches)} applicable branches in state {dict(state)}; "
            "it can be part of a chain only where exactly one applies"
        )
    next_state = dict(state)
    next_state.update(branches[0].effect)
    return next_state


def is_valid_chain(
    state: Mapping[str, SymbolicValue], tasks: Sequence[str], definitions: TaskDefinitions | None = None
) -> bool:
    """CALVIN's chain rule: every step applies exactly once in sequence and no two share a category."""
    definitions = definitions or load_task_definitions()
    for task in tasks:
        _branches_of(task, definitions)  # unknown names are an error, not an invalid chain
    categories = [definitions.categories[task] for task in tasks]
    if len(set(categories)) != len(categories):
        return False
    current: Mapping[str, SymbolicValue] = state
    for task in tasks:
        try:
            current = apply_task(current, task, definitions)
        except TaskNotApplicableError:
            return False
    return True


def is_valid_start_state(state: Mapping[str, SymbolicValue]) -> bool:
    """One or two blocks on the table, the others in different shelf halves, nothing grasped."""
    _check_state(state)
    places = [state[block] for block in BLOCK_KEYS]
    return (
        all(state[key] in domain for key, domain in START_STATE_DOMAINS.items())
        and places.count("table") in (1, 2)
        and places.count("slider_right") < 2
        and places.count("slider_left") < 2
    )


def valid_start_states() -> list[SymbolicState]:
    """The 192 symbolic start states of CALVIN's long-horizon evaluation, in the standard order.

    Nothing is grasped, one or two blocks lie on the table and the others sit in different halves
    of the shelf; lights, slider and drawer take every combination.
    """
    combinations = itertools.product(*START_STATE_DOMAINS.values())
    candidates = (dict(zip(STATE_KEYS, values, strict=True)) for values in combinations)
    return [state for state in candidates if is_valid_start_state(state)]
