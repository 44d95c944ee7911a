"""The task oracle: each of CALVIN's 34 tasks fires on a scripted change of the scene and stays silent
on a no-op, and the symbolic state reads scenes back in CALVIN's words.

The scene is changed directly (joint and block-pose setters, a block put between the open fingers
which then close), then the physics runs a few steps; this checks the oracle and the scene's contact
bookkeeping independently of any controller. Physical achievability with the arm is covered by
``test_playtable_physics.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from envs import PlayTableEnv, TaskOracle, success, symbolic_state, task_names

BASE = {
    "led": 0,
    "lightbulb": 0,
    "slider": "right",
    "drawer": "open",
    "red_block": "table",
    "blue_block": "table",
    "pink_block": "slider_left",
    "grasped": 0,
}
SYMBOLIC = {"red": "red_block", "blue": "blue_block", "pink": "pink_block"}


def off(x: float, y: float, z: float) -> np.ndarray:
    """A 3-d offset (keeps numpy addition readable)."""
    return np.array([x, y, z])


@pytest.fixture(scope="module")
def env():
    with PlayTableEnv() as playtable:
        yield playtable


def hold(env: PlayTableEnv, steps: int = 8, gripper: float = 1.0):
    for _ in range(steps):
        env.step(np.array([0, 0, 0, 0, 0, 0, gripper]))


def block_pose(env: PlayTableEnv, color: str) -> tuple[np.ndarray, float]:
    info = env.get_info()["scene_info"]["movable_objects"][f"block_{color}"]
    return np.array(info["current_pos"]), info["current_euler"][2]


def move_block(env: PlayTableEnv, color: str, offset=(0, 0, 0), yaw_change: float = 0.0, to=None):
    position, yaw = block_pose(env, color)
    target = np.asarray(to, dtype=float) if to is not None else position + np.asarray(offset)
    env.scene.set_block_pose(SYMBOLIC[color], target, (0.0, 0.0, yaw + yaw_change))


def grasp(env: PlayTableEnv, color: str):
    """Put the block between the open fingers (neutral pose: fingers close along x) and close them."""
    tcp = np.array(env.get_info()["robot_info"]["tcp_pos"])
    env.scene.set_block_pose(SYMBOLIC[color], tcp, (0.0, 0.0, math.pi / 2))
    hold(env, steps=6, gripper=-1.0)
    assert env.get_info()["scene_info"]["movable_objects"][f"block_{color}"]["grasped"]


def release_onto(env: PlayTableEnv, color: str, target):
    hold(env, steps=6, gripper=1.0)
    move_block(env, color, to=target)
    hold(env, steps=10)


def shelf_slot(env, side):
    slots = env.layout.start_slots()
    return np.array(slots.shelf_left if side == "left" else slots.shelf_right) + off(0, 0, 0.002)


def drawer_spot(env):
    floor = env.get_landmarks()["drawer_floor"]
    return np.array([floor[0], -0.31, floor[2] + 0.022])


Scenario = tuple[dict, Callable[[PlayTableEnv], None], Callable[[PlayTableEnv], None], float]


def scenarios() -> dict[str, Scenario]:
    """task -> (start state, setup before the start info, the change that completes the task, gripper to hold)."""

    def nothing(env):
        pass

    table: dict[str, Scenario] = {}
    for color in SYMBOLIC:
        on_table = {**BASE, SYMBOLIC[color]: "table", "blue_block": "table" if color != "pink" else "slider_right"}
        on_table["pink_block"] = "table" if color == "pink" else "slider_left"
        table[f"rotate_{color}_block_right"] = (
            on_table,
            nothing,
            lambda e, c=color: move_block(e, c, yaw_change=-math.pi / 2),
            1.0,
        )
        table[f"rotate_{color}_block_left"] = (
            on_table,
            nothing,
            lambda e, c=color: move_block(e, c, yaw_change=math.pi / 2),
            1.0,
        )
        table[f"push_{color}_block_right"] = (
            on_table,
            nothing,
            lambda e, c=color: move_block(e, c, (0.12, 0.0, 0.0)),
            1.0,
        )
        table[f"push_{color}_block_left"] = (
            on_table,
            nothing,
            lambda e, c=color: move_block(e, c, (-0.12, 0.0, 0.0)),
            1.0,
        )
        table[f"lift_{color}_block_table"] = (on_table, nothing, lambda e, c=color: grasp(e, c), -1.0)
        on_shelf = {**BASE, "red_block": "table", "blue_block": "table", "pink_block": "table"}
        on_shelf[SYMBOLIC[color]] = "slider_left"
        table[f"lift_{color}_block_slider"] = (on_shelf, nothing, lambda e, c=color: grasp(e, c), -1.0)
        in_drawer = {**BASE, "red_block": "slider_left", "blue_block": "slider_right", "pink_block": "table"}
        in_drawer[SYMBOLIC[color]] = "drawer"
        table[f"lift_{color}_block_drawer"] = (in_drawer, nothing, lambda e, c=color: grasp(e, c), -1.0)
    table["move_slider_left"] = (
        {**BASE, "slider": "right"},
        nothing,
        lambda e: e.scene.set_joint("base__slide", 0.2),
        1.0,
    )
    table["move_slider_right"] = (
        {**BASE, "slider": "left"},
        nothing,
        lambda e: e.scene.set_joint("base__slide", 0.1),
        1.0,
    )
    table["open_drawer"] = (
        {**BASE, "drawer": "closed"},
        nothing,
        lambda e: e.scene.set_joint("base__drawer", 0.15),
        1.0,
    )
    table["close_drawer"] = (
        {**BASE, "drawer": "open"},
        nothing,
        lambda e: e.scene.set_joint("base__drawer", 0.05),
        1.0,
    )
    table["place_in_slider"] = (
        BASE,
        lambda e: grasp(e, "red"),
        lambda e: release_onto(e, "red", shelf_slot(e, "right")),
        -1.0,
    )
    table["place_in_drawer"] = (
        BASE,
        lambda e: grasp(e, "blue"),
        lambda e: release_onto(e, "blue", drawer_spot(e)),
        -1.0,
    )
    table["turn_on_lightbulb"] = (
        {**BASE, "lightbulb": 0},
        nothing,
        lambda e: e.scene.set_joint("base__switch", 0.088),
        1.0,
    )
    table["turn_off_lightbulb"] = (
        {**BASE, "lightbulb": 1},
        nothing,
        lambda e: e.scene.set_joint("base__switch", 0.0),
        1.0,
    )
    table["turn_on_led"] = ({**BASE, "led": 0}, nothing, lambda e: e.scene.set_joint("base__button", 0.02), 1.0)
    table["turn_off_led"] = ({**BASE, "led": 1}, nothing, lambda e: e.scene.set_joint("base__button", 0.02), 1.0)
    table["push_into_drawer"] = (
        {**BASE, "pink_block": "table", "red_block": "slider_left", "blue_block": "slider_right"},
        nothing,
        lambda e: move_block(e, "pink", to=drawer_spot(e)),
        1.0,
    )

    def stack(e):
        blue, _ = block_pose(e, "blue")
        move_block(e, "red", to=blue + off(0, 0, 0.041))

    def unstack_setup(e):
        stack(e)
        hold(e, 10)

    table["stack_block"] = (BASE, nothing, stack, 1.0)
    table["unstack_block"] = (BASE, unstack_setup, lambda e: move_block(e, "red", to=(-0.12, -0.10, 0.461)), 1.0)
    return table


SCENARIOS = scenarios()


def test_every_calvin_task_has_a_scenario():
    assert set(SCENARIOS) == set(task_names())


@pytest.mark.parametrize("task", task_names())
def test_task_fires_on_its_change_and_not_on_a_no_op(env, task):
    state, setup, change, gripper = SCENARIOS[task]
    oracle = TaskOracle()

    env.reset(state)
    hold(env, 3)
    setup(env)
    hold(env, 3, gripper)
    start = env.get_info()
    hold(env, 10, gripper)
    assert task not in oracle.get_task_info(start, env.get_info()), "fired without any change"

    env.reset(state)
    hold(env, 3)
    setup(env)
    hold(env, 3, gripper)
    start = env.get_info()
    change(env)
    hold(env, 10, gripper if task not in ("place_in_slider", "place_in_drawer") else 1.0)
    end = env.get_info()
    assert oracle.get_task_info_for_set(start, end, {task}) == {task}
    assert success(task, start, end)
    assert oracle.success(task, start, end)


def test_only_the_performed_task_family_fires(env):
    state, _, change, _ = SCENARIOS["move_slider_left"]
    env.reset(state)
    hold(env, 3)
    start = env.get_info()
    change(env)
    hold(env, 5)
    assert TaskOracle().get_task_info(start, env.get_info()) == {"move_slider_left"}


def test_symbolic_state_reads_grasped_stacked_and_drawer(env):
    env.reset(BASE)
    hold(env, 3)
    grasp(env, "red")
    facts = symbolic_state(env.get_info())
    assert facts["red_block"] == "grasped" and facts["grasped"] == 1
    release_onto(env, "red", drawer_spot(env))
    facts = symbolic_state(env.get_info())
    assert facts["red_block"] == "drawer" and facts["grasped"] == 0
    blue, _ = block_pose(env, "blue")
    move_block(env, "pink", to=blue + off(0, 0, 0.041))
    hold(env, 10)
    facts = symbolic_state(env.get_info())
    assert (facts["pink_block"], facts["blue_block"]) == ("stacked_top", "stacked_bottom")
    env.scene.set_joint("base__slide", 0.27)
    env.scene.set_joint("base__drawer", 0.02)
    hold(env, 2)
    facts = symbolic_state(env.get_info())
    assert (facts["slider"], facts["drawer"]) == ("left", "closed")
    assert list(facts) == list(BASE)


def test_oracle_rejects_unknown_tasks(env):
    info = env.get_info()
    with pytest.raises(ValueError, match="unknown CALVIN task"):
        TaskOracle().success("fly_away", info, info)
    with pytest.raises(ValueError, match="unknown CALVIN tasks"):
        TaskOracle(["open_drawer", "fly_away"])
    with pytest.raises(ValueError, match="unknown CALVIN tasks"):
        TaskOracle(["open_drawer"]).get_task_info_for_set(info, info, {"close_drawer"})
    assert TaskOracle(["open_drawer"]).num_tasks == 1
