"""CALVIN's task oracle for the 34 tasks, and the symbolic state of a scene.

A task is a change between the info at a subtask's start and the current info (both from
``env.get_info()``). The definitions are CALVIN's (``calvin_env.envs.tasks.Tasks`` with
``new_playtable_tasks.yaml``), re-implemented here:

* ``rotate_<block>_right/left``: the block's orientation changed by more than 60 degrees about z
  (right = clockwise seen from above), less than 30 degrees about x and y, it moved less than 0.1 m
  and it rests on something besides the robot;
* ``push_<block>_right/left``: the block moved more than 0.1 m along +x / -x, touching the same
  surfaces (robot aside, and at least one) at start and end;
* ``move_slider_left/right``: slider joint +0.15 / -0.15; ``open/close_drawer``: drawer +0.12 / -0.12;
* ``lift_<block>_table/slider/drawer``: the block rose more than 0.05 m (0.03 m from the shelf) and
  touches only the robot, having rested on the desk top / shelf / drawer without the robot;
* ``place_in_slider/drawer``: the robot held exactly one block (touching only the robot) and now
  does not touch it, and it touches the shelf / drawer;
* ``stack_block`` / ``unstack_block``: a block came to rest only on other blocks / left them, slowly;
* ``turn_on/off_lightbulb``, ``turn_on/off_led``: the light's logical state went 0 -> 1 / 1 -> 0;
* ``push_into_drawer``: a block touching only the desk top (so not the robot) now touches the drawer
  (CALVIN's check of robot contact at the end never fires, see :func:`push_into_drawer`).

:class:`TaskOracle` has CALVIN's ``Tasks`` interface (``get_task_info``, ``get_task_info_for_set``),
plus :meth:`TaskOracle.success`. :func:`symbolic_state` maps an info dict to CALVIN's symbolic state
format (the dicts of ``eval_sequences.json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import numpy as np

from envs.calvin_data import task_names

Info = Mapping[str, Any]
TaskCheck = Callable[[Info, Info], bool]

CALVIN_BLOCKS = {"red": "block_red", "blue": "block_blue", "pink": "block_pink"}
SYMBOLIC_BLOCKS = {"block_red": "red_block", "block_blue": "blue_block", "block_pink": "pink_block"}
SLIDER_LEFT_THRESHOLD = 0.14  # half of the 0.28 travel: "left" above it
DRAWER_OPEN_THRESHOLD = 0.11  # half of the 0.22 travel: "open" above it
SURFACES = ("table", "shelf", "drawer")


# --- small helpers over the info dict ------------------------------------------------------------


def _block(info: Info, name: str) -> Mapping[str, Any]:
    return info["scene_info"]["movable_objects"][name]


def _bodies(contacts: Iterable[tuple]) -> set[int]:
    return {c[2] for c in contacts}


def _body_links(contacts: Iterable[tuple]) -> set[tuple[int, int]]:
    return {(c[2], c[4]) for c in contacts}


def _robot_uid(info: Info) -> int:
    return info["robot_info"]["uid"]


def _table_link(info: Info, link: str) -> tuple[int, int]:
    table = info["scene_info"]["fixed_objects"]["table"]
    return table["uid"], table["links"][link]


def _quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def _quat_to_euler_xyz(q: np.ndarray) -> tuple[float, float, float]:
    """Extrinsic x-y-z euler angles (radians) of an xyzw quaternion, as scipy's ``as_euler("xyz")``."""
    x, y, z, w = q / np.linalg.norm(q)
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


# --- CALVIN's task checks -------------------------------------------------------------------------


def rotate_object(
    obj: str, z_degrees: float, start: Info, end: Info, xy_threshold: float = 30.0, movement_threshold: float = 0.1
) -> bool:
    s, e = _block(start, obj), _block(end, obj)
    start_q = np.asarray(s["current_orn"], dtype=float)
    end_q = np.asarray(e["current_orn"], dtype=float)
    inverse = np.array([-start_q[0], -start_q[1], -start_q[2], start_q[3]])
    x, y, z = (math.degrees(a) for a in _quat_to_euler_xyz(_quat_multiply(end_q, inverse)))
    if np.linalg.norm(np.subtract(e["current_pos"], s["current_pos"])) > movement_threshold:
        return False
    if not _bodies(e["contacts"]) - {_robot_uid(start)}:
        return False
    if abs(x) >= xy_threshold or abs(y) >= xy_threshold:
        return False
    return z_degrees < z < 180 if z_degrees > 0 else -180 < z < z_degrees


def push_object(obj: str, x_distance: float, start: Info, end: Info) -> bool:
    s, e = _block(start, obj), _block(end, obj)
    robot = {_robot_uid(start)}
    start_surfaces = _bodies(s["contacts"]) - robot
    if not start_surfaces or start_surfaces != _bodies(e["contacts"]) - robot:
        return False
    moved = e["current_pos"][0] - s["current_pos"][0]
    return moved > x_distance if x_distance > 0 else moved < x_distance


def move_door(joint: str, threshold: float, start: Info, end: Info) -> bool:
    change = end["scene_info"]["doors"][joint]["current_state"] - start["scene_info"]["doors"][joint]["current_state"]
    return change > threshold if threshold > 0 else change < threshold


def lift_object(obj: str, z_distance: float, surface_link: str, start: Info, end: Info) -> bool:
    s, e = _block(start, obj), _block(end, obj)
    robot = _robot_uid(start)
    start_bodies, end_bodies = _bodies(s["contacts"]), _bodies(e["contacts"])
    return (
        e["current_pos"][2] - s["current_pos"][2] > z_distance
        and robot not in start_bodies
        and end_bodies == {robot}
        and _table_link(start, surface_link) in _body_links(s["contacts"])
    )


def place_object(surface_link: str, start: Info, end: Info) -> bool:
    robot = _robot_uid(start)
    held = _bodies(start["robot_info"]["contacts"])
    if len(held) != 1:
        return False
    (obj_uid,) = held
    if obj_uid in _bodies(end["robot_info"]["contacts"]):
        return False
    names = [name for name, block in start["scene_info"]["movable_objects"].items() if block["uid"] == obj_uid]
    if len(names) != 1:
        return False
    start_contacts = _bodies(_block(start, names[0])["contacts"])
    end_contacts = _body_links(_block(end, names[0])["contacts"])
    return start_contacts == {robot} and _table_link(end, surface_link) in end_contacts


def push_into_drawer(start: Info, end: Info) -> bool:
    # CALVIN also tests "robot not in start | end contacts", but against a set of (body, link) pairs,
    # where a body id never matches: in effect only the start contacts exclude the robot. Kept so,
    # for the same success rates.
    table, drawer = _table_link(start, "base_link"), _table_link(end, "drawer_link")
    for name in start["scene_info"]["movable_objects"]:
        start_contacts = _body_links(_block(start, name)["contacts"])
        end_contacts = _body_links(_block(end, name)["contacts"])
        if start_contacts == {table} and drawer in end_contacts:
            return True
    return False


def _slow(block: Mapping[str, Any], max_velocity: float) -> bool:
    return bool(
        np.all(np.abs(block["current_lin_vel"]) < max_velocity)
        and np.all(np.abs(block["current_ang_vel"]) < max_velocity)
    )


def stack_objects(start: Info, end: Info, max_velocity: float = 1.0) -> bool:
    blocks = start["scene_info"]["movable_objects"]
    uids = {block["uid"] for block in blocks.values()}
    for name in blocks:
        start_contacts, end_contacts = _bodies(_block(start, name)["contacts"]), _bodies(_block(end, name)["contacts"])
        if (
            not uids & start_contacts
            and uids & end_contacts
            and not end_contacts - uids
            and _slow(_block(end, name), max_velocity)
        ):
            return True
    return False


def unstack_objects(start: Info, end: Info, max_velocity: float = 1.0) -> bool:
    blocks = start["scene_info"]["movable_objects"]
    uids = {block["uid"] for block in blocks.values()}
    for name in blocks:
        start_contacts, end_contacts = _bodies(_block(start, name)["contacts"]), _bodies(_block(end, name)["contacts"])
        if (
            uids & start_contacts
            and not start_contacts - uids
            and not uids & end_contacts
            and _slow(_block(start, name), max_velocity)
        ):
            return True
    return False


def toggle_light(light: str, before: int, after: int, start: Info, end: Info) -> bool:
    lights_start, lights_end = start["scene_info"]["lights"], end["scene_info"]["lights"]
    return lights_start[light]["logical_state"] == before and lights_end[light]["logical_state"] == after


def _task_checks() -> dict[str, Callable[..., bool]]:
    checks: dict[str, Callable[..., bool]] = {}
    for color, obj in CALVIN_BLOCKS.items():
        checks[f"rotate_{color}_block_right"] = partial(rotate_object, obj, -60.0)
        checks[f"rotate_{color}_block_left"] = partial(rotate_object, obj, 60.0)
        checks[f"push_{color}_block_right"] = partial(push_object, obj, 0.1)
        checks[f"push_{color}_block_left"] = partial(push_object, obj, -0.1)
        checks[f"lift_{color}_block_table"] = partial(lift_object, obj, 0.05, "base_link")
        checks[f"lift_{color}_block_slider"] = partial(lift_object, obj, 0.03, "plank_link")
        checks[f"lift_{color}_block_drawer"] = partial(lift_object, obj, 0.05, "drawer_link")
    checks["move_slider_left"] = partial(move_door, "base__slide", 0.15)
    checks["move_slider_right"] = partial(move_door, "base__slide", -0.15)
    checks["open_drawer"] = partial(move_door, "base__drawer", 0.12)
    checks["close_drawer"] = partial(move_door, "base__drawer", -0.12)
    checks["place_in_slider"] = partial(place_object, "plank_link")
    checks["place_in_drawer"] = partial(place_object, "drawer_link")
    checks["stack_block"] = stack_objects
    checks["unstack_block"] = unstack_objects
    checks["turn_on_lightbulb"] = partial(toggle_light, "lightbulb", 0, 1)
    checks["turn_off_lightbulb"] = partial(toggle_light, "lightbulb", 1, 0)
    checks["turn_on_led"] = partial(toggle_light, "led", 0, 1)
    checks["turn_off_led"] = partial(toggle_light, "led", 1, 0)
    checks["push_into_drawer"] = push_into_drawer
    return {name: checks[name] for name in task_names()}


class TaskOracle:
    """CALVIN's ``Tasks``: which of the 34 tasks happened between two info dicts."""

    def __init__(self, tasks: Iterable[str] | None = None) -> None:
        checks = _task_checks()
        if tasks is None:
            self.tasks = checks
        else:
            unknown = sorted(set(tasks) - set(checks))
            if unknown:
                raise ValueError(f"unknown CALVIN tasks {unknown}; known tasks are {sorted(checks)}")
            self.tasks = {name: checks[name] for name in checks if name in set(tasks)}
        self.task_to_id = {name: index for index, name in enumerate(self.tasks)}
        self.id_to_task = dict(enumerate(self.tasks))

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def get_task_info(self, start_info: Info, end_info: Info) -> set[str]:
        """All tasks completed between ``start_info`` and ``end_info``."""
        return {name for name, check in self.tasks.items() if check(start_info, end_info)}

    def get_task_info_for_set(self, start_info: Info, end_info: Info, task_filter: Iterable[str]) -> set[str]:
        """The tasks of ``task_filter`` completed between ``start_info`` and ``end_info``."""
        wanted = set(task_filter)
        unknown = sorted(wanted - set(self.tasks))
        if unknown:
            raise ValueError(f"unknown CALVIN tasks {unknown}")
        return {name for name in wanted if self.tasks[name](start_info, end_info)}

    def success(self, task: str, start_info: Info, info: Info) -> bool:
        """Whether ``task`` was completed between ``start_info`` (subtask start) and ``info`` (now)."""
        if task not in self.tasks:
            raise ValueError(f"unknown CALVIN task {task!r}")
        return bool(self.tasks[task](start_info, info))


_DEFAULT_ORACLE: TaskOracle | None = None


def success(task: str, start_info: Info, info: Info) -> bool:
    """``TaskOracle().success(...)`` with a shared oracle."""
    global _DEFAULT_ORACLE
    if _DEFAULT_ORACLE is None:
        _DEFAULT_ORACLE = TaskOracle()
    return _DEFAULT_ORACLE.success(task, start_info, info)


# --- symbolic state -------------------------------------------------------------------------------


def _place_by_position(block: Mapping[str, Any], table: Mapping[str, Any]) -> str:
    """Where a block is when its contacts do not say (falling, or leaning on a wall)."""
    x, y, z = block["current_pos"]
    drawer_lo, drawer_hi = table["drawer_x_range"]
    if z < 0.2:
        return "floor"
    if z < 0.42 and drawer_lo <= x <= drawer_hi:
        return "drawer"
    if y > 0.03 and z < 0.6:
        return "slider_left" if x < table["shelf_split_x"] else "slider_right"
    return "table"


def block_places(info: Info) -> dict[str, str]:
    """Where each block is, in CALVIN's words: ``table``, ``slider_left``, ``slider_right``, ``drawer``,
    ``grasped``, ``stacked_top``, ``stacked_bottom`` (and ``floor`` for a block that fell off the desk)."""
    blocks = info["scene_info"]["movable_objects"]
    table = info["scene_info"]["fixed_objects"]["table"]
    places: dict[str, str] = {}
    bottoms: set[str] = set()
    for name, block in blocks.items():
        touching = block["touching"]
        others = [other for other in blocks if other != name and other in _touching_blocks(touching)]
        if block["grasped"]:
            places[name] = "grasped"
        elif others and not touching & set(SURFACES):
            below = [o for o in others if blocks[o]["current_pos"][2] < block["current_pos"][2] - 0.02]
            if below:
                places[name] = "stacked_top"
                bottoms.update(below)
            else:
                places[name] = _place_by_position(block, table)
        elif "shelf" in touching:
            places[name] = "slider_left" if block["current_pos"][0] < table["shelf_split_x"] else "slider_right"
        elif "drawer" in touching:
            places[name] = "drawer"
        elif "table" in touching:
            places[name] = "table"
        elif "floor" in touching:
            places[name] = "floor"
        else:
            places[name] = _place_by_position(block, table)
    for name in bottoms:
        if places[name] not in ("stacked_top", "grasped"):
            places[name] = "stacked_bottom"
    return {SYMBOLIC_BLOCKS[name]: place for name, place in places.items()}


def _touching_blocks(touching: frozenset[str]) -> set[str]:
    return {CALVIN_BLOCKS[color] for color in CALVIN_BLOCKS if f"{color}_block" in touching}


def symbolic_state(info: Info) -> dict[str, Any]:
    """CALVIN's symbolic state of a scene (same keys and order as the chains' start states).

    Reads PlayTable's info extras (``touching``, ``grasped``, the table's ``shelf_split_x`` and
    ``drawer_x_range``), which CALVIN's own info dict does not have; the task checks need only
    CALVIN's fields.
    """
    scene = info["scene_info"]
    places = block_places(info)
    return {
        "led": int(scene["lights"]["led"]["logical_state"]),
        "lightbulb": int(scene["lights"]["lightbulb"]["logical_state"]),
        "slider": "left" if scene["doors"]["base__slide"]["current_state"] > SLIDER_LEFT_THRESHOLD else "right",
        "drawer": "open" if scene["doors"]["base__drawer"]["current_state"] > DRAWER_OPEN_THRESHOLD else "closed",
        "red_block": places["red_block"],
        "blue_block": places["blue_block"],
        "pink_block": places["pink_block"],
        "grasped": int("grasped" in places.values()),
    }
