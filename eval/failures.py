"""Why a block task failed, read from the simulator's state along the episode (not guessed from video).

A :class:`FailureProbe` watches one subtask of a block task (lift, place, stack, push, rotate): at every
step it reads the simulator's info dict (the same one the task oracle checks: block contacts and
positions, the robot's uid and tool centre point) and records whether the robot touched, held or
moved each block and whether the gripper was inside the static camera's view. When the subtask
fails, :meth:`FailureProbe.label` names the first of these that applies:

``out_of_view``
    the gripper spent more than a tenth of the episode outside the static camera's image (the
    policy then drives on the wrist view alone, a state the demonstrations never show);
``wrong_block``
    the robot held or moved another block but never handled the one the task names;
``grasp_missed``
    the robot never held the block (lift, unstack) or never touched it (push, rotate, push into
    the drawer); for place and stack, it held no block when the subtask started;
``block_dropped``
    the robot held the task's block and let go of it without the task being done (for place and
    stack: released somewhere the task does not count);
``time_out``
    the robot handled the right block all along, but the task's condition was not met in 360 steps
    (lifted too little, pushed too short, rotated too little, still holding it).

Articulated tasks (drawer, slider, switch, button) get no label: their failures are all time-outs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Info = Mapping[str, Any]
FAILURE_KINDS: dict[str, str] = {
    "out_of_view": "the gripper left the static camera's view for more than a tenth of the episode",
    "wrong_block": "the robot held or moved another block, never the task's block",
    "grasp_missed": "the robot never held (lift) or touched (push, rotate) the task's block",
    "block_dropped": "the robot held the task's block and let go of it before the task was done",
    "time_out": "the robot handled the right block, but the task's condition was not met in time",
}
BLOCK_FAMILIES = ("lift", "place", "stack", "push", "rotate")
MOVED = 0.03  # metres: a block displaced more than this was moved by the robot
OUT_OF_VIEW_SHARE = 0.1


def _blocks(info: Info) -> Mapping[str, Any]:
    return info["scene_info"]["movable_objects"]


def _bodies(contacts: Iterable[Sequence]) -> set[int]:
    return {int(c[2]) for c in contacts}


def _held(info: Info, name: str) -> bool:
    """The block touches the robot and nothing else (CALVIN's test for a lifted block)."""
    return _bodies(_blocks(info)[name]["contacts"]) == {int(info["robot_info"]["uid"])}


def _touched(info: Info, name: str) -> bool:
    return int(info["robot_info"]["uid"]) in _bodies(_blocks(info)[name]["contacts"])


def task_blocks(task: str, start: Info) -> set[str] | None:
    """The blocks a block task is about, seen at its start (None: not a block task)."""
    from envs import task_family

    family = task_family(task)
    if family not in BLOCK_FAMILIES:
        return None
    names = list(_blocks(start))
    for colour in ("red", "blue", "pink"):
        if f"_{colour}_block" in task:
            return {f"block_{colour}"}
    robot = int(start["robot_info"]["uid"])
    uids = {int(_blocks(start)[n]["uid"]): n for n in names}
    if task in ("place_in_slider", "place_in_drawer", "stack_block"):
        return {n for n in names if _bodies(_blocks(start)[n]["contacts"]) == {robot}}
    if task == "unstack_block":  # the block resting on other blocks only
        return {
            n
            for n in names
            if (bodies := _bodies(_blocks(start)[n]["contacts"]) - {robot}) and bodies <= set(uids) - {uids.get(n)}
        }
    return {n for n in names if robot not in _bodies(_blocks(start)[n]["contacts"])}  # push_into_drawer: candidates


class FailureProbe:
    """Records what the robot did with the blocks during one block-task subtask."""

    def __init__(self, task: str, start: Info, sees: Callable[[Any], bool] | None = None) -> None:
        from envs import task_family

        self.task = task
        self.family = task_family(task)
        self.targets = task_blocks(task, start) or set()
        self.sees = sees
        self.start_pos = {n: np.asarray(b["current_pos"], dtype=float) for n, b in _blocks(start).items()}
        self.held = Counter()
        self.touched = Counter()
        self.moved: set[str] = set()
        self.steps = 0
        self.out_of_view = 0
        self.held_at_end: set[str] = set()
        self.targets_held_at_start = {n for n in self.targets if _held(start, n)}

    def observe(self, info: Info) -> None:
        self.steps += 1
        held_now = set()
        for name, block in _blocks(info).items():
            if _held(info, name):
                self.held[name] += 1
                held_now.add(name)
            if _touched(info, name):
                self.touched[name] += 1
            if np.linalg.norm(np.asarray(block["current_pos"], dtype=float) - self.start_pos[name]) > MOVED:
                self.moved.add(name)
        self.held_at_end = held_now
        if self.sees is not None and not self.sees(info["robot_info"]["tcp_pos"]):
            self.out_of_view += 1

    def label(self) -> str:
        """The failure kind of a subtask that did not succeed (see the module docstring)."""
        if self.steps and self.out_of_view > OUT_OF_VIEW_SHARE * self.steps:
            return "out_of_view"
        others = set(self.start_pos) - self.targets
        handled_other = any(self.held[n] or n in self.moved for n in others)
        if self.family in ("place", "stack") and self.task != "unstack_block":
            if not self.targets_held_at_start:
                return "grasp_missed"
            if not self.held_at_end & self.targets:
                return "block_dropped"
            return "time_out"
        needs_grasp = self.family == "lift" or self.task == "unstack_block"
        handled = any((self.held if needs_grasp else self.touched)[n] for n in self.targets)
        if not handled:
            return "wrong_block" if handled_other else "grasp_missed"
        if needs_grasp and not self.held_at_end & self.targets:
            return "block_dropped"
        return "time_out"


def failure_breakdown(labels: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``(task, label)`` pairs of failed block-task episodes -> counts overall and per task."""
    counts: Counter[str] = Counter()
    per_task: dict[str, Counter[str]] = {}
    for task, label in labels:
        counts[label] += 1
        per_task.setdefault(task, Counter())[label] += 1
    return {
        "kinds": FAILURE_KINDS,
        "counts": {k: counts[k] for k in FAILURE_KINDS if counts[k]},
        "per_task": {t: dict(c) for t, c in sorted(per_task.items())},
    }


def probe_factory(backend: str) -> Callable[[str, Info], FailureProbe | None]:
    """``(task, start_info) -> FailureProbe`` for block tasks, None for the others. Both simulators
    use CALVIN's static camera, so the view test is the same."""
    from envs import task_family
    from envs.playtable.cameras import static_camera_sees

    def make(task: str, start: Info) -> FailureProbe | None:
        if task_family(task) not in BLOCK_FAMILIES:
            return None
        return FailureProbe(task, start, sees=static_camera_sees)

    return make


def result_failures(results: Iterable[Any]) -> dict[str, Any]:
    """Failure breakdown of the labelled failed subtasks in chain results (single tasks or chains)."""
    pairs = []
    for r in results:
        if r.failure and len(r.successes) and not r.successes[-1]:
            pairs.append((r.tasks[len(r.successes) - 1], r.failure))
    return failure_breakdown(pairs)
